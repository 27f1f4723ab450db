//! A lean, blocking AMQP 0-9-1 client over Warren's codec.
//!
//! One `Conn` per OS thread. Reads go into one large buffer and frames are
//! parsed in place ([`Conn::poll_frame`]); only the rare method frames that
//! matter are fully decoded with `warren::codec::decode_frame`. Writes are
//! whatever the caller coalesced into one slice.

use crate::stream::{Stream, TlsParams};
use bytes::{Bytes, BytesMut};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::ops::Range;
use std::time::Duration;
use warren::codec::{
    self, decode_frame, encode_method, ChannelOpen, ConnectionClose, ConnectionCloseOk,
    ConnectionOpen, ConnectionStartOk, ConnectionTuneOk, FieldTable, FieldValue, Frame, Method,
    ShortStr,
};

/// Read buffer size; big enough for any frame Warren or RabbitMQ allow
/// (frame_max 131072) several times over.
pub const READ_BUF: usize = 1 << 20;

/// What can end a connection.
#[derive(Debug)]
pub enum Error {
    Io(io::Error),
    /// The broker closed the connection (`connection.close`) or a channel
    /// (`channel.close`, `channel` non-zero).
    Closed {
        channel: u16,
        code: u16,
        text: String,
        class_id: u16,
        method_id: u16,
    },
    Protocol(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::Closed {
                channel,
                code,
                text,
                class_id,
                method_id,
            } => {
                let what = if *channel == 0 {
                    "connection".to_string()
                } else {
                    format!("channel {channel}")
                };
                write!(
                    f,
                    "broker closed the {what}: {code} {text} (in reply to method {class_id}.{method_id})"
                )
            }
            Error::Protocol(s) => write!(f, "protocol error: {s}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<codec::CodecError> for Error {
    fn from(e: codec::CodecError) -> Self {
        Error::Protocol(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// `amqp://user:pass@host:port/vhost`, vhost percent-decoded (`%2F` is `/`),
/// or `amqps://...?cacertfile=PATH[&server_name_indication=NAME]` for TLS
/// (RabbitMQ's URI query parameters; 5671 by default).
#[derive(Debug, Clone)]
pub struct AmqpUri {
    pub user: String,
    pub pass: String,
    pub host: String,
    pub port: u16,
    pub vhost: String,
    pub tls: Option<TlsParams>,
}

fn percent_decode(s: &str) -> std::result::Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape in {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

impl std::str::FromStr for AmqpUri {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (tls, rest) = if let Some(r) = s.strip_prefix("amqps://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("amqp://") {
            (false, r)
        } else {
            return Err(format!(
                "{s:?}: only amqp:// and amqps:// URIs are supported"
            ));
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, q),
            None => (rest, ""),
        };
        let mut cacertfile = None;
        let mut sni = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v)?;
            match k {
                "cacertfile" => cacertfile = Some(v),
                "server_name_indication" => sni = Some(v),
                _ => return Err(format!("{s:?}: unsupported URI parameter {k:?}")),
            }
        }
        let (auth_host, vhost) = match rest.split_once('/') {
            Some((a, v)) => (a, Some(v)),
            None => (rest, None),
        };
        let (auth, hostport) = match auth_host.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, auth_host),
        };
        let (user, pass) = match auth {
            Some(a) => match a.split_once(':') {
                Some((u, p)) => (percent_decode(u)?, percent_decode(p)?),
                None => (percent_decode(a)?, String::new()),
            },
            None => ("guest".into(), "guest".into()),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                p.parse().map_err(|_| format!("bad port in {s:?}"))?,
            ),
            None => (hostport.to_string(), if tls { 5671 } else { 5672 }),
        };
        let host = if host.is_empty() {
            "localhost".into()
        } else {
            host
        };
        let vhost = match vhost {
            None | Some("") => "/".into(),
            Some(v) => percent_decode(v)?,
        };
        let tls = match (tls, cacertfile) {
            (false, None) if sni.is_none() => None,
            (false, _) => return Err(format!("{s:?}: TLS parameters need amqps://")),
            (true, None) => return Err(format!("{s:?}: amqps:// needs ?cacertfile=PATH")),
            (true, Some(cacertfile)) => Some(TlsParams {
                cacertfile,
                server_name: sni.unwrap_or_else(|| host.clone()),
            }),
        };
        Ok(AmqpUri {
            user,
            pass,
            host,
            port,
            vhost,
            tls,
        })
    }
}

