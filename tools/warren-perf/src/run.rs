//! The load run: topology setup, producer and consumer threads, the
//! per-second progress line and the result (stdout and JSON).

use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use serde_json::json;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};
use warren::codec::{
    encode_content, encode_method, BasicConsume, BasicProperties, BasicPublish, BasicQos,
    ConfirmSelect, ExchangeDeclare, ExchangeDelete, FieldTable, FieldValue, Method, QueueBind,
    QueueDeclare, QueueDelete, QueuePurge, ShortStr,
};

use crate::client::{close_error, decode_whole, method_ids, Conn, FrameBuf, Result, READ_BUF};
use crate::{fatal, now_ns, schedule, ExchangeType, RunArgs};

pub(crate) static SENT: AtomicU64 = AtomicU64::new(0);
static CONFIRMED: AtomicU64 = AtomicU64::new(0);
static NACKED: AtomicU64 = AtomicU64::new(0);
pub(crate) static RECEIVED: AtomicU64 = AtomicU64::new(0);

pub(crate) const CH: u16 = 1;

pub(crate) fn queue_name(args: &RunArgs, i: usize) -> String {
    args.queue_pattern.replace("%d", &i.to_string())
}

fn routing_key(args: &RunArgs) -> String {
    if let Some(k) = &args.routing_key {
        return k.clone();
    }
    match args.exchange_type {
        ExchangeType::Topic => "perf.data.key".into(),
        ExchangeType::Direct => "perf-key".into(),
        _ => String::new(),
    }
}

fn headers_match(v: &str) -> FieldTable {
    let mut t = FieldTable::new();
    t.insert("x-match", FieldValue::LongStr(Bytes::from_static(b"all")));
    t.insert(
        "perf",
        FieldValue::LongStr(Bytes::copy_from_slice(v.as_bytes())),
    );
    t
}

/// The bindings for a named exchange: (queue index, binding key, arguments).
fn bindings(args: &RunArgs) -> Vec<(usize, String, FieldTable)> {
    let q = args.queues.max(1);
    let rk = routing_key(args);
    let total = args.bindings.max(q);
    let mut out = Vec::with_capacity(total);
    for i in 0..total {
        let queue = i % q;
        let matching = i < q;
        let (key, a) = match args.exchange_type {
            ExchangeType::Fanout => (String::new(), FieldTable::new()),
            ExchangeType::Direct if matching => (rk.clone(), FieldTable::new()),
            ExchangeType::Direct => (format!("nomatch-{i}"), FieldTable::new()),
            ExchangeType::Topic if matching => {
                // One wildcard pattern matching the published key's shape.
                let words: Vec<&str> = rk.split('.').collect();
                let pat = if words.len() >= 2 {
                    let mut w = words.clone();
                    w[1] = "*";
                    w.join(".")
                } else {
                    "#".into()
                };
                (pat, FieldTable::new())
            }
            ExchangeType::Topic => {
                let p = match i % 3 {
                    0 => format!("nomatch{i}.*.key"),
                    1 => format!("nomatch{i}.#"),
                    _ => format!("*.nomatch{i}.key"),
                };
                (p, FieldTable::new())
            }
            ExchangeType::Headers if matching => (String::new(), headers_match("yes")),
            ExchangeType::Headers => (String::new(), headers_match(&format!("no-{i}"))),
        };
        if args.exchange_type == ExchangeType::Fanout && !matching {
            break;
        }
        out.push((queue, key, a));
    }
    out
}

fn declares_exchange(args: &RunArgs) -> bool {
    !args.exchange.is_empty() && !args.exchange.starts_with("amq.")
}

/// Sends `methods` pipelined in chunks and waits for as many replies.
fn pipelined(
    admin: &mut Conn,
    methods: Vec<Method>,
    want: impl Fn(&Method) -> bool + Copy,
    what: &str,
) -> Result<()> {
    for chunk in methods.chunks(500) {
        admin.send_methods(chunk.iter().map(|m| (CH, m)))?;
        for _ in chunk {
            admin.expect(CH, want, what)?;
        }
    }
    Ok(())
}

