//! TEMPORARY stand-ins for the codec's field-table types so routing can be
//! written before `src/codec/` lands. At merge this whole file becomes
//! `pub use crate::codec::{FieldTable, FieldValue, ShortStr};`.

pub type ShortStr = bytestring::ByteString;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldTable(pub Vec<(ShortStr, FieldValue)>);

impl FieldTable {
    /// First value stored under `key` (tables may in theory repeat keys).
    pub fn get(&self, key: &str) -> Option<&FieldValue> {
        self.0.iter().find(|(k, _)| &**k == key).map(|(_, v)| v)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, (ShortStr, FieldValue)> {
        self.0.iter()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Bool(bool),
    I8(i8),
    U8(u8),
    I16(i16),
    U16(u16),
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
    F32(f32),
    F64(f64),
    Decimal { scale: u8, value: u32 },
    LongStr(bytes::Bytes),
    ByteArray(bytes::Bytes),
    Array(Vec<FieldValue>),
    Timestamp(u64),
    Table(FieldTable),
    Void,
}
