"""AMQP 0-9-1 semantics as RabbitMQ implements them, exercised through pika 1.x.

Every test uses uuid-based names, so tests are independent of each other and
of whatever else lives on the broker.
"""

import datetime
import decimal
import os
import time
import uuid

import pika
import pika.exceptions as pex
import pytest

# AMQP reply codes
NO_ROUTE = 312
ACCESS_REFUSED = 403
NOT_FOUND = 404
RESOURCE_LOCKED = 405
PRECONDITION_FAILED = 406
NOT_ALLOWED = 530


def name(kind="q"):
    return "pytest.%s.%s" % (kind, uuid.uuid4().hex)


def assert_channel_closed(excinfo, code, text):
    exc = excinfo.value
    assert exc.reply_code == code, exc
    assert exc.reply_text.startswith(text), exc


def drain_until(conn, predicate, timeout=10.0):
    """Process I/O on a BlockingConnection until predicate() is true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        remaining = deadline - time.monotonic()
        assert remaining > 0, "condition not reached within %.0fs" % timeout
        conn.process_data_events(time_limit=min(0.1, remaining))


def get_one(ch, q, timeout=10.0, auto_ack=False):
    """basic_get, retrying until a message is there (deliveries may be asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        method, props, body = ch.basic_get(q, auto_ack=auto_ack)
        if method is not None:
            return method, props, body
        assert time.monotonic() < deadline, "no message in %r within %.0fs" % (q, timeout)
        ch.connection.sleep(0.02)


def message_count(ch, q):
    return ch.queue_declare(q, passive=True).method.message_count


# ---------------------------------------------------------------------------
# Errors: channel-level
# ---------------------------------------------------------------------------

def test_passive_declare_missing_queue_404(conn):
    ch = conn.channel()
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        ch.queue_declare(name(), passive=True)
    assert_channel_closed(ei, NOT_FOUND, "NOT_FOUND")
    assert ch.is_closed
    # the connection survives a channel error
    assert conn.is_open
    ch2 = conn.channel()
    ch2.queue_declare("", exclusive=True)


def test_passive_declare_missing_exchange_404(conn):
    ch = conn.channel()
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        ch.exchange_declare(name("x"), passive=True)
    assert_channel_closed(ei, NOT_FOUND, "NOT_FOUND")


def test_redeclare_queue_with_different_durable_406(conn, cleanup):
    q = cleanup.queue(name())
    ch = conn.channel()
    ch.queue_declare(q, durable=False)
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        ch.queue_declare(q, durable=True)
    assert_channel_closed(ei, PRECONDITION_FAILED, "PRECONDITION_FAILED")
    # the same declaration again is fine
    ch2 = conn.channel()
    ok = ch2.queue_declare(q, durable=False)
    assert ok.method.queue == q


def test_redeclare_exchange_with_different_type_406(conn, cleanup):
    x = cleanup.exchange(name("x"))
    ch = conn.channel()
    ch.exchange_declare(x, exchange_type="direct")
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        ch.exchange_declare(x, exchange_type="fanout")
    assert_channel_closed(ei, PRECONDITION_FAILED, "PRECONDITION_FAILED")


def test_exclusive_queue_from_other_connection_405(broker, conn):
    q = name()
    conn.channel().queue_declare(q, exclusive=True)
    other = broker.connect()
    try:
        with pytest.raises(pex.ChannelClosedByBroker) as ei:
            other.channel().queue_declare(q, passive=True)
        assert_channel_closed(ei, RESOURCE_LOCKED, "RESOURCE_LOCKED")
        with pytest.raises(pex.ChannelClosedByBroker) as ei:
            other.channel().basic_consume(q, lambda *a: None)
        assert_channel_closed(ei, RESOURCE_LOCKED, "RESOURCE_LOCKED")
        with pytest.raises(pex.ChannelClosedByBroker) as ei:
            other.channel().basic_get(q)
        assert_channel_closed(ei, RESOURCE_LOCKED, "RESOURCE_LOCKED")
    finally:
        other.close()


def test_exclusive_queue_deleted_when_owner_closes(broker):
    q = name()
    owner = broker.connect()
    owner.channel().queue_declare(q, exclusive=True)
    owner.close()
    c = broker.connect()
    try:
        with pytest.raises(pex.ChannelClosedByBroker) as ei:
            c.channel().queue_declare(q, passive=True)
        assert_channel_closed(ei, NOT_FOUND, "NOT_FOUND")
    finally:
        c.close()


def test_declare_default_exchange_403(conn):
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        conn.channel().exchange_declare("", exchange_type="direct")
    assert_channel_closed(ei, ACCESS_REFUSED, "ACCESS_REFUSED")


def test_delete_default_exchange_403(conn):
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        conn.channel().exchange_delete("")
    assert_channel_closed(ei, ACCESS_REFUSED, "ACCESS_REFUSED")


def test_bind_to_default_exchange_403(conn, cleanup):
    q = cleanup.queue(name())
    ch = conn.channel()
    ch.queue_declare(q)
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        ch.queue_bind(q, "", routing_key="anything")
    assert_channel_closed(ei, ACCESS_REFUSED, "ACCESS_REFUSED")


def test_declare_new_amq_prefixed_exchange_403(conn):
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        conn.channel().exchange_declare("amq.%s" % uuid.uuid4().hex, exchange_type="direct")
    assert_channel_closed(ei, ACCESS_REFUSED, "ACCESS_REFUSED")


def test_delete_amq_exchange_403(conn):
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        conn.channel().exchange_delete("amq.direct")
    assert_channel_closed(ei, ACCESS_REFUSED, "ACCESS_REFUSED")
    # still there
    conn.channel().exchange_declare("amq.direct", passive=True)


def test_predeclared_exchanges_exist(conn):
    ch = conn.channel()
    for x, t in [("amq.direct", "direct"), ("amq.fanout", "fanout"),
                 ("amq.topic", "topic"), ("amq.headers", "headers"),
                 ("amq.match", "headers")]:
        ch.exchange_declare(x, passive=True)
        # redeclaring an existing amq.* exchange with the same type/durability is allowed
        ch.exchange_declare(x, exchange_type=t, durable=True)


def test_publish_to_missing_exchange_closes_channel_404(conn):
    ch = conn.channel()
    ch.basic_publish(name("x"), "rk", b"lost")
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        # basic.publish has no reply: the error surfaces on the next round trip
        ch.exchange_declare("amq.direct", passive=True)
    assert_channel_closed(ei, NOT_FOUND, "NOT_FOUND")
    assert conn.is_open


def test_publish_to_missing_exchange_with_confirms_404(conn):
    ch = conn.channel()
    ch.confirm_delivery()
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        ch.basic_publish(name("x"), "rk", b"lost")
    assert_channel_closed(ei, NOT_FOUND, "NOT_FOUND")


def test_consume_from_missing_queue_404(conn):
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        conn.channel().basic_consume(name(), lambda *a: None)
    assert_channel_closed(ei, NOT_FOUND, "NOT_FOUND")


def test_bind_missing_queue_or_exchange_404(conn, cleanup):
    q = cleanup.queue(name())
    ch = conn.channel()
    ch.queue_declare(q)
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        ch.queue_bind(q, name("x"), routing_key="k")
    assert_channel_closed(ei, NOT_FOUND, "NOT_FOUND")
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        conn.channel().queue_bind(name(), "amq.direct", routing_key="k")
    assert_channel_closed(ei, NOT_FOUND, "NOT_FOUND")


def test_ack_unknown_delivery_tag_406(conn):
    ch = conn.channel()
    ch.basic_ack(delivery_tag=12345)
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        ch.exchange_declare("amq.direct", passive=True)
    assert_channel_closed(ei, PRECONDITION_FAILED, "PRECONDITION_FAILED")


# ---------------------------------------------------------------------------
# Queue operations
# ---------------------------------------------------------------------------

def test_server_named_queue(conn):
    ch = conn.channel()
    ok = ch.queue_declare("", exclusive=True)
    q = ok.method.queue
    assert q.startswith("amq.gen-"), q
    assert ok.method.message_count == 0
    assert ok.method.consumer_count == 0
    q2 = ch.queue_declare("", exclusive=True).method.queue
    assert q2.startswith("amq.gen-") and q2 != q
    # usable: publish via the default exchange and get it back
    ch.basic_publish("", q, b"hi")
    _, _, body = get_one(ch, q, auto_ack=True)
    assert body == b"hi"


def test_declare_ok_counts(conn, cleanup):
    q = cleanup.queue(name())
    ch = conn.channel()
    ch.queue_declare(q)
    ch.confirm_delivery()
    for i in range(3):
        ch.basic_publish("", q, b"m%d" % i)
    ok = ch.queue_declare(q, passive=True)
    assert ok.method.queue == q
    assert ok.method.message_count == 3
    assert ok.method.consumer_count == 0


def test_basic_get_and_get_empty(conn, cleanup):
    q = cleanup.queue(name())
    ch = conn.channel()
    ch.queue_declare(q)
    assert ch.basic_get(q) == (None, None, None)
    ch.confirm_delivery()
    ch.basic_publish("", q, b"one")
    ch.basic_publish("", q, b"two")
    method, props, body = ch.basic_get(q, auto_ack=True)
    assert body == b"one"
    assert method.redelivered is False
    assert method.exchange == ""
    assert method.routing_key == q
    assert method.message_count == 1   # messages left after this one
    method, props, body = ch.basic_get(q, auto_ack=False)
    assert body == b"two"
    assert method.message_count == 0
    ch.basic_ack(method.delivery_tag)
    assert ch.basic_get(q) == (None, None, None)


def test_queue_purge_returns_count(conn, cleanup):
    q = cleanup.queue(name())
    ch = conn.channel()
    ch.queue_declare(q)
    ch.confirm_delivery()
    for i in range(7):
        ch.basic_publish("", q, b"x")
    ok = ch.queue_purge(q)
    assert ok.method.message_count == 7
    assert message_count(ch, q) == 0
    assert ch.queue_purge(q).method.message_count == 0


def test_queue_delete_returns_count(conn):
    q = name()
    ch = conn.channel()
    ch.queue_declare(q)
    ch.confirm_delivery()
    for i in range(4):
        ch.basic_publish("", q, b"x")
    ok = ch.queue_delete(q)
    assert ok.method.message_count == 4
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        ch.queue_declare(q, passive=True)
    assert_channel_closed(ei, NOT_FOUND, "NOT_FOUND")


def test_queue_delete_if_empty_406(conn, cleanup):
    q = cleanup.queue(name())
    ch = conn.channel()
    ch.queue_declare(q)
    ch.confirm_delivery()
    ch.basic_publish("", q, b"x")
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        ch.queue_delete(q, if_empty=True)
    assert_channel_closed(ei, PRECONDITION_FAILED, "PRECONDITION_FAILED")
    ch2 = conn.channel()
    assert message_count(ch2, q) == 1   # not deleted


def test_queue_delete_if_unused_406(conn, cleanup):
    q = cleanup.queue(name())
    ch = conn.channel()
    ch.queue_declare(q)
    ch.basic_consume(q, lambda *a: None)
    ch2 = conn.channel()
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        ch2.queue_delete(q, if_unused=True)
    assert_channel_closed(ei, PRECONDITION_FAILED, "PRECONDITION_FAILED")
    ch3 = conn.channel()
    assert ch3.queue_declare(q, passive=True).method.consumer_count == 1


def test_queue_delete_if_empty_if_unused_succeed_when_ok(conn):
    q = name()
    ch = conn.channel()
    ch.queue_declare(q)
    ok = ch.queue_delete(q, if_unused=True, if_empty=True)
    assert ok.method.message_count == 0


def test_auto_delete_queue_goes_when_last_consumer_cancels(conn):
    q = name()
    ch = conn.channel()
    ch.queue_declare(q, auto_delete=True)
    tag = ch.basic_consume(q, lambda *a: None)
    ch.basic_cancel(tag)
    ch2 = conn.channel()
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        ch2.queue_declare(q, passive=True)
    assert_channel_closed(ei, NOT_FOUND, "NOT_FOUND")


# ---------------------------------------------------------------------------
# Acks, nacks, requeue
# ---------------------------------------------------------------------------

def test_basic_qos_prefetch_fair_dispatch(broker, conn, cleanup):
    q = cleanup.queue(name())
    pub = conn.channel()
    pub.queue_declare(q)

    busy_conn = broker.connect()
    free_conn = broker.connect()
    try:
        busy_got, free_got = [], []
        busy = busy_conn.channel()
        busy.basic_qos(prefetch_count=1)
        busy.basic_consume(q, lambda ch, m, p, b: busy_got.append(b))  # never acks

        free = free_conn.channel()
        free.basic_qos(prefetch_count=1)

        def on_free(ch, m, p, b):
            free_got.append(b)
            ch.basic_ack(m.delivery_tag)
        free.basic_consume(q, on_free)

        pub.confirm_delivery()
        for i in range(6):
            pub.basic_publish("", q, b"m%d" % i)

        deadline = time.monotonic() + 15
        while len(busy_got) + len(free_got) < 6:
            assert time.monotonic() < deadline, (busy_got, free_got)
            busy_conn.process_data_events(time_limit=0.05)
            free_conn.process_data_events(time_limit=0.05)
        assert len(busy_got) == 1, (busy_got, free_got)
        assert len(free_got) == 5, (busy_got, free_got)
        assert sorted(busy_got + free_got) == [b"m%d" % i for i in range(6)]
    finally:
        busy_conn.close()
        free_conn.close()


def test_basic_qos_prefetch_limits_unacked(conn, cleanup):
    q = cleanup.queue(name())
    ch = conn.channel()
    ch.queue_declare(q)
    ch.confirm_delivery()
    for i in range(5):
        ch.basic_publish("", q, b"m%d" % i)

    cch = conn.channel()
    cch.basic_qos(prefetch_count=2)
    got = []
    cch.basic_consume(q, lambda c, m, p, b: got.append((m.delivery_tag, b)))
    # ready count drops to 3 once two deliveries are outstanding, and stays there
    drain_until(conn, lambda: len(got) == 2 and message_count(ch, q) == 3)
    assert [b for _, b in got] == [b"m0", b"m1"]
    cch.basic_ack(got[0][0])
    drain_until(conn, lambda: len(got) == 3)
    assert got[2][1] == b"m2"
    cch.basic_ack(got[2][0], multiple=True)
    drain_until(conn, lambda: len(got) == 5)
    assert [b for _, b in got] == [b"m%d" % i for i in range(5)]


def test_nack_requeue_redelivered(conn, cleanup):
    q = cleanup.queue(name())
    ch = conn.channel()
    ch.queue_declare(q)
    ch.basic_publish("", q, b"again")
    m, _, body = get_one(ch, q)
    assert body == b"again" and m.redelivered is False
    ch.basic_nack(m.delivery_tag, requeue=True)
    m2, _, body2 = get_one(ch, q)
    assert body2 == b"again"
    assert m2.redelivered is True
    ch.basic_ack(m2.delivery_tag)
    assert ch.basic_get(q) == (None, None, None)


def test_reject_requeue_redelivered(conn, cleanup):
    q = cleanup.queue(name())
    ch = conn.channel()
    ch.queue_declare(q)
    ch.basic_publish("", q, b"again")
    m, _, _ = get_one(ch, q)
    ch.basic_reject(m.delivery_tag, requeue=True)
    m2, _, body2 = get_one(ch, q)
    assert body2 == b"again"
    assert m2.redelivered is True
    ch.basic_ack(m2.delivery_tag)


def test_nack_reject_without_requeue_discards(conn, cleanup):
    q = cleanup.queue(name())
    ch = conn.channel()
    ch.queue_declare(q)
    ch.confirm_delivery()
    ch.basic_publish("", q, b"a")
    ch.basic_publish("", q, b"b")
    m, _, _ = ch.basic_get(q)
    ch.basic_nack(m.delivery_tag, requeue=False)
    m, _, _ = ch.basic_get(q)
    ch.basic_reject(m.delivery_tag, requeue=False)
    assert message_count(ch, q) == 0
    assert ch.basic_get(q) == (None, None, None)


def test_nack_multiple_requeues_all(conn, cleanup):
    q = cleanup.queue(name())
    ch = conn.channel()
    ch.queue_declare(q)
    ch.confirm_delivery()
    for i in range(3):
        ch.basic_publish("", q, b"m%d" % i)
    tags = [ch.basic_get(q)[0].delivery_tag for _ in range(3)]
    assert tags == sorted(tags)
    ch.basic_nack(tags[-1], multiple=True, requeue=True)
    got = []
    for _ in range(3):
        m, _, b = get_one(ch, q, auto_ack=True)
        assert m.redelivered is True
        got.append(b)
    assert sorted(got) == [b"m0", b"m1", b"m2"]


def test_channel_close_requeues_unacked(conn, cleanup):
    q = cleanup.queue(name())
    ch = conn.channel()
    ch.queue_declare(q)
    ch.confirm_delivery()
    ch.basic_publish("", q, b"keep me")
    c1 = conn.channel()
    m, _, body = c1.basic_get(q)
    assert body == b"keep me"
    assert message_count(ch, q) == 0
    c1.close()
    m2, _, body2 = get_one(ch, q)
    assert body2 == b"keep me"
    assert m2.redelivered is True


def test_connection_close_requeues_unacked_consumer_deliveries(broker, conn, cleanup):
    q = cleanup.queue(name())
    ch = conn.channel()
    ch.queue_declare(q)
    ch.confirm_delivery()
    for i in range(3):
        ch.basic_publish("", q, b"m%d" % i)
    other = broker.connect()
    got = []
    och = other.channel()
    och.basic_consume(q, lambda c, m, p, b: got.append(b))
    drain_until(other, lambda: len(got) == 3)
    other.close()
    bodies = []
    for _ in range(3):
        m, _, b = get_one(ch, q, auto_ack=True)
        assert m.redelivered is True
        bodies.append(b)
    assert sorted(bodies) == [b"m0", b"m1", b"m2"]


def test_consume_with_auto_ack_and_cancel(conn, cleanup):
    q = cleanup.queue(name())
    ch = conn.channel()
    ch.queue_declare(q)
    ch.confirm_delivery()
    for i in range(3):
        ch.basic_publish("", q, b"m%d" % i)
    cch = conn.channel()
    got = []
    tag = cch.basic_consume(q, lambda c, m, p, b: got.append((m.consumer_tag, b)), auto_ack=True)
    drain_until(conn, lambda: len(got) == 3)
    # per-queue FIFO for a single consumer
    assert got == [(tag, b"m0"), (tag, b"m1"), (tag, b"m2")]
    cch.basic_cancel(tag)
    ch.basic_publish("", q, b"after cancel")
    assert message_count(ch, q) == 1


def test_blocking_consume_generator(conn, cleanup):
    q = cleanup.queue(name())
    ch = conn.channel()
    ch.queue_declare(q)
    for i in range(3):
        ch.basic_publish("", q, b"g%d" % i)
    got = []
    for m, p, b in ch.consume(q, inactivity_timeout=10):
        assert m is not None, "timed out in consume()"
        got.append(b)
        ch.basic_ack(m.delivery_tag)
        if len(got) == 3:
            break
    ch.cancel()
    assert got == [b"g0", b"g1", b"g2"]


# ---------------------------------------------------------------------------
# Publisher confirms and mandatory
# ---------------------------------------------------------------------------

def test_confirm_delivery(conn, cleanup):
    q = cleanup.queue(name())
    ch = conn.channel()
    ch.queue_declare(q)
    ch.confirm_delivery()
    for i in range(50):
        ch.basic_publish("", q, b"c%d" % i)   # raises if nacked
    assert message_count(ch, q) == 50


def test_confirm_unroutable_non_mandatory_is_acked(conn):
    ch = conn.channel()
    ch.confirm_delivery()
    # no queue bound: silently dropped, but still confirmed
    ch.basic_publish("amq.direct", "nobody-%s" % uuid.uuid4().hex, b"drop")


def test_mandatory_unroutable_with_confirms_raises(conn):
    ch = conn.channel()
    ch.confirm_delivery()
    with pytest.raises(pex.UnroutableError) as ei:
        ch.basic_publish("amq.direct", "nobody-%s" % uuid.uuid4().hex, b"bounce",
                         mandatory=True)
    returned = ei.value.messages
    assert len(returned) == 1
    assert returned[0].method.reply_code == NO_ROUTE
    assert returned[0].method.reply_text == "NO_ROUTE"
    assert returned[0].method.exchange == "amq.direct"
    assert returned[0].body == b"bounce"
    # channel stays usable
    ch.basic_publish("amq.direct", "nobody", b"x")


def test_mandatory_unroutable_basic_return(conn):
    ch = conn.channel()
    returns = []
    ch.add_on_return_callback(lambda c, m, p, b: returns.append((m, p, b)))
    rk = "nobody-%s" % uuid.uuid4().hex
    ch.basic_publish("amq.direct", rk, b"bounce", mandatory=True,
                     properties=pika.BasicProperties(message_id="mid-1"))
    drain_until(conn, lambda: returns)
    m, p, b = returns[0]
    assert m.reply_code == NO_ROUTE
    assert m.reply_text == "NO_ROUTE"
    assert m.exchange == "amq.direct"
    assert m.routing_key == rk
    assert p.message_id == "mid-1"
    assert b == b"bounce"


def test_mandatory_routable_is_not_returned(conn, cleanup):
    q = cleanup.queue(name())
    ch = conn.channel()
    ch.queue_declare(q)
    ch.confirm_delivery()
    ch.basic_publish("", q, b"ok", mandatory=True)   # no UnroutableError
    assert message_count(ch, q) == 1


# ---------------------------------------------------------------------------
# Exchange types and bindings
# ---------------------------------------------------------------------------

def _declare_bound_queue(ch, x, cleanup, routing_key="", arguments=None):
    q = cleanup.queue(name())
    ch.queue_declare(q)
    ch.queue_bind(q, x, routing_key=routing_key, arguments=arguments)
    return q


def test_direct_exchange_routing(conn, cleanup):
    x = cleanup.exchange(name("x"))
    ch = conn.channel()
    ch.exchange_declare(x, exchange_type="direct")
    qa = _declare_bound_queue(ch, x, cleanup, "a")
    qb = _declare_bound_queue(ch, x, cleanup, "b")
    ch.queue_bind(qb, x, routing_key="a")  # qb bound with two keys
    ch.confirm_delivery()
    ch.basic_publish(x, "a", b"to-a")
    ch.basic_publish(x, "b", b"to-b")
    ch.basic_publish(x, "c", b"to-nobody")
    assert message_count(ch, qa) == 1
    assert message_count(ch, qb) == 2
    ch.queue_unbind(qb, x, routing_key="a")
    ch.basic_publish(x, "a", b"to-a-again")
    assert message_count(ch, qa) == 2
    assert message_count(ch, qb) == 2


def test_fanout_exchange(conn, cleanup):
    x = cleanup.exchange(name("x"))
    ch = conn.channel()
    ch.exchange_declare(x, exchange_type="fanout")
    qs = [_declare_bound_queue(ch, x, cleanup, "ignored-%d" % i) for i in range(3)]
    ch.confirm_delivery()
    ch.basic_publish(x, "whatever", b"all")
    for q in qs:
        assert message_count(ch, q) == 1


def test_topic_exchange(conn, cleanup):
    x = cleanup.exchange(name("x"))
    ch = conn.channel()
    ch.exchange_declare(x, exchange_type="topic")
    patterns = {"*.orange.*": None, "*.*.rabbit": None, "lazy.#": None,
                "#": None, "a.#.z": None}
    for p in patterns:
        patterns[p] = _declare_bound_queue(ch, x, cleanup, p)
    ch.confirm_delivery()
    keys = ["quick.orange.rabbit", "lazy.orange.elephant", "quick.orange.fox",
            "lazy.brown.fox", "lazy.pink.rabbit", "quick.brown.fox",
            "orange", "quick.orange.male.rabbit", "lazy.orange.male.rabbit",
            "lazy", "a.z", "a.b.c.z", "", "a..z"]
    for k in keys:
        ch.basic_publish(x, k, k.encode())

    expected = {
        "*.orange.*": ["quick.orange.rabbit", "lazy.orange.elephant", "quick.orange.fox"],
        "*.*.rabbit": ["quick.orange.rabbit", "lazy.pink.rabbit"],
        "lazy.#": ["lazy.orange.elephant", "lazy.brown.fox", "lazy.pink.rabbit",
                   "lazy.orange.male.rabbit", "lazy"],
        "#": keys,
        "a.#.z": ["a.z", "a.b.c.z", "a..z"],
    }
    for p, q in patterns.items():
        got = []
        while True:
            m, _, b = ch.basic_get(q, auto_ack=True)
            if m is None:
                break
            got.append(b.decode())
        assert got == expected[p], p


def test_headers_exchange_any_all(conn, cleanup):
    x = cleanup.exchange(name("x"))
    ch = conn.channel()
    ch.exchange_declare(x, exchange_type="headers")
    q_all = _declare_bound_queue(ch, x, cleanup, "",
                                 {"x-match": "all", "format": "pdf", "type": "report"})
    q_any = _declare_bound_queue(ch, x, cleanup, "",
                                 {"x-match": "any", "format": "pdf", "type": "log"})
    q_default = _declare_bound_queue(ch, x, cleanup, "",   # x-match defaults to all
                                     {"format": "zip"})
    ch.confirm_delivery()

    def pub(body, headers):
        ch.basic_publish(x, "ignored", body, properties=pika.BasicProperties(headers=headers))

    pub(b"pdf-report", {"format": "pdf", "type": "report"})
    pub(b"pdf-report-extra", {"format": "pdf", "type": "report", "x": 1})
    pub(b"pdf-only", {"format": "pdf"})
    pub(b"log-only", {"type": "log"})
    pub(b"zip", {"format": "zip"})
    pub(b"nothing", {"other": "value"})
    pub(b"no-headers", None)

    def drain(q):
        out = []
        while True:
            m, _, b = ch.basic_get(q, auto_ack=True)
            if m is None:
                return out
            out.append(b)

    assert drain(q_all) == [b"pdf-report", b"pdf-report-extra"]
    assert drain(q_any) == [b"pdf-report", b"pdf-report-extra", b"pdf-only", b"log-only"]
    assert drain(q_default) == [b"zip"]


def test_exchange_to_exchange_binding(conn, cleanup):
    src = cleanup.exchange(name("x"))
    dst = cleanup.exchange(name("x"))
    ch = conn.channel()
    ch.exchange_declare(src, exchange_type="topic")
    ch.exchange_declare(dst, exchange_type="fanout")
    ch.exchange_bind(destination=dst, source=src, routing_key="logs.#")
    q = _declare_bound_queue(ch, dst, cleanup)
    q_direct = _declare_bound_queue(ch, src, cleanup, "logs.error")
    ch.confirm_delivery()
    ch.basic_publish(src, "logs.error", b"e")
    ch.basic_publish(src, "logs.info.x", b"i")
    ch.basic_publish(src, "metrics.cpu", b"m")
    got = []
    while True:
        m, _, b = ch.basic_get(q, auto_ack=True)
        if m is None:
            break
        got.append(b)
    assert got == [b"e", b"i"]
    assert message_count(ch, q_direct) == 1
    ch.exchange_unbind(destination=dst, source=src, routing_key="logs.#")
    ch.basic_publish(src, "logs.error", b"e2")
    assert message_count(ch, q) == 0
    assert message_count(ch, q_direct) == 2


def test_exchange_to_exchange_mandatory_unroutable(conn, cleanup):
    src = cleanup.exchange(name("x"))
    dst = cleanup.exchange(name("x"))
    ch = conn.channel()
    ch.exchange_declare(src, exchange_type="direct")
    ch.exchange_declare(dst, exchange_type="direct")
    ch.exchange_bind(destination=dst, source=src, routing_key="k")
    ch.confirm_delivery()
    # routed to dst, but dst has no queue: still unroutable
    with pytest.raises(pex.UnroutableError):
        ch.basic_publish(src, "k", b"x", mandatory=True)


def test_exchange_delete_removes_bindings(conn, cleanup):
    x = name("x")
    ch = conn.channel()
    ch.exchange_declare(x, exchange_type="direct")
    q = _declare_bound_queue(ch, x, cleanup, "k")
    ch.exchange_delete(x)
    ch.exchange_declare(x, exchange_type="direct")
    cleanup.exchange(x)
    ch.confirm_delivery()
    ch.basic_publish(x, "k", b"x")
    assert message_count(ch, q) == 0


def test_exchange_delete_if_unused_406(conn, cleanup):
    x = cleanup.exchange(name("x"))
    ch = conn.channel()
    ch.exchange_declare(x, exchange_type="direct")
    _declare_bound_queue(ch, x, cleanup, "k")
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        ch.exchange_delete(x, if_unused=True)
    assert_channel_closed(ei, PRECONDITION_FAILED, "PRECONDITION_FAILED")


# ---------------------------------------------------------------------------
# Message content
# ---------------------------------------------------------------------------

def test_message_properties_round_trip(conn, cleanup):
    q = cleanup.queue(name())
    ch = conn.channel()
    ch.queue_declare(q)
    headers = {
        "str": "hello ✓",
        "int": 42,
        "negative": -7,
        "big": 2 ** 40,
        "bool_t": True,
        "bool_f": False,
        "decimal": decimal.Decimal("3.14"),
        "timestamp": datetime.datetime(2024, 1, 2, 3, 4, 5),
        "nested": {"a": 1, "b": "two", "c": {"deep": True}},
        "list": [1, "two", False, {"k": "v"}],
        "void": None,
        "bytes": b"\x00\x01\xffraw",
    }
    props = pika.BasicProperties(
        content_type="application/json",
        content_encoding="utf-8",
        headers=headers,
        delivery_mode=pika.DeliveryMode.Persistent,
        priority=5,
        correlation_id="corr-%s" % uuid.uuid4().hex,
        reply_to="reply.queue",
        expiration="60000",
        message_id="msg-%s" % uuid.uuid4().hex,
        timestamp=1700000000,
        type="my.type",
        user_id="guest",   # must match the authenticated user
        app_id="pytest-app",
    )
    ch.basic_publish("", q, b'{"k": 1}', properties=props)
    m, p, body = get_one(ch, q, auto_ack=True)
    assert body == b'{"k": 1}'
    for attr in ("content_type", "content_encoding", "delivery_mode", "priority",
                 "correlation_id", "reply_to", "expiration", "message_id",
                 "timestamp", "type", "user_id", "app_id"):
        assert getattr(p, attr) == getattr(props, attr), attr
    assert p.headers == headers
    assert isinstance(p.headers["bytes"], (bytes, bytearray))


def test_message_without_properties(conn, cleanup):
    q = cleanup.queue(name())
    ch = conn.channel()
    ch.queue_declare(q)
    ch.basic_publish("", q, b"bare")
    m, p, body = get_one(ch, q, auto_ack=True)
    assert body == b"bare"
    for attr in ("content_type", "headers", "delivery_mode", "priority",
                 "correlation_id", "reply_to", "message_id", "timestamp", "app_id"):
        assert getattr(p, attr) is None, attr


def test_wrong_user_id_rejected_406(conn, cleanup):
    q = cleanup.queue(name())
    ch = conn.channel()
    ch.queue_declare(q)
    ch.basic_publish("", q, b"x", properties=pika.BasicProperties(user_id="not-guest"))
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        ch.queue_declare(q, passive=True)
    assert_channel_closed(ei, PRECONDITION_FAILED, "PRECONDITION_FAILED")


@pytest.mark.parametrize("size", [0, 1, 131072 - 8, 131072, 1024 * 1024, 1024 * 1024 + 7])
def test_body_sizes_round_trip(conn, cleanup, size):
    """1 MB spans many frames (frame_max 131072): content must be reassembled exactly."""
    q = cleanup.queue(name())
    ch = conn.channel()
    ch.queue_declare(q)
    body = os.urandom(size)
    ch.confirm_delivery()
    ch.basic_publish("", q, body)
    # via basic.get
    m, _, got = get_one(ch, q, auto_ack=True)
    assert len(got) == size and got == body
    # via basic.consume
    ch.basic_publish("", q, body)
    received = []
    ch.basic_consume(q, lambda c, m, p, b: received.append(b), auto_ack=True)
    drain_until(conn, lambda: received)
    assert received[0] == body


def test_many_messages_in_order(conn, cleanup):
    q = cleanup.queue(name())
    ch = conn.channel()
    ch.queue_declare(q)
    n = 2000
    for i in range(n):
        ch.basic_publish("", q, str(i).encode())
    got = []
    ch.basic_consume(q, lambda c, m, p, b: got.append(int(b)), auto_ack=True)
    drain_until(conn, lambda: len(got) == n, timeout=30)
    assert got == list(range(n))


# ---------------------------------------------------------------------------
# Connection-level: auth, vhost, URL parameters
# ---------------------------------------------------------------------------

def test_url_parameters_connect(broker):
    c = pika.BlockingConnection(broker.url_params())
    try:
        assert c.is_open
        ch = c.channel()
        ch.queue_declare("", exclusive=True)
    finally:
        c.close()


def test_server_properties_and_tune(conn):
    impl = conn._impl
    caps = impl.server_capabilities
    for cap in ("publisher_confirms", "exchange_exchange_bindings", "basic.nack",
                "consumer_cancel_notify", "authentication_failure_close"):
        assert caps.get(cap) is True, cap
    assert impl.params.frame_max >= 4096
    assert impl.params.channel_max >= 1


def test_bad_password_fails(broker):
    params = broker.params(credentials=pika.PlainCredentials(broker.username, "definitely-wrong"))
    with pytest.raises(pex.ProbableAuthenticationError) as ei:
        pika.BlockingConnection(params)
    # RabbitMQ (and pika's authentication_failure_close capability) sends
    # connection.close 403 ACCESS_REFUSED rather than just dropping the socket
    text = str(ei.value)
    assert "(%d)" % ACCESS_REFUSED in text, text
    assert "'ACCESS_REFUSED" in text, text


def test_unknown_user_fails(broker):
    params = broker.params(credentials=pika.PlainCredentials("nobody-%s" % uuid.uuid4().hex, "x"))
    with pytest.raises(pex.ProbableAuthenticationError):
        pika.BlockingConnection(params)


def test_nonexistent_vhost_530(broker):
    params = broker.params(virtual_host="no-such-vhost-%s" % uuid.uuid4().hex)
    # pika reports a close during connection.open as ProbableAccessDeniedError,
    # carrying the broker's connection.close: "ConnectionClosedByBroker: (530) 'NOT_ALLOWED - ..."
    with pytest.raises(pex.ProbableAccessDeniedError) as ei:
        pika.BlockingConnection(params)
    text = str(ei.value)
    assert "(%d)" % NOT_ALLOWED in text, text
    assert "'NOT_ALLOWED" in text, text


def test_many_channels_one_connection(conn, cleanup):
    q = cleanup.queue(name())
    chans = [conn.channel() for _ in range(20)]
    chans[0].queue_declare(q)
    for i, ch in enumerate(chans):
        ch.basic_publish("", q, b"c%d" % i)
    ch = conn.channel()
    drain_until(conn, lambda: message_count(ch, q) == 20)
    for c in chans:
        c.close()


def test_connection_survives_channel_error_on_other_channel(conn, cleanup):
    q = cleanup.queue(name())
    good = conn.channel()
    good.queue_declare(q)
    bad = conn.channel()
    with pytest.raises(pex.ChannelClosedByBroker):
        bad.queue_declare(name(), passive=True)
    good.confirm_delivery()
    good.basic_publish("", q, b"still works")
    assert message_count(good, q) == 1


@pytest.mark.needs_warren_process
def test_broker_process_running(broker):
    assert broker.proc is not None
    assert broker.alive(), broker.describe_exit()
