//! A connection's pending output: frames encoded into one buffer, with
//! large message bodies referenced in place instead of copied into it. The
//! writer sends the lot with one `sendmsg` (scatter/gather), so a 64 KiB
//! body goes from the publisher's read buffer to the consumer's socket
//! without a copy in user space.
use bytes::{Bytes, BytesMut};
use std::ops::{Deref, DerefMut};

use crate::codec;

/// Bodies at least this big are referenced, not copied: below it, a copy
/// costs less than an extra iovec and a reference count.
pub const BODY_BY_REF: usize = 16 * 1024;

#[derive(Default)]
pub struct Output {
    buf: BytesMut,
    /// Bodies to send in place: each goes at offset `.0` of `buf`.
    bodies: Vec<(usize, Bytes)>,
}

impl Deref for Output {
    type Target = BytesMut;
    fn deref(&self) -> &BytesMut {
        &self.buf
    }
}

impl DerefMut for Output {
    fn deref_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }
}

impl Output {
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.bodies.is_empty()
    }

    /// Bytes to send: the buffer and the referenced bodies.
    pub fn total_len(&self) -> usize {
        self.buf.len() + self.bodies.iter().map(|(_, b)| b.len()).sum::<usize>()
    }

    /// The buffer's capacity (referenced bodies are not counted).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.bodies.clear();
    }

    /// Appends a content header and body frames, referencing the body
    /// pieces of `BODY_BY_REF` bytes or more.
    pub fn encode_content(
        &mut self,
        channel: u16,
        raw_properties: &[u8],
        body: &Bytes,
        frame_max: u32,
    ) {
        if body.len() < BODY_BY_REF {
            codec::encode_content(
                &mut self.buf,
                channel,
                body.len() as u64,
                raw_properties,
                body,
                frame_max,
            );
            return;
        }
        let bodies = &mut self.bodies;
        codec::encode_content_with(
            &mut self.buf,
            channel,
            raw_properties,
            body,
            frame_max,
            |buf, piece| {
                if piece.len() >= BODY_BY_REF {
                    bodies.push((buf.len(), piece));
                } else {
                    buf.extend_from_slice(&piece);
                }
            },
        );
    }

    /// The bytes to send, in order.
    pub fn slices(&self) -> Vec<&[u8]> {
        let mut out = Vec::with_capacity(2 * self.bodies.len() + 1);
        let mut at = 0;
        for (offset, body) in &self.bodies {
            if *offset > at {
                out.push(&self.buf[at..*offset]);
            }
            out.push(&body[..]);
            at = *offset;
        }
        if self.buf.len() > at {
            out.push(&self.buf[at..]);
        }
        out
    }

    /// Whether everything is in the buffer (one plain write will do).
    pub fn contiguous(&self) -> bool {
        self.bodies.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(o: &Output) -> Vec<u8> {
        o.slices().concat()
    }

    #[test]
    fn referenced_bodies_produce_the_same_bytes_as_copies() {
        for (size, frame_max) in [
            (0usize, 4096u32),
            (100, 4096),
            (BODY_BY_REF - 1, 131_072),
            (BODY_BY_REF, 131_072),
            (100_000, 131_072),
            (300_000, 131_072),
            (300_000, 40_000),
        ] {
            let body = Bytes::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
            let props = [0x10u8, 0x00, 2];
            let mut copied = BytesMut::new();
            codec::encode_method(
                &mut copied,
                1,
                &codec::BasicAck {
                    delivery_tag: 1,
                    multiple: false,
                }
                .into(),
            );
            let mut out = Output::default();
            out.extend_from_slice(&copied);
            codec::encode_content(&mut copied, 3, size as u64, &props, &body, frame_max);
            codec::encode_heartbeat(&mut copied);
            out.encode_content(3, &props, &body, frame_max);
            codec::encode_heartbeat(&mut out);
            assert_eq!(
                flat(&out),
                &copied[..],
                "size {size}, frame_max {frame_max}"
            );
            assert_eq!(out.contiguous(), size < BODY_BY_REF, "size {size}");
        }
    }
}
