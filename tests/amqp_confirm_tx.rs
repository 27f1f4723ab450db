//! Publisher confirms, transactions, and message flow across connections
//! (which Warren may place on different shards).

#[macro_use]
mod common;

use common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};

// ---------------------------------------------------------------------------
// Confirms
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_select_then_all_publishes_acked() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    let q = unique("confirms");
    declare_queue(&ch, &q).await;
    confirm(&ch).await;
    assert!(ch.status().confirm());
    // confirm.select is idempotent.
    confirm(&ch).await;

    const N: usize = 500;
    let mut pending = Vec::with_capacity(N);
    for i in 0..N {
        // Mix routable and unroutable publishes: both are acked.
        let key = if i % 5 == 0 {
            format!("{q}-unroutable")
        } else {
            q.clone()
        };
        let c = w!(ch.basic_publish(
            "".into(),
            key.as_str().into(),
            BasicPublishOptions::default(),
            format!("{i}").as_bytes(),
            BasicProperties::default()
        ))
        .expect("publish");
        pending.push(c);
    }
    for (i, c) in pending.into_iter().enumerate() {
        let conf = w!(c).unwrap_or_else(|e| panic!("confirm {i}: {e:?}"));
        assert!(conf.is_ack(), "publish {i} nacked");
    }
    // wait_for_confirms with nothing pending returns immediately, no returns.
    let returned = w!(ch.wait_for_confirms()).expect("wait_for_confirms");
    assert!(returned.is_empty());
    // Every routable message is in the queue once its confirm arrived.
    assert_eq!(queue_counts(&ch, &q).await.0 as usize, N - N / 5);

    // Batch style: publish, then wait for all.
    for i in 0..100 {
        w!(ch.basic_publish(
            "".into(),
            q.as_str().into(),
            BasicPublishOptions::default(),
            format!("b{i}").as_bytes(),
            BasicProperties::default()
        ))
        .unwrap();
    }
    let returned = w!(ch.wait_for_confirms()).expect("wait_for_confirms");
    assert!(returned.is_empty());
    assert_eq!(queue_counts(&ch, &q).await.0 as usize, N - N / 5 + 100);
    delete_queue(&ch, &q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirms_on_several_channels_are_independent() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let setup = channel(&conn).await;
    let q = unique("confirm-multi");
    declare_queue(&setup, &q).await;
    let mut chans = Vec::new();
    for _ in 0..4 {
        let ch = channel(&conn).await;
        confirm(&ch).await;
        chans.push(ch);
    }
    let mut pending = Vec::new();
    for round in 0..50 {
        for (c, ch) in chans.iter().enumerate() {
            let p = w!(ch.basic_publish(
                "".into(),
                q.as_str().into(),
                BasicPublishOptions::default(),
                format!("{c}-{round}").as_bytes(),
                BasicProperties::default()
            ))
            .unwrap();
            pending.push(p);
        }
    }
    for p in pending {
        assert!(w!(p).expect("confirm").is_ack());
    }
    assert_eq!(queue_counts(&setup, &q).await.0, 200);
    delete_queue(&setup, &q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_select_on_tx_channel_is_406() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    w!(ch.tx_select()).expect("tx.select");
    let res = w!(ch.confirm_select(ConfirmSelectOptions::default()));
    assert_code(res, 406);
    let ch = channel(&conn).await;
    confirm(&ch).await;
    let res = w!(ch.tx_select());
    assert_code(res, 406);
}

// ---------------------------------------------------------------------------
// Transactions
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tx_rollback_discards_and_commit_delivers() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    let q = unique("tx");
    declare_queue(&ch, &q).await;
    let tx = channel(&conn).await;
    w!(tx.tx_select()).expect("tx.select");

    publish(&tx, "", &q, b"rolled-back-1").await;
    publish(&tx, "", &q, b"rolled-back-2").await;
    // Nothing is visible before commit.
    assert_eq!(queue_counts(&tx, &q).await.0, 0);
    w!(tx.tx_rollback()).expect("tx.rollback");
    assert_eq!(queue_counts(&ch, &q).await.0, 0);

    // The channel stays transactional: the next batch commits.
    publish(&tx, "", &q, b"committed-1").await;
    publish(&tx, "", &q, b"committed-2").await;
    assert_eq!(
        queue_counts(&ch, &q).await.0,
        0,
        "uncommitted publishes must not be enqueued"
    );
    w!(tx.tx_commit()).expect("tx.commit");
    assert_eq!(queue_counts(&ch, &q).await.0, 2);
    assert_eq!(drain(&ch, &q).await, vec!["committed-1", "committed-2"]);

    // Empty commit and rollback are fine.
    w!(tx.tx_commit()).expect("empty commit");
    w!(tx.tx_rollback()).expect("empty rollback");
    // Uncommitted publishes are discarded when the channel closes.
    publish(&tx, "", &q, b"never").await;
    w!(tx.close(200, "bye".into())).unwrap();
    assert_eq!(queue_counts(&ch, &q).await.0, 0);
    assert!(get_noack(&ch, &q).await.is_none());
    delete_queue(&ch, &q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tx_commit_without_select_is_406() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    assert_code(w!(ch.tx_commit()), 406);
    let ch = channel(&conn).await;
    assert_code(w!(ch.tx_rollback()), 406);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tx_ack_applies_only_at_commit() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    let pch = channel(&conn).await;
    confirm(&pch).await;
    let q = unique("tx-ack");
    declare_queue(&ch, &q).await;
    publish_confirmed(&pch, "", &q, b"m").await;

    // Ack inside a transaction that is rolled back: the ack is discarded and
    // the message is still unacked on the channel, so recover requeues it.
    let tx = channel(&conn).await;
    w!(tx.tx_select()).unwrap();
    let m = get_ack(&tx, &q).await.expect("get");
    assert!(!m.delivery.redelivered);
    w!(tx.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default())).unwrap();
    w!(tx.tx_rollback()).unwrap();
    w!(tx.close(200, "bye".into())).unwrap();
    // Closing the channel requeues the still-unacked message.
    let m = wait_get_ack(&ch, &q).await;
    assert_eq!(m.delivery.data, b"m");
    assert!(
        m.delivery.redelivered,
        "message whose ack was rolled back must come back"
    );
    w!(ch.basic_reject(
        m.delivery.delivery_tag,
        BasicRejectOptions { requeue: true }
    ))
    .unwrap();

    // Ack, then close without committing: the ack never happened.
    let tx = channel(&conn).await;
    w!(tx.tx_select()).unwrap();
    let m = wait_get_ack(&tx, &q).await;
    w!(tx.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default())).unwrap();
    w!(tx.close(200, "bye".into())).unwrap();
    let tx = channel(&conn).await;
    w!(tx.tx_select()).unwrap();
    let m = wait_get_ack(&tx, &q).await;
    assert!(m.delivery.redelivered);

    // Ack, then commit: the message is gone for good.
    w!(tx.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default())).unwrap();
    w!(tx.tx_commit()).unwrap();
    w!(tx.close(200, "bye".into())).unwrap();
    let mut consumer = consume(&ch, &q, "", false).await;
    assert_no_delivery(&mut consumer, 500).await;
    assert_eq!(queue_counts(&ch, &q).await.0, 0);
    delete_queue(&ch, &q).await;
}