/// One frame found in the read buffer: its type, channel, the payload's
/// range and the whole frame's range (header to frame-end) in the buffer.
#[derive(Debug, Clone)]
pub struct RawFrame {
    pub kind: u8,
    pub channel: u16,
    pub payload: Range<usize>,
    pub whole: Range<usize>,
}

/// Class and method ids of a method frame's payload.
#[inline]
pub fn method_ids(payload: &[u8]) -> (u16, u16) {
    if payload.len() < 4 {
        return (0, 0);
    }
    (
        u16::from_be_bytes([payload[0], payload[1]]),
        u16::from_be_bytes([payload[2], payload[3]]),
    )
}

/// Fully decodes one frame from its bytes (header to frame-end).
pub fn decode_whole(frame: &[u8]) -> Result<Frame> {
    let mut b = BytesMut::from(frame);
    decode_frame(&mut b, 0)?.ok_or_else(|| Error::Protocol("truncated frame".into()))
}

/// Turns a broker close into an [`Error`]; other methods pass through.
pub fn close_error(channel: u16, m: &Method) -> Option<Error> {
    match m {
        Method::ConnectionClose(c) => Some(Error::Closed {
            channel: 0,
            code: c.reply_code,
            text: c.reply_text.to_string(),
            class_id: c.class_id,
            method_id: c.method_id,
        }),
        Method::ChannelClose(c) => Some(Error::Closed {
            channel,
            code: c.reply_code,
            text: c.reply_text.to_string(),
            class_id: c.class_id,
            method_id: c.method_id,
        }),
        _ => None,
    }
}

/// A frame reader over any byte stream with in-place parsing.
pub struct FrameBuf {
    pub buf: Vec<u8>,
    pub start: usize,
    pub end: usize,
}

impl FrameBuf {
    pub fn new(cap: usize) -> Self {
        FrameBuf {
            buf: vec![0; cap],
            start: 0,
            end: 0,
        }
    }

    /// Reads once from `r` into the free space (compacting first when the
    /// tail is short). Ok(0) is end of stream.
    pub fn fill(&mut self, r: &mut impl Read) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.buf.len() - self.end < self.buf.len() / 4 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            // One frame bigger than the buffer: grow.
            let n = self.buf.len() * 2;
            self.buf.resize(n, 0);
        }
        let n = r.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// Next complete frame in the buffer, consumed; None if more bytes are
    /// needed. The bytes stay valid until the next `fill`.
    #[inline]
    pub fn poll_frame(&mut self) -> Result<Option<RawFrame>> {
        let avail = self.end - self.start;
        if avail < 7 {
            return Ok(None);
        }
        let h = &self.buf[self.start..self.start + 7];
        let kind = h[0];
        let channel = u16::from_be_bytes([h[1], h[2]]);
        let size = u32::from_be_bytes([h[3], h[4], h[5], h[6]]) as usize;
        if avail < size + 8 {
            return Ok(None);
        }
        let s = self.start;
        if self.buf[s + 7 + size] != codec::FRAME_END {
            return Err(Error::Protocol("bad frame-end octet".into()));
        }
        self.start += size + 8;
        Ok(Some(RawFrame {
            kind,
            channel,
            payload: s + 7..s + 7 + size,
            whole: s..s + 8 + size,
        }))
    }
}

/// A client connection after the handshake.
pub struct Conn {
    pub stream: Stream,
    pub rb: FrameBuf,
    pub frame_max: u32,
    pub channel_max: u16,
    out: BytesMut,
}

impl Conn {
    /// TCP connect, handshake (PLAIN, heartbeat 0), connection.open.
    pub fn connect(uri: &AmqpUri, name: &str) -> Result<Conn> {
        Self::connect_with(uri, name, READ_BUF)
    }

