//! The runtime: one pinned glommio executor per shard, each with its own
//! SO_REUSEPORT listener, joined by a full channel mesh.
//!
//! This module is glommio's only importer. The broker above it sees plain
//! async functions and `!Send` types: executors and placement (here), tasks
//! and timers (here), listeners and the connection socket ([`net`]), the
//! batched cross-shard mailboxes ([`mailbox`]), single-threaded sync
//! primitives ([`sync`]) and io_uring file operations ([`io`]). Swapping
//! glommio for another thread-per-core runtime touches only this folder.
#![warn(missing_docs)]

pub mod alloc;
pub mod io;
pub mod mailbox;
pub mod net;
pub mod sync;
pub mod tls;

use glommio::channels::channel_mesh::{MeshBuilder, Receivers};
use glommio::{CpuSet, LocalExecutorPoolBuilder, PoolPlacement};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use mailbox::Mailbox;

/// Depth of each shard-to-shard channel, in batches (field notes: shallow
/// channels force sleeps and wakeups).
const MESH_DEPTH: usize = 1024;

/// What each shard's executor starts with.
pub struct ShardStart<T: Send + 'static> {
    /// This shard's index (the mesh's peer id), `0..shards`.
    pub id: usize,
    /// How many shards the process runs.
    pub shards: usize,
    /// This shard's outgoing, batched side of the mesh.
    pub mailbox: Rc<Mailbox<T>>,
    /// Its incoming side: what the other shards send it.
    pub inbox: Inbox<T>,
}

/// The incoming side of one shard's mesh: one channel per peer.
pub struct Inbox<T: Send + 'static>(Receivers<Vec<T>>);

impl<T: Send + 'static> Inbox<T> {
    /// Spawns one receiving task per peer that hands every batch to
    /// `handle`, in the order the peer sent them.
    pub fn serve(mut self, handle: impl Fn(Vec<T>) + Clone + 'static) {
        for (_, rx) in self.0.streams() {
            let handle = handle.clone();
            spawn(async move {
                let mut handled = 0u32;
                while let Some(batch) = rx.recv().await {
                    handle(batch);
                    // A peer that keeps this channel full would otherwise
                    // never let the reactor run (every recv is ready at
                    // once). A shorter glommio preempt timer does the same
                    // job but stalled oversubscribed shards (3 on 2 CPUs)
                    // for seconds.
                    handled += 1;
                    if handled.is_multiple_of(8) {
                        yield_to_reactor().await;
                    }
                }
            });
        }
    }
}

/// Runs `fut` as a task of this shard, detached. glommio 0.9 polls a new
/// task at once, inside this call, until its first suspension: callers that
/// hold `RefCell` borrows the task needs must yield first in the task.
pub fn spawn(fut: impl Future<Output = ()> + 'static) {
    glommio::spawn_local(fut).detach();
}

/// Runs `fut` as a task of this shard; the handle resolves to its output.
pub fn spawn_joinable<T: 'static>(fut: impl Future<Output = T> + 'static) -> Joinable<T> {
    Joinable(glommio::spawn_local(fut))
}

/// A task started with [`spawn_joinable`]; awaiting it waits for its end.
pub struct Joinable<T>(glommio::Task<T>);

impl<T> Future for Joinable<T> {
    type Output = T;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        Pin::new(&mut self.0).poll(cx)
    }
}

thread_local! {
    static BUSY: std::cell::Cell<Duration> = const { std::cell::Cell::new(Duration::ZERO) };
}

/// How long this shard's executor has spent running tasks since it
/// started (glommio's executor statistics; the time it spins, polls the
/// reactor or sleeps is not counted). glommio hands its statistics out
/// once and starts them again, so they are added up here.
pub fn busy_time() -> Duration {
    let taken = glommio::executor().executor_stats().total_runtime();
    BUSY.with(|b| {
        let total = b.get() + taken;
        b.set(total);
        total
    })
}

