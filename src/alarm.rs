//! Resource alarms, as RabbitMQ has them: while the data directory's file
//! system has less free space than `--disk-free-limit`, or the process's
//! resident memory is above `--vm-memory-high-watermark`, publishers are
//! blocked (`connection.blocked`) and consumers keep going.
//!
//! Shards share no mutable state, so every shard keeps its own copy of the
//! alarms ([`local`], thread-local) and its own monitor tasks: one
//! ([`start_disk_monitor`]) asks `statvfs` once a second, the other
//! ([`start_memory_monitor`]) reads the resident set size from
//! `/proc/self/statm`, more often the closer it is to the limit. For the
//! memory, shard 0's monitor decides and the others follow it (one
//! process-wide flag, read by the monitors only). Only shard 0 logs the
//! changes, so the log says it once per node.
//!
//! What a connection does under an alarm lives in the connection's frame
//! loop: one that completes a publish while an alarm is set stops being read
//! until every alarm clears.
use std::cell::Cell;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::config::MemoryWatermark;
use crate::runtime::sync::{Event, EventWait};

/// How often each shard looks at the free space (RabbitMQ: at most 1 s
/// apart when close to the limit).
pub const DISK_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The reason `connection.blocked` carries for the disk alarm (RabbitMQ's).
pub const DISK_BLOCK_REASON: &str = "low on disk";

/// The reason `connection.blocked` carries for the memory alarm.
pub const MEMORY_BLOCK_REASON: &str = "low on memory";

/// One shard's view of the alarms.
#[derive(Default)]
pub struct Alarms {
    disk: Cell<bool>,
    memory: Cell<bool>,
    changed: Event,
}

impl Alarms {
    /// Whether the disk alarm is set.
    pub fn disk(&self) -> bool {
        self.disk.get()
    }

    /// Whether the memory alarm is set.
    pub fn memory(&self) -> bool {
        self.memory.get()
    }

    /// Whether any alarm is set.
    pub fn any(&self) -> bool {
        self.disk.get() || self.memory.get()
    }

    /// The reason a connection blocked now would be given.
    pub fn reason(&self) -> &'static str {
        if self.memory.get() {
            MEMORY_BLOCK_REASON
        } else {
            DISK_BLOCK_REASON
        }
    }

    /// Sets or clears the memory alarm; true when that changed it.
    pub fn set_memory(&self, on: bool) -> bool {
        if self.memory.replace(on) == on {
            return false;
        }
        self.changed.notify();
        true
    }

    /// Sets or clears the disk alarm; true when that changed it. Waiters on
    /// [`Alarms::changed`] wake on every change.
    pub fn set_disk(&self, on: bool) -> bool {
        if self.disk.replace(on) == on {
            return false;
        }
        self.changed.notify();
        true
    }

    /// Resolves on the next change of any alarm.
    pub fn changed(&self) -> EventWait<'_> {
        self.changed.wait()
    }
}

thread_local! {
    static LOCAL: Rc<Alarms> = Rc::default();
}

/// This shard's alarms.
pub fn local() -> Rc<Alarms> {
    LOCAL.with(Rc::clone)
}

/// Bytes available to an unprivileged user on the file system holding
/// `path` (`f_bavail * f_frsize`, what `df` shows as available).
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: c_path is a valid NUL-terminated string and st points to
    // writable memory of the right type; statvfs fills it on success.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised the struct.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// The node name in RabbitMQ's style, for the log lines.
fn node_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its whole length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let host = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "localhost".to_string()
    };
    format!("warren@{host}")
}

/// Watches the free space of one directory for one shard.
pub struct DiskMonitor {
    shard: usize,
    dir: PathBuf,
    limit: u64,
    alarms: Rc<Alarms>,
    node: String,
    /// The last statvfs failed (logged once per run of failures).
    failing: bool,
}

impl DiskMonitor {
    pub fn new(shard: usize, dir: PathBuf, limit: u64, alarms: Rc<Alarms>) -> Self {
        DiskMonitor {
            shard,
            dir,
            limit,
            alarms,
            node: node_name(),
            failing: false,
        }
    }

