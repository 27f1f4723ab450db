//! Listening sockets and the split of a connection into reader and writer.
use glommio::net::{TcpListener, TcpStream};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};

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

/// Splits a stream into two handles on dup'ed fds, so one task can read
/// while another writes without sharing a `&mut`.
pub fn split(stream: TcpStream) -> std::io::Result<(TcpStream, TcpStream)> {
    use std::os::fd::AsRawFd;
    // SAFETY: dup returns a new fd for the same socket, owned by the new stream.
    let fd = unsafe { libc::dup(stream.as_raw_fd()) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let writer = unsafe { TcpStream::from_raw_fd(fd) };
    Ok((stream, writer))
}
