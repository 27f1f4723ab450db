//! Direct reply-to (`amq.rabbitmq.reply-to`) with lapin: RPC without a
//! callback queue, replies from servers whose connections may sit on other
//! shards, and the refusals RabbitMQ 3.10 answers.

#[macro_use]
mod common;

use common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::BasicProperties;

const RT: &str = "amq.rabbitmq.reply-to";

/// The next request, once it is in the queue (the publish on another
/// connection may still be on its way).
async fn get_request(ch: &lapin::Channel, queue: &str) -> lapin::message::BasicGetMessage {
    for _ in 0..500 {
        if let Some(m) = get_noack(ch, queue).await {
            return m;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("no request arrived in {queue}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_over_direct_reply_to() {
    let broker = TestBroker::start().await;
    let requests = unique("rt_requests");
    let (admin_conn, admin) = broker.connect_channel().await;
    declare_queue(&admin, &requests).await;

    let (client_conn, client) = broker.connect_channel().await;
    let mut replies = consume(&client, RT, "", true).await;
    // Several servers: with more than one shard some connections land on
    // another shard than the client's, and their replies cross shards.
    let mut servers = Vec::new();
    for _ in 0..6 {
        servers.push(broker.connect_channel().await);
    }
    for (i, (_, sch)) in servers.iter().enumerate() {
        let props = BasicProperties::default()
            .with_reply_to(RT.into())
            .with_correlation_id(format!("call-{i}").as_str().into());
        publish_props(&client, "", &requests, format!("{i}").as_bytes(), props).await;
        let req = get_request(sch, &requests).await;
        let reply_to = req
            .delivery
            .properties
            .reply_to()
            .clone()
            .expect("reply_to")
            .to_string();
        assert!(reply_to.starts_with("amq.rabbitmq.reply-to."), "{reply_to}");
        let corr = req
            .delivery
            .properties
            .correlation_id()
            .clone()
            .expect("correlation id");
        assert_eq!(corr.as_str(), format!("call-{i}"));
        let props = BasicProperties::default().with_correlation_id(corr);
        publish_props(sch, "", &reply_to, format!("answer-{i}").as_bytes(), props).await;
        let reply = next_delivery(&mut replies).await;
        assert_eq!(body_str(&reply), format!("answer-{i}"));
        assert_eq!(reply.routing_key.as_str(), reply_to);
        assert_eq!(reply.exchange.as_str(), "");
        assert_eq!(
            reply
                .properties
                .correlation_id()
                .as_ref()
                .map(|c| c.as_str().to_owned()),
            Some(format!("call-{i}"))
        );
    }
    // Nothing went through a queue.
    assert_eq!(queue_counts(&admin, &requests).await, (0, 0));

    // A reply consumer cannot ack; a publish naming reply-to needs one.
    let ch = channel(&client_conn).await;
    let res = ch
        .basic_consume(
            RT.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: false,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    assert_code(res, 406);
    let ch = channel(&client_conn).await;
    let mut watcher = close_watcher(&ch).await;
    publish_props(
        &ch,
        "",
        &requests,
        b"x",
        BasicProperties::default().with_reply_to(RT.into()),
    )
    .await;
    expect_closed_with(&mut watcher, 406).await;

    delete_queue(&admin, &requests).await;
    for (c, _) in servers {
        let _ = c.close(200, "bye".into()).await;
    }
    let _ = client_conn.close(200, "bye".into()).await;
    let _ = admin_conn.close(200, "bye".into()).await;
}
