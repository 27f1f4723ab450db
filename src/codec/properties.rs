//! Basic-class content properties (the property flags and property list of a
//! content header frame).

use bytes::{BufMut, Bytes, BytesMut};

use super::wire::{put_shortstr, put_table, syntax, Reader};
use super::{CodecError, FieldTable, ShortStr};

/// Properties of class `basic`. `kind` is the spec's `type`; `cluster_id`
/// is the spec's deprecated `reserved` property, kept for round-tripping.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BasicProperties {
    pub content_type: Option<ShortStr>,
    pub content_encoding: Option<ShortStr>,
    pub headers: Option<FieldTable>,
    pub delivery_mode: Option<u8>,
    pub priority: Option<u8>,
    pub correlation_id: Option<ShortStr>,
    pub reply_to: Option<ShortStr>,
    pub expiration: Option<ShortStr>,
    pub message_id: Option<ShortStr>,
    pub timestamp: Option<u64>,
    pub kind: Option<ShortStr>,
    pub user_id: Option<ShortStr>,
    pub app_id: Option<ShortStr>,
    pub cluster_id: Option<ShortStr>,
}

/// The properties the broker itself acts on when a message is published
/// (persistence, the validated user-id, headers-exchange matching); all of
/// them travel on as raw bytes. Small, because every decoded frame carries
/// one: with the full `BasicProperties` a `Frame` was 424 bytes, and moving
/// frames through the frame loop's async layers was 11% of a publishing
/// shard's time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PublishProperties {
    pub delivery_mode: Option<u8>,
    pub user_id: Option<ShortStr>,
    pub headers: Option<FieldTable>,
    /// The `expiration` property, parsed (per-message TTL).
    pub expiration: Expiration,
    /// The `priority` property (0 when absent).
    pub priority: u8,
    /// `reply_to` is `amq.rabbitmq.reply-to` (direct reply-to: the broker
    /// rewrites it, decoding the properties again only then).
    pub direct_reply_to: bool,
}

/// The `expiration` property as a per-message TTL: RabbitMQ reads it as a
/// decimal integer of milliseconds, 0 to 2^32-1.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Expiration {
    /// No expiration.
    #[default]
    None,
    /// Expires this many milliseconds after it is queued.
    Ms(u32),
    /// Not a valid TTL: the publish is refused (the text says why, see
    /// [`expiration_error`]).
    Invalid,
}

impl Expiration {
    /// Parses the property's text as RabbitMQ does (`string:to_integer`:
    /// an optional sign and digits, nothing after them).
    pub fn parse(text: &str) -> Self {
        match expiration_value(text) {
            Ok(ms) => Expiration::Ms(ms),
            Err(_) => Expiration::Invalid,
        }
    }

    /// The TTL in milliseconds, if there is a valid one.
    pub fn ms(self) -> Option<u32> {
        match self {
            Expiration::Ms(ms) => Some(ms),
            _ => None,
        }
    }
}

fn expiration_value(text: &str) -> Result<u32, String> {
    let b = text.as_bytes();
    let sign = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let digits = b[sign..].iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return Err("no_integer".into());
    }
    let (number, rest) = text.split_at(sign + digits);
    if !rest.is_empty() {
        return Err(format!("{{leftover_string,\"{rest}\"}}"));
    }
    // Digits beyond i128 are far beyond the limit either way.
    let n: i128 = number.parse().unwrap_or(if sign == 1 && b[0] == b'-' {
        i128::MIN
    } else {
        i128::MAX
    });
    if n < 0 {
        Err(format!("{{value_negative,{n}}}"))
    } else if n > u32::MAX as i128 {
        Err(format!("{{value_too_large,{n}}}"))
    } else {
        Ok(n as u32)
    }
}

/// RabbitMQ's 406 text for an invalid `expiration` property.
pub fn expiration_error(text: &str) -> String {
    let why = expiration_value(text).err().unwrap_or_default();
    format!("invalid expiration '{text}': {why}")
}

impl From<BasicProperties> for PublishProperties {
    fn from(p: BasicProperties) -> Self {
        PublishProperties {
            direct_reply_to: p.reply_to.as_deref() == Some("amq.rabbitmq.reply-to"),
            delivery_mode: p.delivery_mode,
            user_id: p.user_id,
            headers: p.headers,
            expiration: p
                .expiration
                .as_deref()
                .map_or(Expiration::None, Expiration::parse),
            priority: p.priority.unwrap_or(0),
        }
    }
}

// Flag bits, most significant first, in property-list order.
const CONTENT_TYPE: u16 = 1 << 15;
const CONTENT_ENCODING: u16 = 1 << 14;
const HEADERS: u16 = 1 << 13;
const DELIVERY_MODE: u16 = 1 << 12;
const PRIORITY: u16 = 1 << 11;
const CORRELATION_ID: u16 = 1 << 10;
const REPLY_TO: u16 = 1 << 9;
const EXPIRATION: u16 = 1 << 8;
const MESSAGE_ID: u16 = 1 << 7;
const TIMESTAMP: u16 = 1 << 6;
const TYPE: u16 = 1 << 5;
const USER_ID: u16 = 1 << 4;
const APP_ID: u16 = 1 << 3;
const CLUSTER_ID: u16 = 1 << 2;
/// Bit 0 of a flag word says another flag word follows.
const CONTINUATION: u16 = 1;

