//! Exchanges, queues, bindings and routing.
//!
//! Routing assertions publish on a channel in confirm mode: once the broker
//! acks a publish the message is enqueued in every queue it routes to, so a
//! following basic.get / passive declare observes the result without waiting.

#[macro_use]
mod common;

use common::*;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, ExchangeKind};

/// A connection plus a confirm-mode publishing channel and a plain channel.
async fn setup(broker: &TestBroker) -> (lapin::Connection, Channel, Channel) {
    let conn = broker.connect().await;
    let publ = channel(&conn).await;
    confirm(&publ).await;
    let ch = channel(&conn).await;
    (conn, publ, ch)
}

// ---------------------------------------------------------------------------
// Exchanges
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_declare_each_type_and_redeclare() {
    let broker = TestBroker::start().await;
    let (_conn, _publ, ch) = setup(&broker).await;
    let kinds = [
        ExchangeKind::Direct,
        ExchangeKind::Fanout,
        ExchangeKind::Topic,
        ExchangeKind::Headers,
    ];
    let mut names = Vec::new();
    for kind in kinds.iter() {
        let name = unique(&format!("ex-{:?}", kind).to_lowercase());
        declare_exchange(&ch, &name, kind.clone()).await;
        // Redeclaring with identical properties is fine.
        declare_exchange(&ch, &name, kind.clone()).await;
        // Passive declare finds it.
        w!(ch.exchange_declare(
            name.as_str().into(),
            kind.clone(),
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default()
        ))
        .expect("passive declare of existing exchange");
        names.push(name);
    }
    // The pre-declared exchanges exist.
    for (name, kind) in [
        ("amq.direct", ExchangeKind::Direct),
        ("amq.fanout", ExchangeKind::Fanout),
        ("amq.topic", ExchangeKind::Topic),
        ("amq.headers", ExchangeKind::Headers),
        ("amq.match", ExchangeKind::Headers),
    ] {
        w!(ch.exchange_declare(
            name.into(),
            kind,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default()
        ))
        .unwrap_or_else(|e| panic!("passive declare {name}: {e:?}"));
    }
    for name in &names {
        delete_exchange(&ch, name).await;
    }
    // Deleted exchanges are gone.
    let res = w!(ch.exchange_declare(
        names[0].as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default()
    ));
    assert_code(res, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_passive_missing_is_404() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    let res = w!(ch.exchange_declare(
        unique("no-such-exchange").as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default()
    ));
    assert_code(res, 404);
    assert!(!ch.status().connected());
    assert!(conn.status().connected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_redeclare_with_other_type_is_406() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    let name = unique("ex-type");
    declare_exchange(&ch, &name, ExchangeKind::Direct).await;
    let res = w!(ch.exchange_declare(
        name.as_str().into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default()
    ));
    assert_code(res, 406);
    assert!(!ch.status().connected(), "406 must close the channel");
    // The exchange keeps its original type.
    let ch2 = channel(&conn).await;
    declare_exchange(&ch2, &name, ExchangeKind::Direct).await;
    delete_exchange(&ch2, &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_declare_reserved_amq_prefix_is_403() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    let res = w!(ch.exchange_declare(
        unique("amq.foo").as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default()
    ));
    assert_code(res, 403);
    assert!(!ch.status().connected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_delete_if_unused_when_bound_is_406() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    let ex = unique("ex-bound");
    let q = unique("q-bound");
    declare_exchange(&ch, &ex, ExchangeKind::Direct).await;
    declare_queue(&ch, &q).await;
    bind(&ch, &q, &ex, "k").await;
    let res = w!(ch.exchange_delete(
        ex.as_str().into(),
        ExchangeDeleteOptions {
            if_unused: true,
            ..Default::default()
        }
    ));
    assert_code(res, 406);
    assert!(!ch.status().connected());

    let ch = channel(&conn).await;
    // Still there; after unbinding, if-unused delete succeeds.
    w!(ch.queue_unbind(
        q.as_str().into(),
        ex.as_str().into(),
        "k".into(),
        FieldTable::default()
    ))
    .expect("unbind");
    w!(ch.exchange_delete(
        ex.as_str().into(),
        ExchangeDeleteOptions {
            if_unused: true,
            ..Default::default()
        }
    ))
    .expect("if-unused delete of unbound exchange");
    let res = w!(ch.exchange_declare(
        ex.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default()
    ));
    assert_code(res, 404);
    let ch = channel(&conn).await;
    delete_queue(&ch, &q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_to_exchange_binding_routes() {
    let broker = TestBroker::start().await;
    let (_conn, publ, ch) = setup(&broker).await;
    let src = unique("e2e-src");
    let dst = unique("e2e-dst");
    let q = unique("e2e-q");
    declare_exchange(&ch, &src, ExchangeKind::Topic).await;
    declare_exchange(&ch, &dst, ExchangeKind::Direct).await;
    declare_queue(&ch, &q).await;
    bind(&ch, &q, &dst, "a.b").await;
    w!(ch.exchange_bind(
        dst.as_str().into(),
        src.as_str().into(),
        "a.*".into(),
        ExchangeBindOptions::default(),
        FieldTable::default()
    ))
    .expect("exchange.bind");

    publish_confirmed(&publ, &src, "a.b", b"via-src").await; // matches a.* then a.b
    publish_confirmed(&publ, &src, "a.c", b"dropped-at-dst").await; // matches a.*, not a.b
    publish_confirmed(&publ, &src, "x.b", b"dropped-at-src").await;
    publish_confirmed(&publ, &dst, "a.b", b"direct").await;
    assert_eq!(drain(&ch, &q).await, vec!["via-src", "direct"]);

    w!(ch.exchange_unbind(
        dst.as_str().into(),
        src.as_str().into(),
        "a.*".into(),
        ExchangeUnbindOptions::default(),
        FieldTable::default()
    ))
    .expect("exchange.unbind");
    publish_confirmed(&publ, &src, "a.b", b"after-unbind").await;
    assert!(drain(&ch, &q).await.is_empty());

    delete_exchange(&ch, &src).await;
    delete_exchange(&ch, &dst).await;
    delete_queue(&ch, &q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_to_exchange_loop_delivers_once() {
    let broker = TestBroker::start().await;
    let (_conn, publ, ch) = setup(&broker).await;
    let x1 = unique("loop1");
    let x2 = unique("loop2");
    let q = unique("loop-q");
    declare_exchange(&ch, &x1, ExchangeKind::Fanout).await;
    declare_exchange(&ch, &x2, ExchangeKind::Fanout).await;
    declare_queue(&ch, &q).await;
    // x1 -> x2 -> x1 cycle, queue bound to both (diamond + cycle).
    w!(ch.exchange_bind(
        x2.as_str().into(),
        x1.as_str().into(),
        "".into(),
        ExchangeBindOptions::default(),
        FieldTable::default()
    ))
    .unwrap();
    w!(ch.exchange_bind(
        x1.as_str().into(),
        x2.as_str().into(),
        "".into(),
        ExchangeBindOptions::default(),
        FieldTable::default()
    ))
    .unwrap();
    bind(&ch, &q, &x2, "").await;
    bind(&ch, &q, &x1, "").await;

    publish_confirmed(&publ, &x1, "k", b"one").await;
    publish_confirmed(&publ, &x2, "k", b"two").await;
    assert_eq!(
        queue_counts(&ch, &q).await.0,
        2,
        "each message must be enqueued exactly once"
    );
    assert_eq!(drain(&ch, &q).await, vec!["one", "two"]);

    delete_exchange(&ch, &x1).await;
    delete_exchange(&ch, &x2).await;
    delete_queue(&ch, &q).await;
}

// ---------------------------------------------------------------------------
// Queues
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_server_named() {
    let broker = TestBroker::start().await;
    let (_conn, publ, ch) = setup(&broker).await;
    let q = w!(ch.queue_declare(
        "".into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default()
    ))
    .expect("declare server-named queue");
    let name = q.name().to_string();
    assert!(name.starts_with("amq.gen-"), "server-named queue {name:?}");
    let q2 = w!(ch.queue_declare(
        "".into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default()
    ))
    .unwrap();
    assert_ne!(
        q2.name().as_str(),
        name.as_str(),
        "server names must be unique"
    );
    // It is usable through the default exchange.
    publish_confirmed(&publ, "", &name, b"hi").await;
    assert_eq!(drain(&ch, &name).await, vec!["hi"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_passive_missing_is_404() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let res = passive_declare(&conn, &unique("no-such-queue")).await;
    assert_code(res, 404);
    assert!(conn.status().connected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_declare_ok_counts() {
    let broker = TestBroker::start().await;
    let (conn, publ, ch) = setup(&broker).await;
    let q = unique("counts");
    let decl = declare_queue(&ch, &q).await;
    assert_eq!(decl.name().as_str(), q.as_str());
    assert_eq!((decl.message_count(), decl.consumer_count()), (0, 0));
    for i in 0..3 {
        publish_confirmed(&publ, "", &q, format!("m{i}").as_bytes()).await;
    }
    // A non-passive redeclare reports the counts too.
    let decl = declare_queue(&ch, &q).await;
    assert_eq!((decl.message_count(), decl.consumer_count()), (3, 0));

    // One consumer with prefetch 1 holds one message unacked.
    let cch = channel(&conn).await;
    w!(cch.basic_qos(1, BasicQosOptions::default())).unwrap();
    let mut consumer = consume(&cch, &q, "", false).await;
    let d = next_delivery(&mut consumer).await;
    assert_eq!(body_str(&d), "m0");
    assert_eq!(queue_counts(&ch, &q).await, (2, 1));
    let cch2 = channel(&conn).await;
    let _c2 = consume(&cch2, &q, "", false).await;
    // The second consumer has no prefetch limit and takes the other two.
    let deadline = std::time::Instant::now() + STEP;
    loop {
        let counts = queue_counts(&ch, &q).await;
        if counts == (0, 2) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "counts stuck at {counts:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    w!(ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_queue_is_locked_to_its_connection() {
    let broker = TestBroker::start().await;
    let owner = broker.connect().await;
    let other = broker.connect().await;
    let och = channel(&owner).await;
    let q = unique("excl");
    w!(och.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default()
    ))
    .expect("declare exclusive");

    // Another connection can neither declare, consume from nor delete it.
    let ch = channel(&other).await;
    let res = w!(ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default()
    ));
    assert_code(res, 405);
    let ch = channel(&other).await;
    let res = w!(ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default()
    ));
    assert_code(res, 405);
    let ch = channel(&other).await;
    let res = w!(ch.basic_consume(
        q.as_str().into(),
        "".into(),
        BasicConsumeOptions::default(),
        FieldTable::default()
    ));
    assert_code(res, 405);
    let ch = channel(&other).await;
    let res = w!(ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default()));
    assert_code(res, 405);

    // The owner can use it from any of its channels.
    let och2 = channel(&owner).await;
    assert_eq!(queue_counts(&och2, &q).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_queue_deleted_when_connection_closes() {
    let broker = TestBroker::start().await;
    let owner = broker.connect().await;
    let other = broker.connect().await;
    let och = channel(&owner).await;
    let q = unique("excl-gone");
    w!(och.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default()
    ))
    .expect("declare exclusive");
    publish(&och, "", &q, b"x").await;
    w!(owner.close(200, "bye".into())).expect("close owner");
    wait_queue_gone(&other, &q).await;
    // The name is free again for another connection.
    let ch = channel(&other).await;
    w!(ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default()
    ))
    .expect("re-declare exclusive from the other connection");
    assert_eq!(queue_counts(&ch, &q).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_delete_queue_deleted_after_last_consumer_cancels() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    let q = unique("autodel");
    w!(ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default()
    ))
    .expect("declare auto-delete");
    let c1 = consume(&ch, &q, "c1", false).await;
    let c2 = consume(&ch, &q, "c2", false).await;
    w!(ch.basic_cancel(c1.tag(), BasicCancelOptions::default())).expect("cancel c1");
    // One consumer left: the queue still exists.
    let probe = channel(&conn).await;
    assert_eq!(queue_counts(&probe, &q).await.1, 1);
    w!(ch.basic_cancel(c2.tag(), BasicCancelOptions::default())).expect("cancel c2");
    wait_queue_gone(&conn, &q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_purge_returns_count() {
    let broker = TestBroker::start().await;
    let (_conn, publ, ch) = setup(&broker).await;
    let q = unique("purge");
    declare_queue(&ch, &q).await;
    for i in 0..5 {
        publish_confirmed(&publ, "", &q, format!("{i}").as_bytes()).await;
    }
    let n = w!(ch.queue_purge(q.as_str().into(), QueuePurgeOptions::default())).expect("purge");
    assert_eq!(n, 5);
    assert_eq!(queue_counts(&ch, &q).await.0, 0);
    assert!(get_noack(&ch, &q).await.is_none());
    let n =
        w!(ch.queue_purge(q.as_str().into(), QueuePurgeOptions::default())).expect("purge empty");
    assert_eq!(n, 0);
    let deleted = w!(ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())).unwrap();
    assert_eq!(deleted, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_delete_if_empty_and_if_unused() {
    let broker = TestBroker::start().await;
    let (conn, publ, ch) = setup(&broker).await;
    let q = unique("del");
    declare_queue(&ch, &q).await;
    publish_confirmed(&publ, "", &q, b"keep").await;

    let res = w!(ch.queue_delete(
        q.as_str().into(),
        QueueDeleteOptions {
            if_empty: true,
            ..Default::default()
        }
    ));
    assert_code(res, 406);
    assert!(!ch.status().connected());

    let ch = channel(&conn).await;
    let cch = channel(&conn).await;
    w!(cch.basic_qos(1, BasicQosOptions::default())).unwrap();
    let _consumer = consume(&cch, &q, "", false).await;
    let res = w!(ch.queue_delete(
        q.as_str().into(),
        QueueDeleteOptions {
            if_unused: true,
            ..Default::default()
        }
    ));
    assert_code(res, 406);

    // Still there.
    let ch = channel(&conn).await;
    assert_eq!(queue_counts(&ch, &q).await.1, 1);
    // A plain delete reports the number of ready messages deleted.
    let q2 = unique("del2");
    declare_queue(&ch, &q2).await;
    for _ in 0..4 {
        publish_confirmed(&publ, "", &q2, b"x").await;
    }
    let n = w!(ch.queue_delete(q2.as_str().into(), QueueDeleteOptions::default())).expect("delete");
    assert_eq!(n, 4);
    assert_code(passive_declare(&conn, &q2).await, 404);
    w!(ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())).expect("delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbind_stops_routing() {
    let broker = TestBroker::start().await;
    let (_conn, publ, ch) = setup(&broker).await;
    let ex = unique("unbind-ex");
    let q = unique("unbind-q");
    declare_exchange(&ch, &ex, ExchangeKind::Direct).await;
    declare_queue(&ch, &q).await;
    bind(&ch, &q, &ex, "k1").await;
    bind(&ch, &q, &ex, "k2").await;
    publish_confirmed(&publ, &ex, "k1", b"a").await;
    publish_confirmed(&publ, &ex, "k2", b"b").await;
    assert_eq!(drain(&ch, &q).await, vec!["a", "b"]);
    w!(ch.queue_unbind(
        q.as_str().into(),
        ex.as_str().into(),
        "k1".into(),
        FieldTable::default()
    ))
    .expect("unbind");
    publish_confirmed(&publ, &ex, "k1", b"c").await;
    publish_confirmed(&publ, &ex, "k2", b"d").await;
    assert_eq!(drain(&ch, &q).await, vec!["d"]);
    delete_exchange(&ch, &ex).await;
    delete_queue(&ch, &q).await;
}

// ---------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_direct() {
    let broker = TestBroker::start().await;
    let (_conn, publ, ch) = setup(&broker).await;
    let ex = unique("direct");
    declare_exchange(&ch, &ex, ExchangeKind::Direct).await;
    let qa = unique("direct-a");
    let qb = unique("direct-b");
    declare_queue(&ch, &qa).await;
    declare_queue(&ch, &qb).await;
    bind(&ch, &qa, &ex, "red").await;
    bind(&ch, &qb, &ex, "green").await;
    bind(&ch, &qb, &ex, "red").await;
    publish_confirmed(&publ, &ex, "red", b"r").await;
    publish_confirmed(&publ, &ex, "green", b"g").await;
    publish_confirmed(&publ, &ex, "blue", b"b").await;
    publish_confirmed(&publ, &ex, "Red", b"R").await; // case-sensitive
    assert_eq!(drain(&ch, &qa).await, vec!["r"]);
    assert_eq!(drain(&ch, &qb).await, vec!["r", "g"]);
    // Also via amq.direct.
    bind(&ch, &qa, "amq.direct", &qa).await;
    publish_confirmed(&publ, "amq.direct", &qa, b"amq").await;
    assert_eq!(drain(&ch, &qa).await, vec!["amq"]);
    delete_queue(&ch, &qa).await;
    delete_queue(&ch, &qb).await;
    delete_exchange(&ch, &ex).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_fanout_to_several_queues() {
    let broker = TestBroker::start().await;
    let (_conn, publ, ch) = setup(&broker).await;
    let ex = unique("fanout");
    declare_exchange(&ch, &ex, ExchangeKind::Fanout).await;
    let queues: Vec<String> = (0..4).map(|i| unique(&format!("fan{i}"))).collect();
    for q in &queues {
        declare_queue(&ch, q).await;
        bind(&ch, q, &ex, "ignored-key").await;
    }
    let unbound = unique("fan-unbound");
    declare_queue(&ch, &unbound).await;
    publish_confirmed(&publ, &ex, "whatever", b"m1").await;
    publish_confirmed(&publ, &ex, "", b"m2").await;
    for q in &queues {
        assert_eq!(drain(&ch, q).await, vec!["m1", "m2"], "queue {q}");
        delete_queue(&ch, q).await;
    }
    assert!(drain(&ch, &unbound).await.is_empty());
    delete_queue(&ch, &unbound).await;
    delete_exchange(&ch, &ex).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_topic_wildcards() {
    let broker = TestBroker::start().await;
    let (_conn, publ, ch) = setup(&broker).await;
    let ex = unique("topic");
    declare_exchange(&ch, &ex, ExchangeKind::Topic).await;
    let patterns = [
        "*.orange.*",
        "*.*.rabbit",
        "lazy.#",
        "#",
        "a.*",
        "a.#.z",
        "exact.key",
    ];
    let mut queues = Vec::new();
    for p in patterns {
        let q = unique("topic-q");
        declare_queue(&ch, &q).await;
        bind(&ch, &q, &ex, p).await;
        queues.push(q);
    }
    let keys = [
        "quick.orange.rabbit",
        "lazy.orange.elephant",
        "quick.orange.fox",
        "lazy.brown.fox",
        "lazy",
        "quick.orange.male.rabbit",
        "orange",
        "a",
        "a.b",
        "a.b.c",
        "a.z",
        "a.b.c.z",
        "exact.key",
        "",
    ];
    for k in keys {
        publish_confirmed(&publ, &ex, k, k.as_bytes()).await;
    }
    let expected: [&[&str]; 7] = [
        &[
            "quick.orange.rabbit",
            "lazy.orange.elephant",
            "quick.orange.fox",
        ],
        &["quick.orange.rabbit"],
        &["lazy.orange.elephant", "lazy.brown.fox", "lazy"],
        &keys,
        &["a.b", "a.z"],
        &["a.z", "a.b.c.z"],
        &["exact.key"],
    ];
    for ((q, p), exp) in queues.iter().zip(patterns).zip(expected) {
        assert_eq!(drain(&ch, q).await, exp.to_vec(), "pattern {p:?}");
        delete_queue(&ch, q).await;
    }
    delete_exchange(&ch, &ex).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_headers_any_all() {
    let broker = TestBroker::start().await;
    let (_conn, publ, ch) = setup(&broker).await;
    let ex = unique("headers");
    declare_exchange(&ch, &ex, ExchangeKind::Headers).await;
    let q_all = unique("h-all");
    let q_any = unique("h-any");
    let q_default = unique("h-default"); // no x-match: defaults to all
    for q in [&q_all, &q_any, &q_default] {
        declare_queue(&ch, q).await;
    }
    bind_args(
        &ch,
        &q_all,
        &ex,
        "",
        table(&[
            ("x-match", lstr("all")),
            ("format", lstr("pdf")),
            ("type", lstr("report")),
        ]),
    )
    .await;
    bind_args(
        &ch,
        &q_any,
        &ex,
        "",
        table(&[
            ("x-match", lstr("any")),
            ("format", lstr("pdf")),
            ("type", lstr("report")),
        ]),
    )
    .await;
    bind_args(
        &ch,
        &q_default,
        &ex,
        "",
        table(&[("format", lstr("pdf")), ("type", lstr("report"))]),
    )
    .await;

    let send = |name: &'static str, headers: FieldTable| {
        let publ = publ.clone();
        let ex = ex.clone();
        async move {
            publish_confirmed_props(
                &publ,
                &ex,
                "rk-ignored",
                name.as_bytes(),
                BasicProperties::default().with_headers(headers),
            )
            .await
        }
    };
    send(
        "both",
        table(&[("format", lstr("pdf")), ("type", lstr("report"))]),
    )
    .await;
    send(
        "both+extra",
        table(&[
            ("format", lstr("pdf")),
            ("type", lstr("report")),
            ("x", AMQPValue::LongInt(1)),
        ]),
    )
    .await;
    send("format-only", table(&[("format", lstr("pdf"))])).await;
    send("type-only", table(&[("type", lstr("report"))])).await;
    send(
        "wrong-value",
        table(&[("format", lstr("zip")), ("type", lstr("log"))]),
    )
    .await;
    send("unrelated", table(&[("other", lstr("pdf"))])).await;
    send("no-headers", FieldTable::default()).await;
    publish_confirmed(&publ, &ex, "rk", b"no-props").await;

    assert_eq!(drain(&ch, &q_all).await, vec!["both", "both+extra"]);
    assert_eq!(drain(&ch, &q_default).await, vec!["both", "both+extra"]);
    assert_eq!(
        drain(&ch, &q_any).await,
        vec!["both", "both+extra", "format-only", "type-only"]
    );
    for q in [&q_all, &q_any, &q_default] {
        delete_queue(&ch, q).await;
    }
    delete_exchange(&ch, &ex).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_default_exchange_by_queue_name() {
    let broker = TestBroker::start().await;
    let (_conn, publ, ch) = setup(&broker).await;
    let q = unique("default-ex");
    declare_queue(&ch, &q).await;
    publish_confirmed(&publ, "", &q, b"by-name").await;
    publish_confirmed(&publ, "", &format!("{q}-nope"), b"lost").await;
    assert_eq!(drain(&ch, &q).await, vec!["by-name"]);
    // Binding to the default exchange is not allowed (403).
    let res = w!(ch.queue_bind(
        q.as_str().into(),
        "".into(),
        "other".into(),
        QueueBindOptions::default(),
        FieldTable::default()
    ));
    assert_code(res, 403);
    let ch = channel(&_conn).await;
    delete_queue(&ch, &q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_errors() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    let q = unique("bind-err");
    declare_queue(&ch, &q).await;
    // Binding to a missing exchange: 404.
    let res = w!(ch.queue_bind(
        q.as_str().into(),
        unique("nx").as_str().into(),
        "k".into(),
        QueueBindOptions::default(),
        FieldTable::default()
    ));
    assert_code(res, 404);
    // Binding a missing queue: 404.
    let ch = channel(&conn).await;
    let res = w!(ch.queue_bind(
        unique("nq").as_str().into(),
        "amq.direct".into(),
        "k".into(),
        QueueBindOptions::default(),
        FieldTable::default()
    ));
    assert_code(res, 404);
    let ch = channel(&conn).await;
    delete_queue(&ch, &q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_redeclare_with_other_attributes_is_406() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    let q = unique("redeclare");
    declare_queue(&ch, &q).await;
    let res = w!(ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default()
    ));
    assert_code(res, 406);
    let ch = channel(&conn).await;
    let res = w!(ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default()
    ));
    assert_code(res, 406);
    // A passive declare ignores the attributes.
    let ch = channel(&conn).await;
    w!(ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            passive: true,
            durable: true,
            ..Default::default()
        },
        FieldTable::default()
    ))
    .expect("passive declare ignores attributes");
    delete_queue(&ch, &q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_declare_reserved_amq_prefix_is_403() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    let res = w!(ch.queue_declare(
        unique("amq.mine").as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default()
    ));
    assert_code(res, 403);
    assert!(!ch.status().connected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_queue_passive_from_other_connection_is_405() {
    let broker = TestBroker::start().await;
    let owner = broker.connect().await;
    let other = broker.connect().await;
    let och = channel(&owner).await;
    let q = unique("excl-passive");
    w!(och.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default()
    ))
    .expect("declare exclusive");
    assert_code(passive_declare(&other, &q).await, 405);
    let ch = channel(&other).await;
    let res = w!(ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true }));
    assert_code(res, 405);
    let ch = channel(&other).await;
    let res = w!(ch.queue_purge(q.as_str().into(), QueuePurgeOptions::default()));
    assert_code(res, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_purge_leaves_unacked_messages() {
    let broker = TestBroker::start().await;
    let (_conn, publ, ch) = setup(&broker).await;
    let q = unique("purge-unacked");
    declare_queue(&ch, &q).await;
    for i in 0..3 {
        publish_confirmed(&publ, "", &q, format!("m{i}").as_bytes()).await;
    }
    let held = get_ack(&ch, &q).await.expect("get");
    assert_eq!(held.delivery.data, b"m0");
    let n = w!(ch.queue_purge(q.as_str().into(), QueuePurgeOptions::default())).expect("purge");
    assert_eq!(n, 2, "purge removes ready messages only");
    w!(ch.basic_recover(BasicRecoverOptions { requeue: true })).expect("recover");
    let back = get_noack(&ch, &q)
        .await
        .expect("unacked message survives purge");
    assert_eq!(back.delivery.data, b"m0");
    assert!(back.delivery.redelivered);
    assert!(get_noack(&ch, &q).await.is_none());
    delete_queue(&ch, &q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_delete_exchange_deleted_after_last_binding_removed() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = channel(&conn).await;
    let ex = unique("autodel-ex");
    let q = unique("autodel-ex-q");
    w!(ch.exchange_declare(
        ex.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default()
    ))
    .expect("declare auto-delete exchange");
    declare_queue(&ch, &q).await;
    bind(&ch, &q, &ex, "a").await;
    bind(&ch, &q, &ex, "b").await;
    w!(ch.queue_unbind(
        q.as_str().into(),
        ex.as_str().into(),
        "a".into(),
        FieldTable::default()
    ))
    .unwrap();
    // One binding left: still there.
    w!(ch.exchange_declare(
        ex.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default()
    ))
    .expect("exchange with a binding left must exist");
    w!(ch.queue_unbind(
        q.as_str().into(),
        ex.as_str().into(),
        "b".into(),
        FieldTable::default()
    ))
    .unwrap();
    let res = w!(ch.exchange_declare(
        ex.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default()
    ));
    assert_code(res, 404);
    let ch = channel(&conn).await;
    delete_queue(&ch, &q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_exchange_refuses_publishes_but_routes_e2e() {
    let broker = TestBroker::start().await;
    let (conn, publ, ch) = setup(&broker).await;
    let internal = unique("internal");
    let front = unique("front");
    let q = unique("internal-q");
    w!(ch.exchange_declare(
        internal.as_str().into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            internal: true,
            ..Default::default()
        },
        FieldTable::default()
    ))
    .expect("declare internal exchange");
    declare_exchange(&ch, &front, ExchangeKind::Fanout).await;
    declare_queue(&ch, &q).await;
    bind(&ch, &q, &internal, "").await;
    w!(ch.exchange_bind(
        internal.as_str().into(),
        front.as_str().into(),
        "".into(),
        ExchangeBindOptions::default(),
        FieldTable::default()
    ))
    .unwrap();
    publish_confirmed(&publ, &front, "k", b"via-front").await;
    assert_eq!(drain(&ch, &q).await, vec!["via-front"]);
    // Publishing directly to an internal exchange: 403 ACCESS_REFUSED.
    let c = w!(publ.basic_publish(
        internal.as_str().into(),
        "k".into(),
        BasicPublishOptions::default(),
        b"direct",
        BasicProperties::default()
    ))
    .expect("publish is asynchronous");
    assert_code(w!(c), 403);
    let ch = channel(&conn).await;
    delete_exchange(&ch, &front).await;
    delete_exchange(&ch, &internal).await;
    delete_queue(&ch, &q).await;
}

/// Topology changes made on one connection are visible to every other
/// connection as soon as the -ok arrives (Warren may run them on different
/// shards; RabbitMQ guarantees this, and clients rely on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_changes_visible_immediately_on_other_connections() {
    let broker = TestBroker::start().await;
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(broker.connect().await);
    }
    let mut chans = Vec::new();
    for c in &conns {
        let ch = channel(c).await;
        confirm(&ch).await;
        chans.push(ch);
    }
    for round in 0..12 {
        let a = &chans[round % 4];
        let b = &chans[(round + 1) % 4];
        let c = &chans[(round + 2) % 4];
        let ex = unique("vis-ex");
        let q = unique("vis-q");
        declare_exchange(a, &ex, ExchangeKind::Direct).await;
        declare_queue(b, &q).await;
        // Queue declared on b is visible to a, bind on a, publish on c.
        assert_eq!(queue_counts(a, &q).await, (0, 0));
        bind(a, &q, &ex, "k").await;
        let conf = w!(w!(c.basic_publish(
            ex.as_str().into(),
            "k".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"x",
            BasicProperties::default()
        ))
        .unwrap())
        .expect("confirm");
        assert!(
            conf.take_message().is_none(),
            "round {round}: binding made on another connection not yet effective"
        );
        assert_eq!(queue_counts(b, &q).await.0, 1);
        // Unbind on b: c's next mandatory publish is returned.
        w!(b.queue_unbind(
            q.as_str().into(),
            ex.as_str().into(),
            "k".into(),
            FieldTable::default()
        ))
        .unwrap();
        let conf = w!(w!(c.basic_publish(
            ex.as_str().into(),
            "k".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"y",
            BasicProperties::default()
        ))
        .unwrap())
        .expect("confirm");
        assert!(
            conf.take_message().is_some(),
            "round {round}: unbind made on another connection not yet effective"
        );
        // Delete on c: a passive declare on a fails right away.
        delete_queue(c, &q).await;
        let chk = channel(&conns[round % 4]).await;
        let res = w!(chk.queue_declare(
            q.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default()
        ));
        assert_code(res, 404);
        delete_exchange(b, &ex).await;
        let chk = channel(&conns[(round + 3) % 4]).await;
        let res = w!(chk.exchange_declare(
            ex.as_str().into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default()
        ));
        assert_code(res, 404);
    }
}
