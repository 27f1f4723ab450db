"""Direct reply-to (``amq.rabbitmq.reply-to``), as RabbitMQ 3.10 does it.

Run against RabbitMQ with WARREN_TEST_URL to check that the expectations are
RabbitMQ's; against Warren with WARREN_SHARDS=1 and 3 (replies from
connections on other shards).
"""
import time
import uuid

import pika
import pika.exceptions as pex
import pytest

RT = "amq.rabbitmq.reply-to"


def name(prefix):
    return "rt_%s_%s" % (prefix, uuid.uuid4().hex[:12])


def wait_for(conn, pred, timeout=5.0):
    deadline = time.time() + timeout
    while not pred() and time.time() < deadline:
        conn.process_data_events(time_limit=0.05)
    return pred()


class Client:
    """A requester: a reply consumer on one channel."""

    def __init__(self, broker, consume=True):
        self.conn = broker.connect()
        self.ch = self.conn.channel()
        self.replies = []
        self.tag = None
        if consume:
            self.tag = self.ch.basic_consume(RT, self._on_reply, auto_ack=True)

    def _on_reply(self, ch, method, props, body):
        self.replies.append((method, props, body))

    def request(self, queue, body, **props):
        self.ch.basic_publish(
            "", queue, body,
            pika.BasicProperties(reply_to=RT, **props))

    def close(self):
        if self.conn.is_open:
            self.conn.close()


@pytest.fixture
def server_queue(broker):
    c = broker.connect()
    ch = c.channel()
    q = name("srv")
    ch.queue_declare(q, auto_delete=False)
    yield q
    try:
        ch.queue_delete(q)
        c.close()
    except Exception:
        pass


def get_request(broker_conn, queue, timeout=5.0):
    ch = broker_conn.channel()
    deadline = time.time() + timeout
    while time.time() < deadline:
        m, props, body = ch.basic_get(queue, auto_ack=True)
        if m is not None:
            ch.close()
            return props, body
        time.sleep(0.02)
    ch.close()
    raise AssertionError("no request arrived in %s" % queue)


def test_round_trip_rewrites_reply_to_and_delivers_the_reply(broker, server_queue):
    client = Client(broker)
    srv = broker.connect()
    try:
        client.request(server_queue, b"ping", correlation_id="c1",
                       content_type="text/plain", headers={"h": 1})
        props, body = get_request(srv, server_queue)
        assert body == b"ping"
        assert props.reply_to.startswith(RT + ".")
        assert len(props.reply_to) > len(RT) + 10
        assert props.correlation_id == "c1"
        assert props.content_type == "text/plain"
        assert props.headers == {"h": 1}
        sch = srv.channel()
        sch.basic_publish("", props.reply_to, b"pong",
                          pika.BasicProperties(correlation_id="c1"))
        assert wait_for(client.conn, lambda: len(client.replies) == 1)
        method, rprops, rbody = client.replies[0]
        assert rbody == b"pong"
        assert rprops.correlation_id == "c1"
        assert method.consumer_tag == client.tag
        assert method.exchange == ""
        assert method.routing_key == props.reply_to
        assert method.redelivered is False
        # Replies keep coming on the same key. RabbitMQ 3.10 gives a reply
        # the channel's next delivery tag without using it up.
        sch.basic_publish("", props.reply_to, b"pong2")
        assert wait_for(client.conn, lambda: len(client.replies) == 2)
        assert client.replies[1][2] == b"pong2"
        assert client.replies[1][0].delivery_tag == method.delivery_tag == 1
    finally:
        client.close()
        srv.close()


def test_same_key_for_every_publish_of_the_channel(broker, server_queue):
    client = Client(broker)
    srv = broker.connect()
    try:
        client.request(server_queue, b"1")
        client.request(server_queue, b"2")
        p1, _ = get_request(srv, server_queue)
        p2, _ = get_request(srv, server_queue)
        assert p1.reply_to == p2.reply_to
        other = Client(broker)
        try:
            other.request(server_queue, b"3")
            p3, _ = get_request(srv, server_queue)
            assert p3.reply_to != p1.reply_to
        finally:
            other.close()
    finally:
        client.close()
        srv.close()


