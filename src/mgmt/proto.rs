//! The control socket's messages: what `warren ctl` asks the running broker
//! and what it answers. One JSON object per line each way, over the Unix
//! socket `<data_dir>/warren-ctl.sock` (mode 0600: its file permissions
//! are the credential, as RabbitMQ's Erlang cookie is).
//!
//! The broker answers with data, never with text laid out for a terminal:
//! the client (`ctl`) prints the info line, the table, `-q`, `-s` and
//! `--formatter json` the way rabbitmqctl does.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One request: a rabbitmqctl verb and its operands.
///
/// - `vhost`: the `-p` value (`None`: the verb's default, `/`).
/// - `args`: positional operands in rabbitmqctl's order (for the `list_*`
///   verbs: the info items asked for; empty means the verb's defaults).
/// - `options`: flags such as `if_empty`, `if_unused` (`true`), or a
///   definitions document for `import_definitions` (`"definitions"`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub verb: String,
    #[serde(default)]
    pub vhost: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub options: BTreeMap<String, serde_json::Value>,
}

/// The broker's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// Rows with the named columns; values are JSON: strings, numbers,
    /// booleans, arrays (tags), objects (queue arguments, client
    /// properties).
    Table {
        columns: Vec<String>,
        rows: Vec<Vec<serde_json::Value>>,
    },
    /// Done; nothing more to print than the info line.
    Done,
    /// A document to print or write as it is (`status` as a JSON object
    /// the client lays out, `export_definitions`).
    Document(serde_json::Value),
    /// Failed: rabbitmqctl's exit code (`exit` module) and the message it
    /// prints after `Error:`.
    Error { code: i32, message: String },
}

/// rabbitmqctl's exit codes (rabbitmq_cli's `exit_codes.ex`, sysexits).
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// Bad usage: unknown verb, wrong number of operands.
    pub const USAGE: i32 = 64;
    /// Bad input data (an unreadable definitions file).
    pub const DATAERR: i32 = 65;
    /// No such user (and other missing objects).
    pub const NOUSER: i32 = 67;
    /// The broker is not running or cannot be reached.
    pub const UNAVAILABLE: i32 = 69;
    /// Internal error; also "already exists".
    pub const SOFTWARE: i32 = 70;
    /// The broker did not answer in time.
    pub const TEMPFAIL: i32 = 75;
}

/// The socket's file name in the data directory.
pub const SOCKET_NAME: &str = "warren-ctl.sock";

/// rabbitmqctl 3.10's info items for each listing verb (what `ctl`
/// accepts) and the columns each shows by default. The broker answers for
/// all of them but the few it does not track yet (see `verbs`).
pub mod items {
    pub const VHOSTS: &[&str] = &[
        "name",
        "description",
        "tags",
        "default_queue_type",
        "tracing",
        "cluster_state",
    ];

    pub const QUEUES: &[&str] = &[
        "name",
        "durable",
        "auto_delete",
        "arguments",
        "policy",
        "pid",
        "owner_pid",
        "exclusive",
        "exclusive_consumer_pid",
        "exclusive_consumer_tag",
        "messages_ready",
        "messages_unacknowledged",
        "messages",
        "messages_ready_ram",
        "messages_unacknowledged_ram",
        "messages_ram",
        "messages_persistent",
        "message_bytes",
        "message_bytes_ready",
        "message_bytes_unacknowledged",
        "message_bytes_ram",
        "message_bytes_persistent",
        "head_message_timestamp",
        "disk_reads",
        "disk_writes",
        "consumers",
        "consumer_utilisation",
        "consumer_capacity",
        "memory",
        "slave_pids",
        "synchronised_slave_pids",
        "state",
        "type",
        "leader",
        "members",
        "online",
    ];

    pub const EXCHANGES: &[&str] = &[
        "name",
        "type",
        "durable",
        "auto_delete",
        "internal",
        "arguments",
        "policy",
    ];

    pub const BINDINGS: &[&str] = &[
        "source_name",
        "source_kind",
        "destination_name",
        "destination_kind",
        "routing_key",
        "arguments",
    ];

    pub const CONNECTIONS: &[&str] = &[
        "pid",
        "name",
        "port",
        "host",
        "peer_port",
        "peer_host",
        "ssl",
        "ssl_protocol",
        "ssl_key_exchange",
        "ssl_cipher",
        "ssl_hash",
        "peer_cert_subject",
        "peer_cert_issuer",
        "peer_cert_validity",
        "state",
        "channels",
        "protocol",
        "auth_mechanism",
        "user",
        "vhost",
        "timeout",
        "frame_max",
        "channel_max",
        "client_properties",
        "recv_oct",
        "recv_cnt",
        "send_oct",
        "send_cnt",
        "send_pend",
        "connected_at",
    ];

    pub const CHANNELS: &[&str] = &[
        "pid",
        "connection",
        "name",
        "number",
        "user",
        "vhost",
        "transactional",
        "confirm",
        "consumer_count",
        "messages_unacknowledged",
        "messages_uncommitted",
        "acks_uncommitted",
        "messages_unconfirmed",
        "prefetch_count",
        "global_prefetch_count",
    ];

    pub const CONSUMERS: &[&str] = &[
        "queue_name",
        "channel_pid",
        "consumer_tag",
        "ack_required",
        "prefetch_count",
        "active",
        "activity_status",
        "arguments",
    ];

    pub const VHOSTS_DEFAULT: &[&str] = &["name"];
    pub const QUEUES_DEFAULT: &[&str] = &["name", "messages"];
    pub const EXCHANGES_DEFAULT: &[&str] = &["name", "type"];
    pub const BINDINGS_DEFAULT: &[&str] = BINDINGS;
    pub const CONNECTIONS_DEFAULT: &[&str] = &["user", "peer_host", "peer_port", "state"];
    pub const CHANNELS_DEFAULT: &[&str] =
        &["pid", "user", "consumer_count", "messages_unacknowledged"];
    pub const CONSUMERS_DEFAULT: &[&str] = &[
        "queue_name",
        "channel_pid",
        "consumer_tag",
        "ack_required",
        "prefetch_count",
        "active",
        "arguments",
    ];
}