    /// One look at the free space: sets or clears the alarm. When the free
    /// space cannot be read the alarm stays as it was.
    pub fn check(&mut self) {
        match free_bytes(&self.dir) {
            Ok(free) => {
                self.failing = false;
                self.update(free);
            }
            Err(e) => {
                if !self.failing && self.shard == 0 {
                    tracing::warn!(
                        "cannot read the free disk space of {}: {e}; disk alarm left {}",
                        self.dir.display(),
                        if self.alarms.disk() { "set" } else { "clear" }
                    );
                }
                self.failing = true;
            }
        }
    }

    /// Applies one free-space figure.
    pub fn update(&mut self, free: u64) {
        let low = free < self.limit;
        if !self.alarms.set_disk(low) || self.shard != 0 {
            return;
        }
        if low {
            tracing::warn!(
                "disk resource limit alarm set on node {}: free bytes {free}, limit {}; \
                 publishers will be blocked until this alarm clears",
                self.node,
                self.limit
            );
        } else {
            tracing::info!(
                "disk resource limit alarm cleared on node {}: free bytes {free}, limit {}",
                self.node,
                self.limit
            );
        }
    }
}

/// Checks the free space of `dir` now (so a broker started below the limit
/// blocks its first publisher) and then every [`DISK_CHECK_INTERVAL`] on
/// this shard. Call once per shard, from inside its executor.
pub fn start_disk_monitor(shard: usize, dir: PathBuf, limit: u64) {
    let mut monitor = DiskMonitor::new(shard, dir, limit, local());
    monitor.check();
    crate::runtime::spawn(async move {
        loop {
            crate::runtime::sleep(DISK_CHECK_INTERVAL).await;
            monitor.check();
        }
    });
}

/// The longest time between two looks at the resident memory: far below
/// (or far above) the limit (RabbitMQ polls every 2.5 s; its rule for the
/// disk, at most 1 s apart when close, is kept for both).
pub const MEMORY_CHECK_MAX_INTERVAL: Duration = Duration::from_secs(1);

/// The shortest: close to the limit. Reading `statm` costs one `pread`,
/// so polling this often costs nothing measurable, and it bounds how far a
/// publisher flood gets past the limit before the alarm stops its
/// connection being read. Measured with `tests/python/test_memory_alarm.py`
/// (a pika flood of 32 KiB messages, 70-520 MiB/s into a debug build,
/// watermark 64 MiB above the idle RSS, VmRSS sampled every 2 ms): at
/// 1 s the peak overshot the watermark by 60-180%, at 100 ms by 3-21%, at
/// 10 ms by 0.2-11% (mostly under 2%).
pub const MEMORY_CHECK_MIN_INTERVAL: Duration = Duration::from_millis(10);

/// How fast the resident memory is assumed to grow at most (bytes per
/// second): the next look comes when memory growing this fast could have
/// crossed the limit, clamped to the two intervals above.
pub const MEMORY_GROWTH_BOUND: u64 = 4 << 30;

/// The memory alarm as shard 0 decided it, for the other shards to follow
/// (every shard measuring for itself, they disagreed for a while whenever
/// the memory hovered at the limit: each one's collection moves the figure
/// the others see).
static MEMORY_ALARM: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The memory figures the management plane shows, set once at start:
/// the watermark (kind 0: not started yet, 1: relative with the fraction's
/// bits in `MEMORY_SETTING`, 2: absolute with the bytes there), the
/// memory available and the computed limit.
static MEMORY_SETTING_KIND: AtomicU64 = AtomicU64::new(0);
static MEMORY_SETTING: AtomicU64 = AtomicU64::new(0);
static MEMORY_AVAILABLE: AtomicU64 = AtomicU64::new(0);
static MEMORY_LIMIT: AtomicU64 = AtomicU64::new(0);

/// The memory high watermark in bytes, as computed at start from the
/// setting and [`memory_available`] (before the start: the default
/// setting's).
pub fn memory_limit() -> u64 {
    if MEMORY_SETTING_KIND.load(Ordering::Acquire) == 0 {
        return MemoryWatermark::default().limit(memory_available());
    }
    MEMORY_LIMIT.load(Ordering::Relaxed)
}

/// The memory the watermark is a fraction of: the machine's (`MemTotal`),
/// or the broker's cgroup limit when that is smaller.
pub fn memory_available() -> u64 {
    if MEMORY_SETTING_KIND.load(Ordering::Acquire) == 0 {
        return available_now();
    }
    MEMORY_AVAILABLE.load(Ordering::Relaxed)
}

