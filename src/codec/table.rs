//! Field tables and field values, using RabbitMQ's type letters
//! (rabbit_binary_parser / rabbit_binary_generator).
//!
//! Letter choices follow RabbitMQ, not the 0-9-1 spec errata: `s` is a signed
//! 16-bit int, `I` signed 32, `i` unsigned 32, `l` signed 64. RabbitMQ has no
//! unsigned 64-bit type; we decode and encode it as `L` (what amq-protocol
//! also accepts), so the broker should avoid sending `U64` to clients. `U` is
//! accepted on decode as a signed 16-bit int, as amq-protocol does.

use bytes::{BufMut, Bytes, BytesMut};

use super::wire::{begin_len, end_len, put_longstr, put_shortstr, syntax, Reader};
use super::{CodecError, ShortStr};

/// Nested tables/arrays deeper than this are rejected: recursion on hostile
/// input must not overflow the stack.
const MAX_DEPTH: usize = 64;

/// An AMQP field table. Keeps entries in wire order; keys are unique when
/// built through [`FieldTable::insert`] (decoding keeps duplicates as sent).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldTable(pub Vec<(ShortStr, FieldValue)>);

impl FieldTable {
    pub fn new() -> Self {
        FieldTable(Vec::new())
    }

    /// First value stored under `key`.
    pub fn get(&self, key: &str) -> Option<&FieldValue> {
        self.0.iter().find(|(k, _)| &**k == key).map(|(_, v)| v)
    }

    /// Sets `key`, replacing an existing entry in place (keeping its position).
    pub fn insert(&mut self, key: impl Into<ShortStr>, v: FieldValue) {
        let key = key.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = v,
            None => self.0.push((key, v)),
        }
    }

    /// Removes every entry under `key`.
    pub fn remove(&mut self, key: &str) {
        self.0.retain(|(k, _)| &**k != key);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ShortStr, &FieldValue)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: Into<ShortStr>> FromIterator<(K, FieldValue)> for FieldTable {
    fn from_iter<I: IntoIterator<Item = (K, FieldValue)>>(iter: I) -> Self {
        let mut t = FieldTable::new();
        for (k, v) in iter {
            t.insert(k, v);
        }
        t
    }
}

/// One field-table value; the comment on each variant is its type letter.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// `t`
    Bool(bool),
    /// `b`
    I8(i8),
    /// `B`
    U8(u8),
    /// `s` (also `U` on decode)
    I16(i16),
    /// `u`
    U16(u16),
    /// `I`
    I32(i32),
    /// `i`
    U32(u32),
    /// `l`
    I64(i64),
    /// `L` (not understood by RabbitMQ; see module docs)
    U64(u64),
    /// `f`
    F32(f32),
    /// `d`
    F64(f64),
    /// `D`: value / 10^scale
    Decimal { scale: u8, value: u32 },
    /// `S`
    LongStr(Bytes),
    /// `x`
    ByteArray(Bytes),
    /// `A`
    Array(Vec<FieldValue>),
    /// `T`
    Timestamp(u64),
    /// `F`
    Table(FieldTable),
    /// `V`
    Void,
}

