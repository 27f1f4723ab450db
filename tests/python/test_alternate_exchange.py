"""Alternate exchanges (the `alternate-exchange` exchange argument), as
RabbitMQ 3.10 routes them (rabbit_exchange:route1/process_alternate).

Run against RabbitMQ with WARREN_TEST_URL to check the expectations.
"""
import time
import uuid

import pika
import pika.exceptions as pex
import pytest


def name(prefix):
    return "ae_%s_%s" % (prefix, uuid.uuid4().hex[:12])


class Env:
    def __init__(self, broker):
        self.conn = broker.connect()
        self.ch = self.conn.channel()
        self.exchanges = []
        self.queues = []
        self.returned = []
        self.ch.add_on_return_callback(lambda ch, m, p, b: self.returned.append((m, b)))

    def exchange(self, kind="direct", ae=None, **kw):
        x = name("x")
        args = kw.pop("arguments", {})
        if ae is not None:
            args["alternate-exchange"] = ae
        self.ch.exchange_declare(x, kind, arguments=args, **kw)
        self.exchanges.append(x)
        return x

    def queue(self, bind_to=None, key=""):
        q = name("q")
        self.ch.queue_declare(q)
        self.queues.append(q)
        if bind_to:
            self.ch.queue_bind(q, bind_to, key)
        return q

    def count(self, q):
        return self.ch.queue_declare(q, passive=True).method.message_count

    def settle(self):
        # A round trip after the publishes: they are routed by then.
        self.conn.process_data_events(time_limit=0.1)
        self.ch.queue_declare(self.queues[0] if self.queues else "", passive=bool(self.queues))
        self.conn.process_data_events(time_limit=0.1)

    def close(self):
        ch = self.conn.channel()
        for q in self.queues:
            ch.queue_delete(q)
        for x in self.exchanges:
            ch.exchange_delete(x)
        self.conn.close()


@pytest.fixture
def env(broker):
    e = Env(broker)
    yield e
    if e.conn.is_open:
        e.close()


def test_unroutable_goes_to_the_alternate(env):
    ae = env.exchange("fanout")
    q_ae = env.queue(ae)
    x = env.exchange("direct", ae=ae)
    q = env.queue(x, "k")
    env.ch.basic_publish(x, "k", b"routed")
    env.ch.basic_publish(x, "other", b"unrouted", mandatory=True)
    env.settle()
    assert env.count(q) == 1
    assert env.count(q_ae) == 1
    assert env.returned == []
    m, _, body = env.ch.basic_get(q_ae, auto_ack=True)
    assert body == b"unrouted"
    # The message keeps its exchange and routing key.
    assert (m.exchange, m.routing_key) == (x, "other")


def test_mandatory_returns_when_the_alternate_routes_nowhere(env):
    ae = env.exchange("direct")
    env.queue(ae, "nomatch")
    x = env.exchange("direct", ae=ae)
    env.ch.basic_publish(x, "k", b"lost", mandatory=True)
    env.settle()
    assert len(env.returned) == 1
    m, body = env.returned[0]
    assert (m.reply_code, m.reply_text, m.exchange, m.routing_key) == (312, "NO_ROUTE", x, "k")


def test_missing_alternate_drops(env):
    missing = name("missing")
    x = env.exchange("direct", ae=missing)
    env.ch.basic_publish(x, "k", b"lost", mandatory=True)
    env.settle()
    assert len(env.returned) == 1


def test_chain_of_alternates(env):
    ae2 = env.exchange("fanout")
    q = env.queue(ae2)
    ae1 = env.exchange("direct", ae=ae2)
    x = env.exchange("topic", ae=ae1)
    env.ch.basic_publish(x, "a.b", b"m", mandatory=True)
    env.settle()
    assert env.count(q) == 1
    assert env.returned == []


def test_cycle_of_alternates_ends(env):
    a, b = name("cyc"), name("cyc")
    env.ch.exchange_declare(a, "direct", arguments={"alternate-exchange": b})
    env.ch.exchange_declare(b, "direct", arguments={"alternate-exchange": a})
    env.exchanges += [a, b]
    env.ch.basic_publish(a, "k", b"m", mandatory=True)
    env.settle()
    assert len(env.returned) == 1
    # Self-referencing too.
    c = env.exchange("direct")
    env.ch.exchange_delete(c)
    env.ch.exchange_declare(c, "direct", arguments={"alternate-exchange": c})
    env.ch.basic_publish(c, "k", b"m", mandatory=True)
    env.settle()
    assert len(env.returned) == 2


def test_cycle_back_into_a_routing_exchange(env):
    """x (AE y) routes nothing; y (AE x) routes nothing either: x is not
    visited twice. With a queue bound to y, y gets it once."""
    x, y = name("x"), name("y")
    env.ch.exchange_declare(x, "direct", arguments={"alternate-exchange": y})
    env.ch.exchange_declare(y, "fanout", arguments={"alternate-exchange": x})
    env.exchanges += [x, y]
    q = env.queue(y)
    env.ch.basic_publish(x, "k", b"m", mandatory=True)
    env.settle()
    assert env.count(q) == 1
    assert env.returned == []


