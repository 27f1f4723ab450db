//! The process's figures for `status`: resident memory and the memory high
//! watermark's limit (measured and computed by `alarm`, whose memory
//! monitor uses the same figures), file descriptors, free disk space.
use std::path::Path;

pub use crate::alarm::{memory_limit, resident_memory, total_memory};

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
