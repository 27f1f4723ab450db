//! The counters behind message rates and Prometheus move when a real
//! client publishes, gets, consumes and acks: a one-shard broker built
//! in-process from the library (the HTTP listeners are not served yet), a
//! lapin client on another thread, and the shard's own `GatherStats`
//! afterwards.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};

use warren::ids::{QueueId, ShardId};
use warren::runtime::ShardStart;
use warren::shard::{GatherStats, Shard, ShardMsg, ShardOptions, ShardStats, ShardStore};
use warren::topology::Topology;

/// What the client did, published/consumed through lapin.
async fn client(port: u16) {
    let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2F");
    let conn = Connection::connect(&url, ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let q = "met-counters-q";
    ch.queue_declare(
        q.into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    for _ in 0..5 {
        ch.basic_publish(
            "".into(),
            q.into(),
            BasicPublishOptions::default(),
            b"hello",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    // Unroutable: one returned (mandatory), one dropped.
    for mandatory in [true, false] {
        ch.basic_publish(
            "amq.direct".into(),
            "met-nowhere".into(),
            BasicPublishOptions {
                mandatory,
                ..Default::default()
            },
            b"lost",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    // Two gets (one no-ack), then a consumer with manual acks for the rest.
    let got = ch
        .basic_get(q.into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .expect("a message");
    got.delivery.ack(BasicAckOptions::default()).await.unwrap();
    ch.basic_get(q.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("a message");
    let mut consumer = ch
        .basic_consume(
            q.into(),
            "met-c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for _ in 0..3 {
        let d = consumer.next().await.unwrap().unwrap();
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert!(ch
        .basic_get(q.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .is_none());
    ch.queue_delete(q.into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    ch.close(200, "bye".into()).await.unwrap();
    conn.close(200, "bye".into()).await.unwrap();
}

#[test]
fn counters_move_with_a_clients_work() {
    let dir = std::env::temp_dir().join(format!("warren-met-it-{}", std::process::id()));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let memlock = warren::runtime::preflight().expect("glommio can start");
    let listening = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Option<ShardStats>>> = Arc::default();
    let (l, d, s, dir2) = (listening.clone(), done.clone(), seen.clone(), dir.clone());
    let broker = std::thread::spawn(move || {
        warren::runtime::run(
            1,
            memlock,
            Duration::ZERO,
            move |start: ShardStart<ShardMsg>| async move {
                let (log, _, _) =
                    warren::storage::log::MessageLog::open(&dir2.join("0"), 1 << 20, |_| true)
                        .unwrap();
                let shard = Shard::new(
                    ShardId::from_index(0),
                    1,
                    start.mailbox,
                    ShardStore::new(log, Default::default()),
                    QueueId(1),
                    ShardOptions {
                        call_timeout: Duration::from_secs(5),
                        stall_calls: false,
                        access: Default::default(),
                        limits: Default::default(),
                    },
                );
                let receiver = shard.clone();
                start.inbox.serve(move |batch| receiver.handle_batch(batch));
                let access = warren::config::AccessConfig::default();
                let mut seed = warren::topology::admin::seed(&Topology::empty(), &access);
                // Vhosts first: the rest happens in them.
                seed.sort_by_key(|c| !matches!(c, warren::topology::TopologyChange::VhostAdded(_)));
                for c in &seed {
                    shard.apply_change(c);
                }
                let listener =
                    warren::runtime::net::listen(format!("127.0.0.1:{port}").parse().unwrap())
                        .unwrap();
                let sh = shard.clone();
                warren::runtime::spawn(async move {
                    while let Ok(sock) = listener.accept().await {
                        warren::runtime::spawn(warren::connection::serve(sh.clone(), sock));
                    }
                });
                l.store(true, Ordering::SeqCst);
                while !d.load(Ordering::SeqCst) {
                    warren::runtime::sleep(Duration::from_millis(5)).await;
                }
                // Let the connection's end run its course.
                warren::runtime::sleep(Duration::from_millis(300)).await;
                *s.lock().unwrap() = shard.call(ShardId::from_index(0), GatherStats).await.ok();
            },
        )
        .unwrap();
    });
    while !listening.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), client(port))
            .await
            .expect("the client finished in time")
    });
    done.store(true, Ordering::SeqCst);
    broker.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let st = seen.lock().unwrap().clone().expect("the shard answered");
    let t = st.totals;
    assert_eq!(t.connections_opened, 1);
    assert_eq!(t.connections_closed, 1);
    assert_eq!(t.channels_opened, 1);
    assert_eq!(t.channels_closed, 1);
    assert_eq!(t.queues_declared, 1);
    assert_eq!(t.queues_created, 1);
    assert_eq!(t.queues_deleted, 1);
    assert_eq!(t.received, 7);
    assert_eq!(t.received_confirm, 7);
    assert_eq!(t.routed, 5);
    assert_eq!(t.unroutable_returned, 1);
    assert_eq!(t.unroutable_dropped, 1);
    assert_eq!(t.confirmed, 7);
    assert_eq!(t.get_empty, 1);
    assert_eq!(t.routed_local, 5);
    assert_eq!(t.routed_remote, 0);
    let q = st.queue_totals;
    assert_eq!(q.publish, 5);
    assert_eq!((q.get, q.get_no_ack), (1, 1));
    assert_eq!((q.deliver, q.deliver_no_ack), (3, 0));
    assert_eq!(q.ack, 4);
    assert_eq!(q.redeliver, 0);
    assert!(st.busy > Duration::ZERO);
    let x = st
        .exchanges
        .iter()
        .find(|x| &*x.name == "amq.direct")
        .expect("amq.direct was published to");
    assert_eq!((x.counters.publish_in, x.counters.publish_out), (2, 0));
    let default = st.exchanges.iter().find(|x| x.name.is_empty()).unwrap();
    assert_eq!(default.counters.publish_in, 5);
    assert!(st.conns.is_empty(), "the connection is gone");
}
