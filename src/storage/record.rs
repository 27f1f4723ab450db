//! The on-disk record: the unit of both the message log and the
//! definitions log.
//!
//! ```text
//! +-------+------+-------+---------+---------+-----------------+
//! | magic | kind | flags | len u32 | crc u32 | payload (len)   |
//! | "WR"  |  u8  |  u8   |   BE    |   BE    |                 |
//! +-------+------+-------+---------+---------+-----------------+
//! ```
//!
//! The CRC32 covers the first 8 header bytes and the payload, so a flipped
//! bit anywhere but in the CRC itself is caught. Segments are preallocated
//! and zero-filled, so a zero header marks the end of the written part.
//! All integers are big-endian, like AMQP.

pub const MAGIC: [u8; 2] = *b"WR";
pub const HEADER_LEN: usize = 12;

/// Record kinds of the message log.
pub mod kind {
    /// A persistent message for one durable queue.
    pub const PUBLISH: u8 = 1;
    /// Acks, drops and no-ack deliveries: `(queue, id, segment)` triples.
    pub const SETTLE: u8 = 2;
    /// First deliveries to acking consumers: `(queue, id, segment)`
    /// triples; they come back with redelivered=true after a restart.
    pub const DELIVERED: u8 = 3;
    /// A queue purge: every message of the queue up to an id, except those
    /// then unacked.
    pub const PURGE: u8 = 4;
}

/// Header flag on a PUBLISH: the message had been delivered.
pub const FLAG_REDELIVERED: u8 = 1;
/// Header flag on a PUBLISH: a TTL applies to the message, and its payload
/// holds its deadline (Unix ms, u64) after the id, so that it expires when
/// it would have after a restart too (RabbitMQ keeps the expiry time).
pub const FLAG_DEADLINE: u8 = 2;

/// Writes `parts` as one record into `out` (which must be exactly
/// `HEADER_LEN + sum(parts)` long).
pub fn write(out: &mut [u8], kind: u8, flags: u8, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    debug_assert_eq!(out.len(), HEADER_LEN + len);
    out[0..2].copy_from_slice(&MAGIC);
    out[2] = kind;
    out[3] = flags;
    out[4..8].copy_from_slice(&(len as u32).to_be_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out[0..8]);
    let mut at = HEADER_LEN;
    for p in parts {
        out[at..at + p.len()].copy_from_slice(p);
        crc.update(p);
        at += p.len();
    }
    out[8..12].copy_from_slice(&crc.finalize().to_be_bytes());
}

/// Encodes a whole record into a fresh vector.
pub fn to_vec(kind: u8, flags: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut v = vec![0u8; HEADER_LEN + len];
    write(&mut v, kind, flags, parts);
    v
}

/// One record as found at an offset.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    Record {
        kind: u8,
        flags: u8,
        payload: &'a [u8],
        /// Header plus payload.
        size: usize,
    },
    /// Zero bytes: nothing was written here.
    End,
    /// The header announces more bytes than there are.
    Truncated,
    /// Bad magic or CRC.
    Corrupt(&'static str),
}

/// Parses the record at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed<'_> {
    if buf.len() < HEADER_LEN {
        return if buf.iter().all(|&b| b == 0) {
            Parsed::End
        } else {
            Parsed::Truncated
        };
    }
    if buf[0..HEADER_LEN].iter().all(|&b| b == 0) {
        return Parsed::End;
    }
    if buf[0..2] != MAGIC {
        return Parsed::Corrupt("bad record magic");
    }
    let len = u32::from_be_bytes(buf[4..8].try_into().unwrap()) as usize;
    if buf.len() - HEADER_LEN < len {
        return Parsed::Truncated;
    }
    let payload = &buf[HEADER_LEN..HEADER_LEN + len];
    let mut crc = crc32fast::Hasher::new();
    crc.update(&buf[0..8]);
    crc.update(payload);
    let want = u32::from_be_bytes(buf[8..12].try_into().unwrap());
    if crc.finalize() != want {
        return Parsed::Corrupt("CRC mismatch");
    }
    Parsed::Record {
        kind: buf[2],
        flags: buf[3],
        payload,
        size: HEADER_LEN + len,
    }
}

/// The next offset after `from` where a valid record starts, for resuming a
/// scan past a corrupt one.
pub fn resync(buf: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while at + HEADER_LEN <= buf.len() {
        let rest = &buf[at..];
        let hit = rest.windows(2).position(|w| w == MAGIC)?;
        at += hit;
        if let Parsed::Record { .. } = parse(&buf[at..]) {
            return Some(at);
        }
        at += 1;
    }
    None
}

/// What a [`Scan`] finds, in file order.
#[derive(Debug, PartialEq, Eq)]
pub enum Item<'a> {
    Record {
        at: usize,
        kind: u8,
        flags: u8,
        payload: &'a [u8],
    },
    /// A bad record with a good one after it: the scan resumes there.
    Corrupt { at: usize, reason: &'static str },
}

