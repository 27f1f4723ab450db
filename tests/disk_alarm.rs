//! The disk alarm (`--disk-free-limit`), as RabbitMQ has it: below the
//! limit, a connection that publishes stops being read and, if its client
//! advertises the `connection.blocked` capability, gets `connection.blocked`
//! and later `connection.unblocked`; connections that only consume keep
//! going; a blocked connection is not closed for missed heartbeats.
//!
//! `--disk-free-limit 1000TB` sets the alarm for good (no file system has
//! that much free). The test that clears it fills the disk for real, with
//! a preallocated file beside the data directory.
//!
//! These inspect their own broker's log and limits, so they cannot run
//! against `WARREN_TEST_URL` (they say so and return).

#[macro_use]
mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use lapin::options::BasicAckOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HUGE_LIMIT: &str = "1000TB";

// ---------------------------------------------------------------------------
// A raw AMQP client: just enough to choose the client's capabilities and
// to see exactly which frames the broker sends and when.
// ---------------------------------------------------------------------------

fn frame(ty: u8, ch: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![ty];
    f.extend_from_slice(&ch.to_be_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f.push(0xce);
    f
}

fn method(ch: u16, class: u16, id: u16, args: &[u8]) -> Vec<u8> {
    let mut p = class.to_be_bytes().to_vec();
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(args);
    frame(1, ch, &p)
}

fn shortstr(out: &mut Vec<u8>, s: &str) {
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

fn longstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// client-properties: product, and a capabilities table that has
/// `connection.blocked` only when asked to.
fn client_properties(blocked_capability: bool) -> Vec<u8> {
    let mut caps = Vec::new();
    shortstr(&mut caps, "publisher_confirms");
    caps.extend_from_slice(b"t\x01");
    if blocked_capability {
        shortstr(&mut caps, "connection.blocked");
        caps.extend_from_slice(b"t\x01");
    }
    let mut t = Vec::new();
    shortstr(&mut t, "product");
    t.push(b'S');
    longstr(&mut t, b"warren raw test client");
    shortstr(&mut t, "capabilities");
    t.push(b'F');
    longstr(&mut t, &caps);
    let mut out = Vec::new();
    longstr(&mut out, &t);
    out
}

fn basic_publish(ch: u16, key: &str, body: &[u8]) -> Vec<u8> {
    let mut a = 0u16.to_be_bytes().to_vec();
    shortstr(&mut a, "");
    shortstr(&mut a, key);
    a.push(0);
    let mut out = method(ch, 60, 40, &a);
    let mut h = 60u16.to_be_bytes().to_vec();
    h.extend_from_slice(&0u16.to_be_bytes());
    h.extend_from_slice(&(body.len() as u64).to_be_bytes());
    h.extend_from_slice(&0u16.to_be_bytes());
    out.extend(frame(2, ch, &h));
    out.extend(frame(3, ch, body));
    out
}

fn queue_declare_passive(ch: u16, name: &str) -> Vec<u8> {
    let mut a = 0u16.to_be_bytes().to_vec();
    shortstr(&mut a, name);
    a.push(1); // passive
    a.extend_from_slice(&0u32.to_be_bytes());
    method(ch, 50, 10, &a)
}

#[derive(Debug, PartialEq)]
enum RawFrame {
    Method {
        ch: u16,
        class: u16,
        id: u16,
        args: Vec<u8>,
    },
    Heartbeat,
    Other {
        ty: u8,
        ch: u16,
    },
}

struct Raw {
    sock: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// Connects as guest, with or without the connection.blocked
    /// capability, and opens channel 1.
    async fn open(broker: &TestBroker, blocked_capability: bool, heartbeat: u16) -> Raw {
        let sock = w!(TcpStream::connect(broker.addr())).expect("tcp connect");
        let mut raw = Raw {
            sock,
            buf: Vec::new(),
        };
        raw.send(b"AMQP\x00\x00\x09\x01").await;
        raw.expect_method(10, 10).await; // start
        let mut a = client_properties(blocked_capability);
        shortstr(&mut a, "PLAIN");
        longstr(&mut a, b"\x00guest\x00guest");
        shortstr(&mut a, "en_US");
        raw.send(&method(0, 10, 11, &a)).await;
        raw.expect_method(10, 30).await; // tune
        let mut a = 2047u16.to_be_bytes().to_vec();
        a.extend_from_slice(&131_072u32.to_be_bytes());
        a.extend_from_slice(&heartbeat.to_be_bytes());
        raw.send(&method(0, 10, 31, &a)).await;
        let mut a = Vec::new();
        shortstr(&mut a, "/");
        shortstr(&mut a, "");
        a.push(0);
        raw.send(&method(0, 10, 40, &a)).await;
        raw.expect_method(10, 41).await; // open-ok
        raw.send(&method(1, 20, 10, b"\x00")).await;
        raw.expect_method(20, 11).await; // channel.open-ok
        raw
    }

    async fn send(&mut self, bytes: &[u8]) {
        w!(self.sock.write_all(bytes)).expect("write to the broker");
    }

    fn parse(&mut self) -> Option<RawFrame> {
        if self.buf.len() < 7 {
            return None;
        }
        let size = u32::from_be_bytes(self.buf[3..7].try_into().unwrap()) as usize;
        if self.buf.len() < 8 + size {
            return None;
        }
        let f: Vec<u8> = self.buf.drain(..8 + size).collect();
        assert_eq!(f[7 + size], 0xce, "frame end");
        let ty = f[0];
        let ch = u16::from_be_bytes([f[1], f[2]]);
        let p = &f[7..7 + size];
        Some(match ty {
            1 => RawFrame::Method {
                ch,
                class: u16::from_be_bytes([p[0], p[1]]),
                id: u16::from_be_bytes([p[2], p[3]]),
                args: p[4..].to_vec(),
            },
            8 => RawFrame::Heartbeat,
            _ => RawFrame::Other { ty, ch },
        })
    }

    /// The next frame within `limit`: `Ok(None)` when nothing came,
    /// `Err(())` when the broker closed the socket.
    async fn next_within(&mut self, limit: Duration) -> Result<Option<RawFrame>, ()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(f) = self.parse() {
                return Ok(Some(f));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout(left, self.sock.read(&mut chunk)).await {
                Err(_) => return Ok(None),
                Ok(Ok(0)) | Ok(Err(_)) => return Err(()),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next frame other than a heartbeat (bounded by the step timeout).
    async fn expect_method(&mut self, class: u16, id: u16) -> Vec<u8> {
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_within(left).await {
                Ok(Some(RawFrame::Heartbeat)) => continue,
                Ok(Some(RawFrame::Method {
                    class: c,
                    id: i,
                    args,
                    ..
                })) if (c, i) == (class, id) => return args,
                Ok(Some(other)) => panic!("expected method {class}.{id}, got {other:?}"),
                Ok(None) => panic!("expected method {class}.{id}, got nothing within {STEP:?}"),
                Err(()) => panic!("expected method {class}.{id}, the broker closed the socket"),
            }
        }
    }

    /// Everything but heartbeats the broker sends in `ms` milliseconds, and
    /// how many heartbeats came. Panics if the socket closes.
    async fn observe(&mut self, ms: u64) -> (Vec<RawFrame>, usize) {
        let deadline = Instant::now() + Duration::from_millis(ms);
        let mut frames = Vec::new();
        let mut heartbeats = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return (frames, heartbeats);
            }
            match self.next_within(left).await {
                Ok(Some(RawFrame::Heartbeat)) => heartbeats += 1,
                Ok(Some(f)) => frames.push(f),
                Ok(None) => return (frames, heartbeats),
                Err(()) => {
                    panic!("the broker closed the connection; frames before that: {frames:?}")
                }
            }
        }
    }
}

fn blocked_reason(args: &[u8]) -> String {
    let n = args[0] as usize;
    String::from_utf8_lossy(&args[1..1 + n]).into_owned()
}

// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_is_blocked_and_consumers_keep_going() {
    if skip_external("publisher_is_blocked_and_consumers_keep_going") {
        return;
    }
    let broker = TestBroker::start_with(&["--disk-free-limit", HUGE_LIMIT]).await;
    let q = unique("alarm.q");

    // A consumer connection: never publishes.
    let cconn = broker.connect().await;
    let mut cev = events(&cconn);
    let cch = channel(&cconn).await;
    declare_queue(&cch, &q).await;
    let mut consumer = consume(&cch, &q, "c", false).await;

    // A publisher (lapin advertises connection.blocked). What it does
    // before its first publish is served normally.
    let pconn = broker.connect().await;
    let mut pev = events(&pconn);
    let pch = channel(&pconn).await;
    assert_eq!(queue_counts(&pch, &q).await, (0, 1));
    confirm(&pch).await;
    // The publish that meets the alarm is taken (as in RabbitMQ), and
    // then the connection is blocked.
    publish_confirmed(&pch, "", &q, b"first").await;
    let reason = expect_blocked(&mut pev, Duration::from_secs(5)).await;
    assert_eq!(reason, "low on disk");
    assert!(pconn.status().blocked());

    let d = next_delivery(&mut consumer).await;
    assert_eq!(body_str(&d), "first");
    w!(d.ack(BasicAckOptions::default())).expect("ack");

    // The consumer's connection is neither blocked nor slowed.
    assert_not_blocked(&mut cev, 1200).await;
    let side = unique("alarm.side");
    declare_queue(&cch, &side).await;
    assert!(get_noack(&cch, &side).await.is_none());
    assert_eq!(queue_counts(&cch, &q).await, (0, 1));
    // Nothing more reaches the queue from the blocked publisher (lapin
    // holds what it publishes while blocked).
    let (pch2, q2) = (pch.clone(), q.clone());
    tokio::spawn(async move {
        let _ = pch2
            .basic_publish(
                "".into(),
                q2.as_str().into(),
                Default::default(),
                b"second",
                Default::default(),
            )
            .await;
    });
    assert_no_delivery(&mut consumer, 1000).await;

    let log = broker.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("disk resource limit alarm set on node"))
        .unwrap_or_else(|| panic!("no alarm line in the log:\n{log}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("free bytes"), "{line}");
    assert!(line.contains("limit 1000000000000000"), "{line}");
    assert_eq!(
        log.matches("disk resource limit alarm set").count(),
        1,
        "the alarm is logged once per node, not once per shard:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_connection_is_not_read_and_survives_its_heartbeat_timeout() {
    if skip_external("blocked_connection_is_not_read_and_survives_its_heartbeat_timeout") {
        return;
    }
    let broker = TestBroker::start_with(&["--disk-free-limit", HUGE_LIMIT]).await;
    let q = unique("alarm.raw");
    let (_side_conn, side) = broker.connect_channel().await;
    declare_queue(&side, &q).await;

    // heartbeat 1: Warren would close a peer silent for 2 s.
    let mut raw = Raw::open(&broker, true, 1).await;
    // Not blocked before publishing: a round trip works.
    raw.send(&queue_declare_passive(1, &q)).await;
    raw.expect_method(50, 11).await;
    raw.send(&basic_publish(1, &q, b"one")).await;
    let args = raw.expect_method(10, 60).await;
    assert_eq!(blocked_reason(&args), "low on disk");

    // Blocked: what the client sends now is not read.
    raw.send(&basic_publish(1, &q, b"two")).await;
    raw.send(&queue_declare_passive(1, &q)).await;
    // Silent for longer than two heartbeat intervals, and not closed for
    // it; Warren's own heartbeats keep coming.
    let (frames, heartbeats) = raw.observe(3500).await;
    assert!(
        frames.is_empty(),
        "a blocked connection answered or was closed: {frames:?}"
    );
    assert!(
        heartbeats >= 2,
        "only {heartbeats} heartbeats from the broker in 3.5 s (heartbeat 1)"
    );
    // "one" went in before the block; "two" was never read.
    assert_eq!(queue_counts(&side, &q).await, (1, 0));
    assert_eq!(drain(&side, &q).await, vec!["one".to_string()]);
    // Still blocked, still open.
    let (frames, _) = raw.observe(500).await;
    assert!(frames.is_empty(), "{frames:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_without_the_capability_is_blocked_silently() {
    if skip_external("client_without_the_capability_is_blocked_silently") {
        return;
    }
    let broker = TestBroker::start_with(&["--disk-free-limit", HUGE_LIMIT]).await;
    let q = unique("alarm.nocap");
    let (_side_conn, side) = broker.connect_channel().await;
    declare_queue(&side, &q).await;

    let mut raw = Raw::open(&broker, false, 0).await;
    raw.send(&basic_publish(1, &q, b"one")).await;
    // No connection.blocked for a client that did not ask for it...
    let (frames, _) = raw.observe(1500).await;
    assert!(frames.is_empty(), "unexpected frames: {frames:?}");
    // ...but it is blocked all the same.
    raw.send(&basic_publish(1, &q, b"two")).await;
    raw.send(&queue_declare_passive(1, &q)).await;
    let (frames, _) = raw.observe(1500).await;
    assert!(
        frames.is_empty(),
        "a blocked connection was read: {frames:?}"
    );
    assert_eq!(queue_counts(&side, &q).await, (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_connection_without_publishes_is_never_blocked() {
    if skip_external("consumer_connection_without_publishes_is_never_blocked") {
        return;
    }
    let broker = TestBroker::start_with(&["--disk-free-limit", HUGE_LIMIT]).await;
    let q = unique("alarm.consumer");
    // Raw consumer-side work: declares, gets, acks never block.
    let mut raw = Raw::open(&broker, true, 0).await;
    let (_c, side) = broker.connect_channel().await;
    declare_queue(&side, &q).await;
    for _ in 0..5 {
        raw.send(&queue_declare_passive(1, &q)).await;
        raw.expect_method(50, 11).await;
    }
    let (frames, _) = raw.observe(1200).await;
    assert!(frames.is_empty(), "unexpected frames: {frames:?}");
    raw.send(&queue_declare_passive(1, &q)).await;
    raw.expect_method(50, 11).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_limit_blocks_nobody() {
    if skip_external("normal_limit_blocks_nobody") {
        return;
    }
    // The default limit (50MB), when the disk has far more than that.
    let probe = std::env::temp_dir();
    let free = warren::alarm::free_bytes(&probe).expect("statvfs");
    let args: &[&str] = if free >= 1 << 30 {
        &[]
    } else {
        eprintln!("NOTICE: only {free} bytes free: using --disk-free-limit 1");
        &["--disk-free-limit", "1"]
    };
    let broker = TestBroker::start_with(args).await;
    let q = unique("alarm.none");
    let conn = broker.connect().await;
    let mut ev = events(&conn);
    let ch = channel(&conn).await;
    declare_queue(&ch, &q).await;
    confirm(&ch).await;
    for i in 0..20 {
        publish_confirmed(&ch, "", &q, format!("m{i}").as_bytes()).await;
    }
    assert_not_blocked(&mut ev, 1500).await;
    assert!(!conn.status().blocked());
    for i in 20..40 {
        publish_confirmed(&ch, "", &q, format!("m{i}").as_bytes()).await;
    }
    assert_eq!(queue_counts(&ch, &q).await.0, 40);
    let log = broker.log_text();
    assert!(!log.contains("alarm set"), "{log}");
}

/// A file that takes disk space for real while it exists.
struct Ballast(PathBuf);

impl Ballast {
    fn allocate(path: PathBuf, len: u64) -> std::io::Result<Ballast> {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::create(&path)?;
        let ballast = Ballast(path);
        // SAFETY: fallocate on a file we own.
        let rc = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, len as libc::off_t) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        f.sync_all()?;
        Ok(ballast)
    }
}

impl Drop for Ballast {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarm_clears_when_space_returns() {
    if skip_external("alarm_clears_when_space_returns") {
        return;
    }
    let tmp = std::env::temp_dir();
    let free = warren::alarm::free_bytes(&tmp).expect("statvfs");
    if free < 1 << 30 {
        eprintln!("NOTICE: alarm_clears_when_space_returns not run: only {free} bytes free");
        return;
    }
    // Leave `margin` above the limit, then take twice that: a wide band,
    // so other processes writing or deleting meanwhile do not matter.
    let margin = (free / 8).min(2 << 30);
    let limit = free - margin;
    let limit_arg = limit.to_string();
    let broker = TestBroker::start_with(&["--disk-free-limit", &limit_arg, "--log", "info"]).await;
    assert!(
        !broker.log_text().contains("alarm set"),
        "alarm set with {margin} bytes to spare:\n{}",
        broker.log_text()
    );
    let q = unique("alarm.clear");
    let cconn = broker.connect().await;
    let cch = channel(&cconn).await;
    declare_queue(&cch, &q).await;
    let mut consumer = consume(&cch, &q, "c", true).await;

    // heartbeat=1: Warren closes peers silent for 2 s, and lapin sends
    // nothing at all while blocked.
    let pconn = w!(lapin::Connection::connect(
        &broker.url_with_query("heartbeat=1"),
        lapin::ConnectionProperties::default()
    ))
    .expect("connect with heartbeat=1");
    let mut pev = events(&pconn);
    let pch = channel(&pconn).await;
    confirm(&pch).await;
    publish_confirmed(&pch, "", &q, b"before").await;
    assert_eq!(body_str(&next_delivery(&mut consumer).await), "before");

    let ballast_path = broker.data_dir().with_extension("ballast");
    let ballast = match Ballast::allocate(ballast_path, 2 * margin) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("NOTICE: alarm_clears_when_space_returns not run: fallocate: {e}");
            return;
        }
    };
    broker
        .wait_log_line(
            "disk resource limit alarm set on node",
            Duration::from_secs(5),
        )
        .await;
    // Shard 0 logs it; every shard checks on its own second.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    publish_confirmed(&pch, "", &q, b"during").await;
    assert_eq!(
        expect_blocked(&mut pev, Duration::from_secs(5)).await,
        "low on disk"
    );
    assert_eq!(body_str(&next_delivery(&mut consumer).await), "during");
    // Blocked for longer than Warren's heartbeat timeout: still connected.
    assert_not_blocked(&mut pev, 3000).await;
    assert!(pconn.status().connected() && pconn.status().blocked());

    drop(ballast);
    expect_unblocked(&mut pev, Duration::from_secs(5)).await;
    assert!(!pconn.status().blocked());
    broker
        .wait_log_line(
            "disk resource limit alarm cleared on node",
            Duration::from_secs(5),
        )
        .await;
    // Reading resumed, and the connection is healthy.
    publish_confirmed(&pch, "", &q, b"after").await;
    assert_eq!(body_str(&next_delivery(&mut consumer).await), "after");
    assert_not_blocked(&mut pev, 2500).await;
    publish_confirmed(&pch, "", &q, b"later").await;
    assert_eq!(body_str(&next_delivery(&mut consumer).await), "later");
    assert!(pconn.status().connected());
}
