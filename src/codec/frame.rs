//! Frame layer: splitting the byte stream into frames and writing frames.
//!
//! Wire layout: type (u8), channel (u16), payload size (u32), payload,
//! frame-end (0xCE).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::wire::{malformed, Reader};
use super::{
    reply_code, BasicProperties, Method, PublishProperties, FRAME_BODY, FRAME_END, FRAME_HEADER,
    FRAME_HEARTBEAT, FRAME_METHOD,
};

/// Bytes of framing around a payload: 7 header bytes plus the end octet.
const FRAME_OVERHEAD: usize = 8;
/// Content header payload before the property flags: class, weight, body size.
const HEADER_PREFIX: usize = 12;
/// Basic class id; the only class with content.
const CLASS_BASIC: u16 = 60;

/// One decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Method {
        channel: u16,
        method: Method,
    },
    Header {
        channel: u16,
        header: ContentHeader,
    },
    /// Zero-copy slice of the read buffer.
    Body {
        channel: u16,
        payload: Bytes,
    },
    Heartbeat {
        channel: u16,
    },
}

impl Frame {
    pub fn channel(&self) -> u16 {
        match *self {
            Frame::Method { channel, .. }
            | Frame::Header { channel, .. }
            | Frame::Body { channel, .. }
            | Frame::Heartbeat { channel } => channel,
        }
    }
}

/// A content header frame's payload.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentHeader {
    pub class_id: u16,
    pub body_size: u64,
    /// What the broker needs from `raw_properties` (all of which were
    /// checked); `BasicProperties::decode` gives the full view.
    pub properties: PublishProperties,
    /// Property flags + property list exactly as received, so deliveries can
    /// re-emit them without re-encoding (zero-copy).
    pub raw_properties: Bytes,
}

/// A protocol error found while decoding. `code` is the AMQP reply code to
/// close the connection (or channel) with; `class_id`/`method_id` name the
/// offending method when known, else 0.
#[derive(Debug, Clone, PartialEq)]
pub struct CodecError {
    pub code: u16,
    pub text: String,
    pub channel: u16,
    pub class_id: u16,
    pub method_id: u16,
}

impl CodecError {
    pub(crate) fn new(code: u16, text: String) -> Self {
        CodecError {
            code,
            text,
            channel: 0,
            class_id: 0,
            method_id: 0,
        }
    }

    fn frame(text: impl Into<String>, channel: u16) -> Self {
        CodecError {
            channel,
            ..CodecError::new(reply_code::FRAME_ERROR, text.into())
        }
    }
}

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AMQP error {} on channel {} (class {}, method {}): {}",
            self.code, self.channel, self.class_id, self.method_id, self.text
        )
    }
}

impl std::error::Error for CodecError {}

/// Decodes one whole frame from the front of `buf`, consuming it.
///
/// `Ok(None)`: more bytes are needed (nothing consumed). `frame_max` bounds
/// the total frame size including the 8 framing bytes; 0 means unlimited.
/// On error nothing is consumed; the connection must be closed anyway.
///
/// Error codes: oversized frame, bad frame-end octet, unknown frame type and
/// undecodable method arguments are 501 FRAME_ERROR (RabbitMQ reports
/// undecodable arguments as `FRAME_ERROR - cannot decode`); invalid UTF-8 in
/// a short string and unknown field-table types are 502 SYNTAX_ERROR; unknown
/// class/method ids are 540 NOT_IMPLEMENTED.
/// The full length of the frame that starts `buf`, once its 7-byte header
/// has arrived (the size is not checked against frame_max here).
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    let size = u32::from_be_bytes(buf.get(3..7)?.try_into().ok()?);
    Some(size as usize + FRAME_OVERHEAD)
}

pub fn decode_frame(buf: &mut BytesMut, frame_max: u32) -> Result<Option<Frame>, CodecError> {
    if buf.len() < 7 {
        return Ok(None);
    }
    let kind = buf[0];
    let channel = u16::from_be_bytes([buf[1], buf[2]]);
    let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]);
    // Check type and size from the 7-byte header alone, so an oversized or
    // bogus frame is rejected before we wait for (or buffer) its payload.
    if !matches!(
        kind,
        FRAME_METHOD | FRAME_HEADER | FRAME_BODY | FRAME_HEARTBEAT
    ) {
        return Err(CodecError::frame(
            format!("unknown frame type {kind}"),
            channel,
        ));
    }
    let total = size as u64 + FRAME_OVERHEAD as u64;
    if frame_max != 0 && total > frame_max as u64 {
        return Err(CodecError::frame(
            format!("frame size {total} exceeds frame_max {frame_max}"),
            channel,
        ));
    }
    if (buf.len() as u64) < total {
        return Ok(None);
    }
    // total <= buf.len() here, so it fits usize.
    let total = total as usize;
    if buf[total - 1] != FRAME_END {
        return Err(CodecError::frame("invalid frame end octet", channel));
    }
    let mut payload = buf.split_to(total).freeze();
    payload.advance(7);
    payload.truncate(total - FRAME_OVERHEAD);
    let frame = match kind {
        FRAME_METHOD => Frame::Method {
            channel,
            method: decode_method(payload, channel)?,
        },
        FRAME_HEADER => Frame::Header {
            channel,
            header: decode_header(payload).map_err(|e| CodecError { channel, ..e })?,
        },
        FRAME_BODY => Frame::Body { channel, payload },
        _ => {
            if !payload.is_empty() {
                return Err(CodecError::frame("heartbeat frame with payload", channel));
            }
            Frame::Heartbeat { channel }
        }
    };
    Ok(Some(frame))
}

