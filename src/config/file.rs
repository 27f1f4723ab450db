//! The configuration file, in RabbitMQ's `rabbitmq.conf` format: one
//! `key = value` per line, as RabbitMQ 3.10 (cuttlefish) reads it.
//!
//! - Spaces and tabs around the key, the `=` and the value are ignored.
//! - `#` starts a comment wherever it appears, also after a value:
//!   `default_pass = ab#cd` sets `ab`, as in RabbitMQ 3.10 (its single-quote
//!   escaping arrived in 4.0). Blank lines are ignored.
//! - A key given twice: the last one wins.
//! - An unknown key, a line that is not `key = value`, or a value of the
//!   wrong type is an error naming the file and line, as RabbitMQ refuses
//!   to start on them.
//!
//! [`parse`] is pure; [`load`] reads the file and parses it. Every setting
//! lands in a typed `Option` of [`FileConfig`], `None` when the file does not
//! set it; merging with the command line and the defaults is the caller's.
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use super::{parse_size, AuthMechanism, CertLoginFrom, SslVerify, SyncMode, TlsVersion};

/// What the file sets. Each field names its key; `None`: not in the file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileConfig {
    /// `listeners.tcp.<name> = 5672 | 127.0.0.1:5672 | [::1]:5672 | ::1:5672`:
    /// the AMQP listeners, one per name (`default`, `1`, `local`...), in the
    /// order their names first appear. A bare port listens on every
    /// interface. `listeners.tcp = none` gives `Some(vec![])` (no TCP
    /// listener), whatever named listeners say, as in RabbitMQ.
    pub listeners: Option<Vec<Listener>>,
    /// `default_user`: the user created on first start (RabbitMQ: `guest`).
    pub default_user: Option<String>,
    /// `default_pass`: its password (RabbitMQ: `guest`).
    pub default_pass: Option<String>,
    /// `default_vhost`: the virtual host created on first start (`/`).
    pub default_vhost: Option<String>,
    /// `default_user_tags.<tag> = true|false`: the default user's tags, those
    /// set `true`, in first-appearance order (RabbitMQ: `administrator`).
    pub default_user_tags: Option<Vec<String>>,
    /// `default_permissions.configure`: the default user's configure
    /// permission on the default vhost, a regular expression (`.*`).
    pub default_permissions_configure: Option<String>,
    /// `default_permissions.write`: its write permission (`.*`).
    pub default_permissions_write: Option<String>,
    /// `default_permissions.read`: its read permission (`.*`).
    pub default_permissions_read: Option<String>,
    /// `loopback_users.<user> = true|false`: the users who may only log in
    /// over loopback, those set `true`. `loopback_users = none` gives
    /// `Some(vec![])` whatever the per-user keys say. As in RabbitMQ, any of
    /// these keys replaces the default list (`guest`) as a whole.
    pub loopback_users: Option<Vec<String>>,
    /// `heartbeat`: the heartbeat timeout the server proposes, in seconds;
    /// 0 turns heartbeats off (60).
    pub heartbeat: Option<u16>,
    /// `frame_max`: the largest frame the server accepts, in bytes: 0 (no
    /// limit) or at least 4096; `KB`, `MB`, `GB` suffixes are powers of 1024,
    /// as cuttlefish reads them (131072).
    pub frame_max: Option<u32>,
    /// `channel_max`: the most channels per connection; 0: no limit (2047).
    pub channel_max: Option<u16>,
    /// `disk_free_limit.absolute`: block publishers below this many free
    /// bytes on the data directory's file system (`50MB`). RabbitMQ's units:
    /// `kB`, `MB`, `GB` are powers of 1000; `k`, `M`, `G`, `KiB`, `MiB`,
    /// `GiB` powers of 1024. Wins over `.relative` when both are set.
    pub disk_free_limit_absolute: Option<u64>,
    /// `disk_free_limit.relative`: the same limit as a multiple of the
    /// machine's memory (RabbitMQ's `{mem_relative, R}`), 0 or more.
    pub disk_free_limit_relative: Option<f64>,
    /// `load_definitions`: a definitions JSON file (or directory) imported at
    /// start, as RabbitMQ's.
    pub load_definitions: Option<PathBuf>,
    /// `log.console = true|false`: log to standard error (journald under
    /// systemd).
    pub log_console: Option<bool>,
    /// `log.console.level`: the least severe level logged (`info`).
    pub log_console_level: Option<LogLevel>,
    /// `vm_memory_high_watermark.relative`: block publishers above this
    /// fraction of the machine's memory (0.4). 0 blocks them at once; values
    /// above 1.0 are read as 1.0, as RabbitMQ caps them.
    pub vm_memory_high_watermark_relative: Option<f64>,
    /// `vm_memory_high_watermark.absolute`: the same limit in bytes, in the
    /// units of `disk_free_limit.absolute`. Wins over `.relative`.
    pub vm_memory_high_watermark_absolute: Option<u64>,
    /// `management.tcp.port`: the management HTTP port (15672).
    pub management_tcp_port: Option<u16>,
    /// `management.tcp.ip`: the address it listens on (every interface).
    pub management_tcp_ip: Option<IpAddr>,
    /// `prometheus.tcp.port`: the Prometheus metrics port (15692).
    pub prometheus_tcp_port: Option<u16>,
    /// `prometheus.tcp.ip`: the address it listens on (every interface).
    pub prometheus_tcp_ip: Option<IpAddr>,
    /// `warren.shards`: how many shards (executors), 1 to 1024 (the CPUs
    /// this process may use).
    pub shards: Option<usize>,
    /// `warren.data_dir`: where durable state lives (`./warren-data`).
    pub data_dir: Option<PathBuf>,
    /// `warren.sync = fsync|os`: when a persistent message is confirmed
    /// (`fsync`).
    pub sync: Option<SyncMode>,
    /// `warren.segment_size`: size of each message-log segment file, from
    /// 1MiB up to (not including) 4GiB (`32MiB`).
    pub segment_size: Option<u64>,
    /// `warren.spin_before_park_us`: microseconds an idle shard polls before
    /// it sleeps; 0 turns it off (30).
    pub spin_before_park_us: Option<u64>,
    /// `warren.call_timeout`: seconds a call between shards may take before
    /// it fails with 541, at least 1 (15).
    pub call_timeout: Option<u64>,
    /// `listeners.ssl.<name>`: the AMQPS (TLS) listeners, in the forms of
    /// `listeners.tcp.<name>`; `listeners.ssl = none` gives `Some(vec![])`.
    /// None by default, as in RabbitMQ.
    pub ssl_listeners: Option<Vec<Listener>>,
    /// `ssl_options.cacertfile`: the PEM certificates of the authorities
    /// client certificates are checked against.
    pub ssl_cacertfile: Option<PathBuf>,
    /// `ssl_options.certfile`: the server's PEM certificate chain.
    pub ssl_certfile: Option<PathBuf>,
    /// `ssl_options.keyfile`: its PEM private key.
    pub ssl_keyfile: Option<PathBuf>,
    /// `ssl_options.verify = verify_peer | verify_none`: whether a client
    /// certificate is asked for and checked (`verify_none`).
    pub ssl_verify: Option<SslVerify>,
    /// `ssl_options.fail_if_no_peer_cert`: with `verify_peer`, refuse
    /// clients without a certificate (`false`).
    pub ssl_fail_if_no_peer_cert: Option<bool>,
    /// `ssl_options.versions.<n> = tlsv1.2 | tlsv1.3`: the TLS versions
    /// offered, in the order of their `<n>` (both).
    pub ssl_versions: Option<Vec<TlsVersion>>,
    /// `ssl_handshake_timeout`: milliseconds a TLS handshake may take
    /// (5000, as RabbitMQ).
    pub ssl_handshake_timeout: Option<u64>,
    /// `ssl_cert_login_from = distinguished_name | common_name`: the user
    /// name EXTERNAL takes from a client certificate (`distinguished_name`).
    pub ssl_cert_login_from: Option<CertLoginFrom>,
    /// `auth_mechanisms.<n> = PLAIN | AMQPLAIN | EXTERNAL`: the SASL
    /// mechanisms offered, in the order of their `<n>` (all three).
    pub auth_mechanisms: Option<Vec<AuthMechanism>>,
    /// `management.ssl.*`: the management API and page over HTTPS.
    pub management_ssl: HttpsKeys,
    /// `prometheus.ssl.*`: the Prometheus endpoint over HTTPS.
    pub prometheus_ssl: HttpsKeys,
}