/// Walks the records of a segment or log file, stepping over corrupt
/// ones. It stops at the zero-filled end, or at a bad tail with nothing
/// valid after it (a write a crash cut short); [`valid_end`](Self::valid_end)
/// then says where the good data ends.
pub struct Scan<'a> {
    data: &'a [u8],
    at: usize,
    done: bool,
}

impl<'a> Scan<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Scan {
            data,
            at: 0,
            done: false,
        }
    }

    /// Where the valid records end; past it the file is zeros or a torn
    /// tail. Meaningful once the scan is exhausted.
    pub fn valid_end(&self) -> usize {
        self.at
    }

    /// True when something other than zeros follows the valid records.
    pub fn has_torn_tail(&self) -> bool {
        self.data[self.at.min(self.data.len())..]
            .iter()
            .any(|&b| b != 0)
    }
}

impl<'a> Iterator for Scan<'a> {
    type Item = Item<'a>;

    fn next(&mut self) -> Option<Item<'a>> {
        if self.done || self.at >= self.data.len() {
            return None;
        }
        let at = self.at;
        let reason = match parse(&self.data[at..]) {
            Parsed::Record {
                kind,
                flags,
                payload,
                size,
            } => {
                self.at += size;
                return Some(Item::Record {
                    at,
                    kind,
                    flags,
                    payload,
                });
            }
            Parsed::End if !self.has_torn_tail() => {
                self.done = true;
                return None;
            }
            Parsed::End => "unexpected zero header",
            Parsed::Truncated => "record runs past the end of the file",
            Parsed::Corrupt(why) => why,
        };
        match resync(self.data, at + 1) {
            Some(next) => {
                self.at = next;
                Some(Item::Corrupt { at, reason })
            }
            None => {
                self.done = true;
                None
            }
        }
    }
}

/// Big-endian cursor over a payload; every read is bounds-checked.
pub struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor { buf }
    }

    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Some(a)
    }

    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    pub fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes(b.try_into().unwrap()))
    }

    pub fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_be_bytes(b.try_into().unwrap()))
    }

    /// A u8-length-prefixed string.
    pub fn short(&mut self) -> Option<&'a str> {
        let n = self.u8()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }

    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_detection() {
        let rec = to_vec(kind::PUBLISH, FLAG_REDELIVERED, &[b"abc", b"defg"]);
        match parse(&rec) {
            Parsed::Record {
                kind,
                flags,
                payload,
                size,
            } => {
                assert_eq!((kind, flags, payload, size), (1, 1, &b"abcdefg"[..], 19));
            }
            other => panic!("{other:?}"),
        }
        for i in 0..rec.len() {
            let mut bad = rec.clone();
            bad[i] ^= 0x40;
            assert!(
                !matches!(parse(&bad), Parsed::Record { .. }),
                "flip at {i} went unnoticed"
            );
        }
        assert_eq!(parse(&rec[..rec.len() - 1]), Parsed::Truncated);
        assert_eq!(parse(&[0u8; 40]), Parsed::End);
    }

    #[test]
    fn scan_skips_corruption_and_stops_at_a_torn_tail() {
        let mut buf = to_vec(kind::SETTLE, 0, &[b"one"]);
        let second = buf.len();
        buf.extend(to_vec(kind::SETTLE, 0, &[b"two"]));
        let third = buf.len();
        buf.extend(to_vec(kind::SETTLE, 0, &[b"three"]));
        let torn = buf.len();
        buf.extend(&to_vec(kind::SETTLE, 0, &[b"four"])[..7]);
        buf.extend([0u8; 32]);
        buf[second + HEADER_LEN] ^= 1;
        let mut scan = Scan::new(&buf);
        let items: Vec<_> = scan.by_ref().collect();
        assert_eq!(items.len(), 3);
        assert!(matches!(
            items[0],
            Item::Record {
                at: 0,
                payload: b"one",
                ..
            }
        ));
        assert_eq!(
            items[1],
            Item::Corrupt {
                at: second,
                reason: "CRC mismatch"
            }
        );
        assert!(matches!(items[2], Item::Record { at, payload: b"three", .. } if at == third));
        assert_eq!(scan.valid_end(), torn);
        assert!(scan.has_torn_tail());
        let clean = to_vec(kind::SETTLE, 0, &[b"x"]);
        let mut padded = clean.clone();
        padded.extend([0u8; 64]);
        let mut scan = Scan::new(&padded);
        assert_eq!(scan.by_ref().count(), 1);
        assert_eq!(scan.valid_end(), clean.len());
        assert!(!scan.has_torn_tail());
    }

    #[test]
    fn resync_finds_the_next_record() {
        let a = to_vec(kind::SETTLE, 0, &[b"first"]);
        let b = to_vec(kind::SETTLE, 0, &[b"second"]);
        let mut buf = a.clone();
        buf.extend_from_slice(&b);
        buf[HEADER_LEN + 1] ^= 1;
        assert_eq!(parse(&buf), Parsed::Corrupt("CRC mismatch"));
        assert_eq!(resync(&buf, 1), Some(a.len()));
    }
}
