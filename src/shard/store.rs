//! A shard's side of durable storage: logging persistent messages of the
//! durable queues it owns, group commit, confirms that wait for the disk,
//! reading paged backlogs back, compaction and segment reclamation.
//!
//! Tasks (one each per shard):
//! - the **committer** wakes when something was appended, fdatasyncs every
//!   segment written since the last round with io_uring (one sync covers
//!   every record before it: group commit), then releases the confirms
//!   that waited for it and deletes segments that became garbage;
//! - the **maintainer** runs every second: compaction of sealed segments
//!   kept alive by a few old messages, and a spare segment prepared on the
//!   blocking thread before it is needed.
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::{ConfirmRef, OwnedQueue, Shard};
use crate::config::{StorageConfig, SyncMode};
use crate::ids::{Loc, QueueId};
use crate::queue::{LogEvent, Message, PagedEntry};
use crate::runtime::{io, sleep};
use crate::storage::MessageLog;

/// A shard's message log and what waits on it.
pub struct ShardStore {
    log: MessageLog,
    config: StorageConfig,
    /// Confirms waiting for the log to be synced past a position.
    waiters: VecDeque<(u64, ConfirmRef)>,
    settles: Vec<(QueueId, u64, Loc)>,
    delivered: Vec<(QueueId, u64, Loc)>,
}

/// Messages read back per refill round.
const REFILL_BATCH: usize = 4096;

impl ShardStore {
    /// The store over a recovered (or new) log.
    pub fn new(log: MessageLog, config: StorageConfig) -> Self {
        ShardStore {
            log,
            config,
            waiters: VecDeque::new(),
            settles: Vec::new(),
            delivered: Vec::new(),
        }
    }

    /// Files a queue's log events; written by [`flush_events`].
    fn note(&mut self, uid: QueueId, events: Vec<LogEvent>) {
        for ev in events {
            match ev {
                LogEvent::Delivered(id, loc) => self.delivered.push((uid, id, loc)),
                LogEvent::Settled(id, loc) => self.settles.push((uid, id, loc)),
                LogEvent::Purged { up_to, kept, locs } => {
                    if let Err(e) = self.log.append_purge(uid, up_to, &kept, &locs) {
                        tracing::error!("message log: cannot record a purge: {e}");
                    }
                }
            }
        }
    }

    /// Writes the settlements and delivery marks gathered in this pump as
    /// one record each. Nothing waits for them to be synced: a lost ack
    /// means a redelivery, as with any broker.
    pub(super) fn flush_events(&mut self) {
        if !self.settles.is_empty() {
            let settles = std::mem::take(&mut self.settles);
            if let Err(e) = self.log.append_settles(&settles) {
                tracing::error!("message log: cannot record acks: {e}");
            }
        }
        if !self.delivered.is_empty() {
            let delivered = std::mem::take(&mut self.delivered);
            if let Err(e) = self.log.append_delivered(&delivered) {
                tracing::error!("message log: cannot record deliveries: {e}");
            }
        }
    }

    /// Whether a confirm for a record just appended must wait for a sync.
    fn confirm_waits(&self) -> bool {
        self.config.sync == SyncMode::Fsync
    }

    fn wait_for_sync(&mut self, confirm: ConfirmRef) {
        self.waiters.push_back((self.log.appended(), confirm));
    }

    fn synced(&mut self, upto: u64) -> Vec<ConfirmRef> {
        self.log.mark_synced(upto);
        let mut done = Vec::new();
        while let Some((pos, _)) = self.waiters.front() {
            if *pos > upto {
                break;
            }
            done.extend(self.waiters.pop_front().map(|(_, c)| c));
        }
        done
    }
}

impl Shard {
    /// Enqueues `msg` on owned queue `id`, logging it first when it is
    /// persistent and the queue durable. Returns true when the confirm
    /// (if any) will come from the committer instead of right away.
    pub(super) fn enqueue(&self, id: QueueId, msg: Message, confirm: Option<ConfirmRef>) -> bool {
        let mut queues = self.queues.borrow_mut();
        let Some(oq) = queues.get_mut(&id) else {
            return false;
        };
        let mut waits = false;
        let loc = if oq.logged && msg.persistent {
            let mut store = self.store.borrow_mut();
            match store
                .log
                .append_publish(id, oq.queue.next_id(), false, &msg)
            {
                Ok(loc) => {
                    if let Some(c) = confirm.filter(|_| store.confirm_waits()) {
                        store.wait_for_sync(c);
                        waits = true;
                    }
                    self.sync_wake.notify();
                    Some(loc)
                }
                Err(e) => {
                    tracing::error!(queue = %oq.meta.name, "message log: cannot append: {e}");
                    None
                }
            }
        } else {
            None
        };
        oq.queue.publish(msg, loc);
        oq.touch(&self.dirty);
        waits
    }

    /// Reads back the next part of a queue's paged backlog, if it runs low.
    pub(super) fn refill(&self, oq: &mut OwnedQueue) {
        if !oq.queue.wants_refill() {
            return;
        }
        let mut store = self.store.borrow_mut();
        for e in oq.queue.take_paged(REFILL_BATCH) {
            let msg = match e.loc() {
                None => None,
                Some(loc) => match store.log.read(loc) {
                    Ok(stored) => Some(Arc::new(stored.msg)),
                    Err(err) => {
                        tracing::error!(queue = %oq.meta.name, "message log: lost a message: {err}");
                        store.log.release(loc);
                        continue;
                    }
                },
            };
            oq.queue.refill(e, msg);
        }
    }

