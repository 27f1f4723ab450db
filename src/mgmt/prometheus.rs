//! The Prometheus text exposition (format 0.0.4) of the broker's figures,
//! with rabbitmq_prometheus's metric names, types and labels, so that
//! RabbitMQ's dashboards work unchanged: `/metrics` aggregated, and
//! `/metrics/per-object` with a `{vhost, queue}` series per queue. Both
//! also carry Warren's own per-shard series (`warren_shard_…{shard}`).
//!
//! [`render`] gathers (one [`GatherStats`](crate::shard::GatherStats) and
//! the listings' `ListQueues` per shard, the node's figures from
//! `status`) into an [`Input`]; [`write`] turns an `Input` into text and
//! is pure, for tests.
use ahash::AHashMap;
use std::fmt::Write as _;
use std::rc::Rc;

use super::control::Context;
use super::stats::{self, Totals};
use crate::ids::QueueId;
use crate::metrics::QueueCounters;
use crate::shard::{Shard, ShardStats};

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// The RabbitMQ release whose metrics Warren's match.
const RABBITMQ_VERSION: &str = "3.10.8";

/// One queue's series.
#[derive(Debug, Clone, Default)]
pub struct QueueRow {
    /// Its vhost.
    pub vhost: String,
    /// Its name.
    pub name: String,
    /// Ready messages.
    pub ready: u64,
    /// Unacknowledged messages.
    pub unacked: u64,
    /// Consumers.
    pub consumers: u64,
    /// Its counters.
    pub counters: QueueCounters,
}

/// The node's own figures.
#[derive(Debug, Clone, Default)]
pub struct NodeFigures {
    /// Resident memory in bytes.
    pub rss: u64,
    /// The memory high watermark in bytes, once the memory alarm says.
    pub memory_limit: Option<u64>,
    /// Open file descriptors.
    pub open_fds: u64,
    /// Their limit.
    pub max_fds: u64,
    /// Free bytes on the data directory's file system.
    pub disk_free: u64,
    /// The free-space limit.
    pub disk_free_limit: u64,
    /// The memory alarm is set.
    pub memory_alarm: bool,
    /// The disk alarm is set.
    pub disk_alarm: bool,
    /// Seconds since the broker started.
    pub uptime_secs: u64,
}

/// Everything one exposition shows.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// The node's name.
    pub node: String,
    /// Every shard's figures.
    pub shards: Vec<ShardStats>,
    /// Every queue, by vhost and name.
    pub queues: Vec<QueueRow>,
    /// The node's figures.
    pub node_figures: NodeFigures,
}

/// The memory alarm's limit in bytes.
fn memory_limit() -> Option<u64> {
    Some(crate::alarm::memory_limit())
}

/// The exposition, gathered from every shard now. `per_object`: the
/// per-queue series of `/metrics/per-object` instead of their sums.
pub async fn render(shard: &Rc<Shard>, ctx: &Context, per_object: bool) -> String {
    let shards = stats::gather(shard).await;
    let mut counters: AHashMap<QueueId, QueueCounters> = AHashMap::new();
    for s in &shards {
        for q in &s.queues {
            counters.insert(q.id, q.counters);
        }
    }
    let mut queues = Vec::new();
    let vhosts = shard.with_topology(|t| t.vhost_names());
    for vhost in vhosts {
        // The listings' own per-shard queue figures (ListQueues).
        let Ok(rows) = super::listings::queue_infos(shard, &vhost).await else {
            continue;
        };
        for (meta, info) in rows {
            queues.push(QueueRow {
                vhost: vhost.to_string(),
                name: meta.name.to_string(),
                ready: info.as_ref().map_or(0, |i| i.ready as u64),
                unacked: info.as_ref().map_or(0, |i| i.unacked as u64),
                consumers: info.as_ref().map_or(0, |i| i.consumers.len() as u64),
                counters: counters.get(&meta.id).copied().unwrap_or_default(),
            });
        }
    }
    let (open_fds, max_fds) = super::status::file_descriptors();
    let alarms = crate::alarm::local();
    let input = Input {
        node: ctx.node.clone(),
        shards,
        queues,
        node_figures: NodeFigures {
            rss: super::status::resident_memory(),
            memory_limit: memory_limit(),
            open_fds,
            max_fds,
            disk_free: super::status::disk_free(&ctx.data_dir),
            disk_free_limit: ctx.disk_free_limit,
            memory_alarm: alarms.memory(),
            disk_alarm: alarms.disk(),
            uptime_secs: ctx.started.elapsed().as_secs(),
        },
    };
    write(&input, per_object)
}

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Untyped,
}