def test_consume_with_acks_is_refused(broker):
    c = broker.connect()
    try:
        ch = c.channel()
        with pytest.raises(pex.ChannelClosedByBroker) as ei:
            ch.basic_consume(RT, lambda *a: None, auto_ack=False)
        assert ei.value.reply_code == 406
        assert ei.value.reply_text == "PRECONDITION_FAILED - reply consumer cannot acknowledge"
    finally:
        c.close()


def test_second_reply_consumer_on_a_channel_is_refused(broker):
    c = broker.connect()
    try:
        ch = c.channel()
        ch.basic_consume(RT, lambda *a: None, auto_ack=True)
        with pytest.raises(pex.ChannelClosedByBroker) as ei:
            ch.basic_consume(RT, lambda *a: None, auto_ack=True)
        assert ei.value.reply_code == 406
        assert ei.value.reply_text == "PRECONDITION_FAILED - reply consumer already set"
        # Another channel may have its own.
        ch2 = c.channel()
        ch2.basic_consume(RT, lambda *a: None, auto_ack=True)
    finally:
        c.close()


def test_reply_consumer_with_a_chosen_tag(broker):
    c = broker.connect()
    try:
        ch = c.channel()
        tag = ch.basic_consume(RT, lambda *a: None, auto_ack=True, consumer_tag="rt_tag")
        assert tag == "rt_tag"
    finally:
        c.close()


def test_publish_without_reply_consumer_is_refused(broker, server_queue):
    c = broker.connect()
    try:
        ch = c.channel()
        ch.basic_publish("", server_queue, b"x", pika.BasicProperties(reply_to=RT))
        with pytest.raises(pex.ChannelClosedByBroker) as ei:
            ch.queue_declare(server_queue, passive=True)
        assert ei.value.reply_code == 406
        assert ei.value.reply_text == "PRECONDITION_FAILED - fast reply consumer does not exist"
        # Nothing reached the queue.
        ch2 = c.channel()
        assert ch2.queue_declare(server_queue, passive=True).method.message_count == 0
    finally:
        c.close()


def test_other_reply_to_values_are_left_alone(broker, server_queue):
    c = broker.connect()
    srv = broker.connect()
    try:
        ch = c.channel()
        for rt in ("amq.rabbitmq.reply-to.x", "amq.rabbitmq.reply-tox", "my-queue"):
            ch.basic_publish("", server_queue, b"x", pika.BasicProperties(reply_to=rt))
            props, _ = get_request(srv, server_queue)
            assert props.reply_to == rt
    finally:
        c.close()
        srv.close()


def test_declare_of_the_pseudo_queue(broker):
    c = broker.connect()
    try:
        ch = c.channel()
        ok = ch.queue_declare(RT, passive=True).method
        assert ok.queue == RT
        assert (ok.message_count, ok.consumer_count) == (0, 1)
        # Even when not passive.
        ok = ch.queue_declare(RT).method
        assert ok.queue == RT
        assert (ok.message_count, ok.consumer_count) == (0, 1)
    finally:
        c.close()


def test_declare_of_a_reply_address(broker, server_queue):
    client = Client(broker)
    srv = broker.connect()
    try:
        client.request(server_queue, b"x")
        props, _ = get_request(srv, server_queue)
        ch = srv.channel()
        ok = ch.queue_declare(props.reply_to, passive=True).method
        assert ok.queue == props.reply_to
        assert (ok.message_count, ok.consumer_count) == (0, 1)
        client.ch.basic_cancel(client.tag)
        with pytest.raises(pex.ChannelClosedByBroker) as ei:
            ch.queue_declare(props.reply_to, passive=True)
        assert ei.value.reply_code == 404
        assert ei.value.reply_text == "NOT_FOUND - no queue '%s' in vhost '/'" % props.reply_to
    finally:
        client.close()
        srv.close()


