//! The `warren` command: `warren serve` runs the broker; `warren ctl` (or
//! the binary invoked through a link named `rabbitmqctl`) manages a running
//! one as rabbitmqctl does.
use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use warren::config::file::FileConfig;
use warren::config::resolve::{resolve, Flags, DEFAULT_CONFIG_FILE};
use warren::config::{parse_size, parse_watermark, SyncMode};

/// mimalloc (see `runtime/alloc.rs` for why, and why not through the
/// `mimalloc` crate).
#[global_allocator]
static GLOBAL: warren::runtime::alloc::MiMalloc = warren::runtime::alloc::MiMalloc;

/// Exit status for a configuration that cannot be used (EX_USAGE would be
/// 64; systemd's unit treats 2 as "do not restart").
const CONFIG_ERROR: i32 = 2;

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

// Parsed once at start: the size of the serve variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the broker.
    Serve(ServeArgs),
    /// Manage a running broker, as rabbitmqctl does (`warren ctl help`).
    Ctl {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

/// Flags override the configuration file, which overrides the defaults.
#[derive(clap::Args)]
struct ServeArgs {
    /// Configuration file in RabbitMQ's rabbitmq.conf format (default:
    /// $WARREN_CONFIG_FILE, else /etc/warren/warren.conf if it exists).
    #[arg(long)]
    config: Option<PathBuf>,
    /// AMQP port [default: 5672].
    #[arg(long)]
    port: Option<u16>,
    /// Address to listen on; default: every interface, IPv6 and IPv4
    /// (dual stack, as RabbitMQ). `0.0.0.0` is IPv4 only.
    #[arg(long)]
    bind: Option<IpAddr>,
    /// Number of shards (executors); default: the CPUs this process may
    /// use. More shards than CPUs run unpinned.
    #[arg(long)]
    shards: Option<usize>,
    /// Where durable state lives [default: $WARREN_DATA_DIR, else
    /// ./warren-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// When a persistent message is confirmed: `fsync` after an fdatasync
    /// covering it (group commit), `os` once it is written to the page
    /// cache (RabbitMQ classic-queue behaviour) [default: fsync].
    #[arg(long, value_enum)]
    sync: Option<SyncMode>,
    /// Size of each message-log segment file (e.g. 32MiB) [default: 32MiB].
    #[arg(long, value_parser = parse_size)]
    segment_size: Option<u64>,
    /// Block publishers while the data directory's file system has less
    /// free space than this (e.g. 50MB, 1GB) [default: 50MB].
    #[arg(long, value_parser = parse_size)]
    disk_free_limit: Option<u64>,
    /// Microseconds an idle shard keeps polling before it sleeps: lower
    /// latency for some CPU. 0 turns it off; ignored when there are
    /// more shards than CPUs [default: 30].
    #[arg(long)]
    spin_before_park_us: Option<u64>,
    /// Seconds a request between shards (declare, consume, get...) may
    /// take before it fails with 541 INTERNAL_ERROR (RabbitMQ's
    /// channel_operation_timeout) [default: 15].
    #[arg(long)]
    call_timeout: Option<u64>,
    /// Failpoint for tests: this shard never answers calls.
    #[arg(long, hide = true)]
    failpoint_stall_shard: Option<u16>,
    /// Failpoint for tests: declaring a queue of this name panics.
    #[arg(long, hide = true)]
    failpoint_panic_on_queue: Option<String>,
    /// Management HTTP API and web page port; 0 turns it off
    /// [default: 15672, or the file's management.tcp.port].
    #[arg(long)]
    management_port: Option<u16>,
    /// Prometheus metrics port; 0 turns it off [default: 15692, or the
    /// file's prometheus.tcp.port].
    #[arg(long)]
    prometheus_port: Option<u16>,
    /// Management API and page over HTTPS on this port, with the file's
    /// management.ssl.* certificate; 0 turns it off [default: the file's
    /// management.ssl.port (15671 when other management.ssl keys are set);
    /// none without them].
    #[arg(long)]
    management_ssl_port: Option<u16>,
    /// Prometheus over HTTPS on this port, with the file's prometheus.ssl.*
    /// certificate; 0 turns it off [default: the file's prometheus.ssl.port
    /// (15691 when other prometheus.ssl keys are set); none without them].
    #[arg(long)]
    prometheus_ssl_port: Option<u16>,
    /// Block publishers while the broker's resident memory is above this:
    /// a fraction of the available memory (0.4) or a size (512MiB)
    /// [default: 0.4, or the file's vm_memory_high_watermark.*].
    #[arg(long, value_parser = parse_watermark)]
    vm_memory_high_watermark: Option<warren::config::MemoryWatermark>,
    /// AMQPS (TLS) port; 0 turns it off [default: the file's
    /// listeners.ssl.default; none without it].
    #[arg(long)]
    ssl_port: Option<u16>,
    /// The server's PEM certificate chain [default: the file's
    /// ssl_options.certfile].
    #[arg(long)]
    ssl_certfile: Option<PathBuf>,
    /// The server's PEM private key [default: ssl_options.keyfile].
    #[arg(long)]
    ssl_keyfile: Option<PathBuf>,
    /// PEM certificates of the authorities client certificates are
    /// checked against [default: ssl_options.cacertfile].
    #[arg(long)]
    ssl_cacertfile: Option<PathBuf>,
    /// Ask for and check client certificates (`verify_peer`) or not
    /// (`verify_none`) [default: ssl_options.verify, else verify_none].
    #[arg(long, value_parser = parse_verify)]
    ssl_verify: Option<warren::config::SslVerify>,
    /// With verify_peer, refuse clients without a certificate [default:
    /// ssl_options.fail_if_no_peer_cert, else false].
    #[arg(long)]
    ssl_fail_if_no_peer_cert: Option<bool>,
    /// Log level or tracing filter (e.g. info, debug, warren=trace)
    /// [default: info, or the file's log.console.level].
    #[arg(long)]
    log: Option<String>,
}

fn parse_verify(v: &str) -> Result<warren::config::SslVerify, String> {
    match v {
        "verify_peer" => Ok(warren::config::SslVerify::Peer),
        "verify_none" => Ok(warren::config::SslVerify::None),
        _ => Err("expected verify_peer or verify_none".into()),
    }
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    // Invoked as `rabbitmqctl` (a link): the same as `warren ctl`, so
    // scripts written for RabbitMQ run unchanged.
    let invoked_as = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("warren");
    if invoked_as == "rabbitmqctl" {
        std::process::exit(warren::ctl::main("rabbitmqctl", args[1..].to_vec()));
    }
    if args.get(1).and_then(|a| a.to_str()) == Some("ctl") {
        std::process::exit(warren::ctl::main("warren ctl", args[2..].to_vec()));
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Ctl { args } => std::process::exit(warren::ctl::main("warren ctl", args)),
        Command::Serve(a) => serve(a),
    }
}

/// The configuration file to read: `--config` (which must exist), else
/// `$WARREN_CONFIG_FILE`, else the packaged default if it exists.
fn config_file(flag: Option<PathBuf>) -> Result<FileConfig, String> {
    let (path, required) = match flag {
        Some(p) => (p, true),
        None => match std::env::var_os("WARREN_CONFIG_FILE") {
            Some(p) => (PathBuf::from(p), true),
            None => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
        },
    };
    if !required && !path.exists() {
        return Ok(FileConfig::default());
    }
    warren::config::file::load(&path).map_err(|e| e.to_string())
}

fn serve(a: ServeArgs) {
    let file = config_file(a.config).unwrap_or_else(|e| {
        eprintln!("warren: {e}");
        std::process::exit(CONFIG_ERROR);
    });
    let flags = Flags {
        port: a.port,
        bind: a.bind,
        shards: a.shards,
        data_dir: a.data_dir,
        sync: a.sync,
        segment_size: a.segment_size,
        disk_free_limit: a.disk_free_limit,
        spin_before_park_us: a.spin_before_park_us,
        call_timeout: a.call_timeout,
        log: a.log,
        management_port: a.management_port,
        prometheus_port: a.prometheus_port,
        memory_watermark: a.vm_memory_high_watermark,
        ssl_port: a.ssl_port,
        ssl_certfile: a.ssl_certfile,
        ssl_keyfile: a.ssl_keyfile,
        ssl_cacertfile: a.ssl_cacertfile,
        ssl_verify: a.ssl_verify,
        ssl_fail_if_no_peer_cert: a.ssl_fail_if_no_peer_cert,
        management_ssl_port: a.management_ssl_port,
        prometheus_ssl_port: a.prometheus_ssl_port,
    };
    let resolved = resolve(
        flags,
        file,
        std::env::var_os("WARREN_DATA_DIR").map(PathBuf::from),
        warren::runtime::allowed_cpus().len(),
        warren::mgmt::total_memory(),
    )
    .unwrap_or_else(|e| {
        eprintln!("warren: {e}");
        std::process::exit(CONFIG_ERROR);
    });
    // Unreadable or mismatched certificate files are a configuration
    // error too: found now, not at the first handshake.
    if let Err(e) = warren::mgmt::certs::Sources::of(&resolved.config).build() {
        eprintln!("warren: {e}");
        std::process::exit(CONFIG_ERROR);
    }
    let log = resolved.log;
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
    warren::config::set_failpoints(warren::config::Failpoints {
        stall_shard: a.failpoint_stall_shard,
        panic_on_queue: a.failpoint_panic_on_queue,
    });
    if let Err(e) = warren::server::run(resolved.config) {
        eprintln!("warren: {e}");
        std::process::exit(1);
    }
}
