//! What the management plane asks every shard: its connections and
//! channels, its queues' figures, and the operator's closes and app
//! stop/start. Each is a [`Call`] answered from the shard's own state.
use futures_lite::future::BoxedLocal;
use std::net::SocketAddr;
use std::rc::Rc;

use super::{Call, Shard};
use crate::codec::{FieldTable, ShortStr};
use crate::error::AmqpResult;
use crate::ids::{ChannelRef, ConnId, QueueId, ShardId};

/// Where a connection is, as `list_connections` shows its `state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// In the handshake.
    Starting,
    /// Open.
    Running,
    /// Stopped by a resource alarm.
    Blocked,
    /// Closing.
    Closing,
}

impl ConnState {
    /// RabbitMQ's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::Starting => "starting",
            ConnState::Running => "running",
            ConnState::Blocked => "blocked",
            ConnState::Closing => "closing",
        }
    }
}

/// One connection, as a management listing shows it.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The connection.
    pub id: ConnId,
    /// Its shard.
    pub shard: ShardId,
    /// The logged-in user (empty before login).
    pub user: String,
    /// Its vhost (empty before connection.open).
    pub vhost: String,
    /// The client's address.
    pub peer: Option<SocketAddr>,
    /// The broker's end.
    pub local: Option<SocketAddr>,
    /// Its state.
    pub state: ConnState,
    /// When it was accepted, in milliseconds since the Unix epoch.
    pub connected_at_ms: u64,
    /// What the client said about itself in start-ok.
    pub client_properties: FieldTable,
    /// The SASL mechanism it logged in with.
    pub auth_mechanism: String,
    /// Over TLS: its version as RabbitMQ names it (`tlsv1.3`); `None` for
    /// a plain connection.
    pub ssl_protocol: Option<&'static str>,
    /// The client certificate's subject DN (empty without one).
    pub peer_cert_subject: String,
    /// Negotiated limits.
    pub frame_max: u32,
    /// Negotiated heartbeat in seconds.
    pub heartbeat: u16,
    /// Negotiated channel_max.
    pub channel_max: u16,
    /// Its open channels.
    pub channels: Vec<ChannelInfo>,
    /// Its traffic and publish counts so far.
    pub stats: crate::metrics::ConnTotals,
}

/// One channel of a connection.
#[derive(Debug, Clone)]
pub struct ChannelInfo {
    /// Its number.
    pub number: u16,
    /// Consumers on it.
    pub consumers: u32,
    /// Deliveries not yet acknowledged.
    pub unacked: u32,
    /// basic.qos prefetch for new consumers (per consumer).
    pub prefetch: u16,
    /// basic.qos global prefetch.
    pub global_prefetch: u32,
    /// In confirm mode.
    pub confirm: bool,
    /// Publishes not yet confirmed (confirm mode).
    pub unconfirmed: u32,
    /// In tx mode.
    pub transactional: bool,
}

/// One consumer, as its queue knows it.
#[derive(Debug, Clone)]
pub struct ConsumerInfo {
    /// Its tag.
    pub tag: ShortStr,
    /// Its channel.
    pub channel: ChannelRef,
    /// Not no-ack.
    pub ack_required: bool,
    /// Exclusive consumer.
    pub exclusive: bool,
    /// Its prefetch (0: none).
    pub prefetch: u32,
    /// basic.consume's arguments.
    pub arguments: FieldTable,
    /// Gets messages, or waits to be the single active consumer
    /// (RabbitMQ's `active` and `activity_status`).
    pub activity: crate::queue::ConsumerActivity,
}

/// One owned queue's figures.
#[derive(Debug, Clone)]
pub struct QueueInfo {
    /// The queue.
    pub id: QueueId,
    /// Ready messages.
    pub ready: u32,
    /// Delivered, not yet acknowledged.
    pub unacked: u32,
    /// Bytes of message bodies held in memory.
    pub memory: u64,
    /// Its consumers.
    pub consumers: Vec<ConsumerInfo>,
    /// Its message counts so far.
    pub counters: crate::metrics::QueueCounters,
}

/// Lists this shard's connections.
pub struct ListConnections;

/// Figures of the queues among these that this shard owns.
pub struct ListQueues(pub Vec<QueueId>);

/// This shard's counters for metrics and message rates: answers
/// [`ShardStats`]. Gathered in one synchronous step from plain cells.
pub struct GatherStats;

/// One queue's counters, as its owner has them.
#[derive(Debug, Clone)]
pub struct QueueStatsInfo {
    /// The queue.
    pub id: QueueId,
    /// Its vhost.
    pub vhost: ShortStr,
    /// Its name.
    pub name: ShortStr,
    /// Ready messages now.
    pub ready: u32,
    /// Unacknowledged messages now.
    pub unacked: u32,
    /// What it did so far.
    pub counters: crate::metrics::QueueCounters,
}

