//! Topic matching cost vs. number of bindings: the trie should stay flat
//! while the naive per-pattern scan grows linearly.
//!
//! Run: `cargo bench --bench routing`
//!
//! Sample run (shared 2-core dev box, noisy, 2026-11-21), median time per
//! match:
//! bindings       10        100       1,000     10,000    100,000
//! trie         0.12 us   0.13 us   0.23 us   0.19 us   0.19 us
//! naive        1.0 us    10 us     156 us    1.6 ms    15 ms
//! table route  0.15 us   0.15 us   0.17 us   0.16 us   0.17 us

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use std::time::Duration;
use warren::routing::topic::{naive_match, TopicTrie};
use warren::routing::{Binding, Destination, ExchangeKind, FieldTable, RoutingTable, ShortStr};

/// A mix of literal, `*`, trailing-`#` and leading-`#` patterns with mostly
/// distinct prefixes, like per-service subscriptions.
fn patterns(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match i % 4 {
            0 => format!("svc{i}.*.evt"),
            1 => format!("svc{i}.#"),
            2 => format!("#.svc{i}.done"),
            _ => format!("svc{i}.info.evt"),
        })
        .collect()
}

fn key(n: usize) -> String {
    // Matches the `svc{t}.*.evt` and `svc{t}.info.evt`-style bindings near
    // the middle, whatever n is.
    let t = (n / 2) & !3;
    format!("svc{t}.info.evt")
}

fn topic_match(c: &mut Criterion) {
    let mut g = c.benchmark_group("topic_match");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in [10usize, 100, 1_000, 10_000, 100_000] {
        let pats = patterns(n);
        let k = key(n);
        let mut trie = TopicTrie::new();
        for (i, p) in pats.iter().enumerate() {
            trie.insert(p, i as u32);
        }
        let mut trie_hits = 0;
        trie.for_each_match(&k, |_| trie_hits += 1);
        let naive_hits = pats.iter().filter(|p| naive_match(p, &k)).count();
        assert_eq!(trie_hits, naive_hits);
        assert!(trie_hits > 0);

        g.bench_with_input(BenchmarkId::new("trie", n), &k, |b, k| {
            b.iter(|| {
                let mut hits = 0u32;
                trie.for_each_match(black_box(k), |v| hits = hits.wrapping_add(*v));
                hits
            })
        });
        g.bench_with_input(BenchmarkId::new("naive", n), &k, |b, k| {
            b.iter(|| pats.iter().filter(|p| naive_match(p, black_box(k))).count())
        });
    }
    g.finish();
}

/// Full `RoutingTable::route` on a topic exchange, reusing the output vector.
fn table_route(c: &mut Criterion) {
    let mut g = c.benchmark_group("table_route_topic");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in [10usize, 100, 1_000, 10_000, 100_000] {
        let mut t = RoutingTable::new();
        t.add_exchange("t".into(), ExchangeKind::Topic);
        for (i, p) in patterns(n).into_iter().enumerate() {
            t.bind(Binding {
                source: "t".into(),
                destination: Destination::Queue(format!("q{i}").into()),
                routing_key: p.into(),
                arguments: FieldTable::default(),
            });
        }
        let k = key(n);
        let mut out: Vec<ShortStr> = Vec::with_capacity(16);
        g.bench_with_input(BenchmarkId::new("route", n), &k, |b, k| {
            b.iter(|| {
                out.clear();
                t.route("t", black_box(k), None, &mut out);
                out.len()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, topic_match, table_route);
criterion_main!(benches);