fn setup(admin: &mut Conn, args: &RunArgs) -> Result<()> {
    if declares_exchange(args) {
        admin.rpc(
            CH,
            &Method::ExchangeDeclare(ExchangeDeclare {
                exchange: args.exchange.as_str().into(),
                kind: ShortStr::from_static(args.exchange_type.name()),
                durable: args.persistent,
                ..Default::default()
            }),
            |m| matches!(m, Method::ExchangeDeclareOk(_)),
            "exchange.declare-ok",
        )?;
    }
    let queues: Vec<String> = (0..args.queues).map(|i| queue_name(args, i)).collect();
    let mut arguments = FieldTable::default();
    for kv in &args.queue_args {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let value = match v.parse::<i64>() {
            Ok(n) => FieldValue::I64(n),
            Err(_) => FieldValue::from(v),
        };
        arguments.insert(k, value);
    }
    let mut declares: Vec<Method> = Vec::new();
    if let Some(dlq) = &args.dead_letter_queue {
        arguments.insert("x-dead-letter-exchange", FieldValue::from(""));
        arguments.insert("x-dead-letter-routing-key", FieldValue::from(dlq.as_str()));
        let mut limit = FieldTable::default();
        limit.insert("x-max-length", FieldValue::I64(100_000));
        declares.push(Method::QueueDeclare(QueueDeclare {
            queue: dlq.as_str().into(),
            durable: args.persistent,
            arguments: limit,
            ..Default::default()
        }));
    }
    declares.extend(queues.iter().map(|q| {
        Method::QueueDeclare(QueueDeclare {
            queue: q.as_str().into(),
            durable: args.persistent,
            arguments: arguments.clone(),
            ..Default::default()
        })
    }));
    pipelined(
        admin,
        declares,
        |m| matches!(m, Method::QueueDeclareOk(_)),
        "queue.declare-ok",
    )?;
    if !args.exchange.is_empty() {
        let binds = bindings(args)
            .into_iter()
            .map(|(q, key, a)| {
                Method::QueueBind(QueueBind {
                    queue: queues[q].as_str().into(),
                    exchange: args.exchange.as_str().into(),
                    routing_key: key.into(),
                    no_wait: false,
                    arguments: a,
                })
            })
            .collect();
        pipelined(
            admin,
            binds,
            |m| matches!(m, Method::QueueBindOk(_)),
            "queue.bind-ok",
        )?;
    }
    if args.no_purge {
        return Ok(());
    }
    let purges = queues
        .iter()
        .map(|q| {
            Method::QueuePurge(QueuePurge {
                queue: q.as_str().into(),
                no_wait: false,
            })
        })
        .collect();
    pipelined(
        admin,
        purges,
        |m| matches!(m, Method::QueuePurgeOk(_)),
        "queue.purge-ok",
    )
}

pub(crate) fn cleanup(admin: &mut Conn, args: &RunArgs) -> Result<()> {
    let deletes = (0..args.queues)
        .map(|i| queue_name(args, i))
        .chain(args.dead_letter_queue.clone())
        .map(|queue| {
            Method::QueueDelete(QueueDelete {
                queue: queue.into(),
                ..Default::default()
            })
        })
        .collect();
    pipelined(
        admin,
        deletes,
        |m| matches!(m, Method::QueueDeleteOk(_)),
        "queue.delete-ok",
    )?;
    if declares_exchange(args) {
        admin.rpc(
            CH,
            &Method::ExchangeDelete(ExchangeDelete {
                exchange: args.exchange.as_str().into(),
                if_unused: false,
                no_wait: false,
            }),
            |m| matches!(m, Method::ExchangeDeleteOk(_)),
            "exchange.delete-ok",
        )?;
    }
    Ok(())
}

/// One pre-encoded publish (method, header and body frames) and where the
/// timestamp goes in it.
pub(crate) struct Template {
    pub bytes: Vec<u8>,
    pub ts_at: Option<usize>,
}