/// An HTTPS listener's keys, `<prefix>.ssl.<key>` (`management.ssl.port`,
/// `prometheus.ssl.certfile`...): as `ssl_options`, plus where it listens.
/// Any of them set turns the listener on, as in RabbitMQ.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpsKeys {
    /// `.port` (15671 for the management API, 15691 for Prometheus).
    pub port: Option<u16>,
    /// `.ip`: the address (the plain listener's, else every interface).
    pub ip: Option<IpAddr>,
    pub cacertfile: Option<PathBuf>,
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
    pub verify: Option<SslVerify>,
    pub fail_if_no_peer_cert: Option<bool>,
    /// `.versions.<n>`, in the order of their `<n>`.
    pub versions: Option<Vec<TlsVersion>>,
}

impl HttpsKeys {
    /// The file names this listener at all.
    pub fn is_set(&self) -> bool {
        *self != HttpsKeys::default()
    }
}

/// One `listeners.tcp.<name>` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// The `<name>` part of the key.
    pub name: String,
    /// `None`: every interface.
    pub ip: Option<IpAddr>,
    pub port: u16,
}

/// `log.console.level`: RabbitMQ's levels, least severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Notice,
    Warning,
    Error,
    Critical,
    Alert,
    Emergency,
    /// Nothing is logged.
    None,
}

impl LogLevel {
    /// The `tracing` filter with the same effect. `tracing` has no notice,
    /// critical, alert or emergency: each maps to the nearest level that
    /// still shows it.
    pub fn tracing_filter(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info | LogLevel::Notice => "info",
            LogLevel::Warning => "warn",
            LogLevel::Error | LogLevel::Critical | LogLevel::Alert | LogLevel::Emergency => "error",
            LogLevel::None => "off",
        }
    }
}

/// Why a configuration file was refused.
#[derive(Debug)]
pub enum FileError {
    /// The file could not be read.
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A line is wrong; `line` counts from 1.
    Invalid {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            FileError::Invalid { path, line, reason } => {
                write!(f, "{}:{line}: {reason}", path.display())
            }
        }
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FileError::Io { error, .. } => Some(error),
            FileError::Invalid { .. } => None,
        }
    }
}

/// Reads and parses the file at `path`.
pub fn load(path: &Path) -> Result<FileConfig, FileError> {
    let text = std::fs::read_to_string(path).map_err(|error| FileError::Io {
        path: path.to_owned(),
        error,
    })?;
    parse(&text, path)
}

/// Parses a configuration file's text; `path` only names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<FileConfig, FileError> {
    let invalid = |line: usize, reason: String| FileError::Invalid {
        path: path.to_owned(),
        line,
        reason,
    };
    // First the syntax, keeping the last value of each key, then the
    // values: an overridden value is never checked, as in cuttlefish.
    let mut settings: Vec<Setting<'_>> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for (n, raw) in text.split('\n').enumerate() {
        let line = n + 1;
        let content = raw.split('#').next().unwrap_or("");
        let content = content.trim_matches(|c| c == ' ' || c == '\t' || c == '\r');
        if content.is_empty() {
            continue;
        }
        let Some((key, value)) = content.split_once('=') else {
            let reason = if content.starts_with("include ") || content.starts_with("include\t") {
                "'include' is not supported".to_owned()
            } else {
                format!("expected 'key = value', found '{content}'")
            };
            return Err(invalid(line, reason));
        };
        let key = key.trim_matches(|c| c == ' ' || c == '\t');
        let value = value.trim_matches(|c| c == ' ' || c == '\t');
        if !valid_key(key) {
            return Err(invalid(line, format!("invalid setting name '{key}'")));
        }
        if value.is_empty() {
            return Err(invalid(line, format!("missing value for '{key}'")));
        }
        let setting = Setting { key, value, line };
        match index.get(key) {
            Some(&i) => settings[i] = setting,
            None => {
                index.insert(key, settings.len());
                settings.push(setting);
            }
        }
    }

    let mut b = Builder::default();
    for s in &settings {
        b.apply(s).map_err(|reason| invalid(s.line, reason))?;
    }
    Ok(b.finish())
}

struct Setting<'a> {
    key: &'a str,
    value: &'a str,
    line: usize,
}

/// Cuttlefish's key syntax: dot-separated words of letters, digits, `_`, `-`.
fn valid_key(key: &str) -> bool {
    key.split('.').all(|w| {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    })
}

