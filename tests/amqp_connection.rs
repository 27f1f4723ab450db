//! Connection and channel behaviour: handshake, server capabilities,
//! authentication, vhosts, heartbeats, channel lifecycle and channel errors.

#[macro_use]
mod common;

use std::time::Duration;

use amq_protocol::frame::{parse_frame, AMQPFrame};
use amq_protocol::protocol::{connection, AMQPClass};
use common::*;
use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Read one full AMQP frame (after the protocol header was sent).
async fn read_frame(sock: &mut tokio::net::TcpStream) -> AMQPFrame {
    let mut header = [0u8; 7];
    w!(sock.read_exact(&mut header)).expect("read frame header");
    let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]) as usize;
    let mut rest = vec![0u8; size + 1];
    w!(sock.read_exact(&mut rest)).expect("read frame payload");
    assert_eq!(rest[size], 0xCE, "frame-end octet");
    let mut buf = header.to_vec();
    buf.extend_from_slice(&rest);
    let (_, frame) = parse_frame(&buf[..]).expect("parse frame");
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_and_server_capabilities() {
    let broker = TestBroker::start().await;
    let mut sock = w!(tokio::net::TcpStream::connect(broker.addr())).expect("tcp connect");
    w!(sock.write_all(b"AMQP\x00\x00\x09\x01")).unwrap();
    let frame = read_frame(&mut sock).await;
    let start = match frame {
        AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Start(start))) => start,
        other => panic!("expected connection.start on channel 0, got {other:?}"),
    };
    assert_eq!((start.version_major, start.version_minor), (0, 9));
    let mechanisms = start.mechanisms.to_string();
    assert!(
        mechanisms.split_whitespace().any(|m| m == "PLAIN"),
        "mechanisms: {mechanisms}"
    );
    let locales = start.locales.to_string();
    assert!(
        locales.split_whitespace().any(|l| l == "en_US"),
        "locales: {locales}"
    );

    let props = start.server_properties.inner();
    assert!(
        props.contains_key("product"),
        "server properties lack product: {props:?}"
    );
    assert!(
        props.contains_key("version"),
        "server properties lack version: {props:?}"
    );
    let caps = match props.get("capabilities") {
        Some(AMQPValue::FieldTable(t)) => t.inner().clone(),
        other => panic!("capabilities missing or not a table: {other:?}"),
    };
    for key in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
        "per_consumer_qos",
    ] {
        assert_eq!(
            caps.get(key),
            Some(&AMQPValue::Boolean(true)),
            "capability {key} must be present and true; capabilities: {caps:?}"
        );
    }

    // And a full lapin handshake works and negotiates sane limits.
    let conn = broker.connect().await;
    assert!(conn.status().connected());
    let cfg = conn.configuration();
    assert!(cfg.frame_max() >= 4096, "frame_max {}", cfg.frame_max());
    assert!(cfg.channel_max() > 0, "channel_max {}", cfg.channel_max());
    w!(conn.close(200, "bye".into())).expect("connection.close");
    assert!(!conn.status().connected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_protocol_header_gets_supported_version_back() {
    let broker = TestBroker::start().await;
    let mut sock = w!(tokio::net::TcpStream::connect(broker.addr())).expect("tcp connect");
    w!(sock.write_all(b"AMQP\x01\x01\x00\x0a")).unwrap();
    // The server answers with the header it supports, then closes the socket.
    let mut reply = [0u8; 8];
    w!(sock.read_exact(&mut reply)).expect("read reply");
    assert_eq!(&reply[..], b"AMQP\x00\x00\x09\x01");
    let mut rest = [0u8; 1];
    match w!(sock.read(&mut rest)) {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("server kept talking after the version header ({n} bytes)"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_are_refused() {
    let broker = TestBroker::start().await;
    let url = broker.url_with_credentials("guest", "definitely-not-the-password");
    let res = w!(Connection::connect(&url, ConnectionProperties::default()));
    let err = match res {
        Ok(_) => panic!("connection with a wrong password succeeded"),
        Err(e) => e,
    };
    // authentication_failure_close: the broker sends connection.close 403.
    assert_eq!(
        amqp_code(&err),
        Some(403),
        "expected ACCESS_REFUSED, got {err:?}"
    );

    let url = broker.url_with_credentials(&unique("nobody"), "guest");
    let res = w!(Connection::connect(&url, ConnectionProperties::default()));
    assert!(res.is_err(), "connection with an unknown user succeeded");

    // The broker still accepts good credentials afterwards.
    let conn = broker.connect().await;
    assert!(conn.status().connected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_vhost_is_refused() {
    let broker = TestBroker::start().await;
    let url = broker.url_with_vhost(&unique("no-such-vhost"));
    let res = w!(Connection::connect(&url, ConnectionProperties::default()));
    let err = match res {
        Ok(_) => panic!("connection to an unknown vhost succeeded"),
        Err(e) => e,
    };
    // connection.open on a missing vhost: 530 NOT_ALLOWED.
    assert_eq!(
        amqp_code(&err),
        Some(530),
        "expected NOT_ALLOWED, got {err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_an_idle_connection_alive() {
    let broker = TestBroker::start().await;
    let url = broker.url_with_query("heartbeat=2");
    let conn = w!(Connection::connect(&url, ConnectionProperties::default())).expect("connect");
    assert_eq!(conn.configuration().heartbeat(), 2, "negotiated heartbeat");
    let ch = channel(&conn).await;
    // Stay idle well beyond the heartbeat interval: lapin drops the connection
    // if it hears nothing from the broker for 2 intervals, and the broker
    // drops it if it hears nothing from lapin. The passing of time is the
    // condition under test here.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        conn.status().connected(),
        "connection died while idle: {:?}",
        conn.status()
    );
    let q = unique("hb");
    declare_queue(&ch, &q).await;
    let ch2 = channel(&conn).await;
    assert_eq!(queue_counts(&ch2, &q).await, (0, 0));
    w!(ch.queue_delete(q.as_str().into(), Default::default())).unwrap();
    w!(conn.close(200, "bye".into())).expect("close after idle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_channels_close_one_others_keep_working() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let mut chans = Vec::new();
    for _ in 0..40 {
        chans.push(channel(&conn).await);
    }
    let ids: std::collections::HashSet<u16> = chans.iter().map(|c| c.id()).collect();
    assert_eq!(ids.len(), 40, "channel ids must be distinct");

    let victim = chans.remove(17);
    w!(victim.close(200, "done".into())).expect("channel.close");
    assert!(!victim.status().connected());
    assert!(w!(victim.queue_declare(
        unique("x").as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default()
    ))
    .is_err());

    let q = unique("many");
    declare_queue(&chans[0], &q).await;
    for (i, ch) in chans.iter().enumerate() {
        publish(ch, "", &q, format!("m{i}").as_bytes()).await;
    }
    // All other channels still work, and all their publishes arrived.
    let (count, _) = {
        let deadline = std::time::Instant::now() + STEP;
        loop {
            let c = queue_counts(&chans[5], &q).await;
            if c.0 as usize == chans.len() || std::time::Instant::now() > deadline {
                break c;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    assert_eq!(count as usize, chans.len());
    // A new channel can still be opened after closing one.
    let fresh = channel(&conn).await;
    assert_eq!(queue_counts(&fresh, &q).await.0 as usize, chans.len());
    w!(fresh.queue_delete(q.as_str().into(), Default::default())).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_error_closes_only_that_channel() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let good = channel(&conn).await;
    let bad = channel(&conn).await;
    let q = unique("survivor");
    declare_queue(&good, &q).await;

    let missing = unique("missing");
    let res = w!(bad.queue_declare(
        missing.as_str().into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default()
    ));
    assert_code(res, 404);
    assert!(
        !bad.status().connected(),
        "channel must be closed after a 404"
    );
    // Further use of the dead channel fails.
    assert!(w!(bad.exchange_declare(
        "amq.direct".into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default()
    ))
    .is_err());

    // The connection and the other channel are unaffected.
    assert!(conn.status().connected());
    assert_eq!(queue_counts(&good, &q).await, (0, 0));
    publish(&good, "", &q, b"still here").await;
    let m = get_noack(&good, &q)
        .await
        .expect("message on surviving channel");
    assert_eq!(m.delivery.data, b"still here");
    let again = channel(&conn).await;
    assert_eq!(queue_counts(&again, &q).await, (0, 0));
    w!(again.queue_delete(q.as_str().into(), Default::default())).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_connection_with_open_channels_is_clean() {
    let broker = TestBroker::start().await;
    for _ in 0..5 {
        let conn = broker.connect().await;
        let mut chans = Vec::new();
        for _ in 0..5 {
            chans.push(channel(&conn).await);
        }
        w!(conn.close(200, "bye".into())).expect("connection.close");
        for ch in &chans {
            assert!(!ch.status().connected());
        }
    }
    // The broker is still healthy.
    let (_c, ch) = broker.connect_channel().await;
    let q = unique("after");
    declare_queue(&ch, &q).await;
    w!(ch.queue_delete(q.as_str().into(), Default::default())).unwrap();
}

/// A shard that cannot answer (a failpoint stalls shard 1's calls) costs
/// its callers a 541 INTERNAL_ERROR after the call timeout, never a hang;
/// queues on the other shards keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_a_stuck_shard_fails_in_bounded_time() {
    if skip_external("a_call_to_a_stuck_shard_fails_in_bounded_time") {
        return;
    }
    let mut broker = TestBroker::start_with(&["--shards", "3"]).await;
    let owned_by = |shard: usize| {
        (0..)
            .map(|i| unique(&format!("stuck-{i}")))
            .find(|n| warren::topology::owner_shard("/", n, 3).index() == shard)
            .unwrap()
    };
    let (stuck, fine) = (owned_by(1), owned_by(2));
    {
        let (_conn, ch) = broker.connect_channel().await;
        for q in [&stuck, &fine] {
            let durable = QueueDeclareOptions {
                durable: true,
                ..Default::default()
            };
            w!(ch.queue_declare(q.as_str().into(), durable, FieldTable::default()))
                .expect("declare a durable queue");
        }
    }
    // Declares would fail now (the leader's broadcast waits on shard 1
    // too): the queues come back from disk instead.
    broker
        .restart_with(&[
            "--shards",
            "3",
            "--call-timeout",
            "1",
            "--failpoint-stall-shard",
            "1",
        ])
        .await;
    let (_conn, ch) = broker.connect_channel().await;
    let started = std::time::Instant::now();
    let res = within(
        Duration::from_secs(10),
        ch.basic_get(stuck.as_str().into(), Default::default()),
    )
    .await;
    assert_eq!(
        res.as_ref().err().and_then(amqp_code),
        Some(541),
        "basic.get on the stuck shard's queue: {res:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the call took {:?}",
        started.elapsed()
    );
    let (_conn, ch) = broker.connect_channel().await;
    assert!(get_noack(&ch, &fine).await.is_none());
}
