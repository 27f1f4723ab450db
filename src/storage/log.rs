//! One shard's message log: an append-only series of memory-mapped
//! segments holding the persistent messages of the shard's durable queues
//! and what became of them.
//!
//! Liveness is counted per segment: a PUBLISH is live until its message is
//! settled, purged, relocated or its queue deleted. A segment may go when
//! nothing in it is live *and* every segment its SETTLE/PURGE records refer
//! to is gone (otherwise recovery would resurrect those messages). A sealed
//! segment kept alive by a few old messages is compacted: the broker copies
//! the survivors forward ([`MessageLog::relocate`]) and the segment then
//! goes like any other, once the copies are synced.
//!
//! The log itself does no waiting: appends copy into the mapping, and the
//! shard runs group commits ([`MessageLog::sync_job`]) with io_uring.
use bytes::Bytes;
use memmap2::MmapMut;
use smallvec::SmallVec;
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use super::record::{self, kind, Cursor, Parsed, HEADER_LEN};
use super::segment::{self, Prepared};
use crate::codec::ShortStr;
use crate::ids::{Loc, QueueId};
use crate::queue::MessageData;

/// A PUBLISH read back from the log.
#[derive(Debug)]
pub struct Stored {
    pub uid: QueueId,
    pub id: u64,
    pub redelivered: bool,
    /// When its TTL ends (Unix ms), if one applied when it was logged.
    pub deadline_unix_ms: Option<u64>,
    pub msg: MessageData,
}

pub(super) struct SegInfo {
    pub(super) path: PathBuf,
    pub(super) file: Arc<File>,
    /// Live PUBLISH records.
    pub(super) live: u32,
    /// All PUBLISH records ever written here.
    pub(super) records: u32,
    /// Other segments whose messages this one's SETTLE/PURGE records settle.
    pub(super) targets: SmallVec<[u32; 4]>,
    /// Not deletable before the log is synced past this point (survivors
    /// copied out of it must be on disk first).
    pub(super) hold_until: u64,
}

pub(super) struct Active {
    pub(super) seq: u32,
    pub(super) map: MmapMut,
    pub(super) pos: usize,
}

pub struct MessageLog {
    pub(super) dir: PathBuf,
    pub(super) segment_size: u64,
    pub(super) segs: BTreeMap<u32, SegInfo>,
    pub(super) active: Option<Active>,
    pub(super) spare: Option<Prepared>,
    pub(super) spare_requested: bool,
    /// Failures to prepare a spare (a full disk), logged once per run.
    pub(super) spare_trouble: super::trouble::Trouble,
    pub(super) next_seq: u32,
    /// Bytes appended since start (a logical clock for group commit).
    pub(super) appended: u64,
    pub(super) synced: u64,
    /// Segments written since the last sync job.
    pub(super) dirty: SmallVec<[u32; 2]>,
    /// Mappings of sealed segments, to be unmapped off the reactor.
    pub(super) retired: Vec<MmapMut>,
}

/// Work for the shard's group-commit task.
pub struct SyncJob {
    pub upto: u64,
    pub files: Vec<Arc<File>>,
    /// The segments behind `files`.
    segs: SmallVec<[u32; 2]>,
}

impl MessageLog {
    /// Bytes appended so far; a confirm for a record waits until
    /// [`synced`](Self::synced) reaches the value after its append.
    pub fn appended(&self) -> u64 {
        self.appended
    }

    pub fn synced(&self) -> u64 {
        self.synced
    }

    pub fn segment_count(&self) -> usize {
        self.segs.len()
    }

