//! Primitive AMQP readers and writers.
//!
//! Decoding works on a frozen `Bytes` payload so that strings and bodies are
//! refcounted slices of the read buffer, never copies. Every read checks the
//! remaining length first, so hostile length fields cannot cause a panic or an
//! allocation larger than the bytes actually present.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{reply_code, CodecError, ShortStr};

/// Maximum length of an AMQP short string.
pub const SHORTSTR_MAX: usize = 255;

/// Cursor over one frame payload (or a property list).
pub(crate) struct Reader {
    buf: Bytes,
}

/// Truncated or otherwise undecodable input. RabbitMQ reports a method whose
/// arguments cannot be parsed as `FRAME_ERROR - cannot decode ...` (501).
pub(crate) fn malformed(what: &str) -> CodecError {
    CodecError::new(reply_code::FRAME_ERROR, format!("cannot decode {what}"))
}

/// Well-framed but semantically invalid input (bad UTF-8, unknown field type).
pub(crate) fn syntax(what: &str) -> CodecError {
    CodecError::new(reply_code::SYNTAX_ERROR, what.to_string())
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Reader { buf }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    #[inline]
    fn need(&self, n: usize) -> Result<(), CodecError> {
        if self.buf.len() < n {
            Err(malformed("truncated data"))
        } else {
            Ok(())
        }
    }

    #[inline]
    pub(crate) fn u8(&mut self) -> Result<u8, CodecError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }

    #[inline]
    pub(crate) fn u16(&mut self) -> Result<u16, CodecError> {
        self.need(2)?;
        Ok(self.buf.get_u16())
    }

    #[inline]
    pub(crate) fn u32(&mut self) -> Result<u32, CodecError> {
        self.need(4)?;
        Ok(self.buf.get_u32())
    }

    #[inline]
    pub(crate) fn u64(&mut self) -> Result<u64, CodecError> {
        self.need(8)?;
        Ok(self.buf.get_u64())
    }

    /// Zero-copy slice of the next `n` bytes.
    #[inline]
    pub(crate) fn bytes(&mut self, n: usize) -> Result<Bytes, CodecError> {
        self.need(n)?;
        Ok(self.buf.split_to(n))
    }

    #[inline]
    pub(crate) fn shortstr(&mut self) -> Result<ShortStr, CodecError> {
        let n = self.u8()? as usize;
        let raw = self.bytes(n)?;
        ShortStr::try_from(raw).map_err(|_| syntax("invalid UTF-8 in short string"))
    }

    /// Reserved short strings are skipped without UTF-8 validation.
    #[inline]
    pub(crate) fn skip_shortstr(&mut self) -> Result<(), CodecError> {
        let n = self.u8()? as usize;
        self.bytes(n).map(drop)
    }

    #[inline]
    pub(crate) fn longstr(&mut self) -> Result<Bytes, CodecError> {
        let n = self.u32()? as usize;
        self.bytes(n)
    }

    #[inline]
    pub(crate) fn skip_longstr(&mut self) -> Result<(), CodecError> {
        self.longstr().map(drop)
    }

    #[inline]
    pub(crate) fn table(&mut self) -> Result<super::FieldTable, CodecError> {
        super::table::decode_table(self, 0)
    }

    /// Arguments must be consumed exactly; RabbitMQ rejects trailing bytes too.
    pub(crate) fn finish(&self) -> Result<(), CodecError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(malformed("trailing bytes after arguments"))
        }
    }
}

/// Largest prefix of `s` that fits a short string, cut at a char boundary.
#[inline]
pub(crate) fn shortstr_prefix(s: &str) -> &str {
    if s.len() <= SHORTSTR_MAX {
        return s;
    }
    let mut end = SHORTSTR_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Writes a short string. Values longer than 255 bytes are truncated to 255
/// bytes at a char boundary: the wire format cannot carry more, and the codec
/// must never panic. Callers that care (e.g. queue names) validate earlier.
#[inline]
pub(crate) fn put_shortstr(out: &mut BytesMut, s: &str) {
    let s = shortstr_prefix(s);
    out.put_u8(s.len() as u8);
    out.put_slice(s.as_bytes());
}

/// Writes a long string. Lengths beyond u32::MAX (not sendable anyway) are
/// truncated rather than panicking.
#[inline]
pub(crate) fn put_longstr(out: &mut BytesMut, b: &[u8]) {
    let n = u32::try_from(b.len()).unwrap_or(u32::MAX);
    out.put_u32(n);
    out.put_slice(&b[..n as usize]);
}

#[inline]
pub(crate) fn put_table(out: &mut BytesMut, t: &super::FieldTable) {
    super::table::encode_table(out, t)
}

/// Reserves a u32 length slot and returns its offset; see [`patch_u32`].
#[inline]
pub(crate) fn begin_len(out: &mut BytesMut) -> usize {
    let at = out.len();
    out.put_u32(0);
    at
}

/// Fills a slot from [`begin_len`] with the number of bytes written after it.
#[inline]
pub(crate) fn end_len(out: &mut BytesMut, at: usize) {
    let n = out.len() - at - 4;
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    out[at..at + 4].copy_from_slice(&n.to_be_bytes());
}
