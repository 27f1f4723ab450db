//! Shared harness for the lapin-based integration tests.
//!
//! Every test starts its own Warren broker (`TestBroker::start`) on a free
//! port with a fresh data directory, unless `WARREN_TEST_URL` is set: then the
//! tests run against that broker (e.g. a real RabbitMQ, to prove the tests
//! describe RabbitMQ's actual behaviour) and nothing is spawned. Tests never
//! assume an empty broker: every name comes from [`unique`].
//!
//! Every wait is bounded (see [`within`] / [`w!`]) so a hang fails the test.
#![allow(dead_code, unused_macros, unused_imports)]

use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_lite::StreamExt;
use lapin::message::{BasicGetMessage, Delivery};
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};

/// Default bound for a single awaited step.
pub const STEP: Duration = Duration::from_secs(10);

/// Await `fut` with the default step timeout; on timeout panic with the
/// caller's location and the expression text.
#[macro_export]
macro_rules! w {
    ($fut:expr) => {
        $crate::common::within_at(
            $crate::common::STEP,
            $fut,
            concat!(file!(), ":", line!(), ": ", stringify!($fut)),
        )
        .await
    };
    ($secs:expr, $fut:expr) => {
        $crate::common::within_at(
            std::time::Duration::from_secs($secs),
            $fut,
            concat!(file!(), ":", line!(), ": ", stringify!($fut)),
        )
        .await
    };
}

pub async fn within_at<F: Future>(limit: Duration, fut: F, what: &str) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

pub async fn within<F: Future>(limit: Duration, fut: F) -> F::Output {
    within_at(limit, fut, "operation").await
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name that is unique across tests, test binaries and broker runs.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{n}-{}",
        std::process::id(),
        nanos % 1_000_000_000_000
    )
}

pub struct TestBroker {
    url: String,
    port: u16,
    child: Option<Child>,
    data_dir: Option<PathBuf>,
    log_path: Option<PathBuf>,
    /// Arguments after the harness's own, kept for restarts.
    extra_args: Vec<String>,
    /// Where the current run's output starts in the log file.
    log_offset: u64,
    /// Broker processes started so far (restarts included).
    runs: u32,
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind ephemeral port");
    listener.local_addr().unwrap().port()
}

/// Removes terminal escape sequences (tracing colours its output when it
/// thinks it may) so log assertions see plain text.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // CSI: parameters and intermediates, then one final byte.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

fn tail_of(text: &str, max_chars: usize) -> String {
    let n = text.chars().count();
    text.chars().skip(n.saturating_sub(max_chars)).collect()
}

impl TestBroker {
    /// True when the tests run against an external broker (`WARREN_TEST_URL`).
    pub fn external() -> bool {
        std::env::var("WARREN_TEST_URL")
            .map(|u| !u.is_empty())
            .unwrap_or(false)
    }

    pub async fn start() -> TestBroker {
        TestBroker::start_with(&[]).await
    }

    /// Starts a broker with extra `warren serve` arguments (e.g.
    /// `["--segment-size", "1MiB"]`), kept for [`TestBroker::restart`].
    /// `--shards` and `--log` given here replace the harness's defaults
    /// (`$WARREN_TEST_SHARDS` or 3, and `warn`). With `WARREN_TEST_URL` set
    /// the arguments are ignored and the external broker is used.
    pub async fn start_with(extra_args: &[&str]) -> TestBroker {
        if let Ok(url) = std::env::var("WARREN_TEST_URL") {
            if !url.is_empty() {
                let port = parse_port(&url).unwrap_or(5672);
                return TestBroker {
                    url,
                    port,
                    child: None,
                    data_dir: None,
                    log_path: None,
                    extra_args: Vec::new(),
                    log_offset: 0,
                    runs: 0,
                };
            }
        }
        let data_dir = std::env::temp_dir().join(unique("warren-lapin-test"));
        std::fs::create_dir_all(&data_dir).expect("create broker data dir");
        let log_path = data_dir.with_extension("log");
        let mut broker = TestBroker {
            url: String::new(),
            port: 0,
            child: None,
            data_dir: Some(data_dir),
            log_path: Some(log_path),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            log_offset: 0,
            runs: 0,
        };
        broker.spawn(Duration::from_secs(15)).await;
        broker
    }