    /// As [`Conn::connect`] with a chosen read-buffer size (idle connections
    /// use a small one).
    pub fn connect_with(uri: &AmqpUri, name: &str, read_buf: usize) -> Result<Conn> {
        let addr = (uri.host.as_str(), uri.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| Error::Protocol(format!("cannot resolve {}", uri.host)))?;
        let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        sock.set_nodelay(true)?;
        sock.set_read_timeout(Some(Duration::from_secs(30)))?;
        let stream = Stream::new(sock, uri.tls.as_ref())?;
        let mut c = Conn {
            stream,
            rb: FrameBuf::new(read_buf),
            frame_max: 131_072,
            channel_max: 2047,
            out: BytesMut::with_capacity(4096),
        };
        c.stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        c.stream.write_all(&codec::PROTOCOL_HEADER)?;
        match c.next_method()? {
            (0, Method::ConnectionStart(_)) => {}
            (_, m) => {
                return Err(Error::Protocol(format!(
                    "expected connection.start, got {}",
                    m.name()
                )))
            }
        }
        let mut caps = FieldTable::new();
        for k in [
            "publisher_confirms",
            "basic.nack",
            "consumer_cancel_notify",
            "authentication_failure_close",
        ] {
            caps.insert(k, FieldValue::Bool(true));
        }
        let mut props = FieldTable::new();
        let s = |v: &str| FieldValue::LongStr(Bytes::copy_from_slice(v.as_bytes()));
        props.insert("product", s("warren-perf"));
        props.insert("connection_name", s(name));
        props.insert("capabilities", FieldValue::Table(caps));
        let response = format!("\0{}\0{}", uri.user, uri.pass);
        c.send_method(
            0,
            &Method::ConnectionStartOk(ConnectionStartOk {
                client_properties: props,
                mechanism: ShortStr::from_static("PLAIN"),
                response: Bytes::from(response.into_bytes()),
                locale: ShortStr::from_static("en_US"),
            }),
        )?;
        let tune = match c.next_method()? {
            (0, Method::ConnectionTune(t)) => t,
            (_, m) => {
                return Err(close_error(0, &m).unwrap_or_else(|| {
                    Error::Protocol(format!("expected connection.tune, got {}", m.name()))
                }))
            }
        };
        c.frame_max = if tune.frame_max == 0 {
            131_072
        } else {
            tune.frame_max.min(131_072)
        };
        c.channel_max = if tune.channel_max == 0 {
            2047
        } else {
            tune.channel_max
        };
        c.send_method(
            0,
            &Method::ConnectionTuneOk(ConnectionTuneOk {
                channel_max: c.channel_max,
                frame_max: c.frame_max,
                heartbeat: 0,
            }),
        )?;
        c.send_method(
            0,
            &Method::ConnectionOpen(ConnectionOpen {
                virtual_host: uri.vhost.as_str().into(),
            }),
        )?;
        c.expect(
            0,
            |m| matches!(m, Method::ConnectionOpenOk(_)),
            "connection.open-ok",
        )?;
        c.stream.set_read_timeout(None)?;
        Ok(c)
    }

    pub fn send_method(&mut self, channel: u16, m: &Method) -> Result<()> {
        self.out.clear();
        encode_method(&mut self.out, channel, m);
        self.stream.write_all(&self.out)?;
        Ok(())
    }

    /// Sends several methods in one write (pipelining).
    pub fn send_methods<'a>(
        &mut self,
        items: impl IntoIterator<Item = (u16, &'a Method)>,
    ) -> Result<()> {
        self.out.clear();
        for (ch, m) in items {
            encode_method(&mut self.out, ch, m);
        }
        self.stream.write_all(&self.out)?;
        Ok(())
    }