/// basic.get (manual ack) polled until a message is there (messages requeued
/// by a channel close may arrive asynchronously).
async fn wait_get_ack(ch: &Channel, q: &str) -> lapin::message::BasicGetMessage {
    let deadline = std::time::Instant::now() + STEP;
    loop {
        if let Some(m) = get_ack(ch, q).await {
            return m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no message in {q} within {STEP:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------
// Across connections / shards
// ---------------------------------------------------------------------------

const CROSS_N: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_connection_10k_in_order() {
    let broker = TestBroker::start().await;
    // Several connections: Warren may place each on a different shard.
    let mut conns: Vec<Connection> = Vec::new();
    for _ in 0..4 {
        conns.push(broker.connect().await);
    }
    let setup = channel(&conns[0]).await;
    let queues: Vec<String> = (0..3).map(|i| unique(&format!("cross{i}"))).collect();
    for q in &queues {
        declare_queue(&setup, q).await;
    }

    // Consumer for queue i lives on connection i+1; publisher on connection i.
    let mut consumers = Vec::new();
    for (i, q) in queues.iter().enumerate() {
        let ch = channel(&conns[(i + 1) % conns.len()]).await;
        w!(ch.basic_qos(500, BasicQosOptions::default())).unwrap();
        let consumer = consume(&ch, q, "", false).await;
        consumers.push((ch, consumer));
    }

    let mut publishers = Vec::new();
    for (i, q) in queues.iter().enumerate() {
        let ch = channel(&conns[i]).await;
        confirm(&ch).await;
        let q = q.clone();
        publishers.push(tokio::spawn(async move {
            for n in 0..CROSS_N {
                let p = w!(ch.basic_publish(
                    "".into(),
                    q.as_str().into(),
                    BasicPublishOptions::default(),
                    format!("{n}").as_bytes(),
                    BasicProperties::default().with_message_id(format!("{q}:{n}").into())
                ))
                .expect("publish");
                drop(p);
                if n % 1000 == 999 {
                    let returned = w!(30, ch.wait_for_confirms()).expect("wait_for_confirms");
                    assert!(returned.is_empty());
                }
            }
            let returned = w!(30, ch.wait_for_confirms()).expect("wait_for_confirms");
            assert!(returned.is_empty());
            ch
        }));
    }

    let mut readers = Vec::new();
    for (i, (ch, mut consumer)) in consumers.into_iter().enumerate() {
        let q = queues[i].clone();
        readers.push(tokio::spawn(async move {
            for n in 0..CROSS_N {
                let d = match w!(30, consumer.next()) {
                    Some(Ok(d)) => d,
                    other => panic!("{q}: consumer ended at {n}: {other:?}"),
                };
                let got: usize = body_str(&d).parse().expect("numeric body");
                assert_eq!(got, n, "{q}: out of order or lost message");
                assert!(!d.redelivered);
                assert_eq!(
                    d.properties.message_id().as_ref().map(|s| s.to_string()),
                    Some(format!("{q}:{n}"))
                );
                if n % 100 == 99 {
                    w!(ch.basic_ack(d.delivery_tag, BasicAckOptions { multiple: true }))
                        .expect("ack");
                }
            }
            // Nothing beyond the N messages.
            assert_no_delivery(&mut consumer, 300).await;
            // Dropping the consumer would cancel it: hand it back.
            (ch, consumer)
        }));
    }
    for p in publishers {
        w!(120, p).expect("publisher task");
    }
    // Keep the consumer channels open while checking the queues.
    let mut consumer_channels = Vec::new();
    for r in readers {
        consumer_channels.push(w!(120, r).expect("reader task"));
    }
    for q in &queues {
        // All delivered (and the last partial batch is still unacked, not ready).
        assert_eq!(queue_counts(&setup, q).await, (0, 1));
        delete_queue(&setup, q).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_connection_fanout_to_consumers_on_other_connections() {
    let broker = TestBroker::start().await;
    let pconn = broker.connect().await;
    let pch = channel(&pconn).await;
    confirm(&pch).await;
    let ex = unique("cross-fanout");
    w!(pch.exchange_declare(
        ex.as_str().into(),
        lapin::ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default()
    ))
    .unwrap();
    let mut readers = Vec::new();
    let mut conns = Vec::new();
    const M: usize = 1000;
    for i in 0..4 {
        let conn = broker.connect().await;
        let ch = channel(&conn).await;
        let q = unique(&format!("cf{i}"));
        w!(ch.queue_declare(
            q.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default()
        ))
        .unwrap();
        w!(ch.queue_bind(
            q.as_str().into(),
            ex.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default()
        ))
        .unwrap();
        let mut consumer = consume(&ch, &q, "", true).await;
        readers.push(tokio::spawn(async move {
            for n in 0..M {
                let d = next_delivery(&mut consumer).await;
                assert_eq!(body_str(&d), format!("{n}"), "queue {q}");
            }
            ch
        }));
        conns.push(conn);
    }
    for n in 0..M {
        w!(pch.basic_publish(
            ex.as_str().into(),
            "".into(),
            BasicPublishOptions::default(),
            format!("{n}").as_bytes(),
            BasicProperties::default()
        ))
        .unwrap();
    }
    assert!(w!(30, pch.wait_for_confirms()).unwrap().is_empty());
    for r in readers {
        w!(60, r).expect("reader");
    }
    w!(pch.exchange_delete(ex.as_str().into(), ExchangeDeleteOptions::default())).unwrap();
}
