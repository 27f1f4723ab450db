//! AMQP 0-9-1 codec (with RabbitMQ's extensions): frames, methods, field
//! tables and content properties.
//!
//! Decoding is zero-copy: short strings, long strings and bodies are
//! refcounted slices of the read buffer. Decoding never panics on any input
//! and never allocates in proportion to a length field before the bytes are
//! present. Encoding never fails; short strings longer than 255 bytes are
//! truncated to 255 bytes at a char boundary (see [`ShortStr`]).

mod frame;
mod methods;
mod properties;
mod table;
mod wire;

pub use frame::{
    decode_frame, encode_content, encode_content_with, encode_heartbeat, encode_method, frame_len,
    CodecError, ContentHeader, Frame,
};
pub use methods::*;
pub use properties::{expiration_error, BasicProperties, Expiration, PublishProperties};
pub use table::{FieldTable, FieldValue};
pub(crate) use wire::{put_longstr, put_shortstr, put_table, shortstr_prefix, Reader};

/// AMQP short string: zero-copy UTF-8 over `Bytes`. On the wire at most 255
/// bytes; longer values are truncated to 255 bytes at a char boundary when
/// encoded, so validate names (queue, exchange, consumer tag) before use.
pub type ShortStr = bytestring::ByteString;

/// Sent by a client to open a 0-9-1 connection; also what the server replies
/// with when a client offers an unsupported protocol header.
pub const PROTOCOL_HEADER: [u8; 8] = *b"AMQP\x00\x00\x09\x01";

pub const FRAME_METHOD: u8 = 1;
pub const FRAME_HEADER: u8 = 2;
pub const FRAME_BODY: u8 = 3;
pub const FRAME_HEARTBEAT: u8 = 8;
pub const FRAME_END: u8 = 0xCE;
/// Smallest frame_max a peer may negotiate.
pub const FRAME_MIN_SIZE: u32 = 4096;

/// AMQP reply codes (spec constants).
pub mod reply_code {
    pub const REPLY_SUCCESS: u16 = 200;
    pub const CONTENT_TOO_LARGE: u16 = 311;
    pub const NO_ROUTE: u16 = 312;
    pub const NO_CONSUMERS: u16 = 313;
    pub const CONNECTION_FORCED: u16 = 320;
    pub const INVALID_PATH: u16 = 402;
    pub const ACCESS_REFUSED: u16 = 403;
    pub const NOT_FOUND: u16 = 404;
    pub const RESOURCE_LOCKED: u16 = 405;
    pub const PRECONDITION_FAILED: u16 = 406;
    pub const FRAME_ERROR: u16 = 501;
    pub const SYNTAX_ERROR: u16 = 502;
    pub const COMMAND_INVALID: u16 = 503;
    pub const CHANNEL_ERROR: u16 = 504;
    pub const UNEXPECTED_FRAME: u16 = 505;
    pub const RESOURCE_ERROR: u16 = 506;
    pub const NOT_ALLOWED: u16 = 530;
    pub const NOT_IMPLEMENTED: u16 = 540;
    pub const INTERNAL_ERROR: u16 = 541;
}

#[cfg(test)]
mod tests;