    /// Appends a PUBLISH of `msg` for queue `uid` as message `id`, with
    /// the deadline of its TTL (Unix ms) when one applies.
    pub fn append_publish(
        &mut self,
        uid: QueueId,
        id: u64,
        redelivered: bool,
        deadline_unix_ms: Option<u64>,
        msg: &MessageData,
    ) -> io::Result<Loc> {
        let mut head: SmallVec<[u8; 128]> = SmallVec::new();
        head.extend_from_slice(&uid.0.to_be_bytes());
        head.extend_from_slice(&id.to_be_bytes());
        let mut flags = if redelivered {
            record::FLAG_REDELIVERED
        } else {
            0
        };
        if let Some(d) = deadline_unix_ms {
            flags |= record::FLAG_DEADLINE;
            head.extend_from_slice(&d.to_be_bytes());
        }
        put_short(&mut head, &msg.exchange);
        put_short(&mut head, &msg.routing_key);
        head.extend_from_slice(&(msg.raw_properties.len() as u32).to_be_bytes());
        let loc = self.append(
            kind::PUBLISH,
            flags,
            &[&head, &msg.raw_properties, &msg.body],
        )?;
        let seg = self
            .segs
            .get_mut(&loc.seg)
            .expect("active segment is known");
        seg.live += 1;
        seg.records += 1;
        Ok(loc)
    }

    /// Records that these messages are gone (acked, dropped, purged one by
    /// one, delivered without ack) and releases them.
    pub fn append_settles(&mut self, settled: &[(QueueId, u64, Loc)]) -> io::Result<()> {
        if settled.is_empty() {
            return Ok(());
        }
        let at = self.append(kind::SETTLE, 0, &[&triples(settled)])?;
        for (_, _, loc) in settled {
            self.add_target(at.seg, loc.seg);
            self.release(*loc);
        }
        Ok(())
    }

    /// Records first deliveries to acking consumers (no fsync is awaited:
    /// losing one only loses a redelivered hint). Like a settlement, the
    /// record must outlive the messages it marks, so it refers to their
    /// segments.
    pub fn append_delivered(&mut self, delivered: &[(QueueId, u64, Loc)]) -> io::Result<()> {
        if delivered.is_empty() {
            return Ok(());
        }
        let at = self.append(kind::DELIVERED, 0, &[&triples(delivered)])?;
        for (_, _, loc) in delivered {
            self.add_target(at.seg, loc.seg);
        }
        Ok(())
    }

    /// Records a purge of queue `uid`: every message with an id up to
    /// `up_to` except `kept` (unacked at the time). `purged` are the
    /// locations of the purged logged messages.
    pub fn append_purge(
        &mut self,
        uid: QueueId,
        up_to: u64,
        kept: &[u64],
        purged: &[Loc],
    ) -> io::Result<()> {
        let mut segs: Vec<u32> = purged.iter().map(|l| l.seg).collect();
        segs.sort_unstable();
        segs.dedup();
        let mut buf = Vec::with_capacity(24 + kept.len() * 8 + segs.len() * 4);
        buf.extend_from_slice(&uid.0.to_be_bytes());
        buf.extend_from_slice(&up_to.to_be_bytes());
        buf.extend_from_slice(&(kept.len() as u32).to_be_bytes());
        for id in kept {
            buf.extend_from_slice(&id.to_be_bytes());
        }
        buf.extend_from_slice(&(segs.len() as u32).to_be_bytes());
        for s in &segs {
            buf.extend_from_slice(&s.to_be_bytes());
        }
        let at = self.append(kind::PURGE, 0, &[&buf])?;
        for s in segs {
            self.add_target(at.seg, s);
        }
        for loc in purged {
            self.release(*loc);
        }
        Ok(())
    }

    /// A logged message stopped being live without a record of its own (its
    /// queue was deleted: the definitions log says so).
    pub fn release(&mut self, loc: Loc) {
        if let Some(s) = self.segs.get_mut(&loc.seg) {
            s.live = s.live.saturating_sub(1);
        }
    }

    /// Compaction moved every live message out of `seg`.
    pub fn mark_dead(&mut self, seg: u32) {
        let appended = self.appended;
        if let Some(s) = self.segs.get_mut(&seg) {
            s.live = 0;
            s.hold_until = s.hold_until.max(appended);
        }
    }