    /// The command line of one run, after `serve --port P`.
    fn serve_args(&self) -> Vec<String> {
        let has = |flag: &str| {
            self.extra_args
                .iter()
                .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
        };
        let mut args = vec!["--bind".to_string(), "127.0.0.1".to_string()];
        if !has("--shards") {
            let shards = std::env::var("WARREN_TEST_SHARDS").unwrap_or_else(|_| "3".to_string());
            args.extend(["--shards".to_string(), shards]);
        }
        if !has("--log") {
            args.extend(["--log".to_string(), "warn".to_string()]);
        }
        let dir = self
            .data_dir
            .as_ref()
            .expect("a broker started by the tests");
        args.extend(["--data-dir".to_string(), dir.display().to_string()]);
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// Starts a broker process on a free port with the data dir and
    /// arguments of this `TestBroker`, and waits until it accepts TCP
    /// connections (bounded by `limit`). Its output is appended to the log
    /// file; [`TestBroker::log_text`] shows this run's part.
    async fn spawn(&mut self, limit: Duration) {
        assert!(self.child.is_none(), "the broker is still running");
        let log_path = self
            .log_path
            .clone()
            .expect("a broker started by the tests");
        let deadline = Instant::now() + limit;
        // The free port can be raced by another process between our probe
        // and the broker's bind; retry a couple of times if that happens.
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.runs += 1;
            let port = free_port();
            let args = self.serve_args();
            let mut log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .expect("open broker log file");
            {
                use std::io::Write;
                let _ = writeln!(
                    log,
                    "==== test harness: run {} of warren serve --port {port} {} ====",
                    self.runs,
                    args.join(" ")
                );
            }
            self.log_offset = log.metadata().map(|m| m.len()).unwrap_or(0);
            let child = Command::new(env!("CARGO_BIN_EXE_warren"))
                .arg("serve")
                .args(["--port", &port.to_string()])
                // The HTTP listeners are off: tests run brokers side by
                // side, and the fixed default ports would collide.
                .args(["--management-port", "0", "--prometheus-port", "0"])
                .args(&args)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log fd"))
                .stderr(log)
                .spawn()
                .expect("spawn warren broker");
            self.child = Some(child);
            self.port = port;
            self.url = format!("amqp://guest:guest@127.0.0.1:{port}/%2F");
            loop {
                if amqp_ready(port).await {
                    return;
                }
                let exited = self.child.as_mut().unwrap().try_wait().expect("try_wait");
                if let Some(status) = exited {
                    self.child = None;
                    let log = self.log_text();
                    if attempt < 3 && Instant::now() < deadline && log.contains("cannot listen on")
                    {
                        eprintln!("warren exited early ({status}), retrying; log:\n{log}");
                        break;
                    }
                    panic!("warren exited before accepting connections ({status}); log:\n{log}");
                }
                if Instant::now() >= deadline {
                    let log = self.log_text();
                    panic!(
                        "warren did not accept connections on port {port} within {limit:?}; log:\n{log}"
                    );
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    }

    fn child_mut(&mut self, what: &str) -> &mut Child {
        match self.child.as_mut() {
            Some(c) => c,
            None if self.data_dir.is_none() => {
                panic!("{what}: not possible against an external broker (WARREN_TEST_URL)")
            }
            None => panic!("{what}: the broker is not running"),
        }
    }

    /// The broker's process id.
    pub fn pid(&mut self) -> u32 {
        self.child_mut("pid").id()
    }

    /// Whether the broker process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    /// Waits (bounded by `limit`) for the broker to exit by itself; its
    /// exit status, or `None` if it is still running.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            let child = self.child_mut("wait_exit");
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: the crash. Returns once the process is gone.
    pub fn kill(&mut self) -> std::process::ExitStatus {
        let child = self.child_mut("kill");
        let _ = child.kill();
        let status = child.wait().expect("wait for the killed broker");
        self.child = None;
        status
    }

    /// SIGTERM, then wait (bounded, 20 s) for the process to exit; returns
    /// its exit status (a clean shutdown is status 0).
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let pid = self.child_mut("stop").id();
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM): {}", std::io::Error::last_os_error());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let child = self.child.as_mut().unwrap();
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                panic!(
                    "warren did not exit within 20s of SIGTERM; log:\n{}",
                    tail_of(&self.log_text(), 8000)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and assert a clean exit (status 0).
    pub fn stop_clean(&mut self) {
        let status = self.stop();
        assert!(
            status.success(),
            "warren exited with {status} after SIGTERM (expected status 0); log:\n{}",
            tail_of(&self.log_text(), 8000)
        );
    }

    /// Starts the broker again on the same data dir with the same extra
    /// arguments, on a new free port ([`TestBroker::url`] changes). A broker
    /// still running is stopped first with SIGTERM. Waits up to 30 s for
    /// recovery to finish and the port to accept connections.
    pub async fn restart(&mut self) {
        if self.is_running() {
            self.stop();
        }
        self.child = None;
        self.spawn(Duration::from_secs(30)).await;
    }

    /// [`TestBroker::restart`] with other extra arguments (kept for later
    /// restarts).
    pub async fn restart_with(&mut self, extra_args: &[&str]) {
        self.extra_args = extra_args.iter().map(|s| s.to_string()).collect();
        self.restart().await;
    }

    /// The broker's data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        self.data_dir
            .as_deref()
            .expect("no data dir: the tests run against an external broker")
    }

    /// The current run's log (the broker's stdout and stderr since its last
    /// start), without terminal escapes.
    pub fn log_text(&self) -> String {
        let Some(path) = self.log_path.as_ref() else {
            return String::new();
        };
        let bytes = std::fs::read(path).unwrap_or_default();
        let from = (self.log_offset as usize).min(bytes.len());
        strip_ansi(&String::from_utf8_lossy(&bytes[from..]))
    }

    /// Waits (bounded) until the current run's log has a line containing
    /// `needle`, and returns that line. Shards recover and log on their
    /// own, so a line can appear after the broker already serves.
    pub async fn wait_log_line(&self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let log = self.log_text();
            if let Some(line) = log.lines().find(|l| l.contains(needle)) {
                return line.to_string();
            }
            if Instant::now() >= deadline {
                panic!("no line with {needle:?} in the broker log within {limit:?}; log:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The log of every run of this broker, with the harness's separators.
    pub fn full_log(&self) -> String {
        self.log_path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .map(|b| strip_ansi(&String::from_utf8_lossy(&b)))
            .unwrap_or_default()
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The broker URL with a different user/password (and same vhost).
    pub fn url_with_credentials(&self, user: &str, pass: &str) -> String {
        format!("amqp://{user}:{pass}@{}", self.host_port_path())
    }

    /// The broker URL with another vhost (given already percent-encoded).
    pub fn url_with_vhost(&self, vhost_encoded: &str) -> String {
        let hpp = self.host_port_path();
        let hp = hpp.split('/').next().unwrap().to_string();
        format!("amqp://guest:guest@{hp}/{vhost_encoded}")
    }

    /// The broker URL with extra query parameters, e.g. `heartbeat=2`.
    pub fn url_with_query(&self, query: &str) -> String {
        let base = self.url();
        if base.contains('?') {
            format!("{base}&{query}")
        } else {
            format!("{base}?{query}")
        }
    }

    fn host_port_path(&self) -> String {
        // strip scheme and userinfo
        let rest = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, r)| r);
        let rest = rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest);
        rest.split('?').next().unwrap().to_string()
    }

    /// host:port of the broker, for raw socket tests.
    pub fn addr(&self) -> String {
        let hpp = self.host_port_path();
        let hp = hpp.split('/').next().unwrap().to_string();
        if hp.contains(':') {
            hp
        } else {
            format!("{hp}:5672")
        }
    }

    pub async fn connect(&self) -> Connection {
        w!(Connection::connect(
            &self.url,
            ConnectionProperties::default()
        ))
        .unwrap_or_else(|e| panic!("connect to {}: {e:?}", self.url))
    }

    /// Open a connection and one channel on it.
    pub async fn connect_channel(&self) -> (Connection, Channel) {
        let conn = self.connect().await;
        let ch = channel(&conn).await;
        (conn, ch)
    }
}

/// Whether the broker on `port` answers the AMQP protocol header (with
/// connection.start): it accepts connections, not only the kernel's
/// listen backlog.
async fn amqp_ready(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut sock) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    if sock.write_all(b"AMQP\x00\x00\x09\x01").await.is_err() {
        return false;
    }
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_millis(500), sock.read(&mut byte)).await,
        Ok(Ok(1))
    )
}

