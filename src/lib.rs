//! Warren: a thread-per-core AMQP 0-9-1 broker.
//!
//! Layers, bottom up (see ARCHITECTURE.md; `tools/check-module-cycles.py`
//! keeps the imports between them a tree):
//! - [`ids`]: small identifiers every layer names (shards, queues, channels...).
//! - [`metrics`]: per-shard counter cells, summed on demand by `mgmt`.
//! - [`daemon`]: running under systemd: the `sd_notify` readiness messages.
//! - [`codec`]: zero-copy AMQP frame and method codec over `bytes`.
//! - [`error`]: AMQP errors with RabbitMQ's reply codes and texts.
//! - [`runtime`]: the glommio runtime, its only importer: executors, sockets,
//!   cross-shard mailboxes, timers, io_uring file operations.
//! - [`routing`]: exchange types, the compiled topic trie and headers matching.
//! - [`queue`]: a queue's messages, consumers and unacked deliveries (pure, no I/O).
//! - [`storage`]: the definitions log and the per-shard message log.
//! - [`access`]: users, password hashes and permissions (part of the replica).
//! - [`topology`]: the replicated topology and the leader's decisions on it.
//! - [`alarm`]: the disk alarm that blocks publishers when space runs low.
//! - [`shard`]: the per-shard broker: owned queues, the message path, the
//!   leader, the storage glue.
//! - [`connection`]: one client connection and its channels.
//! - [`mgmt`]: the management plane: the control socket `warren ctl` talks to.
//! - [`server`]: start-up: one shard per executor.
pub mod access;
pub mod alarm;
pub mod codec;
pub mod config;
pub mod connection;
pub mod ctl;
pub mod daemon;
pub mod error;
pub mod ids;
pub mod metrics;
pub mod mgmt;
pub mod queue;
pub mod routing;
pub mod runtime;
pub mod server;
pub mod shard;
pub mod storage;
pub mod topology;
