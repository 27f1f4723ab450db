//! Batched, bounded cross-shard mailboxes over glommio's channel mesh.
//!
//! Messages for another shard are collected in a per-destination batch and
//! handed to the mesh as one `Vec` when the shard flushes (at the end of each
//! unit of work), per the field notes: one mesh message per batch, deep
//! channels. When a destination's channel is full, batches wait in an
//! ordered backlog drained by one task, and the shard reports itself
//! congested so publishers stop reading their sockets (backpressure through
//! TCP) until the backlog drains.
use glommio::channels::channel_mesh::Senders;
use glommio::{GlommioError, ResourceType};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use super::sync::Event;

/// Batches parked per destination before publishers are paused.
const CONGESTED_BATCHES: usize = 4;

/// One shard's outgoing side of the mesh: a batch per destination, flushed
/// as one mesh message each.
pub struct Mailbox<T: Send + 'static> {
    me: usize,
    senders: Senders<Vec<T>>,
    pending: RefCell<Vec<Vec<T>>>,
    backlog: RefCell<Vec<VecDeque<Vec<T>>>>,
    draining: Vec<Cell<bool>>,
    /// Notified whenever a backlog shrinks.
    drained: Event,
    /// Batches handed to the mesh (or its backlog), for metrics.
    batches_sent: Cell<u64>,
}

impl<T: Send + 'static> Mailbox<T> {
    /// The mailbox of the shard that owns `senders`.
    pub fn new(senders: Senders<Vec<T>>) -> Rc<Self> {
        let n = senders.nr_consumers();
        Rc::new(Self {
            me: senders.peer_id(),
            senders,
            pending: RefCell::new((0..n).map(|_| Vec::new()).collect()),
            backlog: RefCell::new((0..n).map(|_| VecDeque::new()).collect()),
            draining: (0..n).map(|_| Cell::new(false)).collect(),
            drained: Event::default(),
            batches_sent: Cell::new(0),
        })
    }

    /// Queues a message for shard `to` (never this shard: local work takes
    /// the direct path).
    pub fn push(&self, to: usize, msg: T) {
        debug_assert_ne!(to, self.me);
        self.pending.borrow_mut()[to].push(msg);
    }

    /// Hands every pending batch to the mesh.
    pub fn flush(self: &Rc<Self>) {
        let mut pending = self.pending.borrow_mut();
        for (to, batch) in pending.iter_mut().enumerate() {
            if batch.is_empty() {
                continue;
            }
            let batch = std::mem::take(batch);
            self.batches_sent.set(self.batches_sent.get() + 1);
            if self.backlog.borrow()[to].is_empty() {
                match self.senders.try_send_to(to, batch) {
                    Ok(()) => continue,
                    Err(GlommioError::WouldBlock(ResourceType::Channel(batch))) => {
                        self.backlog.borrow_mut()[to].push_back(batch)
                    }
                    // The peer is gone (shutdown): nothing to deliver to.
                    Err(_) => continue,
                }
            } else {
                self.backlog.borrow_mut()[to].push_back(batch);
            }
            if !self.draining[to].replace(true) {
                let this = self.clone();
                glommio::spawn_local(async move { this.drain(to).await }).detach();
            }
        }
    }

    async fn drain(self: Rc<Self>, to: usize) {
        loop {
            let next = self.backlog.borrow_mut()[to].pop_front();
            let Some(batch) = next else { break };
            if self.senders.send_to(to, batch).await.is_err() {
                // The peer is gone (shutdown): nothing left to deliver to.
                self.backlog.borrow_mut()[to].clear();
                break;
            }
            self.drained.notify();
        }
        self.draining[to].set(false);
        self.drained.notify();
    }

    /// Batches sent to other shards so far.
    pub fn batches_sent(&self) -> u64 {
        self.batches_sent.get()
    }

    /// Whether a destination's backlog is long enough that publishers
    /// should stop reading their sockets.
    pub fn congested(&self) -> bool {
        self.backlog
            .borrow()
            .iter()
            .any(|b| b.len() >= CONGESTED_BATCHES)
    }

    /// Waits until no destination is congested.
    pub async fn until_uncongested(&self) {
        while self.congested() {
            self.drained.wait().await;
        }
    }
}
