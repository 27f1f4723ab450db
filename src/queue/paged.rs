//! The part of a durable queue's backlog that is only on disk.
//!
//! 16 bytes a message, in chunks, so ten million queued messages cost
//! ~160 MB of index and growing never copies the whole list.
use std::collections::VecDeque;

use crate::ids::{Loc, MsgId};

const CHUNK: usize = 4096;
const REDELIVERED: u64 = 1 << 63;
/// `seg` of a transient message held in memory (see `Queue::paged_mem`).
pub const IN_MEMORY: u32 = u32::MAX;

/// A message of the paged backlog: its id, redelivered flag and place in the
/// log, in 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagedEntry {
    /// Message id; the top bit is the redelivered flag.
    tagged_id: u64,
    seg: u32,
    off: u32,
}

impl PagedEntry {
    /// The entry of message `id`; `loc` is `None` for a transient message, whose
    /// body the queue keeps in memory.
    pub fn new(id: MsgId, loc: Option<Loc>, redelivered: bool) -> Self {
        let (seg, off) = loc.map_or((IN_MEMORY, 0), |l| (l.seg, l.off));
        PagedEntry {
            tagged_id: id | if redelivered { REDELIVERED } else { 0 },
            seg,
            off,
        }
    }

    /// The message id, without the redelivered flag.
    pub fn id(&self) -> MsgId {
        self.tagged_id & !REDELIVERED
    }

    /// Whether the message was delivered before.
    pub fn redelivered(&self) -> bool {
        self.tagged_id & REDELIVERED != 0
    }

    /// Its place in the log; `None` for a transient message held in memory.
    pub fn loc(&self) -> Option<Loc> {
        (self.seg != IN_MEMORY).then_some(Loc {
            seg: self.seg,
            off: self.off,
        })
    }

    fn set_loc(&mut self, loc: Loc) {
        self.seg = loc.seg;
        self.off = loc.off;
    }
}

/// FIFO of paged entries, ids increasing.
#[derive(Debug, Default)]
pub struct PagedList {
    chunks: VecDeque<VecDeque<PagedEntry>>,
    len: usize,
}

impl PagedList {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there is no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends an entry. Its id must exceed every id already here: lookups
    /// binary-search by id.
    pub fn push_back(&mut self, e: PagedEntry) {
        match self.chunks.back_mut() {
            Some(c) if c.len() < CHUNK => c.push_back(e),
            _ => {
                let mut c = VecDeque::with_capacity(CHUNK);
                c.push_back(e);
                self.chunks.push_back(c);
            }
        }
        self.len += 1;
    }

    /// Takes the oldest entry.
    pub fn pop_front(&mut self) -> Option<PagedEntry> {
        let first = self.chunks.front_mut()?;
        let e = first.pop_front();
        if first.is_empty() {
            self.chunks.pop_front();
        }
        if e.is_some() {
            self.len -= 1;
        }
        e
    }

    /// The entry with id `id`, if it is here.
    pub fn find_mut(&mut self, id: MsgId) -> Option<&mut PagedEntry> {
        let ci = self
            .chunks
            .partition_point(|c| c.back().is_some_and(|e| e.id() < id));
        let chunk = self.chunks.get_mut(ci)?;
        let i = chunk.binary_search_by_key(&id, |e| e.id()).ok()?;
        chunk.get_mut(i)
    }

    /// Records that entry `id` moved to `loc` (log compaction); false if it is
    /// not here.
    pub fn relocate(&mut self, id: MsgId, loc: Loc) -> bool {
        match self.find_mut(id) {
            Some(e) => {
                e.set_loc(loc);
                true
            }
            None => false,
        }
    }

    /// Every entry, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &PagedEntry> {
        self.chunks.iter().flatten()
    }

    /// Drops every entry.
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_and_lookup_across_chunks() {
        let mut p = PagedList::default();
        for id in 0..10_000u64 {
            let loc = Loc {
                seg: (id / 100) as u32,
                off: id as u32,
            };
            p.push_back(PagedEntry::new(id * 2, Some(loc), id % 3 == 0));
        }
        assert_eq!(p.len(), 10_000);
        assert!(p.find_mut(4097).is_none());
        let e = *p.find_mut(2 * 5000).unwrap();
        assert_eq!((e.id(), e.redelivered()), (10_000, false));
        assert!(p.relocate(2 * 9999, Loc { seg: 777, off: 1 }));
        for id in 0..9999u64 {
            let e = p.pop_front().unwrap();
            assert_eq!(e.id(), id * 2);
            assert_eq!(e.redelivered(), id % 3 == 0);
        }
        assert_eq!(p.pop_front().unwrap().loc().unwrap().seg, 777);
        assert!(p.pop_front().is_none());
        assert!(p.is_empty());
    }
}
