//! The message as the broker stores and forwards it.
//!
//! A message is immutable once published and shared by `Arc`: a fanout to N
//! queues (on any shards) holds one body and one property block. Properties
//! are kept as the raw bytes the publisher sent so a delivery re-emits them
//! without re-encoding.
use bytes::Bytes;
use std::sync::Arc;

use crate::codec::ShortStr;

#[derive(Debug)]
pub struct MessageData {
    pub exchange: ShortStr,
    pub routing_key: ShortStr,
    /// Property flags and list, exactly as received.
    pub raw_properties: Bytes,
    pub body: Bytes,
    /// delivery_mode == 2; used by durable storage.
    pub persistent: bool,
}

pub type Message = Arc<MessageData>;

impl MessageData {
    pub fn body_size(&self) -> u64 {
        self.body.len() as u64
    }
}
