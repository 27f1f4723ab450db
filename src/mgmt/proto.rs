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