pub(crate) fn template(args: &RunArgs, queue: &str, frame_max: u32) -> Template {
    let (exchange, key) = if args.exchange.is_empty() {
        (String::new(), queue.to_string())
    } else {
        (args.exchange.clone(), routing_key(args))
    };
    let mut props = BasicProperties::default();
    if args.persistent {
        props.delivery_mode = Some(2);
    }
    if args.exchange_type == ExchangeType::Headers && !args.exchange.is_empty() {
        props.headers = Some(
            [("perf", FieldValue::LongStr(Bytes::from_static(b"yes")))]
                .into_iter()
                .collect(),
        );
    }
    let mut out = BytesMut::new();
    encode_method(
        &mut out,
        CH,
        &Method::BasicPublish(BasicPublish {
            exchange: exchange.into(),
            routing_key: key.into(),
            mandatory: false,
            immediate: false,
        }),
    );
    let body = vec![0x5Au8; args.size];
    let before = out.len();
    encode_content(
        &mut out,
        CH,
        body.len() as u64,
        &props.to_raw(),
        &body,
        frame_max,
    );
    // Header frame: 7 + 12 + properties + 1; the body frame's payload
    // starts 7 bytes after that.
    let header_size = u32::from_be_bytes(out[before + 3..before + 7].try_into().unwrap()) as usize;
    let body_at = before + 7 + header_size + 1 + 7;
    Template {
        bytes: out.to_vec(),
        ts_at: (args.size >= 8).then_some(body_at),
    }
}

