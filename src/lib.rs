//! Warren: a thread-per-core AMQP 0-9-1 broker.
//!
//! Layout (see ARCHITECTURE.md):
//! - [`codec`]: zero-copy AMQP frame and method codec over `bytes`.
//! - [`routing`]: exchange types, the compiled topic trie and headers matching.
//! - [`queue`]: a queue's messages, consumers and unacked deliveries (pure, no I/O).
//! - [`shard`]: the glommio runtime: one pinned executor per core and the cross-shard mesh.
//! - [`broker`]: per-shard broker state: replicated topology, owned queues.
//! - [`connection`]: one client connection and its channels.
//! - [`alarm`]: the disk alarm that blocks publishers when space runs low.
pub mod alarm;
pub mod broker;
pub mod codec;
pub mod config;
pub mod connection;
pub mod queue;
pub mod routing;
pub mod server;
pub mod shard;
pub mod storage;
