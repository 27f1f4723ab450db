//! The byte stream under a [`crate::client::Conn`]: plain TCP, or TLS with
//! rustls for `amqps://` URIs.
//!
//! A producer with confirms reads on one thread and writes on another, so a
//! stream must split. For TLS the two halves share the rustls session
//! behind a mutex held only while records are decrypted or encrypted; the
//! socket reads and writes happen outside it, each half on its own clone of
//! the socket. Records that a read makes the session want to send (a
//! TLS 1.3 key update answer) go out with the writer's next write, so only
//! one thread ever writes the socket.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What a TLS connection needs beyond the TCP address.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsParams {
    /// PEM file of the authorities the broker's certificate must chain to
    /// (the `cacertfile` query parameter of an `amqps://` URI, as in
    /// RabbitMQ's URI spec).
    pub cacertfile: String,
    /// Name checked against the certificate (`server_name_indication`,
    /// else the URI's host).
    pub server_name: String,
}

pub enum Stream {
    Plain(TcpStream),
    Tls(TlsStream),
}

pub struct TlsStream {
    sock: TcpStream,
    session: Arc<Mutex<ClientConnection>>,
    /// Ciphertext read from the socket and not yet given to the session.
    inbuf: Vec<u8>,
    in_start: usize,
    in_end: usize,
    /// Ciphertext made and not yet written.
    out: Vec<u8>,
}

/// How long a write keeps retrying a socket timeout once it has accepted
/// plaintext (its ciphertext must then go out whole).
const COMMITTED_WRITE_LIMIT: Duration = Duration::from_secs(60);

pub fn client_config(cacertfile: &str) -> io::Result<Arc<ClientConfig>> {
    let bad = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(Path::new(cacertfile))
        .map_err(|e| bad(format!("cacertfile {cacertfile}: {e}")))?
    {
        let cert = cert.map_err(|e| bad(format!("cacertfile {cacertfile}: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("cacertfile {cacertfile}: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad(format!(
            "cacertfile {cacertfile}: no certificate in it"
        )));
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}

impl Stream {
    /// Wraps `sock`, doing the TLS handshake first when `tls` is given.
    pub fn new(mut sock: TcpStream, tls: Option<&TlsParams>) -> io::Result<Stream> {
        let Some(p) = tls else {
            return Ok(Stream::Plain(sock));
        };
        let config = client_config(&p.cacertfile)?;
        let name = ServerName::try_from(p.server_name.clone())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut session = ClientConnection::new(config, name).map_err(io::Error::other)?;
        while session.is_handshaking() {
            session.complete_io(&mut sock)?;
        }
        Ok(Stream::Tls(TlsStream {
            sock,
            session: Arc::new(Mutex::new(session)),
            inbuf: vec![0; 64 * 1024],
            in_start: 0,
            in_end: 0,
            out: Vec::new(),
        }))
    }

    fn sock(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.sock,
        }
    }

    /// A second handle on the same connection (the other half of a split).
    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Plain(s) => Stream::Plain(s.try_clone()?),
            Stream::Tls(t) => Stream::Tls(TlsStream {
                sock: t.sock.try_clone()?,
                session: t.session.clone(),
                inbuf: vec![0; 64 * 1024],
                in_start: 0,
                in_end: 0,
                out: Vec::new(),
            }),
        })
    }

    /// The TCP socket of a plain stream; None for TLS.
    pub fn into_plain(self) -> Option<TcpStream> {
        match self {
            Stream::Plain(s) => Some(s),
            Stream::Tls(_) => None,
        }
    }

    pub fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        self.sock().set_read_timeout(d)
    }

    pub fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        self.sock().set_write_timeout(d)
    }

    /// "TLSv1_3 TLS13_AES_256_GCM_SHA384", or None for plain TCP.
    pub fn tls_description(&self) -> Option<String> {
        let Stream::Tls(t) = self else { return None };
        let s = lock(&t.session);
        Some(format!(
            "{:?} {:?}",
            s.protocol_version()?,
            s.negotiated_cipher_suite()?.suite()
        ))
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The session, whichever half panicked last (the state stays usable).
fn lock(session: &Mutex<ClientConnection>) -> MutexGuard<'_, ClientConnection> {
    session.lock().unwrap_or_else(|e| e.into_inner())
}

impl TlsStream {
    /// Writes what is left in `out`; a socket timeout returns the error with
    /// the rest kept for the next call.
    fn send_out(&mut self) -> io::Result<()> {
        let mut off = 0;
        let r = loop {
            if off == self.out.len() {
                break Ok(());
            }
            match self.sock.write(&self.out[off..]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.out.drain(..off);
        r
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let t = match self {
            Stream::Plain(s) => return s.read(buf),
            Stream::Tls(t) => t,
        };
        loop {
            {
                let mut s = lock(&t.session);
                match s.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                if t.in_start < t.in_end {
                    // Feed what was read; the session takes it a record or
                    // so at a time, and only when its plaintext is drained.
                    let mut rest = &t.inbuf[t.in_start..t.in_end];
                    let n = s.read_tls(&mut rest)?;
                    t.in_start += n;
                    s.process_new_packets()
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    continue;
                }
            }
            let n = t.sock.read(&mut t.inbuf)?;
            if n == 0 {
                return Ok(0);
            }
            t.in_start = 0;
            t.in_end = n;
        }
    }
}

impl Write for Stream {
    /// TLS: Err (a socket timeout) only while nothing of `buf` is taken;
    /// once plaintext is accepted its records are written out whole.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let t = match self {
            Stream::Plain(s) => return s.write(buf),
            Stream::Tls(t) => t,
        };
        t.send_out()?;
        let n = {
            let mut s = lock(&t.session);
            let n = s.writer().write(buf)?;
            while s.wants_write() {
                s.write_tls(&mut t.out)?;
            }
            n
        };
        let committed = Instant::now();
        loop {
            match t.send_out() {
                Ok(()) => return Ok(n),
                Err(e) if is_timeout(&e) && committed.elapsed() < COMMITTED_WRITE_LIMIT => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(t) => t.send_out(),
        }
    }
}
