//! The six RabbitMQ tutorials, played with lapin: Hello World, Work queues,
//! Publish/Subscribe, Routing, Topics and RPC.
//!
//! Each tutorial is a set of small programs (a producer, one or more
//! consumers, ...). Here every such program is a role with its own
//! connection, so the broker sees what it would see from the tutorial's
//! separate processes. The pika versions of the same programs live in
//! `tests/python/tutorials/`.
//!
//! Queue and exchange names are made unique per run (the tutorials use fixed
//! names such as `hello` or `logs`), so the tests can share a broker, e.g. a
//! real RabbitMQ given by `WARREN_TEST_URL`. Every wait is bounded.

#[macro_use]
mod common;

use std::collections::HashSet;

use common::*;
use lapin::message::Delivery;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, Consumer, ExchangeKind};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Declare `name` durable, as `new_task` and `worker` do.
async fn declare_durable(ch: &Channel, name: &str) {
    w!(ch.queue_declare(
        name.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default()
    ))
    .unwrap_or_else(|e| panic!("declare durable queue {name}: {e:?}"));
}

/// A queue with a broker-chosen name that lives as long as `ch`'s connection.
async fn declare_private_queue(ch: &Channel) -> String {
    let q = w!(ch.queue_declare(
        "".into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default()
    ))
    .expect("declare exclusive server-named queue");
    let name = q.name().to_string();
    assert!(!name.is_empty(), "the broker must name the queue");
    name
}

async fn hang_up(conn: &Connection) {
    w!(conn.close(200, "bye".into())).expect("close connection");
}

/// A log subscriber (tutorials 3-5): its own connection, an exclusive
/// server-named queue bound to `exchange` with each of `keys`, auto-ack.
struct Subscriber {
    conn: Connection,
    queue: String,
    consumer: Consumer,
}

impl Subscriber {
    async fn start(
        broker: &TestBroker,
        exchange: &str,
        kind: ExchangeKind,
        keys: &[&str],
    ) -> Subscriber {
        let (conn, ch) = broker.connect_channel().await;
        declare_exchange(&ch, exchange, kind).await;
        let queue = declare_private_queue(&ch).await;
        for key in keys {
            bind(&ch, &queue, exchange, key).await;
        }
        let consumer = consume(&ch, &queue, "", true).await;
        Subscriber {
            conn,
            queue,
            consumer,
        }
    }

    /// (routing key, body) of each delivery up to and including the first
    /// whose body is `last`.
    async fn read_until(&mut self, last: &str) -> Vec<(String, String)> {
        let mut seen = Vec::new();
        loop {
            let d = next_delivery(&mut self.consumer).await;
            let entry = (d.routing_key.to_string(), body_str(&d));
            let done = entry.1 == last;
            seen.push(entry);
            if done {
                return seen;
            }
            assert!(seen.len() < 1000, "never saw {last:?}: {seen:?}");
        }
    }
}

/// A log publisher (tutorials 3-5): one connection, all its messages on one
/// channel, so each queue receives them in publishing order.
struct Emitter {
    conn: Connection,
    ch: Channel,
    exchange: String,
}

impl Emitter {
    async fn start(broker: &TestBroker, exchange: &str, kind: ExchangeKind) -> Emitter {
        let (conn, ch) = broker.connect_channel().await;
        declare_exchange(&ch, exchange, kind).await;
        Emitter {
            conn,
            ch,
            exchange: exchange.to_string(),
        }
    }

    async fn emit(&self, key: &str, text: &str) {
        publish(&self.ch, &self.exchange, key, text.as_bytes()).await;
    }
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, b)| (k.to_string(), b.to_string()))
        .collect()
}

// ---------------------------------------------------------------------------
// 1. Hello World
// ---------------------------------------------------------------------------