/// Writes `buf` entirely; false if the run was stopped while the broker was
/// not reading (the connection is then abandoned mid-frame).
fn write_stoppable(conn: &mut Conn, buf: &[u8], stop: &AtomicBool) -> io::Result<bool> {
    let mut off = 0;
    while off < buf.len() {
        match conn.stream.write(&buf[off..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => off += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Relaxed) {
                    return Ok(false);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// State shared by a producer and its reader thread.
struct Confirms {
    settled: AtomicU64,
    closing: AtomicBool,
    producer: thread::Thread,
}

/// Reads what the broker sends a producer connection: confirms (acks and
/// nacks, `multiple` included), errors and the final close-ok.
fn producer_reader(mut stream: crate::stream::Stream, shared: Arc<Confirms>, name: String) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut rb = FrameBuf::new(256 * 1024);
    // pending[i] = sequence number base+i is settled; the front is the
    // oldest unsettled one.
    let mut pending: std::collections::VecDeque<bool> = Default::default();
    let mut base = 1u64;
    let mut closing_since: Option<Instant> = None;
    loop {
        match rb.fill(&mut stream) {
            Ok(0) => {
                if shared.closing.load(Relaxed) {
                    return;
                }
                fatal(&name, "broker closed the TCP connection");
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if shared.closing.load(Relaxed) {
                    let since = *closing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_secs(3) {
                        return;
                    }
                }
                continue;
            }
            Err(e) => {
                if shared.closing.load(Relaxed) {
                    return;
                }
                fatal(&name, e)
            }
        }
        let mut settled = 0u64;
        let mut nacked = 0u64;
        loop {
            let f = match rb.poll_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => fatal(&name, e),
            };
            if f.kind != 1 {
                continue; // returned content, heartbeats
            }
            let p = &rb.buf[f.payload.clone()];
            let ids = method_ids(p);
            if (ids == (60, 80) || ids == (60, 120)) && p.len() >= 13 {
                let tag = u64::from_be_bytes(p[4..12].try_into().unwrap());
                let multiple = p[12] & 1 != 0;
                let mut n = 0;
                if multiple {
                    while base <= tag {
                        if !pending.pop_front().unwrap_or(false) {
                            n += 1;
                        }
                        base += 1;
                    }
                } else if tag >= base {
                    let i = (tag - base) as usize;
                    if pending.len() <= i {
                        pending.resize(i + 1, false);
                    }
                    if !pending[i] {
                        pending[i] = true;
                        n += 1;
                    }
                    while pending.front() == Some(&true) {
                        pending.pop_front();
                        base += 1;
                    }
                }
                settled += n;
                if ids.1 == 120 {
                    nacked += n;
                }
                continue;
            }
            match decode_whole(&rb.buf[f.whole.clone()]) {
                Ok(warren::codec::Frame::Method { channel, method }) => {
                    if matches!(method, Method::ConnectionCloseOk(_)) {
                        return;
                    }
                    if let Some(e) = close_error(channel, &method) {
                        fatal(&name, e);
                    }
                }
                Ok(_) => {}
                Err(e) => fatal(&name, e),
            }
        }
        if settled > 0 {
            shared.settled.fetch_add(settled, Release);
            CONFIRMED.fetch_add(settled - nacked, Relaxed);
            NACKED.fetch_add(nacked, Relaxed);
            shared.producer.unpark();
        }
    }
}

struct ProducerResult {
    sent: u64,
    elapsed: Duration,
}

/// A producer's connection and channel (confirm mode if asked for) and
/// its publish template.
pub(crate) fn producer_conn(
    idx: usize,
    args: &RunArgs,
    read_buf: usize,
) -> Result<(Conn, Template)> {
    let name = format!("producer {idx}");
    let queue = queue_name(args, idx % args.queues.max(1));
    let mut c = Conn::connect_with(&args.uri, &name, read_buf)?;
    c.open_channel(CH)?;
    if args.confirm > 0 {
        c.rpc(
            CH,
            &Method::ConfirmSelect(ConfirmSelect { nowait: false }),
            |m| matches!(m, Method::ConfirmSelectOk(_)),
            "confirm.select-ok",
        )?;
    }
    let t = template(args, &queue, c.frame_max);
    Ok((c, t))
}

/// A consumer's connection, channel, prefetch and `basic.consume`.
pub(crate) fn consumer_conn(idx: usize, args: &RunArgs, read_buf: usize) -> Result<Conn> {
    let name = format!("consumer {idx}");
    let queue = queue_name(args, idx % args.queues.max(1));
    let mut c = Conn::connect_with(&args.uri, &name, read_buf)?;
    c.open_channel(CH)?;
    if args.prefetch > 0 {
        c.rpc(
            CH,
            &Method::BasicQos(BasicQos {
                prefetch_size: 0,
                prefetch_count: args.prefetch,
                global: false,
            }),
            |m| matches!(m, Method::BasicQosOk(_)),
            "basic.qos-ok",
        )?;
    }
    c.rpc(
        CH,
        &Method::BasicConsume(BasicConsume {
            queue: queue.as_str().into(),
            consumer_tag: format!("perf-{idx}").into(),
            no_ack: args.multi_ack_every == 0,
            ..Default::default()
        }),
        |m| matches!(m, Method::BasicConsumeOk(_)),
        "basic.consume-ok",
    )?;
    Ok(c)
}

/// Ack every N deliveries, but never wait for more than the prefetch
/// allows; 0 = no acks (no-ack consumer).
pub(crate) fn ack_every(args: &RunArgs) -> u64 {
    match (args.multi_ack_every, args.prefetch) {
        (0, _) => 0,
        (n, 0) => n,
        (n, p) => n.min(p as u64),
    }
}

#[allow(clippy::too_many_arguments)]
fn producer(
    idx: usize,
    args: Arc<RunArgs>,
    ready: mpsc::Sender<Result<()>>,
    go: Arc<Barrier>,
    stop: Arc<AtomicBool>,
) -> ProducerResult {
    let name = format!("producer {idx}");
    let (mut conn, tpl) = match producer_conn(idx, &args, READ_BUF) {
        Ok(x) => {
            let _ = ready.send(Ok(()));
            x
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return ProducerResult {
                sent: 0,
                elapsed: Duration::ZERO,
            };
        }
    };
    let shared = Arc::new(Confirms {
        settled: AtomicU64::new(0),
        closing: AtomicBool::new(false),
        producer: thread::current(),
    });
    let reader = {
        let stream = conn.stream.try_clone().unwrap_or_else(|e| fatal(&name, e));
        let shared = shared.clone();
        let rname = name.clone();
        thread::Builder::new()
            .name(format!("p{idx}-reader"))
            .spawn(move || producer_reader(stream, shared, rname))
            .unwrap_or_else(|e| fatal(&name, e))
    };
    let _ = conn
        .stream
        .set_write_timeout(Some(Duration::from_millis(200)));
    if args.rate > 0.0 {
        // Sleep precisely between rate-limited batches.
        // SAFETY: prctl with PR_SET_TIMERSLACK only affects this thread.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1u64, 0u64, 0u64, 0u64) };
    }

    let msg_len = tpl.bytes.len();
    let per_write = (args.write_buffer / msg_len).max(1) as u64;
    let mut buf: Vec<u8> = Vec::with_capacity(per_write as usize * msg_len);
    let window = args.confirm;
    let offset = schedule::phase(idx, args.producers, args.rate, args.stagger);
    let mut sent = 0u64;
    let mut clean = true;
    go.wait();
    let start = Instant::now();
    loop {
        if stop.load(Relaxed) {
            break;
        }
        let mut n = per_write;
        if let Some(c) = args.count {
            if sent >= c {
                break;
            }
            n = n.min(c - sent);
        }
        if window > 0 {
            let inflight = sent - shared.settled.load(Acquire);
            if inflight >= window {
                thread::park_timeout(Duration::from_millis(5));
                continue;
            }
            n = n.min(window - inflight);
        }
        if args.rate > 0.0 {
            let t = start.elapsed().as_secs_f64();
            let due = schedule::producer_due(t, offset, args.rate);
            if due <= sent {
                let next = offset + sent as f64 / args.rate;
                let wait = (next - t).clamp(0.0, 0.05);
                thread::sleep(Duration::from_secs_f64(wait));
                continue;
            }
            n = n.min(due - sent);
        }
        buf.clear();
        for _ in 0..n {
            let at = buf.len();
            buf.extend_from_slice(&tpl.bytes);
            if let Some(ts) = tpl.ts_at {
                buf[at + ts..at + ts + 8].copy_from_slice(&now_ns().to_le_bytes());
            }
        }
        match write_stoppable(&mut conn, &buf, &stop) {
            Ok(true) => {}
            Ok(false) => {
                clean = false;
                break;
            }
            Err(e) => fatal(&name, e),
        }
        sent += n;
        SENT.fetch_add(n, Relaxed);
    }
    let elapsed = start.elapsed();
    // In count mode, wait (bounded) for the last confirms.
    if window > 0 && clean && args.count.is_some() {
        let deadline = Instant::now() + Duration::from_secs(30);
        while shared.settled.load(Acquire) < sent && Instant::now() < deadline {
            thread::park_timeout(Duration::from_millis(5));
        }
    }
    shared.closing.store(true, Relaxed);
    if clean {
        let close = Method::ConnectionClose(warren::codec::ConnectionClose {
            reply_code: 200,
            reply_text: ShortStr::from_static("bye"),
            class_id: 0,
            method_id: 0,
        });
        let _ = conn.send_method(0, &close);
    }
    let _ = reader.join();
    ProducerResult { sent, elapsed }
}

struct ConsumerResult {
    received: u64,
    hist: Histogram<u64>,
    last_receive: Option<Instant>,
}

pub(crate) fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("histogram bounds")
}

fn consumer(
    idx: usize,
    args: Arc<RunArgs>,
    ready: mpsc::Sender<Result<()>>,
    go: Arc<Barrier>,
    stop: Arc<AtomicBool>,
) -> ConsumerResult {
    let name = format!("consumer {idx}");
    let setup = || -> Result<Conn> {
        let c = consumer_conn(idx, &args, READ_BUF)?;
        c.stream
            .set_read_timeout(Some(Duration::from_millis(100)))?;
        Ok(c)
    };
    let mut hist = new_hist();
    let mut conn = match setup() {
        Ok(c) => {
            let _ = ready.send(Ok(()));
            c
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return ConsumerResult {
                received: 0,
                hist,
                last_receive: None,
            };
        }
    };
    let ack_every = ack_every(&args);
    let mut acks = BytesMut::with_capacity(4096);
    let mut unacked = 0u64;
    let mut last_tag = 0u64;
    let mut received = 0u64;
    let mut last_receive = None;
    let mut expect_ts = false;
    go.wait();
    loop {
        match conn.rb.fill(&mut conn.stream) {
            Ok(0) => fatal(&name, "broker closed the TCP connection"),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Relaxed) {
                    break;
                }
                continue;
            }
            Err(e) => fatal(&name, e),
        }
        let now = now_ns();
        let mut batch = 0u64;
        loop {
            let f = match conn.rb.poll_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => fatal(&name, e),
            };
            let p = &conn.rb.buf[f.payload.clone()];
            match f.kind {
                1 => {
                    if method_ids(p) == (60, 60) && p.len() > 5 {
                        let tag_at = 5 + p[4] as usize;
                        if p.len() >= tag_at + 8 {
                            last_tag =
                                u64::from_be_bytes(p[tag_at..tag_at + 8].try_into().unwrap());
                        }
                        batch += 1;
                        unacked += 1;
                        continue;
                    }
                    match decode_whole(&conn.rb.buf[f.whole.clone()]) {
                        Ok(warren::codec::Frame::Method { channel, method }) => {
                            if let Some(e) = close_error(channel, &method) {
                                fatal(&name, e);
                            }
                            if let Method::BasicCancel(_) = method {
                                fatal(&name, "the broker cancelled the consumer");
                            }
                        }
                        Ok(_) => {}
                        Err(e) => fatal(&name, e),
                    }
                }
                2 if p.len() >= 12 => {
                    let body_size = u64::from_be_bytes(p[4..12].try_into().unwrap());
                    expect_ts = body_size >= 8;
                }
                3 => {
                    if expect_ts && p.len() >= 8 {
                        let ts = u64::from_le_bytes(p[..8].try_into().unwrap());
                        hist.saturating_record(now.saturating_sub(ts).max(1));
                    }
                    expect_ts = false;
                }
                _ => {}
            }
        }
        if batch > 0 {
            received += batch;
            RECEIVED.fetch_add(batch, Relaxed);
            last_receive = Some(Instant::now());
        }
        if ack_every > 0 && unacked >= ack_every {
            acks.clear();
            encode_method(
                &mut acks,
                CH,
                &Method::BasicAck(warren::codec::BasicAck {
                    delivery_tag: last_tag,
                    multiple: true,
                }),
            );
            if let Err(e) = conn.stream.write_all(&acks) {
                fatal(&name, e);
            }
            unacked = 0;
        }
        if stop.load(Relaxed) {
            break;
        }
    }
    let _ = conn.stream.set_read_timeout(Some(Duration::from_secs(2)));
    conn.close();
    ConsumerResult {
        received,
        hist,
        last_receive,
    }
}