fn decode_method(payload: Bytes, channel: u16) -> Result<Method, CodecError> {
    let mut r = Reader::new(payload);
    let ids = r.u16().and_then(|c| Ok((c, r.u16()?)));
    let (class_id, method_id) =
        ids.map_err(|_| CodecError::frame("method frame too short", channel))?;
    let with_ids = |e: CodecError| CodecError {
        channel,
        class_id,
        method_id,
        ..e
    };
    match Method::decode_args(class_id, method_id, &mut r) {
        Ok(Some(m)) => {
            r.finish().map_err(with_ids)?;
            Ok(m)
        }
        Ok(None) => Err(with_ids(CodecError::new(
            reply_code::NOT_IMPLEMENTED,
            format!("unknown method {class_id}.{method_id}"),
        ))),
        Err(e) => Err(with_ids(e)),
    }
}

fn decode_header(payload: Bytes) -> Result<ContentHeader, CodecError> {
    if payload.len() < HEADER_PREFIX + 2 {
        return Err(malformed("content header"));
    }
    let mut r = Reader::new(payload);
    let class_id = r.u16()?;
    let _weight = r.u16()?;
    let body_size = r.u64()?;
    let raw_properties = r.bytes(r.remaining())?;
    let properties = BasicProperties::decode(&raw_properties)
        .map_err(|e| CodecError { class_id, ..e })?
        .into();
    Ok(ContentHeader {
        class_id,
        body_size,
        properties,
        raw_properties,
    })
}

/// Writes the 7-byte frame header with a zero size; returns the frame start.
#[inline]
fn begin_frame(out: &mut BytesMut, kind: u8, channel: u16) -> usize {
    let start = out.len();
    out.put_u8(kind);
    out.put_u16(channel);
    out.put_u32(0);
    start
}

/// Patches the size of the frame started at `start` and writes frame-end.
#[inline]
fn end_frame(out: &mut BytesMut, start: usize) {
    let size = out.len() - start - 7;
    let size = u32::try_from(size).unwrap_or(u32::MAX);
    out[start + 3..start + 7].copy_from_slice(&size.to_be_bytes());
    out.put_u8(FRAME_END);
}

/// Appends one complete method frame.
pub fn encode_method(out: &mut BytesMut, channel: u16, method: &Method) {
    let start = begin_frame(out, FRAME_METHOD, channel);
    out.put_u16(method.class_id());
    out.put_u16(method.method_id());
    method.encode_args(out);
    end_frame(out, start);
}

/// Appends a content header frame (class 60, `raw_properties` verbatim)
/// followed by body frames, split so no frame exceeds `frame_max` (0 means
/// unlimited). An empty body produces no body frames.
pub fn encode_content(
    out: &mut BytesMut,
    channel: u16,
    body_size: u64,
    raw_properties: &[u8],
    body: &[u8],
    frame_max: u32,
) {
    let chunk = body_chunk(body.len(), frame_max);
    let n_body_frames = body.len().div_ceil(chunk);
    out.reserve(
        FRAME_OVERHEAD * (1 + n_body_frames) + HEADER_PREFIX + raw_properties.len() + body.len(),
    );
    put_content_header(out, channel, body_size, raw_properties);
    for piece in body.chunks(chunk) {
        put_body_frame_head(out, channel, piece.len());
        out.put_slice(piece);
        out.put_u8(FRAME_END);
    }
}

/// Like [`encode_content`], but each body frame's payload is handed to
/// `place(out, piece)` to append (or to send from where it is).
pub fn encode_content_with(
    out: &mut BytesMut,
    channel: u16,
    raw_properties: &[u8],
    body: &Bytes,
    frame_max: u32,
    mut place: impl FnMut(&mut BytesMut, Bytes),
) {
    let chunk = body_chunk(body.len(), frame_max);
    out.reserve(FRAME_OVERHEAD * 2 + HEADER_PREFIX + raw_properties.len());
    put_content_header(out, channel, body.len() as u64, raw_properties);
    let mut at = 0;
    while at < body.len() {
        let end = (at + chunk).min(body.len());
        put_body_frame_head(out, channel, end - at);
        place(out, body.slice(at..end));
        out.put_u8(FRAME_END);
        at = end;
    }
}

/// Payload capacity per body frame; never 0 even for a nonsensical
/// frame_max, so encoding always makes progress.
fn body_chunk(body_len: usize, frame_max: u32) -> usize {
    if frame_max == 0 {
        body_len.max(1)
    } else {
        (frame_max as usize).saturating_sub(FRAME_OVERHEAD).max(1)
    }
}

fn put_content_header(out: &mut BytesMut, channel: u16, body_size: u64, raw_properties: &[u8]) {
    out.put_u8(FRAME_HEADER);
    out.put_u16(channel);
    out.put_u32(u32::try_from(HEADER_PREFIX + raw_properties.len()).unwrap_or(u32::MAX));
    out.put_u16(CLASS_BASIC);
    out.put_u16(0); // weight
    out.put_u64(body_size);
    out.put_slice(raw_properties);
    out.put_u8(FRAME_END);
}

fn put_body_frame_head(out: &mut BytesMut, channel: u16, len: usize) {
    out.put_u8(FRAME_BODY);
    out.put_u16(channel);
    out.put_u32(len as u32);
}

/// Appends a heartbeat frame (always channel 0).
pub fn encode_heartbeat(out: &mut BytesMut) {
    out.put_slice(&[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);
}
