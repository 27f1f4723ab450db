//! `warren-perf`: an AMQP 0-9-1 load generator in the spirit of RabbitMQ's
//! PerfTest, built to be faster than the brokers it measures.
//!
//! Data path: plain blocking sockets on std threads, one thread per producer
//! connection (plus a reader thread for its confirms and errors) and one per
//! consumer connection. Producers copy a pre-encoded publish (method +
//! header + body frames, encoded once with Warren's codec) into a large
//! buffer, patch the send timestamp into the body's first 8 bytes and write
//! the whole buffer at once. Consumers read into a 1 MiB buffer and parse
//! `basic.deliver`, header and body frames in place.
//!
//! With `--poll` the steady state runs on one thread instead, over epoll,
//! for runs with thousands of slow connections (connections are still
//! opened with blocking sockets, by a few threads).
//!
//! Subcommands: `sink` (a discard-everything AMQP server, to measure the
//! generator itself) and `idle` (hold many idle connections open).

mod client;
mod idle;
mod poll;
mod run;
mod schedule;
mod sink;
mod stream;

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use client::AmqpUri;

#[derive(Parser)]
#[command(
    name = "warren-perf",
    version,
    about = "AMQP 0-9-1 load generator (PerfTest-like) for Warren and RabbitMQ",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// A minimal AMQP server that completes the handshake, answers
    /// declarations and discards every publish (acking them in confirm
    /// mode): measures the generator's own publish rate.
    Sink(SinkArgs),
    /// Open N connections with one channel each and hold them idle.
    Idle(IdleArgs),
}

#[derive(Args, Debug, Clone)]
pub struct SinkArgs {
    /// Port to listen on.
    #[arg(long, default_value_t = 5699)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// Stop after this many seconds (0 = run until killed).
    #[arg(long, default_value_t = 0.0)]
    pub exit_after: f64,
}