    fn add_target(&mut self, at: u32, target: u32) {
        if at == target {
            return;
        }
        if let Some(s) = self.segs.get_mut(&at) {
            if !s.targets.contains(&target) {
                s.targets.push(target);
            }
        }
    }

    fn append(&mut self, kind: u8, flags: u8, parts: &[&[u8]]) -> io::Result<Loc> {
        let size = HEADER_LEN + parts.iter().map(|p| p.len()).sum::<usize>();
        let fits = self
            .active
            .as_ref()
            .is_some_and(|a| a.map.len() - a.pos >= size);
        if !fits {
            self.roll(size as u64)?;
        }
        let a = self.active.as_mut().expect("rolled");
        let off = a.pos;
        record::write(&mut a.map[off..off + size], kind, flags, parts);
        a.pos += size;
        let seq = a.seq;
        self.appended += size as u64;
        if !self.dirty.contains(&seq) {
            self.dirty.push(seq);
        }
        Ok(Loc {
            seg: seq,
            off: off as u32,
        })
    }

    /// Seals the active segment and starts the next: the spare prepared off
    /// the reactor if there is one (and it is big enough), else one made
    /// here, blocking.
    fn roll(&mut self, need: u64) -> io::Result<()> {
        if let Some(old) = self.active.take() {
            self.retired.push(old.map);
        }
        let p = match self.spare.take() {
            Some(p) if p.map.len() as u64 >= need => p,
            other => {
                if let Some(p) = other {
                    self.spare = Some(p);
                }
                let seq = self.take_seq();
                segment::prepare(&self.dir, seq, self.segment_size.max(need))?
            }
        };
        self.segs.insert(
            p.seq,
            SegInfo {
                path: p.path,
                file: Arc::new(p.file),
                live: 0,
                records: 0,
                targets: SmallVec::new(),
                hold_until: 0,
            },
        );
        self.active = Some(Active {
            seq: p.seq,
            map: p.map,
            pos: 0,
        });
        Ok(())
    }

    fn take_seq(&mut self) -> u32 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    /// When no spare segment exists or is on its way: what to prepare
    /// (directory, sequence number, size). Hand the result to
    /// [`install_spare`](Self::install_spare).
    pub fn spare_job(&mut self) -> Option<(PathBuf, u32, u64)> {
        if self.spare.is_some() || self.spare_requested {
            return None;
        }
        self.spare_requested = true;
        let seq = self.take_seq();
        Some((self.dir.clone(), seq, self.segment_size))
    }

    pub fn install_spare(&mut self, p: io::Result<Prepared>) {
        self.spare_requested = false;
        match p {
            Ok(p) => {
                self.spare = Some(p);
                self.spare_trouble.worked("preparing a message-log segment");
            }
            Err(e) => self
                .spare_trouble
                .failed("preparing a message-log segment", &e),
        }
    }

    /// Mappings of sealed segments, to drop (munmap) off the reactor.
    pub fn take_retired(&mut self) -> Vec<MmapMut> {
        std::mem::take(&mut self.retired)
    }

    /// What the next group commit must fdatasync, if anything was written.
    pub fn sync_job(&mut self) -> Option<SyncJob> {
        if self.appended == self.synced {
            return None;
        }
        let segs = std::mem::take(&mut self.dirty);
        let files = segs
            .iter()
            .filter_map(|s| self.segs.get(s).map(|i| i.file.clone()))
            .collect();
        Some(SyncJob {
            upto: self.appended,
            files,
            segs,
        })
    }

    /// A sync job failed: its segments are synced again by a later one.
    pub fn redirty(&mut self, job: &SyncJob) {
        for &s in &job.segs {
            if !self.dirty.contains(&s) {
                self.dirty.push(s);
            }
        }
    }

    pub fn mark_synced(&mut self, upto: u64) {
        self.synced = self.synced.max(upto);
    }

