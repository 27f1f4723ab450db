//! The management plane: the control socket `warren ctl` (and a
//! `rabbitmqctl` link) talks to, the HTTP API, page and Prometheus
//! endpoint, and RabbitMQ's definitions format. It sits
//! above the shards and asks them through typed calls, like a connection.
pub mod certs;
pub mod control;
pub mod definitions;
pub mod definitions_json;
pub mod http;
mod listings;
pub mod ops;
pub mod prometheus;
pub mod proto;
pub mod stats;
mod status;

pub use status::total_memory;
mod verbs;
