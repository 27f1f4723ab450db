//! The broker's configuration from its three sources: command-line flags
//! override the configuration file, which overrides the defaults.
use std::net::IpAddr;
use std::path::PathBuf;

use super::file::FileConfig;
use super::file::{HttpsKeys, Listener};
use super::{
    AccessConfig, Config, ConnLimits, MemoryWatermark, SslVerify, StorageConfig, SyncMode,
    TlsConfig, TlsVersion,
};

/// The default configuration file, as a package installs it.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/warren/warren.conf";

/// The default data directory when neither a flag, the file nor
/// `WARREN_DATA_DIR` names one.
pub const DEFAULT_DATA_DIR: &str = "./warren-data";

/// What `warren serve`'s flags set (`None`: not given).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub port: Option<u16>,
    pub bind: Option<IpAddr>,
    pub shards: Option<usize>,
    pub data_dir: Option<PathBuf>,
    pub sync: Option<SyncMode>,
    pub segment_size: Option<u64>,
    pub disk_free_limit: Option<u64>,
    pub spin_before_park_us: Option<u64>,
    pub call_timeout: Option<u64>,
    pub log: Option<String>,
    /// `--management-port` (0: off).
    pub management_port: Option<u16>,
    /// `--prometheus-port` (0: off).
    pub prometheus_port: Option<u16>,
    /// `--vm-memory-high-watermark`.
    pub memory_watermark: Option<MemoryWatermark>,
    /// `--ssl-port` (0: no TLS listener, whatever the file says).
    pub ssl_port: Option<u16>,
    /// `--ssl-certfile`, `--ssl-keyfile`, `--ssl-cacertfile`.
    pub ssl_certfile: Option<PathBuf>,
    pub ssl_keyfile: Option<PathBuf>,
    pub ssl_cacertfile: Option<PathBuf>,
    /// `--ssl-verify`.
    pub ssl_verify: Option<SslVerify>,
    /// `--ssl-fail-if-no-peer-cert`.
    pub ssl_fail_if_no_peer_cert: Option<bool>,
    /// `--management-ssl-port` (0: no HTTPS, whatever the file says).
    pub management_ssl_port: Option<u16>,
    /// `--prometheus-ssl-port` (0: no HTTPS, whatever the file says).
    pub prometheus_ssl_port: Option<u16>,
}

/// The configuration to run with, and the log filter.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub config: Config,
    pub log: String,
}

