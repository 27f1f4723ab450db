//! The control socket: `<data_dir>/warren-ctl.sock`, served on shard 0.
//! One request per connection: a JSON [`Request`] line in, a JSON
//! [`Reply`] line out (see [`super::proto`]).
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Instant;

use super::proto::{exit, Reply, Request, SOCKET_NAME};
use crate::config::Config;
use crate::runtime::net::{LocalListener, LocalStream};
use crate::shard::Shard;

/// A definitions file to import can be large; anything beyond is refused.
const REQUEST_LIMIT: usize = 256 << 20;

/// What the verbs need to know about the broker beyond its shards.
#[derive(Debug, Clone)]
pub struct Context {
    /// When the broker started.
    pub started: Instant,
    /// The node's name, `warren@<host>`.
    pub node: String,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The AMQP listener's address.
    pub amqp: std::net::SocketAddr,
    /// Free-space limit on the data directory's file system.
    pub disk_free_limit: u64,
    /// Number of shards.
    pub shards: usize,
    /// The management HTTP listener, if on.
    pub management: Option<std::net::SocketAddr>,
    /// The Prometheus listener, if on.
    pub prometheus: Option<std::net::SocketAddr>,
    /// The AMQPS listener, if on.
    pub amqps: Option<std::net::SocketAddr>,
    /// The management API's HTTPS listener, if on.
    pub management_tls: Option<std::net::SocketAddr>,
    /// The Prometheus HTTPS listener, if on.
    pub prometheus_tls: Option<std::net::SocketAddr>,
    /// What the TLS listeners' certificates are read from (a reload reads
    /// them again).
    pub certs: super::certs::Sources,
}

impl Context {
    /// The broker's context as `config` describes it, from now.
    pub fn new(config: &Config) -> Context {
        Context {
            started: Instant::now(),
            node: node_name(),
            data_dir: config.data_dir.clone(),
            amqp: std::net::SocketAddr::new(
                config.bind.unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])),
                config.port,
            ),
            disk_free_limit: config.storage.disk_free_limit,
            shards: config.shards,
            management: config.management,
            prometheus: config.prometheus,
            amqps: config.tls.as_ref().map(tls_addr),
            management_tls: config.management_tls.as_ref().map(tls_addr),
            prometheus_tls: config.prometheus_tls.as_ref().map(tls_addr),
            certs: super::certs::Sources::of(config),
        }
    }
}

/// Where a TLS listener listens (`server::run` resolved its address).
fn tls_addr(t: &crate::config::TlsConfig) -> std::net::SocketAddr {
    let ip = t
        .bind
        .unwrap_or(std::net::IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED));
    std::net::SocketAddr::new(ip, t.port)
}

/// `warren@<short host name>`, the node name in listings and info lines.
pub fn node_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let host = if ok {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "localhost".into()
    };
    let short = host.split('.').next().unwrap_or("localhost").to_string();
    format!("warren@{short}")
}

/// Starts serving the control socket on this shard (shard 0). A socket
/// that cannot be made is logged: the broker serves AMQP without it.
pub fn start(shard: Rc<Shard>, config: &Config, ctx: Rc<Context>) {
    let path = config.data_dir.join(SOCKET_NAME);
    let listener = match LocalListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot create the control socket {}: {e}", path.display());
            return;
        }
    };
    crate::runtime::spawn(async move {
        loop {
            match listener.accept().await {
                Ok(stream) => {
                    crate::runtime::spawn(serve_one(shard.clone(), ctx.clone(), stream));
                }
                Err(e) => {
                    tracing::warn!("control socket: accept failed: {e}");
                    crate::runtime::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });
}

async fn serve_one(shard: Rc<Shard>, ctx: Rc<Context>, mut stream: LocalStream) {
    let line = match stream.read_line(REQUEST_LIMIT).await {
        Ok(Some(l)) => l,
        Ok(None) => return,
        Err(e) => {
            let reply = Reply::Error {
                code: exit::DATAERR,
                message: e.to_string(),
            };
            let _ = write_reply(&mut stream, &reply).await;
            return;
        }
    };
    let reply = match serde_json::from_slice::<Request>(&line) {
        Ok(req) => {
            let verb = req.verb.clone();
            let reply = super::verbs::run(&shard, &ctx, req).await;
            if verb == "stop" && matches!(reply, Reply::Done) {
                let _ = write_reply(&mut stream, &reply).await;
                tracing::info!("stop requested through the control socket, shutting down");
                let _ = crate::daemon::stopping();
                crate::runtime::net::stop_listening();
                std::process::exit(0);
            }
            reply
        }
        Err(e) => Reply::Error {
            code: exit::USAGE,
            message: format!("malformed request: {e}"),
        },
    };
    let _ = write_reply(&mut stream, &reply).await;
}

async fn write_reply(stream: &mut LocalStream, reply: &Reply) -> std::io::Result<()> {
    let mut out = serde_json::to_vec(reply).unwrap_or_else(|_| b"{}".to_vec());
    out.push(b'\n');
    stream.write_all(&out).await
}
