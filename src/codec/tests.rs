//! Unit tests: round trips and error paths. Cross-checks against another
//! implementation live in tests/codec_differential.rs.

use bytes::{BufMut, Bytes, BytesMut};

use super::*;

fn roundtrip(m: Method) {
    let mut out = BytesMut::new();
    encode_method(&mut out, 7, &m);
    let len = out.len();
    let frame = decode_frame(&mut out, 0)
        .expect("decodes")
        .expect("whole frame");
    assert!(out.is_empty(), "consumed all {len} bytes");
    assert_eq!(
        frame,
        Frame::Method {
            channel: 7,
            method: m
        }
    );
}

fn sample_table() -> FieldTable {
    let mut t = FieldTable::new();
    t.insert("bool", FieldValue::Bool(true));
    t.insert("i8", FieldValue::I8(-1));
    t.insert("u8", FieldValue::U8(255));
    t.insert("i16", FieldValue::I16(-300));
    t.insert("u16", FieldValue::U16(60000));
    t.insert("i32", FieldValue::I32(-70000));
    t.insert("u32", FieldValue::U32(u32::MAX));
    t.insert("i64", FieldValue::I64(i64::MIN));
    t.insert("u64", FieldValue::U64(u64::MAX));
    t.insert("f32", FieldValue::F32(0.5));
    t.insert("f64", FieldValue::F64(-1e300));
    t.insert(
        "dec",
        FieldValue::Decimal {
            scale: 3,
            value: 1234,
        },
    );
    t.insert("str", FieldValue::LongStr(Bytes::from_static(b"text")));
    t.insert("bin", FieldValue::ByteArray(Bytes::from_static(&[0, 0xFF])));
    t.insert("ts", FieldValue::Timestamp(1_700_000_000));
    t.insert("void", FieldValue::Void);
    let inner = t.clone();
    t.insert(
        "arr",
        FieldValue::Array(vec![FieldValue::I8(1), FieldValue::Table(inner.clone())]),
    );
    t.insert("tbl", FieldValue::Table(inner));
    t
}

#[test]
fn method_round_trips() {
    roundtrip(Method::ConnectionStart(ConnectionStart {
        version_major: 0,
        version_minor: 9,
        server_properties: sample_table(),
        mechanisms: Bytes::from_static(b"PLAIN AMQPLAIN"),
        locales: Bytes::from_static(b"en_US"),
    }));
    roundtrip(Method::ConnectionStartOk(ConnectionStartOk {
        client_properties: sample_table(),
        mechanism: "PLAIN".into(),
        response: Bytes::from_static(b"\0guest\0guest"),
        locale: "en_US".into(),
    }));
    roundtrip(
        ConnectionTune {
            channel_max: 2047,
            frame_max: 131072,
            heartbeat: 60,
        }
        .into(),
    );
    roundtrip(
        ConnectionOpen {
            virtual_host: "/".into(),
        }
        .into(),
    );
    roundtrip(ConnectionOpenOk {}.into());
    roundtrip(
        ConnectionClose {
            reply_code: reply_code::NOT_FOUND,
            reply_text: "NOT_FOUND - no queue 'q'".into(),
            class_id: 50,
            method_id: 10,
        }
        .into(),
    );
    roundtrip(
        ConnectionBlocked {
            reason: "low on memory".into(),
        }
        .into(),
    );
    roundtrip(ChannelOpen {}.into());
    roundtrip(ChannelFlow { active: true }.into());
    roundtrip(
        QueueDeclare {
            queue: "q".into(),
            passive: false,
            durable: true,
            exclusive: false,
            auto_delete: true,
            no_wait: true,
            arguments: sample_table(),
        }
        .into(),
    );
    roundtrip(
        ExchangeDeclare {
            exchange: "x".into(),
            kind: "headers".into(),
            internal: true,
            ..Default::default()
        }
        .into(),
    );
    roundtrip(
        BasicQos {
            prefetch_size: 0,
            prefetch_count: 100,
            global: true,
        }
        .into(),
    );
    roundtrip(
        BasicDeliver {
            consumer_tag: "ctag".into(),
            delivery_tag: u64::MAX,
            redelivered: true,
            exchange: "".into(),
            routing_key: "日本".into(),
        }
        .into(),
    );
    roundtrip(
        BasicNack {
            delivery_tag: 5,
            multiple: false,
            requeue: true,
        }
        .into(),
    );
    roundtrip(ConfirmSelect { nowait: true }.into());
    roundtrip(TxRollbackOk {}.into());
}

