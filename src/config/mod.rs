//! Broker configuration: the command line over the configuration file
//! (`file`, RabbitMQ's format) over the defaults (`resolve`), and the
//! hidden failpoints tests use to make the broker fail on purpose.
pub mod file;
pub mod resolve;
pub mod tls;

use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct Config {
    /// `None`: every interface, IPv6 and IPv4 on one dual-stack socket.
    pub bind: Option<IpAddr>,
    pub port: u16,
    pub shards: usize,
    pub data_dir: PathBuf,
    pub storage: StorageConfig,
    /// How long an idle shard polls for work before it sleeps (only when
    /// every shard has its own CPU).
    pub spin_before_park: std::time::Duration,
    /// How long a call between shards may take before it fails (541).
    pub call_timeout: std::time::Duration,
    /// The user, vhost and permissions a fresh broker starts with, and
    /// who may log in only from loopback.
    pub access: AccessConfig,
    /// What the broker proposes in connection.tune.
    pub limits: ConnLimits,
    /// A definitions file (RabbitMQ's JSON) imported at boot.
    pub load_definitions: Option<PathBuf>,
    /// The management HTTP API and page (`None`: off, port 0).
    pub management: Option<std::net::SocketAddr>,
    /// The Prometheus endpoint (`None`: off, port 0).
    pub prometheus: Option<std::net::SocketAddr>,
    /// Where the memory alarm goes off.
    pub memory_watermark: MemoryWatermark,
    /// The AMQPS listener (`None`: no TLS).
    pub tls: Option<TlsConfig>,
    /// The management API and page over HTTPS (`management.ssl.*`;
    /// `None`: off).
    pub management_tls: Option<TlsConfig>,
    /// The Prometheus endpoint over HTTPS (`prometheus.ssl.*`; `None`: off).
    pub prometheus_tls: Option<TlsConfig>,
}

/// RabbitMQ's `ssl_options.verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslVerify {
    /// `verify_peer`: ask for a client certificate and check it against
    /// `cacertfile`.
    Peer,
    /// `verify_none`: ask for none.
    None,
}

/// A TLS version rustls speaks (`ssl_options.versions.<n>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// `tlsv1.2`
    Tls12,
    /// `tlsv1.3`
    Tls13,
}

/// RabbitMQ's `ssl_cert_login_from`: which part of a client certificate
/// names the user EXTERNAL logs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CertLoginFrom {
    /// The subject's distinguished name, as RabbitMQ writes it
    /// (`CN=client,O=Example,C=US`).
    #[default]
    DistinguishedName,
    /// The subject's common name (CN).
    CommonName,
}

/// A SASL mechanism `connection.start` may offer (RabbitMQ's
/// `auth_mechanisms.<n>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMechanism {
    Plain,
    AmqPlain,
    /// Offered only on a TLS connection with a verified client
    /// certificate.
    External,
}

impl AuthMechanism {
    /// The name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            AuthMechanism::Plain => "PLAIN",
            AuthMechanism::AmqPlain => "AMQPLAIN",
            AuthMechanism::External => "EXTERNAL",
        }
    }
}

/// A TLS listener (AMQPS, or HTTPS for the management API or
/// Prometheus) and its settings, as resolved (the files are read when the
/// broker starts and on a reload, see `config::tls`).
#[derive(Debug, Clone, PartialEq)]
pub struct TlsConfig {
    /// The keys these settings come from (`ssl_options`, `management.ssl`,
    /// `prometheus.ssl`), for error messages.
    pub keys: &'static str,
    /// `None`: every interface.
    pub bind: Option<IpAddr>,
    pub port: u16,
    pub cacertfile: Option<PathBuf>,
    pub certfile: PathBuf,
    pub keyfile: PathBuf,
    pub verify: SslVerify,
    pub fail_if_no_peer_cert: bool,
    /// Offered versions, never empty.
    pub versions: Vec<TlsVersion>,
    pub handshake_timeout: std::time::Duration,
}

/// RabbitMQ's `vm_memory_high_watermark`: publishers are blocked while the
/// broker's resident memory is above it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MemoryWatermark {
    /// A fraction of the memory available to the process (the machine's,
    /// or a smaller cgroup limit): `.relative`, 0.4 by default as in
    /// RabbitMQ 3.x.
    Relative(f64),
    /// Bytes: `.absolute`.
    Absolute(u64),
}

impl Default for MemoryWatermark {
    fn default() -> Self {
        MemoryWatermark::Relative(0.4)
    }
}