/// The watermark setting the broker started with.
pub fn memory_watermark() -> MemoryWatermark {
    let v = MEMORY_SETTING.load(Ordering::Relaxed);
    match MEMORY_SETTING_KIND.load(Ordering::Acquire) {
        1 => MemoryWatermark::Relative(f64::from_bits(v)),
        2 => MemoryWatermark::Absolute(v),
        _ => MemoryWatermark::default(),
    }
}

/// Keeps the figures [`memory_limit`], [`memory_available`] and
/// [`memory_watermark`] give.
fn publish_memory_setting(watermark: MemoryWatermark, available: u64, limit: u64) {
    let (kind, bits) = match watermark {
        MemoryWatermark::Relative(r) => (1, r.to_bits()),
        MemoryWatermark::Absolute(b) => (2, b),
    };
    MEMORY_SETTING.store(bits, Ordering::Relaxed);
    MEMORY_AVAILABLE.store(available, Ordering::Relaxed);
    MEMORY_LIMIT.store(limit, Ordering::Relaxed);
    MEMORY_SETTING_KIND.store(kind, Ordering::Release);
}

fn available_now() -> u64 {
    let total = total_memory();
    let cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|c| cgroup_limit(Path::new("/sys/fs/cgroup"), &c));
    available_of(total, cgroup)
}

/// The memory available: the machine's, or a smaller cgroup limit (a zero
/// `MemTotal`, unreadable, leaves the cgroup's).
pub fn available_of(total: u64, cgroup: Option<u64>) -> u64 {
    match cgroup {
        Some(c) if total == 0 || c < total => c,
        _ => total,
    }
}

/// Total memory (`MemTotal` of `/proc/meminfo`), in bytes; 0 if unreadable.
pub fn total_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| parse_mem_total(&s))
        .unwrap_or(0)
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
pub fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb = line.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    Some(kb.saturating_mul(1024))
}

/// A cgroup memory limit file's value: `memory.max` (v2, `max` = none) or
/// `memory.limit_in_bytes` (v1, where "none" is a huge number: anything
/// from 2^60 on counts as no limit).
pub fn parse_cgroup_limit(text: &str) -> Option<u64> {
    let n = text.trim().parse::<u64>().ok()?;
    (n < 1 << 60).then_some(n)
}

/// The process's cgroup paths from `/proc/self/cgroup`: the v2 one
/// (`0::/path`) and the v1 memory controller's (`N:...memory...:/path`).
pub fn parse_proc_cgroup(text: &str) -> (Option<&str>, Option<&str>) {
    let (mut v2, mut v1) = (None, None);
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            v2 = Some(path);
        } else if controllers.split(',').any(|c| c == "memory") {
            v1 = Some(path);
        }
    }
    (v2, v1)
}

/// The smallest memory limit on the process's cgroup and its ancestors
/// under the cgroup file systems mounted at `root` (v2 there or in
/// `unified/` beside v1's controllers; v1's memory controller in
/// `memory/`), given the text of `/proc/self/cgroup`. None: no limit. A
/// path that does not exist under the mount (another cgroup namespace)
/// is searched from its nearest existing ancestor.
pub fn cgroup_limit(root: &Path, proc_cgroup: &str) -> Option<u64> {
    let (v2, v1) = parse_proc_cgroup(proc_cgroup);
    let mut found: Option<u64> = None;
    let mut look = |mount: PathBuf, path: &str, file: &str| {
        let rel = Path::new(path.trim_start_matches('/'));
        for dir in rel.ancestors() {
            let limit = std::fs::read_to_string(mount.join(dir).join(file))
                .ok()
                .and_then(|t| parse_cgroup_limit(&t));
            if let Some(l) = limit {
                found = Some(found.map_or(l, |f| f.min(l)));
            }
        }
    };
    if let Some(p) = v2 {
        look(root.to_path_buf(), p, "memory.max");
        look(root.join("unified"), p, "memory.max");
    }
    if let Some(p) = v1 {
        look(root.join("memory"), p, "memory.limit_in_bytes");
    }
    found
}

/// Resident pages (the second field) of a `/proc/<pid>/statm` text.
pub fn parse_statm(statm: &str) -> Option<u64> {
    statm.split_whitespace().nth(1)?.parse().ok()
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as u64
    } else {
        4096
    }
}