fn parse_port(url: &str) -> Option<u16> {
    let (_, rest) = url.split_once("://")?;
    let rest = rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest);
    let hp = rest.split(['/', '?']).next()?;
    hp.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let text = self.full_log();
            if !text.trim().is_empty() {
                let tail = tail_of(&text, 8000);
                eprintln!("---- warren log (tail) ----\n{tail}\n---- end warren log ----");
            }
        }
        if let Some(log) = self.log_path.take() {
            let _ = std::fs::remove_file(&log);
        }
        if let Some(dir) = self.data_dir.take() {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

// ---------------------------------------------------------------------------
// Small helpers shared by the test files.
// ---------------------------------------------------------------------------

pub async fn channel(conn: &Connection) -> Channel {
    w!(conn.create_channel()).expect("create channel")
}

/// The AMQP reply code carried by a lapin error, if it is a protocol error.
pub fn amqp_code(err: &lapin::Error) -> Option<u16> {
    match err.kind() {
        lapin::ErrorKind::ProtocolError(e) => Some(e.get_id()),
        _ => None,
    }
}

/// Assert that `res` failed with AMQP reply code `code`.
#[track_caller]
pub fn assert_code<T: std::fmt::Debug>(res: lapin::Result<T>, code: u16) {
    match res {
        Ok(v) => panic!("expected AMQP error {code}, got Ok({v:?})"),
        Err(e) => assert_eq!(
            amqp_code(&e),
            Some(code),
            "expected AMQP error {code}, got {e:?}"
        ),
    }
}

pub fn ss(s: &str) -> ShortString {
    s.into()
}

pub fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert((*k).into(), v.clone());
    }
    t
}

