//! The `warren` command.
use clap::{Parser, Subcommand};
use std::net::IpAddr;
use std::path::PathBuf;

use warren::config::{parse_size, Config, StorageConfig, SyncMode};

/// Messages are allocated on the publisher's shard and freed on the
/// consumer's: glibc malloc serialises those frees on the first arena's lock.
/// mimalloc takes them through per-thread lock-free lists.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "warren",
    version,
    about = "A thread-per-core AMQP 0-9-1 broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker.
    Serve {
        /// AMQP port.
        #[arg(long, default_value_t = 5672)]
        port: u16,
        /// Address to listen on; default: every interface, IPv6 and IPv4
        /// (dual stack, as RabbitMQ). `0.0.0.0` is IPv4 only.
        #[arg(long)]
        bind: Option<IpAddr>,
        /// Number of shards (executors); default: the CPUs this process may
        /// use. More shards than CPUs run unpinned.
        #[arg(long)]
        shards: Option<usize>,
        /// Where durable state lives.
        #[arg(long, default_value = "./warren-data")]
        data_dir: PathBuf,
        /// When a persistent message is confirmed: `fsync` after an fdatasync
        /// covering it (group commit), `os` once it is written to the page
        /// cache (RabbitMQ classic-queue behaviour).
        #[arg(long, value_enum, default_value = "fsync")]
        sync: SyncMode,
        /// Size of each message-log segment file (e.g. 32MiB).
        #[arg(long, default_value = "32MiB", value_parser = parse_size)]
        segment_size: u64,
        /// Block publishers while the data directory's file system has less
        /// free space than this (e.g. 50MB, 1GB).
        #[arg(long, default_value = "50MB", value_parser = parse_size)]
        disk_free_limit: u64,
        /// Microseconds an idle shard keeps polling before it sleeps: lower
        /// latency for some CPU. 0 turns it off; ignored when there are
        /// more shards than CPUs.
        #[arg(long, default_value_t = 30)]
        spin_before_park_us: u64,
        /// Seconds a request between shards (declare, consume, get...) may
        /// take before it fails with 541 INTERNAL_ERROR (RabbitMQ's
        /// channel_operation_timeout, 15 s).
        #[arg(long, default_value_t = 15)]
        call_timeout: u64,
        /// Failpoint for tests: this shard never answers calls.
        #[arg(long, hide = true)]
        failpoint_stall_shard: Option<u16>,
        /// Failpoint for tests: declaring a queue of this name panics.
        #[arg(long, hide = true)]
        failpoint_panic_on_queue: Option<String>,
        /// Log level or tracing filter (e.g. info, debug, warren=trace).
        #[arg(long, default_value = "info")]
        log: String,
    },
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            port,
            bind,
            shards,
            data_dir,
            sync,
            segment_size,
            disk_free_limit,
            spin_before_park_us,
            call_timeout,
            failpoint_stall_shard,
            failpoint_panic_on_queue,
            log,
        } => {
            let filter = tracing_subscriber::EnvFilter::try_new(&log).unwrap_or_else(|_| {
                eprintln!("warren: invalid --log filter '{log}', using 'info'");
                tracing_subscriber::EnvFilter::new("info")
            });
            // Colour only for a terminal: journald and log files get plain text.
            use std::io::IsTerminal;
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .init();
            let shards = shards
                .unwrap_or_else(|| warren::runtime::allowed_cpus().len())
                .max(1);
            if shards > 1024 {
                eprintln!("warren: --shards {shards} is more than 1024");
                std::process::exit(2);
            }
            if !(1 << 20..1 << 32).contains(&segment_size) {
                eprintln!("warren: --segment-size must be be at least 1MiB and under 4GiB");
                std::process::exit(2);
            }
            let config = Config {
                bind,
                port,
                shards,
                data_dir,
                storage: StorageConfig {
                    sync,
                    segment_size,
                    disk_free_limit,
                },
                spin_before_park: std::time::Duration::from_micros(spin_before_park_us),
                call_timeout: std::time::Duration::from_secs(call_timeout.max(1)),
            };
            warren::config::set_failpoints(warren::config::Failpoints {
                stall_shard: failpoint_stall_shard,
                panic_on_queue: failpoint_panic_on_queue,
            });
            if let Err(e) = warren::server::run(config) {
                eprintln!("warren: {e}");
                std::process::exit(1);
            }
        }
    }
}
