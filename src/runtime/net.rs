//! Listening sockets, and a connection's socket shared by its reader and
//! writer.
use futures_lite::future::poll_fn;
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::{TcpListener, TcpStream};
use socket2::{Domain, Protocol, Socket, Type};
use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::pin::Pin;
use std::rc::Rc;

/// The wildcard address for "all interfaces": IPv6's `::` with IPv4 mapped
/// onto it (one dual-stack socket, as RabbitMQ listens by default), or
/// IPv4's `0.0.0.0` on a kernel without IPv6.
pub fn all_interfaces(port: u16) -> SocketAddr {
    let v6 = SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), port);
    if socket_for(v6).is_ok() {
        v6
    } else {
        SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), port)
    }
}

/// A TCP socket for `addr`; an IPv6 wildcard takes IPv4 too, whatever
/// the system's `bindv6only` default.
fn socket_for(addr: SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        s.set_only_v6(false)?;
    }
    s.set_reuse_address(true)?;
    Ok(s)
}

/// Waits up to `limit` for `addr` to be free, then fails if anything still
/// listens on it, including another Warren: a plain bind (no SO_REUSEPORT)
/// cannot share the port with anyone, so we never silently split
/// connections with a second broker. The wait covers a predecessor's
/// listening sockets, which outlive its exit for a moment (io_uring tears
/// its rings down asynchronously) and, after a SIGKILL, still accept.
pub fn wait_port_free(addr: SocketAddr, limit: std::time::Duration) -> io::Result<()> {
    let deadline = std::time::Instant::now() + limit;
    let mut told = false;
    loop {
        match socket_for(addr).and_then(|s| s.bind(&addr.into())) {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                if std::time::Instant::now() >= deadline {
                    return Err(e);
                }
                if !told {
                    tracing::info!("{addr} is in use; waiting up to {limit:?} for it to be freed");
                    told = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

static STOPPED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether [`stop_listening`] ran: accept errors are then expected.
pub fn stopped_listening() -> bool {
    STOPPED.load(std::sync::atomic::Ordering::SeqCst)
}

/// The process's listening sockets, so that a shutdown can close them
/// before it exits (see [`stop_listening`]).
static LISTENING: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

/// Stops every listener accepting, at once: `shutdown` unhashes a
/// listening socket from its port, where closing it at exit would leave it
/// accepting (and resetting) connections until io_uring lets it go. Called
/// only on the way out.
pub fn stop_listening() {
    STOPPED.store(true, std::sync::atomic::Ordering::SeqCst);
    let fds = LISTENING.lock().unwrap_or_else(|p| p.into_inner());
    for &fd in fds.iter() {
        // SAFETY: shutdown on a listening socket this process opened and
        // never closes before exit.
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    }
}

/// One shard's listening socket (and its fd, which glommio's listener
/// does not expose).
pub struct Listener(TcpListener, i32);

impl Listener {
    /// Stops accepting now (`stop_app`): the socket is unhashed from the
    /// port at once, where dropping it would leave it accepting until
    /// io_uring lets it go.
    pub fn shutdown(&self) {
        let fd = self.1;
        LISTENING
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|&f| f != fd);
        // SAFETY: shutdown on the listening socket this listener owns.
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    }

    /// The next connection the kernel gave this shard.
    pub async fn accept(&self) -> io::Result<ConnSocket> {
        let stream = self.0.accept().await.map_err(io::Error::from)?;
        Ok(ConnSocket::new(stream))
    }
}

/// One shard's listener: SO_REUSEPORT so every shard binds the same port
/// and the kernel spreads connections across them.
pub fn listen(addr: SocketAddr) -> std::io::Result<Listener> {
    let s = socket_for(addr)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(4096)?;
    let fd = {
        use std::os::fd::AsRawFd;
        let fd = s.as_raw_fd();
        LISTENING.lock().unwrap_or_else(|p| p.into_inner()).push(fd);
        fd
    };
    // SAFETY: the fd is a bound, listening TCP socket whose ownership moves
    // into the TcpListener.
    Ok(Listener(
        unsafe { TcpListener::from_raw_fd(s.into_raw_fd()) },
        fd,
    ))
}

/// Most iovecs one `sendmsg` takes (Linux's UIO_MAXIOV).
const IOV_MAX: usize = 1024;

/// One connection's socket, shared by its reader and writer tasks.
///
/// One fd per connection: a dup'ed fd per half doubled descriptor use and
/// capped connections at half of RLIMIT_NOFILE. Each poll borrows the stream
/// only for the call, never across an await, and glommio keeps read and
/// write readiness (and their timeouts) apart, so a pending read and a
/// pending write coexist.
///
/// A TLS connection (`tls`) reads and writes through its session
/// (`runtime::tls`); a plain one goes straight to the stream, as before,
/// at the cost of one branch. The TLS calls are boxed so that the plain
/// path's futures, which every idle connection holds, stay small.
#[derive(Clone)]
pub struct ConnSocket {
    stream: Rc<RefCell<TcpStream>>,
    tls: Option<Rc<super::tls::Tls>>,
}

impl ConnSocket {
    fn new(stream: TcpStream) -> Self {
        ConnSocket {
            stream: Rc::new(RefCell::new(stream)),
            tls: None,
        }
    }

    /// Runs the server side of a TLS handshake within `timeout`; the
    /// socket returned reads and writes through the session.
    pub async fn start_tls(
        self,
        config: std::sync::Arc<rustls::ServerConfig>,
        timeout: std::time::Duration,
    ) -> Result<ConnSocket, super::tls::HandshakeError> {
        let tls = super::tls::handshake(&self.stream, config, timeout).await?;
        Ok(ConnSocket {
            stream: self.stream,
            tls: Some(Rc::new(tls)),
        })
    }

    /// Whether this is a TLS connection.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The verified client certificate (DER) of a TLS connection, if the
    /// client sent one.
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        self.tls.as_ref().and_then(|t| t.peer_certificate())
    }

    /// The TLS version as RabbitMQ names it (`tlsv1.3`), for listings;
    /// `None` on a plain connection.
    pub fn tls_protocol(&self) -> Option<&'static str> {
        self.tls.as_ref().map(|t| t.protocol())
    }

    /// The TLS version and cipher suite, for the log.
    pub fn tls_description(&self) -> Option<String> {
        self.tls.as_ref().map(|t| t.describe())
    }

    /// Reads what is there (at least one byte; 0 at EOF).
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.tls {
            None => poll_fn(|cx| Pin::new(&mut *self.stream.borrow_mut()).poll_read(cx, buf)).await,
            Some(tls) => Box::pin(tls.read(&self.stream, buf)).await,
        }
    }

    /// Writes all of `buf`.
    pub async fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        match &self.tls {
            None => self.write_all_plain(buf).await,
            Some(tls) => Box::pin(tls.write_all(&self.stream, &[buf])).await,
        }
    }

    async fn write_all_plain(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n =
                poll_fn(|cx| Pin::new(&mut *self.stream.borrow_mut()).poll_write(cx, buf)).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            buf = &buf[n..];
        }
        Ok(())
    }

    /// Writes `parts` in order with `sendmsg` (scatter/gather: no copy into
    /// one buffer). glommio has no vectored write, so the send is ours and
    /// only the wait for room uses glommio: on EAGAIN, a plain write of the
    /// next part waits until the socket takes some of it.
    pub async fn write_all_vectored(&self, parts: &[&[u8]]) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        if let Some(tls) = &self.tls {
            // One pass of encryption over every part, then the records.
            return Box::pin(tls.write_all(&self.stream, parts)).await;
        }
        let fd = self.stream.borrow().as_raw_fd();
        let mut first = 0; // index of the first part not fully sent
        let mut skip = 0; // bytes of that part already sent
        let mut iov: Vec<libc::iovec> = Vec::with_capacity(parts.len().min(IOV_MAX));
        loop {
            // Step over what is sent, and over empty parts: a plain write of
            // an empty part below would return at once, forever.
            while first < parts.len() && parts[first].len() == skip {
                first += 1;
                skip = 0;
            }
            if first == parts.len() {
                return Ok(());
            }
            iov.clear();
            for (i, part) in parts[first..].iter().take(IOV_MAX).enumerate() {
                let part = if i == 0 { &part[skip..] } else { part };
                iov.push(libc::iovec {
                    iov_base: part.as_ptr() as *mut libc::c_void,
                    iov_len: part.len(),
                });
            }
            // SAFETY: a zeroed msghdr with only the iovec array set; every
            // iovec points into `parts`, which outlive the call.
            let sent = unsafe {
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = iov.as_mut_ptr();
                msg.msg_iovlen = iov.len() as _;
                libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
            };
            let mut n = match sent {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n if n > 0 => n as usize,
                _ => {
                    let err = io::Error::last_os_error();
                    match err.kind() {
                        io::ErrorKind::WouldBlock => {
                            let part = &parts[first][skip..];
                            poll_fn(|cx| {
                                Pin::new(&mut *self.stream.borrow_mut()).poll_write(cx, part)
                            })
                            .await?
                        }
                        io::ErrorKind::Interrupted => 0,
                        _ => return Err(err),
                    }
                }
            };
            while n > 0 {
                let left = parts[first].len() - skip;
                if n >= left {
                    n -= left;
                    first += 1;
                    skip = 0;
                } else {
                    skip += n;
                    n = 0;
                }
            }
        }
    }

    /// Sends FIN (after TLS's close_notify); the fd itself closes when
    /// both tasks have dropped it.
    pub fn shutdown_write(&self) {
        use std::os::fd::AsRawFd;
        if let Some(tls) = &self.tls {
            tls.close_notify(self.stream.borrow().as_raw_fd());
        }
        // SAFETY: shutdown on the fd this stream owns (glommio's own
        // shutdown is the same call behind an async signature).
        unsafe { libc::shutdown(self.stream.borrow().as_raw_fd(), libc::SHUT_WR) };
    }

    /// Ends reading: a pending or later read returns EOF at once. How an
    /// operator's close reaches a connection's reader, wherever it waits.
    pub fn shutdown_read(&self) {
        use std::os::fd::AsRawFd;
        // SAFETY: shutdown on the fd this stream owns.
        unsafe { libc::shutdown(self.stream.borrow().as_raw_fd(), libc::SHUT_RD) };
    }

    /// This end's address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stream.borrow().local_addr().map_err(io::Error::from)
    }

    /// Turns Nagle's algorithm off: frames go out as they are written.
    pub fn set_nodelay(&self) {
        let _ = self.stream.borrow().set_nodelay(true);
    }

    /// Reads fail with `TimedOut` after this long without data.
    pub fn set_read_timeout(&self, timeout: Option<std::time::Duration>) -> io::Result<()> {
        self.stream
            .borrow()
            .set_read_timeout(timeout)
            .map_err(io::Error::from)
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.borrow().peer_addr().map_err(io::Error::from)
    }
}

