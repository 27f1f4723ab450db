//! Property tests: `decode_frame` never panics, on arbitrary bytes and on
//! mutated valid frames, and valid frames survive being fed byte by byte.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use warren::codec::*;

/// A few valid frames covering every frame type, tables and properties.
fn valid_stream() -> Vec<u8> {
    let mut out = BytesMut::new();
    let mut args = FieldTable::new();
    args.insert("x-message-ttl", FieldValue::I32(1000));
    args.insert(
        "nested",
        FieldValue::Array(vec![
            FieldValue::Table(args.clone()),
            FieldValue::LongStr(Bytes::from_static(b"s")),
            FieldValue::Decimal { scale: 1, value: 5 },
        ]),
    );
    encode_method(
        &mut out,
        1,
        &Method::QueueDeclare(QueueDeclare {
            queue: "q".into(),
            durable: true,
            arguments: args.clone(),
            ..Default::default()
        }),
    );
    encode_method(
        &mut out,
        1,
        &Method::BasicPublish(BasicPublish {
            exchange: "amq.topic".into(),
            routing_key: "a.b.c".into(),
            mandatory: true,
            immediate: false,
        }),
    );
    let props = BasicProperties {
        content_type: Some("text/plain".into()),
        headers: Some(args),
        delivery_mode: Some(2),
        timestamp: Some(42),
        ..Default::default()
    };
    encode_content(&mut out, 1, 5, &props.to_raw(), b"hello", 4096);
    encode_heartbeat(&mut out);
    out.to_vec()
}

/// Decodes frames until an error or until more bytes are needed.
fn drain(bytes: &[u8], frame_max: u32) {
    let mut buf = BytesMut::from(bytes);
    while let Ok(Some(_)) = decode_frame(&mut buf, frame_max) {}
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512),
                                   frame_max in prop_oneof![Just(0u32), Just(4096), any::<u32>()]) {
        drain(&bytes, frame_max);
    }

    /// Arbitrary payloads inside a correct frame envelope reach the method,
    /// header and table decoders instead of failing on the frame end.
    #[test]
    fn arbitrary_payload_in_valid_envelope(kind in prop_oneof![Just(1u8), Just(2), Just(3), Just(8)],
                                           class_method in prop_oneof![
                                               Just([0u8, 10, 0, 10]), Just([0, 10, 0, 11]),
                                               Just([0, 40, 0, 10]), Just([0, 50, 0, 10]),
                                               Just([0, 60, 0, 40]), Just([0, 60, 0, 60]),
                                               Just([0, 60, 0, 20]), any::<[u8; 4]>()],
                                           tail in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut payload = class_method.to_vec();
        payload.extend_from_slice(&tail);
        let mut frame = vec![kind, 0, 1];
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(&payload);
        frame.push(FRAME_END);
        drain(&frame, 0);
    }

    #[test]
    fn mutated_valid_frames_never_panic(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
                                        cut in any::<prop::sample::Index>()) {
        let mut bytes = valid_stream();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let len = bytes.len();
        drain(&bytes[..cut.index(len + 1)], 4096);
        drain(&bytes, 0);
    }

    /// Incremental input: feeding the stream in random-sized pieces yields the
    /// same frames as feeding it whole.
    #[test]
    fn split_input_decodes_identically(splits in proptest::collection::vec(1usize..64, 1..64)) {
        let bytes = valid_stream();
        let mut whole = BytesMut::from(&bytes[..]);
        let mut expected = Vec::new();
        while let Some(f) = decode_frame(&mut whole, 4096).expect("valid") {
            expected.push(f);
        }
        let mut got = Vec::new();
        let mut buf = BytesMut::new();
        let mut pos = 0;
        let mut splits = splits.into_iter().cycle();
        while pos < bytes.len() {
            let n = splits.next().unwrap_or(1).min(bytes.len() - pos);
            buf.extend_from_slice(&bytes[pos..pos + n]);
            pos += n;
            while let Some(f) = decode_frame(&mut buf, 4096).expect("valid") {
                got.push(f);
            }
        }
        prop_assert_eq!(got, expected);
    }
}
