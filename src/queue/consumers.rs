//! A queue's consumers and the choice of who gets the next message:
//! round-robin among those with capacity (prefetch and transport credit).
use std::collections::VecDeque;

use super::{ConsumeError, ConsumerSpec, TRANSPORT_WINDOW};
use crate::ids::{ChannelRef, ConsumerId};

/// A consumer with what it holds.
#[derive(Debug)]
pub(super) struct Consumer {
    pub(super) spec: ConsumerSpec,
    /// Deliveries not yet acked (acking consumers only).
    pub(super) unacked: u32,
    /// Deliveries not yet written to the consumer's socket.
    pub(super) unsent: u32,
}

impl Consumer {
    fn has_capacity(&self) -> bool {
        self.unsent < TRANSPORT_WINDOW
            && (self.spec.no_ack || self.spec.prefetch == 0 || self.unacked < self.spec.prefetch)
    }
}

/// The consumers of one queue, in round-robin order.
#[derive(Debug, Default)]
pub(super) struct Consumers {
    list: VecDeque<Consumer>,
    /// Next consumer to try, for round-robin.
    cursor: usize,
}

impl Consumers {
    pub(super) fn len(&self) -> usize {
        self.list.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub(super) fn specs(&self) -> impl Iterator<Item = &ConsumerSpec> {
        self.list.iter().map(|c| &c.spec)
    }

    pub(super) fn contains(&self, id: ConsumerId) -> bool {
        self.list.iter().any(|c| c.spec.id == id)
    }

    pub(super) fn get_mut(&mut self, id: ConsumerId) -> Option<&mut Consumer> {
        self.list.iter_mut().find(|c| c.spec.id == id)
    }

    /// Adds a consumer, last in the round-robin. Fails if an exclusive
    /// consumer holds the queue, or if this one is exclusive and others
    /// consume.
    pub(super) fn add(&mut self, spec: ConsumerSpec) -> Result<(), ConsumeError> {
        let exclusive_held = self.list.iter().any(|c| c.spec.exclusive);
        if exclusive_held || (spec.exclusive && !self.list.is_empty()) {
            return Err(ConsumeError::ExclusiveInUse);
        }
        self.list.push_back(Consumer {
            spec,
            unacked: 0,
            unsent: 0,
        });
        Ok(())
    }

    fn remove_at(&mut self, pos: usize) -> Option<ConsumerSpec> {
        if pos < self.cursor {
            self.cursor -= 1;
        }
        let spec = self.list.remove(pos).map(|c| c.spec);
        if self.cursor >= self.list.len() {
            self.cursor = 0;
        }
        spec
    }

    pub(super) fn remove(&mut self, id: ConsumerId) -> Option<ConsumerSpec> {
        let pos = self.list.iter().position(|c| c.spec.id == id)?;
        self.remove_at(pos)
    }

    /// Removes the consumers of channel `ch`.
    pub(super) fn remove_channel(&mut self, ch: ChannelRef) -> Vec<ConsumerSpec> {
        let mut removed = Vec::new();
        while let Some(pos) = self.list.iter().position(|c| c.spec.channel == ch) {
            removed.extend(self.remove_at(pos));
        }
        removed
    }

    pub(super) fn drain(&mut self) -> Vec<ConsumerSpec> {
        self.cursor = 0;
        self.list.drain(..).map(|c| c.spec).collect()
    }

    /// The consumer that gets the next message: the next one with
    /// capacity in round-robin order (which then moves past it), by its
    /// place for [`at`](Self::at).
    pub(super) fn pick(&mut self) -> Option<usize> {
        let n = self.list.len();
        let offset = (0..n).find(|i| self.list[(self.cursor + i) % n].has_capacity())?;
        let idx = (self.cursor + offset) % n;
        self.cursor = (idx + 1) % n;
        Some(idx)
    }

    /// The consumer [`pick`](Self::pick) chose.
    pub(super) fn at(&mut self, idx: usize) -> &mut Consumer {
        &mut self.list[idx]
    }
}
