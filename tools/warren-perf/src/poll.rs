//! `--poll`: thousands of slow connections driven by one thread.
//!
//! Connections are opened as in the threaded run (blocking sockets:
//! handshake, channel, `basic.qos` and `basic.consume`), by
//! `--connect-threads` threads at a time, every consumer before any
//! producer. Then every socket turns non-blocking and one thread drives
//! them all with epoll: it writes each producer's messages when their send
//! time comes ([`crate::schedule`]; one write per message, the send
//! timestamp patched in just before), reads deliveries, records their
//! publish-to-deliver latency and acks them. The thread sleeps in
//! `epoll_pwait2` until the next send or a socket is ready, so a run with
//! 2,000 connections costs the generator a few syscalls per message, not
//! 2,000 sleeping threads' wake-ups.

use bytes::BytesMut;
use hdrhistogram::Histogram;
use serde_json::json;
use std::io::{self, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use warren::codec::{encode_method, BasicAck, ConnectionClose, Frame, Method, ShortStr};

use crate::client::{self, close_error, decode_whole, method_ids, Conn, FrameBuf};
use crate::run::{self, Template, Totals, CH, RECEIVED, SENT};
use crate::{fatal, now_ns, schedule, RunArgs};

/// Read buffer per connection (it grows for a bigger frame).
const READ_BUF: usize = 16 * 1024;

/// How long, after publishing stops, deliveries in flight are waited for.
const DRAIN: Duration = Duration::from_secs(2);

enum Role {
    Producer {
        tpl: Template,
    },
    Consumer {
        last_tag: u64,
        unacked: u64,
        expect_ts: bool,
    },
}

struct Peer {
    name: String,
    sock: TcpStream,
    rb: FrameBuf,
    /// Bytes to write; `out[out_at..]` is still pending.
    out: Vec<u8>,
    out_at: usize,
    /// EPOLLOUT is registered (something is pending).
    want_out: bool,
    /// Our connection.close was answered (or the socket ended after it).
    done: bool,
    role: Role,
}

/// What the loop counts besides the global SENT and RECEIVED.
#[derive(Default)]
struct Stats {
    /// `connection.blocked` notifications (RabbitMQ sends none to a client
    /// that does not ask for them; kept for brokers that do).
    blocked: u64,
    /// Writes that found the socket buffer full (the broker not reading).
    write_would_block: u64,
    /// The most bytes one connection had waiting to be written.
    max_pending: usize,
}

struct Epoll(libc::c_int);

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall; the fd is owned by the returned value.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Epoll(fd))
    }

    fn ctl(&self, op: libc::c_int, fd: libc::c_int, events: u32, token: usize) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events,
            u64: token as u64,
        };
        // SAFETY: `ev` lives across the call; the kernel copies it.
        if unsafe { libc::epoll_ctl(self.0, op, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits at most `timeout` (nanosecond resolution); the number of
    /// events written to `evs` (0 on a timeout or a signal).
    fn wait(&self, evs: &mut [libc::epoll_event], timeout: Duration) -> io::Result<usize> {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `evs` is valid for `evs.len()` entries; no signal mask.
        let n = unsafe {
            libc::epoll_pwait2(
                self.0,
                evs.as_mut_ptr(),
                evs.len() as libc::c_int,
                &ts,
                std::ptr::null(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(e);
        }
        Ok(n as usize)
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.0) };
    }
}

const IN: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
const OUT: u32 = libc::EPOLLOUT as u32;

/// CPU seconds (user + system) of this process so far.
fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes the struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Opens `n` connections with `open`, `threads` at a time, in index order
/// as far as the threads go; any failure ends the process.
fn open_all<T: Send>(
    n: usize,
    threads: usize,
    what: &str,
    open: impl Fn(usize) -> client::Result<T> + Sync,
) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<T>>> = Mutex::new((0..n).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, n.max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Relaxed);
                if i >= n {
                    break;
                }
                match open(i) {
                    Ok(c) => slots.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(c),
                    Err(e) => fatal(&format!("{what} {i}"), e),
                }
            });
        }
    });
    slots
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|c| c.expect("every connection opened"))
        .collect()
}

