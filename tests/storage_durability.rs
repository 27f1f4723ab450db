//! Durable storage, black-box: restarts after SIGTERM and SIGKILL, a crash
//! under confirmed load, corrupted and torn segment files, reclamation of
//! acked segments, and the disk alarm across a restart.
//!
//! What the tests hold the broker to:
//! - Durable exchanges, queues and bindings (both ends durable) and the
//!   persistent messages (delivery_mode 2) of durable queues survive a
//!   restart, in order; transient exchanges and queues, exclusive queues and
//!   transient messages do not. Messages delivered but not acked come back
//!   with redelivered=true, the others with redelivered=false.
//! - A confirm for a persistent message means it survives SIGKILL.
//! - SIGTERM exits with status 0.
//! - Data layout: `<data-dir>/msgs/<shard>/<8-digit seq>.seg` segment files
//!   of `--segment-size` bytes, message bodies stored verbatim (so a test
//!   finds a body by searching the file's bytes).
//! - Recovery reports at WARN `corrupt record in <path> at offset <n>:
//!   <reason>, skipped`, a summary `skipped <N> corrupt record(s)`, and
//!   `truncated torn tail of <path> at offset <n>`; it starts in every case.
//!
//! Every test starts, kills and restarts its own broker and reads its data
//! directory, so none can run against `WARREN_TEST_URL` (they say so and
//! return).

#[macro_use]
mod common;

use std::collections::{HashSet, VecDeque};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ExchangeDeclareOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ExchangeKind, PublisherConfirm};

const MIB: u64 = 1 << 20;

fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

fn transient() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(1)
}

async fn declare_queue_opts(ch: &Channel, name: &str, durable: bool, exclusive: bool) {
    w!(ch.queue_declare(
        name.into(),
        QueueDeclareOptions {
            durable,
            exclusive,
            ..Default::default()
        },
        FieldTable::default()
    ))
    .unwrap_or_else(|e| panic!("declare queue {name} (durable {durable}): {e:?}"));
}

async fn declare_durable_queue(ch: &Channel, name: &str) {
    declare_queue_opts(ch, name, true, false).await
}

async fn declare_exchange_opts(
    ch: &Channel,
    name: &str,
    kind: ExchangeKind,
    durable: bool,
) -> lapin::Result<()> {
    w!(ch.exchange_declare(
        name.into(),
        kind,
        ExchangeDeclareOptions {
            durable,
            ..Default::default()
        },
        FieldTable::default()
    ))
}

/// Passive exchange declare on a fresh channel of `conn`.
async fn passive_exchange(conn: &Connection, name: &str) -> lapin::Result<()> {
    let ch = channel(conn).await;
    w!(ch.exchange_declare(
        name.into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default()
    ))
}

#[track_caller]
fn assert_404<T: std::fmt::Debug>(res: lapin::Result<T>, what: &str) {
    match res {
        Ok(v) => panic!("{what}: expected 404 NOT_FOUND after the restart, got Ok({v:?})"),
        Err(e) => assert_eq!(amqp_code(&e), Some(404), "{what}: expected 404, got {e:?}"),
    }
}

/// Takes every message left in `queue` with auto-ack basic.get:
/// (body, redelivered) in queue order.
async fn drain_flags(ch: &Channel, queue: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    while let Some(m) = get_noack(ch, queue).await {
        out.push((body_str(&m.delivery), m.delivery.redelivered));
        assert!(out.len() < 100_000, "queue {queue} never drains");
    }
    out
}

/// Publishes `n` messages (`body(i)`, persistent, message_id `i`) to the
/// default exchange with routing key `queue`, keeping up to `window`
/// unconfirmed, and waits for every confirm. `ch` must be in confirm mode.
async fn publish_window(
    ch: &Channel,
    queue: &str,
    n: u64,
    window: usize,
    body: impl Fn(u64) -> Vec<u8>,
) {
    let mut inflight: VecDeque<(u64, PublisherConfirm)> = VecDeque::new();
    for i in 0..n {
        if inflight.len() >= window {
            let (j, c) = inflight.pop_front().unwrap();
            let conf = w!(c).unwrap_or_else(|e| panic!("confirm of message {j}: {e:?}"));
            assert!(conf.is_ack(), "message {j} was not acked: {conf:?}");
        }
        let c = w!(ch.basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            &body(i),
            persistent().with_message_id(i.to_string().into())
        ))
        .unwrap_or_else(|e| panic!("publish {i}: {e:?}"));
        inflight.push_back((i, c));
    }
    for (j, c) in inflight {
        let conf = w!(c).unwrap_or_else(|e| panic!("confirm of message {j}: {e:?}"));
        assert!(conf.is_ack(), "message {j} was not acked: {conf:?}");
    }
}