/// One exchange's counts on one shard.
#[derive(Debug, Clone)]
pub struct ExchangeStatsInfo {
    /// Its vhost.
    pub vhost: ShortStr,
    /// Its name (`""`: the default exchange).
    pub name: ShortStr,
    /// Publishes to it from this shard's clients.
    pub counters: crate::metrics::ExchangeTotals,
}

/// What [`GatherStats`] answers.
#[derive(Debug, Clone, Default)]
pub struct ShardStats {
    /// The shard.
    pub shard: usize,
    /// Its own counters.
    pub totals: crate::metrics::ShardTotals,
    /// Its queues' counters, with those of the queues deleted so far.
    pub queue_totals: crate::metrics::QueueCounters,
    /// Mesh batches it sent.
    pub mesh_batches_sent: u64,
    /// Time its executor spent running tasks.
    pub busy: std::time::Duration,
    /// Its open connections.
    pub connections: u32,
    /// Its channels: open ones, over its connections.
    pub channels: u32,
    /// Consumers on its queues.
    pub consumers: u32,
    /// The queues it owns.
    pub queues: Vec<QueueStatsInfo>,
    /// Exchanges published to from this shard.
    pub exchanges: Vec<ExchangeStatsInfo>,
    /// Its connections' traffic counts.
    /// Each with its vhost (empty before connection.open).
    pub conns: Vec<(ConnId, String, crate::metrics::ConnTotals)>,
}

/// Which connections an operator's close is for.
#[derive(Debug, Clone)]
pub enum CloseWhich {
    /// One connection.
    One(ConnId),
    /// Every connection on the shard.
    All,
}

/// Closes connections with connection.close `code` and `text` (320
/// CONNECTION_FORCED from an operator); answers how many.
pub struct CloseConnections {
    /// Which.
    pub which: CloseWhich,
    /// Reply code.
    pub code: u16,
    /// Reply text.
    pub text: String,
}

/// `stop_app` (false) and `start_app` (true) on one shard: stop or resume
/// accepting AMQP connections; stopping also closes the open ones.
pub struct SetAppRunning(pub bool);

fn ready<T: Send + 'static>(v: T) -> BoxedLocal<AmqpResult<T>> {
    Box::pin(std::future::ready(Ok(v)))
}

impl Call for ListConnections {
    type Output = Vec<ConnInfo>;
    fn run(self, shard: Rc<Shard>) -> BoxedLocal<AmqpResult<Vec<ConnInfo>>> {
        let conns: Vec<_> = shard.conns.borrow().values().cloned().collect();
        ready(conns.iter().map(|c| c.info()).collect())
    }
}

impl Call for ListQueues {
    type Output = Vec<QueueInfo>;
    fn run(self, shard: Rc<Shard>) -> BoxedLocal<AmqpResult<Vec<QueueInfo>>> {
        let queues = shard.queues.borrow();
        let out = self
            .0
            .iter()
            .filter_map(|id| queues.get(id))
            .map(|oq| QueueInfo {
                id: oq.meta.id,
                ready: oq.queue.message_count(),
                unacked: oq.queue.unacked_count(),
                memory: oq.queue.ready_bytes(),
                counters: *oq.queue.counters(),
                consumers: oq
                    .queue
                    .consumers()
                    .map(|c| ConsumerInfo {
                        tag: c.tag.clone(),
                        channel: c.channel,
                        ack_required: !c.no_ack,
                        exclusive: c.exclusive,
                        prefetch: c.prefetch,
                        arguments: c.arguments.clone(),
                        activity: oq.queue.consumer_activity(c.id),
                    })
                    .collect(),
            })
            .collect();
        ready(out)
    }
}

impl Call for GatherStats {
    type Output = ShardStats;
    fn run(self, shard: Rc<Shard>) -> BoxedLocal<AmqpResult<ShardStats>> {
        let mut out = ShardStats {
            shard: shard.id.index(),
            totals: shard.metrics.snapshot(),
            queue_totals: shard.retired.get(),
            mesh_batches_sent: shard.mailbox.batches_sent(),
            busy: crate::runtime::busy_time(),
            ..Default::default()
        };
        for oq in shard.queues.borrow().values() {
            let counters = *oq.queue.counters();
            out.queue_totals.add(&counters);
            out.consumers += oq.queue.consumer_count();
            out.queues.push(QueueStatsInfo {
                id: oq.meta.id,
                vhost: oq.vhost.clone(),
                name: oq.meta.name.clone(),
                ready: oq.queue.message_count(),
                unacked: oq.queue.unacked_count(),
                counters,
            });
        }
        let conns: Vec<_> = shard.conns.borrow().values().cloned().collect();
        for c in conns {
            let info = c.info();
            out.connections += 1;
            out.channels += info.channels.len() as u32;
            out.conns.push((info.id, info.vhost, info.stats));
        }
        shard.with_topology(|t| {
            for (vname, v) in &t.vhosts {
                let default = (&ShortStr::new(), v.default_exchange.snapshot());
                let named = v.routing.exchange_counters().filter(|(n, _)| !n.is_empty());
                for (name, counters) in named.chain(std::iter::once(default)) {
                    if counters.publish_in > 0 {
                        out.exchanges.push(ExchangeStatsInfo {
                            vhost: vname.clone(),
                            name: name.clone(),
                            counters,
                        });
                    }
                }
            }
        });
        ready(out)
    }
}

