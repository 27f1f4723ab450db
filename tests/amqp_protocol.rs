//! Raw-socket protocol robustness: a hand-written AMQP 0-9-1 client that
//! misbehaves on purpose (bad headers, malformed frames, state errors, silent
//! peers, fuzz) and checks that the broker answers the way RabbitMQ does —
//! the exact reply code, connection vs channel scope, the socket closed — and
//! that it is still alive and serving afterwards.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::*;
use lapin::options::QueueDeleteOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound on any single read from the broker.
const READ: Duration = Duration::from_secs(10);
const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
const FRAME_END: u8 = 0xCE;

// Reply codes.
const FRAME_ERROR: u16 = 501;
const COMMAND_INVALID: u16 = 503;
const CHANNEL_ERROR: u16 = 504;
const UNEXPECTED_FRAME: u16 = 505;
const ACCESS_REFUSED: u16 = 403;
const NOT_ALLOWED: u16 = 530;
const NOT_IMPLEMENTED: u16 = 540;

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

/// Method-argument / payload builder.
#[derive(Default, Clone)]
struct Args(Vec<u8>);

impl Args {
    fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    fn u16(mut self, v: u16) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn ss(mut self, s: &str) -> Self {
        self.0.push(s.len() as u8);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn ls(mut self, s: &[u8]) -> Self {
        self.0.extend_from_slice(&(s.len() as u32).to_be_bytes());
        self.0.extend_from_slice(s);
        self
    }
    fn raw(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    /// An empty field table.
    fn no_table(self) -> Self {
        self.u32(0)
    }
}

fn frame(ty: u8, ch: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![ty];
    f.extend_from_slice(&ch.to_be_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f.push(FRAME_END);
    f
}

fn method(ch: u16, class: u16, id: u16, args: Args) -> Vec<u8> {
    frame(1, ch, &Args::default().u16(class).u16(id).raw(&args.0).0)
}

/// basic content header with no properties.
fn content_header(ch: u16, body_size: u64) -> Vec<u8> {
    frame(
        2,
        ch,
        &Args::default().u16(60).u16(0).u64(body_size).u16(0).0,
    )
}

fn body(ch: u16, data: &[u8]) -> Vec<u8> {
    frame(3, ch, data)
}

fn heartbeat(ch: u16) -> Vec<u8> {
    frame(8, ch, &[])
}

fn channel_open(ch: u16) -> Vec<u8> {
    method(ch, 20, 10, Args::default().ss(""))
}

fn queue_declare(ch: u16, name: &str, exclusive: bool) -> Vec<u8> {
    // bits: passive, durable, exclusive, auto-delete, no-wait
    let bits = if exclusive { 0b0_1100 } else { 0 };
    method(
        ch,
        50,
        10,
        Args::default().u16(0).ss(name).u8(bits).no_table(),
    )
}

fn basic_publish(ch: u16, exchange: &str, key: &str) -> Vec<u8> {
    method(
        ch,
        60,
        40,
        Args::default().u16(0).ss(exchange).ss(key).u8(0),
    )
}

fn basic_consume_no_ack(ch: u16, queue: &str, tag: &str) -> Vec<u8> {
    // bits: no-local, no-ack, exclusive, no-wait
    method(
        ch,
        60,
        20,
        Args::default()
            .u16(0)
            .ss(queue)
            .ss(tag)
            .u8(0b0010)
            .no_table(),
    )
}

fn basic_get(ch: u16, queue: &str) -> Vec<u8> {
    method(ch, 60, 70, Args::default().u16(0).ss(queue).u8(1))
}

fn connection_close(code: u16) -> Vec<u8> {
    method(0, 10, 50, Args::default().u16(code).ss("bye").u16(0).u16(0))
}

// ---------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------

#[derive(Debug)]
#[allow(dead_code)] // fields are read through Debug
enum Frame {
    Method {
        ch: u16,
        class: u16,
        id: u16,
        args: Vec<u8>,
    },
    Header {
        ch: u16,
        body_size: u64,
    },
    Body {
        ch: u16,
        len: usize,
        data: Vec<u8>,
    },
    Heartbeat {
        ch: u16,
    },
    Other {
        ty: u8,
        ch: u16,
        len: usize,
    },
}

#[derive(Debug)]
enum Event {
    Frame(Frame),
    /// The broker closed the socket (EOF or reset).
    Closed,
    Timeout,
}

/// Cursor over method arguments.
struct Cur<'a>(&'a [u8]);

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        assert!(self.0.len() >= n, "broker sent truncated method arguments");
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.take(2).try_into().unwrap())
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take(4).try_into().unwrap())
    }
    fn ss(&mut self) -> String {
        let n = self.u8() as usize;
        String::from_utf8_lossy(self.take(n)).into_owned()
    }
}

// ---------------------------------------------------------------------------
// The raw client
// ---------------------------------------------------------------------------

struct Raw {
    sock: TcpStream,
    frame_max: u32,
    channel_max: u16,
}