impl MemoryWatermark {
    /// The limit in bytes for `available` bytes of memory.
    pub fn limit(self, available: u64) -> u64 {
        match self {
            MemoryWatermark::Relative(r) => (available as f64 * r) as u64,
            MemoryWatermark::Absolute(b) => b,
        }
    }
}

/// RabbitMQ's `default_user`, `default_pass`, `default_vhost`,
/// `default_user_tags`, `default_permissions` and `loopback_users`.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessConfig {
    pub default_user: String,
    pub default_pass: String,
    pub default_vhost: String,
    pub default_user_tags: Vec<String>,
    /// configure, write, read.
    pub default_permissions: [String; 3],
    /// Users who may only log in from a loopback address.
    pub loopback_users: Vec<String>,
    /// Where EXTERNAL finds the user name in a client certificate.
    pub cert_login_from: CertLoginFrom,
    /// The mechanisms offered, in this order (EXTERNAL only with a
    /// verified client certificate); a client choosing another is refused.
    pub auth_mechanisms: Vec<AuthMechanism>,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            default_user: "guest".into(),
            default_pass: "guest".into(),
            default_vhost: "/".into(),
            default_user_tags: vec!["administrator".into()],
            default_permissions: [".*".into(), ".*".into(), ".*".into()],
            loopback_users: vec!["guest".into()],
            cert_login_from: CertLoginFrom::default(),
            // RabbitMQ offers EXTERNAL only once `auth_mechanisms` lists
            // it (with its plugin enabled); Warren has the mechanism built
            // in and offers it wherever a certificate was verified.
            auth_mechanisms: vec![
                AuthMechanism::Plain,
                AuthMechanism::AmqPlain,
                AuthMechanism::External,
            ],
        }
    }
}

/// RabbitMQ's `heartbeat`, `frame_max` and `channel_max`: what the broker
/// proposes in connection.tune (and the most it accepts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Seconds; 0 turns heartbeats off.
    pub heartbeat: u16,
    pub frame_max: u32,
    pub channel_max: u16,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            heartbeat: 60,
            frame_max: 131_072,
            channel_max: 2047,
        }
    }
}

/// Test hooks, off unless hidden `warren serve` flags set them: the ways
/// a test makes the broker fail on purpose.
#[derive(Debug, Default, Clone)]
pub struct Failpoints {
    /// This shard never answers calls.
    pub stall_shard: Option<u16>,
    /// Declaring a queue of this name panics (the panic policy's test).
    pub panic_on_queue: Option<String>,
}

static FAILPOINTS: std::sync::OnceLock<Failpoints> = std::sync::OnceLock::new();

/// Sets the process's failpoints (once, at start-up).
pub fn set_failpoints(f: Failpoints) {
    let _ = FAILPOINTS.set(f);
}

/// The process's failpoints: none unless [`set_failpoints`] said so.
pub fn failpoints() -> &'static Failpoints {
    FAILPOINTS.get_or_init(Failpoints::default)
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub sync: SyncMode,
    /// Size of each message-log segment file, in bytes.
    pub segment_size: u64,
    /// Below this many free bytes on the data directory's file system,
    /// publishers are blocked (RabbitMQ's `disk_free_limit`).
    pub disk_free_limit: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            sync: SyncMode::Fsync,
            segment_size: 32 << 20,
            disk_free_limit: 50_000_000,
        }
    }
}

/// When a persistent message counts as stored (and is confirmed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncMode {
    /// After an fdatasync covering its record (group commit). The default.
    Fsync,
    /// After its record is in the page cache; the kernel writes it back.
    /// RabbitMQ classic queues behave this way.
    Os,
}

/// Parses a byte size: `1048576`, `64MiB`, `50MB`, `2G`, `512k`.
/// `--vm-memory-high-watermark`: a fraction of available memory (`0.4`)
/// or a size (`512MiB`, `1000000000`).
pub fn parse_watermark(s: &str) -> Result<MemoryWatermark, String> {
    if s.contains('.') || s == "0" || s == "1" {
        match s.parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => return Ok(MemoryWatermark::Relative(r)),
            _ => {
                return Err(format!(
                    "'{s}' is neither a fraction from 0 to 1 nor a size"
                ))
            }
        }
    }
    parse_size(s).map(MemoryWatermark::Absolute)
}

pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size (e.g. 64MiB, 50MB, 1048576)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        other => return Err(format!("unknown size unit '{other}' in '{s}'")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size '{s}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("50MB"), Ok(50_000_000));
        assert_eq!(parse_size("2g"), Ok(2_000_000_000));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("MB").is_err());
    }
}
