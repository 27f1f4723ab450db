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
#[derive(Debug)]
pub struct MessageData {
    /// The exchange it was published to.
    pub exchange: ShortStr,
    /// The routing key it was published with.
    pub routing_key: ShortStr,
    /// Property flags and list, exactly as received.
    pub raw_properties: Bytes,
    /// The content body.
    pub body: Bytes,
    /// delivery_mode == 2; used by durable storage.
    pub persistent: bool,
    /// The `expiration` property as a TTL (ms), when it has a valid one.
    pub expiration_ms: Option<u32>,
    /// The `priority` property (0 when absent).
    pub priority: u8,
}

/// A message as queues hold it: one allocation however many queues it is in.
pub type Message = Arc<MessageData>;

impl MessageData {
    /// The body's length in bytes, as content headers and memory windows count it.
    pub fn body_size(&self) -> u64 {
        self.body.len() as u64
    }
}
