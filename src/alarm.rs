//! Resource alarms, as RabbitMQ has them: while the data directory's file
//! system has less free space than `--disk-free-limit`, publishers are
//! blocked (`connection.blocked`) and consumers keep going.
//!
//! Shards share no mutable state, so every shard keeps its own copy of the
//! alarm ([`local`], thread-local) and its own monitor task
//! ([`start_disk_monitor`]) that asks `statvfs` once a second. Only shard 0
//! logs the changes, so the log says it once per node.
//!
//! What a connection does under an alarm lives in the connection's frame
//! loop: one that completes a publish while an alarm is set stops being read
//! until every alarm clears.
use std::cell::Cell;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

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
}