def test_alternate_of_an_exchange_reached_by_an_exchange_binding(env):
    """RabbitMQ consults the alternate of every exchange the message
    reaches that routes it nowhere, not only the one published to."""
    ae = env.exchange("fanout")
    q_ae = env.queue(ae)
    inner = env.exchange("direct", ae=ae)
    outer = env.exchange("direct")
    env.ch.exchange_bind(inner, outer, "k")
    env.ch.basic_publish(outer, "k", b"m", mandatory=True)
    env.settle()
    assert env.count(q_ae) == 1
    assert env.returned == []


def test_routing_to_an_exchange_counts_as_routed(env):
    """An exchange whose bindings lead to another exchange has routed the
    message, even when that one routes it nowhere: its own alternate is not
    used."""
    ae = env.exchange("fanout")
    q_ae = env.queue(ae)
    inner = env.exchange("direct")
    outer = env.exchange("direct", ae=ae)
    env.ch.exchange_bind(inner, outer, "k")
    env.ch.basic_publish(outer, "k", b"m", mandatory=True)
    env.settle()
    assert env.count(q_ae) == 0
    assert len(env.returned) == 1


def test_internal_and_headers_alternates(env):
    ae = env.exchange("fanout", internal=True)
    q_ae = env.queue(ae)
    x = env.exchange("headers", ae=ae)
    q = env.queue()
    env.ch.queue_bind(q, x, "", arguments={"x-match": "all", "a": 1})
    env.ch.basic_publish(x, "", b"1", pika.BasicProperties(headers={"a": 1}))
    env.ch.basic_publish(x, "", b"2", pika.BasicProperties(headers={"a": 2}))
    env.settle()
    assert env.count(q) == 1
    assert env.count(q_ae) == 1


def test_confirm_of_a_message_routed_by_the_alternate(env):
    ae = env.exchange("fanout")
    q_ae = env.queue(ae)
    x = env.exchange("direct", ae=ae)
    env.ch.confirm_delivery()
    env.ch.basic_publish(x, "k", b"m", mandatory=True)  # raises if returned/nacked
    assert env.count(q_ae) == 1


def test_alternate_deleted_later(env):
    ae = env.exchange("fanout")
    q_ae = env.queue(ae)
    x = env.exchange("direct", ae=ae)
    env.ch.exchange_delete(ae)
    env.ch.basic_publish(x, "k", b"m", mandatory=True)
    env.settle()
    assert len(env.returned) == 1
    # Declared again: used again.
    env.ch.exchange_declare(ae, "fanout")
    env.ch.queue_bind(q_ae, ae)
    env.ch.basic_publish(x, "k", b"m", mandatory=True)
    env.settle()
    assert env.count(q_ae) == 1
    assert len(env.returned) == 1


@pytest.mark.parametrize("value,type_name", [(5, "signedint"), (True, "bool"), ({"a": 1}, "table")])
def test_argument_type_is_checked(env, value, type_name):
    x = name("x")
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        env.ch.exchange_declare(x, "direct", arguments={"alternate-exchange": value})
    assert ei.value.reply_code == 406
    assert ei.value.reply_text == (
        "PRECONDITION_FAILED - invalid type '%s' for arg 'alternate-exchange' "
        "in exchange '%s' in vhost '/'" % (type_name, x))


def test_redeclare_with_another_alternate(broker, env):
    ae = name("ae")
    x = env.exchange("direct", ae=ae)
    # The same one: fine.
    env.ch.exchange_declare(x, "direct", arguments={"alternate-exchange": ae})
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        env.ch.exchange_declare(x, "direct", arguments={"alternate-exchange": "other"})
    assert ei.value.reply_code == 406
    assert ei.value.reply_text == (
        "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange '%s' "
        "in vhost '/': received 'other' but current is '%s'" % (x, ae))
    ch = env.conn.channel()
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        ch.exchange_declare(x, "direct")
    assert ei.value.reply_code == 406
    assert ei.value.reply_text == (
        "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange '%s' "
        "in vhost '/': received none but current is the value '%s' of type 'longstr'" % (x, ae))
    env.ch = env.conn.channel()
    y = env.exchange("direct")
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        env.ch.exchange_declare(y, "direct", arguments={"alternate-exchange": ae})
    assert ei.value.reply_code == 406
    assert ei.value.reply_text == (
        "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange '%s' "
        "in vhost '/': received the value '%s' of type 'longstr' but current is none" % (y, ae))
    env.ch = env.conn.channel()
    # Passive declares are not compared.
    env.ch.exchange_declare(x, "direct", passive=True)


def test_other_arguments_are_not_compared(env):
    x = env.exchange("direct", arguments={"foo": 1})
    env.ch.exchange_declare(x, "direct", arguments={"foo": 2})
    env.ch.exchange_declare(x, "direct")
