//! RabbitMQ's queue arguments through lapin: dead-lettering with x-death,
//! message TTL, length limits and priorities (run against RabbitMQ 3.10
//! with `WARREN_TEST_URL` first).

#[macro_use]
mod common;

use common::*;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, ExchangeKind};

async fn declare_with(ch: &Channel, name: &str, args: FieldTable) {
    w!(ch.queue_declare(name.into(), QueueDeclareOptions::default(), args))
        .unwrap_or_else(|e| panic!("queue.declare {name}: {e:?}"));
}

async fn get_within(ch: &Channel, queue: &str) -> lapin::message::BasicGetMessage {
    for _ in 0..250 {
        if let Some(m) = get_ack(ch, queue).await {
            return m;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("nothing arrived in {queue}");
}

fn x_death(m: &lapin::message::BasicGetMessage) -> Vec<FieldTable> {
    let headers = m.delivery.properties.headers().clone().expect("headers");
    match headers.inner().get("x-death") {
        Some(AMQPValue::FieldArray(a)) => a
            .as_slice()
            .iter()
            .map(|v| match v {
                AMQPValue::FieldTable(t) => t.clone(),
                other => panic!("x-death entry {other:?}"),
            })
            .collect(),
        other => panic!("x-death is {other:?}"),
    }
}

fn text(t: &FieldTable, key: &str) -> String {
    match t.inner().get(key) {
        Some(AMQPValue::LongString(s)) => s.to_string(),
        other => panic!("{key} is {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_and_expired_messages_are_dead_lettered() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    confirm(&ch).await;
    let dlx = unique("qf-dlx");
    declare_exchange(&ch, &dlx, ExchangeKind::Fanout).await;
    let dead = unique("qf-dead");
    declare_queue(&ch, &dead).await;
    bind(&ch, &dead, &dlx, "").await;
    let q = unique("qf-src");
    declare_with(&ch, &q, table(&[("x-dead-letter-exchange", lstr(&dlx))])).await;
    publish_confirmed(&ch, "", &q, b"bad").await;
    let m = get_within(&ch, &q).await;
    w!(ch.basic_reject(
        m.delivery.delivery_tag,
        BasicRejectOptions { requeue: false }
    ))
    .expect("reject");
    let d = get_within(&ch, &dead).await;
    assert_eq!(&d.delivery.data[..], b"bad");
    let deaths = x_death(&d);
    assert_eq!(deaths.len(), 1);
    assert_eq!(text(&deaths[0], "reason"), "rejected");
    assert_eq!(text(&deaths[0], "queue"), q);
    let props = BasicProperties::default().with_expiration("50".into());
    publish_confirmed_props(&ch, "", &q, b"late", props).await;
    let d = get_within(&ch, &dead).await;
    assert_eq!(&d.delivery.data[..], b"late");
    assert_eq!(text(&x_death(&d)[0], "reason"), "expired");
    assert_eq!(text(&x_death(&d)[0], "original-expiration"), "50");
    assert!(d.delivery.properties.expiration().is_none());
    for name in [&q, &dead] {
        delete_queue(&ch, name).await;
    }
    delete_exchange(&ch, &dlx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn length_limit_and_priorities() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    confirm(&ch).await;
    let limited = unique("qf-limited");
    declare_with(
        &ch,
        &limited,
        table(&[("x-max-length", AMQPValue::LongInt(2))]),
    )
    .await;
    for b in ["1", "2", "3"] {
        publish_confirmed(&ch, "", &limited, b.as_bytes()).await;
    }
    assert_eq!(drain(&ch, &limited).await, vec!["2", "3"]);
    let prio = unique("qf-prio");
    declare_with(
        &ch,
        &prio,
        table(&[("x-max-priority", AMQPValue::ShortShortUInt(3))]),
    )
    .await;
    for (b, p) in [("low", 0u8), ("high", 3), ("mid", 2), ("high2", 7)] {
        let props = BasicProperties::default().with_priority(p);
        publish_confirmed_props(&ch, "", &prio, b.as_bytes(), props).await;
    }
    assert_eq!(drain(&ch, &prio).await, vec!["high", "high2", "mid", "low"]);
    for name in [&limited, &prio] {
        delete_queue(&ch, name).await;
    }
}