#[derive(Args, Debug, Clone)]
pub struct IdleArgs {
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2F")]
    pub uri: AmqpUri,
    /// Connections to open (each with one channel).
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Seconds to hold them open once all are open.
    #[arg(long, default_value_t = 30.0)]
    pub hold: f64,
    /// Threads opening connections in parallel.
    #[arg(long, default_value_t = 8)]
    pub threads: usize,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExchangeType {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeType {
    pub fn name(self) -> &'static str {
        match self {
            ExchangeType::Direct => "direct",
            ExchangeType::Fanout => "fanout",
            ExchangeType::Topic => "topic",
            ExchangeType::Headers => "headers",
        }
    }
}

/// The load run (the default command).
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Broker URI; the vhost is percent-encoded (`%2F` is `/`).
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2F")]
    pub uri: AmqpUri,
    /// Producer connections (one channel and one thread each).
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Consumer connections (one channel, one consumer, one thread each).
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Queues; producers and consumers are assigned round-robin (producer i
    /// and consumer i use queue i mod N).
    #[arg(long, default_value_t = 1)]
    pub queues: usize,
    /// Queue names; `%d` is replaced by the queue index.
    #[arg(long, default_value = "perf-q-%d")]
    pub queue_pattern: String,
    /// Exchange to publish to; empty = the default exchange (routing key =
    /// the producer's queue). Names starting with `amq.` are not declared.
    #[arg(long, default_value = "")]
    pub exchange: String,
    /// Type of --exchange.
    #[arg(long, value_enum, default_value_t = ExchangeType::Direct)]
    pub exchange_type: ExchangeType,
    /// Routing key published with a named exchange (default: `perf-key`
    /// for direct, `perf.data.key` for topic).
    #[arg(long)]
    pub routing_key: Option<String>,
    /// Bindings to create on a named exchange. Each queue gets one binding
    /// that matches the published messages; the rest (bindings - queues)
    /// are distinct bindings that never match (topic: patterns like
    /// `nomatch17.*.key`, `nomatch18.#`, `*.nomatch19.key`; direct: keys
    /// `nomatch-N`; headers: `perf=no-N`), spread over the queues.
    #[arg(long, default_value_t = 0)]
    pub bindings: usize,
    /// Message body size in bytes (the first 8 carry the send timestamp).
    #[arg(long, default_value_t = 16)]
    pub size: usize,
    /// A queue argument for the declared queues, `KEY=VALUE` (an integer
    /// when VALUE parses as one, else a string); repeatable, e.g.
    /// `--queue-arg x-message-ttl=5000`.
    #[arg(long = "queue-arg", value_name = "KEY=VALUE")]
    pub queue_args: Vec<String>,
    /// Also declare this queue, as the dead-letter queue of the others
    /// (they get `x-dead-letter-exchange: ""` and this routing key); it
    /// is limited to 100,000 messages so a long run stays bounded.
    #[arg(long)]
    pub dead_letter_queue: Option<String>,
    /// Persistent messages (delivery_mode 2) and durable queues/exchange.
    #[arg(long)]
    pub persistent: bool,
    /// Publisher confirms with at most this many unconfirmed messages per
    /// producer; 0 = no confirms.
    #[arg(long, default_value_t = 0)]
    pub confirm: u64,
    /// Consumer prefetch (basic.qos); 0 = unlimited.
    #[arg(long, default_value_t = 0)]
    pub prefetch: u16,
    /// Manual acks, one `multiple` ack every N deliveries; 0 = no-ack
    /// (automatic acknowledgement).
    #[arg(long, default_value_t = 0)]
    pub multi_ack_every: u64,
    /// Publish rate per producer, messages/s; 0 = as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Run time in seconds (ignored when --count is given).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Messages per producer; the run ends when they are sent and the
    /// consumers have drained what arrives.
    #[arg(long)]
    pub count: Option<u64>,
    /// Write the result as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Delete the queues (and a declared exchange) at the end.
    #[arg(long)]
    pub cleanup: bool,
    /// Producer write size: messages are coalesced until this many bytes.
    #[arg(long, default_value_t = 128 * 1024)]
    pub write_buffer: usize,
    /// Free-form label copied into the JSON (e.g. broker name, scenario).
    #[arg(long)]
    pub label: Option<String>,
    /// No per-second progress lines on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// Phase-stagger rate-limited producers: producer i of N starts its
    /// ticks at i/(N*rate) s, so N producers at R msg/s each send one
    /// message every 1/(N*R) s instead of N in a burst every 1/R s.
    #[arg(long)]
    pub stagger: bool,
    /// Drive every connection from one thread with epoll once they are
    /// open (for many slow connections: S10). Plain TCP, --rate > 0 for
    /// producers, no --confirm, no --count or --expect; one write per
    /// message, at its send time (with --stagger for a smooth load).
    #[arg(long)]
    pub poll: bool,
    /// With --poll: threads opening connections in parallel (consumers
    /// first, then producers).
    #[arg(long, default_value_t = 16)]
    pub connect_threads: usize,
    /// Print `STEADY` on stdout when the timed phase starts (every
    /// connection open, consumers attached) and `END` when publishing
    /// stops, so a caller can sample the broker over the steady phase.
    #[arg(long)]
    pub markers: bool,
    /// Do not purge the queues at set-up (to consume a backlog left by an
    /// earlier run).
    #[arg(long)]
    pub no_purge: bool,
    /// End the run once the consumers have received this many messages
    /// in total (and producers with --count are done), instead of after
    /// --duration; gives up after 60 s in which nothing arrives. The
    /// consume rate is then counted up to the last delivery (e.g. the
    /// time to drain a backlog: --producers 0 --no-purge --expect N).
    #[arg(long)]
    pub expect: Option<u64>,
}

/// Process-wide time origin for the timestamps carried in message bodies.
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Prints an error and ends the process with status 1.
pub fn fatal(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("warren-perf: {what}: {e}");
    std::process::exit(1);
}

fn main() {
    now_ns();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Sink(a)) => sink::run(a),
        Some(Command::Idle(a)) => idle::run(a),
        None => run::run(cli.run),
    }
}
