//! File I/O off the reactor's critical path, behind the runtime seam.
use std::fs::File;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};

/// fdatasync through io_uring: the shard keeps running while the disk works.
/// Writes made through a shared mapping of the file are covered too (Linux
/// `msync(MS_SYNC)` is the same range sync).
pub async fn fdatasync(file: &File) -> io::Result<()> {
    // SAFETY: dup gives a new fd that the BufferedFile owns and closes.
    let fd = unsafe { libc::dup(file.as_raw_fd()) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a valid, owned file descriptor (just duplicated).
    let f = unsafe { glommio::io::BufferedFile::from_raw_fd(fd) };
    let r = f.fdatasync().await.map_err(io::Error::from);
    let _ = f.close().await;
    r
}

/// Runs blocking work (file creation, unlinking, munmap) on the shard's
/// blocking thread, not on the reactor.
pub fn blocking<F, R>(f: F) -> impl Future<Output = R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    glommio::executor().spawn_blocking(f)
}
