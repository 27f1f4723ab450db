//! Finding the broker's control socket and one request/reply exchange
//! over it, with deadlines on connect, write and read.
use crate::mgmt::proto::{Reply, Request, SOCKET_NAME};
use socket2::{Domain, SockAddr, Socket, Type};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the client looks for the broker, from the process environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    /// `$WARREN_CONFIG_FILE`, else `/etc/warren/warren.conf`.
    pub config_file: PathBuf,
    /// `$WARREN_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// The short host name, for `warren@<host>`.
    pub hostname: String,
    /// `$HOME`, for the diagnostics of an unreachable node.
    pub home: Option<String>,
}

impl Env {
    /// The environment of this process.
    pub fn from_process() -> Env {
        Env {
            config_file: std::env::var_os("WARREN_CONFIG_FILE")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/etc/warren/warren.conf")),
            data_dir: std::env::var_os("WARREN_DATA_DIR").map(PathBuf::from),
            hostname: short_hostname(),
            home: std::env::var("HOME").ok(),
        }
    }
}

/// The host name up to its first dot, as Erlang short node names use it.
pub fn short_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its whole length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".to_string();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let host = String::from_utf8_lossy(&buf[..end]).into_owned();
    host.split('.').next().unwrap_or("localhost").to_string()
}

/// `warren.data_dir` from a config file of `key = value` lines.
pub fn config_data_dir(text: &str) -> Option<PathBuf> {
    let mut found = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim() == "warren.data_dir" {
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            found = Some(PathBuf::from(value));
        }
    }
    found
}

/// Whether a `-n` value names a path rather than a node.
fn is_path(node: &str) -> bool {
    node.contains('/') || Path::new(node).exists()
}

/// The socket to dial and the node name to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub socket: PathBuf,
    pub node: String,
}

/// Finds the control socket: `--data-dir`, then `-n` given a path (a
/// data directory or the socket), then `$WARREN_DATA_DIR`, then the config
/// file's `warren.data_dir`, then `./warren-data`: the order the broker
/// itself resolves its data directory in (after its flags).
pub fn locate(data_dir: Option<&str>, node: Option<&str>, env: &Env) -> Target {
    let default_node = format!("warren@{}", env.hostname);
    let in_dir = |d: &Path| d.join(SOCKET_NAME);
    if let Some(dir) = data_dir {
        let node = node.filter(|n| !is_path(n)).map(str::to_string);
        return Target {
            socket: in_dir(Path::new(dir)),
            node: node.unwrap_or(default_node),
        };
    }
    match node {
        Some(n) if is_path(n) => {
            let p = Path::new(n);
            let socket = if p.is_dir() {
                in_dir(p)
            } else {
                p.to_path_buf()
            };
            return Target {
                socket,
                node: default_node,
            };
        }
        _ => {}
    }
    let dir = env
        .data_dir
        .clone()
        .or_else(|| {
            std::fs::read_to_string(&env.config_file)
                .ok()
                .and_then(|t| config_data_dir(&t))
        })
        .unwrap_or_else(|| PathBuf::from("./warren-data"));
    Target {
        socket: in_dir(&dir),
        node: node.map(str::to_string).unwrap_or(default_node),
    }
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum CallError {
    /// No broker behind the socket, or it hung up before answering.
    Down(io::Error),
    /// No answer before the deadline.
    Timeout,
    /// An answer that is not a `Reply`.
    BadReply(String),
}

/// Connects to `path`, giving up at `deadline`.
pub fn connect(path: &Path, deadline: Instant) -> Result<UnixStream, CallError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(CallError::Timeout);
    }
    let addr = SockAddr::unix(path).map_err(CallError::Down)?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(CallError::Down)?;
    match socket.connect_timeout(&addr, left) {
        Ok(()) => Ok(socket.into()),
        Err(e) if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock => {
            Err(CallError::Timeout)
        }
        Err(e) => Err(CallError::Down(e)),
    }
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