/// What the client asks for in tune-ok.
#[derive(Clone, Copy)]
struct Tune {
    channel_max: u16,
    frame_max: u32,
    heartbeat: u16,
}

const DEFAULT_TUNE: Tune = Tune {
    channel_max: 2047,
    frame_max: 131072,
    heartbeat: 0,
};

impl Raw {
    async fn connect(broker: &TestBroker) -> Raw {
        let sock = w!(TcpStream::connect(broker.addr())).expect("tcp connect");
        sock.set_nodelay(true).unwrap();
        Raw {
            sock,
            frame_max: 4096,
            channel_max: 0,
        }
    }

    /// Connect, handshake, open vhost "/".
    async fn open(broker: &TestBroker) -> Raw {
        Self::open_tuned(broker, DEFAULT_TUNE).await
    }

    async fn open_tuned(broker: &TestBroker, tune: Tune) -> Raw {
        let mut raw = Raw::connect(broker).await;
        raw.start("guest", "guest").await;
        raw.tune(tune).await;
        raw.send(&method(0, 10, 40, Args::default().ss("/").ss("").u8(0)))
            .await;
        raw.expect_method(0, 10, 41).await;
        raw
    }

    /// Open raw connection with channel 1 open.
    async fn open_channel1(broker: &TestBroker) -> Raw {
        let mut raw = Raw::open(broker).await;
        raw.send(&channel_open(1)).await;
        raw.expect_method(1, 20, 11).await;
        raw
    }

    /// Protocol header, connection.start, start-ok (PLAIN).
    async fn start(&mut self, user: &str, pass: &str) {
        self.send(PROTOCOL_HEADER).await;
        let args = self.expect_method(0, 10, 10).await;
        assert_eq!(&args[..2], &[0, 9], "connection.start version");
        let caps = Args::default()
            .ss("authentication_failure_close")
            .u8(b't')
            .u8(1);
        let props = Args::default().ss("capabilities").u8(b'F').ls(&caps.0);
        let response = format!("\0{user}\0{pass}");
        self.send(&method(
            0,
            10,
            11,
            Args::default()
                .ls(&props.0)
                .ss("PLAIN")
                .ls(response.as_bytes())
                .ss("en_US"),
        ))
        .await;
    }

    /// Read connection.tune, answer tune-ok with the lower of both limits.
    async fn tune(&mut self, want: Tune) {
        let args = self.expect_method(0, 10, 30).await;
        let mut c = Cur(&args);
        let (ch_max, fr_max, _hb) = (c.u16(), c.u32(), c.u16());
        let lower = |a: u32, b: u32| {
            if a == 0 {
                b
            } else if b == 0 {
                a
            } else {
                a.min(b)
            }
        };
        self.channel_max = lower(ch_max as u32, want.channel_max as u32) as u16;
        self.frame_max = lower(fr_max, want.frame_max);
        let ok = Args::default()
            .u16(self.channel_max)
            .u32(self.frame_max)
            .u16(want.heartbeat);
        self.send(&method(0, 10, 31, ok)).await;
    }

    /// Write bytes; a broker that already closed makes this fail, which the
    /// caller then observes on the read side, so errors are ignored.
    async fn send(&mut self, bytes: &[u8]) {
        let _ = w!(self.sock.write_all(bytes));
    }

    async fn read_bytes(&mut self, buf: &mut [u8]) -> Result<(), Event> {
        match tokio::time::timeout(READ, self.sock.read_exact(buf)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(Event::Closed),
            Err(_) => Err(Event::Timeout),
        }
    }

    async fn next(&mut self) -> Event {
        let mut h = [0u8; 7];
        if let Err(e) = self.read_bytes(&mut h).await {
            return e;
        }
        let ty = h[0];
        let ch = u16::from_be_bytes([h[1], h[2]]);
        let size = u32::from_be_bytes([h[3], h[4], h[5], h[6]]) as usize;
        assert!(size < 16 << 20, "broker sent an absurd frame size {size}");
        let mut rest = vec![0u8; size + 1];
        if let Err(e) = self.read_bytes(&mut rest).await {
            return e;
        }
        assert_eq!(rest[size], FRAME_END, "broker sent a bad frame-end octet");
        rest.truncate(size);
        Event::Frame(match ty {
            1 => {
                let mut c = Cur(&rest);
                let (class, id) = (c.u16(), c.u16());
                Frame::Method {
                    ch,
                    class,
                    id,
                    args: c.0.to_vec(),
                }
            }
            2 => Frame::Header {
                ch,
                body_size: u64::from_be_bytes(rest[4..12].try_into().unwrap()),
            },
            3 => Frame::Body {
                ch,
                len: size,
                data: rest,
            },
            8 => Frame::Heartbeat { ch },
            _ => Frame::Other { ty, ch, len: size },
        })
    }

    /// Next frame that is not a heartbeat.
    async fn next_non_heartbeat(&mut self) -> Event {
        loop {
            match self.next().await {
                Event::Frame(Frame::Heartbeat { ch: 0 }) => continue,
                other => return other,
            }
        }
    }

