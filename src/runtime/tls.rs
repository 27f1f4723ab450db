//! TLS over a connection's socket: rustls driven by hand over the same
//! glommio stream the plain path uses, so the reader and writer tasks share
//! it exactly as they share a plain socket.
//!
//! The reader feeds ciphertext to rustls and decrypts straight into the
//! connection's read buffer (`read`'s `dst`); the writer hands its whole
//! coalesced buffer to rustls at once and sends the records it made. Neither
//! holds a borrow of the TLS state across an await, so a pending read and a
//! pending write coexist as on a plain socket. Only the writer sends: what
//! the reader's packets make rustls want to send (a TLS 1.3 key update)
//! goes out ahead of the writer's next records.
use futures_lite::future::poll_fn;
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use rustls::ServerConnection;
use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Ciphertext read from the socket at once: a few records on a busy
/// connection; a quiet one starts small (idle connections should cost
/// kilobytes) and grows once a read fills its buffer.
const CIPHER_CHUNK: usize = 64 * 1024;
const FIRST_CIPHER_CHUNK: usize = 4 * 1024;
/// Plaintext rustls takes before its records are sent (bounds the
/// ciphertext buffered per connection).
const SEND_LIMIT: usize = 256 * 1024;

/// A connection's TLS session after its handshake.
pub struct Tls {
    conn: RefCell<ServerConnection>,
    /// Ciphertext read but not yet taken by rustls (the reader's).
    input: RefCell<Input>,
    /// Records to send (the writer's).
    output: RefCell<Vec<u8>>,
}

#[derive(Default)]
struct Input {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// Why a TLS handshake failed, for the log line.
#[derive(Debug)]
pub enum HandshakeError {
    /// It did not finish in time.
    TimedOut(Duration),
    /// The peer closed the socket during it.
    Closed,
    /// A socket error.
    Io(io::Error),
    /// rustls refused the peer (a bad or untrusted certificate, a plain
    /// client, no shared version or cipher suite).
    Tls {
        /// What rustls said.
        error: rustls::Error,
        /// The peer sent an AMQP protocol header instead of a TLS hello.
        plain_amqp: bool,
    },
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::TimedOut(t) => write!(f, "did not finish within {t:?}"),
            HandshakeError::Closed => write!(f, "the client closed the socket"),
            HandshakeError::Io(e) => write!(f, "{e}"),
            HandshakeError::Tls {
                plain_amqp: true, ..
            } => write!(
                f,
                "the client sent a plain AMQP header: a non-TLS client on the TLS port"
            ),
            HandshakeError::Tls { error, .. } => write!(f, "{error}"),
        }
    }
}

fn tls_io_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

async fn read_some(stream: &RefCell<TcpStream>, buf: &mut [u8]) -> io::Result<usize> {
    poll_fn(|cx| Pin::new(&mut *stream.borrow_mut()).poll_read(cx, buf)).await
}

