//! The message as the broker stores and forwards it.
//!
//! A message is immutable once published and shared by `Arc`: a fanout to N
//! queues (on any shards) holds one body and one property block. Properties
//! are kept as the raw bytes the publisher sent so a delivery re-emits them
//! without re-encoding.
use bytes::Bytes;
use std::sync::Arc;

use crate::codec::ShortStr;

/// A published message: immutable once built, shared by every queue it
/// was routed to.
///
/// `repr(C)` keeps the fields a queue's shard reads (the body's length,
/// the TTL, the priority, the persistence flag) next to the `Arc`'s
/// counts, which its clone and drop touch anyway: the message was built
/// on the publisher's core, so every further cache line the queue's core
/// reads is a miss. Rust's own order put the TTL 128 bytes after the
/// counts.
#[derive(Debug)]
#[repr(C)]
pub struct MessageData {
    /// The content body.
    pub body: Bytes,
    /// The `expiration` property as a TTL (ms), when it has a valid one.
    pub expiration_ms: Option<u32>,
    /// The `priority` property (0 when absent).
    pub priority: u8,
    /// delivery_mode == 2; used by durable storage.
    pub persistent: bool,
    /// The exchange it was published to.
    pub exchange: ShortStr,
    /// The routing key it was published with.
    pub routing_key: ShortStr,
    /// Property flags and list, exactly as received.
    pub raw_properties: Bytes,
}

/// A message as queues hold it: one allocation however many queues it is in.
pub type Message = Arc<MessageData>;

impl MessageData {
    /// The body's length in bytes, as content headers and memory windows count it.
    pub fn body_size(&self) -> u64 {
        self.body.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    /// The fields the queue's shard reads end within 48 bytes of the
    /// data's start: with the `Arc`'s two counts before them, within the
    /// allocation's first 64 bytes.
    #[test]
    fn queue_side_fields_follow_the_counts() {
        let end = [
            offset_of!(MessageData, body) + size_of::<Bytes>(),
            offset_of!(MessageData, expiration_ms) + size_of::<Option<u32>>(),
            offset_of!(MessageData, priority) + 1,
            offset_of!(MessageData, persistent) + 1,
        ];
        assert!(end.iter().all(|&e| e <= 48), "{end:?}");
    }
}
