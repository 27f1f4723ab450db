//! Rebuilding a shard's queues from its message log.
//!
//! Every segment is scanned and every record's CRC checked. What recovery
//! does with damage:
//! - a bad record followed by a good one is corrupt: logged with its file
//!   and offset, skipped and counted;
//! - a bad or partial record with nothing valid after it is a torn tail
//!   (a write cut short by a crash): the file is truncated there.
//!
//! The result does not depend on the order records are met in: settlements,
//! purges and delivery marks are gathered first and applied per queue at
//! the end, and a message found twice (copied forward by compaction just
//! before a crash) is kept once.
use ahash::{AHashMap, AHashSet};
use memmap2::Mmap;
use smallvec::SmallVec;
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::log::{MessageLog, SegInfo};
use super::record::{self, kind, Cursor, Item};
use super::segment;
use crate::ids::{Loc, QueueId};

/// A message that survived, in queue order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveredMsg {
    pub id: u64,
    pub loc: Loc,
    pub redelivered: bool,
}

#[derive(Debug, Default)]
pub struct RecoveredQueue {
    /// Sorted by id.
    pub messages: Vec<RecoveredMsg>,
    /// The first message id the queue may give out: above every id any
    /// record in the log names, so that a new message never takes the id
    /// of one whose settlement or purge is still on disk (recovery, which
    /// ignores record order, would apply it to the newcomer).
    pub next_id: u64,
}

#[derive(Debug, Default, Clone)]
pub struct RecoveryReport {
    pub segments: usize,
    pub bytes: u64,
    pub records: u64,
    pub messages: u64,
    pub queues: usize,
    pub corrupt: u64,
    pub torn: u64,
    pub elapsed: Duration,
}

impl RecoveryReport {
    pub fn mb_per_s(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64().max(1e-6);
        self.bytes as f64 / 1e6 / secs
    }
}

#[derive(Default)]
struct Gathered {
    published: Vec<RecoveredMsg>,
    settled: AHashSet<u64>,
    delivered: AHashSet<u64>,
    /// (up to id, ids kept because they were unacked)
    purges: Vec<(u64, AHashSet<u64>)>,
    /// The highest message id any record names.
    max_id: Option<u64>,
}

impl Gathered {
    fn saw(&mut self, id: u64) {
        self.max_id = self.max_id.max(Some(id));
    }
}

impl MessageLog {
    /// Opens (or creates) the log in `dir` and recovers it. Messages of
    /// queues for which `known` is false (deleted queues) are dropped.
    pub fn open(
        dir: &Path,
        segment_size: u64,
        known: impl Fn(QueueId) -> bool,
    ) -> io::Result<(
        MessageLog,
        AHashMap<QueueId, RecoveredQueue>,
        RecoveryReport,
    )> {
        std::fs::create_dir_all(dir)?;
        let started = Instant::now();
        let mut report = RecoveryReport::default();
        let mut gathered: AHashMap<QueueId, Gathered> = AHashMap::new();
        let mut segs = BTreeMap::new();
        let files = segment::list(dir)?;
        let mut next_seq = 1;
        for (seq, path) in files {
            next_seq = next_seq.max(seq + 1);
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            let len = file.metadata()?.len();
            let mut info = SegInfo {
                path: path.clone(),
                file: Arc::new(file),
                live: 0,
                records: 0,
                targets: SmallVec::new(),
                hold_until: 0,
            };
            report.segments += 1;
            if len > 0 {
                // SAFETY: read-only view of a file only this process writes,
                // and nothing writes it during recovery.
                let map = unsafe { Mmap::map(&*info.file)? };
                let end = scan(
                    &map,
                    seq,
                    &path,
                    &mut info,
                    &mut gathered,
                    &mut report,
                    &known,
                );
                report.bytes += end as u64;
                if end < map.len() && !map[end..].iter().all(|&b| b == 0) {
                    drop(map);
                    info.file.set_len(end as u64)?;
                    info.file.sync_all()?;
                    report.torn += 1;
                    tracing::warn!("truncated torn tail of {} at offset {end}", path.display());
                }
            }
            segs.insert(seq, info);
        }
        let mut queues = AHashMap::new();
        for (uid, g) in gathered {
            if !known(uid) {
                continue;
            }
            let next_id = g.max_id.map_or(0, |m| m + 1);
            let messages = finish(g);
            for m in &messages {
                if let Some(s) = segs.get_mut(&m.loc.seg) {
                    s.live += 1;
                }
            }
            report.messages += messages.len() as u64;
            if !messages.is_empty() {
                report.queues += 1;
            }
            queues.insert(uid, RecoveredQueue { messages, next_id });
        }
        report.elapsed = started.elapsed();
        let log = MessageLog {
            dir: dir.to_path_buf(),
            segment_size,
            segs,
            active: None,
            spare: None,
            spare_requested: false,
            spare_trouble: Default::default(),
            next_seq,
            appended: 0,
            synced: 0,
            dirty: SmallVec::new(),
            retired: Vec::new(),
        };
        Ok((log, queues, report))
    }
}

