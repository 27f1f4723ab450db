//! Running under systemd: its readiness protocol (`sd_notify`), spoken by
//! hand so that no C library is linked for it.
//!
//! With `Type=notify`, systemd passes a datagram socket's address in
//! `NOTIFY_SOCKET` and counts the service as started only when it receives
//! `READY=1`. Outside systemd the variable is unset and every call here is
//! a no-op returning `Ok(false)`.
use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;

/// Sends `state` (newline-separated `KEY=value` assignments) to the socket
/// named by `NOTIFY_SOCKET`. `Ok(false)`: not started by systemd.
pub fn notify(state: &str) -> io::Result<bool> {
    notify_from(std::env::var_os("NOTIFY_SOCKET").as_deref(), state)
}

/// Tells systemd that the broker accepts connections; `status` is shown by
/// `systemctl status`.
pub fn ready(status: &str) -> io::Result<bool> {
    notify(&ready_message(status))
}

/// Tells systemd that the broker has begun shutting down, so that it shows
/// the service as stopping rather than running until the exit.
pub fn stopping() -> io::Result<bool> {
    notify("STOPPING=1")
}

/// Sends `state` to the socket `socket`, as [`notify`] does with
/// `NOTIFY_SOCKET`: a path, or `@name` for the abstract namespace.
pub fn notify_to(socket: &OsStr, state: &str) -> io::Result<()> {
    let bytes = socket.as_bytes();
    let sender = UnixDatagram::unbound()?;
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        sender.send_to_addr(state.as_bytes(), &SocketAddr::from_abstract_name(name)?)?
    } else if bytes.starts_with(b"/") {
        sender.send_to(state.as_bytes(), Path::new(socket))?
    } else {
        // sd_notify refuses relative paths too: they would depend on the
        // working directory, which systemd does not promise.
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "NOTIFY_SOCKET is neither an absolute path nor an @abstract name",
        ));
    };
    if sent != state.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "notification datagram truncated",
        ));
    }
    Ok(())
}

/// `notify` for a given `NOTIFY_SOCKET` value; systemd's library also
/// treats an empty value as unset.
fn notify_from(socket: Option<&OsStr>, state: &str) -> io::Result<bool> {
    match socket {
        Some(s) if !s.is_empty() => notify_to(s, state).map(|()| true),
        _ => Ok(false),
    }
}

/// A newline in the status would start a new assignment (a forged
/// `READY=1` or `MAINPID=`), so each becomes a space.
fn ready_message(status: &str) -> String {
    format!("READY=1\nSTATUS={}", status.replace(['\n', '\r'], " "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let dir =
                std::env::temp_dir().join(format!("warren-{tag}-{}-{nanos}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn receive(socket: &UnixDatagram) -> String {
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn sends_to_a_socket_path() {
        let dir = TempDir::new("notify");
        let path = dir.0.join("notify.sock");
        let systemd = UnixDatagram::bind(&path).unwrap();
        let sent = notify_from(Some(path.as_os_str()), &ready_message("listening on 5672"));
        assert!(sent.unwrap());
        assert_eq!(receive(&systemd), "READY=1\nSTATUS=listening on 5672");
        notify_to(path.as_os_str(), "STOPPING=1").unwrap();
        assert_eq!(receive(&systemd), "STOPPING=1");
    }

    #[test]
    fn sends_to_an_abstract_name() {
        let name = format!("warren-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let systemd = UnixDatagram::bind_addr(&addr).unwrap();
        notify_to(OsStr::new(&format!("@{name}")), "READY=1").unwrap();
        assert_eq!(receive(&systemd), "READY=1");
    }

    #[test]
    fn unset_or_empty_socket_is_not_systemd() {
        assert!(!notify_from(None, "READY=1").unwrap());
        assert!(!notify_from(Some(OsStr::new("")), "READY=1").unwrap());
    }

    #[test]
    fn relative_or_missing_socket_is_an_error() {
        let e = notify_from(Some(OsStr::new("run/notify")), "READY=1").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let dir = TempDir::new("notify-missing");
        let gone = dir.0.join("nobody-listens.sock");
        assert!(notify_to(gone.as_os_str(), "READY=1").is_err());
    }

    #[test]
    fn status_cannot_inject_assignments() {
        assert_eq!(
            ready_message("up\nMAINPID=1\r\nREADY=0"),
            "READY=1\nSTATUS=up MAINPID=1  READY=0"
        );
    }
}