impl Call for CloseConnections {
    type Output = u32;
    fn run(self, shard: Rc<Shard>) -> BoxedLocal<AmqpResult<u32>> {
        ready(shard.close_connections(&self.which, self.code, &self.text))
    }
}

impl Call for SetAppRunning {
    type Output = ();
    fn run(self, shard: Rc<Shard>) -> BoxedLocal<AmqpResult<()>> {
        shard.app_running.set(self.0);
        shard.app_changed.notify();
        if !self.0 {
            shard.close_connections(
                &CloseWhich::All,
                crate::codec::reply_code::CONNECTION_FORCED,
                "broker forced connection closure with reason 'shutdown'",
            );
        }
        ready(())
    }
}

impl Shard {
    /// Closes local connections; answers how many.
    pub(super) fn close_connections(&self, which: &CloseWhich, code: u16, text: &str) -> u32 {
        let conns: Vec<_> = match which {
            CloseWhich::All => self.conns.borrow().values().cloned().collect(),
            CloseWhich::One(id) => self.conns.borrow().get(id).cloned().into_iter().collect(),
        };
        for c in &conns {
            c.force_close(code, text.to_string());
        }
        conns.len() as u32
    }

    /// Closes local connections in `vhost` (it was deleted), or of `user`
    /// (deleted), with RabbitMQ's 320 texts.
    pub(super) fn close_deleted(&self, vhost: Option<&str>, user: Option<&str>) {
        let conns: Vec<_> = self.conns.borrow().values().cloned().collect();
        for c in conns {
            let info = c.info();
            let text = if vhost.is_some_and(|v| v == info.vhost) {
                format!("vhost '{}' is deleted", info.vhost)
            } else if user.is_some_and(|u| u == info.user) {
                format!("user '{}' is deleted", info.user)
            } else {
                continue;
            };
            c.force_close(crate::codec::reply_code::CONNECTION_FORCED, text);
        }
    }

    /// Whether the AMQP side runs (`stop_app` stops it).
    pub fn app_running(&self) -> bool {
        self.app_running.get()
    }

    /// Waits until `stop_app` or `start_app` changes [`Shard::app_running`].
    pub async fn app_changed(&self) {
        self.app_changed.wait().await
    }
}

#[cfg(test)]
mod tests {
    //! Two real shards on glommio executors: the counters move where the
    //! work happens and [`GatherStats`] answers them.
    use super::*;
    use crate::codec::ShortStr;
    use crate::ids::QueueId;
    use crate::queue::{MessageData, Settle};
    use crate::runtime::ShardStart;
    use crate::shard::{PublishRef, ShardMsg, ShardOptions, ShardStore};
    use crate::topology::{owner_shard, QueueMeta, TopologyChange};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    /// A queue name of `/` that shard `owner` of 2 owns.
    fn name_on(owner: usize) -> String {
        (0..)
            .map(|i| format!("met-q{i}"))
            .find(|n| owner_shard("/", n, 2).index() == owner)
            .unwrap()
    }

    fn meta(id: u64, name: &str) -> QueueMeta {
        QueueMeta {
            id: QueueId(id),
            owner_shard: owner_shard("/", name, 2),
            name: name.into(),
            durable: false,
            exclusive: None,
            auto_delete: false,
            arguments: Default::default(),
        }
    }