/// The text being written: each family's `# TYPE` and `# HELP` once,
/// then its samples.
struct Text {
    out: String,
    #[cfg(debug_assertions)]
    seen: ahash::AHashSet<&'static str>,
}

/// A label value in the text format: `\`, `"` and newlines escaped.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

impl Text {
    fn new() -> Self {
        Text {
            out: String::with_capacity(16 * 1024),
            #[cfg(debug_assertions)]
            seen: Default::default(),
        }
    }

    fn family(&mut self, name: &'static str, kind: Kind, help: &str) {
        #[cfg(debug_assertions)]
        assert!(self.seen.insert(name), "family {name} written twice");
        debug_assert!(kind != Kind::Counter || name.ends_with("_total"));
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Untyped => "untyped",
        };
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        let _ = writeln!(
            self.out,
            "# HELP {name} {}",
            help.replace('\\', "\\\\").replace('\n', "\\n")
        );
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family with one unlabelled sample.
    fn one(&mut self, name: &'static str, kind: Kind, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// A stable cluster id from the node's name, in RabbitMQ's shape.
fn cluster_id(node: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let state = ahash::RandomState::with_seeds(0x57_41_52_52, 0x45_4e, 0x43_4c, 0x55_53);
    let mut h = state.build_hasher();
    h.write(node.as_bytes());
    let a = h.finish();
    h.write_u8(0xff);
    let b = h.finish();
    format!("rabbitmq-cluster-id-{a:016x}{b:016x}")
}

/// The exposition of `input`.
pub fn write(input: &Input, per_object: bool) -> String {
    use Kind::*;
    let t: Totals = stats::sum(&input.shards);
    let n = &input.node_figures;
    let (s, q) = (&t.shards, &t.queues);
    let connections: u64 = input.shards.iter().map(|s| s.connections as u64).sum();
    let channels: u64 = input.shards.iter().map(|s| s.channels as u64).sum();
    let consumers: u64 = input.shards.iter().map(|s| s.consumers as u64).sum();
    let mut conn_totals = crate::metrics::ConnTotals::default();
    for sh in &input.shards {
        for (_, _, c) in &sh.conns {
            conn_totals.add(c);
        }
    }
    let mut w = Text::new();

    // Node and alarms.
    w.one(
        "rabbitmq_alarms_file_descriptor_limit",
        Untyped,
        "is 1 if file descriptor limit alarm is in effect",
        0,
    );
    w.one(
        "rabbitmq_alarms_free_disk_space_watermark",
        Untyped,
        "is 1 if free disk space watermark alarm is in effect",
        n.disk_alarm as u8,
    );
    w.one(
        "rabbitmq_alarms_memory_used_watermark",
        Untyped,
        "is 1 if VM memory watermark alarm is in effect",
        n.memory_alarm as u8,
    );
    w.one(
        "rabbitmq_connections_opened_total",
        Counter,
        "Total number of connections opened",
        s.connections_opened,
    );
    w.one(
        "rabbitmq_connections_closed_total",
        Counter,
        "Total number of connections closed or terminated",
        s.connections_closed,
    );
    w.one(
        "rabbitmq_channels_opened_total",
        Counter,
        "Total number of channels opened",
        s.channels_opened,
    );
    w.one(
        "rabbitmq_channels_closed_total",
        Counter,
        "Total number of channels closed",
        s.channels_closed,
    );
    w.one(
        "rabbitmq_queues_declared_total",
        Counter,
        "Total number of queues declared",
        s.queues_declared,
    );
    w.one(
        "rabbitmq_queues_created_total",
        Counter,
        "Total number of queues created",
        s.queues_created,
    );
    w.one(
        "rabbitmq_queues_deleted_total",
        Counter,
        "Total number of queues deleted",
        s.queues_deleted,
    );
    w.one(
        "rabbitmq_process_open_fds",
        Gauge,
        "Open file descriptors",
        n.open_fds,
    );
    w.one(
        "rabbitmq_process_open_tcp_sockets",
        Gauge,
        "Open TCP sockets",
        connections,
    );
    w.one(
        "rabbitmq_process_resident_memory_bytes",
        Gauge,
        "Memory used in bytes",
        n.rss,
    );
    w.one(
        "rabbitmq_disk_space_available_bytes",
        Gauge,
        "Disk space available in bytes",
        n.disk_free,
    );
    w.one(
        "rabbitmq_process_max_fds",
        Gauge,
        "Open file descriptors limit",
        n.max_fds,
    );
    w.one(
        "rabbitmq_process_max_tcp_sockets",
        Gauge,
        "Open TCP sockets limit",
        n.max_fds,
    );
    w.family(
        "rabbitmq_resident_memory_limit_bytes",
        Gauge,
        "Memory high watermark in bytes",
    );
    if let Some(limit) = n.memory_limit {
        w.sample("rabbitmq_resident_memory_limit_bytes", &[], limit);
    }
    w.one(
        "rabbitmq_disk_space_available_limit_bytes",
        Gauge,
        "Free disk space low watermark in bytes",
        n.disk_free_limit,
    );
    w.one(
        "rabbitmq_erlang_uptime_seconds",
        Gauge,
        "Node uptime",
        n.uptime_secs,
    );

    // Queues: one series per queue, or their sums.
    type QueueFigure = fn(&QueueRow) -> u64;
    let queue_families: [(&'static str, Kind, &str, QueueFigure); 5] = [
        (
            "rabbitmq_queue_messages_ready",
            Gauge,
            "Messages ready to be delivered to consumers",
            |r| r.ready,
        ),
        (
            "rabbitmq_queue_messages_unacked",
            Gauge,
            "Messages delivered to consumers but not yet acknowledged",
            |r| r.unacked,
        ),
        (
            "rabbitmq_queue_messages",
            Gauge,
            "Sum of ready and unacknowledged messages - total queue depth",
            |r| r.ready + r.unacked,
        ),
        (
            "rabbitmq_queue_consumers",
            Gauge,
            "Consumers on a queue",
            |r| r.consumers,
        ),
        (
            "rabbitmq_queue_messages_published_total",
            Counter,
            "Total number of messages published to queues",
            |r| r.counters.publish,
        ),
    ];
    for (name, kind, help, f) in queue_families {
        w.family(name, kind, help);
        if per_object {
            for r in &input.queues {
                w.sample(name, &[("vhost", &r.vhost), ("queue", &r.name)], f(r));
            }
        } else if kind == Counter {
            // The sum keeps counting what deleted queues took.
            w.sample(name, &[], q.publish);
        } else {
            w.sample(name, &[], input.queues.iter().map(f).sum::<u64>());
        }
    }

    // Channels (every channel's sums) and connections.
    w.one(
        "rabbitmq_channel_consumers",
        Gauge,
        "Consumers on a channel",
        consumers,
    );
    w.one(
        "rabbitmq_channel_messages_unacked",
        Gauge,
        "Delivered but not yet acknowledged messages",
        t.unacked,
    );
    let channel_counters: [(&'static str, &str, u64); 12] = [
        (
            "rabbitmq_channel_messages_published_total",
            "Total number of messages published into an exchange on a channel",
            s.received,
        ),
        (
            "rabbitmq_channel_messages_confirmed_total",
            "Total number of messages published into an exchange and confirmed on the channel",
            s.confirmed,
        ),
        (
            "rabbitmq_channel_messages_unroutable_returned_total",
            "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable",
            s.unroutable_returned,
        ),
        (
            "rabbitmq_channel_messages_unroutable_dropped_total",
            "Total number of messages published as non-mandatory into an exchange and dropped as unroutable",
            s.unroutable_dropped,
        ),
        (
            "rabbitmq_channel_get_ack_total",
            "Total number of messages fetched with basic.get in manual acknowledgement mode",
            q.get,
        ),
        (
            "rabbitmq_channel_get_total",
            "Total number of messages fetched with basic.get in automatic acknowledgement mode",
            q.get_no_ack,
        ),
        (
            "rabbitmq_channel_messages_delivered_ack_total",
            "Total number of messages delivered to consumers in manual acknowledgement mode",
            q.deliver,
        ),
        (
            "rabbitmq_channel_messages_delivered_total",
            "Total number of messages delivered to consumers in automatic acknowledgement mode",
            q.deliver_no_ack,
        ),
        (
            "rabbitmq_channel_messages_redelivered_total",
            "Total number of messages redelivered to consumers",
            q.redeliver,
        ),
        (
            "rabbitmq_channel_messages_acked_total",
            "Total number of messages acknowledged by consumers",
            q.ack,
        ),
        (
            "rabbitmq_channel_get_empty_total",
            "Total number of times basic.get operations fetched no message",
            s.get_empty,
        ),
        (
            "rabbitmq_connection_incoming_bytes_total",
            "Total number of bytes received on a connection",
            conn_totals.recv_oct,
        ),
    ];
    for (name, help, v) in channel_counters {
        w.one(name, Counter, help, v);
    }
    w.one(
        "rabbitmq_connection_outgoing_bytes_total",
        Counter,
        "Total number of bytes sent on a connection",
        conn_totals.send_oct,
    );
    w.one(
        "rabbitmq_connection_incoming_packets_total",
        Counter,
        "Total number of packets received on a connection",
        conn_totals.recv_cnt,
    );
    w.one(
        "rabbitmq_connection_outgoing_packets_total",
        Counter,
        "Total number of packets sent on a connection",
        conn_totals.send_cnt,
    );
    w.one(
        "rabbitmq_connection_channels",
        Gauge,
        "Channels on a connection",
        channels,
    );
    w.one(
        "rabbitmq_connections",
        Gauge,
        "Connections currently open",
        connections,
    );
    w.one(
        "rabbitmq_channels",
        Gauge,
        "Channels currently open",
        channels,
    );
    w.one(
        "rabbitmq_consumers",
        Gauge,
        "Consumers currently connected",
        consumers,
    );
    w.one(
        "rabbitmq_queues",
        Gauge,
        "Queues available",
        input.queues.len(),
    );

    // Identity.
    w.family(
        "rabbitmq_build_info",
        Untyped,
        "RabbitMQ & Erlang/OTP version info",
    );
    let warren = format!("Warren {}", env!("CARGO_PKG_VERSION"));
    w.sample(
        "rabbitmq_build_info",
        &[
            ("rabbitmq_version", RABBITMQ_VERSION),
            ("prometheus_plugin_version", env!("CARGO_PKG_VERSION")),
            ("prometheus_client_version", env!("CARGO_PKG_VERSION")),
            ("erlang_version", &warren),
        ],
        1,
    );
    w.family(
        "rabbitmq_identity_info",
        Untyped,
        "RabbitMQ node & cluster identity info",
    );
    w.sample(
        "rabbitmq_identity_info",
        &[
            ("rabbitmq_node", &input.node),
            ("rabbitmq_cluster", &input.node),
            ("rabbitmq_cluster_permanent_id", &cluster_id(&input.node)),
        ],
        1,
    );

    // The global counters.
    let amqp = [("protocol", "amqp091")];
    let classic = [
        ("protocol", "amqp091"),
        ("queue_type", "rabbit_classic_queue"),
    ];
    w.family(
        "rabbitmq_global_consumers",
        Gauge,
        "Current number of consumers",
    );
    w.sample("rabbitmq_global_consumers", &amqp, consumers);
    let global: [(&'static str, &str, bool, u64); 14] = [
        (
            "rabbitmq_global_messages_acknowledged_total",
            "Total number of messages acknowledged by consumers",
            true,
            q.ack,
        ),
        (
            "rabbitmq_global_messages_confirmed_total",
            "Total number of messages confirmed to publishers",
            false,
            s.confirmed,
        ),
        (
            "rabbitmq_global_messages_delivered_consume_auto_ack_total",
            "Total number of messages delivered to consumers using basic.consume with automatic acknowledgment",
            true,
            q.deliver_no_ack,
        ),
        (
            "rabbitmq_global_messages_delivered_consume_manual_ack_total",
            "Total number of messages delivered to consumers using basic.consume with manual acknowledgment",
            true,
            q.deliver,
        ),
        (
            "rabbitmq_global_messages_delivered_get_auto_ack_total",
            "Total number of messages delivered to consumers using basic.get with automatic acknowledgment",
            true,
            q.get_no_ack,
        ),
        (
            "rabbitmq_global_messages_delivered_get_manual_ack_total",
            "Total number of messages delivered to consumers using basic.get with manual acknowledgment",
            true,
            q.get,
        ),
        (
            "rabbitmq_global_messages_delivered_total",
            "Total number of messages delivered to consumers",
            true,
            q.deliver_get(),
        ),
        (
            "rabbitmq_global_messages_get_empty_total",
            "Total number of times basic.get operations fetched no message",
            true,
            s.get_empty,
        ),
        (
            "rabbitmq_global_messages_received_confirm_total",
            "Total number of messages received from publishers expecting confirmations",
            false,
            s.received_confirm,
        ),
        (
            "rabbitmq_global_messages_received_total",
            "Total number of messages received from publishers",
            false,
            s.received,
        ),
        (
            "rabbitmq_global_messages_redelivered_total",
            "Total number of messages redelivered to consumers",
            true,
            q.redeliver,
        ),
        (
            "rabbitmq_global_messages_routed_total",
            "Total number of messages routed to queues or streams",
            false,
            s.routed,
        ),
        (
            "rabbitmq_global_messages_unroutable_dropped_total",
            "Total number of messages published as non-mandatory into an exchange and dropped as unroutable",
            false,
            s.unroutable_dropped,
        ),
        (
            "rabbitmq_global_messages_unroutable_returned_total",
            "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable",
            false,
            s.unroutable_returned,
        ),
    ];
    for (name, help, by_queue_type, v) in global {
        w.family(name, Counter, help);
        w.sample(name, if by_queue_type { &classic } else { &amqp }, v);
    }
    w.family(
        "rabbitmq_global_publishers",
        Gauge,
        "Current number of publishers",
    );
    let publishers = input
        .shards
        .iter()
        .flat_map(|s| &s.conns)
        .filter(|(_, _, c)| c.published > 0)
        .count();
    w.sample("rabbitmq_global_publishers", &amqp, publishers);

    // Warren's own, per shard.
    type ShardFigure = fn(&ShardStats) -> f64;
    let shard_families: [(&'static str, Kind, &str, ShardFigure); 8] = [
        (
            "warren_shard_connections",
            Gauge,
            "AMQP connections open on the shard",
            |s| s.connections as f64,
        ),
        (
            "warren_shard_channels",
            Gauge,
            "Channels open on the shard's connections",
            |s| s.channels as f64,
        ),
        ("warren_shard_queues", Gauge, "Queues the shard owns", |s| {
            s.queues.len() as f64
        }),
        (
            "warren_shard_messages_routed_local_total",
            Counter,
            "Message copies routed by the shard to a queue it owns",
            |s| s.totals.routed_local as f64,
        ),
        (
            "warren_shard_messages_routed_remote_total",
            Counter,
            "Message copies routed by the shard to a queue of another shard",
            |s| s.totals.routed_remote as f64,
        ),
        (
            "warren_shard_mesh_batches_sent_total",
            Counter,
            "Batches the shard sent to other shards over the mesh",
            |s| s.mesh_batches_sent as f64,
        ),
        (
            "warren_shard_mesh_batches_received_total",
            Counter,
            "Batches the shard received from other shards over the mesh",
            |s| s.totals.mesh_batches_received as f64,
        ),
        (
            "warren_shard_reactor_busy_seconds_total",
            Counter,
            "Seconds the shard's executor spent running tasks",
            |s| s.busy.as_secs_f64(),
        ),
    ];
    for (name, kind, help, f) in shard_families {
        w.family(name, kind, help);
        for sh in &input.shards {
            let id = sh.shard.to_string();
            w.sample(name, &[("shard", &id)], f(sh));
        }
    }
    w.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::QueueStatsInfo;

    fn input() -> Input {
        let mut a = ShardStats {
            shard: 0,
            connections: 2,
            busy: std::time::Duration::from_millis(1500),
            ..Default::default()
        };
        a.totals.received = 7;
        a.totals.routed_local = 3;
        a.queue_totals.deliver = 4;
        a.queues.push(QueueStatsInfo {
            id: QueueId(1),
            vhost: "/".into(),
            name: "q".into(),
            ready: 1,
            unacked: 2,
            counters: Default::default(),
        });
        let mut b = ShardStats {
            shard: 1,
            ..Default::default()
        };
        b.totals.received = 3;
        b.totals.routed_remote = 5;
        Input {
            node: "warren@host".into(),
            shards: vec![a, b],
            queues: vec![
                QueueRow {
                    vhost: "/".into(),
                    name: "q".into(),
                    ready: 1,
                    unacked: 2,
                    consumers: 1,
                    counters: QueueCounters {
                        publish: 9,
                        ..Default::default()
                    },
                },
                QueueRow {
                    vhost: "v\"h".into(),
                    name: "a\\b\nc".into(),
                    ready: 4,
                    ..Default::default()
                },
            ],
            node_figures: NodeFigures {
                rss: 1000,
                disk_alarm: true,
                ..Default::default()
            },
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        let text = write(&input(), true);
        assert!(text
            .contains("rabbitmq_queue_messages_ready{vhost=\"v\\\"h\",queue=\"a\\\\b\\nc\"} 4\n"));
    }

    #[test]
    fn every_family_has_one_type_and_help_and_counters_end_in_total() {
        for per_object in [false, true] {
            let text = write(&input(), per_object);
            let mut types = ahash::AHashMap::new();
            let mut helps = ahash::AHashSet::new();
            let mut current = String::new();
            for line in text.lines() {
                if let Some(rest) = line.strip_prefix("# TYPE ") {
                    let (name, kind) = rest.split_once(' ').unwrap();
                    assert!(types.insert(name.to_string(), kind.to_string()).is_none());
                    assert!(["counter", "gauge", "untyped"].contains(&kind));
                    if kind == "counter" {
                        assert!(name.ends_with("_total"), "{name}");
                    }
                    current = name.to_string();
                } else if let Some(rest) = line.strip_prefix("# HELP ") {
                    let name = rest.split(' ').next().unwrap();
                    assert_eq!(name, current, "HELP follows its TYPE");
                    assert!(helps.insert(name.to_string()));
                } else {
                    let name = line.split(['{', ' ']).next().unwrap();
                    assert_eq!(name, current, "a sample under its own family: {line}");
                    let value = line.rsplit(' ').next().unwrap();
                    assert!(value.parse::<f64>().is_ok(), "{line}");
                }
            }
            assert_eq!(types.len(), helps.len());
        }
    }

    #[test]
    fn aggregated_and_per_object_series() {
        let agg = write(&input(), false);
        assert!(agg.contains("\nrabbitmq_queue_messages_ready 5\n"));
        assert!(agg.contains("\nrabbitmq_queue_messages 7\n"));
        assert!(agg.contains("\nrabbitmq_queues 2\n"));
        assert!(agg.contains("\nrabbitmq_connections 2\n"));
        assert!(agg.contains("\nrabbitmq_alarms_free_disk_space_watermark 1\n"));
        assert!(
            agg.contains("\nrabbitmq_global_messages_received_total{protocol=\"amqp091\"} 10\n")
        );
        assert!(agg.contains("\nrabbitmq_channel_messages_published_total 10\n"));
        assert!(agg.contains("\nwarren_shard_messages_routed_local_total{shard=\"0\"} 3\n"));
        assert!(agg.contains("\nwarren_shard_messages_routed_remote_total{shard=\"1\"} 5\n"));
        assert!(agg.contains("\nwarren_shard_reactor_busy_seconds_total{shard=\"0\"} 1.5\n"));
        assert!(agg.contains("rabbitmq_identity_info{rabbitmq_node=\"warren@host\",rabbitmq_cluster=\"warren@host\",rabbitmq_cluster_permanent_id=\"rabbitmq-cluster-id-"));
        assert!(agg.contains("\n# TYPE rabbitmq_build_info untyped\n"));
        assert!(!agg.contains("queue=\""));
        let per = write(&input(), true);
        assert!(
            per.contains("\nrabbitmq_queue_messages_published_total{vhost=\"/\",queue=\"q\"} 9\n")
        );
        assert!(per.contains("\nrabbitmq_queue_consumers{vhost=\"/\",queue=\"q\"} 1\n"));
        assert_eq!(cluster_id("a"), cluster_id("a"));
        assert_ne!(cluster_id("a"), cluster_id("b"));
    }
}