    #[track_caller]
    fn expect_method<'a>(
        &'a mut self,
        ch: u16,
        class: u16,
        id: u16,
    ) -> impl std::future::Future<Output = Vec<u8>> + 'a {
        let at = std::panic::Location::caller();
        async move {
            match self.next_non_heartbeat().await {
                Event::Frame(Frame::Method {
                    ch: c,
                    class: k,
                    id: i,
                    args,
                }) if (c, k, i) == (ch, class, id) => args,
                other => {
                    panic!("{at}: expected method {class}.{id} on channel {ch}, got {other:?}")
                }
            }
        }
    }

    /// The broker must close the connection with `code` (connection.close on
    /// channel 0, nothing else first), then close the socket after close-ok.
    #[track_caller]
    fn expect_connection_close(
        &mut self,
        code: u16,
    ) -> impl std::future::Future<Output = String> + '_ {
        let at = std::panic::Location::caller();
        async move {
            let args = match self.next_non_heartbeat().await {
                Event::Frame(Frame::Method {
                    ch: 0,
                    class: 10,
                    id: 50,
                    args,
                }) => args,
                other => panic!("{at}: expected connection.close {code}, got {other:?}"),
            };
            let mut c = Cur(&args);
            let (got, text) = (c.u16(), c.ss());
            assert_eq!(
                got, code,
                "{at}: connection.close reply code (text {text:?})"
            );
            self.send(&method(0, 10, 51, Args::default())).await;
            self.expect_closed_at(at).await;
            text
        }
    }

    /// The broker must close the connection, either with a connection.close
    /// carrying one of `codes` (answered with close-ok) or by just closing the
    /// socket (RabbitMQ 3.10 drops the socket for an unknown method id).
    #[track_caller]
    fn expect_error_close<'a>(
        &'a mut self,
        codes: &'a [u16],
    ) -> impl std::future::Future<Output = ()> + 'a {
        let at = std::panic::Location::caller();
        async move {
            match self.next_non_heartbeat().await {
                Event::Closed => {}
                Event::Frame(Frame::Method {
                    ch: 0,
                    class: 10,
                    id: 50,
                    args,
                }) => {
                    let mut c = Cur(&args);
                    let (got, text) = (c.u16(), c.ss());
                    assert!(
                        codes.contains(&got),
                        "{at}: connection.close {got} ({text:?}), expected one of {codes:?}"
                    );
                    self.send(&method(0, 10, 51, Args::default())).await;
                    self.expect_closed_at(at).await;
                }
                other => panic!(
                    "{at}: expected connection.close {codes:?} or a closed socket, got {other:?}"
                ),
            }
        }
    }

    /// The broker must close the socket; only heartbeats may arrive first.
    #[track_caller]
    fn expect_closed(&mut self) -> impl std::future::Future<Output = ()> + '_ {
        let at = std::panic::Location::caller();
        self.expect_closed_at(at)
    }

    async fn expect_closed_at(&mut self, at: &std::panic::Location<'_>) {
        match self.next_non_heartbeat().await {
            Event::Closed => {}
            other => panic!("{at}: expected the broker to close the socket, got {other:?}"),
        }
    }
}

/// The broker still accepts a well-behaved client and serves publish/get.
async fn assert_alive(broker: &TestBroker) {
    let (conn, ch) = broker.connect_channel().await;
    let q = unique("proto-alive");
    declare_queue(&ch, &q).await;
    confirm(&ch).await;
    publish_confirmed(&ch, "", &q, b"still here").await;
    let m = get_noack(&ch, &q)
        .await
        .expect("message published after the misbehaviour");
    assert_eq!(&m.delivery.data[..], b"still here");
    w!(ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())).expect("queue.delete");
    let _ = w!(conn.close(200, "bye".into()));
}

/// The same check with the raw client: publish and get back on one connection.
async fn assert_alive_raw(broker: &TestBroker) {
    let mut raw = Raw::open_channel1(broker).await;
    let q = unique("proto-alive-raw");
    raw.send(&queue_declare(1, &q, true)).await;
    raw.expect_method(1, 50, 11).await;
    let mut msg = basic_publish(1, "", &q);
    msg.extend(content_header(1, 5));
    msg.extend(body(1, b"hello"));
    msg.extend(basic_get(1, &q));
    raw.send(&msg).await;
    raw.expect_method(1, 60, 71).await;
    match raw.next_non_heartbeat().await {
        Event::Frame(Frame::Header {
            ch: 1,
            body_size: 5,
        }) => {}
        other => panic!("expected content header, got {other:?}"),
    }
    match raw.next_non_heartbeat().await {
        Event::Frame(Frame::Body { ch: 1, len: 5, .. }) => {}
        other => panic!("expected body, got {other:?}"),
    }
    raw.send(&connection_close(200)).await;
    raw.expect_method(0, 10, 51).await;
}

// ---------------------------------------------------------------------------
// Protocol header
// ---------------------------------------------------------------------------