/// The file's settings, with the per-name entries that are only resolved
/// once every line is read.
#[derive(Default)]
struct Builder {
    config: FileConfig,
    listeners: Vec<Listener>,
    listeners_none: bool,
    ssl_listeners: Vec<Listener>,
    ssl_listeners_none: bool,
    ssl_versions: Vec<(String, TlsVersion)>,
    auth_mechanisms: Vec<(String, AuthMechanism)>,
    /// `management.ssl.versions.<n>`, `prometheus.ssl.versions.<n>`.
    https_versions: [Vec<(String, TlsVersion)>; 2],
    tags: Vec<(String, bool)>,
    loopback: Vec<(String, bool)>,
    loopback_none: bool,
}

impl Builder {
    fn apply(&mut self, s: &Setting<'_>) -> Result<(), String> {
        let (key, v) = (s.key, s.value);
        let c = &mut self.config;
        match key {
            "listeners.tcp" => self.listeners_none = none(key, v)?,
            "listeners.ssl" => self.ssl_listeners_none = none(key, v)?,
            "ssl_options.cacertfile" => c.ssl_cacertfile = Some(PathBuf::from(v)),
            "ssl_options.certfile" => c.ssl_certfile = Some(PathBuf::from(v)),
            "ssl_options.keyfile" => c.ssl_keyfile = Some(PathBuf::from(v)),
            "ssl_options.verify" => c.ssl_verify = Some(verify(key, v)?),
            "ssl_options.fail_if_no_peer_cert" => {
                c.ssl_fail_if_no_peer_cert = Some(boolean(key, v)?)
            }
            "ssl_handshake_timeout" => c.ssl_handshake_timeout = Some(at_least(key, v, 1)?),
            "ssl_cert_login_from" => c.ssl_cert_login_from = Some(cert_login_from(key, v)?),
            "default_user" => c.default_user = Some(v.to_owned()),
            "default_pass" => c.default_pass = Some(v.to_owned()),
            "default_vhost" => c.default_vhost = Some(v.to_owned()),
            "default_permissions.configure" => {
                c.default_permissions_configure = Some(regex(key, v)?)
            }
            "default_permissions.write" => c.default_permissions_write = Some(regex(key, v)?),
            "default_permissions.read" => c.default_permissions_read = Some(regex(key, v)?),
            "loopback_users" => self.loopback_none = none(key, v)?,
            "heartbeat" => c.heartbeat = Some(ranged(key, v, 0, u16::MAX)?),
            "frame_max" => c.frame_max = Some(frame_max(key, v)?),
            "channel_max" => c.channel_max = Some(ranged(key, v, 0, u16::MAX)?),
            "disk_free_limit.absolute" => c.disk_free_limit_absolute = Some(size(key, v)?),
            "disk_free_limit.relative" => c.disk_free_limit_relative = Some(float(key, v)?),
            "load_definitions" => c.load_definitions = Some(PathBuf::from(v)),
            "log.console" => c.log_console = Some(boolean(key, v)?),
            "log.console.level" => c.log_console_level = Some(log_level(key, v)?),
            "vm_memory_high_watermark.relative" => {
                c.vm_memory_high_watermark_relative = Some(float(key, v)?.min(1.0))
            }
            "vm_memory_high_watermark.absolute" => {
                c.vm_memory_high_watermark_absolute = Some(size(key, v)?)
            }
            "management.tcp.port" => c.management_tcp_port = Some(ranged(key, v, 0, u16::MAX)?),
            "management.tcp.ip" => c.management_tcp_ip = Some(ip(key, v)?),
            "prometheus.tcp.port" => c.prometheus_tcp_port = Some(ranged(key, v, 0, u16::MAX)?),
            "prometheus.tcp.ip" => c.prometheus_tcp_ip = Some(ip(key, v)?),
            "warren.shards" => c.shards = Some(ranged(key, v, 1, 1024)?),
            "warren.data_dir" => c.data_dir = Some(PathBuf::from(v)),
            "warren.sync" => c.sync = Some(sync(key, v)?),
            "warren.segment_size" => c.segment_size = Some(segment_size(key, v)?),
            "warren.spin_before_park_us" => c.spin_before_park_us = Some(at_least(key, v, 0)?),
            "warren.call_timeout" => c.call_timeout = Some(at_least(key, v, 1)?),
            _ if key.starts_with("management.ssl.") || key.starts_with("prometheus.ssl.") => {
                self.apply_https(key, v)?
            }
            _ => {
                if let Some(name) = leaf(key, "listeners.tcp.") {
                    let (ip, port) = listener(key, v)?;
                    let name = name.to_owned();
                    self.listeners.push(Listener { name, ip, port });
                } else if let Some(name) = leaf(key, "listeners.ssl.") {
                    let (ip, port) = listener(key, v)?;
                    let name = name.to_owned();
                    self.ssl_listeners.push(Listener { name, ip, port });
                } else if let Some(n) = leaf(key, "ssl_options.versions.") {
                    self.ssl_versions.push((n.to_owned(), tls_version(key, v)?));
                } else if let Some(n) = leaf(key, "auth_mechanisms.") {
                    self.auth_mechanisms
                        .push((n.to_owned(), auth_mechanism(key, v)?));
                } else if let Some(tag) = leaf(key, "default_user_tags.") {
                    self.tags.push((tag.to_owned(), boolean(key, v)?));
                } else if let Some(user) = leaf(key, "loopback_users.") {
                    self.loopback.push((user.to_owned(), boolean(key, v)?));
                } else {
                    return Err(format!("unknown setting '{key}'"));
                }
            }
        }
        Ok(())
    }

    /// A `management.ssl.*` or `prometheus.ssl.*` key.
    fn apply_https(&mut self, key: &str, v: &str) -> Result<(), String> {
        let (i, rest) = match key.strip_prefix("management.ssl.") {
            Some(rest) => (0, rest),
            None => (1, &key["prometheus.ssl.".len()..]),
        };
        let h = match i {
            0 => &mut self.config.management_ssl,
            _ => &mut self.config.prometheus_ssl,
        };
        match rest {
            "port" => h.port = Some(ranged(key, v, 1, u16::MAX)?),
            "ip" => h.ip = Some(ip(key, v)?),
            "cacertfile" => h.cacertfile = Some(PathBuf::from(v)),
            "certfile" => h.certfile = Some(PathBuf::from(v)),
            "keyfile" => h.keyfile = Some(PathBuf::from(v)),
            "verify" => h.verify = Some(verify(key, v)?),
            "fail_if_no_peer_cert" => h.fail_if_no_peer_cert = Some(boolean(key, v)?),
            _ => match rest.strip_prefix("versions.").filter(|n| !n.contains('.')) {
                Some(n) => self.https_versions[i].push((n.to_owned(), tls_version(key, v)?)),
                None => return Err(format!("unknown setting '{key}'")),
            },
        }
        Ok(())
    }

