"""RabbitMQ's queue arguments, through pika: message TTL and per-message
expiration, queue expiry, length limits with each overflow mode,
dead-lettering with x-death, priorities, quorum queues. Written against
RabbitMQ 3.10 first (WARREN_TEST_URL), then run on Warren at 1 and 3 shards.
"""

import datetime
import time
import uuid

import pika
import pika.exceptions as pex
import pytest

PRECONDITION_FAILED = 406


def name(kind="q"):
    return "qf.%s.%s" % (kind, uuid.uuid4().hex[:12])


def count(ch, q):
    return ch.queue_declare(q, passive=True).method.message_count


def wait_count(conn, q, want, timeout=5.0):
    ch = conn.channel()
    deadline = time.monotonic() + timeout
    n = count(ch, q)
    while n != want and time.monotonic() < deadline:
        time.sleep(0.02)
        n = count(ch, q)
    ch.close()
    return n


def get_body(ch, q, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m, props, body = ch.basic_get(q, auto_ack=True)
        if m is not None:
            return props, body
        time.sleep(0.02)
    return None, None


def closed_with(conn, declare):
    ch = conn.channel()
    with pytest.raises(pex.ChannelClosedByBroker) as e:
        declare(ch)
    return e.value.reply_code, e.value.reply_text


@pytest.fixture
def ch(conn):
    # Confirms: a publish has reached its queue when basic_publish returns
    # (RabbitMQ answers a passive declare before earlier publishes land).
    c = conn.channel()
    c.confirm_delivery()
    made = []
    c.made = made
    yield c
    c2 = conn.channel() if not c.is_open else c
    for kind, n in made:
        try:
            if kind == "q":
                c2.queue_delete(n)
            else:
                c2.exchange_delete(n)
        except pex.AMQPError:
            c2 = conn.channel()


def queue(ch, args=None, **kw):
    q = name()
    ch.queue_declare(q, arguments=args, **kw)
    ch.made.append(("q", q))
    return q


def exchange(ch, kind="fanout"):
    x = name("x")
    ch.exchange_declare(x, kind)
    ch.made.append(("x", x))
    return x


# --- argument validation, with RabbitMQ's texts ---------------------------

@pytest.mark.parametrize("args,text", [
    ({"x-message-ttl": -1}, "{value_negative,-1}"),
    ({"x-message-ttl": "10"}, '"expected integer, got longstr"'),
    ({"x-expires": 0}, "{value_zero,0}"),
    ({"x-max-length": -1}, "{value_negative,-1}"),
    ({"x-max-priority": 256}, "{max_value_exceeded,256}"),
    ({"x-overflow": "drop-tail"}, "invalid_overflow"),
    ({"x-dead-letter-routing-key": "k"}, "routing_key_but_no_dlx_defined"),
])
def test_invalid_arguments_are_refused_as_rabbitmq(conn, args, text):
    q = name()
    key = next(iter(args))
    code, reply = closed_with(conn, lambda c: c.queue_declare(q, arguments=args))
    assert code == PRECONDITION_FAILED
    assert reply == "PRECONDITION_FAILED - invalid arg '%s' for queue '%s' in vhost '/': %s" % (key, q, text)


def test_redeclare_with_other_arguments_is_inequivalent(conn, ch):
    q = queue(ch, {"x-message-ttl": 1000})
    ch.queue_declare(q, arguments={"x-message-ttl": 1000})
    code, reply = closed_with(conn, lambda c: c.queue_declare(q, arguments={"x-message-ttl": 2000}))
    assert code == PRECONDITION_FAILED
    assert reply == ("PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '%s' in vhost '/': "
                     "received '2000' but current is '1000'" % q)
    code, reply = closed_with(conn, lambda c: c.queue_declare(q))
    assert reply == ("PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '%s' in vhost '/': "
                     "received none but current is the value '1000' of type 'signedint'" % q)


@pytest.mark.parametrize("expiration,why", [
    ("-1", "{value_negative,-1}"),
    ("abc", "no_integer"),
    ("10x", '{leftover_string,"x"}'),
])
def test_invalid_expiration_closes_the_channel(conn, ch, expiration, why):
    q = queue(ch)
    pub = conn.channel()
    pub.basic_publish("", q, b"m", pika.BasicProperties(expiration=expiration))
    with pytest.raises(pex.ChannelClosedByBroker) as e:
        pub.queue_declare(q, passive=True)
    assert e.value.reply_code == PRECONDITION_FAILED
    assert e.value.reply_text == "PRECONDITION_FAILED - invalid expiration '%s': %s" % (expiration, why)


# --- message TTL -------------------------------------------------------------

def test_queue_ttl_expires_messages_without_a_consumer(conn, ch):
    q = queue(ch, {"x-message-ttl": 200})
    for i in range(5):
        ch.basic_publish("", q, b"m%d" % i)
    assert count(ch, q) == 5
    assert wait_count(conn, q, 0, timeout=3) == 0


def test_per_message_expiration_and_the_lower_ttl_wins(conn, ch):
    q = queue(ch, {"x-message-ttl": 60000})
    ch.basic_publish("", q, b"short", pika.BasicProperties(expiration="150"))
    assert count(ch, q) == 1
    assert wait_count(conn, q, 0, timeout=3) == 0
    # The queue's TTL wins when it is lower.
    q2 = queue(ch, {"x-message-ttl": 150})
    ch.basic_publish("", q2, b"long", pika.BasicProperties(expiration="60000"))
    assert wait_count(conn, q2, 0, timeout=3) == 0


def test_expiration_zero_is_delivered_only_to_a_waiting_consumer(conn, ch):
    q = queue(ch)
    ch.basic_publish("", q, b"nobody", pika.BasicProperties(expiration="0"))
    assert wait_count(conn, q, 0, timeout=3) == 0
    got = []
    ch.basic_consume(q, lambda c, m, p, b: got.append(b), auto_ack=True)
    pub = conn.channel()
    pub.basic_publish("", q, b"someone", pika.BasicProperties(expiration="0"))
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    assert got == [b"someone"]


def test_expired_messages_are_never_delivered(conn, ch):
    q = queue(ch, {"x-message-ttl": 100})
    ch.basic_publish("", q, b"old")
    time.sleep(0.4)
    ch.basic_publish("", q, b"new", pika.BasicProperties(expiration="60000"))
    props, body = get_body(ch, q)
    assert body == b"new"


# --- queue expiry ------------------------------------------------------------

def test_unused_queue_expires(conn, ch):
    # A passive declare counts as use (it renews the lease, as in
    # RabbitMQ), so look only once, well after the expiry.
    q = queue(ch, {"x-expires": 300})
    ch.basic_publish("", q, b"m")
    time.sleep(1.2)
    c = conn.channel()
    with pytest.raises(pex.ChannelClosedByBroker) as e:
        c.queue_declare(q, passive=True)
    assert e.value.reply_code == 404


def test_a_consumer_keeps_an_expiring_queue(conn, ch):
    q = queue(ch, {"x-expires": 300})
    tag = ch.basic_consume(q, lambda *a: None)
    time.sleep(0.8)
    ch.queue_declare(q, passive=True)
    ch.basic_cancel(tag)


# --- length limits -----------------------------------------------------------

def test_max_length_drops_the_head(conn, ch):
    q = queue(ch, {"x-max-length": 3})
    for i in range(5):
        ch.basic_publish("", q, b"%d" % i)
    assert count(ch, q) == 3
    bodies = [get_body(ch, q)[1] for _ in range(3)]
    assert bodies == [b"2", b"3", b"4"]


def test_max_length_bytes(conn, ch):
    q = queue(ch, {"x-max-length-bytes": 10})
    for b in [b"aaaa", b"bbbb", b"cccc"]:
        ch.basic_publish("", q, b)
    assert count(ch, q) == 2
    assert get_body(ch, q)[1] == b"bbbb"


def test_reject_publish_nacks_in_confirm_mode(conn, ch):
    q = queue(ch, {"x-max-length": 2, "x-overflow": "reject-publish"})
    pub = conn.channel()
    pub.confirm_delivery()
    pub.basic_publish("", q, b"1")
    pub.basic_publish("", q, b"2")
    with pytest.raises(pex.NackError):
        pub.basic_publish("", q, b"3")
    assert count(ch, q) == 2
    assert get_body(ch, q)[1] == b"1"


def test_reject_publish_dlx_dead_letters_the_refused(conn, ch):
    x = exchange(ch)
    dlq = queue(ch)
    ch.queue_bind(dlq, x)
    q = queue(ch, {"x-max-length": 1, "x-overflow": "reject-publish-dlx",
                   "x-dead-letter-exchange": x})
    ch.basic_publish("", q, b"kept")
    with pytest.raises(pex.NackError):
        ch.basic_publish("", q, b"refused")
    props, body = get_body(ch, dlq)
    assert body == b"refused"
    assert props.headers["x-death"][0]["reason"] == "maxlen"
    assert count(ch, q) == 1


# --- dead-lettering ----------------------------------------------------------

def test_rejected_message_is_dead_lettered_with_x_death(conn, ch):
    x = exchange(ch, "direct")
    dlq = queue(ch)
    ch.queue_bind(dlq, x, routing_key="dead")
    q = queue(ch, {"x-dead-letter-exchange": x, "x-dead-letter-routing-key": "dead"})
    ch.basic_publish("", q, b"bad", pika.BasicProperties(headers={"app": "1"}))
    m, _, _ = ch.basic_get(q)
    while m is None:
        m, _, _ = ch.basic_get(q)
    ch.basic_reject(m.delivery_tag, requeue=False)
    props, body = get_body(ch, dlq)
    assert body == b"bad"
    h = props.headers
    assert h["app"] == "1"
    assert h["x-first-death-reason"] == "rejected"
    assert h["x-first-death-queue"] == q
    assert h["x-first-death-exchange"] == ""
    d = h["x-death"][0]
    assert d["count"] == 1 and d["reason"] == "rejected" and d["queue"] == q
    assert d["exchange"] == "" and d["routing-keys"] == [q]
    assert isinstance(d["time"], datetime.datetime)


def test_nack_without_requeue_dead_letters_and_requeue_does_not(conn, ch):
    x = exchange(ch)
    dlq = queue(ch)
    ch.queue_bind(dlq, x)
    q = queue(ch, {"x-dead-letter-exchange": x})
    ch.basic_publish("", q, b"a")
    ch.basic_publish("", q, b"b")
    m1, _, _ = get_first(ch, q)
    ch.basic_nack(m1.delivery_tag, requeue=True)
    assert count(ch, dlq) == 0
    ms = [get_first(ch, q)[0] for _ in range(2)]
    ch.basic_nack(ms[-1].delivery_tag, multiple=True, requeue=False)
    assert wait_count(conn, dlq, 2) == 2


def get_first(ch, q, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m, p, b = ch.basic_get(q)
        if m is not None:
            return m, p, b
        time.sleep(0.02)
    raise AssertionError("no message in %s" % q)


def test_expired_message_is_dead_lettered_with_original_expiration(conn, ch):
    x = exchange(ch)
    dlq = queue(ch)
    ch.queue_bind(dlq, x)
    q = queue(ch, {"x-dead-letter-exchange": x})
    ch.basic_publish("", q, b"ttl", pika.BasicProperties(expiration="100"))
    props, body = get_body(ch, dlq)
    assert body == b"ttl"
    assert props.expiration is None
    d = props.headers["x-death"][0]
    assert d["reason"] == "expired" and d["original-expiration"] == "100"


def test_max_length_overflow_is_dead_lettered(conn, ch):
    x = exchange(ch)
    dlq = queue(ch)
    ch.queue_bind(dlq, x)
    q = queue(ch, {"x-dead-letter-exchange": x, "x-max-length": 1})
    ch.basic_publish("", q, b"first")
    ch.basic_publish("", q, b"second")
    props, body = get_body(ch, dlq)
    assert body == b"first"
    assert props.headers["x-death"][0]["reason"] == "maxlen"


def test_dead_letters_reach_queues_on_every_shard(conn, ch):
    x = exchange(ch)
    targets = [queue(ch) for _ in range(8)]
    for t in targets:
        ch.queue_bind(t, x)
    q = queue(ch, {"x-dead-letter-exchange": x, "x-message-ttl": 0})
    pub = conn.channel()
    pub.confirm_delivery()
    pub.basic_publish("", q, b"everywhere")
    for t in targets:
        assert wait_count(conn, t, 1) == 1


def test_a_ttl_cycle_is_dropped_but_a_retry_loop_with_rejects_is_not(conn, ch):
    # q1 -expired-> q2 -expired-> q1: dropped on the way back to q1.
    q1, q2 = name(), name()
    ch.queue_declare(q1, arguments={"x-message-ttl": 50, "x-dead-letter-exchange": "",
                                    "x-dead-letter-routing-key": q2})
    ch.made.append(("q", q1))
    ch.queue_declare(q2, arguments={"x-message-ttl": 50, "x-dead-letter-exchange": "",
                                    "x-dead-letter-routing-key": q1})
    ch.made.append(("q", q2))
    ch.basic_publish("", q1, b"loop")
    time.sleep(1.0)
    assert count(ch, q1) == 0 and count(ch, q2) == 0
    # A delayed-retry loop: rejected in `work`, back after a TTL in `wait`.
    work, wait = name(), name()
    ch.queue_declare(work, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": wait})
    ch.made.append(("q", work))
    ch.queue_declare(wait, arguments={"x-message-ttl": 50, "x-dead-letter-exchange": "",
                                      "x-dead-letter-routing-key": work})
    ch.made.append(("q", wait))
    ch.basic_publish("", work, b"retry")
    for round_ in range(1, 3):
        m, props, _ = get_first(ch, work)
        if round_ > 1:
            deaths = {(d["queue"], d["reason"]): d["count"] for d in props.headers["x-death"]}
            assert deaths[(work, "rejected")] == round_ - 1
            assert deaths[(wait, "expired")] == round_ - 1
            assert props.headers["x-death"][0]["queue"] == wait
        ch.basic_reject(m.delivery_tag, requeue=False)


# --- priorities --------------------------------------------------------------

def test_higher_priorities_first_order_kept_within_one(conn, ch):
    q = queue(ch, {"x-max-priority": 5})
    for body, prio in [(b"low1", 1), (b"high1", 5), (b"none", None), (b"low2", 1),
                       (b"above", 9), (b"high2", 5)]:
        ch.basic_publish("", q, body, pika.BasicProperties(priority=prio))
    got = [get_body(ch, q)[1] for _ in range(6)]
    assert got == [b"high1", b"above", b"high2", b"low1", b"low2", b"none"]


def test_priority_ignored_without_max_priority(conn, ch):
    q = queue(ch)
    ch.basic_publish("", q, b"a", pika.BasicProperties(priority=1))
    ch.basic_publish("", q, b"b", pika.BasicProperties(priority=9))
    assert [get_body(ch, q)[1] for _ in range(2)] == [b"a", b"b"]


def test_requeued_message_keeps_its_priority_and_place(conn, ch):
    q = queue(ch, {"x-max-priority": 2})
    ch.basic_publish("", q, b"p2", pika.BasicProperties(priority=2))
    ch.basic_publish("", q, b"p0", pika.BasicProperties(priority=0))
    m, _, body = get_first(ch, q)
    assert body == b"p2"
    ch.basic_nack(m.delivery_tag, requeue=True)
    m, _, body = get_first(ch, q)
    assert body == b"p2" and m.redelivered


# --- quorum queues -----------------------------------------------------------

@pytest.mark.parametrize("flags,prop", [
    ({"durable": False}, "non-durable"),
    ({"durable": True, "exclusive": True}, "exclusive-owner"),
    ({"durable": True, "auto_delete": True}, "auto-delete"),
])
def test_quorum_queue_refuses_what_rabbitmq_refuses(conn, flags, prop):
    q = name()
    code, reply = closed_with(conn, lambda c: c.queue_declare(
        q, arguments={"x-queue-type": "quorum"}, **flags))
    assert code == PRECONDITION_FAILED
    assert reply == "PRECONDITION_FAILED - invalid property '%s' for queue '%s' in vhost '/'" % (prop, q)


def test_quorum_queue_refuses_classic_only_arguments(conn):
    q = name()
    code, reply = closed_with(conn, lambda c: c.queue_declare(
        q, durable=True, arguments={"x-queue-type": "quorum", "x-max-priority": 5}))
    assert code == PRECONDITION_FAILED
    assert reply == ("PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue '%s' in vhost '/' "
                     "of queue type rabbit_quorum_queue" % q)


def test_quorum_delivery_count_and_limit(conn, ch):
    x = exchange(ch)
    dlq = queue(ch)
    ch.queue_bind(dlq, x)
    q = queue(ch, {"x-queue-type": "quorum", "x-delivery-limit": 2,
                   "x-dead-letter-exchange": x}, durable=True)
    ch.confirm_delivery()
    ch.basic_publish("", q, b"poison")
    counts = []
    for _ in range(3):
        m, props, _ = get_first(ch, q)
        counts.append((props.headers or {}).get("x-delivery-count"))
        ch.basic_nack(m.delivery_tag, requeue=True)
    assert counts == [0, 1, 2]
    props, body = get_body(ch, dlq)
    assert body == b"poison"
    assert props.headers["x-death"][0]["reason"] == "delivery_limit"
    assert count(ch, q) == 0


def test_lazy_mode_and_classic_type_are_accepted(conn, ch):
    q = queue(ch, {"x-queue-mode": "lazy", "x-queue-type": "classic"})
    ch.basic_publish("", q, b"m")
    assert get_body(ch, q)[1] == b"m"


# --- policies apply to queues ------------------------------------------------

@pytest.fixture
def policy(broker):
    from mgmt_util import Mgmt, q as esc
    api = Mgmt(broker.mgmt_url, broker.username, broker.password)
    made = []

    def put(name_, pattern, definition, priority=0, operator=False):
        kind = "operator-policies" if operator else "policies"
        status, _, body = api.put("/api/%s/%s/%s" % (kind, esc("/"), esc(name_)), {
            "pattern": pattern, "definition": definition, "priority": priority,
            "apply-to": "queues"})
        assert status in (201, 204), body
        made.append((kind, name_))
    yield put
    for kind, n in made:
        api.delete("/api/%s/%s/%s" % (kind, esc("/"), esc(n)))


def test_a_policy_limits_existing_and_new_queues(conn, ch, policy):
    q = queue(ch)
    for i in range(5):
        ch.basic_publish("", q, b"%d" % i)
    assert count(ch, q) == 5
    policy("qf-limit-" + q, "^%s$" % q, {"max-length": 2})
    assert wait_count(conn, q, 2) == 2
    assert get_body(ch, q)[1] == b"3"
    ch.basic_publish("", q, b"5")
    ch.basic_publish("", q, b"6")
    assert count(ch, q) == 2


def test_policy_ttl_and_dead_letter_exchange_and_arguments_win(conn, ch, policy):
    x = exchange(ch)
    dlq = queue(ch)
    ch.queue_bind(dlq, x)
    prefix = name("pq")
    policy("qf-dlx-" + prefix, "^" + prefix, {"message-ttl": 100, "dead-letter-exchange": x})
    q = prefix + ".a"
    ch.queue_declare(q)
    ch.made.append(("q", q))
    ch.basic_publish("", q, b"by policy")
    props, body = get_body(ch, dlq)
    assert body == b"by policy"
    assert props.headers["x-death"][0]["reason"] == "expired"
    # The queue's own (lower) TTL and its dead-letter exchange win.
    other = exchange(ch)
    dlq2 = queue(ch)
    ch.queue_bind(dlq2, other)
    q2 = prefix + ".b"
    ch.queue_declare(q2, arguments={"x-dead-letter-exchange": other, "x-message-ttl": 50})
    ch.made.append(("q", q2))
    ch.basic_publish("", q2, b"by argument")
    assert get_body(ch, dlq2)[1] == b"by argument"


def test_operator_policy_lowers_the_limit(conn, ch, policy):
    q = queue(ch, {"x-max-length": 10})
    policy("qf-op-" + q, "^%s$" % q, {"max-length": 3}, operator=True)
    deadline = time.monotonic() + 10
    while True:
        for i in range(5):
            ch.basic_publish("", q, b"%d" % i)
        n = count(ch, q)
        if n == 3 or time.monotonic() > deadline:
            break
        ch.queue_purge(q)
        time.sleep(0.2)
    assert n == 3