/// `send` declares the queue and publishes through the default exchange;
/// `receive` declares it too and consumes with auto-ack. Whichever starts
/// first, the greeting arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tutorial_1_hello_world() {
    let broker = TestBroker::start().await;
    let hello = unique("hello");

    let send = |body: &'static str| {
        let broker = &broker;
        let hello = hello.clone();
        async move {
            let (conn, ch) = broker.connect_channel().await;
            declare_queue(&ch, &hello).await;
            publish(&ch, "", &hello, body.as_bytes()).await;
            hang_up(&conn).await;
        }
    };

    // Sent while nobody listens: it waits in the queue.
    send("Hello World!").await;

    let (recv_conn, recv_ch) = broker.connect_channel().await;
    declare_queue(&recv_ch, &hello).await;
    let mut inbox = consume(&recv_ch, &hello, "", true).await;
    let first = next_delivery(&mut inbox).await;
    assert_eq!(body_str(&first), "Hello World!");
    assert_eq!(first.routing_key.as_str(), hello);

    // Sent while the receiver is consuming.
    send("Hello again!").await;
    assert_eq!(body_str(&next_delivery(&mut inbox).await), "Hello again!");

    // auto-ack: nothing is left behind.
    assert_eq!(queue_counts(&recv_ch, &hello).await, (0, 1));
    delete_queue(&recv_ch, &hello).await;
    hang_up(&recv_conn).await;
}

// ---------------------------------------------------------------------------
// 2. Work queues
// ---------------------------------------------------------------------------

/// What a worker reports back to the test.
#[derive(Debug, Clone, PartialEq)]
enum Report {
    Took {
        worker: usize,
        task: String,
        redelivered: bool,
        persistent: bool,
    },
    Finished {
        worker: usize,
        task: String,
    },
}

/// A tutorial-2 worker: its own connection, durable queue, prefetch 1,
/// manual ack after the "work". Instead of sleeping one second per '.',
/// a task containing "..." is long: the worker holds it (unacked) until the
/// test lists it in `release`. Other tasks are done at once.
struct Worker {
    id: usize,
    conn: Connection,
    task: JoinHandle<()>,
}

impl Worker {
    async fn start(
        broker: &TestBroker,
        id: usize,
        queue: &str,
        reports: mpsc::UnboundedSender<Report>,
        release: watch::Receiver<HashSet<String>>,
    ) -> Worker {
        let (conn, ch) = broker.connect_channel().await;
        declare_durable(&ch, queue).await;
        w!(ch.basic_qos(1, BasicQosOptions::default())).expect("basic.qos prefetch 1");
        let mut inbox = consume(&ch, queue, &format!("worker-{id}"), false).await;
        let task = tokio::spawn(async move {
            use futures_lite::StreamExt;
            let _keep_channel = ch;
            while let Some(Ok(d)) = inbox.next().await {
                let task = body_str(&d);
                let _ = reports.send(Report::Took {
                    worker: id,
                    task: task.clone(),
                    redelivered: d.redelivered,
                    persistent: d.properties.delivery_mode() == &Some(2),
                });
                if task.contains("...") {
                    let mut gate = release.clone();
                    if gate.wait_for(|done| done.contains(&task)).await.is_err() {
                        return;
                    }
                }
                if d.ack(BasicAckOptions::default()).await.is_err() {
                    return;
                }
                let _ = reports.send(Report::Finished { worker: id, task });
            }
        });
        Worker { id, conn, task }
    }

    /// The worker goes away (its connection first) without acking what it
    /// holds. Closing the connection before stopping the task keeps lapin
    /// from closing the task's channel on its own at the same time.
    async fn stop(self) {
        hang_up(&self.conn).await;
        self.task.abort();
        let _ = self.task.await;
    }
}

/// `new_task`: a separate connection per task, durable queue, persistent.
async fn new_task(broker: &TestBroker, queue: &str, task: &str) {
    let (conn, ch) = broker.connect_channel().await;
    declare_durable(&ch, queue).await;
    publish_props(
        &ch,
        "",
        queue,
        task.as_bytes(),
        BasicProperties::default().with_delivery_mode(2),
    )
    .await;
    hang_up(&conn).await;
}