/// Merges `flags` over `file` over the defaults; `env_data_dir` is
/// `WARREN_DATA_DIR`, `cpus` the CPUs this process may use (the default
/// shard count), `total_memory` for `disk_free_limit.relative`.
pub fn resolve(
    flags: Flags,
    file: FileConfig,
    env_data_dir: Option<PathBuf>,
    cpus: usize,
    total_memory: u64,
) -> Result<Resolved, String> {
    let listener = one_listener(file.listeners.as_deref(), "tcp", "AMQP")?;
    if file.listeners.as_deref() == Some(&[]) {
        return Err("listeners.tcp = none: Warren needs its AMQP listener".into());
    }
    let ssl_listener = one_listener(file.ssl_listeners.as_deref(), "ssl", "AMQPS")?;
    let port = flags
        .port
        .or(listener.as_ref().map(|l| l.port))
        .unwrap_or(5672);
    let bind = flags.bind.or(listener.and_then(|l| l.ip));
    let ssl_port = match flags.ssl_port {
        Some(0) => None,
        Some(p) => Some(p),
        None => ssl_listener.as_ref().map(|l| l.port),
    };
    let tls = match ssl_port {
        None => None,
        Some(port) => Some(TlsConfig {
            keys: "ssl_options",
            // A flag's --bind narrows every listener; else the file's
            // address for this one.
            bind: flags
                .bind
                .or(ssl_listener.as_ref().and_then(|l| l.ip))
                .or(bind),
            port,
            cacertfile: flags.ssl_cacertfile.or(file.ssl_cacertfile),
            certfile: flags.ssl_certfile.or(file.ssl_certfile).ok_or(
                "the TLS listener needs a certificate: ssl_options.certfile or --ssl-certfile",
            )?,
            keyfile: flags
                .ssl_keyfile
                .or(file.ssl_keyfile)
                .ok_or("the TLS listener needs a key: ssl_options.keyfile or --ssl-keyfile")?,
            verify: flags
                .ssl_verify
                .or(file.ssl_verify)
                .unwrap_or(SslVerify::None),
            fail_if_no_peer_cert: flags
                .ssl_fail_if_no_peer_cert
                .or(file.ssl_fail_if_no_peer_cert)
                .unwrap_or(false),
            versions: file
                .ssl_versions
                .unwrap_or_else(|| vec![TlsVersion::Tls13, TlsVersion::Tls12]),
            handshake_timeout: std::time::Duration::from_millis(
                file.ssl_handshake_timeout.unwrap_or(5000),
            ),
        }),
    };
    if let Some(t) = &tls {
        if t.verify == SslVerify::Peer && t.cacertfile.is_none() {
            return Err("ssl_options.verify = verify_peer needs ssl_options.cacertfile".into());
        }
        if t.port == port && t.bind == bind {
            return Err(format!(
                "the AMQP and AMQPS listeners both name port {port}"
            ));
        }
    }
    // The HTTP listeners follow the AMQP address unless the file names
    // theirs: `--bind 127.0.0.1` keeps the whole broker on loopback.
    let http = |port: u16, ip: Option<IpAddr>| {
        (port != 0).then(|| {
            let ip = ip
                .or(bind)
                .unwrap_or(IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED));
            std::net::SocketAddr::new(ip, port)
        })
    };
    // `ssl_handshake_timeout` is AMQP's, as in RabbitMQ; the HTTPS
    // listeners have ranch's 5 s (mgmt/http's HANDSHAKE_TIMEOUT).
    let handshake_timeout = std::time::Duration::from_secs(5);
    let management_tls = https(
        "management.ssl",
        file.management_ssl.clone(),
        flags.management_ssl_port,
        15671,
        bind,
        handshake_timeout,
    )?;
    let prometheus_tls = https(
        "prometheus.ssl",
        file.prometheus_ssl.clone(),
        flags.prometheus_ssl_port,
        15691,
        bind,
        handshake_timeout,
    )?;
    // As RabbitMQ: the plain listener is on by default, but not when only
    // the HTTPS one is configured.
    let plain_port =
        |flag: Option<u16>, port: Option<u16>, ip: Option<IpAddr>, tls: bool, default| {
            flag.or(port)
                .unwrap_or(if tls && ip.is_none() { 0 } else { default })
        };
    let management = http(
        plain_port(
            flags.management_port,
            file.management_tcp_port,
            file.management_tcp_ip,
            management_tls.is_some(),
            15672,
        ),
        file.management_tcp_ip,
    );
    let prometheus = http(
        plain_port(
            flags.prometheus_port,
            file.prometheus_tcp_port,
            file.prometheus_tcp_ip,
            prometheus_tls.is_some(),
            15692,
        ),
        file.prometheus_tcp_ip,
    );
    for (plain, tls, what) in [
        (management, &management_tls, "management"),
        (prometheus, &prometheus_tls, "prometheus"),
    ] {
        if let (Some(a), Some(t)) = (plain, tls) {
            if a.port() == t.port && t.bind.is_none_or(|ip| ip == a.ip()) {
                return Err(format!(
                    "{what}.tcp.port and {what}.ssl.port both name port {}",
                    t.port
                ));
            }
        }
    }
    let memory_watermark = flags
        .memory_watermark
        .or(file
            .vm_memory_high_watermark_absolute
            .map(MemoryWatermark::Absolute))
        .or(file
            .vm_memory_high_watermark_relative
            .map(MemoryWatermark::Relative))
        .unwrap_or_default();
    let shards = flags.shards.or(file.shards).unwrap_or(cpus).max(1);
    if shards > 1024 {
        return Err(format!("--shards {shards} is more than 1024"));
    }
    let segment_size = flags.segment_size.or(file.segment_size).unwrap_or(32 << 20);
    if !(1 << 20..1 << 32).contains(&segment_size) {
        return Err("--segment-size must be at least 1MiB and under 4GiB".into());
    }
    let relative = file
        .disk_free_limit_relative
        .map(|r| (r * total_memory as f64) as u64);
    let disk_free_limit = flags
        .disk_free_limit
        .or(file.disk_free_limit_absolute)
        .or(relative)
        .unwrap_or(50_000_000);
    let defaults = AccessConfig::default();
    let perms = defaults.default_permissions.clone();
    let access = AccessConfig {
        default_user: file.default_user.unwrap_or(defaults.default_user),
        default_pass: file.default_pass.unwrap_or(defaults.default_pass),
        default_vhost: file.default_vhost.unwrap_or(defaults.default_vhost),
        default_user_tags: file.default_user_tags.unwrap_or(defaults.default_user_tags),
        default_permissions: [
            file.default_permissions_configure
                .unwrap_or_else(|| perms[0].clone()),
            file.default_permissions_write
                .unwrap_or_else(|| perms[1].clone()),
            file.default_permissions_read
                .unwrap_or_else(|| perms[2].clone()),
        ],
        loopback_users: file.loopback_users.unwrap_or(defaults.loopback_users),
        cert_login_from: file.ssl_cert_login_from.unwrap_or(defaults.cert_login_from),
        auth_mechanisms: file.auth_mechanisms.unwrap_or(defaults.auth_mechanisms),
    };
    let limit_defaults = ConnLimits::default();
    let limits = ConnLimits {
        heartbeat: file.heartbeat.unwrap_or(limit_defaults.heartbeat),
        frame_max: file.frame_max.unwrap_or(limit_defaults.frame_max),
        channel_max: file.channel_max.unwrap_or(limit_defaults.channel_max),
    };
    let log = match (flags.log, file.log_console, file.log_console_level) {
        (Some(l), _, _) => l,
        (None, Some(false), _) => "off".into(),
        (None, _, Some(level)) => level.tracing_filter().into(),
        (None, _, None) => "info".into(),
    };
    let config = Config {
        bind,
        port,
        shards,
        // The environment before the file, as `warren ctl` looks: a
        // variable set for one invocation is the more specific.
        data_dir: flags
            .data_dir
            .or(env_data_dir)
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        storage: StorageConfig {
            sync: flags.sync.or(file.sync).unwrap_or(SyncMode::Fsync),
            segment_size,
            disk_free_limit,
        },
        spin_before_park: std::time::Duration::from_micros(
            flags
                .spin_before_park_us
                .or(file.spin_before_park_us)
                .unwrap_or(30),
        ),
        call_timeout: std::time::Duration::from_secs(
            flags
                .call_timeout
                .or(file.call_timeout)
                .unwrap_or(15)
                .max(1),
        ),
        access,
        limits,
        load_definitions: file.load_definitions,
        management,
        prometheus,
        memory_watermark,
        tls,
        management_tls,
        prometheus_tls,
    };
    Ok(Resolved { config, log })
}