#[test]
fn method_metadata() {
    let m: Method = BasicPublish::default().into();
    assert_eq!(
        (m.class_id(), m.method_id(), m.name()),
        (60, 40, "basic.publish")
    );
    assert!(m.has_content());
    let m: Method = ExchangeUnbindOk {}.into();
    assert_eq!(
        (m.class_id(), m.method_id(), m.name()),
        (40, 51, "exchange.unbind-ok")
    );
    assert!(!m.has_content());
    for m in [
        Method::BasicReturn(Default::default()),
        Method::BasicDeliver(Default::default()),
        Method::BasicGetOk(Default::default()),
    ] {
        assert!(m.has_content());
    }
}

#[test]
fn bits_pack_in_spec_order() {
    let mut out = BytesMut::new();
    let m: Method = QueueDeclare {
        queue: "".into(),
        durable: true,
        no_wait: true,
        ..Default::default()
    }
    .into();
    encode_method(&mut out, 1, &m);
    // header 7 + ids 4 + reserved short 2 + empty shortstr 1 -> bits octet.
    assert_eq!(out[14], 0b1_0010);
    // Then an empty table and the frame end.
    assert_eq!(&out[15..], &[0, 0, 0, 0, FRAME_END]);
}

#[test]
fn reserved_fields_are_written_and_skipped() {
    let mut out = BytesMut::new();
    encode_method(
        &mut out,
        0,
        &ConnectionOpen {
            virtual_host: "/v".into(),
        }
        .into(),
    );
    // vhost "/v", reserved-1 empty shortstr, reserved-2 bit octet.
    assert_eq!(&out[11..out.len() - 1], &[2, b'/', b'v', 0, 0]);
    // A client sending non-empty reserved values (old "capabilities", insist) is accepted.
    let mut frame = raw_frame(
        FRAME_METHOD,
        0,
        &[0, 10, 0, 40, 1, b'/', 3, b'a', b'b', b'c', 1],
    );
    let f = decode_frame(&mut frame, 0).unwrap().unwrap();
    assert_eq!(
        f,
        Frame::Method {
            channel: 0,
            method: ConnectionOpen {
                virtual_host: "/".into()
            }
            .into()
        }
    );
}

#[test]
fn partial_input_needs_more() {
    let mut full = BytesMut::new();
    encode_method(
        &mut full,
        1,
        &BasicAck {
            delivery_tag: 9,
            multiple: true,
        }
        .into(),
    );
    for n in 0..full.len() {
        let mut part = BytesMut::from(&full[..n]);
        assert_eq!(decode_frame(&mut part, 0), Ok(None));
        assert_eq!(part.len(), n, "nothing consumed");
    }
}

#[test]
fn frame_len_needs_only_the_header() {
    let frame = raw_frame(FRAME_BODY, 3, &[7u8; 40_000]);
    assert_eq!(frame_len(&frame), Some(frame.len()));
    assert_eq!(frame_len(&frame[..7]), Some(frame.len()));
    assert_eq!(frame_len(&frame[..6]), None);
    assert_eq!(frame_len(&[]), None);
}

fn raw_frame(kind: u8, channel: u16, payload: &[u8]) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_u8(kind);
    b.put_u16(channel);
    b.put_u32(payload.len() as u32);
    b.put_slice(payload);
    b.put_u8(FRAME_END);
    b
}

fn err(mut b: BytesMut, frame_max: u32) -> CodecError {
    decode_frame(&mut b, frame_max).expect_err("must fail")
}

#[test]
fn frame_errors() {
    // frame_max counts the whole frame, 8 bytes of framing included.
    let ok = raw_frame(FRAME_BODY, 1, &[0; 4088]);
    assert!(decode_frame(&mut ok.clone(), 4096).unwrap().is_some());
    let big = raw_frame(FRAME_BODY, 1, &[0; 4089]);
    let e = err(big.clone(), 4096);
    assert_eq!((e.code, e.channel), (reply_code::FRAME_ERROR, 1));
    // Rejected from the 7-byte header alone, before the payload arrives.
    assert_eq!(
        err(BytesMut::from(&big[..7]), 4096).code,
        reply_code::FRAME_ERROR
    );

    let mut bad_end = raw_frame(FRAME_BODY, 1, b"abc");
    let last = bad_end.len() - 1;
    bad_end[last] = 0;
    assert_eq!(err(bad_end, 0).code, reply_code::FRAME_ERROR);
    assert_eq!(err(raw_frame(4, 0, b""), 0).code, reply_code::FRAME_ERROR);
    assert_eq!(
        err(raw_frame(FRAME_HEARTBEAT, 0, b"x"), 0).code,
        reply_code::FRAME_ERROR
    );
    assert_eq!(
        err(raw_frame(FRAME_METHOD, 0, &[0, 10]), 0).code,
        reply_code::FRAME_ERROR
    );
}

