//! Exchange routing: the per-vhost routing table ([`table::RoutingTable`]),
//! the compiled topic trie ([`topic::TopicTrie`]) and headers matching
//! ([`headers::headers_match`]). RabbitMQ's behaviour is the reference; the
//! default exchange ("") is routed by the broker, not here.
#![warn(missing_docs)]

pub mod headers;
mod set;
pub mod table;
pub mod topic;

pub use crate::codec::{FieldTable, FieldValue, ShortStr};
pub use headers::{headers_match, validate_x_match};
pub use table::{Binding, Destination, ExchangeKind, RoutingTable};
pub use topic::TopicTrie;