/// The process's resident set size in bytes (`/proc/self/statm`, as
/// RabbitMQ's `rss` calculation strategy); 0 if unreadable.
pub fn resident_memory() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| parse_statm(&s))
        .map_or(0, |pages| pages.saturating_mul(page_size()))
}

/// Reads the resident memory through one `statm` descriptor kept open
/// (each read is one `pread`: the kernel regenerates the text at offset 0).
struct Statm {
    file: Option<std::fs::File>,
    page: u64,
}

impl Statm {
    fn open() -> Self {
        Statm {
            file: std::fs::File::open("/proc/self/statm").ok(),
            page: page_size(),
        }
    }

    fn rss(&mut self) -> Option<u64> {
        use std::os::unix::fs::FileExt;
        let file = self.file.as_ref()?;
        let mut buf = [0u8; 128];
        let n = file.read_at(&mut buf, 0).ok()?;
        let text = std::str::from_utf8(&buf[..n]).ok()?;
        Some(parse_statm(text)?.saturating_mul(self.page))
    }
}

/// How long until the next look at the memory, `rss` bytes in use against
/// `limit`: the time memory growing (or shrinking) at
/// [`MEMORY_GROWTH_BOUND`] would take to cross the limit, clamped to
/// [`MEMORY_CHECK_MIN_INTERVAL`]..[`MEMORY_CHECK_MAX_INTERVAL`].
pub fn memory_check_interval(rss: u64, limit: u64) -> Duration {
    let distance = rss.abs_diff(limit);
    let secs = distance as f64 / MEMORY_GROWTH_BOUND as f64;
    Duration::from_secs_f64(secs.min(MEMORY_CHECK_MAX_INTERVAL.as_secs_f64()))
        .max(MEMORY_CHECK_MIN_INTERVAL)
}

/// Watches the process's resident memory for one shard.
pub struct MemoryMonitor {
    shard: usize,
    limit: u64,
    alarms: Rc<Alarms>,
    node: String,
    statm: Statm,
    /// The last read failed (logged once per run of failures).
    failing: bool,
    /// When this shard last had the allocator give its free memory back.
    collected: Option<std::time::Instant>,
}

impl MemoryMonitor {
    pub fn new(shard: usize, limit: u64, alarms: Rc<Alarms>) -> Self {
        MemoryMonitor {
            shard,
            limit,
            alarms,
            node: node_name(),
            statm: Statm::open(),
            failing: false,
            collected: None,
        }
    }

    /// One look at the resident memory, and when to look next. Shard 0
    /// decides (sets or clears the alarm, for the node); the others follow
    /// its decision. Each shard near or above the limit first has the
    /// allocator give its own free memory back. When the memory cannot be
    /// read the alarm stays as it was.
    pub fn check(&mut self) -> Duration {
        let Some(mut rss) = self.statm.rss() else {
            if !self.failing && self.shard == 0 {
                tracing::warn!(
                    "cannot read the resident memory (/proc/self/statm); memory alarm left {}",
                    if self.alarms.memory() { "set" } else { "clear" }
                );
            }
            self.failing = true;
            self.follow();
            return MEMORY_CHECK_MAX_INTERVAL;
        };
        self.failing = false;
        // Near or above the limit, what counts is the memory in use: the
        // free memory the allocator keeps goes back first.
        let near = rss as f64 >= self.limit as f64 * MEMORY_COLLECT_FROM;
        if near && self.collect() {
            rss = self.statm.rss().unwrap_or(rss);
        }
        if self.shard == 0 {
            self.update(rss);
            MEMORY_ALARM.store(self.alarms.memory(), Ordering::Relaxed);
        } else {
            self.follow();
        }
        let next = memory_check_interval(rss, self.limit);
        if near {
            next.min(MEMORY_COLLECT_INTERVAL)
        } else {
            next
        }
    }

    /// Takes shard 0's decision into this shard's alarms.
    fn follow(&mut self) {
        if self.shard != 0 {
            self.alarms.set_memory(MEMORY_ALARM.load(Ordering::Relaxed));
        }
    }