impl BasicProperties {
    /// Decodes property flags + property list. Strings and the headers table
    /// are zero-copy slices of `raw`.
    pub fn decode(raw: &Bytes) -> Result<Self, CodecError> {
        let mut r = Reader::new(raw.clone());
        let flags = r.u16()?;
        if flags & CONTINUATION != 0 {
            // Basic has only 14 properties; further flag words must be empty
            // or we could not know how to parse the list.
            loop {
                let more = r.u16()?;
                if more & !CONTINUATION != 0 {
                    return Err(syntax("unknown content property flags"));
                }
                if more & CONTINUATION == 0 {
                    break;
                }
            }
        }
        if flags & 0b10 != 0 {
            return Err(syntax("unknown content property flags"));
        }
        let has = |bit: u16| flags & bit != 0;
        let mut p = BasicProperties::default();
        if has(CONTENT_TYPE) {
            p.content_type = Some(r.shortstr()?);
        }
        if has(CONTENT_ENCODING) {
            p.content_encoding = Some(r.shortstr()?);
        }
        if has(HEADERS) {
            p.headers = Some(r.table()?);
        }
        if has(DELIVERY_MODE) {
            p.delivery_mode = Some(r.u8()?);
        }
        if has(PRIORITY) {
            p.priority = Some(r.u8()?);
        }
        if has(CORRELATION_ID) {
            p.correlation_id = Some(r.shortstr()?);
        }
        if has(REPLY_TO) {
            p.reply_to = Some(r.shortstr()?);
        }
        if has(EXPIRATION) {
            p.expiration = Some(r.shortstr()?);
        }
        if has(MESSAGE_ID) {
            p.message_id = Some(r.shortstr()?);
        }
        if has(TIMESTAMP) {
            p.timestamp = Some(r.u64()?);
        }
        if has(TYPE) {
            p.kind = Some(r.shortstr()?);
        }
        if has(USER_ID) {
            p.user_id = Some(r.shortstr()?);
        }
        if has(APP_ID) {
            p.app_id = Some(r.shortstr()?);
        }
        if has(CLUSTER_ID) {
            p.cluster_id = Some(r.shortstr()?);
        }
        r.finish()?;
        Ok(p)
    }

    /// Appends property flags + property list (a single flag word).
    pub fn encode(&self, out: &mut BytesMut) {
        let mut flags = 0u16;
        let mut set = |present: bool, bit: u16| {
            if present {
                flags |= bit;
            }
        };
        set(self.content_type.is_some(), CONTENT_TYPE);
        set(self.content_encoding.is_some(), CONTENT_ENCODING);
        set(self.headers.is_some(), HEADERS);
        set(self.delivery_mode.is_some(), DELIVERY_MODE);
        set(self.priority.is_some(), PRIORITY);
        set(self.correlation_id.is_some(), CORRELATION_ID);
        set(self.reply_to.is_some(), REPLY_TO);
        set(self.expiration.is_some(), EXPIRATION);
        set(self.message_id.is_some(), MESSAGE_ID);
        set(self.timestamp.is_some(), TIMESTAMP);
        set(self.kind.is_some(), TYPE);
        set(self.user_id.is_some(), USER_ID);
        set(self.app_id.is_some(), APP_ID);
        set(self.cluster_id.is_some(), CLUSTER_ID);
        out.put_u16(flags);
        let str_opt = |out: &mut BytesMut, s: &Option<ShortStr>| {
            if let Some(s) = s {
                put_shortstr(out, s);
            }
        };
        str_opt(out, &self.content_type);
        str_opt(out, &self.content_encoding);
        if let Some(h) = &self.headers {
            put_table(out, h);
        }
        if let Some(v) = self.delivery_mode {
            out.put_u8(v);
        }
        if let Some(v) = self.priority {
            out.put_u8(v);
        }
        str_opt(out, &self.correlation_id);
        str_opt(out, &self.reply_to);
        str_opt(out, &self.expiration);
        str_opt(out, &self.message_id);
        if let Some(v) = self.timestamp {
            out.put_u64(v);
        }
        str_opt(out, &self.kind);
        str_opt(out, &self.user_id);
        str_opt(out, &self.app_id);
        str_opt(out, &self.cluster_id);
    }

    /// What queues need to know of a stored message's properties: its
    /// per-message TTL and priority.
    pub fn ttl_and_priority(raw: &Bytes) -> (Option<u32>, u8) {
        match Self::decode(raw) {
            Ok(p) => (
                p.expiration
                    .as_deref()
                    .map(Expiration::parse)
                    .and_then(Expiration::ms),
                p.priority.unwrap_or(0),
            ),
            Err(_) => (None, 0),
        }
    }

    /// The encoded flags + list as a standalone buffer (for `raw_properties`).
    pub fn to_raw(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(64);
        self.encode(&mut out);
        out.freeze()
    }
}
