//! Segment files: creation, preallocation and mapping.
//!
//! A segment is a fixed-size file, preallocated with `fallocate` so appends
//! never extend it, and mapped writable with memmap2. Creating and
//! pre-faulting one takes milliseconds, so the shard asks for the next one
//! ahead of time and builds it on the runtime's blocking thread ([`prepare`] is
//! plain blocking code).
use memmap2::MmapMut;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

pub const EXTENSION: &str = "seg";

pub fn path(dir: &Path, seq: u32) -> PathBuf {
    dir.join(format!("{seq:08}.{EXTENSION}"))
}

/// The sequence number of a segment file name, if it is one.
pub fn parse_name(name: &str) -> Option<u32> {
    let stem = name.strip_suffix(".seg")?;
    if stem.len() != 8 {
        return None;
    }
    stem.parse().ok()
}

/// Segment files in `dir`, oldest first.
pub fn list(dir: &Path) -> io::Result<Vec<(u32, PathBuf)>> {
    let mut out = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for e in entries {
                let e = e?;
                if let Some(seq) = e.file_name().to_str().and_then(parse_name) {
                    out.push((seq, e.path()));
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    out.sort();
    Ok(out)
}

/// A new segment, allocated and mapped, not yet written.
pub struct Prepared {
    pub seq: u32,
    pub path: PathBuf,
    pub file: File,
    pub map: MmapMut,
}

/// Creates segment `seq` of `size` bytes in `dir`: preallocates it, maps it
/// and faults its pages in read-only so the first writes take only minor
/// faults. Blocking; run it off the reactor.
pub fn prepare(dir: &Path, seq: u32, size: u64) -> io::Result<Prepared> {
    let path = path(dir, seq);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    if let Err(e) = preallocate(&file, size) {
        // No half-made segment left behind for recovery to puzzle over.
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    // SAFETY: the file is ours alone (created just now, never truncated
    // while mapped); the mapping is only written through this process.
    let map = unsafe { MmapMut::map_mut(&file)? };
    populate(&map);
    // The directory entry must survive a crash too.
    File::open(dir)?.sync_all()?;
    Ok(Prepared {
        seq,
        path,
        file,
        map,
    })
}

/// Gives the file `size` bytes of real blocks. A mapping over a hole is a
/// trap: when the file system is full, the first write into it kills the
/// process with SIGBUS. So ENOSPC (or any other failure) is an error, and
/// a file system without `fallocate` gets its blocks written out instead.
fn preallocate(file: &File, size: u64) -> io::Result<()> {
    // SAFETY: plain syscall on an owned fd.
    let r = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, size as libc::off_t) };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
        return Err(e);
    }
    write_zeros(file, size)
}

/// Allocates by writing: for file systems without `fallocate` (old tmpfs,
/// some FUSE). Slower, but every page of the mapping is backed.
fn write_zeros(file: &File, size: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let chunk = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < size {
        let n = chunk.len().min((size - at) as usize);
        file.write_all_at(&chunk[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

fn populate(map: &MmapMut) {
    // MADV_POPULATE_READ (Linux 5.14): map every page now, read-only, so a
    // write later is a minor fault instead of a page-cache miss. Best effort.
    const MADV_POPULATE_READ: libc::c_int = 22;
    // SAFETY: advisory call over our own mapping.
    unsafe {
        libc::madvise(
            map.as_ptr() as *mut libc::c_void,
            map.len(),
            MADV_POPULATE_READ,
        );
    }
}

/// Reads exactly `buf.len()` bytes at `offset`.
pub fn read_at(file: &File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset)
}

/// Reads up to `buf.len()` bytes at `offset` (fewer at the end of the
/// file); returns how many.
pub fn read_some_at(file: &File, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