fn wait_ready(rx: &mpsc::Receiver<Result<()>>, n: usize) {
    for _ in 0..n {
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => fatal("setup", e),
            Err(_) => fatal("setup", "a worker thread died"),
        }
    }
}

/// Prints a `--markers` line on stdout, flushed at once.
pub(crate) fn marker(args: &RunArgs, what: &str) {
    if args.markers {
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "{what}");
        let _ = out.flush();
    }
}

/// Connects the admin connection and declares (and purges) the topology;
/// returns it, the TLS description and the set-up time.
pub(crate) fn admin_setup(args: &RunArgs) -> (Conn, Option<String>, f64) {
    let mut admin =
        Conn::connect(&args.uri, "warren-perf admin").unwrap_or_else(|e| fatal("connect", e));
    admin
        .open_channel(CH)
        .unwrap_or_else(|e| fatal("admin channel", e));
    // A broker that stops answering must not hang the run.
    let _ = admin
        .stream
        .set_read_timeout(Some(Duration::from_secs(120)));
    let tls = admin.stream.tls_description();
    if let Some(t) = &tls {
        eprintln!("TLS: {t}");
    }
    let t0 = Instant::now();
    setup(&mut admin, args).unwrap_or_else(|e| fatal("declaring queues and bindings", e));
    (admin, tls, t0.elapsed().as_secs_f64())
}