    #[test]
    #[ignore = "glommio 0.9 now and then leaves a shard of this in-process two-shard run asleep past its timer (about 1 run in 10 here); tests/metrics_counters.rs covers the counters; run with --ignored"]
    fn counters_move_with_publish_get_and_ack() {
        let dir = std::env::temp_dir().join(format!("warren-met-{}", std::process::id()));
        let memlock = crate::runtime::preflight().expect("glommio can start");
        let done = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<Vec<ShardStats>>> = Arc::default();
        let (d, s, dir2) = (done.clone(), seen.clone(), dir.clone());
        // The broker runs on a thread of its own and the test reads what
        // shard 0 gathered as soon as it is there: glommio 0.9 now and then
        // leaves the idle shard asleep past its timer once the work is
        // done (see shared notes), which must not hang the suite.
        let broker = std::thread::spawn(move || {
            crate::runtime::run(
                2,
                memlock,
                std::time::Duration::ZERO,
                move |start: ShardStart<ShardMsg>| async move {
                    let id = start.id;
                    let (log, _, _) = crate::storage::log::MessageLog::open(
                        &dir2.join(id.to_string()),
                        1 << 20,
                        |_| true,
                    )
                    .unwrap();
                    let store = ShardStore::new(log, Default::default());
                    let shard = Shard::new(
                        ShardId::from_index(id),
                        2,
                        start.mailbox,
                        store,
                        QueueId(1),
                        ShardOptions {
                            call_timeout: std::time::Duration::from_secs(5),
                            stall_calls: false,
                            access: Default::default(),
                            limits: Default::default(),
                        },
                    );
                    let receiver = shard.clone();
                    start.inbox.serve(move |batch| receiver.handle_batch(batch));
                    let (local, remote) = (name_on(0), name_on(1));
                    shard.apply_change(&TopologyChange::VhostAdded("/".into()));
                    shard.apply_change(&TopologyChange::QueueAdded("/".into(), meta(1, &local)));
                    shard.apply_change(&TopologyChange::QueueAdded("/".into(), meta(2, &remote)));
                    if id != 0 {
                        while !d.load(Ordering::SeqCst) {
                            crate::runtime::sleep(std::time::Duration::from_millis(5)).await;
                        }
                        return;
                    }
                    let from = PublishRef {
                        ch: shard.channel_ref(ConnId(1), 1, 1),
                        seq: None,
                    };
                    for key in [&local, &remote, &remote, &"nowhere".to_string()] {
                        let msg = Arc::new(MessageData {
                            exchange: ShortStr::new(),
                            routing_key: key.as_str().into(),
                            raw_properties: Default::default(),
                            body: bytes::Bytes::from_static(b"m"),
                            persistent: false,
                            expiration_ms: None,
                            priority: 0,
                        });
                        shard.publish("/", "", key, None, &msg, from);
                    }
                    shard.pump();
                    // A get with ack and its ack, on the other shard's queue.
                    let got = shard
                        .call(
                            ShardId::from_index(1),
                            crate::shard::GetMessage {
                                queue: QueueId(2),
                                holder: from.ch,
                                no_ack: false,
                            },
                        )
                        .await
                        .unwrap()
                        .unwrap();
                    let q = crate::ids::QueueRef {
                        id: QueueId(2),
                        owner: ShardId::from_index(1),
                    };
                    shard.settle(q, vec![got.msg_id], Settle::Ack);
                    shard.pump();
                    // A call after the ack: the mesh keeps order per pair.
                    let _ = shard.call(ShardId::from_index(1), ListQueues(vec![])).await;
                    let mut all = Vec::new();
                    for to in 0..2 {
                        all.push(
                            shard
                                .call(ShardId::from_index(to), GatherStats)
                                .await
                                .unwrap(),
                        );
                    }
                    *s.lock().unwrap() = all;
                    d.store(true, Ordering::SeqCst);
                },
            )
            .unwrap();
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !done.load(Ordering::SeqCst) {
            assert!(
                !broker.is_finished() || done.load(Ordering::SeqCst),
                "the broker's shards ended before gathering the figures"
            );
            assert!(
                std::time::Instant::now() < deadline,
                "no figures within 30 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let _ = std::fs::remove_dir_all(&dir);
        let stats = seen.lock().unwrap().clone();
        assert_eq!(stats.len(), 2);
        let (a, b) = (&stats[0], &stats[1]);
        assert_eq!(a.totals.routed_local, 1);
        assert_eq!(a.totals.routed_remote, 2);
        assert!(a.mesh_batches_sent >= 1);
        assert!(b.totals.mesh_batches_received >= 1);
        assert!(a.busy > std::time::Duration::ZERO);
        assert_eq!(a.queues.len(), 1);
        assert_eq!(a.queues[0].counters.publish, 1);
        assert_eq!(b.queues.len(), 1);
        let q = &b.queues[0];
        assert_eq!(q.counters.publish, 2);
        assert_eq!(q.counters.get, 1);
        assert_eq!(q.counters.ack, 1);
        assert_eq!((q.ready, q.unacked), (1, 0));
        assert_eq!(b.queue_totals.ack, 1);
        let x = a.exchanges.iter().find(|x| x.name.is_empty()).unwrap();
        assert_eq!((x.counters.publish_in, x.counters.publish_out), (4, 3));
    }
}
