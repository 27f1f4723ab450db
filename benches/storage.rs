//! Message-log costs: appending persistent messages with a group commit
//! (one fdatasync per batch, as the committer does), and the recovery scan
//! (every record read and CRC-checked).
//!
//! The files go to `$WARREN_BENCH_DIR` (default: the system temp dir), so
//! the figures are the file system's there.
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::path::PathBuf;
use warren::codec::ShortStr;
use warren::ids::QueueId;
use warren::queue::MessageData;
use warren::storage::MessageLog;

fn bench_dir(name: &str) -> PathBuf {
    let base = std::env::var_os("WARREN_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("warren-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn message(size: usize) -> MessageData {
    MessageData {
        exchange: ShortStr::from_static(""),
        routing_key: ShortStr::from_static("bench-queue"),
        raw_properties: Bytes::from_static(&[0x10, 0x00, 0x02]),
        body: Bytes::from(vec![0x5a; size]),
        persistent: true,
        expiration_ms: None,
        priority: 0,
    }
}

/// Appends `batch` messages, then syncs what they touched: one group commit.
fn append_batch(log: &mut MessageLog, msg: &MessageData, id: &mut u64, batch: usize) {
    for _ in 0..batch {
        log.append_publish(QueueId(1), *id, false, None, msg)
            .unwrap();
        *id += 1;
    }
    if let Some(job) = log.sync_job() {
        for f in &job.files {
            f.sync_data().unwrap();
        }
        log.mark_synced(job.upto);
    }
}

fn append_group_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("log_append_group_commit");
    group.sample_size(20);
    for (size, batch) in [(16usize, 1usize), (16, 1000), (1024, 1000), (65536, 64)] {
        let dir = bench_dir("append");
        let (mut log, _, _) = MessageLog::open(&dir, 256 << 20, |_| true).unwrap();
        let msg = message(size);
        let mut id = 0;
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(BenchmarkId::new(format!("{size}B"), batch), |b| {
            b.iter(|| append_batch(&mut log, &msg, &mut id, batch))
        });
        drop(log);
        let _ = std::fs::remove_dir_all(&dir);
    }
    group.finish();
}

fn recovery_scan(c: &mut Criterion) {
    let mut group = c.benchmark_group("log_recovery_scan");
    group.sample_size(10);
    for (size, count) in [(1024usize, 100_000u64), (16, 200_000)] {
        let dir = bench_dir("recovery");
        {
            let (mut log, _, _) = MessageLog::open(&dir, 64 << 20, |_| true).unwrap();
            let msg = message(size);
            let mut id = 0;
            while id < count {
                append_batch(&mut log, &msg, &mut id, 10_000);
            }
        }
        let (_, _, report) = MessageLog::open(&dir, 64 << 20, |_| true).unwrap();
        assert_eq!(report.messages, count);
        group.throughput(Throughput::Bytes(report.bytes));
        group.bench_function(BenchmarkId::new(format!("{size}B"), count), |b| {
            b.iter(|| {
                let (_, recovered, report) = MessageLog::open(&dir, 64 << 20, |_| true).unwrap();
                assert_eq!(report.corrupt, 0);
                recovered
            })
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
    group.finish();
}

criterion_group!(benches, append_group_commit, recovery_scan);
criterion_main!(benches);