    fn finish(self) -> FileConfig {
        let mut c = self.config;
        let set = |entries: Vec<(String, bool)>| {
            entries
                .into_iter()
                .filter_map(|(name, on)| on.then_some(name))
                .collect::<Vec<_>>()
        };
        if self.listeners_none {
            c.listeners = Some(Vec::new());
        } else if !self.listeners.is_empty() {
            c.listeners = Some(self.listeners);
        }
        if self.ssl_listeners_none {
            c.ssl_listeners = Some(Vec::new());
        } else if !self.ssl_listeners.is_empty() {
            c.ssl_listeners = Some(self.ssl_listeners);
        }
        c.ssl_versions = ordered(self.ssl_versions);
        c.auth_mechanisms = ordered(self.auth_mechanisms);
        let [management, prometheus] = self.https_versions;
        c.management_ssl.versions = ordered(management);
        c.prometheus_ssl.versions = ordered(prometheus);
        if !self.tags.is_empty() {
            c.default_user_tags = Some(set(self.tags));
        }
        if self.loopback_none {
            c.loopback_users = Some(Vec::new());
        } else if !self.loopback.is_empty() {
            c.loopback_users = Some(set(self.loopback));
        }
        c
    }
}

/// `<key>.<n>` entries (`ssl_options.versions.<n>`, `auth_mechanisms.<n>`)
/// ordered by their index, as cuttlefish lists them, without repeats;
/// `None` when there are none.
fn ordered<T: PartialEq>(mut v: Vec<(String, T)>) -> Option<Vec<T>> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| {
        let n = |s: &str| s.parse::<u64>().unwrap_or(u64::MAX);
        n(&a.0).cmp(&n(&b.0)).then(a.0.cmp(&b.0))
    });
    let mut out: Vec<T> = Vec::new();
    for (_, item) in v {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    Some(out)
}

/// `name` when `key` is `prefix` followed by one word.
fn leaf<'k>(key: &'k str, prefix: &str) -> Option<&'k str> {
    key.strip_prefix(prefix).filter(|rest| !rest.contains('.'))
}

fn bad(key: &str, v: &str, expected: &str) -> String {
    format!("invalid value '{v}' for '{key}': expected {expected}")
}

fn none(key: &str, v: &str) -> Result<bool, String> {
    if v == "none" {
        Ok(true)
    } else {
        Err(bad(key, v, "'none'"))
    }
}

fn boolean(key: &str, v: &str) -> Result<bool, String> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(bad(key, v, "true or false")),
    }
}

fn at_least(key: &str, v: &str, min: u64) -> Result<u64, String> {
    match v.parse::<u64>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(bad(key, v, &format!("an integer of {min} or more"))),
    }
}

fn ranged<T>(key: &str, v: &str, min: T, max: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + fmt::Display,
{
    let expected = || bad(key, v, &format!("an integer from {min} to {max}"));
    let n: T = v.parse().map_err(|_| expected())?;
    if n < min || n > max {
        return Err(expected());
    }
    Ok(n)
}

fn float(key: &str, v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(bad(key, v, "a number of 0 or more (e.g. 0.4)")),
    }
}

/// RabbitMQ's information units. Where `parse_size` reads a bare `k`, `M`
/// or `G` as a power of 1000, RabbitMQ reads a power of 1024: those three
/// are turned into their `iB` spelling first.
fn size(key: &str, v: &str) -> Result<u64, String> {
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let spelled;
    let v2 = match &v[split..] {
        "k" | "K" | "m" | "M" | "g" | "G" => {
            spelled = format!("{}{}iB", &v[..split], &v[split..]);
            spelled.as_str()
        }
        _ => v,
    };
    parse_size(v2).map_err(|_| bad(key, v, "a size (e.g. 50MB, 2GiB, 1024M, 50000000)"))
}

/// Cuttlefish's byte sizes: a plain integer, or `KB`, `MB`, `GB` (any case)
/// meaning powers of 1024.
fn frame_max(key: &str, v: &str) -> Result<u32, String> {
    let expected = || bad(key, v, "0 or a size of at least 4096 (e.g. 131072, 128KB)");
    let lower = v.to_ascii_lowercase();
    let (num, shift) = match lower.len().checked_sub(2).map(|i| lower.split_at(i)) {
        Some((n, "kb")) => (n, 10),
        Some((n, "mb")) => (n, 20),
        Some((n, "gb")) => (n, 30),
        _ => (lower.as_str(), 0),
    };
    let n: u64 = num.parse().map_err(|_| expected())?;
    let bytes = n.checked_mul(1 << shift).ok_or_else(expected)?;
    match u32::try_from(bytes) {
        Ok(b) if b == 0 || b >= 4096 => Ok(b),
        _ => Err(expected()),
    }
}

fn segment_size(key: &str, v: &str) -> Result<u64, String> {
    match size(key, v) {
        Ok(n) if (1 << 20..1 << 32).contains(&n) => Ok(n),
        _ => Err(bad(key, v, "a size from 1MiB up to (not including) 4GiB")),
    }
}

fn regex(key: &str, v: &str) -> Result<String, String> {
    match regex::Regex::new(v) {
        Ok(_) => Ok(v.to_owned()),
        Err(_) => Err(bad(key, v, "a regular expression")),
    }
}

fn ip(key: &str, v: &str) -> Result<IpAddr, String> {
    v.parse()
        .map_err(|_| bad(key, v, "an IP address (e.g. 127.0.0.1, ::1)"))
}

fn log_level(key: &str, v: &str) -> Result<LogLevel, String> {
    Ok(match v {
        "debug" => LogLevel::Debug,
        "info" => LogLevel::Info,
        "notice" => LogLevel::Notice,
        "warning" => LogLevel::Warning,
        "error" => LogLevel::Error,
        "critical" => LogLevel::Critical,
        "alert" => LogLevel::Alert,
        "emergency" => LogLevel::Emergency,
        "none" => LogLevel::None,
        _ => {
            return Err(bad(
                key,
                v,
                "debug, info, notice, warning, error, critical, alert, emergency or none",
            ))
        }
    })
}