    /// Reads back the PUBLISH at `loc`.
    pub fn read(&self, loc: Loc) -> io::Result<Stored> {
        // The message's properties and body are slices of this one read.
        let bytes = Bytes::from(self.read_record(loc)?);
        let flags = match record::parse(&bytes) {
            Parsed::Record {
                kind: kind::PUBLISH,
                flags,
                ..
            } => flags,
            _ => return Err(bad_data(loc, "no message record")),
        };
        decode_publish(bytes.slice(HEADER_LEN..), flags)
            .ok_or_else(|| bad_data(loc, "malformed message"))
    }

    /// The raw bytes of the record at `loc` (header included).
    fn read_record(&self, loc: Loc) -> io::Result<Vec<u8>> {
        if let Some(a) = self.active.as_ref().filter(|a| a.seq == loc.seg) {
            let off = loc.off as usize;
            let len = record_len(&a.map[off..]).ok_or_else(|| bad_data(loc, "bad header"))?;
            return Ok(a.map[off..off + len].to_vec());
        }
        let seg = self
            .segs
            .get(&loc.seg)
            .ok_or_else(|| bad_data(loc, "segment is gone"))?;
        // One read usually covers the whole record; a second fetches the
        // rest of a big one.
        let mut buf = vec![0u8; FIRST_READ];
        let got = segment::read_some_at(&seg.file, loc.off as u64, &mut buf)?;
        let len = record_len(&buf[..got]).ok_or_else(|| bad_data(loc, "bad header"))?;
        if len <= got {
            buf.truncate(len);
            // The record's bytes live as long as the message: no 4 KiB
            // buffer behind a small one.
            buf.shrink_to_fit();
        } else {
            buf.resize(len, 0);
            segment::read_at(&seg.file, loc.off as u64 + got as u64, &mut buf[got..])?;
        }
        Ok(buf)
    }

    /// Copies the live PUBLISH at `loc` to the head of the log (compaction)
    /// and returns its new place. The old segment becomes deletable only
    /// once the copy is synced.
    pub fn relocate(&mut self, loc: Loc, redelivered: bool) -> io::Result<Loc> {
        let bytes = self.read_record(loc)?;
        let Parsed::Record {
            kind: kind::PUBLISH,
            flags,
            payload,
            ..
        } = record::parse(&bytes)
        else {
            return Err(bad_data(loc, "no message record"));
        };
        let flags = if redelivered {
            flags | record::FLAG_REDELIVERED
        } else {
            flags
        };
        let new = self.append(kind::PUBLISH, flags, &[payload])?;
        let appended = self.appended;
        if let Some(s) = self.segs.get_mut(&new.seg) {
            s.live += 1;
            s.records += 1;
        }
        if let Some(s) = self.segs.get_mut(&loc.seg) {
            s.live = s.live.saturating_sub(1);
            s.hold_until = s.hold_until.max(appended);
        }
        Ok(new)
    }

    /// The PUBLISH records (queue, id, place) of a sealed segment, for
    /// compaction to ask the queues which are still live.
    pub fn publishes_in(&self, seg: u32) -> io::Result<Vec<(QueueId, u64, Loc)>> {
        let path = self
            .segment_path(seg)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such segment"))?;
        Ok(publishes_in_data(seg, &std::fs::read(path)?))
    }

    /// The file of segment `seq`, for reading it off the reactor.
    pub fn segment_path(&self, seq: u32) -> Option<PathBuf> {
        self.segs.get(&seq).map(|s| s.path.clone())
    }
}

/// PUBLISH records (queue, id, place) in a segment's bytes.
pub fn publishes_in_data(seg: u32, data: &[u8]) -> Vec<(QueueId, u64, Loc)> {
    record::Scan::new(data)
        .filter_map(|item| match item {
            record::Item::Record {
                at,
                kind: kind::PUBLISH,
                payload,
                ..
            } => {
                let mut c = Cursor::new(payload);
                let off = at as u32;
                Some((QueueId(c.u64()?), c.u64()?, Loc { seg, off }))
            }
            _ => None,
        })
        .collect()
}