#[test]
fn method_errors_carry_ids() {
    let e = err(raw_frame(FRAME_METHOD, 3, &[0, 60, 0, 99]), 0);
    assert_eq!(
        (e.code, e.channel, e.class_id, e.method_id),
        (reply_code::NOT_IMPLEMENTED, 3, 60, 99)
    );
    let e = err(raw_frame(FRAME_METHOD, 3, &[0, 30, 0, 10]), 0); // access.request: not supported
    assert_eq!(e.code, reply_code::NOT_IMPLEMENTED);

    // Truncated arguments: basic.ack with a 4-byte delivery tag.
    let e = err(raw_frame(FRAME_METHOD, 2, &[0, 60, 0, 80, 0, 0, 0, 1]), 0);
    assert_eq!(
        (e.code, e.channel, e.class_id, e.method_id),
        (reply_code::FRAME_ERROR, 2, 60, 80)
    );
    // Trailing bytes after the arguments.
    let e = err(raw_frame(FRAME_METHOD, 2, &[0, 20, 0, 20, 1, 9]), 0);
    assert_eq!(
        (e.code, e.class_id, e.method_id),
        (reply_code::FRAME_ERROR, 20, 20)
    );
    // Invalid UTF-8 in a short string: connection.open with vhost 0xFF.
    let e = err(
        raw_frame(FRAME_METHOD, 0, &[0, 10, 0, 40, 1, 0xFF, 0, 0]),
        0,
    );
    assert_eq!(
        (e.code, e.class_id, e.method_id),
        (reply_code::SYNTAX_ERROR, 10, 40)
    );
    // A table whose length claims more than is present; an unknown field type.
    let e = err(
        raw_frame(
            FRAME_METHOD,
            1,
            &[0, 50, 0, 10, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF],
        ),
        0,
    );
    assert_eq!(e.code, reply_code::FRAME_ERROR);
    let e = err(
        raw_frame(
            FRAME_METHOD,
            1,
            &[0, 50, 0, 10, 0, 0, 0, 0, 0, 0, 0, 3, 1, b'k', b'Q'],
        ),
        0,
    );
    assert_eq!(e.code, reply_code::SYNTAX_ERROR);
}

#[test]
fn deep_nesting_is_rejected_not_a_stack_overflow() {
    // 10_000 nested arrays, each claiming the rest of the payload.
    let depth = 10_000usize;
    let mut table = Vec::new();
    let inner_len = |level: usize| ((depth - level - 1) * 5) as u32;
    table.extend_from_slice(&[1, b'k']);
    for level in 0..depth {
        table.push(b'A');
        table.extend_from_slice(&inner_len(level).to_be_bytes());
    }
    let mut payload = vec![0, 50, 0, 10, 0, 0, 0, 0];
    payload.extend_from_slice(&(table.len() as u32).to_be_bytes());
    payload.extend_from_slice(&table);
    assert_eq!(
        err(raw_frame(FRAME_METHOD, 1, &payload), 0).code,
        reply_code::SYNTAX_ERROR
    );
}

