//! The message log against a model: random publishes, settlements,
//! delivery marks, purges, compactions, reclamation and restarts. After
//! every restart the recovered queues must equal the model exactly: same
//! messages, same order, same bodies, same redelivered flags. After a
//! restart, new messages take ids from where recovery says, as the
//! broker's queues do.
use ahash::AHashMap;
use bytes::Bytes;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::PathBuf;

use super::MessageLog;
use crate::codec::ShortStr;
use crate::ids::{Loc, QueueId};
use crate::queue::MessageData;

const QUEUES: u64 = 3;
const SEGMENT: u64 = 64 << 10;

#[derive(Debug, Clone)]
enum Op {
    Publish { queue: QueueId, size: usize },
    Settle { pick: usize },
    Deliver { pick: usize },
    Purge { queue: QueueId },
    Compact,
    Reclaim,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..QUEUES, 0usize..3000).prop_map(|(q, size)| Op::Publish {
            queue: QueueId(q),
            size
        }),
        5 => any::<usize>().prop_map(|pick| Op::Settle { pick }),
        2 => any::<usize>().prop_map(|pick| Op::Deliver { pick }),
        1 => (0..QUEUES).prop_map(|q| Op::Purge { queue: QueueId(q) }),
        2 => Just(Op::Compact),
        2 => Just(Op::Reclaim),
        1 => Just(Op::Restart),
    ]
}

/// A message as the model knows it.
#[derive(Debug, Clone, PartialEq)]
struct Expect {
    body: Bytes,
    redelivered: bool,
    /// Every third message has a TTL deadline; it must survive
    /// compaction and restarts.
    deadline: Option<u64>,
}

struct Harness {
    dir: PathBuf,
    log: MessageLog,
    model: BTreeMap<(QueueId, u64), Expect>,
    locs: AHashMap<(QueueId, u64), Loc>,
    next_id: AHashMap<QueueId, u64>,
}

fn body(uid: u64, id: u64, size: usize) -> Bytes {
    let mut b = format!("q{uid}-m{id}-").into_bytes();
    b.resize(size.max(b.len()), (id % 251) as u8);
    Bytes::from(b)
}

impl Harness {
    fn new(dir: PathBuf) -> Self {
        let (log, recovered, _) = MessageLog::open(&dir, SEGMENT, |_| true).unwrap();
        assert!(recovered.is_empty());
        Harness {
            dir,
            log,
            model: BTreeMap::new(),
            locs: AHashMap::new(),
            next_id: AHashMap::new(),
        }
    }

    fn nth_live(&self, pick: usize) -> Option<(QueueId, u64)> {
        if self.model.is_empty() {
            return None;
        }
        self.model.keys().nth(pick % self.model.len()).copied()
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Publish { queue, size } => {
                let id = *self.next_id.entry(queue).or_insert(0);
                self.next_id.insert(queue, id + 1);
                let msg = MessageData {
                    exchange: ShortStr::from_static("ex"),
                    routing_key: ShortStr::from(format!("rk{queue}")),
                    raw_properties: Bytes::from_static(&[0x10, 0, 2]),
                    body: body(queue.0, id, size),
                    persistent: true,
                    expiration_ms: None,
                    priority: 0,
                };
                let deadline = id.is_multiple_of(3).then_some(1_700_000_000_000 + id);
                let loc = self
                    .log
                    .append_publish(queue, id, false, deadline, &msg)
                    .unwrap();
                self.locs.insert((queue, id), loc);
                self.model.insert(
                    (queue, id),
                    Expect {
                        body: msg.body,
                        redelivered: false,
                        deadline,
                    },
                );
            }
            Op::Settle { pick } => {
                if let Some(k) = self.nth_live(pick) {
                    let loc = self.locs.remove(&k).unwrap();
                    self.log.append_settles(&[(k.0, k.1, loc)]).unwrap();
                    self.model.remove(&k);
                }
            }
            Op::Deliver { pick } => {
                if let Some(k) = self.nth_live(pick) {
                    self.log
                        .append_delivered(&[(k.0, k.1, self.locs[&k])])
                        .unwrap();
                    self.model.get_mut(&k).unwrap().redelivered = true;
                }
            }
            Op::Purge { queue } => {
                let keys: Vec<_> = self
                    .model
                    .range((queue, 0)..(QueueId(queue.0 + 1), 0))
                    .map(|(k, _)| *k)
                    .collect();
                if keys.is_empty() {
                    return;
                }
                let locs: Vec<Loc> = keys.iter().map(|k| self.locs.remove(k).unwrap()).collect();
                let up_to = self.next_id[&queue] - 1;
                self.log.append_purge(queue, up_to, &[], &locs).unwrap();
                for k in keys {
                    self.model.remove(&k);
                }
            }
            Op::Compact => {
                let Some(seg) = self.log.compaction_candidate() else {
                    return;
                };
                for (uid, id, loc) in self.log.publishes_in(seg).unwrap() {
                    if self.locs.get(&(uid, id)) == Some(&loc) {
                        let red = self.model[&(uid, id)].redelivered;
                        let new = self.log.relocate(loc, red).unwrap();
                        self.locs.insert((uid, id), new);
                    }
                }
            }
            Op::Reclaim => {
                for f in self.log.sync_job().into_iter().flat_map(|j| j.files) {
                    f.sync_data().unwrap();
                }
                let upto = self.log.appended();
                self.log.mark_synced(upto);
                for p in self.log.collect_garbage() {
                    std::fs::remove_file(p).unwrap();
                }
            }
            Op::Restart => self.restart(),
        }
    }

    fn restart(&mut self) {
        let (log, recovered, report) = MessageLog::open(&self.dir, SEGMENT, |_| true).unwrap();
        assert_eq!(report.corrupt, 0);
        self.log = log;
        let mut got = BTreeMap::new();
        self.locs.clear();
        // As the broker does: a queue's ids go on from what recovery says
        // (nothing the log still names is given out again).
        self.next_id.clear();
        for (uid, q) in &recovered {
            self.next_id.insert(*uid, q.next_id);
        }
        for (uid, q) in recovered {
            let ids: Vec<u64> = q.messages.iter().map(|m| m.id).collect();
            assert!(
                ids.windows(2).all(|w| w[0] < w[1]),
                "queue {uid} out of order"
            );
            for m in q.messages {
                let stored = self.log.read(m.loc).unwrap();
                assert_eq!((stored.uid, stored.id), (uid, m.id));
                assert_eq!(stored.msg.routing_key, format!("rk{uid}"));
                got.insert(
                    (uid, m.id),
                    Expect {
                        body: stored.msg.body,
                        redelivered: m.redelivered,
                        deadline: stored.deadline_unix_ms,
                    },
                );
                self.locs.insert((uid, m.id), m.loc);
            }
        }
        assert_eq!(got, self.model);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..160)) {
        let dir = std::env::temp_dir().join(format!(
            "warren-log-model-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let mut h = Harness::new(dir.clone());
        for op in ops {
            h.apply(op);
        }
        h.restart();
        // Everything settled: reclamation leaves no segment with data.
        let keys: Vec<_> = h.model.keys().copied().collect();
        for k in keys {
            let loc = h.locs[&k];
            h.log.append_settles(&[(k.0, k.1, loc)]).unwrap();
            h.model.remove(&k);
        }
        h.apply(Op::Reclaim);
        h.restart();
        h.apply(Op::Reclaim);
        prop_assert!(h.log.segment_count() <= 1, "{} segments left", h.log.segment_count());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
