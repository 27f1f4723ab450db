//! Small identifiers every layer may name: shards, queues, connections,
//! channels, consumers, messages and places in a message log.
//!
//! A leaf module: it imports nothing from the crate, so the queue, the
//! storage, the topology, the shard and the connection can all agree on
//! these without importing each other.
#![warn(missing_docs)]

use std::fmt;

/// A shard's index, `0..shards`. Shard 0 is the topology leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ShardId(pub u16);

impl ShardId {
    /// The shard that decides every topology change.
    pub const LEADER: ShardId = ShardId(0);

    /// The id as an index into per-shard tables (mailboxes, counters).
    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// The shard with index `i`; shard counts fit in 16 bits.
    pub fn from_index(i: usize) -> ShardId {
        debug_assert!(i <= u16::MAX as usize);
        ShardId(i as u16)
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A queue's identity, broker-wide and never reused (the definitions log
/// keeps the next one), so a message log can key messages by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct QueueId(pub u64);

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A connection's id on its shard (unique broker-wide: see [`UniqueIds`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl ConnId {
    /// No connection: what the operator's declarations and deletions act
    /// as (`warren ctl`, definitions import). [`UniqueIds`] never makes it.
    pub const OPERATOR: ConnId = ConnId(0);
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A consumer, unique broker-wide (see [`UniqueIds`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConsumerId(pub u64);

/// A message's id within its queue: ids grow with publication order, so
/// a requeued message finds its original place by id.
pub type MsgId = u64;

/// A queue and the shard that owns it: where settlements and credit for
/// its deliveries go back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QueueRef {
    /// The queue.
    pub id: QueueId,
    /// Its owner, `owner_shard(vhost, name)`.
    pub owner: ShardId,
}

/// A connection anywhere in the broker (the owner of an exclusive queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnRef {
    /// The shard the connection lives on.
    pub shard: ShardId,
    /// The connection on that shard.
    pub conn: ConnId,
}

/// A channel anywhere in the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChannelRef {
    /// The shard the channel's connection lives on.
    pub shard: ShardId,
    /// The connection.
    pub conn: ConnId,
    /// The channel number on that connection.
    pub channel: u16,
    /// Tells a reopened channel number from the one that was closed, so a
    /// late delivery to the old one is not taken by the new one.
    pub epoch: u32,
}

/// Where a record lives in a shard's message log: segment sequence number
/// and byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Loc {
    /// The segment's sequence number.
    pub seg: u32,
    /// The record's offset in the segment.
    pub off: u32,
}

/// Hands out ids unique across the broker without coordination: the shard
/// in the top 16 bits, a per-shard counter below.
#[derive(Debug)]
pub struct UniqueIds {
    shard: ShardId,
    next: std::cell::Cell<u64>,
}

impl UniqueIds {
    /// The generator of shard `shard`.
    pub fn new(shard: ShardId) -> Self {
        UniqueIds {
            shard,
            next: std::cell::Cell::new(1),
        }
    }

    /// The next id: never returned twice by any shard.
    pub fn next(&self) -> u64 {
        let n = self.next.get();
        self.next.set(n + 1);
        ((self.shard.0 as u64) << 48) | n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_ids_carry_their_shard() {
        let a = UniqueIds::new(ShardId(0));
        let b = UniqueIds::new(ShardId(3));
        let (a1, a2, b1) = (a.next(), a.next(), b.next());
        assert_ne!(a1, a2);
        assert_ne!(a1, b1);
        assert_eq!(b1 >> 48, 3);
        assert_eq!(a2 >> 48, 0);
    }
}