fn sync(key: &str, v: &str) -> Result<SyncMode, String> {
    match v {
        "fsync" => Ok(SyncMode::Fsync),
        "os" => Ok(SyncMode::Os),
        _ => Err(bad(key, v, "fsync or os")),
    }
}

fn verify(key: &str, v: &str) -> Result<SslVerify, String> {
    match v {
        "verify_peer" => Ok(SslVerify::Peer),
        "verify_none" => Ok(SslVerify::None),
        _ => Err(bad(key, v, "verify_peer or verify_none")),
    }
}

/// rustls speaks TLS 1.2 and 1.3 only: the older versions RabbitMQ can
/// still be told to offer are refused by name.
fn tls_version(key: &str, v: &str) -> Result<TlsVersion, String> {
    match v {
        "tlsv1.2" => Ok(TlsVersion::Tls12),
        "tlsv1.3" => Ok(TlsVersion::Tls13),
        "tlsv1" | "tlsv1.1" | "sslv3" => Err(format!(
            "'{key}': {v} is not supported (Warren speaks tlsv1.2 and tlsv1.3)"
        )),
        _ => Err(bad(key, v, "tlsv1.2 or tlsv1.3")),
    }
}

fn auth_mechanism(key: &str, v: &str) -> Result<AuthMechanism, String> {
    match v {
        "PLAIN" => Ok(AuthMechanism::Plain),
        "AMQPLAIN" => Ok(AuthMechanism::AmqPlain),
        "EXTERNAL" => Ok(AuthMechanism::External),
        "ANONYMOUS" | "RABBIT-CR-DEMO" | "SCRAM-SHA-256" => Err(format!(
            "'{key}': {v} is not supported (Warren offers PLAIN, AMQPLAIN and EXTERNAL)"
        )),
        _ => Err(bad(key, v, "PLAIN, AMQPLAIN or EXTERNAL")),
    }
}

fn cert_login_from(key: &str, v: &str) -> Result<CertLoginFrom, String> {
    match v {
        "distinguished_name" => Ok(CertLoginFrom::DistinguishedName),
        "common_name" => Ok(CertLoginFrom::CommonName),
        _ => Err(bad(key, v, "distinguished_name or common_name")),
    }
}