    /// Next decoded frame, reading as needed.
    pub fn next_frame(&mut self) -> Result<Frame> {
        loop {
            if let Some(f) = self.rb.poll_frame()? {
                return decode_whole(&self.rb.buf[f.whole]);
            }
            if self.rb.fill(&mut self.stream)? == 0 {
                return Err(Error::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "broker closed the TCP connection",
                )));
            }
        }
    }

    /// Next method frame (content and heartbeats are skipped). A broker
    /// close is answered with close-ok and returned as an error.
    pub fn next_method(&mut self) -> Result<(u16, Method)> {
        loop {
            if let Frame::Method { channel, method } = self.next_frame()? {
                if let Some(e) = close_error(channel, &method) {
                    if channel == 0 {
                        let _ =
                            self.send_method(0, &Method::ConnectionCloseOk(ConnectionCloseOk {}));
                    }
                    return Err(e);
                }
                return Ok((channel, method));
            }
        }
    }

    /// Waits for the method `want` accepts on `channel`, skipping others.
    pub fn expect(
        &mut self,
        channel: u16,
        want: impl Fn(&Method) -> bool,
        what: &str,
    ) -> Result<Method> {
        loop {
            let (ch, m) = self.next_method()?;
            if ch == channel && want(&m) {
                return Ok(m);
            }
            if matches!(m, Method::ConnectionCloseOk(_)) {
                return Err(Error::Protocol(format!(
                    "connection closed while waiting for {what}"
                )));
            }
        }
    }

    /// Sends `m` and waits for the reply `want` accepts.
    pub fn rpc(
        &mut self,
        channel: u16,
        m: &Method,
        want: impl Fn(&Method) -> bool,
        what: &str,
    ) -> Result<Method> {
        self.send_method(channel, m)?;
        self.expect(channel, want, what)
    }

    pub fn open_channel(&mut self, channel: u16) -> Result<()> {
        self.rpc(
            channel,
            &Method::ChannelOpen(ChannelOpen {}),
            |m| matches!(m, Method::ChannelOpenOk(_)),
            "channel.open-ok",
        )?;
        Ok(())
    }

    /// The stream and the read buffer (with whatever it already holds),
    /// for a caller that takes the connection over.
    pub fn into_parts(self) -> (Stream, FrameBuf) {
        (self.stream, self.rb)
    }

    /// connection.close and wait (bounded) for close-ok.
    pub fn close(mut self) {
        let _ = self.stream.set_read_timeout(Some(Duration::from_secs(2)));
        let close = Method::ConnectionClose(ConnectionClose {
            reply_code: 200,
            reply_text: ShortStr::from_static("bye"),
            class_id: 0,
            method_id: 0,
        });
        if self.send_method(0, &close).is_err() {
            return;
        }
        while let Ok(f) = self.next_frame() {
            if let Frame::Method {
                method: Method::ConnectionCloseOk(_) | Method::ConnectionClose(_),
                ..
            } = f
            {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uris() {
        let u: AmqpUri = "amqp://a:b%40c@127.0.0.1:5673/%2F".parse().unwrap();
        assert_eq!((u.user.as_str(), u.pass.as_str()), ("a", "b@c"));
        assert_eq!(
            (u.host.as_str(), u.port, u.vhost.as_str()),
            ("127.0.0.1", 5673, "/")
        );
        let u: AmqpUri = "amqp://localhost".parse().unwrap();
        assert_eq!(
            (u.user.as_str(), u.port, u.vhost.as_str()),
            ("guest", 5672, "/")
        );
        let u: AmqpUri = "amqp://guest:guest@h:1/v1".parse().unwrap();
        assert_eq!(u.vhost, "v1");
        assert!("http://x".parse::<AmqpUri>().is_err());
        assert!(u.tls.is_none());
        let u: AmqpUri = "amqps://g:g@127.0.0.1/%2F?cacertfile=/tmp/ca%20x.pem"
            .parse()
            .unwrap();
        assert_eq!((u.port, u.vhost.as_str()), (5671, "/"));
        let tls = u.tls.unwrap();
        assert_eq!(
            (tls.cacertfile.as_str(), tls.server_name.as_str()),
            ("/tmp/ca x.pem", "127.0.0.1")
        );
        let u: AmqpUri = "amqps://h:5/?cacertfile=c&server_name_indication=localhost"
            .parse()
            .unwrap();
        assert_eq!(u.tls.unwrap().server_name, "localhost");
        assert!("amqps://h/".parse::<AmqpUri>().is_err(), "no CA file");
        assert!("amqp://h/?cacertfile=c".parse::<AmqpUri>().is_err());
        assert!("amqps://h/?cacertfile=c&verify=x"
            .parse::<AmqpUri>()
            .is_err());
    }

    #[test]
    fn frame_buf_splits_frames() {
        let mut out = BytesMut::new();
        encode_method(&mut out, 1, &Method::ChannelOpen(ChannelOpen {}));
        codec::encode_content(&mut out, 1, 3, &[0, 0], b"abc", 0);
        let bytes = out.to_vec();
        // Feed one byte at a time: frames only appear once complete.
        let mut fb = FrameBuf::new(16);
        let mut r = &bytes[..];
        let mut kinds = Vec::new();
        loop {
            while let Some(f) = fb.poll_frame().unwrap() {
                kinds.push(f.kind);
            }
            let mut one = &r[..r.len().min(1)];
            if one.is_empty() {
                break;
            }
            fb.fill(&mut one).unwrap();
            r = &r[1..];
        }
        assert_eq!(kinds, vec![1, 2, 3]);
    }
}
