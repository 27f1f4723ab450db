//! basic.* behaviour: publish/consume, acknowledgements, qos, get, recover,
//! cancellation, returns and large messages.

#[macro_use]
mod common;

use std::collections::HashSet;

use common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::protocol::basic::AMQPProperties;
use lapin::types::{AMQPValue, FieldArray, FieldTable};
use lapin::BasicProperties;

fn full_properties() -> AMQPProperties {
    let mut nested = FieldTable::default();
    nested.insert("inner".into(), AMQPValue::LongString("value".into()));
    let headers = table(&[
        ("string", lstr("hello")),
        ("int", AMQPValue::LongInt(-42)),
        ("long", AMQPValue::LongLongInt(1 << 40)),
        ("bool", AMQPValue::Boolean(true)),
        ("table", AMQPValue::FieldTable(nested)),
        (
            "array",
            AMQPValue::FieldArray(FieldArray::from(vec![lstr("a"), AMQPValue::LongInt(2)])),
        ),
        ("ts", AMQPValue::Timestamp(1_700_000_000)),
    ]);
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("utf-8".into())
        .with_headers(headers)
        .with_delivery_mode(2)
        .with_priority(5)
        .with_correlation_id("corr-1".into())
        .with_reply_to("reply-queue".into())
        .with_expiration("600000".into())
        .with_message_id("msg-1".into())
        .with_timestamp(1_700_000_123)
        .with_type("test.kind".into())
        .with_user_id("guest".into())
        .with_app_id("warren-tests".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_consume_round_trip_with_all_properties() {
    let broker = TestBroker::start().await;
    let pconn = broker.connect().await;
    let cconn = broker.connect().await;
    let pch = channel(&pconn).await;
    let cch = channel(&cconn).await;
    let q = unique("props");
    declare_queue(&cch, &q).await;
    let mut consumer = consume(&cch, &q, "props-consumer", false).await;
    assert_eq!(consumer.tag().as_str(), "props-consumer");

    let props = full_properties();
    publish_props(&pch, "", &q, br#"{"hello":"world"}"#, props.clone()).await;
    publish_props(&pch, "", &q, b"", BasicProperties::default()).await;

    let d = next_delivery(&mut consumer).await;
    assert_eq!(d.data, br#"{"hello":"world"}"#);
    assert_eq!(d.exchange.as_str(), "");
    assert_eq!(d.routing_key.as_str(), q.as_str());
    assert!(!d.redelivered);
    assert_eq!(d.properties, props, "properties must round-trip unchanged");
    d.ack(BasicAckOptions::default()).await.expect("ack");

    // An empty body with no properties also round-trips.
    let d = next_delivery(&mut consumer).await;
    assert!(d.data.is_empty());
    assert_eq!(d.properties, BasicProperties::default());
    assert!(d.delivery_tag > 1, "delivery tags increase per channel");
    d.ack(BasicAckOptions::default()).await.expect("ack");

    w!(cch.basic_cancel(consumer.tag(), BasicCancelOptions::default())).unwrap();
    delete_queue(&cch, &q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_tags_generated_when_empty() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    let q = unique("ctag");
    declare_queue(&ch, &q).await;
    let c1 = consume(&ch, &q, "", true).await;
    let c2 = consume(&ch, &q, "", true).await;
    let t1 = c1.tag().to_string();
    let t2 = c2.tag().to_string();
    assert!(t1.starts_with("amq.ctag-"), "generated tag {t1:?}");
    assert!(t2.starts_with("amq.ctag-"), "generated tag {t2:?}");
    assert_ne!(t1, t2);
    assert_eq!(queue_counts(&ch, &q).await.1, 2);
    // Reusing a tag on the same channel is a 530 NOT_ALLOWED connection error.
    let res = w!(ch.basic_consume(
        q.as_str().into(),
        t1.as_str().into(),
        BasicConsumeOptions::default(),
        FieldTable::default()
    ));
    assert!(res.is_err(), "duplicate consumer tag accepted");
    drop((c1, c2));
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    delete_queue(&ch, &q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_consumer_refuses_others() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch1 = channel(&conn).await;
    let q = unique("excl-consumer");
    declare_queue(&ch1, &q).await;
    let _exclusive = w!(ch1.basic_consume(
        q.as_str().into(),
        "".into(),
        BasicConsumeOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default()
    ))
    .expect("exclusive consume");
    let ch2 = channel(&conn).await;
    let res = w!(ch2.basic_consume(
        q.as_str().into(),
        "".into(),
        BasicConsumeOptions::default(),
        FieldTable::default()
    ));
    assert_code(res, 403);
    assert!(!ch2.status().connected());

    // And an exclusive consume on a queue that already has a consumer is refused too.
    let q2 = unique("excl-consumer2");
    declare_queue(&ch1, &q2).await;
    let _plain = consume(&ch1, &q2, "", false).await;
    let ch3 = channel(&conn).await;
    let res = w!(ch3.basic_consume(
        q2.as_str().into(),
        "".into(),
        BasicConsumeOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default()
    ));
    assert_code(res, 403);
    delete_queue(&ch1, &q).await;
    delete_queue(&ch1, &q2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_deliveries() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    let pch = channel(&conn).await;
    confirm(&pch).await;
    let q = unique("cancel");
    declare_queue(&ch, &q).await;
    let mut consumer = consume(&ch, &q, "to-cancel", true).await;
    publish_confirmed(&pch, "", &q, b"before").await;
    assert_eq!(body_str(&next_delivery(&mut consumer).await), "before");
    w!(ch.basic_cancel("to-cancel".into(), BasicCancelOptions::default())).expect("basic.cancel");
    // The stream ends after cancel-ok.
    match w!(consumer.next()) {
        None => {}
        Some(other) => panic!("expected end of consumer stream, got {other:?}"),
    }
    publish_confirmed(&pch, "", &q, b"after").await;
    assert_eq!(queue_counts(&ch, &q).await, (1, 0));
    assert_eq!(drain(&ch, &q).await, vec!["after"]);
    delete_queue(&ch, &q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_cancels_consumer_when_queue_deleted() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let other = broker.connect().await;
    let ch = channel(&conn).await;
    let q = unique("deleted-under-consumer");
    declare_queue(&ch, &q).await;
    let mut consumer = consume(&ch, &q, "", false).await;
    let och = channel(&other).await;
    w!(och.queue_delete(q.as_str().into(), QueueDeleteOptions::default()))
        .expect("delete from other connection");
    // consumer_cancel_notify: the broker sends basic.cancel and lapin ends the stream.
    match w!(consumer.next()) {
        None => {}
        Some(other) => panic!("expected server-side cancel, got {other:?}"),
    }
    // The channel stays open and usable.
    assert!(ch.status().connected());
    let q2 = unique("after-cancel");
    declare_queue(&ch, &q2).await;
    delete_queue(&ch, &q2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_get_empty() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    let pch = channel(&conn).await;
    confirm(&pch).await;
    let q = unique("get");
    declare_queue(&ch, &q).await;
    assert!(
        get_noack(&ch, &q).await.is_none(),
        "get-empty on an empty queue"
    );
    for i in 0..3 {
        publish_confirmed_props(
            &pch,
            "",
            &q,
            format!("m{i}").as_bytes(),
            BasicProperties::default().with_message_id(format!("id{i}").into()),
        )
        .await;
    }
    let m = get_ack(&ch, &q).await.expect("get-ok");
    assert_eq!(m.delivery.data, b"m0");
    assert_eq!(
        m.message_count, 2,
        "message_count is the number of messages left"
    );
    assert_eq!(m.delivery.routing_key.as_str(), q.as_str());
    assert_eq!(
        m.delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.as_str()),
        Some("id0")
    );
    assert!(!m.delivery.redelivered);
    m.delivery.ack(BasicAckOptions::default()).await.unwrap();
    let m = get_noack(&ch, &q).await.expect("get-ok");
    assert_eq!(
        (m.delivery.data.as_slice(), m.message_count),
        (&b"m1"[..], 1)
    );
    let m = get_noack(&ch, &q).await.expect("get-ok");
    assert_eq!(
        (m.delivery.data.as_slice(), m.message_count),
        (&b"m2"[..], 0)
    );
    assert!(get_noack(&ch, &q).await.is_none());
    // basic.get on a missing queue: 404.
    let res = w!(ch.basic_get(unique("nope").as_str().into(), BasicGetOptions::default()));
    assert_code(res, 404);
    let ch = channel(&conn).await;
    delete_queue(&ch, &q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_multiple() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    let q = unique("ack-multi");
    declare_queue(&ch, &q).await;
    for i in 0..5 {
        publish(&ch, "", &q, format!("m{i}").as_bytes()).await;
    }
    let cch = channel(&conn).await;
    let mut consumer = consume(&cch, &q, "", false).await;
    let mut tags = Vec::new();
    for i in 0..5 {
        let d = next_delivery(&mut consumer).await;
        assert_eq!(body_str(&d), format!("m{i}"));
        tags.push(d.delivery_tag);
    }
    // Ack the first four with one multiple ack, leave the last unacked.
    w!(cch.basic_ack(tags[3], BasicAckOptions { multiple: true })).expect("ack multiple");
    // Closing the channel requeues only the unacked one.
    w!(cch.close(200, "bye".into())).unwrap();
    let cch = channel(&conn).await;
    let mut consumer = consume(&cch, &q, "", false).await;
    let d = next_delivery(&mut consumer).await;
    assert_eq!(body_str(&d), "m4");
    assert!(d.redelivered);
    d.ack(BasicAckOptions::default()).await.unwrap();
    assert_no_delivery(&mut consumer, 300).await;
    delete_queue(&ch, &q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_multiple_requeue_keeps_order() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    let q = unique("nack");
    declare_queue(&ch, &q).await;
    for i in 0..4 {
        publish(&ch, "", &q, format!("m{i}").as_bytes()).await;
    }
    let cch = channel(&conn).await;
    let mut consumer = consume(&cch, &q, "", false).await;
    let mut last = 0;
    for i in 0..4 {
        let d = next_delivery(&mut consumer).await;
        assert_eq!(body_str(&d), format!("m{i}"));
        assert!(!d.redelivered);
        last = d.delivery_tag;
    }
    w!(cch.basic_nack(
        last,
        BasicNackOptions {
            multiple: true,
            requeue: true
        }
    ))
    .expect("nack multiple");
    for i in 0..4 {
        let d = next_delivery(&mut consumer).await;
        assert_eq!(
            body_str(&d),
            format!("m{i}"),
            "requeued messages keep their order"
        );
        assert!(
            d.redelivered,
            "requeued message must be flagged redelivered"
        );
        assert!(d.delivery_tag > last, "new deliveries get new tags");
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert_no_delivery(&mut consumer, 300).await;
    assert_eq!(queue_counts(&ch, &q).await.0, 0);
    delete_queue(&ch, &q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_without_requeue_drops_and_with_requeue_redelivers() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    let pch = channel(&conn).await;
    confirm(&pch).await;
    let q = unique("reject");
    declare_queue(&ch, &q).await;
    publish_confirmed(&pch, "", &q, b"drop-me").await;
    publish_confirmed(&pch, "", &q, b"keep-me").await;
    let m = get_ack(&ch, &q).await.expect("get");
    assert_eq!(m.delivery.data, b"drop-me");
    w!(ch.basic_reject(
        m.delivery.delivery_tag,
        BasicRejectOptions { requeue: false }
    ))
    .unwrap();
    let m = get_ack(&ch, &q).await.expect("get");
    assert_eq!(m.delivery.data, b"keep-me");
    w!(ch.basic_reject(
        m.delivery.delivery_tag,
        BasicRejectOptions { requeue: true }
    ))
    .unwrap();
    let m = get_ack(&ch, &q).await.expect("get requeued");
    assert_eq!(m.delivery.data, b"keep-me");
    assert!(m.delivery.redelivered);
    assert_eq!(m.message_count, 0, "the rejected message is gone for good");
    w!(ch.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default())).unwrap();
    assert!(get_noack(&ch, &q).await.is_none());
    delete_queue(&ch, &q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_requeues_unacked() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    let pch = channel(&conn).await;
    confirm(&pch).await;
    let q = unique("recover");
    declare_queue(&ch, &q).await;
    publish_confirmed(&pch, "", &q, b"a").await;
    publish_confirmed(&pch, "", &q, b"b").await;
    let a = get_ack(&ch, &q).await.expect("get a");
    let b = get_ack(&ch, &q).await.expect("get b");
    assert!(!a.delivery.redelivered && !b.delivery.redelivered);
    assert!(get_ack(&ch, &q).await.is_none());
    w!(ch.basic_recover(BasicRecoverOptions { requeue: true })).expect("basic.recover");
    let a2 = get_ack(&ch, &q).await.expect("a requeued");
    let b2 = get_ack(&ch, &q).await.expect("b requeued");
    assert_eq!(
        (a2.delivery.data.as_slice(), b2.delivery.data.as_slice()),
        (&b"a"[..], &b"b"[..])
    );
    assert!(a2.delivery.redelivered && b2.delivery.redelivered);
    w!(ch.basic_ack(b2.delivery.delivery_tag, BasicAckOptions { multiple: true })).unwrap();
    w!(ch.basic_recover(BasicRecoverOptions { requeue: true })).expect("basic.recover");
    assert!(
        get_ack(&ch, &q).await.is_none(),
        "acked messages are not recovered"
    );
    delete_queue(&ch, &q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_prefetch_one_limits_in_flight() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    let pch = channel(&conn).await;
    confirm(&pch).await;
    let q = unique("qos");
    declare_queue(&ch, &q).await;
    for i in 0..3 {
        publish_confirmed(&pch, "", &q, format!("m{i}").as_bytes()).await;
    }
    let cch = channel(&conn).await;
    w!(cch.basic_qos(1, BasicQosOptions::default())).expect("basic.qos");
    let mut consumer = consume(&cch, &q, "", false).await;
    for i in 0..3 {
        let d = next_delivery(&mut consumer).await;
        assert_eq!(body_str(&d), format!("m{i}"));
        // Only one message in flight: the rest stay ready in the queue.
        assert_eq!(queue_counts(&ch, &q).await, (2 - i as u32, 1));
        assert_no_delivery(&mut consumer, 200).await;
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert_no_delivery(&mut consumer, 200).await;
    delete_queue(&ch, &q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_is_per_consumer() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    let pch = channel(&conn).await;
    confirm(&pch).await;
    let q = unique("qos-per-consumer");
    declare_queue(&ch, &q).await;
    for i in 0..4 {
        publish_confirmed(&pch, "", &q, format!("m{i}").as_bytes()).await;
    }
    // basic.qos with global=false applies to each consumer separately.
    let cch = channel(&conn).await;
    w!(cch.basic_qos(1, BasicQosOptions { global: false })).unwrap();
    let mut c1 = consume(&cch, &q, "c1", false).await;
    let d1 = next_delivery(&mut c1).await;
    let mut c2 = consume(&cch, &q, "c2", false).await;
    let d2 = next_delivery(&mut c2).await;
    assert_eq!(
        (body_str(&d1), body_str(&d2)),
        ("m0".to_string(), "m1".to_string())
    );
    assert_eq!(queue_counts(&ch, &q).await, (2, 2));
    assert_no_delivery(&mut c1, 200).await;
    assert_no_delivery(&mut c2, 100).await;
    delete_queue(&ch, &q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_across_two_consumers() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    let q = unique("rr");
    declare_queue(&ch, &q).await;
    let ch_a = channel(&conn).await;
    let ch_b = channel(&conn).await;
    let mut ca = consume(&ch_a, &q, "a", true).await;
    let mut cb = consume(&ch_b, &q, "b", true).await;
    let pch = channel(&conn).await;
    confirm(&pch).await;
    for i in 0..10 {
        publish_confirmed(&pch, "", &q, format!("{i}").as_bytes()).await;
    }
    let mut got_a = Vec::new();
    let mut got_b = Vec::new();
    for _ in 0..5 {
        got_a.push(
            body_str(&next_delivery(&mut ca).await)
                .parse::<u32>()
                .unwrap(),
        );
        got_b.push(
            body_str(&next_delivery(&mut cb).await)
                .parse::<u32>()
                .unwrap(),
        );
    }
    assert_no_delivery(&mut ca, 200).await;
    assert_no_delivery(&mut cb, 50).await;
    // Each consumer sees its share in publish order, and nothing is lost or duplicated.
    assert!(got_a.windows(2).all(|w| w[0] < w[1]), "a: {got_a:?}");
    assert!(got_b.windows(2).all(|w| w[0] < w[1]), "b: {got_b:?}");
    let all: HashSet<u32> = got_a.iter().chain(got_b.iter()).copied().collect();
    assert_eq!(all, (0..10).collect::<HashSet<u32>>());
    // Strict alternation.
    let a_even = got_a.iter().all(|x| x % 2 == got_a[0] % 2);
    let b_even = got_b.iter().all(|x| x % 2 == got_b[0] % 2);
    assert!(a_even && b_even, "not round-robin: a={got_a:?} b={got_b:?}");
    delete_queue(&ch, &q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_messages_requeued_when_channel_closes() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    let q = unique("requeue-on-close");
    declare_queue(&ch, &q).await;
    for i in 0..3 {
        publish(&ch, "", &q, format!("m{i}").as_bytes()).await;
    }
    let cch = channel(&conn).await;
    let mut consumer = consume(&cch, &q, "", false).await;
    for i in 0..3 {
        assert_eq!(
            body_str(&next_delivery(&mut consumer).await),
            format!("m{i}")
        );
    }
    let gch = channel(&conn).await;
    let g = get_ack(&gch, &q).await;
    assert!(
        g.is_none(),
        "all messages are unacked on the consumer channel"
    );
    w!(cch.close(200, "bye".into())).expect("close consumer channel");

    let cch2 = channel(&conn).await;
    let mut consumer2 = consume(&cch2, &q, "", false).await;
    for i in 0..3 {
        let d = next_delivery(&mut consumer2).await;
        assert_eq!(body_str(&d), format!("m{i}"));
        assert!(d.redelivered);
    }
    // Same when the whole connection goes away.
    let conn2 = broker.connect().await;
    let xch = channel(&conn2).await;
    let mut c3 = consume(&xch, &q, "", false).await;
    w!(cch2.close(200, "bye".into())).unwrap();
    for i in 0..3 {
        let d = next_delivery(&mut c3).await;
        assert_eq!(body_str(&d), format!("m{i}"));
        assert!(d.redelivered);
    }
    w!(conn2.close(200, "bye".into())).unwrap();
    let deadline = std::time::Instant::now() + STEP;
    loop {
        if queue_counts(&ch, &q).await.0 == 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "messages not requeued after connection close"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    delete_queue(&ch, &q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_message_spans_frames() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let frame_max = conn.configuration().frame_max() as usize;
    let ch = channel(&conn).await;
    let q = unique("large");
    declare_queue(&ch, &q).await;
    let body: Vec<u8> = (0..(1usize << 20)).map(|i| (i * 31 % 251) as u8).collect();
    assert!(
        body.len() > frame_max,
        "1 MiB must span several frames (frame_max {frame_max})"
    );
    let pch = channel(&conn).await;
    confirm(&pch).await;
    publish_confirmed(&pch, "", &q, &body).await;
    let small = b"after-large".to_vec();
    publish_confirmed(&pch, "", &q, &small).await;
    let mut consumer = consume(&ch, &q, "", true).await;
    let d = next_delivery(&mut consumer).await;
    assert_eq!(d.data.len(), body.len());
    assert!(d.data == body, "1 MiB body corrupted");
    assert_eq!(next_delivery(&mut consumer).await.data, small);
    // And via basic.get too.
    let gch = channel(&conn).await;
    let q2 = unique("large-get");
    declare_queue(&gch, &q2).await;
    publish_confirmed(&pch, "", &q2, &body).await;
    let m = get_noack(&gch, &q2).await.expect("get large");
    assert!(m.delivery.data == body);
    delete_queue(&gch, &q2).await;
    delete_queue(&gch, &q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_to_missing_exchange_is_404() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    // In confirm mode the pending confirm fails with the channel error.
    let ch = channel(&conn).await;
    confirm(&ch).await;
    let confirm_fut = w!(ch.basic_publish(
        unique("nx").as_str().into(),
        "k".into(),
        BasicPublishOptions::default(),
        b"x",
        BasicProperties::default()
    ))
    .expect("publish is asynchronous");
    let res = w!(confirm_fut);
    assert_code(res, 404);
    assert!(!ch.status().connected());

    // Without confirms, the next synchronous method on the channel fails.
    let ch = channel(&conn).await;
    publish(&ch, &unique("nx"), "k", b"x").await;
    let res = w!(ch.queue_declare(
        unique("never").as_str().into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default()
    ));
    assert!(
        res.is_err(),
        "channel survived a publish to a missing exchange"
    );
    assert!(!ch.status().connected());
    assert!(conn.status().connected());
    let ok = channel(&conn).await;
    let q = unique("still-works");
    declare_queue(&ok, &q).await;
    delete_queue(&ok, &q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mandatory_unroutable_is_returned_312() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    confirm(&ch).await;
    let key = unique("nowhere");
    let props = BasicProperties::default().with_message_id("ret-1".into());
    let confirm_fut = w!(ch.basic_publish(
        "".into(),
        key.as_str().into(),
        BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        },
        b"returned",
        props.clone()
    ))
    .expect("publish");
    let confirmation = w!(confirm_fut).expect("confirmation");
    assert!(confirmation.is_ack(), "unroutable messages are still acked");
    let ret = confirmation
        .take_message()
        .expect("basic.return must precede the ack");
    assert_eq!(ret.reply_code, 312);
    assert_eq!(ret.reply_text.as_str(), "NO_ROUTE");
    assert_eq!(ret.delivery.exchange.as_str(), "");
    assert_eq!(ret.delivery.routing_key.as_str(), key.as_str());
    assert_eq!(ret.delivery.data, b"returned");
    assert_eq!(ret.delivery.properties, props);

    // Mandatory + routable is not returned; non-mandatory + unroutable is silently dropped.
    let q = unique("routable");
    declare_queue(&ch, &q).await;
    let c = w!(w!(ch.basic_publish(
        "".into(),
        q.as_str().into(),
        BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        },
        b"ok",
        BasicProperties::default()
    ))
    .unwrap())
    .unwrap();
    assert!(c.is_ack());
    assert!(c.take_message().is_none());
    let c = w!(w!(ch.basic_publish(
        "".into(),
        key.as_str().into(),
        BasicPublishOptions::default(),
        b"dropped",
        BasicProperties::default()
    ))
    .unwrap())
    .unwrap();
    assert!(c.is_ack());
    assert!(c.take_message().is_none());
    // Mandatory to an exchange with no bindings is returned too.
    let ex = unique("empty-fanout");
    w!(ch.exchange_declare(
        ex.as_str().into(),
        lapin::ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default()
    ))
    .unwrap();
    let c = w!(w!(ch.basic_publish(
        ex.as_str().into(),
        "k".into(),
        BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        },
        b"r2",
        BasicProperties::default()
    ))
    .unwrap())
    .unwrap();
    let ret = c.take_message().expect("returned from empty fanout");
    assert_eq!(
        (ret.reply_code, ret.delivery.exchange.as_str()),
        (312, ex.as_str())
    );
    assert!(ch.status().connected());
    assert_eq!(drain(&ch, &q).await, vec!["ok"]);
    w!(ch.exchange_delete(ex.as_str().into(), ExchangeDeleteOptions::default())).unwrap();
    delete_queue(&ch, &q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_message_with_small_frame_max() {
    let broker = TestBroker::start().await;
    let url = broker.url_with_query("frame_max=4096");
    let conn = w!(lapin::Connection::connect(
        &url,
        lapin::ConnectionProperties::default()
    ))
    .expect("connect");
    assert_eq!(
        conn.configuration().frame_max(),
        4096,
        "client-requested frame_max must be honoured"
    );
    let ch = channel(&conn).await;
    confirm(&ch).await;
    let q = unique("small-frames");
    declare_queue(&ch, &q).await;
    let body: Vec<u8> = (0..(1usize << 20) + 17)
        .map(|i| (i * 7 % 253) as u8)
        .collect();
    publish_confirmed(&ch, "", &q, &body).await;
    // Consume on a connection with the default frame size: the broker re-frames.
    let other = broker.connect().await;
    let och = channel(&other).await;
    let m = get_noack(&och, &q).await.expect("get");
    assert!(m.delivery.data == body, "body corrupted across frame sizes");
    // And the reverse direction, through a consumer on the small-frame connection.
    confirm(&och).await;
    let mut consumer = consume(&ch, &q, "", false).await;
    publish_confirmed(&och, "", &q, &body).await;
    let d = next_delivery(&mut consumer).await;
    assert!(d.data == body, "body corrupted across frame sizes");
    d.ack(BasicAckOptions::default()).await.unwrap();
    delete_queue(&och, &q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_errors_close_the_channel_with_406() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    let pch = channel(&conn).await;
    confirm(&pch).await;
    let q = unique("ack-errors");
    declare_queue(&ch, &q).await;

    // Unknown delivery tag.
    let bad = channel(&conn).await;
    let mut watcher = close_watcher(&bad).await;
    w!(bad.basic_ack(999, BasicAckOptions::default())).expect("ack is asynchronous");
    expect_closed_with(&mut watcher, 406).await;

    // Double ack of the same delivery.
    publish_confirmed(&pch, "", &q, b"once").await;
    let bad = channel(&conn).await;
    let mut watcher = close_watcher(&bad).await;
    let m = get_ack(&bad, &q).await.expect("get");
    w!(bad.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default())).unwrap();
    w!(bad.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default()))
        .expect("ack is asynchronous");
    expect_closed_with(&mut watcher, 406).await;

    // The first ack counted: the message is gone, not requeued by the channel close.
    publish_confirmed(&pch, "", &q, b"marker").await;
    assert_eq!(drain(&ch, &q).await, vec!["marker"]);
    delete_queue(&ch, &q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_from_missing_queue_is_404() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    let res = w!(ch.basic_consume(
        unique("missing").as_str().into(),
        "".into(),
        BasicConsumeOptions::default(),
        FieldTable::default()
    ));
    assert_code(res, 404);
    assert!(!ch.status().connected());
    assert!(conn.status().connected());
}

/// A no-ack consumer that attaches to a long queue on its own shard: each
/// write returns transport credit, which dispatches more deliveries into
/// the same connection while it is returning credit (this once crashed
/// the shard with a RefCell double borrow).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noack_consumer_drains_a_long_queue_on_one_shard() {
    // One shard: queue, publisher and consumer all local.
    let broker = TestBroker::start_with(&["--shards", "1"]).await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    let q = unique("long");
    declare_queue(&ch, &q).await;
    confirm(&ch).await;
    const N: usize = 3000;
    let body = [b'x'; 200];
    let mut last = None;
    for _ in 0..N {
        last = Some(
            w!(ch.basic_publish(
                "".into(),
                q.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default()
            ))
            .expect("publish"),
        );
    }
    assert!(w!(last.unwrap()).expect("confirm").is_ack());
    assert_eq!(queue_counts(&ch, &q).await.0, N as u32);
    let cch = channel(&conn).await;
    let mut consumer = consume(&cch, &q, "", true).await;
    for _ in 0..N {
        next_delivery(&mut consumer).await;
    }
    assert_no_delivery(&mut consumer, 200).await;
    assert!(conn.status().connected());
    delete_queue(&ch, &q).await;
}
