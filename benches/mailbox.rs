//! Cross-shard hand-off: items sent from one glommio executor to another
//! through Warren's `Mailbox` over the channel mesh, flushed in batches of
//! N items (one mesh message per batch, as the broker does per unit of
//! work) against one mesh message per item (batch of 1).
//!
//! Run: `cargo bench --bench mailbox`
//!
//! Each item is 64 bytes, about a `ShardMsg`. Time is measured from the
//! first push on the sending executor to the last item received on the
//! other one; executor start-up is outside the measurement.
//!
//! Sample run (shared 2-core dev box, noisy, 2026-11-21), median time per
//! item: batch 1: 120 ns (8 M items/s); 8: 28 ns; 64: 13 ns (74 M/s);
//! 512: 22 ns.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorPoolBuilder, PoolPlacement};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use warren::runtime::mailbox::Mailbox;

type Item = [u64; 8];

/// Sends `total` items from executor 0 to executor 1 in batches of `batch`;
/// returns the time from the first push to the last receive.
fn hand_off(total: u64, batch: u64) -> Duration {
    let mesh = MeshBuilder::<Vec<Item>, _>::full(2, 1024);
    let started: Arc<Mutex<Option<Instant>>> = Arc::default();
    let elapsed: Arc<Mutex<Option<Duration>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let (s2, e2, d2) = (started.clone(), elapsed.clone(), done.clone());
    LocalExecutorPoolBuilder::new(PoolPlacement::Unbound(2))
        .on_all_shards(move || {
            let (started, elapsed, done) = (s2.clone(), e2.clone(), d2.clone());
            async move {
                let (senders, mut receivers) = mesh.join().await.expect("mesh");
                if senders.peer_id() == 0 {
                    let mb = Mailbox::new(senders);
                    *started.lock().unwrap() = Some(Instant::now());
                    let mut sent = 0u64;
                    while sent < total {
                        let n = batch.min(total - sent);
                        for i in 0..n {
                            mb.push(1, [sent + i; 8]);
                        }
                        sent += n;
                        mb.flush();
                        // Let the drain task run when the channel is full.
                        mb.until_uncongested().await;
                    }
                    // Keep this executor (and its drain task) alive until
                    // everything arrived.
                    while !done.load(Ordering::Acquire) {
                        glommio::timer::sleep(Duration::from_micros(50)).await;
                    }
                } else {
                    let mut got = 0u64;
                    let mut check = 0u64;
                    'outer: for (_, rx) in receivers.streams() {
                        while let Some(items) = rx.recv().await {
                            for it in &items {
                                check = check.wrapping_add(it[0]);
                            }
                            got += items.len() as u64;
                            if got >= total {
                                break 'outer;
                            }
                        }
                    }
                    let t = started.lock().unwrap().expect("sender started").elapsed();
                    *elapsed.lock().unwrap() = Some(t);
                    assert_eq!(check, total * (total - 1) / 2);
                    done.store(true, Ordering::Release);
                }
            }
        })
        .expect("executors")
        .join_all();
    let t = elapsed.lock().unwrap().take();
    t.expect("receiver finished")
}

fn mailbox(c: &mut Criterion) {
    let mut g = c.benchmark_group("cross_shard_handoff");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(1));
    for batch in [1u64, 8, 64, 512] {
        g.bench_with_input(BenchmarkId::new("batch", batch), &batch, |b, &batch| {
            // iters = items; at least a few thousand per executor start.
            b.iter_custom(|iters| {
                let total = iters.max(4096);
                hand_off(total, batch).mul_f64(iters as f64 / total as f64)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, mailbox);
criterion_main!(benches);
