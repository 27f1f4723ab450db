//! Codec throughput: decoding a basic.publish + header + body sequence (the
//! publisher hot path) and encoding basic.deliver + header + body (the
//! consumer hot path); and the client's side of both, encoding publishes and
//! decoding deliveries (what a client or tools/warren-perf does).

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use warren::codec::*;

fn props() -> BasicProperties {
    let mut headers = FieldTable::new();
    headers.insert(
        "x-trace",
        FieldValue::LongStr(Bytes::from_static(b"abc123")),
    );
    BasicProperties {
        content_type: Some("application/json".into()),
        delivery_mode: Some(2),
        headers: Some(headers),
        message_id: Some("msg-0001".into()),
        timestamp: Some(1_700_000_000),
        ..Default::default()
    }
}

fn publish_stream(body: &[u8], messages: usize) -> Bytes {
    let raw = props().to_raw();
    let publish = Method::BasicPublish(BasicPublish {
        exchange: "amq.topic".into(),
        routing_key: "orders.eu.created".into(),
        mandatory: false,
        immediate: false,
    });
    let mut out = BytesMut::new();
    for _ in 0..messages {
        encode_method(&mut out, 1, &publish);
        encode_content(&mut out, 1, body.len() as u64, &raw, body, 131_072);
    }
    out.freeze()
}

fn bench_decode_publish(c: &mut Criterion) {
    const MESSAGES: usize = 100;
    let mut group = c.benchmark_group("decode_publish");
    for size in [16usize, 1024, 64 * 1024] {
        let body = vec![0x5Au8; size];
        let stream = publish_stream(&body, MESSAGES);
        group.throughput(Throughput::Elements(MESSAGES as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &stream, |b, stream| {
            b.iter(|| {
                // Copy into a read buffer as a socket read would; the decode
                // itself slices it without further copies.
                let mut buf = BytesMut::from(&stream[..]);
                let mut frames = 0usize;
                while let Some(f) = decode_frame(&mut buf, 131_072).expect("valid") {
                    black_box(&f);
                    frames += 1;
                }
                assert_eq!(frames, MESSAGES * 3);
            })
        });
    }
    group.finish();
}

fn bench_encode_deliver(c: &mut Criterion) {
    const MESSAGES: usize = 100;
    let raw = props().to_raw();
    let mut group = c.benchmark_group("encode_deliver");
    for size in [16usize, 1024, 64 * 1024] {
        let body = vec![0x5Au8; size];
        group.throughput(Throughput::Elements(MESSAGES as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &body, |b, body| {
            let mut out = BytesMut::with_capacity(MESSAGES * (size + 256));
            b.iter(|| {
                out.clear();
                for tag in 0..MESSAGES as u64 {
                    let deliver = Method::BasicDeliver(BasicDeliver {
                        consumer_tag: ShortStr::from_static("amq.ctag-1"),
                        delivery_tag: tag + 1,
                        redelivered: false,
                        exchange: ShortStr::from_static("amq.topic"),
                        routing_key: ShortStr::from_static("orders.eu.created"),
                    });
                    encode_method(&mut out, 1, &deliver);
                    encode_content(&mut out, 1, body.len() as u64, &raw, body, 131_072);
                }
                black_box(out.len());
            })
        });
    }
    group.finish();
}

fn deliver_stream(body: &[u8], messages: usize) -> Bytes {
    let raw = props().to_raw();
    let mut out = BytesMut::new();
    for tag in 0..messages as u64 {
        let deliver = Method::BasicDeliver(BasicDeliver {
            consumer_tag: ShortStr::from_static("amq.ctag-1"),
            delivery_tag: tag + 1,
            redelivered: false,
            exchange: ShortStr::from_static("amq.topic"),
            routing_key: ShortStr::from_static("orders.eu.created"),
        });
        encode_method(&mut out, 1, &deliver);
        encode_content(&mut out, 1, body.len() as u64, &raw, body, 131_072);
    }
    out.freeze()
}

fn bench_encode_publish(c: &mut Criterion) {
    const MESSAGES: usize = 100;
    let raw = props().to_raw();
    let mut group = c.benchmark_group("encode_publish");
    for size in [16usize, 1024, 64 * 1024] {
        let body = vec![0x5Au8; size];
        group.throughput(Throughput::Elements(MESSAGES as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &body, |b, body| {
            let mut out = BytesMut::with_capacity(MESSAGES * (size + 256));
            b.iter(|| {
                out.clear();
                for _ in 0..MESSAGES {
                    let publish = Method::BasicPublish(BasicPublish {
                        exchange: ShortStr::from_static("amq.topic"),
                        routing_key: ShortStr::from_static("orders.eu.created"),
                        mandatory: false,
                        immediate: false,
                    });
                    encode_method(&mut out, 1, &publish);
                    encode_content(&mut out, 1, body.len() as u64, &raw, body, 131_072);
                }
                black_box(out.len());
            })
        });
    }
    group.finish();
}

fn bench_decode_deliver(c: &mut Criterion) {
    const MESSAGES: usize = 100;
    let mut group = c.benchmark_group("decode_deliver");
    for size in [16usize, 1024, 64 * 1024] {
        let body = vec![0x5Au8; size];
        let stream = deliver_stream(&body, MESSAGES);
        group.throughput(Throughput::Elements(MESSAGES as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &stream, |b, stream| {
            b.iter(|| {
                let mut buf = BytesMut::from(&stream[..]);
                let mut frames = 0usize;
                while let Some(f) = decode_frame(&mut buf, 131_072).expect("valid") {
                    black_box(&f);
                    frames += 1;
                }
                assert_eq!(frames, MESSAGES * 3);
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_decode_publish,
    bench_encode_deliver,
    bench_encode_publish,
    bench_decode_deliver
);
criterion_main!(benches);
