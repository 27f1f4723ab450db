//! Durable storage: the definitions log (durable exchanges, queues and
//! bindings) and one message log per shard (persistent messages of durable
//! queues), both made of CRC-checked records.
//!
//! - [`record`]: the record format shared by both logs.
//! - [`segment`]: segment files: preallocation, mapping, naming.
//! - [`log`]: a shard's message log: appends, liveness, compaction, sync jobs.
//! - [`recovery`]: the startup scan that rebuilds queues from a log.
//! - [`definitions`]: the definitions log, replayed into the topology.
//! - [`trouble`]: logging a failure that repeats once, not once a call.
pub mod definitions;
pub mod log;
pub mod record;
pub mod recovery;
pub mod segment;
pub mod trouble;

pub use log::{MessageLog, Stored, SyncJob};
pub use recovery::{RecoveredMsg, RecoveredQueue, RecoveryReport};

#[cfg(test)]
mod tests;