# RabbitMQ 3.10 fails with 541 (a crash decoding the pid) on two dot-separated
# parts that are not its own encoding; Warren answers 404 there too.
@pytest.mark.parametrize("suffix", ["", "garbage", "a.b.c"])
def test_declare_of_a_forged_reply_address(broker, suffix):
    c = broker.connect()
    try:
        ch = c.channel()
        q = RT + "." + suffix
        with pytest.raises(pex.ChannelClosedByBroker) as ei:
            ch.queue_declare(q, passive=True)
        assert ei.value.reply_code == 404
        assert ei.value.reply_text == "NOT_FOUND - no queue '%s' in vhost '/'" % q
    finally:
        c.close()


def test_basic_get_of_the_pseudo_queue(broker):
    c = broker.connect()
    try:
        ch = c.channel()
        with pytest.raises(pex.ChannelClosedByBroker) as ei:
            ch.basic_get(RT)
        assert ei.value.reply_code == 404
        assert ei.value.reply_text == "NOT_FOUND - no queue '%s' in vhost '/'" % RT
    finally:
        c.close()


def test_cancel_stops_replies_and_publishes(broker, server_queue):
    client = Client(broker)
    srv = broker.connect()
    try:
        client.request(server_queue, b"x")
        props, _ = get_request(srv, server_queue)
        client.ch.basic_cancel(client.tag)
        sch = srv.channel()
        sch.basic_publish("", props.reply_to, b"late")
        assert not wait_for(client.conn, lambda: client.replies, timeout=0.5)
        # A new reply consumer gets a new key: the old one stays dead.
        client.ch.basic_consume(RT, client._on_reply, auto_ack=True)
        client.request(server_queue, b"y")
        p2, _ = get_request(srv, server_queue)
        assert p2.reply_to != props.reply_to
        sch.basic_publish("", props.reply_to, b"old")
        sch.basic_publish("", p2.reply_to, b"new")
        assert wait_for(client.conn, lambda: client.replies)
        assert not wait_for(client.conn, lambda: len(client.replies) > 1, timeout=0.3)
        assert [r[2] for r in client.replies] == [b"new"]
    finally:
        client.close()
        srv.close()


def test_cancel_then_publish_is_refused(broker, server_queue):
    client = Client(broker)
    try:
        client.ch.basic_cancel(client.tag)
        client.request(server_queue, b"x")
        with pytest.raises(pex.ChannelClosedByBroker) as ei:
            client.ch.queue_declare(server_queue, passive=True)
        assert ei.value.reply_code == 406
        assert ei.value.reply_text == "PRECONDITION_FAILED - fast reply consumer does not exist"
    finally:
        client.close()


def test_reply_to_a_closed_channel_is_dropped(broker, server_queue):
    client = Client(broker)
    srv = broker.connect()
    try:
        client.request(server_queue, b"x")
        props, _ = get_request(srv, server_queue)
        client.close()
        sch = srv.channel()
        sch.confirm_delivery()
        # Confirmed, and nothing is returned or closed.
        sch.basic_publish("", props.reply_to, b"gone")
        assert sch.is_open
    finally:
        srv.close()


def test_mandatory_reply_is_returned_even_when_delivered(broker, server_queue):
    """RabbitMQ routes a reply to no queue: a mandatory reply comes back as
    NO_ROUTE, whether or not the requester got it."""
    client = Client(broker)
    srv = broker.connect()
    try:
        client.request(server_queue, b"x")
        props, _ = get_request(srv, server_queue)
        sch = srv.channel()
        returned = []
        sch.add_on_return_callback(lambda ch, m, p, b: returned.append((m, b)))
        sch.basic_publish("", props.reply_to, b"pong", mandatory=True)
        assert wait_for(client.conn, lambda: client.replies)
        assert wait_for(srv, lambda: returned)
        m, b = returned[0]
        assert (m.reply_code, m.reply_text, m.exchange, m.routing_key) == (
            312, "NO_ROUTE", "", props.reply_to)
        assert b == b"pong"
    finally:
        client.close()
        srv.close()


