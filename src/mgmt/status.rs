//! The process's figures for `status`: resident memory, the memory high
//! watermark's limit, file descriptors, free disk space.
use std::path::Path;

/// RabbitMQ 3.x's default `vm_memory_high_watermark.relative`.
pub const MEMORY_HIGH_WATERMARK: f64 = 0.4;

/// Resident set size in bytes (`/proc/self/statm`, as RabbitMQ's
/// `rss` calculation strategy).
pub fn resident_memory() -> u64 {
    let page = page_size();
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page)
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

/// Total memory (`MemTotal`), in bytes.
pub fn total_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kb| kb * 1024)
}

/// Open file descriptors and the limit on them.
pub fn file_descriptors() -> (u64, u64) {
    let used = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    // SAFETY: getrlimit with a valid, owned struct.
    let limit = unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur
        } else {
            0
        }
    };
    (used, limit)
}

/// Free bytes on the file system holding `dir`.
pub fn disk_free(dir: &Path) -> u64 {
    crate::alarm::free_bytes(dir).unwrap_or(0)
}