impl MessageLog {
    /// The oldest sealed segment worth compacting: under a quarter of its
    /// messages live, and deletable as soon as they are copied out.
    pub fn compaction_candidate(&self) -> Option<u32> {
        let active = self.active.as_ref().map(|a| a.seq);
        self.segs
            .iter()
            .filter(|(seq, _)| Some(**seq) != active)
            .find(|(seq, s)| {
                s.live > 0 && s.live * 4 < s.records.max(1) && self.targets_gone(**seq, s)
            })
            .map(|(seq, _)| *seq)
    }

    fn targets_gone(&self, seq: u32, s: &SegInfo) -> bool {
        s.targets
            .iter()
            .all(|t| *t == seq || !self.segs.contains_key(t))
    }

    /// Removes every segment that can go and returns their paths, for the
    /// caller to unlink (off the reactor if it likes).
    pub fn collect_garbage(&mut self) -> Vec<PathBuf> {
        let active = self.active.as_ref().map(|a| a.seq);
        let mut gone = Vec::new();
        loop {
            let victim = self.segs.iter().find(|(seq, s)| {
                Some(**seq) != active
                    && s.live == 0
                    && s.hold_until <= self.synced
                    && self.targets_gone(**seq, s)
            });
            let Some((&seq, _)) = victim else {
                break;
            };
            let info = self.segs.remove(&seq).expect("found above");
            self.dirty.retain(|s| *s != seq);
            gone.push(info.path);
        }
        gone
    }
}

/// `(queue, id, segment)` triples: a SETTLE or DELIVERED payload.
fn triples(items: &[(QueueId, u64, Loc)]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(4 + items.len() * 20);
    buf.extend_from_slice(&(items.len() as u32).to_be_bytes());
    for (uid, id, loc) in items {
        buf.extend_from_slice(&uid.0.to_be_bytes());
        buf.extend_from_slice(&id.to_be_bytes());
        buf.extend_from_slice(&loc.seg.to_be_bytes());
    }
    buf
}

fn put_short(out: &mut SmallVec<[u8; 128]>, s: &str) {
    let s = crate::codec::shortstr_prefix(s);
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

/// Bytes read at once when loading a message back: most records fit.
const FIRST_READ: usize = 4096;

fn record_len(head: &[u8]) -> Option<usize> {
    if head.len() < HEADER_LEN || head[0..2] != record::MAGIC {
        return None;
    }
    Some(HEADER_LEN + u32::from_be_bytes(head[4..8].try_into().ok()?) as usize)
}

fn bad_data(loc: Loc, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{what} at segment {} offset {}", loc.seg, loc.off),
    )
}

/// Decodes a PUBLISH payload (queue, id, deadline when flagged, exchange,
/// key, properties, body).
fn decode_publish(payload: Bytes, flags: u8) -> Option<Stored> {
    let mut c = Cursor::new(&payload);
    let uid = c.u64()?;
    let id = c.u64()?;
    let deadline_unix_ms = if flags & record::FLAG_DEADLINE != 0 {
        Some(c.u64()?)
    } else {
        None
    };
    let exchange = ShortStr::from(c.short()?);
    let routing_key = ShortStr::from(c.short()?);
    let plen = c.u32()? as usize;
    let props_at = payload.len() - c.rest().len();
    let body_at = props_at.checked_add(plen).filter(|&e| e <= payload.len())?;
    let props = payload.slice(props_at..body_at);
    let body = payload.slice(body_at..);
    let persistent = true;
    let (expiration_ms, priority) = crate::codec::BasicProperties::ttl_and_priority(&props);
    Some(Stored {
        uid: QueueId(uid),
        id,
        redelivered: flags & record::FLAG_REDELIVERED != 0,
        deadline_unix_ms,
        msg: MessageData {
            exchange,
            routing_key,
            raw_properties: props,
            body,
            persistent,
            expiration_ms,
            priority,
        },
    })
}