fn check_args(args: &RunArgs) {
    if args.queues == 0 {
        fatal("arguments", "--queues must be at least 1");
    }
    if args.producers == 0 && args.consumers == 0 {
        fatal("arguments", "nothing to do: no producers and no consumers");
    }
    if args.poll {
        let bad = if args.uri.tls.is_some() {
            Some("--poll supports plain amqp:// only")
        } else if args.producers > 0 && args.rate <= 0.0 {
            Some("--poll needs --rate > 0 for its producers")
        } else if args.confirm > 0 {
            Some("--poll does not do publisher confirms")
        } else if args.count.is_some() || args.expect.is_some() {
            Some("--poll runs for --duration; no --count or --expect")
        } else {
            None
        };
        if let Some(why) = bad {
            fatal("arguments", why);
        }
    }
}

pub fn run(args: RunArgs) {
    check_args(&args);
    if args.poll {
        return crate::poll::run(args);
    }
    let args = Arc::new(args);
    let (mut admin, tls, setup_s) = admin_setup(&args);

    let stop = Arc::new(AtomicBool::new(false));
    let go = Arc::new(Barrier::new(args.producers + args.consumers + 1));
    let (tx, rx) = mpsc::channel();
    let consumers: Vec<_> = (0..args.consumers)
        .map(|i| {
            let (a, tx, go, stop) = (args.clone(), tx.clone(), go.clone(), stop.clone());
            thread::Builder::new()
                .name(format!("consumer-{i}"))
                .spawn(move || consumer(i, a, tx, go, stop))
                .unwrap_or_else(|e| fatal("spawn", e))
        })
        .collect();
    // Consumers are attached before any producer connects.
    wait_ready(&rx, args.consumers);
    let producers: Vec<_> = (0..args.producers)
        .map(|i| {
            let (a, tx, go, stop) = (args.clone(), tx.clone(), go.clone(), stop.clone());
            thread::Builder::new()
                .name(format!("producer-{i}"))
                .spawn(move || producer(i, a, tx, go, stop))
                .unwrap_or_else(|e| fatal("spawn", e))
        })
        .collect();
    wait_ready(&rx, args.producers);
    go.wait();
    let start = Instant::now();
    marker(&args, "STEADY");

    // Progress, and the end of the run.
    let mut last = (0u64, 0u64, 0u64);
    let mut tick = 1u64;
    let mut stable_since: Option<(u64, Instant)> = None;
    let mut stalled = false;
    loop {
        thread::sleep(Duration::from_millis(100));
        let el = start.elapsed();
        if el >= Duration::from_secs(tick) {
            let now = (
                SENT.load(Relaxed),
                CONFIRMED.load(Relaxed),
                RECEIVED.load(Relaxed),
            );
            if !args.quiet {
                eprintln!(
                    "{:>4}s  sent {:>9}/s  confirmed {:>9}/s  received {:>9}/s",
                    tick,
                    now.0 - last.0,
                    now.1 - last.1,
                    now.2 - last.2
                );
            }
            last = now;
            tick += 1;
        }
        if let Some(want) = args.expect {
            // Until the consumers have it all, or nothing came for 60 s.
            // Producers without --count publish until the run stops.
            let r = RECEIVED.load(Relaxed);
            if r >= want && (args.count.is_none() || producers.iter().all(|p| p.is_finished())) {
                break;
            }
            match stable_since {
                Some((v, t)) if v == r => {
                    if t.elapsed() >= Duration::from_secs(60) {
                        eprintln!("warren-perf: nothing received for 60 s: {r} of {want}");
                        stalled = true;
                        break;
                    }
                }
                _ => stable_since = Some((r, Instant::now())),
            }
            continue;
        }
        match args.count {
            None => {
                if el.as_secs_f64() >= args.duration {
                    break;
                }
            }
            Some(_) => {
                if !producers.iter().all(|p| p.is_finished()) {
                    continue;
                }
                if args.consumers == 0 {
                    break;
                }
                // Drained: nothing new for one second (or 60 s at most).
                let r = RECEIVED.load(Relaxed);
                match stable_since {
                    Some((v, t)) if v == r => {
                        if t.elapsed() >= Duration::from_secs(1) {
                            break;
                        }
                    }
                    _ => stable_since = Some((r, Instant::now())),
                }
                if el > Duration::from_secs(3600) {
                    break;
                }
            }
        }
    }
    marker(&args, "END");
    stop.store(true, Relaxed);
    let run_s = start.elapsed().as_secs_f64();

    let prods: Vec<ProducerResult> = producers
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap_or_else(|_| fatal("producer", "thread panicked"))
        })
        .collect();
    let cons: Vec<ConsumerResult> = consumers
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap_or_else(|_| fatal("consumer", "thread panicked"))
        })
        .collect();
    if args.cleanup {
        cleanup(&mut admin, &args).unwrap_or_else(|e| fatal("cleanup", e));
    }
    admin.close();

    let sent: u64 = prods.iter().map(|p| p.sent).sum();
    let pub_s = prods
        .iter()
        .map(|p| p.elapsed.as_secs_f64())
        .fold(0.0, f64::max);
    let received: u64 = cons.iter().map(|c| c.received).sum();
    let cons_s = if args.count.is_some() || args.expect.is_some() {
        cons.iter()
            .filter_map(|c| c.last_receive)
            .max()
            .map(|t| (t - start).as_secs_f64())
            .unwrap_or(0.0)
    } else {
        run_s
    };
    let mut hist = new_hist();
    for c in &cons {
        hist.add(&c.hist).expect("same histogram bounds");
    }
    let extra = args.expect.map(|_| json!({ "expect_stalled": stalled }));
    report(
        &args,
        Totals {
            tls,
            setup_s,
            run_s,
            sent,
            pub_s,
            received,
            cons_s,
            hist,
            extra,
        },
    );
}