    /// Writes what the queue's last step did to its logged messages.
    pub(super) fn log_events(&self, oq: &mut OwnedQueue) {
        if oq.queue.has_log_events() {
            let events = oq.queue.take_log_events();
            self.store.borrow_mut().note(oq.meta.id, events);
        }
    }

    /// Recovered messages go back to their queues, still on disk.
    pub fn restore_queues(
        &self,
        recovered: ahash::AHashMap<QueueId, crate::storage::RecoveredQueue>,
    ) {
        let mut queues = self.queues.borrow_mut();
        for (uid, rq) in recovered {
            if let Some(oq) = queues.get_mut(&uid) {
                oq.queue.restore(
                    rq.messages
                        .iter()
                        .map(|m| PagedEntry::new(m.id, Some(m.loc), m.redelivered)),
                );
            }
        }
    }

    /// The committer: group commit, then confirms, then reclamation.
    pub async fn run_committer(self: Rc<Self>) {
        loop {
            let wake = self.sync_wake.wait();
            let job = self.store.borrow_mut().log.sync_job();
            let Some(job) = job else {
                wake.await;
                continue;
            };
            let mut ok = true;
            for f in &job.files {
                if let Err(e) = io::fdatasync(f).await {
                    tracing::error!("message log: fdatasync failed: {e}");
                    ok = false;
                }
            }
            if !ok {
                // Confirms stay pending; try again shortly.
                sleep(Duration::from_millis(100)).await;
                continue;
            }
            let released = self.store.borrow_mut().synced(job.upto);
            for c in released {
                self.accept(c);
            }
            self.schedule_pump();
            self.reclaim().await;
            if self.store.borrow().config.sync == SyncMode::Os {
                // Nobody waits: batch the background syncs.
                sleep(Duration::from_secs(1)).await;
            }
        }
    }

    /// Deletes garbage segments, unmaps sealed ones and prepares a spare,
    /// all on the blocking thread.
    async fn reclaim(self: &Rc<Self>) {
        let (gone, retired, spare) = {
            let mut s = self.store.borrow_mut();
            (
                s.log.collect_garbage(),
                s.log.take_retired(),
                s.log.spare_job(),
            )
        };
        if !gone.is_empty() || !retired.is_empty() {
            io::blocking(move || {
                drop(retired);
                for p in gone {
                    if let Err(e) = std::fs::remove_file(&p) {
                        tracing::warn!("cannot delete {}: {e}", p.display());
                    }
                }
            })
            .await;
        }
        if let Some((dir, seq, size)) = spare {
            let p = io::blocking(move || crate::storage::segment::prepare(&dir, seq, size)).await;
            self.store.borrow_mut().log.install_spare(p);
        }
    }

    /// The maintainer: compaction and a ready spare segment.
    pub async fn run_maintainer(self: Rc<Self>) {
        loop {
            sleep(Duration::from_secs(1)).await;
            self.compact_one().await;
            self.reclaim().await;
        }
    }

    /// Copies the survivors of the oldest mostly-dead segment forward; the
    /// committer deletes the segment once the copies are synced.
    async fn compact_one(&self) {
        let target = {
            let store = self.store.borrow();
            let seg = store.log.compaction_candidate();
            seg.and_then(|seg| store.log.segment_path(seg).map(|p| (seg, p)))
        };
        let Some((seg, path)) = target else {
            return;
        };
        let publishes = match io::blocking(move || std::fs::read(path)).await {
            Ok(data) => crate::storage::log::publishes_in_data(seg, &data),
            Err(e) => {
                tracing::warn!("compaction: cannot read segment {seg}: {e}");
                return;
            }
        };
        let mut moved = 0u32;
        let mut failed = false;
        {
            let mut queues = self.queues.borrow_mut();
            let mut store = self.store.borrow_mut();
            for (uid, id, loc) in publishes {
                let Some(oq) = queues.get_mut(&uid) else {
                    continue;
                };
                let relocated = oq.queue.relocate(id, |old, redelivered| {
                    if old != loc {
                        return None;
                    }
                    match store.log.relocate(old, redelivered) {
                        Ok(new) => Some(new),
                        Err(e) => {
                            tracing::warn!("compaction: cannot move a message: {e}");
                            failed = true;
                            None
                        }
                    }
                });
                moved += relocated as u32;
            }
            if !failed {
                // The queues are the truth: nothing else in it is live.
                store.log.mark_dead(seg);
            }
        }
        tracing::debug!(
            shard = %self.id,
            "compacted segment {seg}: moved {moved} live message(s)"
        );
        self.sync_wake.notify();
    }

    /// A durable queue went away: its logged messages are no longer live
    /// (the definitions log records the deletion itself).
    pub(super) fn forget_logged(&self, locs: Vec<Loc>) {
        let mut store = self.store.borrow_mut();
        for loc in locs {
            store.log.release(loc);
        }
        drop(store);
        self.sync_wake.notify();
    }
}
