//! Small set helpers shared by the trie and the table.

use ahash::{AHashMap, AHashSet};
use smallvec::SmallVec;
use std::hash::Hash;

/// Above this many elements, membership tests switch from a linear scan to a
/// hash index: most sets (destinations of one routing key, trie states) are
/// tiny, but fanouts of 100k queues must not go quadratic.
const INDEX_THRESHOLD: usize = 16;

/// Insertion-ordered set with O(1) removal (swap_remove) once large.
/// Iteration is over a plain slice, which is what the routing hot path wants.
#[derive(Debug, Clone)]
pub(crate) struct VecSet<T> {
    items: Vec<T>,
    index: Option<AHashMap<T, usize>>,
}

impl<T> Default for VecSet<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            index: None,
        }
    }
}

impl<T> VecSet<T> {
    pub fn as_slice(&self) -> &[T] {
        &self.items
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl<T: Hash + Eq + Clone> VecSet<T> {
    pub fn contains(&self, v: &T) -> bool {
        match &self.index {
            Some(ix) => ix.contains_key(v),
            None => self.items.contains(v),
        }
    }

    pub fn insert(&mut self, v: T) -> bool {
        if self.contains(&v) {
            return false;
        }
        if let Some(ix) = &mut self.index {
            ix.insert(v.clone(), self.items.len());
        }
        self.items.push(v);
        if self.index.is_none() && self.items.len() > INDEX_THRESHOLD {
            let ix = self
                .items
                .iter()
                .enumerate()
                .map(|(i, x)| (x.clone(), i))
                .collect();
            self.index = Some(ix);
        }
        true
    }

    pub fn remove(&mut self, v: &T) -> bool {
        let pos = match &mut self.index {
            Some(ix) => match ix.remove(v) {
                Some(p) => p,
                None => return false,
            },
            None => match self.items.iter().position(|x| x == v) {
                Some(p) => p,
                None => return false,
            },
        };
        self.items.swap_remove(pos);
        if let (Some(ix), Some(moved)) = (&mut self.index, self.items.get(pos)) {
            if let Some(slot) = ix.get_mut(moved) {
                *slot = pos;
            }
        }
        true
    }
}

/// Scratch set for one routing call: inline (no allocation) for the usual
/// handful of elements, with a hash index once it grows so big fan-outs stay
/// linear. `items` keeps every element in insertion order.
pub(crate) struct ScratchSet<T> {
    items: SmallVec<[T; 16]>,
    big: Option<AHashSet<T>>,
}

const SCRATCH_LINEAR_MAX: usize = 32;

impl<T: Copy + Eq + Hash> ScratchSet<T> {
    pub fn new() -> Self {
        Self {
            items: SmallVec::new(),
            big: None,
        }
    }

    /// Returns false if `v` was already present.
    pub fn insert(&mut self, v: T) -> bool {
        match &mut self.big {
            Some(b) => {
                if !b.insert(v) {
                    return false;
                }
            }
            None => {
                if self.items.contains(&v) {
                    return false;
                }
            }
        }
        self.items.push(v);
        if self.big.is_none() && self.items.len() > SCRATCH_LINEAR_MAX {
            self.big = Some(self.items.iter().copied().collect());
        }
        true
    }

    pub fn clear(&mut self) {
        self.items.clear();
        if let Some(b) = &mut self.big {
            b.clear();
        }
    }

    pub fn items(&self) -> &[T] {
        &self.items
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}