/// The wall clock in Unix ms: what the message log keeps of a TTL's
/// deadline, since the monotonic clock starts again with the process.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Milliseconds on a monotonic clock shared by every shard (message TTLs,
/// queue expiry): a vDSO read, taken only by queues that need it.
pub fn monotonic_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

/// Resolves after `d` (a reactor timer: it fires only when the reactor runs).
pub async fn sleep(d: Duration) {
    glommio::timer::sleep(d).await;
}

/// A sleep that is `Send + Sync`, for libraries whose timer interface asks
/// for one (hyper's): a shard task sleeps and wakes whoever polled it. It
/// must be created on a shard; it fires only when that shard's reactor
/// runs.
pub struct SharedSleep {
    state: std::sync::Arc<SharedSleepState>,
}

#[derive(Default)]
struct SharedSleepState {
    done: std::sync::atomic::AtomicBool,
    waker: std::sync::Mutex<Option<std::task::Waker>>,
}

impl SharedSleep {
    /// Starts the sleep now.
    pub fn new(d: Duration) -> SharedSleep {
        let state = std::sync::Arc::new(SharedSleepState::default());
        let weak = std::sync::Arc::downgrade(&state);
        spawn(async move {
            sleep(d).await;
            if let Some(s) = weak.upgrade() {
                s.done.store(true, std::sync::atomic::Ordering::Release);
                let waker = s.waker.lock().unwrap_or_else(|p| p.into_inner()).take();
                if let Some(w) = waker {
                    w.wake();
                }
            }
        });
        SharedSleep { state }
    }
}

impl Future for SharedSleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.state.done.load(std::sync::atomic::Ordering::Acquire) {
            return Poll::Ready(());
        }
        *self.state.waker.lock().unwrap_or_else(|p| p.into_inner()) = Some(cx.waker().clone());
        if self.state.done.load(std::sync::atomic::Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// `fut`'s output, or `None` when `d` passes first (`fut` is dropped).
pub async fn timeout<T>(d: Duration, fut: impl Future<Output = T>) -> Option<T> {
    use futures_lite::FutureExt;
    async { Some(fut.await) }
        .or(async {
            sleep(d).await;
            None
        })
        .await
}

/// Why the runtime could not start.
#[derive(Debug)]
pub struct RuntimeError(pub String);

impl std::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// CPUs this process may run on (respects taskset and container cpusets,
/// which glommio's own placement ignores).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Checks what glommio needs from the kernel before starting executors,
/// whose own failures would be thread panics.
pub fn preflight() -> Result<u64, RuntimeError> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return Err(RuntimeError("cannot read RLIMIT_MEMLOCK".into()));
    }
    if lim.rlim_cur < 512 * 1024 {
        return Err(RuntimeError(format!(
            "locked-memory limit is {} KiB; Warren (io_uring) needs at least 512 KiB: \
             raise it with `ulimit -l 65536` or systemd `LimitMEMLOCK=64M`",
            lim.rlim_cur / 1024
        )));
    }
    // Probe io_uring with a tiny ring: ENOSYS = old kernel, EPERM = seccomp
    // (Docker's default profile) or io_uring_disabled.
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup reads/writes the 120-byte params struct.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        return Err(RuntimeError(format!(
            "io_uring is not available ({err}); Warren needs Linux >= 5.8 with io_uring \
             enabled (containers: allow io_uring in the seccomp profile)"
        )));
    }
    // SAFETY: fd was just returned by io_uring_setup and is ours.
    unsafe { libc::close(fd as i32) };
    Ok(lim.rlim_cur)
}

/// How often a busy shard lets its reactor run. Each reactor poll costs an
/// `io_uring_enter` and re-arms glommio's preemption timer (an hrtimer: an
/// MSR write, a VM exit here), so polling after every 64 KiB read cost 11%
/// of a shard moving 64 KiB messages; a wakeup from another shard waits at
/// most this long instead.
const REACTOR_INTERVAL: std::time::Duration = std::time::Duration::from_micros(100);

