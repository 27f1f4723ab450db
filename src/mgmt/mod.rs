//! The management plane: the control socket `warren ctl` (and a
//! `rabbitmqctl` link) talks to, and RabbitMQ's definitions format. It sits
//! above the shards and asks them through typed calls, like a connection.
pub mod proto;
