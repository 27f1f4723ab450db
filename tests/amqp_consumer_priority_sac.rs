//! Consumer priorities (`x-priority`) and single active consumer
//! (`x-single-active-consumer`), as RabbitMQ 3.10 classic queues behave
//! (checked against it with `WARREN_TEST_URL`). Consumers are
//! prefetch-limited, so who gets what follows from the broker's choice.

#[macro_use]
mod common;

use common::*;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, Consumer};

async fn consumer_with(
    conn: &Connection,
    queue: &str,
    tag: &str,
    prefetch: u16,
    priority: Option<i32>,
) -> (Channel, Consumer) {
    let ch = channel(conn).await;
    w!(ch.basic_qos(prefetch, BasicQosOptions::default())).expect("basic.qos");
    let args = match priority {
        Some(p) => table(&[("x-priority", AMQPValue::LongInt(p))]),
        None => FieldTable::default(),
    };
    let c = w!(ch.basic_consume(
        queue.into(),
        tag.into(),
        BasicConsumeOptions::default(),
        args
    ))
    .unwrap_or_else(|e| panic!("basic.consume {queue}: {e:?}"));
    (ch, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_consumers_first_lower_when_they_are_full() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let pch = channel(&conn).await;
    confirm(&pch).await;
    let q = unique("cp-prio");
    declare_queue(&pch, &q).await;
    let (_l, mut low) = consumer_with(&conn, &q, "low", 10, None).await;
    let (_h1, mut hi1) = consumer_with(&conn, &q, "hi1", 1, Some(5)).await;
    let (hch2, mut hi2) = consumer_with(&conn, &q, "hi2", 1, Some(5)).await;
    for b in ["a", "b", "c", "d"] {
        publish_confirmed(&pch, "", &q, b.as_bytes()).await;
    }
    // The two priority-5 consumers in turn, then the default one.
    assert_eq!(body_str(&next_delivery(&mut hi1).await), "a");
    let b = next_delivery(&mut hi2).await;
    assert_eq!(body_str(&b), "b");
    assert_eq!(body_str(&next_delivery(&mut low).await), "c");
    assert_eq!(body_str(&next_delivery(&mut low).await), "d");
    // Room again at priority 5: the next message is hi2's.
    w!(hch2.basic_ack(b.delivery_tag, BasicAckOptions::default())).expect("ack");
    publish_confirmed(&pch, "", &q, b"e").await;
    assert_eq!(body_str(&next_delivery(&mut hi2).await), "e");
    assert_no_delivery(&mut low, 100).await;
    delete_queue(&pch, &q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_priority_must_be_an_integer() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    let q = unique("cp-bad");
    declare_queue(&ch, &q).await;
    let res = w!(ch.basic_consume(
        q.as_str().into(),
        "".into(),
        BasicConsumeOptions::default(),
        table(&[("x-priority", lstr("high"))])
    ));
    match res {
        Err(e) => {
            assert_eq!(amqp_code(&e), Some(406), "{e:?}");
            let text = format!("{e:?}");
            let want = format!(
                "invalid arg 'x-priority' for queue '{q}' in vhost '/': \\\"expected integer, got longstr\\\""
            );
            assert!(text.contains(&want), "{text}");
        }
        Ok(c) => panic!("consume with a string x-priority accepted: {c:?}"),
    }
    let ch = channel(&conn).await;
    delete_queue(&ch, &q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_active_consumer_hands_over_with_requeued_messages_on_channel_close() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let pch = channel(&conn).await;
    confirm(&pch).await;
    let q = unique("sac-close");
    w!(pch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions::default(),
        table(&[("x-single-active-consumer", AMQPValue::Boolean(true))])
    ))
    .expect("declare single-active-consumer queue");
    let (ach, mut a) = consumer_with(&conn, &q, "A", 2, None).await;
    let (_b, mut b) = consumer_with(&conn, &q, "B", 10, None).await;
    let (_c, mut c) = consumer_with(&conn, &q, "C", 10, Some(1)).await;
    for m in ["m1", "m2", "m3"] {
        publish_confirmed(&pch, "", &q, m.as_bytes()).await;
    }
    assert_eq!(body_str(&next_delivery(&mut a).await), "m1");
    assert_eq!(body_str(&next_delivery(&mut a).await), "m2");
    // The active consumer is full: the others wait.
    assert_no_delivery(&mut c, 100).await;
    // Closing A's channel (lapin sends no basic.cancel first) requeues its
    // messages; C, the highest priority waiting one, gets them in order.
    w!(ach.close(200, "bye".into())).expect("channel.close");
    for (want, redelivered) in [("m1", true), ("m2", true), ("m3", false)] {
        let d = next_delivery(&mut c).await;
        assert_eq!((body_str(&d).as_str(), d.redelivered), (want, redelivered));
    }
    assert_no_delivery(&mut b, 100).await;
    delete_queue(&pch, &q).await;
}