async fn bad_header_is_refused(broker: &TestBroker, header: &[u8]) {
    let mut raw = Raw::connect(broker).await;
    raw.send(header).await;
    // Read to EOF; a reset (RabbitMQ closes with the request unread) also
    // ends the reply.
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while let Ok(n @ 1..) = w!(raw.sock.read(&mut buf)) {
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(
        got,
        PROTOCOL_HEADER,
        "reply to protocol header {:?}",
        String::from_utf8_lossy(header)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_protocol_header_gets_supported_version_and_close() {
    let broker = TestBroker::start().await;
    bad_header_is_refused(&broker, b"AMQP\x00\x00\x09\x00").await;
    bad_header_is_refused(&broker, b"AMQP\x00\x00\x08\x00").await;
    bad_header_is_refused(&broker, b"HTTP/1.1").await;
    bad_header_is_refused(&broker, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_alive(&broker).await;
}

// ---------------------------------------------------------------------------
// Framing errors
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_start_ok_closes() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::connect(&broker).await;
    raw.send(PROTOCOL_HEADER).await;
    raw.expect_method(0, 10, 10).await;
    raw.send(b"this is not an AMQP frame at all\r\n").await;
    // RabbitMQ closes the socket silently (after a 3 s delay) before the
    // client is authenticated; a connection.close 501 first is also accepted.
    raw.expect_error_close(&[FRAME_ERROR]).await;
    assert_alive(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_frame_then_eof_closes() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open_channel1(&broker).await;
    let f = queue_declare(1, "truncated", false);
    raw.send(&f[..f.len() - 5]).await;
    w!(raw.sock.shutdown()).expect("shutdown write half");
    raw.expect_closed().await;
    assert_alive(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frame_end_is_frame_error() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open_channel1(&broker).await;
    let mut f = queue_declare(1, &unique("bad-end"), true);
    *f.last_mut().unwrap() = 0x00;
    raw.send(&f).await;
    raw.expect_connection_close(FRAME_ERROR).await;
    assert_alive(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_frame_type_is_frame_error() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open_channel1(&broker).await;
    raw.send(&frame(5, 1, b"hello")).await;
    raw.expect_connection_close(FRAME_ERROR).await;
    assert_alive(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_larger_than_frame_max_is_frame_error() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open_channel1(&broker).await;
    let max = raw.frame_max as usize;
    // A publish whose announced body is big enough that the oversized body
    // frame is the only thing wrong.
    let mut msg = basic_publish(1, "", "nowhere");
    msg.extend(content_header(1, 4 * max as u64));
    raw.send(&msg).await;
    // RabbitMQ tolerates up to 8 octets over frame_max (its "fudge"), so go
    // clearly over: payload frame_max + 1.
    raw.send(&body(1, &vec![b'x'; max + 1])).await;
    raw.expect_connection_close(FRAME_ERROR).await;

    // A body frame of exactly frame_max octets is fine.
    let mut raw = Raw::open_channel1(&broker).await;
    let q = unique("proto-frame-max");
    raw.send(&queue_declare(1, &q, true)).await;
    raw.expect_method(1, 50, 11).await;
    let mut msg = basic_publish(1, "", &q);
    msg.extend(content_header(1, (max - 8) as u64));
    msg.extend(body(1, &vec![b'x'; max - 8]));
    msg.extend(basic_get(1, &q));
    raw.send(&msg).await;
    raw.expect_method(1, 60, 71).await;
    match raw.next_non_heartbeat().await {
        Event::Frame(Frame::Header { ch: 1, body_size }) => assert_eq!(body_size, (max - 8) as u64),
        other => panic!("expected content header, got {other:?}"),
    }
    assert_alive(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_method_is_rejected() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open_channel1(&broker).await;
    raw.send(&method(1, 999, 999, Args::default().u32(0))).await;
    raw.expect_error_close(&[COMMAND_INVALID, NOT_IMPLEMENTED])
        .await;
    // An unknown method id within a known class, on a channel and on channel 0.
    let mut raw = Raw::open_channel1(&broker).await;
    raw.send(&method(1, 60, 999, Args::default().u32(0))).await;
    raw.expect_error_close(&[COMMAND_INVALID, NOT_IMPLEMENTED])
        .await;
    let mut raw = Raw::open(&broker).await;
    raw.send(&method(0, 10, 999, Args::default().u32(0))).await;
    raw.expect_error_close(&[COMMAND_INVALID, NOT_IMPLEMENTED])
        .await;
    assert_alive(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_method_arguments_are_rejected() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open_channel1(&broker).await;
    // queue.declare carrying only its reserved short.
    raw.send(&method(1, 50, 10, Args::default().u16(0))).await;
    raw.expect_connection_close(FRAME_ERROR).await;
    assert_alive(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_string_overrunning_the_frame_is_rejected() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open_channel1(&broker).await;
    // queue name claims 200 octets, the frame carries 3.
    raw.send(&method(
        1,
        50,
        10,
        Args::default().u16(0).u8(200).raw(b"abc"),
    ))
    .await;
    raw.expect_connection_close(FRAME_ERROR).await;
    assert_alive(&broker).await;
}

// ---------------------------------------------------------------------------
// State errors
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_on_unopened_channel_is_channel_error() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open(&broker).await;
    raw.send(&queue_declare(3, &unique("unopened"), true)).await;
    raw.expect_connection_close(CHANNEL_ERROR).await;
    assert_alive(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_open_twice_is_channel_error() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open_channel1(&broker).await;
    raw.send(&channel_open(1)).await;
    raw.expect_connection_close(CHANNEL_ERROR).await;
    assert_alive(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_header_without_publish_is_unexpected_frame() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open_channel1(&broker).await;
    raw.send(&content_header(1, 5)).await;
    raw.expect_connection_close(UNEXPECTED_FRAME).await;
    assert_alive(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_before_header_is_unexpected_frame() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open_channel1(&broker).await;
    let mut msg = basic_publish(1, "", "nowhere");
    msg.extend(body(1, b"hello"));
    raw.send(&msg).await;
    raw.expect_connection_close(UNEXPECTED_FRAME).await;
    // A body with no publish at all.
    let mut raw = Raw::open_channel1(&broker).await;
    raw.send(&body(1, b"hello")).await;
    raw.expect_connection_close(UNEXPECTED_FRAME).await;
    assert_alive(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_in_the_middle_of_content_is_unexpected_frame() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open_channel1(&broker).await;
    let mut msg = basic_publish(1, "", "nowhere");
    msg.extend(content_header(1, 10));
    msg.extend(body(1, b"hello"));
    msg.extend(basic_publish(1, "", "nowhere"));
    raw.send(&msg).await;
    raw.expect_connection_close(UNEXPECTED_FRAME).await;
    assert_alive(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_on_a_channel_is_unexpected_frame() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open_channel1(&broker).await;
    raw.send(&heartbeat(1)).await;
    // RabbitMQ: UNEXPECTED_FRAME - type 8, all octets = <<>>
    raw.expect_connection_close(UNEXPECTED_FRAME).await;
    assert_alive(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_beyond_channel_max_is_not_allowed() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open_tuned(
        &broker,
        Tune {
            channel_max: 2,
            ..DEFAULT_TUNE
        },
    )
    .await;
    assert_eq!(raw.channel_max, 2);
    for ch in [1, 2] {
        raw.send(&channel_open(ch)).await;
        raw.expect_method(ch, 20, 11).await;
    }
    // RabbitMQ: NOT_ALLOWED - number of channels opened (2) has reached the
    // negotiated channel_max (2)
    raw.send(&channel_open(3)).await;
    raw.expect_connection_close(NOT_ALLOWED).await;
    assert_alive(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_larger_than_announced_is_rejected() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open_channel1(&broker).await;
    let q = unique("proto-too-long");
    raw.send(&queue_declare(1, &q, false)).await;
    raw.expect_method(1, 50, 11).await;
    let mut msg = basic_publish(1, "", &q);
    msg.extend(content_header(1, 5));
    msg.extend(body(1, b"hello, too long"));
    // RabbitMQ 3.10 only notices at the next method frame (UNEXPECTED_FRAME -
    // expected content body, got non content body frame); a stricter broker
    // may reject the oversized body itself with a frame error.
    msg.extend(basic_get(1, &q));
    raw.send(&msg).await;
    raw.expect_error_close(&[FRAME_ERROR, UNEXPECTED_FRAME])
        .await;
    // Nothing was enqueued.
    let (conn, ch) = broker.connect_channel().await;
    assert_eq!(
        queue_counts(&ch, &q).await,
        (0, 0),
        "oversized message must not be enqueued"
    );
    w!(ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())).expect("queue.delete");
    let _ = w!(conn.close(200, "bye".into()));
    assert_alive(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_close_in_the_middle_of_content_gets_close_ok() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open_channel1(&broker).await;
    let mut msg = basic_publish(1, "", "nowhere");
    msg.extend(content_header(1, 100));
    msg.extend(body(1, b"only part of it"));
    msg.extend(connection_close(200));
    raw.send(&msg).await;
    // close-ok and nothing else; then the client closes the socket (RabbitMQ
    // leaves that to the client).
    raw.expect_method(0, 10, 51).await;
    drop(raw);
    assert_alive_raw(&broker).await;
}

// ---------------------------------------------------------------------------
// Authentication and vhosts
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_get_access_refused() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::connect(&broker).await;
    raw.start("guest", "not-the-password").await;
    raw.expect_connection_close(ACCESS_REFUSED).await;
    let mut raw = Raw::connect(&broker).await;
    raw.start("no-such-user", "guest").await;
    raw.expect_connection_close(ACCESS_REFUSED).await;
    assert_alive(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_vhost_is_not_allowed() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::connect(&broker).await;
    raw.start("guest", "guest").await;
    raw.tune(DEFAULT_TUNE).await;
    raw.send(&method(
        0,
        10,
        40,
        Args::default().ss(&unique("/no-such-vhost")).ss("").u8(0),
    ))
    .await;
    raw.expect_connection_close(NOT_ALLOWED).await;
    assert_alive(&broker).await;
}

// ---------------------------------------------------------------------------
// Heartbeats
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_is_dropped_after_missed_heartbeats() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open_tuned(
        &broker,
        Tune {
            heartbeat: 1,
            ..DEFAULT_TUNE
        },
    )
    .await;
    let silent_since = Instant::now();
    let mut heartbeats = 0;
    loop {
        match raw.next().await {
            Event::Frame(Frame::Heartbeat { ch: 0 }) => heartbeats += 1,
            Event::Closed => break,
            other => panic!("expected heartbeats then a closed socket, got {other:?}"),
        }
        assert!(
            silent_since.elapsed() < Duration::from_secs(6),
            "silent client still connected after 6s"
        );
    }
    let waited = silent_since.elapsed();
    assert!(
        waited < Duration::from_secs(6),
        "silent client dropped only after {waited:?}"
    );
    assert!(
        waited >= Duration::from_millis(900),
        "silent client dropped too early ({waited:?})"
    );
    assert!(heartbeats >= 1, "broker sent no heartbeat in {waited:?}");
    assert_alive(&broker).await;
}

// ---------------------------------------------------------------------------
// Fuzz
// ---------------------------------------------------------------------------

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A valid frame sequence to mutate.
fn fuzz_template(q: &str) -> Vec<u8> {
    let mut v = channel_open(1);
    v.extend(queue_declare(1, q, true));
    v.extend(basic_publish(1, "", q));
    v.extend(content_header(1, 11));
    v.extend(body(1, b"hello"));
    v.extend(body(1, b" world"));
    v.extend(basic_get(1, q));
    v.extend(heartbeat(0));
    v.extend(method(
        1,
        20,
        40,
        Args::default().u16(200).ss("bye").u16(0).u16(0),
    ));
    v
}

fn fuzz_payload(rng: &mut XorShift, q: &str) -> Vec<u8> {
    match rng.below(4) {
        // Pure noise.
        0 => {
            let n = 1 + rng.below(64);
            rng.bytes(n)
        }
        // A few flipped octets in a valid sequence.
        1 => {
            let mut v = fuzz_template(q);
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            v
        }
        // A valid sequence cut short, then noise.
        2 => {
            let mut v = fuzz_template(q);
            v.truncate(rng.below(v.len()));
            let n = rng.below(16);
            v.extend(rng.bytes(n));
            v
        }
        // Valid frames with a random frame spliced in.
        _ => {
            let mut v = channel_open(1);
            let len = rng.below(24);
            let payload = rng.bytes(len);
            let ty = [1u8, 2, 3, 8, rng.next() as u8][rng.below(5)];
            v.extend(frame(ty, rng.below(4) as u16, &payload));
            v.extend(fuzz_template(q));
            v
        }
    }
}

/// Reply codes a broker may legitimately close a fuzzed connection with.
const FUZZ_CODES: &[u16] = &[
    200, 402, 403, 404, 405, 406, 501, 502, 503, 504, 505, 506, 530, 540, 541,
];

/// The reply code of the first complete connection.close in `bytes` (a
/// stream of frames from the broker), if any.
fn find_connection_close(bytes: &[u8]) -> Option<u16> {
    let mut p = 0;
    while p + 7 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[p + 3..p + 7].try_into().unwrap()) as usize;
        let payload = bytes.get(p + 7..p + 7 + size)?;
        if bytes[p] == 1 && payload.len() >= 6 && payload[..4] == [0, 10, 0, 50] {
            return Some(u16::from_be_bytes([payload[4], payload[5]]));
        }
        p += 8 + size;
    }
    None
}

/// One fuzzed connection: after the noise, pad with 0xCE octets so that any
/// frame the broker is still waiting for completes and the next frame header
/// it reads (type 0xCE) is invalid. The broker must then answer with a
/// connection.close (which we acknowledge and hang up on) or close the socket
/// within 10 s. Returns the close code, None when it just closed the socket.
async fn fuzz_one(broker: &TestBroker, rng: &mut XorShift, n: usize) -> Option<u16> {
    let mut raw = Raw::open(broker).await;
    let q = unique("proto-fuzz");
    let mut bytes = fuzz_payload(rng, &q);
    bytes.extend(vec![FRAME_END; raw.frame_max as usize + 16]);
    let (mut rd, mut wr) = raw.sock.split();
    let exchange = async {
        let (mut off, mut got, mut buf) = (0, Vec::new(), [0u8; 4096]);
        loop {
            tokio::select! {
                r = rd.read(&mut buf) => match r {
                    Ok(0) | Err(_) => return None,
                    Ok(k) => {
                        got.extend_from_slice(&buf[..k]);
                        if let Some(code) = find_connection_close(&got) {
                            let _ = wr.write_all(&method(0, 10, 51, Args::default())).await;
                            return Some(code);
                        }
                    }
                },
                r = wr.write(&bytes[off..(off + 4096).min(bytes.len())]), if off < bytes.len() => match r {
                    Ok(k) => off += k,
                    Err(_) => off = bytes.len(),
                },
            }
        }
    };
    let code = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .unwrap_or_else(|_| {
            panic!("fuzz connection #{n} hung: broker neither answered nor closed within 10s")
        });
    if let Some(c) = code {
        assert!(
            FUZZ_CODES.contains(&c),
            "fuzz connection #{n}: unexpected connection.close code {c}"
        );
    }
    code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzed_connections_never_hang_or_kill_the_broker() {
    let broker = TestBroker::start().await;
    let broker = &broker;
    const TASKS: usize = 4;
    const PER_TASK: usize = 50;
    let mut codes = std::collections::BTreeMap::new();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        tasks.push(async move {
            let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ ((t as u64 + 1) * 0x1234_5678_9ABC));
            let mut out = Vec::new();
            for i in 0..PER_TASK {
                out.push(fuzz_one(broker, &mut rng, t * PER_TASK + i).await);
            }
            out
        });
    }
    let all = join_all(tasks).await;
    for c in all.into_iter().flatten() {
        *codes.entry(c).or_insert(0usize) += 1;
    }
    eprintln!(
        "fuzz outcomes (connection.close code -> count; None = closed without close): {codes:?}"
    );
    assert_alive(broker).await;
    assert_alive_raw(broker).await;
}

/// Join a small vector of futures concurrently on the current task.
async fn join_all<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in futs.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_body_frame_arriving_in_pieces_is_reassembled_exactly() {
    // Big frames are read in place rather than through the read buffer: the
    // pieces, and the small message glued to the big frame's end, must come
    // out byte for byte.
    let broker = TestBroker::start().await;
    let mut raw = Raw::open_channel1(&broker).await;
    let q = unique("proto-big-frame");
    raw.send(&queue_declare(1, &q, false)).await;
    raw.expect_method(1, 50, 11).await;
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut msg = basic_publish(1, "", &q);
    msg.extend(content_header(1, data.len() as u64));
    msg.extend(body(1, &data));
    msg.extend(basic_publish(1, "", &q));
    msg.extend(content_header(1, 3));
    msg.extend(body(1, b"end"));
    // Uneven pieces with pauses: the broker sees many partial reads.
    for piece in msg.chunks(7_919) {
        raw.send(piece).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (conn, ch) = broker.connect_channel().await;
    let big = within(Duration::from_secs(10), async {
        loop {
            if let Some(m) = get_noack(&ch, &q).await {
                break m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(big.delivery.data == data, "the 100,000-byte body changed");
    let end = get_noack(&ch, &q).await.expect("the second message");
    assert_eq!(end.delivery.data, b"end");
    w!(ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())).expect("queue.delete");
    let _ = w!(conn.close(200, "bye".into()));
    raw.send(&connection_close(200)).await;
    raw.expect_method(0, 10, 51).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_deliveries_to_a_slow_reader_arrive_whole_and_in_order() {
    // Bodies of 16 KiB or more are sent from where they are, by sendmsg with
    // several iovecs; a consumer that does not read fills its socket, so
    // the writer resumes partial writes in the middle of a body.
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.connect_channel().await;
    let q = unique("proto-slow-reader");
    declare_queue(&ch, &q).await;
    const N: u32 = 64;
    const SIZE: usize = 150_000; // two body frames at frame_max 131072
    let body_of = |i: u32| -> Vec<u8> {
        (0..SIZE)
            .map(|j| (j as u32).wrapping_mul(31).wrapping_add(i) as u8)
            .collect()
    };
    for i in 0..N {
        publish(&ch, "", &q, &body_of(i)).await;
    }
    let mut raw = Raw::open_channel1(&broker).await;
    raw.send(&basic_consume_no_ack(1, &q, "slow")).await;
    raw.expect_method(1, 60, 21).await;
    // Let the broker fill the socket (9.6 MB queued) before reading.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..N {
        raw.expect_method(1, 60, 60).await;
        let size = match raw.next_non_heartbeat().await {
            Event::Frame(Frame::Header { ch: 1, body_size }) => body_size as usize,
            other => panic!("message {i}: expected a content header, got {other:?}"),
        };
        assert_eq!(size, SIZE, "message {i}");
        let mut got = Vec::with_capacity(size);
        while got.len() < size {
            match raw.next_non_heartbeat().await {
                Event::Frame(Frame::Body { ch: 1, data, .. }) => got.extend_from_slice(&data),
                other => panic!("message {i}: expected a body frame, got {other:?}"),
            }
        }
        assert!(
            got == body_of(i),
            "message {i} arrived changed or out of order"
        );
    }
    raw.send(&connection_close(200)).await;
    raw.expect_method(0, 10, 51).await;
    delete_queue(&ch, &q).await;
    let _ = w!(conn.close(200, "bye".into()));
}

// ---------------------------------------------------------------------------
// Confirms, update-secret and closing (issue 10)
// ---------------------------------------------------------------------------

/// A burst of confirmed publishes to queues on several shards: the broker
/// acknowledges with `multiple` for whatever became confirmed together
/// rather than one frame per message, on every shard count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirms_for_a_burst_coalesce_into_multiple_acks() {
    const N: u64 = 300;
    let broker = TestBroker::start().await;
    let mut raw = Raw::open_channel1(&broker).await;
    let ex = unique("burst-fanout");
    // exchange.declare: reserved, name, type, bits, arguments
    raw.send(&method(
        1,
        40,
        10,
        Args::default().u16(0).ss(&ex).ss("fanout").u8(0).no_table(),
    ))
    .await;
    raw.expect_method(1, 40, 11).await;
    // Four queues: with 3 shards at least one is almost surely remote.
    for i in 0..4 {
        let q = unique(&format!("burst-q{i}"));
        raw.send(&queue_declare(1, &q, true)).await;
        raw.expect_method(1, 50, 11).await;
        // queue.bind: reserved, queue, exchange, key, no-wait, arguments
        raw.send(&method(
            1,
            50,
            20,
            Args::default()
                .u16(0)
                .ss(&q)
                .ss(&ex)
                .ss("")
                .u8(0)
                .no_table(),
        ))
        .await;
        raw.expect_method(1, 50, 21).await;
    }
    raw.send(&method(1, 85, 10, Args::default().u8(0))).await;
    raw.expect_method(1, 85, 11).await;
    let mut burst = Vec::new();
    for _ in 0..N {
        burst.extend(basic_publish(1, &ex, ""));
        burst.extend(content_header(1, 3));
        burst.extend(body(1, b"abc"));
    }
    raw.send(&burst).await;
    let (mut upto, mut frames, mut multiples) = (0u64, 0, 0);
    while upto < N {
        let args = raw.expect_method(1, 60, 80).await;
        let tag = u64::from_be_bytes(args[..8].try_into().unwrap());
        let multiple = args[8] & 1 == 1;
        assert!(tag > upto, "ack {tag} after {upto}: confirms out of order");
        assert!(
            multiple || tag == upto + 1,
            "single ack {tag} skips publishes after {upto}"
        );
        frames += 1;
        multiples += multiple as u32;
        upto = tag;
    }
    assert!(
        multiples > 0 && frames < N,
        "{frames} ack frames for {N} publishes ({multiples} with multiple): confirms did not coalesce"
    );
    raw.send(&connection_close(200)).await;
    raw.expect_method(0, 10, 51).await;
}

/// connection.update-secret gets update-secret-ok (RabbitMQ's internal
/// user database), and the connection goes on as the same user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_secret_gets_update_secret_ok() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open_channel1(&broker).await;
    raw.send(&method(
        0,
        10,
        70,
        Args::default().ls(b"guest").ss("token refresh"),
    ))
    .await;
    raw.expect_method(0, 10, 71).await;
    raw.send(&queue_declare(1, "", true)).await;
    raw.expect_method(1, 50, 11).await;
    raw.send(&connection_close(200)).await;
    raw.expect_method(0, 10, 51).await;
}

/// A new secret that no longer authenticates the user closes the
/// connection with 530 NOT_ALLOWED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_secret_that_does_not_authenticate_closes() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open_channel1(&broker).await;
    raw.send(&method(
        0,
        10,
        70,
        Args::default().ls(b"not-the-password").ss("token refresh"),
    ))
    .await;
    let close = raw.expect_method(0, 10, 50).await;
    assert_eq!(u16::from_be_bytes([close[0], close[1]]), 530, "reply code");
}

/// After close-ok the broker keeps reading until the client closes: a
/// client whose publishes were still queued behind its close writes them
/// without a reset, and then sees the broker's end of the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_after_close_ok_meet_no_reset() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open_channel1(&broker).await;
    raw.send(&connection_close(200)).await;
    raw.expect_method(0, 10, 51).await;
    let mut late = Vec::new();
    for _ in 0..200 {
        late.extend(basic_publish(1, "", "nowhere"));
        late.extend(content_header(1, 1000));
        late.extend(body(1, &[7u8; 1000]));
    }
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        w!(raw.sock.write_all(&late)).expect("a write after close-ok must not be reset");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // As RabbitMQ, the broker leaves closing to the client: once the
    // client's side is shut, the broker's follows, with nothing more sent.
    w!(raw.sock.shutdown()).expect("shut down the client's side");
    raw.expect_closed().await;
}

/// A server-initiated close discards what the client still sends until
/// close-ok, then closes the socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_after_a_server_close_are_discarded_until_close_ok() {
    let broker = TestBroker::start().await;
    let mut raw = Raw::open(&broker).await;
    // A method on a channel that was never opened: 504 CHANNEL_ERROR.
    raw.send(&queue_declare(3, "", true)).await;
    let args = raw.expect_method(0, 10, 50).await;
    assert_eq!(u16::from_be_bytes([args[0], args[1]]), 504);
    for _ in 0..20 {
        let mut more = basic_publish(3, "", "nowhere");
        more.extend(heartbeat(0));
        w!(raw.sock.write_all(&more)).expect("writes before close-ok must not be reset");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    raw.send(&method(0, 10, 51, Args::default())).await;
    raw.expect_closed().await;
}