pub fn lstr(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

/// Declare a plain (non-durable, non-exclusive, non-auto-delete) queue.
pub async fn declare_queue(ch: &Channel, name: &str) -> lapin::Queue {
    w!(ch.queue_declare(
        name.into(),
        QueueDeclareOptions::default(),
        FieldTable::default()
    ))
    .unwrap_or_else(|e| panic!("declare queue {name}: {e:?}"))
}

/// Passive declare; returns (message_count, consumer_count). Panics on error.
pub async fn declare_exchange(ch: &Channel, name: &str, kind: ExchangeKind) {
    w!(ch.exchange_declare(
        name.into(),
        kind.clone(),
        ExchangeDeclareOptions::default(),
        FieldTable::default()
    ))
    .unwrap_or_else(|e| panic!("declare exchange {name} ({kind:?}): {e:?}"));
}

pub async fn bind(ch: &Channel, queue: &str, exchange: &str, key: &str) {
    bind_args(ch, queue, exchange, key, FieldTable::default()).await
}

pub async fn bind_args(ch: &Channel, queue: &str, exchange: &str, key: &str, args: FieldTable) {
    w!(ch.queue_bind(
        queue.into(),
        exchange.into(),
        key.into(),
        QueueBindOptions::default(),
        args
    ))
    .unwrap_or_else(|e| panic!("bind {queue} to {exchange} with {key:?}: {e:?}"));
}

pub async fn delete_exchange(ch: &Channel, name: &str) {
    w!(ch.exchange_delete(name.into(), ExchangeDeleteOptions::default()))
        .unwrap_or_else(|e| panic!("delete exchange {name}: {e:?}"));
}

pub async fn delete_queue(ch: &Channel, name: &str) {
    w!(ch.queue_delete(name.into(), QueueDeleteOptions::default()))
        .unwrap_or_else(|e| panic!("delete queue {name}: {e:?}"));
}

pub async fn queue_counts(ch: &Channel, name: &str) -> (u32, u32) {
    let q = w!(ch.queue_declare(
        name.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default()
    ))
    .unwrap_or_else(|e| panic!("passive declare {name}: {e:?}"));
    (q.message_count(), q.consumer_count())
}

/// Passive declare on a fresh channel of `conn`; Ok(counts) or the error.
pub async fn passive_declare(conn: &Connection, name: &str) -> lapin::Result<lapin::Queue> {
    let ch = channel(conn).await;
    let res = w!(ch.queue_declare(
        name.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default()
    ));
    if res.is_ok() {
        let _ = w!(ch.close(200, "bye".into()));
    }
    res
}

/// Poll (bounded) until a passive declare of `name` fails with 404.
pub async fn wait_queue_gone(conn: &Connection, name: &str) {
    let deadline = Instant::now() + STEP;
    loop {
        match passive_declare(conn, name).await {
            Err(e) => {
                assert_eq!(
                    amqp_code(&e),
                    Some(404),
                    "queue {name}: expected 404, got {e:?}"
                );
                return;
            }
            Ok(_) => {
                assert!(
                    Instant::now() < deadline,
                    "queue {name} still exists after {STEP:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Put `ch` in confirm mode.
pub async fn confirm(ch: &Channel) {
    w!(ch.confirm_select(ConfirmSelectOptions::default())).expect("confirm.select");
}

/// Publish (no confirm wait).
pub async fn publish(ch: &Channel, exchange: &str, key: &str, body: &[u8]) {
    publish_props(ch, exchange, key, body, BasicProperties::default()).await
}

pub async fn publish_props(
    ch: &Channel,
    exchange: &str,
    key: &str,
    body: &[u8],
    props: BasicProperties,
) {
    w!(ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        body,
        props
    ))
    .unwrap_or_else(|e| panic!("publish to {exchange:?}/{key:?}: {e:?}"));
}

/// Publish on a channel in confirm mode and wait for the broker's ack: once
/// this returns, the message has been routed (and enqueued) everywhere.
pub async fn publish_confirmed(ch: &Channel, exchange: &str, key: &str, body: &[u8]) {
    publish_confirmed_props(ch, exchange, key, body, BasicProperties::default()).await
}

pub async fn publish_confirmed_props(
    ch: &Channel,
    exchange: &str,
    key: &str,
    body: &[u8],
    props: BasicProperties,
) {
    let confirm = w!(ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        body,
        props
    ))
    .unwrap_or_else(|e| panic!("publish to {exchange:?}/{key:?}: {e:?}"));
    let c = w!(confirm).unwrap_or_else(|e| panic!("confirm for {exchange:?}/{key:?}: {e:?}"));
    assert!(c.is_ack(), "publish to {exchange:?}/{key:?} was nacked");
}

/// basic.get with auto-ack.
pub async fn get_noack(ch: &Channel, queue: &str) -> Option<BasicGetMessage> {
    w!(ch.basic_get(queue.into(), BasicGetOptions { no_ack: true }))
        .unwrap_or_else(|e| panic!("basic.get {queue}: {e:?}"))
}

/// basic.get with manual ack.
pub async fn get_ack(ch: &Channel, queue: &str) -> Option<BasicGetMessage> {
    w!(ch.basic_get(queue.into(), BasicGetOptions { no_ack: false }))
        .unwrap_or_else(|e| panic!("basic.get {queue}: {e:?}"))
}

/// Drain a queue with auto-ack basic.get, returning the bodies as strings.
pub async fn drain(ch: &Channel, queue: &str) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(m) = get_noack(ch, queue).await {
        out.push(String::from_utf8_lossy(&m.delivery.data).into_owned());
        assert!(out.len() < 100_000, "queue {queue} never drains");
    }
    out
}

pub async fn consume(ch: &Channel, queue: &str, tag: &str, no_ack: bool) -> Consumer {
    w!(ch.basic_consume(
        queue.into(),
        tag.into(),
        BasicConsumeOptions {
            no_ack,
            ..Default::default()
        },
        FieldTable::default()
    ))
    .unwrap_or_else(|e| panic!("basic.consume {queue}: {e:?}"))
}

/// Watches `ch` for a broker-initiated channel.close. lapin hands the
/// close's error to the channel's consumers whenever it arrives, while a
/// synchronous call made after an asynchronous one (ack, publish) may fail
/// locally with "channel closing" and lose the reply code if the broker
/// answered fast.
pub async fn close_watcher(ch: &Channel) -> Consumer {
    let q = w!(ch.queue_declare(
        "".into(),
        QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default()
    ))
    .expect("declare watcher queue");
    consume(ch, q.name().as_str(), "", true).await
}

/// The watched channel was closed by the broker with `code`.
pub async fn expect_closed_with(watcher: &mut Consumer, code: u16) {
    match w!(watcher.next()) {
        Some(Err(e)) => assert_eq!(amqp_code(&e), Some(code), "channel closed with {e:?}"),
        other => panic!("expected the channel to close with {code}, got {other:?}"),
    }
}

/// Next delivery of `consumer` within the step timeout.
pub async fn next_delivery(consumer: &mut Consumer) -> Delivery {
    match w!(consumer.next()) {
        Some(Ok(d)) => d,
        Some(Err(e)) => panic!("consumer error: {e:?}"),
        None => panic!("consumer ended unexpectedly"),
    }
}

/// Assert that `consumer` yields nothing within `ms` milliseconds (a bounded
/// observation window; only used to check that something does NOT happen).
pub async fn assert_no_delivery(consumer: &mut Consumer, ms: u64) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(ms), consumer.next()).await {
        match item {
            Some(Ok(d)) => panic!(
                "unexpected delivery: {:?} (tag {}, redelivered {})",
                String::from_utf8_lossy(&d.data),
                d.delivery_tag,
                d.redelivered
            ),
            other => panic!("unexpected consumer event: {other:?}"),
        }
    }
}

pub fn body_str(d: &Delivery) -> String {
    String::from_utf8_lossy(&d.data).into_owned()
}

// ---------------------------------------------------------------------------
// Tests that manage the broker process themselves.
// ---------------------------------------------------------------------------

/// True (after printing a notice) when `test` cannot run because the suite
/// points at an external broker: it starts, kills and restarts its own
/// broker, or reads its data directory or log.
pub fn skip_external(test: &str) -> bool {
    if TestBroker::external() {
        eprintln!(
            "NOTICE: {test} not run: it needs a broker process of its own (restarts, \
             data directory, log), which WARREN_TEST_URL does not give"
        );
        return true;
    }
    false
}

/// A connection's stream of lapin events (connection.blocked/unblocked,
/// errors). Events are only recorded once a listener exists: create it
/// before the event can happen.
pub type Events =
    std::pin::Pin<Box<dyn futures_lite::Stream<Item = lapin::Event> + Send + 'static>>;

pub fn events(conn: &Connection) -> Events {
    Box::pin(conn.events_listener())
}

/// Waits (bounded) for connection.blocked and returns its reason.
pub async fn expect_blocked(events: &mut Events, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.next()).await {
            Err(_) => panic!("no connection.blocked within {limit:?}"),
            Ok(None) => panic!("event stream ended while waiting for connection.blocked"),
            Ok(Some(lapin::Event::ConnectionBlocked(reason))) => return reason,
            Ok(Some(lapin::Event::Error(e))) => {
                panic!("connection failed while waiting for connection.blocked: {e:?}")
            }
            Ok(Some(_)) => {}
        }
    }
}

/// Waits (bounded) for connection.unblocked.
pub async fn expect_unblocked(events: &mut Events, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.next()).await {
            Err(_) => panic!("no connection.unblocked within {limit:?}"),
            Ok(None) => panic!("event stream ended while waiting for connection.unblocked"),
            Ok(Some(lapin::Event::ConnectionUnblocked)) => return,
            Ok(Some(lapin::Event::Error(e))) => {
                panic!("connection failed while waiting for connection.unblocked: {e:?}")
            }
            Ok(Some(_)) => {}
        }
    }
}

/// Asserts that for `ms` milliseconds the connection is neither blocked nor
/// failed (a bounded observation window).
pub async fn assert_not_blocked(events: &mut Events, ms: u64) {
    let deadline = Instant::now() + Duration::from_millis(ms);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.next()).await {
            Err(_) | Ok(None) => return,
            Ok(Some(lapin::Event::ConnectionBlocked(reason))) => {
                panic!("unexpected connection.blocked ({reason:?})")
            }
            Ok(Some(lapin::Event::Error(e))) => panic!("unexpected connection error: {e:?}"),
            Ok(Some(_)) => {}
        }
    }
}