/// Sends `req` and reads one reply line, both before `deadline`.
pub fn call(stream: UnixStream, req: &Request, deadline: Instant) -> Result<Reply, CallError> {
    let mut line = serde_json::to_vec(req).map_err(|e| CallError::BadReply(e.to_string()))?;
    line.push(b'\n');
    let left = |d: Instant| {
        let left = d.saturating_duration_since(Instant::now());
        // A zero timeout means "block forever" to the socket calls.
        (!left.is_zero()).then_some(left.max(Duration::from_millis(1)))
    };
    let mut writer = stream.try_clone().map_err(CallError::Down)?;
    writer
        .set_write_timeout(Some(left(deadline).ok_or(CallError::Timeout)?))
        .map_err(CallError::Down)?;
    writer.write_all(&line).map_err(|e| {
        if timed_out(&e) {
            CallError::Timeout
        } else {
            CallError::Down(e)
        }
    })?;
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        let Some(t) = left(deadline) else {
            return Err(CallError::Timeout);
        };
        reader
            .get_ref()
            .set_read_timeout(Some(t))
            .map_err(CallError::Down)?;
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => {
                return Err(CallError::Down(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the node closed the connection",
                )))
            }
            Ok(_) if buf.ends_with(b"\n") => break,
            Ok(_) => continue,
            Err(e) if timed_out(&e) => return Err(CallError::Timeout),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CallError::Down(e)),
        }
    }
    serde_json::from_slice(&buf).map_err(|e| CallError::BadReply(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(config: &Path, data_dir: Option<&str>) -> Env {
        Env {
            config_file: config.to_path_buf(),
            data_dir: data_dir.map(PathBuf::from),
            hostname: "box".to_string(),
            home: None,
        }
    }

    #[test]
    fn config_reader_takes_the_last_data_dir() {
        let text = "# comment\nwarren.port = 5672\nwarren.data_dir = /a\n\n  warren.data_dir = \"/b c\"\nbad line\n";
        assert_eq!(config_data_dir(text), Some(PathBuf::from("/b c")));
        assert_eq!(config_data_dir("# warren.data_dir = /x\n"), None);
    }

    #[test]
    fn locate_in_order() {
        let dir = std::env::temp_dir().join(format!("warren-ctl-locate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("warren.conf");
        let missing = dir.join("missing.conf");

        // --data-dir wins over everything.
        let t = locate(Some("/d"), None, &env(&missing, Some("/e")));
        assert_eq!(t.socket, PathBuf::from("/d").join(SOCKET_NAME));
        assert_eq!(t.node, "warren@box");

        // -n with a directory, or with the socket itself.
        let t = locate(None, Some(dir.to_str().unwrap()), &env(&missing, None));
        assert_eq!(t.socket, dir.join(SOCKET_NAME));
        let sock = dir.join("x.sock");
        let t = locate(None, Some(sock.to_str().unwrap()), &env(&missing, None));
        assert_eq!(t.socket, sock);

        // $WARREN_DATA_DIR, then the config file, then ./warren-data.
        std::fs::write(&conf, "warren.data_dir = /from/conf\n").unwrap();
        let t = locate(None, Some("rabbit@elsewhere"), &env(&conf, Some("/e")));
        assert_eq!(t.socket, PathBuf::from("/e").join(SOCKET_NAME));
        assert_eq!(t.node, "rabbit@elsewhere");
        let t = locate(None, None, &env(&conf, None));
        assert_eq!(t.socket, PathBuf::from("/from/conf").join(SOCKET_NAME));
        let t = locate(None, None, &env(&missing, None));
        assert_eq!(t.socket, PathBuf::from("./warren-data").join(SOCKET_NAME));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn connect_to_nothing_is_down() {
        let path =
            std::env::temp_dir().join(format!("warren-ctl-none-{}.sock", std::process::id()));
        let deadline = Instant::now() + Duration::from_secs(1);
        assert!(matches!(connect(&path, deadline), Err(CallError::Down(_))));
        assert!(matches!(
            connect(&path, Instant::now()),
            Err(CallError::Timeout)
        ));
    }
}
