"""Consumer priorities (`x-priority` on basic.consume) and single active
consumer (`x-single-active-consumer` on queue.declare), as RabbitMQ 3.10.8
classic queues behave. Every expectation was observed on RabbitMQ 3.10.8:

    WARREN_TEST_URL=amqp://guest:guest@127.0.0.1:5672/%2F pytest test_consumer_priority_sac.py

Deterministic by construction: consumers are prefetch-limited and never ack
unless the test says so, so who gets which message follows from the
broker's choice alone; deliveries are awaited with a bounded wait, never
slept for. The management API's consumer figures lag up to 5 s on
RabbitMQ (its statistics interval): those are polled with wait_for.
"""

import json
import time
import uuid

import pika
import pika.exceptions as pex
import pytest

from mgmt_util import Mgmt, q, wait_for

WAIT_S = 10.0
STATS_WAIT_S = 15.0


def nm(prefix):
    return "%s_%s" % (prefix, uuid.uuid4().hex[:12])


@pytest.fixture(scope="module")
def api(broker):
    return Mgmt(broker.mgmt_url, broker.username, broker.password)


class Consumers:
    """Consumers on channels of one connection, each recording what it got."""

    def __init__(self, conn):
        self.conn = conn
        self.got = {}        # tag -> [(body, redelivered, delivery_tag)]
        self.chans = {}      # tag -> channel

    def add(self, queue, tag, prefetch=1, priority=None, channel=None, no_ack=False):
        ch = channel or self.conn.channel()
        if channel is None:
            ch.basic_qos(prefetch_count=prefetch)
        self.got[tag] = []
        self.chans[tag] = ch
        args = {} if priority is None else {"x-priority": priority}

        def on_message(chx, method, props, body, tag=tag):
            self.got[tag].append((body.decode(), method.redelivered, method.delivery_tag))
        ch.basic_consume(queue, on_message, consumer_tag=tag, arguments=args,
                         auto_ack=no_ack)
        return ch

    def bodies(self, tag):
        return [b for b, _, _ in self.got[tag]]

    def total(self):
        return sum(len(v) for v in self.got.values())

    def wait_total(self, n, timeout=WAIT_S):
        deadline = time.monotonic() + timeout
        while self.total() < n:
            assert time.monotonic() < deadline, "only %d of %d deliveries: %r" % (
                self.total(), n, self.got)
            self.conn.process_data_events(time_limit=0.05)

    def settle_for(self, seconds):
        """Process what arrives for a moment (to show nothing more does)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.conn.process_data_events(time_limit=0.05)

    def ack_all(self, tag):
        for _, _, dtag in self.got[tag]:
            self.chans[tag].basic_ack(dtag)


def publish(ch, queue, *bodies):
    for b in bodies:
        ch.basic_publish("", queue, b.encode())


def close_reason(exc):
    args = exc.args
    return (args[0], args[1]) if len(args) >= 2 else None


# ---------------------------------------------------------------------------
# x-priority validation
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("value,type_name", [("high", "longstr"), (True, "bool")])
def test_x_priority_must_be_an_integer(broker, cleanup, value, type_name):
    name = cleanup.queue(nm("cp"))
    conn = broker.connect()
    try:
        ch = conn.channel()
        ch.queue_declare(name)
        with pytest.raises(pex.ChannelClosedByBroker) as ei:
            ch.basic_consume(name, lambda *a: None, arguments={"x-priority": value})
        assert close_reason(ei.value) == (
            406, "PRECONDITION_FAILED - invalid arg 'x-priority' for queue '%s' in vhost "
                 "'%s': \"expected integer, got %s\"" % (name, broker.vhost, type_name))
        # A channel error: the connection goes on.
        ch2 = conn.channel()
        assert ch2.queue_declare(name, passive=True).method.consumer_count == 0
    finally:
        conn.close()


@pytest.mark.parametrize("args,reason", [
    ({"x-cancel-on-ha-failover": "yes"},
     "invalid arg 'x-cancel-on-ha-failover' for queue '{q}' in vhost '{v}': "
     "{{unacceptable_type,longstr}}"),
    ({"x-stream-offset": "first"},
     "invalid arg 'x-stream-offset' for queue '{q}' in vhost '{v}' of queue type "
     "rabbit_classic_queue"),
])
def test_other_consume_arguments_checked(broker, cleanup, args, reason):
    name = cleanup.queue(nm("cp"))
    conn = broker.connect()
    try:
        ch = conn.channel()
        ch.queue_declare(name)
        with pytest.raises(pex.ChannelClosedByBroker) as ei:
            ch.basic_consume(name, lambda *a: None, arguments=args)
        assert close_reason(ei.value) == (
            406, "PRECONDITION_FAILED - " + reason.format(q=name, v=broker.vhost))
        ch = conn.channel()
        ch.basic_consume(name, lambda *a: None,
                         arguments={"x-cancel-on-ha-failover": True, "x-other": 1})
    finally:
        conn.close()


@pytest.mark.parametrize("value", [-3, 0, 7, 2 ** 40])
def test_x_priority_any_integer_is_accepted(broker, cleanup, value):
    name = cleanup.queue(nm("cp"))
    conn = broker.connect()
    try:
        ch = conn.channel()
        ch.queue_declare(name)
        ch.basic_consume(name, lambda *a: None, arguments={"x-priority": value})
        assert ch.queue_declare(name, passive=True).method.consumer_count == 1
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# Consumer priorities
# ---------------------------------------------------------------------------

def test_highest_priority_first_round_robin_among_equals_then_lower(broker, cleanup):
    name = cleanup.queue(nm("cp"))
    conn = broker.connect()
    try:
        pub = conn.channel()
        pub.queue_declare(name)
        cs = Consumers(conn)
        cs.add(name, "low", prefetch=100, priority=0)
        cs.add(name, "hi1", prefetch=2, priority=10)
        cs.add(name, "hi2", prefetch=2, priority=10)
        cs.add(name, "neg", prefetch=100, priority=-1)
        publish(pub, name, *["m%d" % i for i in range(10)])
        cs.wait_total(10)
        # Both priority-10 consumers in turn until their prefetch is full,
        # then the priority-0 one; the negative one gets nothing.
        assert cs.bodies("hi1") == ["m0", "m2"]
        assert cs.bodies("hi2") == ["m1", "m3"]
        assert cs.bodies("low") == ["m4", "m5", "m6", "m7", "m8", "m9"]
        assert cs.bodies("neg") == []
        # Acks give hi1 room again: new messages are its, not low's.
        cs.ack_all("hi1")
        publish(pub, name, "m10", "m11", "m12")
        cs.wait_total(13)
        assert cs.bodies("hi1") == ["m0", "m2", "m10", "m11"]
        assert cs.bodies("low")[6:] == ["m12"]
        assert cs.bodies("hi2") == ["m1", "m3"]
    finally:
        conn.close()


def test_negative_priority_gets_messages_when_the_default_ones_are_full(broker, cleanup):
    name = cleanup.queue(nm("cp"))
    conn = broker.connect()
    try:
        pub = conn.channel()
        pub.queue_declare(name)
        cs = Consumers(conn)
        cs.add(name, "neg", prefetch=10, priority=-5)
        cs.add(name, "default", prefetch=1)
        publish(pub, name, "a", "b", "c")
        cs.wait_total(3)
        assert cs.bodies("default") == ["a"]
        assert cs.bodies("neg") == ["b", "c"]
    finally:
        conn.close()


def test_priority_consumers_on_one_channel(broker, cleanup):
    # Prefetch is per consumer (basic.qos global=false): two consumers on
    # one channel with prefetch 1 each.
    name = cleanup.queue(nm("cp"))
    conn = broker.connect()
    try:
        pub = conn.channel()
        pub.queue_declare(name)
        ch = conn.channel()
        ch.basic_qos(prefetch_count=1)
        cs = Consumers(conn)
        cs.add(name, "lo", priority=1, channel=ch)
        cs.add(name, "hi", priority=2, channel=ch)
        publish(pub, name, "a", "b", "c")
        cs.wait_total(2)
        assert cs.bodies("hi") == ["a"]
        assert cs.bodies("lo") == ["b"]
        assert pub.queue_declare(name, passive=True).method.message_count == 1
    finally:
        conn.close()


def test_requeued_messages_go_to_the_highest_priority_consumer(broker, cleanup):
    name = cleanup.queue(nm("cp"))
    conn = broker.connect()
    other = broker.connect()
    try:
        pub = conn.channel()
        pub.queue_declare(name)
        och = other.channel()
        och.basic_qos(prefetch_count=10)
        held = []
        och.basic_consume(name, lambda c, m, p, b: held.append(b), consumer_tag="holder")
        publish(pub, name, "a", "b")
        deadline = time.monotonic() + WAIT_S
        while len(held) < 2:
            assert time.monotonic() < deadline
            other.process_data_events(time_limit=0.05)
        cs = Consumers(conn)
        cs.add(name, "low", prefetch=10, priority=1)
        cs.add(name, "high", prefetch=10, priority=3)
        other.close()  # its unacked messages come back, redelivered
        cs.wait_total(2)
        assert cs.got["high"] == [("a", True, 1), ("b", True, 2)]
        assert cs.got["low"] == []
    finally:
        if other.is_open:
            other.close()
        conn.close()


# ---------------------------------------------------------------------------
# Single active consumer
# ---------------------------------------------------------------------------

def declare_sac(ch, name, **kw):
    ch.queue_declare(name, arguments={"x-single-active-consumer": True}, **kw)


@pytest.mark.parametrize("value,type_name", [("true", "longstr"), (1, "signedint")])
def test_sac_argument_must_be_a_bool(broker, cleanup, value, type_name):
    name = cleanup.queue(nm("sac"))
    conn = broker.connect()
    try:
        ch = conn.channel()
        with pytest.raises(pex.ChannelClosedByBroker) as ei:
            ch.queue_declare(name, arguments={"x-single-active-consumer": value})
        assert close_reason(ei.value) == (
            406, "PRECONDITION_FAILED - invalid arg 'x-single-active-consumer' for queue "
                 "'%s' in vhost '%s': {unacceptable_type,%s}" % (name, broker.vhost, type_name))
    finally:
        conn.close()


def test_sac_false_is_a_plain_queue(broker, cleanup):
    name = cleanup.queue(nm("sac"))
    conn = broker.connect()
    try:
        pub = conn.channel()
        pub.queue_declare(name, arguments={"x-single-active-consumer": False})
        cs = Consumers(conn)
        cs.add(name, "a")
        cs.add(name, "b")
        publish(pub, name, "1", "2")
        cs.wait_total(2)
        assert cs.bodies("a") == ["1"] and cs.bodies("b") == ["2"]
    finally:
        conn.close()


def test_sac_only_the_first_consumer_gets_messages(broker, cleanup):
    name = cleanup.queue(nm("sac"))
    conn = broker.connect()
    try:
        pub = conn.channel()
        declare_sac(pub, name)
        cs = Consumers(conn)
        cs.add(name, "first", prefetch=100)
        # A later consumer does not take over, even with a higher priority.
        cs.add(name, "second", prefetch=100, priority=10)
        cs.add(name, "third", prefetch=100)
        publish(pub, name, *["m%d" % i for i in range(6)])
        cs.wait_total(6)
        assert cs.bodies("first") == ["m%d" % i for i in range(6)]
        cs.settle_for(0.2)
        assert cs.bodies("second") == [] and cs.bodies("third") == []
        assert pub.queue_declare(name, passive=True).method.consumer_count == 3
    finally:
        conn.close()


def test_sac_blocked_active_consumer_holds_the_others_back(broker, cleanup):
    name = cleanup.queue(nm("sac"))
    conn = broker.connect()
    try:
        pub = conn.channel()
        declare_sac(pub, name)
        cs = Consumers(conn)
        cs.add(name, "active", prefetch=1)
        cs.add(name, "waiting", prefetch=100)
        publish(pub, name, "a", "b", "c")
        cs.wait_total(1)
        cs.settle_for(0.2)
        assert cs.bodies("active") == ["a"] and cs.bodies("waiting") == []
        # The waiting consumer got nothing: both are still in the queue,
        # and basic.get works on a single-active-consumer queue.
        got = pub.basic_get(name, auto_ack=True)
        assert got[0] is not None and got[2] == b"b" and got[0].message_count == 1
        cs.ack_all("active")
        cs.wait_total(2)
        assert cs.bodies("active") == ["a", "c"]
    finally:
        conn.close()


def test_sac_hands_over_on_cancel_by_priority_then_age(broker, cleanup):
    name = cleanup.queue(nm("sac"))
    conn = broker.connect()
    try:
        pub = conn.channel()
        declare_sac(pub, name)
        cs = Consumers(conn)
        for tag, prio in [("A", 0), ("B", 0), ("C", 5), ("D", 5), ("E", -1)]:
            cs.add(name, tag, prefetch=10, priority=prio)
        order = []
        for i in range(5):
            publish(pub, name, "m%d" % i)
            cs.wait_total(i + 1)
            (tag,) = [t for t in cs.got if ("m%d" % i) in cs.bodies(t)]
            order.append(tag)
            cs.chans[tag].basic_cancel(tag)
        # The highest priority waiting consumer takes over, the oldest of
        # equals first; the cancelled one keeps its unacked message.
        assert order == ["A", "C", "D", "B", "E"]
        assert cs.total() == 5
        assert pub.queue_declare(name, passive=True).method.message_count == 0
    finally:
        conn.close()


def test_sac_cancelled_active_consumer_keeps_its_unacked_messages(broker, cleanup):
    name = cleanup.queue(nm("sac"))
    conn = broker.connect()
    try:
        pub = conn.channel()
        declare_sac(pub, name)
        cs = Consumers(conn)
        cs.add(name, "A", prefetch=5)
        cs.add(name, "B", prefetch=5)
        publish(pub, name, "a1", "a2")
        cs.wait_total(2)
        cs.chans["A"].basic_cancel("A")
        publish(pub, name, "b1")
        cs.wait_total(3)
        assert cs.bodies("B") == ["b1"]
        # A's channel closing now returns its messages: to B, redelivered.
        cs.chans["A"].close()
        cs.wait_total(5)
        assert cs.got["B"][1:] == [("a1", True, 2), ("a2", True, 3)]
    finally:
        conn.close()


@pytest.mark.parametrize("how", ["channel", "connection"])
def test_sac_hands_over_with_requeued_messages_when_the_active_one_goes(broker, cleanup, how):
    name = cleanup.queue(nm("sac"))
    conn = broker.connect()
    active_conn = broker.connect()
    try:
        pub = conn.channel()
        declare_sac(pub, name)
        first = Consumers(active_conn)
        first.add(name, "A", prefetch=2)
        cs = Consumers(conn)
        cs.add(name, "B", prefetch=10)
        cs.add(name, "C", prefetch=10, priority=1)
        publish(pub, name, "m1", "m2", "m3")
        first.wait_total(2)
        assert first.bodies("A") == ["m1", "m2"]
        cs.settle_for(0.2)
        assert cs.total() == 0
        if how == "channel":
            first.chans["A"].close()
        else:
            active_conn.close()
        # C (higher priority) becomes active and gets A's unacked messages
        # back, redelivered, in their place before m3.
        cs.wait_total(3)
        assert cs.got["C"] == [("m1", True, 1), ("m2", True, 2), ("m3", False, 3)]
        assert cs.got["B"] == []
        publish(pub, name, "m4")
        cs.wait_total(4)
        assert cs.bodies("C")[-1] == "m4"
    finally:
        if active_conn.is_open:
            active_conn.close()
        conn.close()


def test_sac_new_consumer_after_all_left_becomes_active(broker, cleanup):
    name = cleanup.queue(nm("sac"))
    conn = broker.connect()
    try:
        pub = conn.channel()
        declare_sac(pub, name)
        publish(pub, name, "early")
        cs = Consumers(conn)
        cs.add(name, "A")
        cs.wait_total(1)
        cs.chans["A"].close()  # "early" comes back
        cs.add(name, "B")
        cs.wait_total(2)
        assert cs.got["B"] == [("early", True, 1)]
    finally:
        conn.close()


def test_sac_refuses_exclusive_consumers(broker, cleanup):
    name = cleanup.queue(nm("sac"))
    conn = broker.connect()
    try:
        ch = conn.channel()
        declare_sac(ch, name)
        # Even on a queue without consumers.
        with pytest.raises(pex.ChannelClosedByBroker) as ei:
            ch.basic_consume(name, lambda *a: None, exclusive=True)
        assert close_reason(ei.value) == (
            403, "ACCESS_REFUSED - queue '%s' in vhost '%s' in exclusive use" % (
                name, broker.vhost))
        ch = conn.channel()
        ch.basic_consume(name, lambda *a: None, consumer_tag="plain")
        assert ch.queue_declare(name, passive=True).method.consumer_count == 1
    finally:
        conn.close()


def test_sac_no_ack_consumer(broker, cleanup):
    name = cleanup.queue(nm("sac"))
    conn = broker.connect()
    try:
        pub = conn.channel()
        declare_sac(pub, name)
        cs = Consumers(conn)
        cs.add(name, "A", no_ack=True)
        cs.add(name, "B", no_ack=True)
        publish(pub, name, "1", "2", "3")
        cs.wait_total(3)
        assert cs.bodies("A") == ["1", "2", "3"]
        cs.chans["A"].basic_cancel("A")
        publish(pub, name, "4")
        cs.wait_total(4)
        assert cs.bodies("B") == ["4"]
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# Listings: the management API and list_consumers
# ---------------------------------------------------------------------------

def consumers_of(api, vhost, queue):
    status, _, body = api.get("/api/consumers/" + q(vhost))
    assert status == 200
    return {c["consumer_tag"]: c for c in body if c["queue"]["name"] == queue}


def statuses(api, vhost, queue):
    return {t: (c["active"], c["activity_status"])
            for t, c in consumers_of(api, vhost, queue).items()}


def test_sac_listed_in_the_management_api(broker, cleanup, api):
    name = cleanup.queue(nm("sac"))
    plain = cleanup.queue(nm("sac"))
    conn = broker.connect()
    try:
        pub = conn.channel()
        declare_sac(pub, name)
        pub.queue_declare(plain)
        cs = Consumers(conn)
        cs.add(name, "A", prefetch=3)
        cs.add(name, "B", prefetch=3, priority=5)
        cs.add(plain, "P", prefetch=3)
        vh = broker.vhost
        want = {"A": (True, "single_active"), "B": (False, "waiting")}
        wait_for(lambda: statuses(api, vh, name) == want, timeout=STATS_WAIT_S,
                 what="consumer activity listed")
        b = consumers_of(api, vh, name)["B"]
        assert b["arguments"] == {"x-priority": 5}
        assert b["prefetch_count"] == 3 and b["ack_required"] is True
        assert b["exclusive"] is False
        assert statuses(api, vh, plain) == {"P": (True, "up")}

        status, _, qb = api.get("/api/queues/%s/%s" % (q(vh), q(name)))
        assert status == 200
        assert qb["arguments"] == {"x-single-active-consumer": True}
        assert qb["single_active_consumer_tag"] == "A"
        assert qb["exclusive_consumer_tag"] is None
        assert qb["consumers"] == 2
        details = {d["consumer_tag"]: (d["active"], d["activity_status"])
                   for d in qb["consumer_details"]}
        assert details == want
        listed = [x for x in api.get("/api/queues/" + q(vh))[2] if x["name"] == name]
        assert listed[0]["single_active_consumer_tag"] == "A"
        pq = api.get("/api/queues/%s/%s" % (q(vh), q(plain)))[2]
        assert pq["single_active_consumer_tag"] is None
        assert [(d["active"], d["activity_status"]) for d in pq["consumer_details"]] == [
            (True, "up")]

        # After a handover the listings follow.
        cs.chans["A"].basic_cancel("A")
        wait_for(lambda: statuses(api, vh, name) == {"B": (True, "single_active")},
                 timeout=STATS_WAIT_S, what="handover listed")
        wait_for(lambda: api.get("/api/queues/%s/%s" % (q(vh), q(name)))[2].get(
            "single_active_consumer_tag") == "B", timeout=STATS_WAIT_S,
            what="single_active_consumer_tag after handover")
    finally:
        conn.close()


def test_sac_list_consumers(broker, cleanup, ctl):
    name = cleanup.queue(nm("sac"))
    conn = broker.connect()
    try:
        pub = conn.channel()
        declare_sac(pub, name)
        cs = Consumers(conn)
        cs.add(name, "sac_a", prefetch=2)
        cs.add(name, "sac_b", prefetch=2, priority=3)
        vh = broker.vhost
        out = ctl("list_consumers", "-p", vh, "-q").stdout.splitlines()
        assert out[0] == ("queue_name\tchannel_pid\tconsumer_tag\tack_required\t"
                          "prefetch_count\tactive\targuments")
        mine = {r.split("\t")[2]: r.split("\t") for r in out[1:]
                if r.split("\t")[0] == name}
        assert {t: (r[5], r[6]) for t, r in mine.items()} == {
            "sac_a": ("true", "[]"), "sac_b": ("false", '[{"x-priority",3}]')}
        js = json.loads(ctl("list_consumers", "-p", vh, "--formatter", "json",
                            "queue_name", "consumer_tag", "active",
                            "activity_status").stdout)
        assert sorted((c["consumer_tag"], c["active"], c["activity_status"])
                      for c in js if c["queue_name"] == name) == [
            ("sac_a", True, "single_active"), ("sac_b", False, "waiting")]
        rows = ctl("list_consumers", "-p", vh, "-s", "queue_name", "consumer_tag",
                   "activity_status").stdout.splitlines()
        assert sorted(r for r in rows if r.startswith(name + "\t")) == [
            "%s\tsac_a\tsingle_active" % name, "%s\tsac_b\twaiting" % name]
    finally:
        conn.close()