/// A local (Unix) socket listener: the control socket `warren ctl` talks
/// to. Created with mode 0600, so its file permissions are the
/// credential.
pub struct LocalListener(glommio::net::UnixListener);

impl LocalListener {
    /// Binds `path`, replacing a stale socket file a killed broker left.
    pub fn bind(path: &std::path::Path) -> io::Result<LocalListener> {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        // SAFETY: umask only changes this process's file creation mask;
        // restored right after the bind so nothing else is created with it.
        let old = unsafe { libc::umask(0o177) };
        let bound = glommio::net::UnixListener::bind(path);
        unsafe { libc::umask(old) };
        let l = bound.map_err(io::Error::from)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(LocalListener(l))
    }

    /// The next client.
    pub async fn accept(&self) -> io::Result<LocalStream> {
        self.0
            .accept()
            .await
            .map(LocalStream)
            .map_err(io::Error::from)
    }
}

/// One control-socket client.
pub struct LocalStream(glommio::net::UnixStream);

impl LocalStream {
    /// Reads one line (without its `\n`), at most `limit` bytes; `None` at
    /// EOF before a whole line.
    pub async fn read_line(&mut self, limit: usize) -> io::Result<Option<Vec<u8>>> {
        use futures_lite::AsyncReadExt;
        let mut line = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = self.0.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            line.extend_from_slice(&chunk[..n]);
            if let Some(end) = line.iter().position(|&b| b == b'\n') {
                line.truncate(end);
                return Ok(Some(line));
            }
            if line.len() > limit {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "request too large",
                ));
            }
        }
    }

    /// Writes all of `buf`.
    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        use futures_lite::AsyncWriteExt;
        self.0.write_all(buf).await?;
        self.0.flush().await
    }
}