    /// Applies one resident-memory figure: the alarm is set while it is
    /// above the limit (RabbitMQ: used > limit).
    pub fn update(&mut self, rss: u64) {
        let high = rss > self.limit;
        if !self.alarms.set_memory(high) || self.shard != 0 {
            return;
        }
        if high {
            tracing::warn!(
                "vm_memory_high_watermark set. Memory used: {rss} allowed: {}",
                self.limit
            );
            tracing::warn!(
                "memory resource limit alarm set on node {}; \
                 publishers will be blocked until this alarm clears",
                self.node
            );
        } else {
            tracing::info!(
                "vm_memory_high_watermark clear. Memory used: {rss} allowed: {}",
                self.limit
            );
            tracing::info!("memory resource limit alarm cleared on node {}", self.node);
        }
    }
}

impl MemoryMonitor {
    /// Has the allocator hand this shard's free memory back to the system,
    /// at most every [`MEMORY_COLLECT_INTERVAL`]; true when it did.
    ///
    /// mimalloc returns freed pages only after a delay (1 s) and only when
    /// the thread that owns them allocates again, and frees from other
    /// shards wait in its pages' cross-thread lists until then. A shard that
    /// fell idle (its publisher blocked, its queues drained by consumers on
    /// other shards) would keep the memory resident, and the alarm set; and
    /// memory freed but kept would set it, or keep it set, with less in use
    /// than the limit. Every shard collects its own heap (mimalloc's are
    /// per thread), so near the limit they all do.
    fn collect(&mut self) -> bool {
        let now = std::time::Instant::now();
        if self
            .collected
            .is_some_and(|t| now.duration_since(t) < MEMORY_COLLECT_INTERVAL)
        {
            return false;
        }
        self.collected = Some(now);
        release_free_memory();
        true
    }
}

/// How often, at most, a shard has the allocator give back its free
/// memory while its resident memory is near or above the limit.
pub const MEMORY_COLLECT_INTERVAL: Duration = Duration::from_millis(100);

/// From which fraction of the limit the shards have the allocator give
/// back its free memory before they compare.
pub const MEMORY_COLLECT_FROM: f64 = 0.9;

/// Has the allocator return the calling thread's free memory to the
/// system (a no-op when mimalloc is not the global allocator: it then
/// holds nothing). mimalloc's `mi_collect` frees this thread's empty pages
/// (taking in the blocks other threads freed) and, with `force`, purges
/// (`MADV_DONTNEED`) the free memory of its arenas now rather than after
/// the purge delay.
pub fn release_free_memory() {
    // SAFETY: mi_collect has no preconditions; it only touches the calling
    // thread's heap and the shared arenas, under mimalloc's own locking.
    unsafe { mi_collect(true) }
}

// mimalloc's, linked in through `runtime::alloc` (libmimalloc-sys declares
// it only with its `extended` feature).
extern "C" {
    fn mi_collect(force: bool);
}