thread_local! {
    /// When this shard's busy tasks should next let the reactor run.
    static REACTOR_DUE: std::cell::Cell<Option<std::time::Instant>> =
        const { std::cell::Cell::new(None) };
}

/// Lets this shard's other ready tasks run and, at most every
/// [`REACTOR_INTERVAL`], its reactor collect I/O completions, mesh wakeups
/// and timers, before the caller continues. Busy loops (a reader of a
/// flat-out publisher, a mesh receiver with a full channel) call this after
/// each unit of work.
///
/// glommio 0.9 polls its reactor only when every task queue has run dry or
/// at the preemption timer (100 ms). A task yield, even
/// `yield_task_queue_now`, reschedules the same queue without polling, so a
/// task that is always ready kept another shard's credits and deliveries
/// waiting for the timer: consumers got 2048 messages per 100 ms. Timers
/// fire only in the reactor, so waiting on a 1 µs one parks this task until
/// the next poll (or, rarely, returns at once if the microsecond passed
/// before the first poll: the next call yields again).
pub async fn yield_to_reactor() {
    let now = std::time::Instant::now();
    if REACTOR_DUE.get().is_some_and(|due| now < due) {
        futures_lite::future::yield_now().await;
        return;
    }
    glommio::timer::sleep(std::time::Duration::from_micros(1)).await;
    REACTOR_DUE.set(Some(std::time::Instant::now() + REACTOR_INTERVAL));
}

/// Starts `shards` executors and runs `shard_main` on each; returns when all
/// of them have returned.
pub fn run<T, G, F>(
    shards: usize,
    memlock: u64,
    spin_before_park: std::time::Duration,
    shard_main: G,
) -> Result<(), RuntimeError>
where
    T: Send + 'static,
    G: FnOnce(ShardStart<T>) -> F + Clone + Send + 'static,
    F: Future<Output = ()> + 'static,
{
    let cpus = allowed_cpus();
    // Pin one shard per allowed CPU when they fit; more shards than CPUs
    // (tests on small machines) run unpinned.
    let pinned = !cpus.is_empty() && shards <= cpus.len();
    let placement = if pinned {
        let online = CpuSet::online().map_err(|e| RuntimeError(format!("cpu topology: {e}")))?;
        PoolPlacement::Custom(
            cpus.iter()
                .take(shards)
                .map(|&c| online.clone().filter(|l| l.cpu == c))
                .collect(),
        )
    } else {
        PoolPlacement::Unbound(shards)
    };
    // Registered io memory is for DMA file I/O; size it inside the memlock
    // budget so executors do not fall back with warnings.
    let io_memory = ((memlock / (shards as u64 + 1)) / 2).clamp(64 * 1024, 8 << 20) as usize;
    let mesh = MeshBuilder::full(shards, MESH_DEPTH);
    let mut builder = LocalExecutorPoolBuilder::new(placement);
    // An idle shard polls a little before it sleeps: a wakeup from another
    // shard or the network then costs no park (a membarrier IPI) and no
    // eventfd round trip. Not when shards share CPUs: a spinning shard
    // would take the CPU from the one it waits for.
    if pinned && !spin_before_park.is_zero() {
        builder = builder.spin_before_park(spin_before_park);
    }
    let handles = builder
        .name("warren-shard")
        .io_memory(io_memory)
        .blocking_thread_pool_placement(PoolPlacement::Unbound(1))
        .on_all_shards(move || async move {
            let (senders, receivers) = match mesh.join().await {
                Ok(x) => x,
                Err(_) => {
                    tracing::error!("shard mesh failed to join");
                    return;
                }
            };
            let id = senders.peer_id();
            shard_main(ShardStart {
                id,
                shards,
                mailbox: Mailbox::new(senders),
                inbox: Inbox(receivers),
            })
            .await
        })
        .map_err(|e| RuntimeError(format!("cannot start shards: {e}")))?;
    for r in handles.join_all() {
        r.map_err(|e| RuntimeError(format!("shard failed: {e}")))?;
    }
    Ok(())
}