/// What a run measured, for [`report`].
pub(crate) struct Totals {
    pub tls: Option<String>,
    pub setup_s: f64,
    pub run_s: f64,
    pub sent: u64,
    /// Seconds the producers published for.
    pub pub_s: f64,
    pub received: u64,
    /// Seconds over which the consumers' rate is counted.
    pub cons_s: f64,
    pub hist: Histogram<u64>,
    /// Fields added to the JSON result.
    pub extra: Option<serde_json::Value>,
}

/// Prints the result and writes the JSON file.
pub(crate) fn report(args: &RunArgs, t: Totals) {
    let Totals {
        tls,
        setup_s,
        run_s,
        sent,
        pub_s,
        received,
        cons_s,
        hist,
        extra,
    } = t;
    let rate = |n: u64, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let lat = if hist.is_empty() {
        serde_json::Value::Null
    } else {
        json!({
            "samples": hist.len(),
            "min": hist.min() as f64 / 1000.0,
            "mean": hist.mean() / 1000.0,
            "p50": us(0.5),
            "p75": us(0.75),
            "p95": us(0.95),
            "p99": us(0.99),
            "p99_9": us(0.999),
            "max": hist.max() as f64 / 1000.0,
        })
    };
    let confirmed = CONFIRMED.load(Relaxed);
    let mut result = json!({
        "tool": "warren-perf",
        "version": env!("CARGO_PKG_VERSION"),
        "label": args.label,
        "parameters": {
            "uri": format!("{}://{}@{}:{}/{}", if tls.is_some() { "amqps" } else { "amqp" }, args.uri.user, args.uri.host, args.uri.port, args.uri.vhost),
            "tls": tls,
            "producers": args.producers,
            "consumers": args.consumers,
            "queues": args.queues,
            "queue_pattern": args.queue_pattern,
            "exchange": args.exchange,
            "exchange_type": args.exchange_type.name(),
            "routing_key": routing_key(args),
            "bindings": if args.exchange.is_empty() { 0 } else { bindings(args).len() },
            "size": args.size,
            "persistent": args.persistent,
            "confirm": args.confirm,
            "prefetch": args.prefetch,
            "multi_ack_every": args.multi_ack_every,
            "rate": args.rate,
            "duration": args.duration,
            "count": args.count,
            "write_buffer": args.write_buffer,
            "stagger": args.stagger,
            "poll": args.poll,
            "expect": args.expect,
        },
        "setup_seconds": setup_s,
        "run_seconds": run_s,
        "sent": sent,
        "confirmed": confirmed,
        "nacked": NACKED.load(Relaxed),
        "received": received,
        "publish_rate": rate(sent, pub_s),
        "confirm_rate": rate(confirmed, pub_s),
        "consume_rate": rate(received, cons_s),
        "latency_us": lat,
    });
    println!(
        "sent {sent} ({:.0} msg/s), confirmed {confirmed}, received {received} ({:.0} msg/s) in {run_s:.1} s",
        rate(sent, pub_s),
        rate(received, cons_s)
    );
    if !hist.is_empty() {
        println!(
            "latency µs: p50 {:.0}  p99 {:.0}  p99.9 {:.0}  max {:.0}",
            us(0.5),
            us(0.99),
            us(0.999),
            hist.max() as f64 / 1000.0
        );
    }
    if let (Some(serde_json::Value::Object(m)), Some(r)) = (extra, result.as_object_mut()) {
        r.extend(m);
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&result).expect("json");
        std::fs::write(path, text + "\n").unwrap_or_else(|e| fatal(&path.display().to_string(), e));
    }
}
