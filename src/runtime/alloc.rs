//! The process's allocator: mimalloc, called so that its fast path is the
//! one taken.
//!
//! Messages are allocated on the publisher's shard and freed on the
//! consumer's: glibc malloc serialises those frees on the first arena's
//! lock; mimalloc takes them through per-thread lock-free lists.
//!
//! Why not the `mimalloc` crate's `MiMalloc`: it sends every allocation
//! through `mi_malloc_aligned`. In mimalloc 3, once a size class's free
//! list runs dry, the aligned path does not collect the blocks freed back
//! to that page (plain `mi_malloc` does) unless the block size is a power
//! of two: it over-allocates from the next class instead, and keeps doing
//! so for every later allocation of that size. A message (`Arc<MessageData>`,
//! 160 bytes) took that path on every publish: callgrind counted 164
//! instructions per allocation against 49, and the pages it spilled into
//! were faulted in and zeroed over and over. Every block mimalloc hands out
//! is aligned to 8 bytes at least, so a layout asking for no more gets
//! plain `mi_malloc`; larger alignments still go through the aligned calls.
use libmimalloc_sys as mi;
use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

/// What every mimalloc block is aligned to (its word size).
const GUARANTEED_ALIGN: usize = 8;

/// mimalloc as the global allocator (`#[global_allocator]` in `main.rs`).
pub struct MiMalloc;

// SAFETY: mimalloc returns blocks of at least the requested size with at
// least `GUARANTEED_ALIGN` alignment from `mi_malloc`/`mi_zalloc`/`mi_realloc`,
// and the requested alignment from the `_aligned` calls; `mi_free` takes
// any of them.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= GUARANTEED_ALIGN {
            mi::mi_malloc(layout.size()) as *mut u8
        } else {
            mi::mi_malloc_aligned(layout.size(), layout.align()) as *mut u8
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= GUARANTEED_ALIGN {
            mi::mi_zalloc(layout.size()) as *mut u8
        } else {
            mi::mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi::mi_free(ptr as *mut c_void);
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= GUARANTEED_ALIGN {
            mi::mi_realloc(ptr as *mut c_void, new_size) as *mut u8
        } else {
            mi::mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks of every small size and alignment are aligned as asked,
    /// usable, and survive a realloc with their contents.
    #[test]
    fn layouts_are_honoured() {
        let a = MiMalloc;
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [1, 7, 8, 24, 40, 152, 160, 167, 1000, 70_000] {
                let layout = Layout::from_size_align(size, align).unwrap();
                unsafe {
                    let p = a.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    std::ptr::write_bytes(p, 0xab, size);
                    let q = a.realloc(p, layout, size * 3);
                    assert_eq!(q as usize % align, 0, "realloc size {size} align {align}");
                    assert!((0..size).all(|i| *q.add(i) == 0xab));
                    a.dealloc(q, Layout::from_size_align(size * 3, align).unwrap());
                    let z = a.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0);
                    assert!((0..size).all(|i| *z.add(i) == 0));
                    a.dealloc(z, layout);
                }
            }
        }
    }
}
