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
use crate::storage::trouble::Trouble;
use crate::storage::MessageLog;

/// A shard's message log and what waits on it.
pub struct ShardStore {
    log: MessageLog,
    config: StorageConfig,
    /// Confirms waiting for the log to be synced past a position.
    waiters: VecDeque<(u64, ConfirmRef)>,
    settles: Vec<(QueueId, u64, Loc)>,
    delivered: Vec<(QueueId, u64, Loc)>,
    /// Failed appends (a full disk), logged once per run of them.
    trouble: Trouble,
}

/// What [`Trouble`] calls a message-log append.
const APPEND: &str = "message log: appending";

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
            trouble: Trouble::default(),
        }
    }

    /// Files a queue's log events; written by [`flush_events`].
    fn note(&mut self, uid: QueueId, events: Vec<LogEvent>) {
        for ev in events {
            match ev {
                LogEvent::Delivered(id, loc) => self.delivered.push((uid, id, loc)),
                LogEvent::Settled(id, loc) => self.settles.push((uid, id, loc)),
                LogEvent::Purged { up_to, kept, locs } => {
                    let res = self.log.append_purge(uid, up_to, &kept, &locs);
                    self.record(res, "a purge");
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
            let res = self.log.append_settles(&settles);
            self.record(res, "acks (they may be redelivered after a restart)");
        }
        if !self.delivered.is_empty() {
            let delivered = std::mem::take(&mut self.delivered);
            let res = self.log.append_delivered(&delivered);
            self.record(res, "deliveries");
        }
    }

    /// Notes how an append of `what` went.
    fn record<T>(&mut self, res: std::io::Result<T>, what: &str) -> Option<T> {
        match res {
            Ok(v) => {
                self.trouble.worked(APPEND);
                Some(v)
            }
            Err(e) => {
                self.trouble.failed(APPEND, &format!("{e}; lost: {what}"));
                None
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
        self.waiters_upto(upto)
    }

    /// A sync job failed: its files are to be synced again, and the
    /// confirms it covered are refused.
    fn sync_failed(&mut self, job: crate::storage::SyncJob) -> Vec<ConfirmRef> {
        self.log.redirty(&job);
        self.waiters_upto(job.upto)
    }

    fn waiters_upto(&mut self, upto: u64) -> Vec<ConfirmRef> {
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

/// What became of a message handed to an owned queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Enqueued {
    /// In the queue (or the queue is gone): confirm it now.
    Now,
    /// In the queue and the log: the committer confirms it after the sync.
    AfterSync,
    /// Not stored: the log could not take it, so the queue did not either
    /// (a publisher told "no" may publish it again).
    Refused,
    /// Refused by the queue's length limit (`reject-publish`): a numbered
    /// publish is nacked, a plain one is dropped.
    Rejected,
}

impl Shard {
    /// Enqueues `msg` on owned queue `id`, logging it first when it is
    /// persistent and the queue durable.
    pub(super) fn enqueue(
        &self,
        id: QueueId,
        msg: Message,
        confirm: Option<ConfirmRef>,
    ) -> Enqueued {
        let mut queues = self.queues.borrow_mut();
        let Some(oq) = queues.get_mut(&id) else {
            return Enqueued::Now;
        };
        if oq.queue.rejects(&msg) {
            oq.queue.reject_publish(msg);
            oq.touch(&self.dirty);
            return Enqueued::Rejected;
        }
        let mut outcome = Enqueued::Now;
        let logs_all = oq.queue.config().kind == crate::queue::QueueKind::Quorum;
        let clock = oq
            .queue
            .needs_clock(&msg)
            .then(crate::runtime::monotonic_ms);
        let loc = if oq.logged && (msg.persistent || logs_all) {
            // The log keeps a TTL's deadline on the wall clock, so that it
            // holds after a restart.
            let deadline = clock.and_then(|now| {
                let d = oq.queue.ttl_deadline(&msg, now)?;
                Some(crate::runtime::unix_ms() + (d - now))
            });
            let mut store = self.store.borrow_mut();
            let res = store
                .log
                .append_publish(id, oq.queue.next_id(), false, deadline, &msg);
            let Some(loc) = store.record(res, "persistent messages (refused to their publishers)")
            else {
                return Enqueued::Refused;
            };
            if let Some(c) = confirm.filter(|_| store.confirm_waits()) {
                store.wait_for_sync(c);
                outcome = Enqueued::AfterSync;
            }
            self.sync_wake.notify();
            Some(loc)
        } else {
            None
        };
        oq.queue.publish(msg, loc, clock.unwrap_or(0));
        // Over a length limit with the oldest messages still on disk:
        // read them back so they can go too.
        while oq.queue.enforce_limits() && oq.queue.wants_refill() {
            self.refill(oq);
        }
        oq.touch(&self.dirty);
        outcome
    }

    /// Reads back the next part of a queue's paged backlog, if it runs low.
    pub(super) fn refill(&self, oq: &mut OwnedQueue) {
        if !oq.queue.wants_refill() {
            return;
        }
        let mut store = self.store.borrow_mut();
        let now = crate::runtime::monotonic_ms();
        let unix_now = crate::runtime::unix_ms();
        for e in oq.queue.take_paged(REFILL_BATCH) {
            let mut logged_deadline = None;
            let msg = match e.loc() {
                None => None,
                Some(loc) => match store.log.read(loc) {
                    Ok(stored) => {
                        // A deadline that passed while the broker was down
                        // is now: the message expires at the head.
                        logged_deadline = stored
                            .deadline_unix_ms
                            .map(|d| now + d.saturating_sub(unix_now));
                        Some(Arc::new(stored.msg))
                    }
                    Err(err) => {
                        tracing::error!(queue = %oq.meta.name, "message log: lost a message: {err}");
                        store.log.release(loc);
                        continue;
                    }
                },
            };
            oq.queue.refill(e, msg, now, logged_deadline);
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
                    rq.next_id,
                );
                // Read the head back at once (the shard's first pump):
                // expired messages and length limits are then handled
                // without waiting for a consumer.
                oq.touch(&self.dirty);
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
            let mut failed = None;
            for f in &job.files {
                if let Err(e) = io::fdatasync(f).await {
                    failed = Some(e);
                }
            }
            if let Some(e) = failed {
                // What waited on this sync is not known to be on disk, and
                // after a failed fdatasync a retry may report success for
                // pages the kernel dropped: refuse those publishes (nack).
                // The files are synced again later, for what compaction and
                // reclamation wait on.
                let refused = self.store.borrow_mut().sync_failed(job);
                tracing::error!(
                    "message log: fdatasync failed, {} confirm(s) refused: {e}",
                    refused.len()
                );
                for c in refused {
                    self.refuse(super::PublishRef {
                        ch: c.ch,
                        seq: Some(c.seq),
                    });
                }
                self.schedule_pump();
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
