//! Message rates, as the management API shows them.
//!
//! A [`Sampler`] on shard 0 gathers every shard's counters every 5 s (one
//! [`GatherStats`] call per shard, summed here) and keeps the overall
//! figures for the last 10 minutes, and the last two samples of every
//! queue, exchange, connection and vhost. A rate is RabbitMQ's: the change
//! of a counter between the last two samples over the seconds between
//! them. With `?msg_rates_age=A&msg_rates_incr=I` (or `lengths_…`) the
//! overview's details also carry the samples at every `I` seconds of the
//! last `A`, their average, and the average rate over `A`.
//!
//! The accessors answer RabbitMQ's JSON shapes, which the HTTP layer
//! inserts as they are.
use ahash::AHashMap;
use serde_json::{json, Map, Value};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use crate::ids::{ConnId, ShardId};
use crate::metrics::{ConnTotals, ExchangeTotals, QueueCounters, ShardTotals};
use crate::shard::{GatherStats, Shard, ShardStats};

/// RabbitMQ's `collect_statistics_interval` (5 s).
pub const INTERVAL: Duration = Duration::from_secs(5);
/// How much overall history is kept: 10 minutes of samples.
const HISTORY: usize = 121;

/// The figures summed over every shard at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    /// The shards' own counters.
    pub shards: ShardTotals,
    /// Every queue's counters (those deleted included).
    pub queues: QueueCounters,
    /// Ready messages in every queue.
    pub ready: u64,
    /// Unacknowledged messages in every queue.
    pub unacked: u64,
}

/// Per-vhost figures summed from its queues and exchanges.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct VhostTotals {
    publish: u64,
    queues: QueueCounters,
    ready: u64,
    unacked: u64,
    recv_oct: u64,
    send_oct: u64,
}

/// A value at a wall-clock time (ms since the Unix epoch).
#[derive(Debug, Clone, Copy, PartialEq)]
struct At<T> {
    ms: u64,
    v: T,
}

/// The last two samples of one object.
#[derive(Debug, Clone, Copy)]
struct Pair<T> {
    prev: Option<At<T>>,
    last: At<T>,
}

impl<T: Copy> Pair<T> {
    fn push(slot: Option<&Pair<T>>, now: At<T>) -> Pair<T> {
        Pair {
            prev: slot.map(|p| p.last),
            last: now,
        }
    }

    /// The rate of the figure `f` picks out, per second.
    fn rate(&self, f: impl Fn(&T) -> u64) -> f64 {
        match self.prev {
            Some(prev) => rate(f(&prev.v), prev.ms, f(&self.last.v), self.last.ms),
            None => 0.0,
        }
    }
}

/// RabbitMQ's rate: the change of a counter (or length) between two
/// samples over the seconds between them; 0 when no time passed.
pub fn rate(before: u64, before_ms: u64, after: u64, after_ms: u64) -> f64 {
    if after_ms <= before_ms {
        return 0.0;
    }
    let secs = (after_ms - before_ms) as f64 / 1000.0;
    round((after as f64 - before as f64) / secs)
}

/// Rates keep two decimals, as the management UI shows them.
fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// A queue's counters, ready and unacked messages.
type QueueSample = (QueueCounters, u64, u64);

#[derive(Default)]
struct State {
    history: VecDeque<At<Totals>>,
    queues: AHashMap<(String, String), Pair<QueueSample>>,
    exchanges: AHashMap<(String, String), Pair<ExchangeTotals>>,
    conns: AHashMap<ConnId, Pair<ConnTotals>>,
    vhosts: AHashMap<String, Pair<VhostTotals>>,
}

/// Samples every shard's counters every 5 s and answers message rates.
pub struct Sampler {
    state: RefCell<State>,
}

/// Starts sampling on this shard (shard 0): the first sample at once, then
/// one every [`INTERVAL`].
pub fn start(shard: Rc<Shard>) -> Rc<Sampler> {
    let sampler = Rc::new(Sampler {
        state: RefCell::new(State::default()),
    });
    let s = sampler.clone();
    crate::runtime::spawn(async move {
        // `spawn` polls at once, inside the caller's step: sample after it.
        futures_lite::future::yield_now().await;
        loop {
            let gathered = gather(&shard).await;
            s.record(now_ms(), &gathered);
            crate::runtime::sleep(INTERVAL).await;
        }
    });
    sampler
}