/// An HTTPS listener from its `<keys>.*` and its port flag: on when the
/// file sets any of the keys or the flag names a port (0: off).
fn https(
    keys: &'static str,
    h: HttpsKeys,
    flag_port: Option<u16>,
    default_port: u16,
    bind: Option<IpAddr>,
    handshake_timeout: std::time::Duration,
) -> Result<Option<TlsConfig>, String> {
    let port = match flag_port {
        Some(0) => return Ok(None),
        Some(p) => p,
        None if h.is_set() => h.port.unwrap_or(default_port),
        None => return Ok(None),
    };
    let verify = h.verify.unwrap_or(SslVerify::None);
    if verify == SslVerify::Peer && h.cacertfile.is_none() {
        return Err(format!(
            "{keys}.verify = verify_peer needs {keys}.cacertfile"
        ));
    }
    Ok(Some(TlsConfig {
        keys,
        bind: h.ip.or(bind),
        port,
        cacertfile: h.cacertfile,
        certfile: h
            .certfile
            .ok_or_else(|| format!("HTTPS on port {port} needs a certificate: {keys}.certfile"))?,
        keyfile: h
            .keyfile
            .ok_or_else(|| format!("HTTPS on port {port} needs a key: {keys}.keyfile"))?,
        verify,
        fail_if_no_peer_cert: h.fail_if_no_peer_cert.unwrap_or(false),
        versions: h
            .versions
            .unwrap_or_else(|| vec![TlsVersion::Tls13, TlsVersion::Tls12]),
        handshake_timeout,
    }))
}