/// A port, `ip:port`, `[ipv6]:port`, or RabbitMQ's bracketless `ipv6:port`
/// (`::1:5672`: the port is after the last colon).
fn listener(key: &str, v: &str) -> Result<(Option<IpAddr>, u16), String> {
    if let Ok(port) = v.parse::<u16>() {
        return Ok((None, port));
    }
    if let Ok(addr) = v.parse::<SocketAddr>() {
        return Ok((Some(addr.ip()), addr.port()));
    }
    v.rsplit_once(':')
        .and_then(|(ip, port)| Some((Some(ip.parse().ok()?), port.parse().ok()?)))
        .ok_or_else(|| {
            bad(
                key,
                v,
                "a port (5672), ip:port (127.0.0.1:5672) or [ipv6]:port ([::1]:5672)",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StorageConfig;

    fn p(text: &str) -> Result<FileConfig, FileError> {
        parse(text, Path::new("/etc/warren/warren.conf"))
    }

    /// The line and reason of a refused file.
    fn err(text: &str) -> (usize, String) {
        match p(text) {
            Err(FileError::Invalid { line, reason, .. }) => (line, reason),
            other => panic!("expected a line error, got {other:?}"),
        }
    }

    #[test]
    fn full_example() {
        let text = "\
# Networking
listeners.tcp.default = 5672
listeners.tcp.local   = 127.0.0.1:5673

default_user = admin
default_pass = s3cret
default_vhost = /prod
default_user_tags.administrator = true
default_user_tags.monitoring = false
default_permissions.configure = ^amq\\.gen.*
default_permissions.write = .*
default_permissions.read = ^$
loopback_users.guest = false
loopback_users.local_admin = true
heartbeat = 30
frame_max = 131072
channel_max = 128
disk_free_limit.absolute = 1GB
disk_free_limit.relative = 1.5
load_definitions = /etc/warren/definitions.json
log.console = true
log.console.level = warning
vm_memory_high_watermark.relative = 0.6
vm_memory_high_watermark.absolute = 2GiB
management.tcp.port = 15672
management.tcp.ip = 127.0.0.1
prometheus.tcp.port = 15692
prometheus.tcp.ip = ::
warren.shards = 4
warren.data_dir = /var/lib/warren
warren.sync = os
warren.segment_size = 64MiB
warren.spin_before_park_us = 0
warren.call_timeout = 30
listeners.ssl.default = 5671
ssl_options.cacertfile = /etc/warren/ca.pem
ssl_options.certfile = /etc/warren/server.pem
ssl_options.keyfile = /etc/warren/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = true
ssl_options.versions.2 = tlsv1.2
ssl_options.versions.1 = tlsv1.3
ssl_handshake_timeout = 7000
ssl_cert_login_from = common_name
auth_mechanisms.2 = PLAIN
auth_mechanisms.1 = EXTERNAL
management.ssl.port = 15671
management.ssl.ip = 127.0.0.1
management.ssl.cacertfile = /etc/warren/ca.pem
management.ssl.certfile = /etc/warren/server.pem
management.ssl.keyfile = /etc/warren/server.key
management.ssl.verify = verify_peer
management.ssl.fail_if_no_peer_cert = false
management.ssl.versions.1 = tlsv1.2
prometheus.ssl.port = 15691
prometheus.ssl.certfile = /etc/warren/server.pem
prometheus.ssl.keyfile = /etc/warren/server.key
";
        let expected = FileConfig {
            listeners: Some(vec![
                Listener {
                    name: "default".into(),
                    ip: None,
                    port: 5672,
                },
                Listener {
                    name: "local".into(),
                    ip: Some("127.0.0.1".parse().unwrap()),
                    port: 5673,
                },
            ]),
            default_user: Some("admin".into()),
            default_pass: Some("s3cret".into()),
            default_vhost: Some("/prod".into()),
            default_user_tags: Some(vec!["administrator".into()]),
            default_permissions_configure: Some("^amq\\.gen.*".into()),
            default_permissions_write: Some(".*".into()),
            default_permissions_read: Some("^$".into()),
            loopback_users: Some(vec!["local_admin".into()]),
            heartbeat: Some(30),
            frame_max: Some(131_072),
            channel_max: Some(128),
            disk_free_limit_absolute: Some(1_000_000_000),
            disk_free_limit_relative: Some(1.5),
            load_definitions: Some("/etc/warren/definitions.json".into()),
            log_console: Some(true),
            log_console_level: Some(LogLevel::Warning),
            vm_memory_high_watermark_relative: Some(0.6),
            vm_memory_high_watermark_absolute: Some(2 << 30),
            management_tcp_port: Some(15672),
            management_tcp_ip: Some("127.0.0.1".parse().unwrap()),
            prometheus_tcp_port: Some(15692),
            prometheus_tcp_ip: Some("::".parse().unwrap()),
            shards: Some(4),
            data_dir: Some("/var/lib/warren".into()),
            sync: Some(SyncMode::Os),
            segment_size: Some(64 << 20),
            spin_before_park_us: Some(0),
            call_timeout: Some(30),
            ssl_listeners: Some(vec![Listener {
                name: "default".into(),
                ip: None,
                port: 5671,
            }]),
            ssl_cacertfile: Some("/etc/warren/ca.pem".into()),
            ssl_certfile: Some("/etc/warren/server.pem".into()),
            ssl_keyfile: Some("/etc/warren/server.key".into()),
            ssl_verify: Some(SslVerify::Peer),
            ssl_fail_if_no_peer_cert: Some(true),
            ssl_versions: Some(vec![TlsVersion::Tls13, TlsVersion::Tls12]),
            ssl_handshake_timeout: Some(7000),
            ssl_cert_login_from: Some(CertLoginFrom::CommonName),
            auth_mechanisms: Some(vec![AuthMechanism::External, AuthMechanism::Plain]),
            management_ssl: HttpsKeys {
                port: Some(15671),
                ip: Some("127.0.0.1".parse().unwrap()),
                cacertfile: Some("/etc/warren/ca.pem".into()),
                certfile: Some("/etc/warren/server.pem".into()),
                keyfile: Some("/etc/warren/server.key".into()),
                verify: Some(SslVerify::Peer),
                fail_if_no_peer_cert: Some(false),
                versions: Some(vec![TlsVersion::Tls12]),
            },
            prometheus_ssl: HttpsKeys {
                port: Some(15691),
                certfile: Some("/etc/warren/server.pem".into()),
                keyfile: Some("/etc/warren/server.key".into()),
                ..HttpsKeys::default()
            },
        };
        assert_eq!(p(text).unwrap(), expected);
    }

    #[test]
    fn ssl_keys_refused_as_rabbitmq_would() {
        assert!(err("ssl_options.versions.1 = tlsv1.1")
            .1
            .contains("not supported"));
        assert!(err("ssl_options.verify = yes")
            .1
            .contains("verify_peer or verify_none"));
        assert!(err("ssl_options.ciphers.1 = x")
            .1
            .contains("unknown setting"));
        assert!(err("ssl_cert_login_from = email").1.contains("common_name"));
        assert!(err("auth_mechanisms.1 = ANONYMOUS")
            .1
            .contains("not supported"));
        assert!(err("auth_mechanisms.1 = plain")
            .1
            .contains("PLAIN, AMQPLAIN"));
        let c = p("listeners.ssl.default = 5671\nlisteners.ssl = none\n").unwrap();
        assert_eq!(c.ssl_listeners, Some(vec![]));
    }

    #[test]
    fn https_keys_refused_as_rabbitmq_would() {
        assert!(err("management.ssl.versions.1 = sslv3")
            .1
            .contains("not supported"));
        assert!(err("prometheus.ssl.verify = maybe")
            .1
            .contains("verify_peer or verify_none"));
        assert!(err("management.ssl.port = 0").1.contains("from 1 to 65535"));
        assert!(err("management.ssl.password = x")
            .1
            .contains("unknown setting 'management.ssl.password'"));
        assert!(err("prometheus.ssl.versions.1.x = tlsv1.2")
            .1
            .contains("unknown setting"));
        let c = p("prometheus.ssl.versions.2 = tlsv1.2\nprometheus.ssl.versions.1 = tlsv1.3\n")
            .unwrap();
        assert_eq!(
            c.prometheus_ssl.versions,
            Some(vec![TlsVersion::Tls13, TlsVersion::Tls12])
        );
        assert!(c.prometheus_ssl.is_set() && !c.management_ssl.is_set());
    }

    #[test]
    fn empty_file_sets_nothing() {
        assert_eq!(p("").unwrap(), FileConfig::default());
        assert_eq!(
            p("\n  \n\t\n# only comments\n").unwrap(),
            FileConfig::default()
        );
    }

    #[test]
    fn comments_whitespace_and_line_endings() {
        let c = p("\t heartbeat\t=\t10  \r\n  # indented comment\r\nchannel_max=5 # trailing\r\n")
            .unwrap();
        assert_eq!(c.heartbeat, Some(10));
        assert_eq!(c.channel_max, Some(5));
        // RabbitMQ 3.10 cuts a value at '#', even without a space before it.
        let c = p("default_pass = 1234#678\n").unwrap();
        assert_eq!(c.default_pass.as_deref(), Some("1234"));
        // Only '#' ends a value: other punctuation and inner spaces stay.
        let c = p("default_pass = a b=c;d\n").unwrap();
        assert_eq!(c.default_pass.as_deref(), Some("a b=c;d"));
    }

    #[test]
    fn error_lines_and_reasons() {
        let cases: &[(&str, usize, &str)] = &[
            ("heartbeat = 1\nnot a setting\n", 2, "expected 'key = value', found 'not a setting'"),
            ("\n\nwhat.ever = 1\n", 3, "unknown setting 'what.ever'"),
            ("listeners.tcp.a.b = 1\n", 1, "unknown setting 'listeners.tcp.a.b'"),
            ("heartbeat = soon\n", 1, "invalid value 'soon' for 'heartbeat': expected an integer from 0 to 65535"),
            ("# c\nheartbeat = 70000\n", 2, "invalid value '70000' for 'heartbeat': expected an integer from 0 to 65535"),
            ("channel_max = -1\n", 1, "invalid value '-1' for 'channel_max': expected an integer from 0 to 65535"),
            ("log.console = yes\n", 1, "invalid value 'yes' for 'log.console': expected true or false"),
            ("default_user_tags.administrator = 1\n", 1, "invalid value '1' for 'default_user_tags.administrator': expected true or false"),
            ("loopback_users = all\n", 1, "invalid value 'all' for 'loopback_users': expected 'none'"),
            ("listeners.tcp = off\n", 1, "invalid value 'off' for 'listeners.tcp': expected 'none'"),
            ("disk_free_limit.absolute = 12 parsecs\n", 1, "invalid value '12 parsecs' for 'disk_free_limit.absolute': expected a size (e.g. 50MB, 2GiB, 1024M, 50000000)"),
            ("disk_free_limit.relative = -1\n", 1, "invalid value '-1' for 'disk_free_limit.relative': expected a number of 0 or more (e.g. 0.4)"),
            ("vm_memory_high_watermark.relative = NaN\n", 1, "invalid value 'NaN' for 'vm_memory_high_watermark.relative': expected a number of 0 or more (e.g. 0.4)"),
            ("frame_max = 1024\n", 1, "invalid value '1024' for 'frame_max': expected 0 or a size of at least 4096 (e.g. 131072, 128KB)"),
            ("frame_max = 4GB\n", 1, "invalid value '4GB' for 'frame_max': expected 0 or a size of at least 4096 (e.g. 131072, 128KB)"),
            ("management.tcp.ip = localhost\n", 1, "invalid value 'localhost' for 'management.tcp.ip': expected an IP address (e.g. 127.0.0.1, ::1)"),
            ("listeners.tcp.default = host:5672\n", 1, "invalid value 'host:5672' for 'listeners.tcp.default': expected a port (5672), ip:port (127.0.0.1:5672) or [ipv6]:port ([::1]:5672)"),
            ("listeners.tcp.default = 70000\n", 1, "invalid value '70000' for 'listeners.tcp.default': expected a port (5672), ip:port (127.0.0.1:5672) or [ipv6]:port ([::1]:5672)"),
            ("log.console.level = verbose\n", 1, "invalid value 'verbose' for 'log.console.level': expected debug, info, notice, warning, error, critical, alert, emergency or none"),
            ("default_permissions.read = (\n", 1, "invalid value '(' for 'default_permissions.read': expected a regular expression"),
            ("warren.shards = 0\n", 1, "invalid value '0' for 'warren.shards': expected an integer from 1 to 1024"),
            ("warren.shards = 1025\n", 1, "invalid value '1025' for 'warren.shards': expected an integer from 1 to 1024"),
            ("warren.sync = always\n", 1, "invalid value 'always' for 'warren.sync': expected fsync or os"),
            ("warren.segment_size = 512KiB\n", 1, "invalid value '512KiB' for 'warren.segment_size': expected a size from 1MiB up to (not including) 4GiB"),
            ("warren.segment_size = 4GiB\n", 1, "invalid value '4GiB' for 'warren.segment_size': expected a size from 1MiB up to (not including) 4GiB"),
            ("warren.call_timeout = 0\n", 1, "invalid value '0' for 'warren.call_timeout': expected an integer of 1 or more"),
            ("warren.spin_before_park_us = 1.5\n", 1, "invalid value '1.5' for 'warren.spin_before_park_us': expected an integer of 0 or more"),
            ("heartbeat =\n", 1, "missing value for 'heartbeat'"),
            ("heartbeat = # none\n", 1, "missing value for 'heartbeat'"),
            ("= 5\n", 1, "invalid setting name ''"),
            ("heart beat = 5\n", 1, "invalid setting name 'heart beat'"),
            ("log..level = info\n", 1, "invalid setting name 'log..level'"),
            ("include conf.d/*.conf\n", 1, "'include' is not supported"),
        ];
        for &(text, line, reason) in cases {
            assert_eq!(err(text), (line, reason.to_owned()), "for {text:?}");
        }
    }

    #[test]
    fn error_display_names_file_and_line() {
        let e = p("heartbeat = 1\nbogus = 2\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/warren/warren.conf:2: unknown setting 'bogus'"
        );
    }

    #[test]
    fn load_reports_a_missing_file() {
        let path = Path::new("/nonexistent/warren-test/warren.conf");
        let e = load(path).unwrap_err();
        assert!(
            matches!(e, FileError::Io { ref error, .. } if error.kind() == std::io::ErrorKind::NotFound)
        );
        let shown = e.to_string();
        assert!(
            shown.starts_with("/nonexistent/warren-test/warren.conf: ") && shown.len() > 40,
            "{shown}"
        );
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn load_reads_a_file() {
        let dir = std::env::temp_dir().join(format!("warren-conf-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("warren.conf");
        std::fs::write(&path, "heartbeat = 7\nchannel_max = x\n").unwrap();
        let e = load(&path).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}:2: invalid value 'x' for 'channel_max': expected an integer from 0 to 65535",
                path.display()
            )
        );
        std::fs::write(&path, "heartbeat = 7\n").unwrap();
        assert_eq!(load(&path).unwrap().heartbeat, Some(7));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn size_units_as_rabbitmq() {
        let abs = |v: &str| {
            p(&format!("disk_free_limit.absolute = {v}\n"))
                .unwrap()
                .disk_free_limit_absolute
                .unwrap()
        };
        assert_eq!(abs("50000000"), 50_000_000);
        assert_eq!(abs("50MB"), 50_000_000);
        assert_eq!(abs("50000kB"), 50_000_000);
        assert_eq!(abs("1GB"), 1_000_000_000);
        assert_eq!(abs("2GiB"), 2 << 30);
        assert_eq!(abs("512KiB"), 512 << 10);
        // RabbitMQ: a bare k, M or G is binary.
        assert_eq!(abs("512k"), 512 << 10);
        assert_eq!(abs("1024M"), 1 << 30);
        assert_eq!(abs("1024m"), 1 << 30);
        assert_eq!(abs("3G"), 3 << 30);
        let vm = p("vm_memory_high_watermark.absolute = 1024MiB\n").unwrap();
        assert_eq!(vm.vm_memory_high_watermark_absolute, Some(1 << 30));
        let seg = p("warren.segment_size = 1M\n").unwrap();
        assert_eq!(seg.segment_size, Some(1 << 20));

        let frame = |v: &str| p(&format!("frame_max = {v}\n")).unwrap().frame_max.unwrap();
        assert_eq!(frame("0"), 0);
        assert_eq!(frame("4096"), 4096);
        assert_eq!(frame("128KB"), 131_072);
        assert_eq!(frame("128kb"), 131_072);
        assert_eq!(frame("1MB"), 1 << 20);
    }

    #[test]
    fn watermark_above_one_reads_as_one() {
        let c = p("vm_memory_high_watermark.relative = 1.7\n").unwrap();
        assert_eq!(c.vm_memory_high_watermark_relative, Some(1.0));
        let c = p("vm_memory_high_watermark.relative = 0\n").unwrap();
        assert_eq!(c.vm_memory_high_watermark_relative, Some(0.0));
    }

    #[test]
    fn last_value_wins() {
        let c = p("heartbeat = 10\nchannel_max = 3\nheartbeat = 20\n").unwrap();
        assert_eq!(c.heartbeat, Some(20));
        assert_eq!(c.channel_max, Some(3));
        // An overridden value is never checked.
        assert_eq!(
            p("heartbeat = soon\nheartbeat = 5\n").unwrap().heartbeat,
            Some(5)
        );
        // The winning value's line is the one reported.
        assert_eq!(err("heartbeat = 5\nheartbeat = soon\n").0, 2);
        // A listener given again keeps its place and takes the new address.
        let c = p("listeners.tcp.a = 1\nlisteners.tcp.b = 2\nlisteners.tcp.a = 3\n").unwrap();
        let ports: Vec<_> = c
            .listeners
            .unwrap()
            .iter()
            .map(|l| (l.name.clone(), l.port))
            .collect();
        assert_eq!(ports, [("a".to_owned(), 3), ("b".to_owned(), 2)]);
        let c = p("default_user_tags.x = true\ndefault_user_tags.x = false\n").unwrap();
        assert_eq!(c.default_user_tags, Some(vec![]));
    }

    #[test]
    fn listener_forms() {
        let c = p("listeners.tcp.1 = 5672\n\
                   listeners.tcp.2 = 10.0.0.1:5673\n\
                   listeners.tcp.3 = [::1]:5674\n\
                   listeners.tcp.local_v6 = ::1:5675\n\
                   listeners.tcp.any6 = [::]:5676\n")
        .unwrap();
        let got: Vec<_> = c
            .listeners
            .unwrap()
            .into_iter()
            .map(|l| (l.ip.map(|ip| ip.to_string()), l.port))
            .collect();
        let want = [
            (None, 5672),
            (Some("10.0.0.1".to_owned()), 5673),
            (Some("::1".to_owned()), 5674),
            (Some("::1".to_owned()), 5675),
            (Some("::".to_owned()), 5676),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn none_overrides_named_entries() {
        let c = p("listeners.tcp.default = 5672\nlisteners.tcp = none\n").unwrap();
        assert_eq!(c.listeners, Some(vec![]));
        let c = p("loopback_users.guest = true\nloopback_users = none\n").unwrap();
        assert_eq!(c.loopback_users, Some(vec![]));
        // Every user set false: nobody is restricted, not the default list.
        let c = p("loopback_users.guest = false\n").unwrap();
        assert_eq!(c.loopback_users, Some(vec![]));
        let c = p("loopback_users.a = true\nloopback_users.b = false\nloopback_users.c = true\n")
            .unwrap();
        assert_eq!(c.loopback_users, Some(vec!["a".to_owned(), "c".to_owned()]));
        assert_eq!(p("heartbeat = 1\n").unwrap().loopback_users, None);
    }

    #[test]
    fn log_levels_map_to_tracing() {
        let level = |v: &str| {
            p(&format!("log.console.level = {v}\n"))
                .unwrap()
                .log_console_level
                .unwrap()
        };
        assert_eq!(level("debug").tracing_filter(), "debug");
        assert_eq!(level("notice").tracing_filter(), "info");
        assert_eq!(level("warning").tracing_filter(), "warn");
        assert_eq!(level("critical").tracing_filter(), "error");
        assert_eq!(level("none").tracing_filter(), "off");
        // RabbitMQ's levels are lower case only.
        assert!(p("log.console.level = INFO\n").is_err());
    }

    const PACKAGED: &str = include_str!("../../packaging/warren.conf");

    #[test]
    fn packaged_config_sets_only_the_data_dir() {
        let c = parse(PACKAGED, Path::new("packaging/warren.conf")).unwrap();
        let expected = FileConfig {
            data_dir: Some("/var/lib/warren".into()),
            ..FileConfig::default()
        };
        assert_eq!(c, expected);
    }

    /// Every `# key = value` line of the packaged file, uncommented, is
    /// valid and shows the default the broker really uses.
    #[test]
    fn packaged_config_defaults_are_the_real_ones() {
        let uncommented: String = PACKAGED
            .lines()
            .map(|l| {
                l.strip_prefix("# ")
                    .filter(|s| s.contains(" = "))
                    .unwrap_or(l)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let c = parse(&uncommented, Path::new("packaging/warren.conf")).unwrap();
        let storage = StorageConfig::default();
        let listeners = c.listeners.as_deref().unwrap();
        assert_eq!(listeners.len(), 1);
        assert_eq!((listeners[0].ip, listeners[0].port), (None, 5672));
        assert_eq!(c.default_user.as_deref(), Some("guest"));
        assert_eq!(c.default_pass.as_deref(), Some("guest"));
        assert_eq!(c.default_vhost.as_deref(), Some("/"));
        assert_eq!(c.default_user_tags, Some(vec!["administrator".to_owned()]));
        assert_eq!(c.default_permissions_configure.as_deref(), Some(".*"));
        assert_eq!(c.default_permissions_write.as_deref(), Some(".*"));
        assert_eq!(c.default_permissions_read.as_deref(), Some(".*"));
        assert_eq!(c.loopback_users, Some(vec!["guest".to_owned()]));
        assert_eq!(c.heartbeat, Some(60));
        assert_eq!(c.frame_max, Some(131_072));
        assert_eq!(c.channel_max, Some(2047));
        assert_eq!(c.ssl_handshake_timeout, Some(5000));
        assert_eq!(c.disk_free_limit_absolute, Some(storage.disk_free_limit));
        assert_eq!(c.log_console, Some(true));
        assert_eq!(c.log_console_level, Some(LogLevel::Info));
        assert_eq!(c.vm_memory_high_watermark_relative, Some(0.4));
        assert_eq!(c.management_tcp_port, Some(15672));
        assert_eq!(c.prometheus_tcp_port, Some(15692));
        assert_eq!(c.data_dir, Some("/var/lib/warren".into()));
        assert_eq!(c.sync, Some(storage.sync));
        assert_eq!(c.segment_size, Some(storage.segment_size));
        assert_eq!(c.spin_before_park_us, Some(30));
        assert_eq!(c.call_timeout, Some(15));
    }
}