/// Every shard's figures; a shard that does not answer is left out.
pub async fn gather(shard: &Rc<Shard>) -> Vec<ShardStats> {
    let mut out = Vec::with_capacity(shard.shard_count());
    for i in 0..shard.shard_count() {
        if let Ok(s) = shard.call(ShardId::from_index(i), GatherStats).await {
            out.push(s);
        }
    }
    out
}

/// The overall totals of what [`gather`] answered.
pub fn sum(shards: &[ShardStats]) -> Totals {
    let mut t = Totals::default();
    for s in shards {
        t.shards.add(&s.totals);
        t.queues.add(&s.queue_totals);
        for q in &s.queues {
            t.ready += q.ready as u64;
            t.unacked += q.unacked as u64;
        }
    }
    t
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `{"name": n, "name_details": {"rate": r}}` entries into `m`.
fn counter(m: &mut Map<String, Value>, name: &str, value: u64, rate: f64) {
    m.insert(name.to_string(), json!(value));
    m.insert(format!("{name}_details"), json!({ "rate": rate }));
}

impl Sampler {
    /// A sampler that samples nothing by itself (tests feed it with
    /// [`Sampler::record`]).
    pub fn new() -> Self {
        Sampler {
            state: RefCell::new(State::default()),
        }
    }

    /// Takes one sample of `shards` at wall-clock `ms`.
    pub fn record(&self, ms: u64, shards: &[ShardStats]) {
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        st.history.push_back(At { ms, v: sum(shards) });
        while st.history.len() > HISTORY {
            st.history.pop_front();
        }
        let mut queues = AHashMap::new();
        let mut exchanges = AHashMap::new();
        let mut conns = AHashMap::new();
        let mut vhosts: AHashMap<String, VhostTotals> = AHashMap::new();
        for s in shards {
            for q in &s.queues {
                let key = (q.vhost.to_string(), q.name.to_string());
                let v = (q.counters, q.ready as u64, q.unacked as u64);
                let vh = vhosts.entry(key.0.clone()).or_default();
                vh.queues.add(&q.counters);
                vh.ready += v.1;
                vh.unacked += v.2;
                queues.insert(key, v);
            }
            for x in &s.exchanges {
                let key = (x.vhost.to_string(), x.name.to_string());
                vhosts.entry(key.0.clone()).or_default().publish += x.counters.publish_in;
                exchanges
                    .entry(key)
                    .or_insert_with(ExchangeTotals::default)
                    .add(&x.counters);
            }
            for (id, vhost, c) in &s.conns {
                if !vhost.is_empty() {
                    let vh = vhosts.entry(vhost.clone()).or_default();
                    vh.recv_oct += c.recv_oct;
                    vh.send_oct += c.send_oct;
                }
                conns.insert(*id, *c);
            }
        }
        fn roll<K: std::hash::Hash + Eq, T: Copy>(
            old: &AHashMap<K, Pair<T>>,
            new: AHashMap<K, T>,
            ms: u64,
        ) -> AHashMap<K, Pair<T>> {
            new.into_iter()
                .map(|(k, v)| {
                    let p = Pair::push(old.get(&k), At { ms, v });
                    (k, p)
                })
                .collect()
        }
        st.queues = roll(&st.queues, queues, ms);
        st.exchanges = roll(&st.exchanges, exchanges, ms);
        st.conns = roll(&st.conns, conns, ms);
        st.vhosts = roll(&st.vhosts, vhosts, ms);
    }

    /// The overall figure `f` picks out: its value, its rate, and with
    /// `age` the samples `{"sample", "timestamp"}` every `incr` seconds of
    /// the last `age`, newest first, their `avg` and the `avg_rate` over
    /// them.
    fn overall(
        &self,
        m: &mut Map<String, Value>,
        name: &str,
        age: Option<(u64, u64)>,
        f: impl Fn(&Totals) -> u64,
    ) {
        let st = self.state.borrow();
        let h = &st.history;
        let (value, r) = match (h.len().checked_sub(2).map(|i| h[i]), h.back()) {
            (Some(prev), Some(last)) => {
                (f(&last.v), rate(f(&prev.v), prev.ms, f(&last.v), last.ms))
            }
            (None, Some(last)) => (f(&last.v), 0.0),
            _ => (0, 0.0),
        };
        m.insert(name.to_string(), json!(value));
        let mut details = Map::new();
        details.insert("rate".into(), json!(r));
        if let (Some((age, incr)), Some(last)) = (age, h.back()) {
            let samples = history_samples(h, last.ms, age, incr, &f);
            let n = samples.len();
            let avg = samples.iter().map(|(_, v)| *v as f64).sum::<f64>() / n as f64;
            let avg_rate = match (samples.first(), samples.last()) {
                (Some(&(t1, newest)), Some(&(t0, oldest))) if t1 > t0 => {
                    rate(oldest, t0, newest, t1)
                }
                _ => 0.0,
            };
            let list: Vec<Value> = samples
                .iter()
                .map(|(t, v)| json!({"sample": v, "timestamp": t}))
                .collect();
            details.insert("samples".into(), Value::Array(list));
            details.insert("avg_rate".into(), json!(avg_rate));
            details.insert("avg".into(), json!(avg));
        }
        m.insert(format!("{name}_details"), Value::Object(details));
    }

    /// `/api/overview`'s `message_stats`.
    pub fn overview_message_stats(&self, age: Option<(u64, u64)>) -> Value {
        let mut m = Map::new();
        self.overall(&mut m, "ack", age, |t| t.queues.ack);
        self.overall(&mut m, "confirm", age, |t| t.shards.confirmed);
        self.overall(&mut m, "deliver", age, |t| t.queues.deliver);
        self.overall(&mut m, "deliver_get", age, |t| t.queues.deliver_get());
        self.overall(&mut m, "deliver_no_ack", age, |t| t.queues.deliver_no_ack);
        self.overall(&mut m, "drop_unroutable", age, |t| {
            t.shards.unroutable_dropped
        });
        self.overall(&mut m, "get", age, |t| t.queues.get);
        self.overall(&mut m, "get_empty", age, |t| t.shards.get_empty);
        self.overall(&mut m, "get_no_ack", age, |t| t.queues.get_no_ack);
        self.overall(&mut m, "publish", age, |t| t.shards.received);
        self.overall(&mut m, "redeliver", age, |t| t.queues.redeliver);
        self.overall(&mut m, "return_unroutable", age, |t| {
            t.shards.unroutable_returned
        });
        Value::Object(m)
    }

    /// `/api/overview`'s `queue_totals` (`age`: `lengths_age`,
    /// `lengths_incr`).
    pub fn queue_totals(&self, age: Option<(u64, u64)>) -> Value {
        let mut m = Map::new();
        self.overall(&mut m, "messages", age, |t| t.ready + t.unacked);
        self.overall(&mut m, "messages_ready", age, |t| t.ready);
        self.overall(&mut m, "messages_unacknowledged", age, |t| t.unacked);
        Value::Object(m)
    }

    /// A queue's `message_stats` (publish, deliver, get, ack, redeliver
    /// and their rates), once it has been sampled.
    pub fn queue_message_stats(&self, vhost: &str, name: &str) -> Option<Value> {
        let st = self.state.borrow();
        let p = st.queues.get(&(vhost.to_string(), name.to_string()))?;
        Some(queue_counters(&p.map(|v| v.0)))
    }

    /// A queue's length rates: `messages_details`, `messages_ready_details`,
    /// `messages_unacknowledged_details` (the top-level fields of
    /// `/api/queues` beside the lengths themselves).
    pub fn queue_length_details(&self, vhost: &str, name: &str) -> Option<Value> {
        let st = self.state.borrow();
        let p = st.queues.get(&(vhost.to_string(), name.to_string()))?;
        Some(json!({
            "messages_details": {"rate": p.rate(|v| v.1 + v.2)},
            "messages_ready_details": {"rate": p.rate(|v| v.1)},
            "messages_unacknowledged_details": {"rate": p.rate(|v| v.2)},
        }))
    }

    /// An exchange's `message_stats` (publish_in, publish_out), once
    /// something was published to it.
    pub fn exchange_message_stats(&self, vhost: &str, name: &str) -> Option<Value> {
        let st = self.state.borrow();
        let p = st.exchanges.get(&(vhost.to_string(), name.to_string()))?;
        let mut m = Map::new();
        counter(
            &mut m,
            "publish_in",
            p.last.v.publish_in,
            p.rate(|v| v.publish_in),
        );
        counter(
            &mut m,
            "publish_out",
            p.last.v.publish_out,
            p.rate(|v| v.publish_out),
        );
        Some(Value::Object(m))
    }

    /// A vhost's `message_stats`: publishes to its exchanges, and its
    /// queues' deliveries, gets, acks and redeliveries.
    pub fn vhost_message_stats(&self, vhost: &str) -> Option<Value> {
        let st = self.state.borrow();
        let p = st.vhosts.get(vhost)?;
        let Value::Object(mut m) = queue_counters(&p.map(|v| v.queues)) else {
            unreachable!("queue_counters answers an object")
        };
        counter(&mut m, "publish", p.last.v.publish, p.rate(|v| v.publish));
        Some(Value::Object(m))
    }

    /// A vhost's top-level figures beside `message_stats`: `messages`,
    /// `messages_ready`, `messages_unacknowledged`, `recv_oct`, `send_oct`,
    /// each with its `_details`.
    pub fn vhost_totals(&self, vhost: &str) -> Option<Value> {
        let st = self.state.borrow();
        let p = st.vhosts.get(vhost)?;
        let mut m = Map::new();
        let v = p.last.v;
        counter(
            &mut m,
            "messages",
            v.ready + v.unacked,
            p.rate(|v| v.ready + v.unacked),
        );
        counter(&mut m, "messages_ready", v.ready, p.rate(|v| v.ready));
        counter(
            &mut m,
            "messages_unacknowledged",
            v.unacked,
            p.rate(|v| v.unacked),
        );
        counter(&mut m, "recv_oct", v.recv_oct, p.rate(|v| v.recv_oct));
        counter(&mut m, "send_oct", v.send_oct, p.rate(|v| v.send_oct));
        Some(Value::Object(m))
    }

    /// A connection's traffic fields (top-level in `/api/connections`):
    /// recv_oct, recv_oct_details, recv_cnt, send_oct, send_oct_details,
    /// send_cnt.
    pub fn connection_stats(&self, id: ConnId) -> Option<Value> {
        let st = self.state.borrow();
        let p = st.conns.get(&id)?;
        let v = p.last.v;
        Some(json!({
            "recv_oct": v.recv_oct,
            "recv_oct_details": {"rate": p.rate(|v| v.recv_oct)},
            "recv_cnt": v.recv_cnt,
            "send_oct": v.send_oct,
            "send_oct_details": {"rate": p.rate(|v| v.send_oct)},
            "send_cnt": v.send_cnt,
        }))
    }
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy> Pair<T> {
    fn map<U: Copy>(&self, f: impl Fn(T) -> U) -> Pair<U> {
        Pair {
            prev: self.prev.map(|a| At {
                ms: a.ms,
                v: f(a.v),
            }),
            last: At {
                ms: self.last.ms,
                v: f(self.last.v),
            },
        }
    }
}

/// A queue's (or a vhost's queues') counters as `message_stats`.
fn queue_counters(p: &Pair<QueueCounters>) -> Value {
    let mut m = Map::new();
    let v = p.last.v;
    counter(&mut m, "ack", v.ack, p.rate(|v| v.ack));
    counter(&mut m, "deliver", v.deliver, p.rate(|v| v.deliver));
    counter(
        &mut m,
        "deliver_get",
        v.deliver_get(),
        p.rate(|v| v.deliver_get()),
    );
    counter(
        &mut m,
        "deliver_no_ack",
        v.deliver_no_ack,
        p.rate(|v| v.deliver_no_ack),
    );
    counter(&mut m, "get", v.get, p.rate(|v| v.get));
    counter(&mut m, "get_no_ack", v.get_no_ack, p.rate(|v| v.get_no_ack));
    counter(&mut m, "publish", v.publish, p.rate(|v| v.publish));
    counter(&mut m, "redeliver", v.redeliver, p.rate(|v| v.redeliver));
    Value::Object(m)
}

/// The samples every `incr` seconds of the last `age`, newest first, at
/// timestamps aligned to `incr` as RabbitMQ's: each is the value of the
/// last sample taken before the next timestamp (the oldest kept, before
/// history starts).
fn history_samples(
    h: &VecDeque<At<Totals>>,
    newest_ms: u64,
    age: u64,
    incr: u64,
    f: &impl Fn(&Totals) -> u64,
) -> Vec<(u64, u64)> {
    let incr_ms = incr.max(1) * 1000;
    let top = newest_ms / incr_ms * incr_ms;
    let n = age / incr.max(1);
    (0..=n)
        .map_while(|k| top.checked_sub(k * incr_ms))
        .map(|t| {
            let at = h.iter().rev().find(|s| s.ms < t + incr_ms).or(h.front());
            (t, at.map_or(0, |s| f(&s.v)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::{ExchangeStatsInfo, QueueStatsInfo};

    fn shard_stats(received: u64, delivered: u64, ready: u32) -> ShardStats {
        let mut s = ShardStats::default();
        s.totals.received = received;
        s.queue_totals.deliver = delivered;
        s.queues.push(QueueStatsInfo {
            id: crate::ids::QueueId(1),
            vhost: "/".into(),
            name: "q".into(),
            ready,
            unacked: 0,
            counters: QueueCounters {
                publish: received,
                deliver: delivered,
                ..Default::default()
            },
        });
        s.exchanges.push(ExchangeStatsInfo {
            vhost: "/".into(),
            name: "".into(),
            counters: ExchangeTotals {
                publish_in: received,
                publish_out: received,
            },
        });
        s
    }

    #[test]
    fn rate_is_the_change_over_the_seconds_between_samples() {
        assert_eq!(rate(100, 0, 600, 5000), 100.0);
        assert_eq!(rate(10, 1000, 10, 6000), 0.0);
        assert_eq!(rate(10, 1000, 5, 6000), -1.0);
        assert_eq!(rate(10, 1000, 20, 1000), 0.0);
        assert_eq!(rate(0, 0, 1, 3000), 0.33);
    }

    #[test]
    fn overview_rates_come_from_the_last_two_samples() {
        let s = Sampler::new();
        s.record(10_000, &[shard_stats(10, 0, 10)]);
        let v = s.overview_message_stats(None);
        assert_eq!(v["publish"], 10);
        assert_eq!(v["publish_details"]["rate"], 0.0);
        s.record(15_000, &[shard_stats(60, 20, 40), shard_stats(0, 5, 0)]);
        let v = s.overview_message_stats(None);
        assert_eq!(v["publish"], 60);
        assert_eq!(v["publish_details"]["rate"], 10.0);
        assert_eq!(v["deliver"], 25);
        assert_eq!(v["deliver_details"]["rate"], 5.0);
        assert_eq!(v["deliver_get"], 25);
        assert!(v["publish_details"].get("samples").is_none());
        let q = s.queue_totals(None);
        assert_eq!(q["messages_ready"], 40);
        assert_eq!(q["messages_ready_details"]["rate"], 6.0);
        let qs = s.queue_message_stats("/", "q").unwrap();
        assert_eq!(qs["publish"], 0, "the last shard's queue q counts 0");
        assert!(s.queue_message_stats("/", "nope").is_none());
        let x = s.exchange_message_stats("/", "").unwrap();
        assert_eq!(x["publish_in"], 60);
        assert_eq!(x["publish_in_details"]["rate"], 10.0);
        let vh = s.vhost_message_stats("/").unwrap();
        assert_eq!(vh["publish"], 60);
    }

    #[test]
    fn samples_cover_the_age_newest_first() {
        let s = Sampler::new();
        for (i, n) in [0u64, 5, 10, 20].iter().enumerate() {
            s.record(100_000 + 5000 * i as u64 + 7, &[shard_stats(*n, 0, 0)]);
        }
        let v = s.overview_message_stats(Some((10, 5)));
        let d = &v["publish_details"];
        let samples = d["samples"].as_array().unwrap();
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[0]["timestamp"], 115_000);
        assert_eq!(samples[0]["sample"], 20);
        assert_eq!(samples[1]["timestamp"], 110_000);
        assert_eq!(samples[1]["sample"], 10);
        assert_eq!(samples[2]["sample"], 5);
        assert_eq!(d["avg_rate"], 1.5);
        assert!((d["avg"].as_f64().unwrap() - 35.0 / 3.0).abs() < 1e-9);
        assert_eq!(d["rate"], 2.0);
    }

    #[test]
    fn connection_stats_have_rabbitmqs_fields() {
        let s = Sampler::new();
        let mut a = ShardStats::default();
        let totals = ConnTotals {
            recv_oct: 1000,
            recv_cnt: 2,
            ..Default::default()
        };
        a.conns.push((ConnId(7), "/".into(), totals));
        s.record(0, std::slice::from_ref(&a));
        a.conns[0].2.recv_oct = 6000;
        s.record(5000, &[a]);
        let c = s.connection_stats(ConnId(7)).unwrap();
        assert_eq!(c["recv_oct"], 6000);
        assert_eq!(c["recv_oct_details"]["rate"], 1000.0);
        assert_eq!(c["send_cnt"], 0);
        assert!(s.connection_stats(ConnId(8)).is_none());
        assert_eq!(s.vhost_totals("/").unwrap()["recv_oct"], 6000);
    }
}