/// The one listener of a kind the file may name (`None`: it names none).
fn one_listener(
    listeners: Option<&[Listener]>,
    kind: &str,
    what: &str,
) -> Result<Option<Listener>, String> {
    match listeners {
        None | Some([]) => Ok(None),
        Some([one]) => Ok(Some(one.clone())),
        Some(more) => Err(format!(
            "Warren listens on one {what} address; the file names {} (listeners.{kind}.*)",
            more.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn file(text: &str) -> FileConfig {
        super::super::file::parse(text, Path::new("t.conf")).unwrap()
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let f = file(
            "listeners.tcp.default = 127.0.0.1:5673\nwarren.shards = 3\nwarren.data_dir = /var/lib/warren\n\
             default_user = admin\ndefault_pass = s3cret\nheartbeat = 10\nlog.console.level = debug\n",
        );
        let r = resolve(Flags::default(), f.clone(), None, 8, 0).unwrap();
        assert_eq!(r.config.port, 5673);
        assert_eq!(r.config.bind, Some(IpAddr::from([127, 0, 0, 1])));
        assert_eq!(r.config.shards, 3);
        assert_eq!(r.config.data_dir, PathBuf::from("/var/lib/warren"));
        assert_eq!(r.config.access.default_user, "admin");
        assert_eq!(r.config.access.default_pass, "s3cret");
        assert_eq!(r.config.access.loopback_users, vec!["guest".to_string()]);
        assert_eq!(r.config.limits.heartbeat, 10);
        assert_eq!(r.log, "debug");
        let flags = Flags {
            port: Some(6000),
            shards: Some(1),
            data_dir: Some("/tmp/x".into()),
            log: Some("warn".into()),
            ..Flags::default()
        };
        let r = resolve(flags, f.clone(), Some("/env".into()), 8, 0).unwrap();
        assert_eq!((r.config.port, r.config.shards), (6000, 1));
        assert_eq!(r.config.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(r.log, "warn");
        let r = resolve(Flags::default(), f, Some("/env".into()), 8, 0).unwrap();
        assert_eq!(
            r.config.data_dir,
            PathBuf::from("/env"),
            "WARREN_DATA_DIR over the file"
        );
    }

    #[test]
    fn defaults_and_environment() {
        let r = resolve(
            Flags::default(),
            FileConfig::default(),
            Some("/env".into()),
            4,
            0,
        )
        .unwrap();
        assert_eq!(r.config.port, 5672);
        assert_eq!(r.config.bind, None, "dual stack by default");
        assert_eq!(r.config.shards, 4, "one shard per CPU");
        assert_eq!(r.config.data_dir, PathBuf::from("/env"));
        assert_eq!(r.config.storage.disk_free_limit, 50_000_000);
        assert_eq!(r.config.access, AccessConfig::default());
        let r = resolve(
            Flags::default(),
            file("disk_free_limit.relative = 1.5\n"),
            None,
            1,
            1000,
        )
        .unwrap();
        assert_eq!(r.config.storage.disk_free_limit, 1500);
    }

    #[test]
    fn one_listener_only() {
        let two = file("listeners.tcp.1 = 5672\nlisteners.tcp.2 = 5673\n");
        let e = resolve(Flags::default(), two, None, 1, 0).unwrap_err();
        assert!(e.contains("one AMQP address"), "{e}");
        let none = file("listeners.tcp = none\n");
        assert!(resolve(Flags::default(), none, None, 1, 0).is_err());
    }

    #[test]
    fn tls_listener_from_the_file_and_flags() {
        let base = "listeners.ssl.default = 127.0.0.1:5671\n\
                    ssl_options.certfile = s.pem\n\
                    ssl_options.keyfile = s.key\n";
        let r = resolve(Flags::default(), file(base), None, 1, 0).unwrap();
        let t = r.config.tls.unwrap();
        assert_eq!((t.bind, t.port), (Some("127.0.0.1".parse().unwrap()), 5671));
        assert_eq!((t.verify, t.fail_if_no_peer_cert), (SslVerify::None, false));
        assert_eq!(t.versions, vec![TlsVersion::Tls13, TlsVersion::Tls12]);
        assert_eq!(t.handshake_timeout, std::time::Duration::from_secs(5));
        // No TLS without the keys, and none by default.
        assert!(resolve(Flags::default(), file(""), None, 1, 0)
            .unwrap()
            .config
            .tls
            .is_none());
        let e = resolve(
            Flags::default(),
            file("listeners.ssl.default = 5671\n"),
            None,
            1,
            0,
        )
        .unwrap_err();
        assert!(e.contains("certificate"), "{e}");
        // verify_peer needs the CA file; flags override the file.
        let peer = format!("{base}ssl_options.verify = verify_peer\n");
        let e = resolve(Flags::default(), file(&peer), None, 1, 0).unwrap_err();
        assert!(e.contains("cacertfile"), "{e}");
        let flags = Flags {
            ssl_port: Some(6671),
            ssl_cacertfile: Some("ca.pem".into()),
            ssl_fail_if_no_peer_cert: Some(true),
            ..Flags::default()
        };
        let t = resolve(flags, file(&peer), None, 1, 0)
            .unwrap()
            .config
            .tls
            .unwrap();
        assert_eq!(t.port, 6671);
        assert_eq!(t.cacertfile, Some(PathBuf::from("ca.pem")));
        assert!(t.fail_if_no_peer_cert && t.verify == SslVerify::Peer);
        // --ssl-port 0 turns the file's listener off; the same port twice
        // is refused.
        let off = Flags {
            ssl_port: Some(0),
            ..Flags::default()
        };
        assert!(resolve(off, file(base), None, 1, 0)
            .unwrap()
            .config
            .tls
            .is_none());
        let clash = Flags {
            port: Some(5671),
            bind: Some("127.0.0.1".parse().unwrap()),
            ..Flags::default()
        };
        assert!(resolve(clash, file(base), None, 1, 0).is_err());
    }

    #[test]
    fn https_listeners_from_the_file_and_flags() {
        let r = resolve(Flags::default(), file(""), None, 1, 0)
            .unwrap()
            .config;
        assert!(r.management_tls.is_none() && r.prometheus_tls.is_none());
        assert_eq!(r.management.map(|a| a.port()), Some(15672));
        // Only management.ssl.*: HTTPS on its default port and no plain
        // listener, as RabbitMQ; Prometheus keeps its plain default.
        let ssl = "management.ssl.certfile = s.pem\nmanagement.ssl.keyfile = s.key\n";
        let r = resolve(Flags::default(), file(ssl), None, 1, 0)
            .unwrap()
            .config;
        let t = r.management_tls.unwrap();
        assert_eq!(
            (t.port, t.keys, t.verify),
            (15671, "management.ssl", SslVerify::None)
        );
        assert_eq!(r.management, None);
        assert_eq!(r.prometheus.map(|a| a.port()), Some(15692));
        // Both, side by side, when the file names the plain one too.
        let both = format!("{ssl}management.tcp.port = 15672\n");
        let r = resolve(Flags::default(), file(&both), None, 1, 0)
            .unwrap()
            .config;
        assert!(r.management_tls.is_some() && r.management.is_some());
        // Prometheus: 15691 by default; the flag moves it or turns it off.
        let prom = "prometheus.ssl.certfile = s.pem\nprometheus.ssl.keyfile = s.key\n";
        let r = resolve(Flags::default(), file(prom), None, 1, 0)
            .unwrap()
            .config;
        assert_eq!(r.prometheus_tls.unwrap().port, 15691);
        assert_eq!(r.prometheus, None);
        let flags = Flags {
            prometheus_ssl_port: Some(16691),
            ..Flags::default()
        };
        let r = resolve(flags, file(prom), None, 1, 0).unwrap().config;
        assert_eq!(r.prometheus_tls.unwrap().port, 16691);
        let off = Flags {
            prometheus_ssl_port: Some(0),
            ..Flags::default()
        };
        let r = resolve(off, file(prom), None, 1, 0).unwrap().config;
        assert!(r.prometheus_tls.is_none());
        // Missing files, verify_peer without a CA, one port twice.
        let e = resolve(
            Flags::default(),
            file("management.ssl.port = 15671\n"),
            None,
            1,
            0,
        )
        .unwrap_err();
        assert!(e.contains("management.ssl.certfile"), "{e}");
        let peer = format!("{prom}prometheus.ssl.verify = verify_peer\n");
        let e = resolve(Flags::default(), file(&peer), None, 1, 0).unwrap_err();
        assert!(e.contains("prometheus.ssl.cacertfile"), "{e}");
        let clash = format!("{ssl}management.ssl.port = 15672\nmanagement.tcp.port = 15672\n");
        let e = resolve(Flags::default(), file(&clash), None, 1, 0).unwrap_err();
        assert!(e.contains("both name port 15672"), "{e}");
    }
}