#[test]
fn content_round_trip_and_splitting() {
    let props = BasicProperties {
        content_type: Some("text/plain".into()),
        headers: Some(sample_table()),
        delivery_mode: Some(2),
        priority: Some(9),
        correlation_id: Some("c".into()),
        reply_to: Some("r".into()),
        expiration: Some("60000".into()),
        message_id: Some("m".into()),
        timestamp: Some(1),
        kind: Some("k".into()),
        user_id: Some("guest".into()),
        app_id: Some("app".into()),
        cluster_id: Some("cl".into()),
        content_encoding: Some("gzip".into()),
    };
    let raw = props.to_raw();
    assert_eq!(BasicProperties::decode(&raw).as_ref(), Ok(&props));
    let body: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    let mut out = BytesMut::new();
    encode_content(&mut out, 4, body.len() as u64, &raw, &body, 4096);
    let header = match decode_frame(&mut out, 4096).unwrap().unwrap() {
        Frame::Header { channel: 4, header } => header,
        other => panic!("{other:?}"),
    };
    assert_eq!((header.class_id, header.body_size), (60, 10_000));
    assert_eq!(header.properties, PublishProperties::from(props.clone()));
    assert_eq!(header.raw_properties, raw);
    let mut got = Vec::new();
    while let Some(f) = decode_frame(&mut out, 4096).unwrap() {
        match f {
            Frame::Body {
                channel: 4,
                payload,
            } => {
                assert!(payload.len() <= 4096 - 8);
                got.extend_from_slice(&payload);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got, body);

    // Empty body: header only. frame_max 0: one body frame.
    let mut out = BytesMut::new();
    encode_content(&mut out, 1, 0, &raw, b"", 4096);
    assert!(matches!(
        decode_frame(&mut out, 0),
        Ok(Some(Frame::Header { .. }))
    ));
    assert!(out.is_empty());
    encode_content(&mut out, 1, 3, &raw, b"abc", 0);
    decode_frame(&mut out, 0).unwrap();
    assert!(matches!(
        decode_frame(&mut out, 0),
        Ok(Some(Frame::Body { .. }))
    ));
    assert!(out.is_empty());
    // Degenerate frame_max must not loop forever or panic.
    encode_content(&mut out, 1, 3, &raw, b"abc", 1);
}

#[test]
fn body_is_zero_copy() {
    let mut buf = raw_frame(FRAME_BODY, 1, b"payload");
    let base = buf.as_ptr() as usize;
    match decode_frame(&mut buf, 0).unwrap().unwrap() {
        Frame::Body { payload, .. } => assert_eq!(payload.as_ptr() as usize, base + 7),
        other => panic!("{other:?}"),
    }
}

#[test]
fn empty_properties() {
    let raw = BasicProperties::default().to_raw();
    assert_eq!(&raw[..], &[0, 0]);
    assert_eq!(
        BasicProperties::decode(&raw),
        Ok(BasicProperties::default())
    );
    // Unknown flag bit and truncated lists are errors, not panics.
    assert!(BasicProperties::decode(&Bytes::from_static(&[0, 2])).is_err());
    assert!(BasicProperties::decode(&Bytes::from_static(&[0x80, 0, 5, b'a'])).is_err());
    assert!(BasicProperties::decode(&Bytes::from_static(&[0])).is_err());
}

#[test]
fn field_table_api() {
    let mut t = FieldTable::new();
    assert!(t.is_empty());
    t.insert("a", FieldValue::I8(1));
    t.insert("b", FieldValue::Bool(true));
    t.insert("a", FieldValue::U32(7));
    assert_eq!(t.len(), 2);
    assert_eq!(
        t.iter().next().map(|(k, _)| &**k),
        Some("a"),
        "replace keeps position"
    );
    assert_eq!(t.get("a").and_then(FieldValue::as_i64), Some(7));
    assert_eq!(t.get("b").and_then(FieldValue::as_bool), Some(true));
    assert_eq!(FieldValue::U64(u64::MAX).as_i64(), None);
    assert_eq!(
        FieldValue::LongStr(Bytes::from_static(b"x")).as_str(),
        Some("x")
    );
    assert_eq!(
        FieldValue::LongStr(Bytes::from_static(&[0xFF])).as_str(),
        None
    );
    assert_eq!(t.get("zz"), None);
}

#[test]
fn long_short_strings_truncate_at_char_boundary() {
    let long = "é".repeat(200); // 400 bytes
    let mut out = BytesMut::new();
    encode_method(
        &mut out,
        1,
        &QueueDeclareOk {
            queue: long.as_str().into(),
            ..Default::default()
        }
        .into(),
    );
    match decode_frame(&mut out, 0).unwrap().unwrap() {
        Frame::Method {
            method: Method::QueueDeclareOk(ok),
            ..
        } => {
            assert_eq!(ok.queue.len(), 254);
            assert!(long.starts_with(&*ok.queue));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn shortstr_decode_is_zero_copy() {
    let mut buf = BytesMut::new();
    encode_method(
        &mut buf,
        1,
        &BasicPublish {
            routing_key: "rk".into(),
            ..Default::default()
        }
        .into(),
    );
    let base = buf.as_ptr() as usize;
    let len = buf.len();
    match decode_frame(&mut buf, 0).unwrap().unwrap() {
        Frame::Method {
            method: Method::BasicPublish(p),
            ..
        } => {
            let at = p.routing_key.as_ptr() as usize;
            assert!(at > base && at < base + len);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn heartbeat_bytes() {
    let mut out = BytesMut::new();
    encode_heartbeat(&mut out);
    assert_eq!(&out[..], &[8, 0, 0, 0, 0, 0, 0, 0xCE]);
    assert_eq!(
        decode_frame(&mut out, 4096),
        Ok(Some(Frame::Heartbeat { channel: 0 }))
    );
}