async fn next_report(reports: &mut mpsc::UnboundedReceiver<Report>) -> Report {
    w!(reports.recv()).expect("all workers stopped")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tutorial_2_work_queues() {
    let broker = TestBroker::start().await;
    let queue = unique("task_queue");
    let (report_tx, mut reports) = mpsc::unbounded_channel();
    let (release, release_rx) = watch::channel(HashSet::<String>::new());
    let w1 = Worker::start(&broker, 1, &queue, report_tx.clone(), release_rx.clone()).await;
    let w2 = Worker::start(&broker, 2, &queue, report_tx.clone(), release_rx.clone()).await;
    let (admin_conn, admin) = broker.connect_channel().await;
    assert_eq!(queue_counts(&admin, &queue).await, (0, 2));

    // --- Fair dispatch: a long task keeps one worker busy; with prefetch 1
    // it is given nothing more, and the other worker does all the short ones.
    let slow = "slow task...".to_string();
    let quick: Vec<String> = (0..3).map(|i| format!("quick task {i}")).collect();
    new_task(&broker, &queue, &slow).await;
    for t in &quick {
        new_task(&broker, &queue, t).await;
    }

    let mut busy = None;
    let mut took: [Vec<String>; 3] = Default::default();
    let mut finished = Vec::new();
    while busy.is_none() || finished.len() < quick.len() {
        match next_report(&mut reports).await {
            Report::Took {
                worker,
                task,
                redelivered,
                persistent,
            } => {
                assert!(!redelivered, "{task:?} redelivered");
                assert!(persistent, "{task:?} lost delivery_mode 2");
                if task == slow {
                    busy = Some(worker);
                }
                took[worker].push(task);
            }
            Report::Finished { task, .. } => {
                assert_ne!(task, slow, "the long task finished before its release");
                finished.push(task);
            }
        }
    }
    let busy = busy.unwrap();
    let other = 3 - busy;
    assert_eq!(
        took[busy],
        vec![slow.clone()],
        "the busy worker got more work"
    );
    assert_eq!(
        took[other], quick,
        "the free worker did the quick tasks, in order"
    );
    assert_eq!(finished, quick);

    release.send_modify(|r| {
        r.insert(slow.clone());
    });
    assert_eq!(
        next_report(&mut reports).await,
        Report::Finished {
            worker: busy,
            task: slow.clone()
        }
    );
    assert_eq!(queue_counts(&admin, &queue).await, (0, 2));

    // --- Message acknowledgment: a worker that dies before acking loses
    // nothing; the task goes (redelivered) to the other worker.
    let doomed = "doomed task...".to_string();
    new_task(&broker, &queue, &doomed).await;
    let victim = match next_report(&mut reports).await {
        Report::Took {
            worker,
            task,
            redelivered,
            ..
        } => {
            assert_eq!((task.as_str(), redelivered), (doomed.as_str(), false));
            worker
        }
        other => panic!("expected the doomed task to be taken, got {other:?}"),
    };
    let (dying, survivor) = if victim == w1.id { (w1, w2) } else { (w2, w1) };
    dying.stop().await;
    assert_eq!(
        next_report(&mut reports).await,
        Report::Took {
            worker: survivor.id,
            task: doomed.clone(),
            redelivered: true,
            persistent: true,
        }
    );
    release.send_modify(|r| {
        r.insert(doomed.clone());
    });
    assert_eq!(
        next_report(&mut reports).await,
        Report::Finished {
            worker: survivor.id,
            task: doomed.clone()
        }
    );
    assert_eq!(queue_counts(&admin, &queue).await, (0, 1));

    survivor.stop().await;
    delete_queue(&admin, &queue).await;
    hang_up(&admin_conn).await;
}

// ---------------------------------------------------------------------------
// 3. Publish/Subscribe
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tutorial_3_publish_subscribe() {
    let broker = TestBroker::start().await;
    let logs = unique("logs");
    let mut first = Subscriber::start(&broker, &logs, ExchangeKind::Fanout, &[""]).await;
    let mut second = Subscriber::start(&broker, &logs, ExchangeKind::Fanout, &[""]).await;
    assert_ne!(
        first.queue, second.queue,
        "server-named queues are distinct"
    );

    let emitter = Emitter::start(&broker, &logs, ExchangeKind::Fanout).await;
    // A fanout exchange ignores the routing key.
    emitter.emit("", "info: Hello World!").await;
    emitter.emit("whatever", "warning: disk 90% full").await;
    let expected = pairs(&[
        ("", "info: Hello World!"),
        ("whatever", "warning: disk 90% full"),
    ]);
    assert_eq!(first.read_until("warning: disk 90% full").await, expected);
    assert_eq!(second.read_until("warning: disk 90% full").await, expected);

    // The subscribers' queues go away with their connections.
    let queues = [first.queue.clone(), second.queue.clone()];
    hang_up(&first.conn).await;
    hang_up(&second.conn).await;
    for q in &queues {
        wait_queue_gone(&emitter.conn, q).await;
    }
    delete_exchange(&emitter.ch, &logs).await;
    hang_up(&emitter.conn).await;
}

// ---------------------------------------------------------------------------
// 4. Routing
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tutorial_4_routing() {
    let broker = TestBroker::start().await;
    let direct_logs = unique("direct_logs");
    // One subscriber saves warnings and errors to disk, one prints info.
    let mut to_disk = Subscriber::start(
        &broker,
        &direct_logs,
        ExchangeKind::Direct,
        &["warning", "error"],
    )
    .await;
    let mut to_screen =
        Subscriber::start(&broker, &direct_logs, ExchangeKind::Direct, &["info"]).await;

    let emitter = Emitter::start(&broker, &direct_logs, ExchangeKind::Direct).await;
    let logged = [
        ("error", "Run. Run. Or it will explode."),
        ("info", "all is well"),
        ("warning", "it is getting warm"),
        ("debug", "nobody listens to this"),
        ("error", "it exploded"),
    ];
    for (severity, text) in logged {
        emitter.emit(severity, text).await;
    }
    // Markers: every line before them has been routed.
    emitter.emit("error", "end").await;
    emitter.emit("info", "end").await;

    assert_eq!(
        to_disk.read_until("end").await,
        pairs(&[
            ("error", "Run. Run. Or it will explode."),
            ("warning", "it is getting warm"),
            ("error", "it exploded"),
            ("error", "end"),
        ])
    );
    assert_eq!(
        to_screen.read_until("end").await,
        pairs(&[("info", "all is well"), ("info", "end")])
    );

    hang_up(&to_disk.conn).await;
    hang_up(&to_screen.conn).await;
    delete_exchange(&emitter.ch, &direct_logs).await;
    hang_up(&emitter.conn).await;
}

// ---------------------------------------------------------------------------
// 5. Topics
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tutorial_5_topics() {
    let broker = TestBroker::start().await;
    let topic_logs = unique("topic_logs");
    let keys = [
        "kern.critical",
        "kern.info",
        "auth.critical",
        "kern.disk.full",
        "kern",
        "auth.info",
        "cron.disk.critical",
    ];
    // (binding keys of one subscriber, the routing keys it must receive)
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["kern.*"], vec!["kern.critical", "kern.info"]),
        (vec!["*.critical"], vec!["kern.critical", "auth.critical"]),
        (vec!["#"], keys.to_vec()),
        (
            vec!["kern.#"],
            vec!["kern.critical", "kern.info", "kern.disk.full", "kern"],
        ),
        // Matching both bindings still means one copy.
        (
            vec!["kern.*", "*.critical"],
            vec!["kern.critical", "kern.info", "auth.critical"],
        ),
    ];
    let mut subscribers = Vec::new();
    for (bindings, _) in &cases {
        subscribers
            .push(Subscriber::start(&broker, &topic_logs, ExchangeKind::Topic, bindings).await);
    }

    let emitter = Emitter::start(&broker, &topic_logs, ExchangeKind::Topic).await;
    for key in keys {
        emitter.emit(key, &format!("log from {key}")).await;
    }
    // "kern.critical" matches every binding above: a marker for all of them.
    emitter.emit("kern.critical", "end").await;

    for ((bindings, wanted), sub) in cases.iter().zip(subscribers.iter_mut()) {
        let mut expected: Vec<(String, String)> = wanted
            .iter()
            .map(|k| (k.to_string(), format!("log from {k}")))
            .collect();
        expected.push(("kern.critical".into(), "end".into()));
        assert_eq!(
            sub.read_until("end").await,
            expected,
            "bindings {bindings:?}"
        );
    }

    for sub in &subscribers {
        hang_up(&sub.conn).await;
    }
    delete_exchange(&emitter.ch, &topic_logs).await;
    hang_up(&emitter.conn).await;
}