impl FieldValue {
    /// The value of a `LongStr` if it is valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            FieldValue::LongStr(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// Any integer type that fits an i64 (clients disagree on which width
    /// they send for e.g. `x-message-ttl`).
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            FieldValue::I8(v) => Some(v.into()),
            FieldValue::U8(v) => Some(v.into()),
            FieldValue::I16(v) => Some(v.into()),
            FieldValue::U16(v) => Some(v.into()),
            FieldValue::I32(v) => Some(v.into()),
            FieldValue::U32(v) => Some(v.into()),
            FieldValue::I64(v) => Some(v),
            FieldValue::U64(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            FieldValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    fn type_letter(&self) -> u8 {
        match self {
            FieldValue::Bool(_) => b't',
            FieldValue::I8(_) => b'b',
            FieldValue::U8(_) => b'B',
            FieldValue::I16(_) => b's',
            FieldValue::U16(_) => b'u',
            FieldValue::I32(_) => b'I',
            FieldValue::U32(_) => b'i',
            FieldValue::I64(_) => b'l',
            FieldValue::U64(_) => b'L',
            FieldValue::F32(_) => b'f',
            FieldValue::F64(_) => b'd',
            FieldValue::Decimal { .. } => b'D',
            FieldValue::LongStr(_) => b'S',
            FieldValue::ByteArray(_) => b'x',
            FieldValue::Array(_) => b'A',
            FieldValue::Timestamp(_) => b'T',
            FieldValue::Table(_) => b'F',
            FieldValue::Void => b'V',
        }
    }
}

impl From<&str> for FieldValue {
    fn from(s: &str) -> Self {
        FieldValue::LongStr(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<bool> for FieldValue {
    fn from(b: bool) -> Self {
        FieldValue::Bool(b)
    }
}

impl From<FieldTable> for FieldValue {
    fn from(t: FieldTable) -> Self {
        FieldValue::Table(t)
    }
}

/// Decodes a length-prefixed table. The table is parsed from a sub-reader
/// bounded by its declared length, so a lying inner length cannot escape it.
pub(crate) fn decode_table(r: &mut Reader, depth: usize) -> Result<FieldTable, CodecError> {
    if depth > MAX_DEPTH {
        return Err(syntax("field table nested too deeply"));
    }
    let body = r.longstr()?;
    let mut t = Reader::new(body);
    let mut entries = Vec::new();
    while t.remaining() > 0 {
        let key = t.shortstr()?;
        let value = decode_value(&mut t, depth)?;
        entries.push((key, value));
    }
    Ok(FieldTable(entries))
}

fn decode_array(r: &mut Reader, depth: usize) -> Result<Vec<FieldValue>, CodecError> {
    if depth > MAX_DEPTH {
        return Err(syntax("field array nested too deeply"));
    }
    let body = r.longstr()?;
    let mut a = Reader::new(body);
    let mut values = Vec::new();
    while a.remaining() > 0 {
        values.push(decode_value(&mut a, depth)?);
    }
    Ok(values)
}

fn decode_value(r: &mut Reader, depth: usize) -> Result<FieldValue, CodecError> {
    Ok(match r.u8()? {
        b't' => FieldValue::Bool(r.u8()? != 0),
        b'b' => FieldValue::I8(r.u8()? as i8),
        b'B' => FieldValue::U8(r.u8()?),
        b's' | b'U' => FieldValue::I16(r.u16()? as i16),
        b'u' => FieldValue::U16(r.u16()?),
        b'I' => FieldValue::I32(r.u32()? as i32),
        b'i' => FieldValue::U32(r.u32()?),
        b'l' => FieldValue::I64(r.u64()? as i64),
        b'L' => FieldValue::U64(r.u64()?),
        b'f' => FieldValue::F32(f32::from_bits(r.u32()?)),
        b'd' => FieldValue::F64(f64::from_bits(r.u64()?)),
        b'D' => FieldValue::Decimal {
            scale: r.u8()?,
            value: r.u32()?,
        },
        b'S' => FieldValue::LongStr(r.longstr()?),
        b'x' => FieldValue::ByteArray(r.longstr()?),
        b'A' => FieldValue::Array(decode_array(r, depth + 1)?),
        b'T' => FieldValue::Timestamp(r.u64()?),
        b'F' => FieldValue::Table(decode_table(r, depth + 1)?),
        b'V' => FieldValue::Void,
        _ => return Err(syntax("unknown field table value type")),
    })
}

pub(crate) fn encode_table(out: &mut BytesMut, t: &FieldTable) {
    let at = begin_len(out);
    for (k, v) in &t.0 {
        put_shortstr(out, k);
        encode_value(out, v);
    }
    end_len(out, at);
}

fn encode_value(out: &mut BytesMut, v: &FieldValue) {
    out.put_u8(v.type_letter());
    match v {
        FieldValue::Bool(b) => out.put_u8(*b as u8),
        FieldValue::I8(x) => out.put_i8(*x),
        FieldValue::U8(x) => out.put_u8(*x),
        FieldValue::I16(x) => out.put_i16(*x),
        FieldValue::U16(x) => out.put_u16(*x),
        FieldValue::I32(x) => out.put_i32(*x),
        FieldValue::U32(x) => out.put_u32(*x),
        FieldValue::I64(x) => out.put_i64(*x),
        FieldValue::U64(x) => out.put_u64(*x),
        FieldValue::F32(x) => out.put_f32(*x),
        FieldValue::F64(x) => out.put_f64(*x),
        FieldValue::Decimal { scale, value } => {
            out.put_u8(*scale);
            out.put_u32(*value);
        }
        FieldValue::LongStr(b) | FieldValue::ByteArray(b) => put_longstr(out, b),
        FieldValue::Array(items) => {
            let at = begin_len(out);
            for item in items {
                encode_value(out, item);
            }
            end_len(out, at);
        }
        FieldValue::Timestamp(x) => out.put_u64(*x),
        FieldValue::Table(t) => encode_table(out, t),
        FieldValue::Void => {}
    }
}