fn peer(conn: Conn, name: String, role: Role) -> Peer {
    let (stream, rb) = conn.into_parts();
    let sock = stream
        .into_plain()
        .unwrap_or_else(|| fatal(&name, "--poll needs plain TCP"));
    sock.set_nonblocking(true)
        .unwrap_or_else(|e| fatal(&name, e));
    Peer {
        name,
        sock,
        rb,
        out: Vec::new(),
        out_at: 0,
        want_out: false,
        done: false,
        role,
    }
}

impl Peer {
    /// Writes what is pending, as far as the socket takes it.
    fn flush(&mut self, st: &mut Stats) -> io::Result<()> {
        while self.out_at < self.out.len() {
            match self.sock.write(&self.out[self.out_at..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out_at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    st.write_would_block += 1;
                    st.max_pending = st.max_pending.max(self.out.len() - self.out_at);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.out_at = 0;
        Ok(())
    }

    fn pending(&self) -> bool {
        self.out_at < self.out.len()
    }
}

/// Flushes peer `i` and keeps its EPOLLOUT interest in step with whether
/// bytes are still pending.
fn flush(ep: &Epoll, peers: &mut [Peer], i: usize, st: &mut Stats, closing: bool) {
    let p = &mut peers[i];
    if let Err(e) = p.flush(st) {
        if closing {
            p.done = true;
            return;
        }
        fatal(&p.name, e);
    }
    let want = p.pending();
    if want != p.want_out {
        let ev = if want { IN | OUT } else { IN };
        ep.ctl(libc::EPOLL_CTL_MOD, p.sock.as_raw_fd(), ev, i)
            .unwrap_or_else(|e| fatal("epoll_ctl", e));
        p.want_out = want;
    }
}

/// Reads what peer `i` has: deliveries (latency, acks), errors, close-ok.
fn readable(
    ep: &Epoll,
    peers: &mut [Peer],
    i: usize,
    hist: &mut Histogram<u64>,
    st: &mut Stats,
    ack_every: u64,
    closing: bool,
) {
    let p = &mut peers[i];
    match p.rb.fill(&mut p.sock) {
        Ok(0) => {
            if closing {
                p.done = true;
                return;
            }
            fatal(&p.name, "broker closed the TCP connection");
        }
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            return
        }
        Err(e) => {
            if closing {
                p.done = true;
                return;
            }
            fatal(&p.name, e);
        }
    }
    let now = now_ns();
    let mut batch = 0u64;
    loop {
        let f = match p.rb.poll_frame() {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => fatal(&p.name, e),
        };
        let pl = &p.rb.buf[f.payload.clone()];
        match (f.kind, &mut p.role) {
            (
                1,
                Role::Consumer {
                    last_tag, unacked, ..
                },
            ) if method_ids(pl) == (60, 60) && pl.len() > 5 => {
                let tag_at = 5 + pl[4] as usize;
                if pl.len() >= tag_at + 8 {
                    *last_tag = u64::from_be_bytes(pl[tag_at..tag_at + 8].try_into().unwrap());
                }
                *unacked += 1;
                batch += 1;
            }
            (1, _) => match decode_whole(&p.rb.buf[f.whole.clone()]) {
                Ok(Frame::Method { channel, method }) => match method {
                    Method::ConnectionCloseOk(_) => p.done = true,
                    Method::ConnectionBlocked(_) => st.blocked += 1,
                    Method::BasicCancel(_) => fatal(&p.name, "the broker cancelled the consumer"),
                    m => {
                        if let Some(e) = close_error(channel, &m) {
                            if !closing {
                                fatal(&p.name, e);
                            }
                            p.done = true;
                        }
                    }
                },
                Ok(_) => {}
                Err(e) => fatal(&p.name, e),
            },
            (2, Role::Consumer { expect_ts, .. }) if pl.len() >= 12 => {
                let body_size = u64::from_be_bytes(pl[4..12].try_into().unwrap());
                *expect_ts = body_size >= 8;
            }
            (3, Role::Consumer { expect_ts, .. }) => {
                if *expect_ts && pl.len() >= 8 {
                    let ts = u64::from_le_bytes(pl[..8].try_into().unwrap());
                    hist.saturating_record(now.saturating_sub(ts).max(1));
                }
                *expect_ts = false;
            }
            _ => {}
        }
    }
    if batch > 0 {
        RECEIVED.fetch_add(batch, Relaxed);
    }
    if let Role::Consumer {
        last_tag, unacked, ..
    } = &mut p.role
    {
        if ack_every > 0 && *unacked >= ack_every && !closing {
            let mut b = BytesMut::with_capacity(32);
            encode_method(
                &mut b,
                CH,
                &Method::BasicAck(BasicAck {
                    delivery_tag: *last_tag,
                    multiple: true,
                }),
            );
            p.out.extend_from_slice(&b);
            *unacked = 0;
            flush(ep, peers, i, st, closing);
        }
    }
}

pub fn run(args: RunArgs) {
    let conns = args.producers + args.consumers;
    let limit = crate::idle::raise_nofile();
    if conns as u64 + 64 > limit {
        fatal(
            "--poll",
            format!(
                "{conns} connections need more open files than RLIMIT_NOFILE allows ({limit}); \
                 raise the hard limit (ulimit -Hn)"
            ),
        );
    }
    let (mut admin, tls, admin_s) = run::admin_setup(&args);
    let t0 = Instant::now();
    // Consumers first: every queue has its consumer before anything is
    // published.
    let cons = open_all(args.consumers, args.connect_threads, "consumer", |i| {
        run::consumer_conn(i, &args, READ_BUF)
    });
    let prods = open_all(args.producers, args.connect_threads, "producer", |i| {
        run::producer_conn(i, &args, READ_BUF)
    });
    let connect_s = t0.elapsed().as_secs_f64();
    if !args.quiet {
        eprintln!(
            "poll: {} consumer and {} producer connections open in {connect_s:.1} s",
            args.consumers, args.producers
        );
    }
    let n = prods.len();
    let mut peers: Vec<Peer> = Vec::with_capacity(conns);
    for (i, (c, tpl)) in prods.into_iter().enumerate() {
        peers.push(peer(c, format!("producer {i}"), Role::Producer { tpl }));
    }
    for (i, c) in cons.into_iter().enumerate() {
        peers.push(peer(
            c,
            format!("consumer {i}"),
            Role::Consumer {
                last_tag: 0,
                unacked: 0,
                expect_ts: false,
            },
        ));
    }
    let ep = Epoll::new().unwrap_or_else(|e| fatal("epoll_create1", e));
    for (i, p) in peers.iter().enumerate() {
        ep.ctl(libc::EPOLL_CTL_ADD, p.sock.as_raw_fd(), IN, i)
            .unwrap_or_else(|e| fatal("epoll_ctl", e));
    }
    let ack_every = run::ack_every(&args);
    let mut hist = run::new_hist();
    let mut st = Stats::default();
    let mut evs = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut dirty: Vec<usize> = Vec::new();
    let mut is_dirty = vec![false; n];

    let cpu0 = own_cpu_seconds();
    let start = Instant::now();
    run::marker(&args, "STEADY");
    let mut next_event = 0u64;
    let mut tick = 1u64;
    let mut last = (0u64, 0u64);
    let mut ended: Option<(Instant, f64)> = None;
    loop {
        let t = start.elapsed().as_secs_f64();
        if ended.is_none() && t >= args.duration {
            run::marker(&args, "END");
            ended = Some((Instant::now(), own_cpu_seconds() - cpu0));
        }
        match ended {
            None if n > 0 => {
                let due = schedule::events_due(t, n, args.rate, args.stagger);
                while next_event < due {
                    let k = (next_event % n as u64) as usize;
                    let p = &mut peers[k];
                    if let Role::Producer { tpl } = &p.role {
                        let at = p.out.len();
                        p.out.extend_from_slice(&tpl.bytes);
                        if let Some(ts) = tpl.ts_at {
                            p.out[at + ts..at + ts + 8].copy_from_slice(&now_ns().to_le_bytes());
                        }
                    }
                    if !is_dirty[k] {
                        is_dirty[k] = true;
                        dirty.push(k);
                    }
                    next_event += 1;
                }
                SENT.store(next_event, Relaxed);
                for k in dirty.drain(..) {
                    is_dirty[k] = false;
                    flush(&ep, &mut peers, k, &mut st, false);
                }
            }
            None => {}
            Some((at, _))
                if RECEIVED.load(Relaxed) >= SENT.load(Relaxed) || at.elapsed() >= DRAIN =>
            {
                break;
            }
            Some(_) => {}
        }
        if t >= tick as f64 {
            let now = (SENT.load(Relaxed), RECEIVED.load(Relaxed));
            if !args.quiet {
                eprintln!(
                    "{:>4}s  sent {:>9}/s  received {:>9}/s",
                    tick,
                    now.0 - last.0,
                    now.1 - last.1
                );
            }
            last = now;
            tick += 1;
        }
        // Sleep until the next send, the next progress line or the end.
        let mut until = (tick as f64).min(args.duration);
        if ended.is_none() && n > 0 {
            until = until.min(schedule::event_time(next_event, n, args.rate, args.stagger));
        }
        if ended.is_some() {
            until = t + 0.01;
        }
        let wait = Duration::from_secs_f64((until - start.elapsed().as_secs_f64()).max(0.0));
        let got = ep
            .wait(&mut evs, wait)
            .unwrap_or_else(|e| fatal("epoll_pwait2", e));
        for ev in &evs[..got] {
            let (flags, i) = (ev.events, ev.u64 as usize);
            if flags & OUT != 0 {
                flush(&ep, &mut peers, i, &mut st, false);
            }
            if flags & !OUT != 0 {
                readable(&ep, &mut peers, i, &mut hist, &mut st, ack_every, false);
            }
        }
    }
    let (end_at, cpu_s) = ended.expect("ended");
    let steady_s = (end_at - start).as_secs_f64();
    let run_s = start.elapsed().as_secs_f64();

    // Close every connection and wait (5 s at most) for the close-oks.
    let mut close = BytesMut::new();
    encode_method(
        &mut close,
        0,
        &Method::ConnectionClose(ConnectionClose {
            reply_code: 200,
            reply_text: ShortStr::from_static("bye"),
            class_id: 0,
            method_id: 0,
        }),
    );
    for i in 0..peers.len() {
        peers[i].out.extend_from_slice(&close);
        flush(&ep, &mut peers, i, &mut st, true);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while peers.iter().any(|p| !p.done) && Instant::now() < deadline {
        let got = ep
            .wait(&mut evs, Duration::from_millis(50))
            .unwrap_or_else(|e| fatal("epoll_pwait2", e));
        for ev in &evs[..got] {
            let (flags, i) = (ev.events, ev.u64 as usize);
            if peers[i].done {
                let _ = ep.ctl(libc::EPOLL_CTL_DEL, peers[i].sock.as_raw_fd(), 0, i);
                continue;
            }
            if flags & OUT != 0 {
                flush(&ep, &mut peers, i, &mut st, true);
            }
            if flags & !OUT != 0 {
                readable(&ep, &mut peers, i, &mut hist, &mut st, ack_every, true);
            }
        }
    }
    let unclosed = peers.iter().filter(|p| !p.done).count();
    drop(peers);
    if args.cleanup {
        run::cleanup(&mut admin, &args).unwrap_or_else(|e| fatal("cleanup", e));
    }
    admin.close();

    let sent = SENT.load(Relaxed);
    let received = RECEIVED.load(Relaxed);
    let extra = json!({
        "poll": {
            "connect_seconds": connect_s,
            "steady_seconds": steady_s,
            "client_cpu_seconds": cpu_s,
            "client_cpu_per_100k_msgs": if sent > 0 { cpu_s / sent as f64 * 1e5 } else { 0.0 },
            "connection_blocked": st.blocked,
            "write_would_block": st.write_would_block,
            "max_pending_bytes": st.max_pending,
            "unclosed_connections": unclosed,
        }
    });
    if !args.quiet {
        eprintln!(
            "poll: own CPU {cpu_s:.2} s over {steady_s:.1} s steady ({:.1}% of a core)",
            cpu_s / steady_s.max(1e-9) * 100.0
        );
    }
    run::report(
        &args,
        Totals {
            tls,
            setup_s: admin_s + connect_s,
            run_s,
            sent,
            pub_s: steady_s,
            received,
            cons_s: steady_s,
            hist,
            extra: Some(extra),
        },
    );
}
