//! `warren-perf idle`: opens many connections, one channel each, and holds
//! them idle (heartbeats off), for measuring a broker's memory per
//! connection. Prints `READY <n>` on stdout once all are open, then holds
//! them for `--hold` seconds and closes them.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use warren::codec::{ConnectionClose, Method, ShortStr};

use crate::client::Conn;
use crate::{fatal, IdleArgs};

/// Raises the soft open-files limit to the hard limit; returns the new soft
/// limit.
pub(crate) fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
            }
        }
    }
    lim.rlim_cur
}

pub fn run(a: IdleArgs) {
    let limit = raise_nofile();
    if (a.connections as u64) + 64 > limit {
        fatal(
            "idle",
            format!(
                "{} connections need more open files than RLIMIT_NOFILE allows ({limit}); raise the hard limit (ulimit -Hn)",
                a.connections
            ),
        );
    }
    let threads = a.threads.clamp(1, a.connections.max(1));
    let opened = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let uri = a.uri.clone();
            let opened = opened.clone();
            let n = a.connections / threads + usize::from(t < a.connections % threads);
            thread::spawn(move || {
                let mut conns = Vec::with_capacity(n);
                for i in 0..n {
                    let name = format!("idle {t}/{i}");
                    let mut c = Conn::connect_with(&uri, &name, 4096).unwrap_or_else(|e| {
                        fatal(&format!("{name} (after {} open)", opened.load(Relaxed)), e)
                    });
                    c.open_channel(1).unwrap_or_else(|e| fatal(&name, e));
                    conns.push(c);
                    opened.fetch_add(1, Relaxed);
                }
                conns
            })
        })
        .collect();
    let mut all = Vec::with_capacity(a.connections);
    for h in handles {
        all.extend(
            h.join()
                .unwrap_or_else(|_| fatal("idle", "thread panicked")),
        );
    }
    eprintln!(
        "idle: {} connections open in {:.1} s; holding {} s",
        all.len(),
        start.elapsed().as_secs_f64(),
        a.hold
    );
    println!("READY {}", all.len());
    let _ = std::io::stdout().flush();
    thread::sleep(Duration::from_secs_f64(a.hold));
    let close = Method::ConnectionClose(ConnectionClose {
        reply_code: 200,
        reply_text: ShortStr::from_static("bye"),
        class_id: 0,
        method_id: 0,
    });
    for c in &mut all {
        let _ = c.send_method(0, &close);
    }
    thread::sleep(Duration::from_millis(500));
    drop(all);
    eprintln!("idle: closed");
}
