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

/// Fails if anything already listens on `addr`, including another Warren:
/// a plain bind (no SO_REUSEPORT) cannot share the port with anyone, so we
/// do not silently split connections with a second broker.
pub fn check_port_free(addr: SocketAddr) -> std::io::Result<()> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    Ok(())
}

/// One shard's listener: SO_REUSEPORT so every shard binds the same port
/// and the kernel spreads connections across them.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(4096)?;
    // SAFETY: the fd is a bound, listening TCP socket whose ownership moves
    // into the TcpListener.
    Ok(unsafe { TcpListener::from_raw_fd(s.into_raw_fd()) })
}

/// One connection's socket, shared by its reader and writer tasks.
///
/// One fd per connection: a dup'ed fd per half doubled descriptor use and
/// capped connections at half of RLIMIT_NOFILE. Each poll borrows the stream
/// only for the call, never across an await, and glommio keeps read and
/// write readiness (and their timeouts) apart, so a pending read and a
/// pending write coexist.
#[derive(Clone)]
pub struct ConnSocket(Rc<RefCell<TcpStream>>);

impl ConnSocket {
    pub fn new(stream: TcpStream) -> Self {
        ConnSocket(Rc::new(RefCell::new(stream)))
    }

    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| Pin::new(&mut *self.0.borrow_mut()).poll_read(cx, buf)).await
    }

    pub async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = poll_fn(|cx| Pin::new(&mut *self.0.borrow_mut()).poll_write(cx, buf)).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            buf = &buf[n..];
        }
        Ok(())
    }

    /// Sends FIN; the fd itself closes when both tasks have dropped it.
    pub fn shutdown_write(&self) {
        use std::os::fd::AsRawFd;
        // SAFETY: shutdown on the fd this stream owns (glommio's own
        // shutdown is the same call behind an async signature).
        unsafe { libc::shutdown(self.0.borrow().as_raw_fd(), libc::SHUT_WR) };
    }

    pub fn set_nodelay(&self) {
        let _ = self.0.borrow().set_nodelay(true);
    }

    pub fn set_read_timeout(&self, timeout: Option<std::time::Duration>) -> io::Result<()> {
        self.0
            .borrow()
            .set_read_timeout(timeout)
            .map_err(io::Error::from)
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.borrow().peer_addr().map_err(io::Error::from)
    }
}