def test_confirmed_reply(broker, server_queue):
    client = Client(broker)
    srv = broker.connect()
    try:
        client.request(server_queue, b"x")
        props, _ = get_request(srv, server_queue)
        sch = srv.channel()
        sch.confirm_delivery()
        sch.basic_publish("", props.reply_to, b"pong")  # raises if nacked
        assert wait_for(client.conn, lambda: client.replies)
    finally:
        client.close()
        srv.close()


def test_requester_in_confirm_mode(broker, server_queue):
    client = Client(broker)
    srv = broker.connect()
    try:
        client.ch.confirm_delivery()
        client.request(server_queue, b"x")  # confirmed
        props, _ = get_request(srv, server_queue)
        srv.channel().basic_publish("", props.reply_to, b"pong")
        assert wait_for(client.conn, lambda: client.replies)
    finally:
        client.close()
        srv.close()


def test_replies_from_many_connections(broker, server_queue):
    """With several shards, some repliers land on another shard than the
    requester: every reply arrives, in order per replier."""
    client = Client(broker)
    repliers = [broker.connect() for _ in range(8)]
    try:
        client.request(server_queue, b"x")
        props, _ = get_request(repliers[0], server_queue)
        for i, r in enumerate(repliers):
            ch = r.channel()
            for j in range(3):
                ch.basic_publish("", props.reply_to, b"%d.%d" % (i, j))
        assert wait_for(client.conn, lambda: len(client.replies) == 24)
        bodies = [r[2] for r in client.replies]
        for i in range(8):
            mine = [b for b in bodies if b.startswith(b"%d." % i)]
            assert mine == [b"%d.%d" % (i, j) for j in range(3)]
        tags = [r[0].delivery_tag for r in client.replies]
        assert tags == [1] * 24
    finally:
        client.close()
        for r in repliers:
            r.close()


def test_reply_only_through_the_default_exchange(broker, server_queue):
    client = Client(broker)
    srv = broker.connect()
    try:
        client.request(server_queue, b"x")
        props, _ = get_request(srv, server_queue)
        sch = srv.channel()
        returned = []
        sch.add_on_return_callback(lambda ch, m, p, b: returned.append(m))
        sch.basic_publish("amq.direct", props.reply_to, b"via direct", mandatory=True)
        assert wait_for(srv, lambda: returned)
        assert not wait_for(client.conn, lambda: client.replies, timeout=0.3)
    finally:
        client.close()
        srv.close()


def test_channels_have_separate_reply_addresses(broker, server_queue):
    c = broker.connect()
    srv = broker.connect()
    try:
        got = {1: [], 2: []}
        chs = {}
        for k in (1, 2):
            ch = c.channel()
            ch.basic_consume(RT, lambda ch_, m, p, b, k=k: got[k].append(b), auto_ack=True)
            chs[k] = ch
        for k in (1, 2):
            chs[k].basic_publish("", server_queue, b"%d" % k, pika.BasicProperties(reply_to=RT))
        addrs = {}
        for _ in (1, 2):
            props, body = get_request(srv, server_queue)
            addrs[int(body)] = props.reply_to
        assert addrs[1] != addrs[2]
        sch = srv.channel()
        sch.basic_publish("", addrs[2], b"to2")
        sch.basic_publish("", addrs[1], b"to1")
        assert wait_for(c, lambda: got[1] and got[2])
        assert got == {1: [b"to1"], 2: [b"to2"]}
    finally:
        c.close()
        srv.close()