async fn write_all(stream: &RefCell<TcpStream>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = poll_fn(|cx| Pin::new(&mut *stream.borrow_mut()).poll_write(cx, buf)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    Ok(())
}

/// Runs the server side of a handshake on `stream` within `timeout`.
pub async fn handshake(
    stream: &RefCell<TcpStream>,
    config: Arc<rustls::ServerConfig>,
    timeout: Duration,
) -> Result<Tls, HandshakeError> {
    use futures_lite::FutureExt;
    let conn = ServerConnection::new(config).map_err(|error| HandshakeError::Tls {
        error,
        plain_amqp: false,
    })?;
    let tls = Tls {
        conn: RefCell::new(conn),
        input: RefCell::new(Input {
            buf: vec![0; 16 * 1024],
            ..Input::default()
        }),
        output: RefCell::new(Vec::new()),
    };
    let run = async {
        tls.drive_handshake(stream).await?;
        Ok(())
    };
    let expired = async {
        super::sleep(timeout).await;
        Err(HandshakeError::TimedOut(timeout))
    };
    run.or(expired).await?;
    let mut input = tls.input.borrow_mut();
    let left = input.buf[input.start..input.end].to_vec();
    input.buf = vec![0; FIRST_CIPHER_CHUNK.max(left.len())];
    input.buf[..left.len()].copy_from_slice(&left);
    input.start = 0;
    input.end = left.len();
    drop(input);
    tls.conn.borrow_mut().set_buffer_limit(Some(SEND_LIMIT));
    Ok(tls)
}

impl Tls {
    async fn drive_handshake(&self, stream: &RefCell<TcpStream>) -> Result<(), HandshakeError> {
        let mut first = true;
        loop {
            if self.conn.borrow().wants_write() {
                self.flush(stream).await.map_err(HandshakeError::Io)?;
            }
            if !self.conn.borrow().is_handshaking() {
                return Ok(());
            }
            if self.input.borrow().start == self.input.borrow().end
                && self.read_input(stream).await.map_err(HandshakeError::Io)? == 0
            {
                return Err(HandshakeError::Closed);
            }
            let failed = {
                let mut input = self.input.borrow_mut();
                let Input { buf, start, end } = &mut *input;
                let plain_amqp = first && buf[*start..*end].starts_with(b"AMQP");
                first = false;
                let mut conn = self.conn.borrow_mut();
                let mut rest = &buf[*start..*end];
                *start += conn.read_tls(&mut rest).map_err(HandshakeError::Io)?;
                conn.process_new_packets()
                    .err()
                    .map(|error| HandshakeError::Tls { error, plain_amqp })
            };
            if let Some(e) = failed {
                // rustls queued an alert telling the peer why: send it.
                let _ = self.flush(stream).await;
                return Err(e);
            }
        }
    }

    /// Reads ciphertext from the socket into the (drained) input buffer;
    /// returns how much (0 at EOF). No borrow is held across the read.
    async fn read_input(&self, stream: &RefCell<TcpStream>) -> io::Result<usize> {
        let mut buf = std::mem::take(&mut self.input.borrow_mut().buf);
        let got = read_some(stream, &mut buf).await;
        let mut input = self.input.borrow_mut();
        input.buf = buf;
        input.start = 0;
        input.end = *got.as_ref().unwrap_or(&0);
        got
    }

    /// Sends the records rustls has made.
    async fn flush(&self, stream: &RefCell<TcpStream>) -> io::Result<()> {
        loop {
            let mut out = std::mem::take(&mut *self.output.borrow_mut());
            out.clear();
            {
                let mut conn = self.conn.borrow_mut();
                while conn.wants_write() {
                    conn.write_tls(&mut out)?;
                }
            }
            if out.is_empty() {
                *self.output.borrow_mut() = out;
                return Ok(());
            }
            let sent = write_all(stream, &out).await;
            *self.output.borrow_mut() = out;
            sent?;
        }
    }

    /// Reads decrypted bytes into `dst` (at least one; 0 once the peer
    /// closed the session).
    pub async fn read(&self, stream: &RefCell<TcpStream>, dst: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        loop {
            {
                let mut conn = self.conn.borrow_mut();
                match conn.reader().read(&mut dst[filled..]) {
                    // The peer's close_notify (after what came before it).
                    Ok(0) => return Ok(filled),
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                if filled == dst.len() {
                    return Ok(filled);
                }
                // Decrypt what was read already before reading more.
                let mut input = self.input.borrow_mut();
                if input.start < input.end {
                    let Input { buf, start, end } = &mut *input;
                    let mut rest = &buf[*start..*end];
                    *start += conn.read_tls(&mut rest)?;
                    conn.process_new_packets().map_err(tls_io_error)?;
                    continue;
                }
            }
            if filled > 0 {
                return Ok(filled);
            }
            match self.read_input(stream).await? {
                n if n == self.input.borrow().buf.len() && n < CIPHER_CHUNK => {
                    self.input.borrow_mut().buf.resize(CIPHER_CHUNK, 0);
                }
                0 => {
                    // EOF: rustls says whether the session was closed
                    // properly (close_notify) or cut short.
                    let mut conn = self.conn.borrow_mut();
                    conn.read_tls(&mut &[][..])?;
                    conn.process_new_packets().map_err(tls_io_error)?;
                }
                _ => {}
            }
        }
    }

    /// Encrypts `parts` in order and sends the records.
    pub async fn write_all(&self, stream: &RefCell<TcpStream>, parts: &[&[u8]]) -> io::Result<()> {
        for part in parts {
            let mut part: &[u8] = part;
            while !part.is_empty() {
                let n = self.conn.borrow_mut().writer().write(part)?;
                part = &part[n..];
                if n == 0 || !part.is_empty() {
                    // rustls holds as much as it takes: send that first.
                    self.flush(stream).await?;
                }
            }
        }
        self.flush(stream).await
    }

    /// Queues close_notify and sends what can go without waiting (the
    /// socket is closing).
    pub fn close_notify(&self, fd: i32) {
        let mut conn = self.conn.borrow_mut();
        conn.send_close_notify();
        let mut out = Vec::new();
        while conn.wants_write() {
            if conn.write_tls(&mut out).is_err() {
                return;
            }
        }
        // SAFETY: a non-blocking send from a live buffer on the
        // connection's own fd.
        unsafe {
            libc::send(
                fd,
                out.as_ptr() as *const libc::c_void,
                out.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
    }

    /// The client's certificate (end entity, DER), when it sent one: the
    /// verifier has accepted it, or the handshake would have failed.
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        let conn = self.conn.borrow();
        conn.peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec())
    }

    /// The negotiated version as RabbitMQ names it.
    pub fn protocol(&self) -> &'static str {
        match self.conn.borrow().protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "tlsv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "tlsv1.2",
            _ => "unknown",
        }
    }

    /// The negotiated version and cipher suite, for the log.
    pub fn describe(&self) -> String {
        let conn = self.conn.borrow();
        format!(
            "{:?} {:?}",
            conn.protocol_version(),
            conn.negotiated_cipher_suite().map(|s| s.suite())
        )
    }
}