// ---------------------------------------------------------------------------
// 6. RPC
// ---------------------------------------------------------------------------

fn fib(n: u64) -> u64 {
    if n < 2 {
        n
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

/// The RPC server: consumes the request queue (prefetch 1, manual ack) and
/// answers each request on its `reply_to` queue with its `correlation_id`.
async fn rpc_server(broker: &TestBroker, rpc_queue: &str) -> (Connection, JoinHandle<()>) {
    let (conn, ch) = broker.connect_channel().await;
    declare_queue(&ch, rpc_queue).await;
    w!(ch.basic_qos(1, BasicQosOptions::default())).expect("basic.qos prefetch 1");
    let mut requests = consume(&ch, rpc_queue, "rpc-server", false).await;
    let serve = tokio::spawn(async move {
        use futures_lite::StreamExt;
        while let Some(Ok(req)) = requests.next().await {
            let n: u64 = body_str(&req).parse().expect("request is a number");
            let reply_to = req
                .properties
                .reply_to()
                .clone()
                .expect("request has reply_to");
            let mut props = BasicProperties::default();
            if let Some(id) = req.properties.correlation_id() {
                props = props.with_correlation_id(id.clone());
            }
            let answer = fib(n).to_string();
            if ch
                .basic_publish(
                    "".into(),
                    reply_to,
                    BasicPublishOptions::default(),
                    answer.as_bytes(),
                    props,
                )
                .await
                .is_err()
            {
                return;
            }
            if req.ack(BasicAckOptions::default()).await.is_err() {
                return;
            }
        }
    });
    (conn, serve)
}

/// The RPC client: its own connection and exclusive callback queue.
struct FibonacciClient {
    conn: Connection,
    ch: Channel,
    rpc_queue: String,
    callback_queue: String,
    replies: Consumer,
}

impl FibonacciClient {
    async fn connect(broker: &TestBroker, rpc_queue: &str) -> FibonacciClient {
        let (conn, ch) = broker.connect_channel().await;
        let callback_queue = declare_private_queue(&ch).await;
        let replies = consume(&ch, &callback_queue, "", true).await;
        FibonacciClient {
            conn,
            ch,
            rpc_queue: rpc_queue.to_string(),
            callback_queue,
            replies,
        }
    }

    async fn call(&mut self, n: u64) -> u64 {
        let call_id = unique("fib-call");
        let props = BasicProperties::default()
            .with_reply_to(self.callback_queue.as_str().into())
            .with_correlation_id(call_id.as_str().into());
        publish_props(
            &self.ch,
            "",
            &self.rpc_queue,
            n.to_string().as_bytes(),
            props,
        )
        .await;
        loop {
            let reply: Delivery = next_delivery(&mut self.replies).await;
            // A reply to some other call (none expected here) is skipped.
            if reply
                .properties
                .correlation_id()
                .as_ref()
                .map(|c| c.as_str())
                == Some(call_id.as_str())
            {
                return body_str(&reply).parse().expect("reply is a number");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tutorial_6_rpc() {
    let broker = TestBroker::start().await;
    let rpc_queue = unique("rpc_queue");
    let (server_conn, server) = rpc_server(&broker, &rpc_queue).await;

    let mut client = FibonacciClient::connect(&broker, &rpc_queue).await;
    assert_eq!(w!(30, client.call(30)), 832040);

    // Two clients at once: each gets the answer to its own question.
    let mut other = FibonacciClient::connect(&broker, &rpc_queue).await;
    let (a, b) = w!(30, async { tokio::join!(client.call(30), other.call(25)) });
    assert_eq!((a, b), (832040, 75025));
    let (a, b) = w!(30, async { tokio::join!(client.call(10), other.call(30)) });
    assert_eq!((a, b), (55, 832040));

    // Nothing is left waiting (with prefetch 1, the later calls could only be
    // served because each earlier request was acknowledged).
    let (admin_conn, admin) = broker.connect_channel().await;
    assert_eq!(queue_counts(&admin, &rpc_queue).await, (0, 1));

    let callback_queues = [client.callback_queue.clone(), other.callback_queue.clone()];
    hang_up(&client.conn).await;
    hang_up(&other.conn).await;
    for q in &callback_queues {
        wait_queue_gone(&admin_conn, q).await;
    }
    hang_up(&server_conn).await;
    server.abort();
    let _ = server.await;
    delete_queue(&admin, &rpc_queue).await;
    hang_up(&admin_conn).await;
}