/// Every segment file: `<data-dir>/msgs/<shard>/*.seg`, sorted.
fn segment_files(data_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(shards) = std::fs::read_dir(data_dir.join("msgs")) else {
        return out;
    };
    for shard in shards.flatten() {
        let Ok(files) = std::fs::read_dir(shard.path()) else {
            continue;
        };
        for f in files.flatten() {
            let p = f.path();
            if p.extension().is_some_and(|e| e == "seg") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Sum of the lengths of all files under `path` (recursively).
fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    let mut total = 0;
    for e in entries.flatten() {
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            total += dir_bytes(&e.path());
        } else {
            total += meta.len();
        }
    }
    total
}

fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return Vec::new();
    }
    let first = needle[0];
    let mut out = Vec::new();
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        match hay[i..=hay.len() - needle.len()]
            .iter()
            .position(|&b| b == first)
        {
            None => break,
            Some(k) => {
                let at = i + k;
                if &hay[at..at + needle.len()] == needle {
                    out.push(at);
                }
                i = at + 1;
            }
        }
    }
    out
}

/// Waits (up to `limit`) until `body` is in the segment files exactly once;
/// the caller's `locate_body` then asserts it.
async fn wait_stored_once(data_dir: &Path, body: &[u8], limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let copies: usize = segment_files(data_dir)
            .iter()
            .filter_map(|f| std::fs::read(f).ok())
            .map(|bytes| find_all(&bytes, body).len())
            .sum();
        if copies == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The one place `body` is stored: its segment file and the offset of its
/// first byte. Panics unless it is found exactly once.
fn locate_body(data_dir: &Path, body: &[u8]) -> (PathBuf, u64) {
    let files = segment_files(data_dir);
    assert!(
        !files.is_empty(),
        "no segment files under {}/msgs/<shard>/*.seg",
        data_dir.display()
    );
    let mut hits = Vec::new();
    for f in &files {
        let bytes = std::fs::read(f).unwrap_or_else(|e| panic!("read {}: {e}", f.display()));
        for at in find_all(&bytes, body) {
            hits.push((f.clone(), at as u64));
        }
    }
    assert_eq!(
        hits.len(),
        1,
        "expected the body {:?}... stored verbatim exactly once in the segment files {files:?}, found at {hits:?}",
        String::from_utf8_lossy(&body[..body.len().min(24)])
    );
    hits.pop().unwrap()
}

/// `msgs/<shard>/<file>`: how a log line names a segment, whatever the
/// data directory's spelling.
fn segment_tail(path: &Path) -> String {
    let comps: Vec<_> = path
        .components()
        .rev()
        .take(3)
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    comps.into_iter().rev().collect::<Vec<_>>().join("/")
}

/// The number after `at offset ` in a log line.
#[track_caller]
fn offset_in(line: &str) -> u64 {
    let rest = line
        .split_once("at offset ")
        .unwrap_or_else(|| panic!("no 'at offset <n>' in {line:?}"))
        .1;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no offset number in {line:?}"))
}

// ---------------------------------------------------------------------------
// 1. Restart: durable topology and messages survive, transient ones do not.
// ---------------------------------------------------------------------------

const RESTART_MSGS: usize = 12;
/// Indexes published with delivery_mode 1; the rest are persistent.
const RESTART_TRANSIENT: [usize; 4] = [2, 5, 7, 10];

fn restart_body(i: usize) -> String {
    format!("restart-msg-{i:02}")
}

async fn restart_keeps_durable_state(crash: bool) {
    let test = if crash {
        "restart_after_sigkill_keeps_durable_state"
    } else {
        "restart_after_sigterm_keeps_durable_state"
    };
    if skip_external(test) {
        return;
    }
    let mut broker = TestBroker::start().await;
    let x = unique("dur.x");
    let q = unique("dur.q");
    let tx = unique("dur.transient-x");
    let tq = unique("dur.transient-q");
    let eq = unique("dur.exclusive-q");

    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    declare_exchange_opts(&ch, &x, ExchangeKind::Topic, true)
        .await
        .expect("declare durable topic exchange");
    declare_durable_queue(&ch, &q).await;
    bind(&ch, &q, &x, "k.#").await;
    declare_exchange_opts(&ch, &tx, ExchangeKind::Direct, false)
        .await
        .expect("declare transient exchange");
    declare_queue_opts(&ch, &tq, false, false).await;
    bind(&ch, &tq, &tx, "t").await;
    bind(&ch, &tq, &x, "k.#").await;
    declare_queue_opts(&ch, &eq, true, true).await;

    confirm(&ch).await;
    for i in 0..RESTART_MSGS {
        let props = if RESTART_TRANSIENT.contains(&i) {
            transient()
        } else {
            persistent()
        };
        publish_confirmed_props(&ch, &x, "k.msg", restart_body(i).as_bytes(), props).await;
    }
    publish_confirmed_props(&ch, &tx, "t", b"via transient exchange", persistent()).await;
    publish_confirmed_props(&ch, "", &eq, b"in the exclusive queue", persistent()).await;
    assert_eq!(queue_counts(&ch, &q).await, (RESTART_MSGS as u32, 0));
    assert_eq!(queue_counts(&ch, &tq).await.0, RESTART_MSGS as u32 + 1);
    assert_eq!(queue_counts(&ch, &eq).await.0, 1);

    // #0 goes to a consumer (prefetch 1) and #1 to basic.get; both stay
    // unacked. #2 (transient) is delivered and left unacked too, and #3 is
    // delivered and acked.
    let cch = channel(&conn).await;
    w!(cch.basic_qos(1, BasicQosOptions::default())).expect("basic.qos");
    let mut holder = consume(&cch, &q, "holder", false).await;
    let d0 = next_delivery(&mut holder).await;
    assert_eq!(body_str(&d0), restart_body(0));
    assert!(!d0.redelivered);
    let gch = channel(&conn).await;
    for i in 1..=3 {
        let m = get_ack(&gch, &q)
            .await
            .unwrap_or_else(|| panic!("basic.get of message {i}: queue empty"));
        assert_eq!(body_str(&m.delivery), restart_body(i));
        assert!(!m.delivery.redelivered);
        if i == 3 {
            w!(gch.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default()))
                .expect("ack message 3");
        }
    }
    // A round trip on the acking channel: the ack has reached the queue.
    assert_eq!(
        queue_counts(&gch, &q).await,
        (RESTART_MSGS as u32 - 4, 1),
        "ready messages and consumers before the restart"
    );

    if crash {
        let status = broker.kill();
        assert!(
            !status.success(),
            "SIGKILL should not look like a clean exit"
        );
    } else {
        broker.stop_clean();
    }
    drop((holder, cch, gch, ch, conn));
    broker.restart().await;

    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    // Durable topology is back, with its properties.
    passive_exchange(&conn, &x)
        .await
        .unwrap_or_else(|e| panic!("durable exchange {x} after the restart: {e:?}"));
    declare_exchange_opts(&ch, &x, ExchangeKind::Topic, true)
        .await
        .expect("redeclare the durable exchange with the same type");
    let ch2 = channel(&conn).await;
    assert_code(
        declare_exchange_opts(&ch2, &x, ExchangeKind::Fanout, true).await,
        406,
    );
    let ch2 = channel(&conn).await;
    assert_code(
        w!(ch2.queue_declare(
            q.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default()
        )),
        406,
    );
    // Transient things and the exclusive queue are gone.
    assert_404(passive_exchange(&conn, &tx).await, "transient exchange");
    assert_404(passive_declare(&conn, &tq).await, "transient queue");
    assert_404(passive_declare(&conn, &eq).await, "exclusive durable queue");

    // Exactly the persistent messages, in order; the unacked ones (#0, #1)
    // redelivered. #3 was acked: after SIGTERM it must be gone; after
    // SIGKILL the ack may have been lost, but then it counts as delivered.
    let unacked: Vec<(String, bool)> = vec![(restart_body(0), true), (restart_body(1), true)];
    let rest: Vec<(String, bool)> = (4..RESTART_MSGS)
        .filter(|i| !RESTART_TRANSIENT.contains(i))
        .map(|i| (restart_body(i), false))
        .collect();
    let expected: Vec<_> = unacked.iter().chain(rest.iter()).cloned().collect();
    let mut alternatives = vec![expected.clone()];
    if crash {
        let mut with_3 = unacked.clone();
        with_3.push((restart_body(3), true));
        with_3.extend(rest.iter().cloned());
        alternatives.push(with_3);
    }
    let (count, consumers) = queue_counts(&ch, &q).await;
    assert_eq!(consumers, 0, "consumers do not survive a restart");
    assert!(
        alternatives.iter().any(|a| a.len() == count as usize),
        "durable queue holds {count} messages after the restart, expected {}",
        expected.len()
    );

    // The binding survived: a publish through the durable exchange still
    // routes, and a key the binding does not match still does not.
    confirm(&ch).await;
    publish_confirmed_props(&ch, &x, "k.after", b"after the restart", persistent()).await;
    publish_confirmed_props(&ch, &x, "other.key", b"unrouted", persistent()).await;

    let got = drain_flags(&ch, &q).await;
    let mut want_any: Vec<Vec<(String, bool)>> = alternatives;
    for a in &mut want_any {
        a.push(("after the restart".to_string(), false));
    }
    assert!(
        want_any.contains(&got),
        "after the restart the durable queue gave (body, redelivered):\n{got:?}\nexpected:\n{:?}",
        want_any[0]
    );

    // A second, clean restart: what was consumed stays consumed, the
    // topology is still there.
    drop((ch, ch2, conn));
    broker.stop_clean();
    broker.restart().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    assert_eq!(
        queue_counts(&ch, &q).await,
        (0, 0),
        "messages consumed before a clean restart came back"
    );
    passive_exchange(&conn, &x)
        .await
        .expect("durable exchange after a second restart");
    confirm(&ch).await;
    publish_confirmed_props(&ch, &x, "k.again", b"again", persistent()).await;
    assert_eq!(drain(&ch, &q).await, vec!["again".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_sigterm_keeps_durable_state() {
    restart_keeps_durable_state(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_sigkill_keeps_durable_state() {
    restart_keeps_durable_state(true).await;
}

// ---------------------------------------------------------------------------
// 2. A crash under load loses no confirmed message and duplicates none.
// ---------------------------------------------------------------------------

/// Kill once this many publishes are confirmed...
const LOAD_TARGET: usize = 3000;
/// ...or after this long, provided at least `LOAD_MIN` are.
const LOAD_WAIT: Duration = Duration::from_secs(12);
const LOAD_MIN: usize = 500;
const LOAD_WINDOW: usize = 256;

fn load_body(id: u64) -> Vec<u8> {
    let mut b = format!("load-{id:010}|").into_bytes();
    while b.len() < 200 {
        b.extend_from_slice(
            format!("{:x}", id.wrapping_mul(0x9e37_79b9) ^ b.len() as u64).as_bytes(),
        );
    }
    b.truncate(200);
    b
}

/// Publishes persistent messages with ids 0, 1, ... as fast as confirms
/// allow until the connection fails; records every acked id.
async fn confirmed_publisher(
    ch: Channel,
    queue: String,
    confirmed: Arc<Mutex<Vec<u64>>>,
    published: Arc<AtomicU64>,
) -> Result<(), String> {
    let mut inflight: VecDeque<(u64, PublisherConfirm)> = VecDeque::new();
    let mut id = 0u64;
    let outcome = loop {
        if inflight.len() >= LOAD_WINDOW {
            let (i, c) = inflight.pop_front().unwrap();
            match tokio::time::timeout(Duration::from_secs(10), c).await {
                Ok(Ok(conf)) if conf.is_ack() => confirmed.lock().unwrap().push(i),
                Ok(Ok(other)) => break Err(format!("publish {i} was not acked: {other:?}")),
                Ok(Err(_)) | Err(_) => break Ok(()), // the broker is gone
            }
            continue;
        }
        published.store(id + 1, Ordering::SeqCst);
        let body = load_body(id);
        let publish = ch.basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            &body,
            persistent().with_message_id(id.to_string().into()),
        );
        match tokio::time::timeout(Duration::from_secs(10), publish).await {
            Ok(Ok(c)) => inflight.push_back((id, c)),
            _ => break Ok(()),
        }
        id += 1;
    };
    // Acks that arrived before the connection failed still count.
    for (i, c) in inflight {
        if let Ok(Ok(conf)) = tokio::time::timeout(Duration::from_secs(1), c).await {
            if conf.is_ack() {
                confirmed.lock().unwrap().push(i);
            }
        }
    }
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_under_load_keeps_every_confirmed_message_once() {
    if skip_external("crash_under_load_keeps_every_confirmed_message_once") {
        return;
    }
    let mut broker = TestBroker::start().await;
    let q = unique("dur.load");
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    declare_durable_queue(&ch, &q).await;
    confirm(&ch).await;

    let confirmed = Arc::new(Mutex::new(Vec::new()));
    let published = Arc::new(AtomicU64::new(0));
    let publisher = tokio::spawn(confirmed_publisher(
        ch.clone(),
        q.clone(),
        confirmed.clone(),
        published.clone(),
    ));
    let started = Instant::now();
    loop {
        let n = confirmed.lock().unwrap().len();
        if n >= LOAD_TARGET {
            break;
        }
        if publisher.is_finished() {
            let outcome = publisher.await;
            panic!("the publisher stopped before the kill after {n} confirms: {outcome:?}");
        }
        if started.elapsed() >= LOAD_WAIT {
            assert!(
                n >= LOAD_MIN,
                "only {n} persistent publishes confirmed in {LOAD_WAIT:?}"
            );
            eprintln!("NOTICE: only {n} confirms in {LOAD_WAIT:?}; killing the broker now");
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Mid-stream: the publisher is still sending.
    let kill_status = broker.kill();
    eprintln!(
        "killed the broker ({kill_status}) after {:?} with {} confirms",
        started.elapsed(),
        confirmed.lock().unwrap().len()
    );
    match tokio::time::timeout(Duration::from_secs(15), publisher).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => panic!("publisher: {e}"),
        Ok(Err(e)) => panic!("publisher task: {e:?}"),
        Err(_) => eprintln!("NOTICE: the publisher did not notice the kill within 15s"),
    }
    let confirmed: Vec<u64> = confirmed.lock().unwrap().clone();
    let published = published.load(Ordering::SeqCst);
    drop((ch, conn));

    broker.restart().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    let (count, _) = queue_counts(&ch, &q).await;
    eprintln!(
        "published {published}, confirmed {}, recovered {count}",
        confirmed.len()
    );
    let mut consumer = consume(&ch, &q, "", true).await;
    let mut ids = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let d = next_delivery(&mut consumer).await;
        let id_prop = d
            .properties
            .message_id()
            .as_ref()
            .unwrap_or_else(|| panic!("recovered message without message_id: {:?}", body_str(&d)))
            .as_str()
            .to_string();
        let id: u64 = id_prop.parse().expect("numeric message_id");
        assert_eq!(d.data, load_body(id), "body of message {id} changed");
        assert_eq!(
            d.properties.delivery_mode(),
            &Some(2),
            "message {id} lost its delivery_mode"
        );
        assert!(!d.redelivered, "message {id} was never delivered before");
        ids.push(id);
    }
    assert_no_delivery(&mut consumer, 300).await;

    let mut seen = HashSet::new();
    let dups: Vec<u64> = ids.iter().copied().filter(|i| !seen.insert(*i)).collect();
    assert!(dups.is_empty(), "ids recovered twice: {dups:?}");
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "recovered messages are out of publish order"
    );
    if let Some(bad) = ids.iter().find(|&&i| i >= published) {
        panic!("recovered id {bad} was never published (published {published})");
    }
    let lost: Vec<u64> = confirmed
        .iter()
        .copied()
        .filter(|i| !seen.contains(i))
        .collect();
    assert!(
        lost.is_empty(),
        "{} confirmed messages were lost in the crash, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
    assert!(count as usize >= confirmed.len());
}

// ---------------------------------------------------------------------------
// 3. Corruption: a flipped byte and a torn tail.
// ---------------------------------------------------------------------------

const PROBES: u64 = 300;

fn probe_body(i: u64) -> Vec<u8> {
    let mut b = format!("probe-{i:05}|").into_bytes();
    let fill = format!("{i:05}-abcdefghijklmnopqrstuvwxyz-");
    while b.len() < 600 {
        b.extend_from_slice(fill.as_bytes());
    }
    b.truncate(600);
    b
}

/// A 1 MiB-segment broker holding `PROBES` persistent probe messages in a
/// durable queue, killed (SIGKILL) once they are all confirmed.
async fn probes_then_crash() -> (TestBroker, String) {
    let mut broker = TestBroker::start_with(&["--segment-size", "1MiB"]).await;
    let q = unique("dur.probe");
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    declare_durable_queue(&ch, &q).await;
    confirm(&ch).await;
    publish_window(&ch, &q, PROBES, 64, probe_body).await;
    assert_eq!(queue_counts(&ch, &q).await.0, PROBES as u32);
    broker.kill();
    drop((ch, conn));
    (broker, q)
}

/// The lowest offset at which probe `i`'s record can start in `seg`: the
/// end of probe `i - 1`'s body when that is in the same file, else 0.
fn record_start_low(data_dir: &Path, seg: &Path, i: u64) -> u64 {
    if i == 0 {
        return 0;
    }
    let prev = probe_body(i - 1);
    let (prev_seg, prev_pos) = locate_body(data_dir, &prev);
    if prev_seg == seg {
        prev_pos + prev.len() as u64
    } else {
        0
    }
}

async fn drain_bodies(ch: &Channel, queue: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(m) = get_noack(ch, queue).await {
        assert!(
            !m.delivery.redelivered,
            "a never-delivered message came back redelivered"
        );
        out.push(m.delivery.data);
        assert!(out.len() < 100_000, "queue {queue} never drains");
    }
    out
}

fn describe_bodies(bodies: &[Vec<u8>]) -> Vec<String> {
    bodies
        .iter()
        .map(|b| String::from_utf8_lossy(&b[..b.len().min(12)]).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_record_is_skipped_and_reported() {
    if skip_external("corrupt_record_is_skipped_and_reported") {
        return;
    }
    let (mut broker, q) = probes_then_crash().await;
    let victim = PROBES / 2;
    let body = probe_body(victim);
    let (seg, pos) = locate_body(broker.data_dir(), &body);
    let low = record_start_low(broker.data_dir(), &seg, victim);
    let seg_len = std::fs::metadata(&seg).unwrap().len();
    assert!(
        pos > 0 && pos + (body.len() as u64) < seg_len,
        "message {victim} is not inside {} (at {pos}, file {seg_len} bytes)",
        seg.display()
    );
    // Flip one byte in the middle of the body.
    let at = pos + body.len() as u64 / 2;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg)
        .unwrap();
    let mut byte = [0u8; 1];
    f.read_exact_at(&mut byte, at).unwrap();
    f.write_all_at(&[byte[0] ^ 0xff], at).unwrap();
    f.sync_all().unwrap();
    drop(f);

    broker.restart().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    assert_eq!(
        queue_counts(&ch, &q).await.0,
        PROBES as u32 - 1,
        "messages after recovering a corrupt record"
    );
    let got = drain_bodies(&ch, &q).await;
    let want: Vec<Vec<u8>> = (0..PROBES)
        .filter(|&i| i != victim)
        .map(probe_body)
        .collect();
    assert!(
        got == want,
        "after the corruption the queue gave {} messages: {:?}",
        got.len(),
        describe_bodies(&got)
    );

    let line = broker
        .wait_log_line("corrupt record in ", Duration::from_secs(10))
        .await;
    broker
        .wait_log_line("skipped 1 corrupt record(s)", Duration::from_secs(10))
        .await;
    let tail = segment_tail(&seg);
    assert!(
        line.contains(&tail),
        "the corrupt-record line does not name {tail}: {line}"
    );
    let offset = offset_in(&line);
    assert!(
        (low..=pos).contains(&offset),
        "the corrupt record's offset {offset} is not where message {victim}'s record can \
         start (after the previous body, at {low}, and at most its own body, at {pos}): {line}"
    );
    assert!(line.contains("skipped"), "{line}");
    let log = broker.log_text();
    assert_eq!(
        log.matches("corrupt record in ").count(),
        1,
        "one byte flipped, one corrupt record:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_is_truncated_and_the_log_goes_on() {
    if skip_external("torn_tail_is_truncated_and_the_log_goes_on") {
        return;
    }
    let (mut broker, q) = probes_then_crash().await;
    let last = PROBES - 1;
    let body = probe_body(last);
    let (seg, pos) = locate_body(broker.data_dir(), &body);
    let low = record_start_low(broker.data_dir(), &seg, last);
    // Cut the file in the middle of the last message's body, as a crash
    // during its write could.
    let cut = pos + body.len() as u64 / 2;
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(cut).unwrap();
    f.sync_all().unwrap();
    drop(f);

    broker.restart().await;
    let line = broker
        .wait_log_line("truncated torn tail of ", Duration::from_secs(10))
        .await;
    let tail = segment_tail(&seg);
    assert!(
        line.contains(&tail),
        "the torn-tail line does not name {tail}: {line}"
    );
    let offset = offset_in(&line);
    assert!(
        (low..=pos).contains(&offset),
        "the torn tail's offset {offset} is not where message {last}'s record can start \
         (after the previous body, at {low}, and at most its own body, at {pos}): {line}"
    );
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    assert_eq!(queue_counts(&ch, &q).await.0, PROBES as u32 - 1);
    let log = broker.log_text();
    assert!(
        !log.contains("corrupt record in "),
        "a torn tail was reported as a corrupt record:\n{log}"
    );
    // The log accepts new records after the cut, and they survive a crash.
    confirm(&ch).await;
    publish_confirmed_props(&ch, "", &q, b"after-the-torn-tail", persistent()).await;
    broker.kill();
    drop((ch, conn));
    broker.restart().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    let got = drain_bodies(&ch, &q).await;
    let mut want: Vec<Vec<u8>> = (0..last).map(probe_body).collect();
    want.push(b"after-the-torn-tail".to_vec());
    assert!(
        got == want,
        "after the torn tail the queue gave {} messages: {:?}",
        got.len(),
        describe_bodies(&got)
    );
}

// ---------------------------------------------------------------------------
// 4. Reclamation: acked segments give their space back.
// ---------------------------------------------------------------------------

const RECLAIM_MSG: usize = 4096;
const RECLAIM_COUNT: u64 = 4096; // 16 MiB of bodies

fn reclaim_body(i: u64) -> Vec<u8> {
    let mut b = format!("reclaim-{i:06}|").into_bytes();
    b.resize(RECLAIM_MSG, b'a' + (i % 26) as u8);
    b
}

/// Polls (bounded) until `msgs` uses at most `limit` bytes; returns the
/// last figure.
async fn wait_disk_at_most(msgs: &Path, limit: u64, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let used = dir_bytes(msgs);
        if used <= limit || Instant::now() >= deadline {
            return used;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_segments_are_reclaimed() {
    if skip_external("acked_segments_are_reclaimed") {
        return;
    }
    let broker = TestBroker::start_with(&["--segment-size", "1MiB"]).await;
    let msgs = broker.data_dir().join("msgs");
    let q = unique("dur.reclaim");
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    declare_durable_queue(&ch, &q).await;
    confirm(&ch).await;
    publish_window(&ch, &q, RECLAIM_COUNT, 256, reclaim_body).await;
    let full = dir_bytes(&msgs);
    let bodies = RECLAIM_COUNT * RECLAIM_MSG as u64;
    eprintln!("msgs after publishing {bodies} body bytes: {full} bytes");
    assert!(
        full >= bodies,
        "{full} bytes under msgs/ cannot hold {bodies} bytes of persistent bodies"
    );

    // Which shard directory holds the queue: its bodies are there.
    let (first_seg, _) = locate_body(broker.data_dir(), &reclaim_body(0));
    let queue_dir = first_seg.parent().unwrap().to_path_buf();
    let shard_dirs = std::fs::read_dir(&msgs)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .count() as u64;
    // The queue's shard keeps the segment with the held messages, its
    // active segment and maybe one preallocated; every other shard may
    // keep an active segment of its own.
    let queue_limit = 4 * MIB;
    let total_limit = queue_limit + shard_dirs.saturating_sub(1) * MIB;

    // Hold the first three, unacked, on a channel that stays open.
    let hold = channel(&conn).await;
    let mut held = Vec::new();
    for i in 0..3 {
        let m = get_ack(&hold, &q)
            .await
            .unwrap_or_else(|| panic!("basic.get {i}: queue empty"));
        assert_eq!(m.delivery.data, reclaim_body(i), "held message {i}");
        held.push(m.delivery.delivery_tag);
    }
    // Consume and ack all the rest.
    let cch = channel(&conn).await;
    w!(cch.basic_qos(512, BasicQosOptions::default())).expect("basic.qos");
    let mut consumer = w!(cch.basic_consume(
        q.as_str().into(),
        "reclaimer".into(),
        BasicConsumeOptions::default(),
        FieldTable::default()
    ))
    .expect("basic.consume");
    for i in 3..RECLAIM_COUNT {
        let d = next_delivery(&mut consumer).await;
        assert!(
            d.data == reclaim_body(i),
            "message {i} out of order or damaged"
        );
        if i % 64 == 63 || i == RECLAIM_COUNT - 1 {
            w!(cch.basic_ack(d.delivery_tag, BasicAckOptions { multiple: true }))
                .expect("ack multiple");
        }
    }
    assert_no_delivery(&mut consumer, 200).await;
    // The acks have reached the queue: nothing ready, one consumer.
    assert_eq!(queue_counts(&cch, &q).await, (0, 1));

    let used = wait_disk_at_most(&msgs, total_limit, Duration::from_secs(15)).await;
    let queue_used = dir_bytes(&queue_dir);
    eprintln!(
        "msgs with 3 messages held: {used} bytes (queue's shard {queue_used}); limit {total_limit}"
    );
    assert!(
        used <= total_limit,
        "acked segments not reclaimed within 15s: {used} bytes under msgs/ \
         (was {full}, limit {total_limit}); files: {:?}",
        segment_files(broker.data_dir())
    );
    assert!(
        queue_used <= queue_limit,
        "the queue's shard still uses {queue_used} bytes (limit {queue_limit})"
    );
    // The held messages are still stored (once each). Compaction may be
    // between copying them forward and deleting their old segment (it
    // deletes once the copies are synced): wait for that to finish.
    for i in 0..3 {
        wait_stored_once(broker.data_dir(), &reclaim_body(i), Duration::from_secs(5)).await;
        locate_body(broker.data_dir(), &reclaim_body(i));
    }

    // Ack the held ones too: use stays low.
    w!(hold.basic_ack(*held.last().unwrap(), BasicAckOptions { multiple: true }))
        .expect("ack the held messages");
    assert_eq!(queue_counts(&hold, &q).await, (0, 1));
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut last = 0;
    while Instant::now() < deadline {
        last = dir_bytes(&msgs);
        assert!(
            last <= total_limit,
            "disk use grew back to {last} bytes after acking everything"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("msgs after acking everything: {last} bytes");
}

// ---------------------------------------------------------------------------
// 5. The disk alarm across a restart.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_alarm_blocks_publishers_but_durable_messages_still_flow() {
    if skip_external("disk_alarm_blocks_publishers_but_durable_messages_still_flow") {
        return;
    }
    // Run 1, with the default limit (50MB): nothing is blocked.
    let mut broker = TestBroker::start().await;
    let free = warren::alarm::free_bytes(broker.data_dir()).expect("statvfs of the data dir");
    if free < 1 << 30 {
        eprintln!("NOTICE: only {free} bytes free; the default-limit half of this test is skipped");
    }
    let q = unique("dur.alarm");
    {
        let conn = broker.connect().await;
        let mut ev = events(&conn);
        let ch = channel(&conn).await;
        declare_durable_queue(&ch, &q).await;
        confirm(&ch).await;
        for i in 0..5 {
            publish_confirmed_props(&ch, "", &q, format!("stored-{i}").as_bytes(), persistent())
                .await;
        }
        if free >= 1 << 30 {
            // Longer than the alarm's check interval.
            assert_not_blocked(&mut ev, 1500).await;
            assert!(!conn.status().blocked());
            publish_confirmed_props(&ch, "", &q, b"stored-5", persistent()).await;
            assert!(!broker.log_text().contains("alarm set"));
        } else {
            publish_confirmed_props(&ch, "", &q, b"stored-5", persistent()).await;
        }
    }
    broker.stop_clean();

    // Run 2: no file system has 1000TB free, so the alarm is set from the
    // start.
    broker.restart_with(&["--disk-free-limit", "1000TB"]).await;
    broker
        .wait_log_line("disk resource limit alarm set", Duration::from_secs(5))
        .await;

    let cconn = broker.connect().await;
    let mut cev = events(&cconn);
    let cch = channel(&cconn).await;
    let mut consumer = consume(&cch, &q, "drain", false).await;
    for i in 0..6 {
        let d = next_delivery(&mut consumer).await;
        assert_eq!(body_str(&d), format!("stored-{i}"));
        assert!(!d.redelivered);
        w!(d.ack(BasicAckOptions::default())).expect("ack");
    }

    let pconn = broker.connect().await;
    let mut pev = events(&pconn);
    let pch = channel(&pconn).await;
    publish_props(&pch, "", &q, b"while low on disk", persistent()).await;
    let reason = expect_blocked(&mut pev, Duration::from_secs(5)).await;
    assert!(
        reason.contains("disk"),
        "connection.blocked reason {reason:?}"
    );
    assert!(pconn.status().blocked());

    // The consumer connection is not blocked and is still served.
    assert_not_blocked(&mut cev, 500).await;
    let (_, consumers) = queue_counts(&cch, &q).await;
    assert_eq!(consumers, 1);
    let other = unique("dur.alarm-side");
    declare_queue(&cch, &other).await;
    assert!(get_noack(&cch, &other).await.is_none());
    drop(consumer);
}

// ---------------------------------------------------------------------------
// The harness itself (these need no storage).
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_restarts_on_the_same_data_dir() {
    if skip_external("harness_restarts_on_the_same_data_dir") {
        return;
    }
    let mut broker = TestBroker::start_with(&["--segment-size", "1MiB"]).await;
    let dir = broker.data_dir().to_path_buf();
    let first_url = broker.url();
    let first_pid = broker.pid();
    assert!(broker.is_running());
    {
        let (_conn, ch) = broker.connect_channel().await;
        declare_queue(&ch, &unique("harness")).await;
    }
    let status = broker.kill();
    assert!(!status.success(), "{status}");
    assert!(!broker.is_running());
    broker.restart().await;
    assert!(broker.is_running());
    assert_ne!(broker.pid(), first_pid);
    assert_eq!(broker.data_dir(), dir.as_path());
    assert!(dir.is_dir());
    let log = broker.log_text();
    assert!(
        !log.contains("run 1 of"),
        "log_text shows only the current run:\n{log}"
    );
    let full = broker.full_log();
    assert!(
        full.contains("run 1 of") && full.contains("run 2 of"),
        "{full}"
    );
    assert!(full.contains("--segment-size 1MiB"), "{full}");
    // The new URL works (the port may have changed).
    let conn = broker.connect().await;
    assert!(conn.status().connected());
    eprintln!("first url {first_url}, now {}", broker.url());
    drop(conn);
    // restart_with replaces the extra arguments.
    broker.kill();
    broker.restart_with(&["--disk-free-limit", "1000TB"]).await;
    let full = broker.full_log();
    let run3 = full.split("run 3 of").nth(1).expect("a third run");
    assert!(
        run3.contains("--disk-free-limit 1000TB")
            && !run3.lines().next().unwrap().contains("--segment-size")
    );
    broker.kill();
}

#[test]
fn harness_helpers() {
    assert_eq!(find_all(b"abcabcab", b"ab"), vec![0, 3, 6]);
    assert_eq!(find_all(b"aaaa", b"aa"), vec![0, 1, 2]);
    assert!(find_all(b"ab", b"abc").is_empty());
    assert_eq!(
        strip_ansi("\u{1b}[2m2026\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m corrupt record in /d/msgs/0/00000001.seg at offset 4096: crc, skipped"),
        "2026  WARN corrupt record in /d/msgs/0/00000001.seg at offset 4096: crc, skipped"
    );
    assert_eq!(
        offset_in("WARN x: truncated torn tail of /d/msgs/2/00000000.seg at offset 123456"),
        123456
    );
    assert_eq!(
        segment_tail(Path::new("/tmp/w/msgs/2/00000007.seg")),
        "msgs/2/00000007.seg"
    );

    // A fake data dir: bodies found in segment files, sizes summed.
    let dir = std::env::temp_dir().join(unique("warren-harness-selftest"));
    let shard = dir.join("msgs").join("1");
    std::fs::create_dir_all(&shard).unwrap();
    let mut seg = vec![0u8; 4096];
    let body = probe_body(7);
    seg[1000..1000 + body.len()].copy_from_slice(&body);
    std::fs::write(shard.join("00000000.seg"), &seg).unwrap();
    std::fs::write(shard.join("00000001.seg"), vec![0u8; 100]).unwrap();
    std::fs::write(dir.join("definitions.wlog"), b"defs").unwrap();
    assert_eq!(locate_body(&dir, &body), (shard.join("00000000.seg"), 1000));
    assert_eq!(segment_files(&dir).len(), 2);
    assert_eq!(dir_bytes(&dir.join("msgs")), 4196);
    assert_eq!(dir_bytes(&dir), 4200);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The panic policy: a panic (here a failpoint's) stops the broker at once
/// with status 70 and one clear log line, instead of serving on from state
/// a half-done change may have left; a restart recovers everything
/// confirmed from disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_stops_the_broker_and_a_restart_recovers() {
    if skip_external("a_panic_stops_the_broker_and_a_restart_recovers") {
        return;
    }
    let boom = unique("boom");
    let mut broker =
        TestBroker::start_with(&["--failpoint-panic-on-queue", &boom, "--log", "info"]).await;
    let q = unique("survivor");
    {
        let (_conn, ch) = broker.connect_channel().await;
        declare_durable_queue(&ch, &q).await;
        confirm(&ch).await;
        w!(ch.basic_publish(
            "".into(),
            q.as_str().into(),
            Default::default(),
            b"kept",
            persistent()
        ))
        .expect("publish")
        .await
        .expect("confirm");
        let res = within(
            Duration::from_secs(10),
            ch.queue_declare(
                boom.as_str().into(),
                Default::default(),
                FieldTable::default(),
            ),
        )
        .await;
        assert!(res.is_err(), "the panicking declare answered {res:?}");
    }
    let status = broker.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(70),
        "exit status after a panic; log:\n{}",
        broker.log_text()
    );
    let log = broker.log_text();
    assert!(
        log.contains("internal error") && log.contains("panicked") && log.contains("failpoint"),
        "no clear log line for the panic:\n{log}"
    );
    broker.restart_with(&[]).await;
    let (_conn, ch) = broker.connect_channel().await;
    assert_eq!(drain(&ch, &q).await, vec!["kept".to_string()]);
}