/// Computes the memory limit for `watermark` (kept for
/// [`memory_limit`]), checks the resident memory now and then again and
/// again on this shard, sooner the closer it is to the limit (see
/// [`memory_check_interval`]). Call once per shard, from inside its
/// executor.
pub fn start_memory_monitor(shard: usize, watermark: MemoryWatermark) {
    let available = available_now();
    let limit = watermark.limit(available);
    publish_memory_setting(watermark, available, limit);
    if shard == 0 {
        const MIB: u64 = 1 << 20;
        tracing::info!(
            "Memory high watermark set to {} MiB ({limit} bytes) of {} MiB ({available} bytes) total",
            limit / MIB,
            available / MIB
        );
    }
    let mut monitor = MemoryMonitor::new(shard, limit, local());
    let mut next = monitor.check();
    crate::runtime::spawn(async move {
        loop {
            crate::runtime::sleep(next).await;
            next = monitor.check();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future;

    #[test]
    fn free_bytes_of_an_existing_dir() {
        let free = free_bytes(&std::env::temp_dir()).expect("statvfs of the temp dir");
        assert!(free > 0);
    }

    #[test]
    fn free_bytes_of_a_missing_dir_is_an_error() {
        let missing = std::env::temp_dir().join("warren-alarm-test-does-not-exist/x/y");
        let err = free_bytes(&missing).expect_err("statvfs of a missing path");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn set_and_clear_notify_only_on_change() {
        let alarms = Alarms::default();
        assert!(!alarms.any());
        let wait = alarms.changed();
        assert!(
            !alarms.set_disk(false),
            "clearing a clear alarm is no change"
        );
        assert!(future::block_on(future::poll_once(alarms.changed())).is_none());
        assert!(alarms.set_disk(true));
        assert!(alarms.disk() && alarms.any());
        future::block_on(wait);
        assert!(!alarms.set_disk(true));
        let wait = alarms.changed();
        assert!(alarms.set_disk(false));
        future::block_on(wait);
        assert!(!alarms.any());
    }

    #[test]
    fn monitor_compares_with_the_limit() {
        let alarms = Rc::new(Alarms::default());
        let mut m = DiskMonitor::new(1, std::env::temp_dir(), 1000, alarms.clone());
        m.update(999);
        assert!(alarms.disk(), "below the limit sets the alarm");
        m.update(1000);
        assert!(!alarms.disk(), "at the limit is enough space");
        m.update(0);
        assert!(alarms.disk());
        m.update(u64::MAX);
        assert!(!alarms.disk());
    }

    #[test]
    fn monitor_checks_the_real_file_system() {
        let alarms = Rc::new(Alarms::default());
        let mut m = DiskMonitor::new(1, std::env::temp_dir(), u64::MAX, alarms.clone());
        m.check();
        assert!(alarms.disk(), "no file system has u64::MAX bytes free");
        let mut m = DiskMonitor::new(1, std::env::temp_dir(), 0, alarms.clone());
        m.check();
        assert!(!alarms.disk(), "a zero limit never alarms");
        // An unreadable directory leaves the alarm as it was.
        alarms.set_disk(true);
        let missing = std::env::temp_dir().join("warren-alarm-test-does-not-exist");
        let mut m = DiskMonitor::new(1, missing, 0, alarms.clone());
        m.check();
        assert!(alarms.disk());
    }

    #[test]
    fn statm_resident_pages() {
        assert_eq!(parse_statm("1000 250 30 1 0 400 0\n"), Some(250));
        assert_eq!(parse_statm("1000"), None);
        assert_eq!(parse_statm(""), None);
        assert_eq!(parse_statm("1000 x 30"), None);
    }

    #[test]
    fn resident_memory_of_this_process() {
        let rss = resident_memory();
        assert!(rss > 0 && rss.is_multiple_of(page_size()), "{rss}");
        // The descriptor kept open reads again from offset 0.
        let mut statm = Statm::open();
        let a = statm.rss().expect("statm");
        let b = statm.rss().expect("statm again");
        assert!(a > 0 && b > 0);
        // black_box: a release build would drop an allocation never read.
        let big = std::hint::black_box(vec![1u8; 64 << 20]);
        let c = statm.rss().expect("statm after touching 64 MiB");
        assert!(c >= b + (48 << 20), "{b} -> {c}");
        drop(std::hint::black_box(big));
    }

    #[test]
    fn mem_total_in_bytes() {
        let meminfo = "MemTotal:       24683584 kB\nMemFree:         1000 kB\n";
        assert_eq!(parse_mem_total(meminfo), Some(24683584 * 1024));
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
        assert!(total_memory() > 0);
    }

    #[test]
    fn cgroup_limit_files() {
        assert_eq!(parse_cgroup_limit("max\n"), None);
        assert_eq!(parse_cgroup_limit("536870912\n"), Some(536870912));
        assert_eq!(
            parse_cgroup_limit("9223372036854771712\n"),
            None,
            "v1's none"
        );
        assert_eq!(parse_cgroup_limit(""), None);
    }

    #[test]
    fn proc_cgroup_paths() {
        let hybrid = "9:name=systemd:/\n4:memory:/process_api/23b8\n1:cpu,cpuacct:/\n0::/\n";
        assert_eq!(
            parse_proc_cgroup(hybrid),
            (Some("/"), Some("/process_api/23b8"))
        );
        assert_eq!(
            parse_proc_cgroup("0::/system.slice/warren.service\n"),
            (Some("/system.slice/warren.service"), None)
        );
        assert_eq!(
            parse_proc_cgroup("5:cpuacct,memory:/docker/abc\n"),
            (None, Some("/docker/abc"))
        );
        assert_eq!(parse_proc_cgroup("garbage\n"), (None, None));
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn cgroup_limit_of_the_process_and_its_ancestors() {
        let root = std::env::temp_dir().join(format!("warren-cgroup-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        // v2: the service's own limit, and a smaller one above it.
        write(&root.join("v2/memory.max"), "max\n");
        write(&root.join("v2/system.slice/memory.max"), "2000000\n");
        write(
            &root.join("v2/system.slice/warren.service/memory.max"),
            "3000000\n",
        );
        let v2 = "0::/system.slice/warren.service\n";
        assert_eq!(cgroup_limit(&root.join("v2"), v2), Some(2_000_000));
        write(&root.join("v2/system.slice/memory.max"), "max\n");
        assert_eq!(cgroup_limit(&root.join("v2"), v2), Some(3_000_000));
        assert_eq!(
            cgroup_limit(&root.join("v2"), "0::/\n"),
            None,
            "the root has none"
        );
        // Hybrid: v2 in unified/, v1's memory controller in memory/.
        write(&root.join("hy/unified/memory.max"), "max\n");
        write(
            &root.join("hy/memory/memory.limit_in_bytes"),
            "9223372036854771712\n",
        );
        write(
            &root.join("hy/memory/docker/abc/memory.limit_in_bytes"),
            "1048576\n",
        );
        let hybrid = "4:memory:/docker/abc\n0::/\n";
        assert_eq!(cgroup_limit(&root.join("hy"), hybrid), Some(1_048_576));
        // A path from another cgroup namespace: its ancestors still count.
        assert_eq!(
            cgroup_limit(&root.join("hy"), "4:memory:/elsewhere/x\n0::/\n"),
            None
        );
        assert_eq!(cgroup_limit(&root.join("none"), hybrid), None);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn available_is_the_smaller() {
        assert_eq!(available_of(8 << 30, None), 8 << 30);
        assert_eq!(available_of(8 << 30, Some(1 << 30)), 1 << 30);
        assert_eq!(available_of(8 << 30, Some(16 << 30)), 8 << 30);
        assert_eq!(available_of(0, Some(1 << 30)), 1 << 30);
        assert!(memory_available() > 0);
    }

    #[test]
    fn limits_from_the_setting() {
        assert_eq!(MemoryWatermark::Relative(0.4).limit(10_000), 4_000);
        assert_eq!(
            MemoryWatermark::Absolute(512 << 20).limit(10_000),
            512 << 20
        );
        assert_eq!(
            MemoryWatermark::Relative(0.4).limit(available_of(8 << 30, Some(1 << 30))),
            (0.4 * (1u64 << 30) as f64) as u64
        );
    }

    #[test]
    fn check_interval_shrinks_near_the_limit() {
        let limit = 1 << 30;
        assert_eq!(
            memory_check_interval(0, 100 << 30),
            MEMORY_CHECK_MAX_INTERVAL
        );
        assert_eq!(
            memory_check_interval(limit, limit),
            MEMORY_CHECK_MIN_INTERVAL
        );
        assert_eq!(
            memory_check_interval(limit - 1, limit),
            MEMORY_CHECK_MIN_INTERVAL
        );
        assert_eq!(
            memory_check_interval(limit + 1, limit),
            MEMORY_CHECK_MIN_INTERVAL
        );
        let mid = memory_check_interval(limit - MEMORY_GROWTH_BOUND / 10, limit);
        assert!((mid.as_secs_f64() - 0.1).abs() < 0.001, "{mid:?}");
    }

    #[test]
    fn memory_monitor_compares_with_the_limit() {
        let alarms = Rc::new(Alarms::default());
        let mut m = MemoryMonitor::new(1, 1000, alarms.clone());
        m.update(1000);
        assert!(!alarms.memory(), "at the limit is not above it");
        m.update(1001);
        assert!(alarms.memory() && alarms.any());
        assert_eq!(alarms.reason(), MEMORY_BLOCK_REASON);
        m.update(999);
        assert!(!alarms.memory() && !alarms.any());
        // The real figure: nothing is below a zero limit, anything is
        // below u64::MAX.
        let mut m = MemoryMonitor::new(0, 0, alarms.clone());
        m.check();
        assert!(alarms.memory());
        let mut m = MemoryMonitor::new(0, u64::MAX, alarms.clone());
        assert_eq!(m.check(), MEMORY_CHECK_MAX_INTERVAL);
        assert!(!alarms.memory());
    }
}