/// Scans one segment; returns the offset where valid data ends.
fn scan(
    data: &[u8],
    seq: u32,
    path: &Path,
    info: &mut SegInfo,
    gathered: &mut AHashMap<QueueId, Gathered>,
    report: &mut RecoveryReport,
    known: &impl Fn(QueueId) -> bool,
) -> usize {
    let mut scan = record::Scan::new(data);
    for item in scan.by_ref() {
        match item {
            Item::Record {
                at,
                kind,
                flags,
                payload,
            } => {
                report.records += 1;
                let loc = Loc {
                    seg: seq,
                    off: at as u32,
                };
                if !apply(kind, flags, payload, loc, info, gathered, known) {
                    report.corrupt += 1;
                    tracing::warn!(
                        "corrupt record in {} at offset {at}: malformed {} record, skipped",
                        path.display(),
                        kind_name(kind)
                    );
                }
            }
            Item::Corrupt { at, reason } => {
                report.corrupt += 1;
                tracing::warn!(
                    "corrupt record in {} at offset {at}: {reason}, skipped",
                    path.display()
                );
            }
        }
    }
    scan.valid_end()
}

fn kind_name(kind: u8) -> &'static str {
    match kind {
        kind::PUBLISH => "message",
        kind::SETTLE => "settle",
        kind::DELIVERED => "delivered",
        kind::PURGE => "purge",
        _ => "unknown",
    }
}

/// Files one record; false when its payload does not decode.
fn apply(
    kind: u8,
    flags: u8,
    payload: &[u8],
    loc: Loc,
    info: &mut SegInfo,
    gathered: &mut AHashMap<QueueId, Gathered>,
    known: &impl Fn(QueueId) -> bool,
) -> bool {
    let mut c = Cursor::new(payload);
    let target = |info: &mut SegInfo, seg: u32| {
        if seg != loc.seg && !info.targets.contains(&seg) {
            info.targets.push(seg);
        }
    };
    match kind {
        kind::PUBLISH => {
            let (Some(uid), Some(id)) = (c.u64().map(QueueId), c.u64()) else {
                return false;
            };
            info.records += 1;
            if known(uid) {
                let g = gathered.entry(uid).or_default();
                g.saw(id);
                g.published.push(RecoveredMsg {
                    id,
                    loc,
                    redelivered: flags & record::FLAG_REDELIVERED != 0,
                });
            }
            true
        }
        // Both are (queue, id, segment) triples; they differ in the set
        // they fill.
        kind::SETTLE | kind::DELIVERED => {
            let Some(n) = c.u32() else { return false };
            for _ in 0..n {
                let (Some(uid), Some(id), Some(seg)) = (c.u64().map(QueueId), c.u64(), c.u32())
                else {
                    return false;
                };
                target(info, seg);
                if known(uid) {
                    let g = gathered.entry(uid).or_default();
                    g.saw(id);
                    let set = if kind == kind::SETTLE {
                        &mut g.settled
                    } else {
                        &mut g.delivered
                    };
                    set.insert(id);
                }
            }
            true
        }
        kind::PURGE => {
            let (Some(uid), Some(up_to), Some(nkept)) = (c.u64().map(QueueId), c.u64(), c.u32())
            else {
                return false;
            };
            let mut kept = AHashSet::new();
            for _ in 0..nkept {
                let Some(id) = c.u64() else { return false };
                kept.insert(id);
            }
            let Some(nsegs) = c.u32() else { return false };
            for _ in 0..nsegs {
                let Some(seg) = c.u32() else { return false };
                target(info, seg);
            }
            if known(uid) {
                let g = gathered.entry(uid).or_default();
                g.saw(up_to);
                g.purges.push((up_to, kept));
            }
            true
        }
        _ => false,
    }
}

/// One queue's surviving messages, in order, each once.
fn finish(mut g: Gathered) -> Vec<RecoveredMsg> {
    // Newest copy last for each id, so dedup keeps the newest place.
    g.published.sort_unstable_by_key(|m| (m.id, m.loc));
    let mut out: Vec<RecoveredMsg> = Vec::with_capacity(g.published.len());
    for m in g.published {
        match out.last_mut() {
            Some(last) if last.id == m.id => {
                let redelivered = last.redelivered || m.redelivered;
                *last = RecoveredMsg { redelivered, ..m };
            }
            _ => out.push(m),
        }
    }
    out.retain_mut(|m| {
        if g.settled.contains(&m.id) {
            return false;
        }
        if g.purges
            .iter()
            .any(|(up_to, kept)| m.id <= *up_to && !kept.contains(&m.id))
        {
            return false;
        }
        m.redelivered |= g.delivered.contains(&m.id);
        true
    });
    out
}