/// A listener that only one shard serves (the management API, the
/// Prometheus endpoint): a plain bind, so a second broker on the same
/// port fails to start rather than sharing it.
pub struct SoleListener(TcpListener);

impl SoleListener {
    /// Binds `addr` (an IPv6 wildcard takes IPv4 too).
    pub fn bind(addr: SocketAddr) -> io::Result<SoleListener> {
        let s = socket_for(addr)?;
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        s.listen(1024)?;
        let fd = {
            use std::os::fd::AsRawFd;
            s.as_raw_fd()
        };
        LISTENING.lock().unwrap_or_else(|p| p.into_inner()).push(fd);
        // SAFETY: the fd is a bound, listening TCP socket whose ownership
        // moves into the TcpListener.
        Ok(SoleListener(unsafe {
            TcpListener::from_raw_fd(s.into_raw_fd())
        }))
    }

    /// The next client.
    pub async fn accept(&self) -> io::Result<Stream> {
        let s = self.0.accept().await.map_err(io::Error::from)?;
        let _ = s.set_nodelay(true);
        Ok(Stream(s))
    }
}

/// A plain TCP stream with futures' `AsyncRead`/`AsyncWrite`, for protocol
/// stacks that bring their own framing (hyper).
pub struct Stream(TcpStream);

impl Stream {
    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.peer_addr().map_err(io::Error::from)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}
