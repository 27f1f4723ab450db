"""RabbitMQ parity: empty routing keys, unbinding what is not there, reply
codes and texts, closing handshakes, connection.update-secret.

Every expectation here was observed on RabbitMQ 3.10.8 (the reference for
Warren is RabbitMQ 3.10), running this file with
WARREN_TEST_URL=amqp://guest:guest@127.0.0.1:5672/%2F.
"""

import select
import socket
import threading
import time

import pika
import pika.exceptions as pex
import pytest

import amqp_raw as raw
from test_semantics import ACCESS_REFUSED, NOT_FOUND, RESOURCE_LOCKED, name

CHANNEL_ERROR = 504


def assert_closed_exactly(excinfo, code, text):
    exc = excinfo.value
    assert isinstance(exc, pex.ChannelClosedByBroker), repr(exc)
    assert (exc.reply_code, exc.reply_text) == (code, text), exc


def routed(ch, exchange, routing_key, body=b"x"):
    """Publish mandatory on a channel in confirm mode: True if routed, False
    if the broker returned it (basic.return 312 NO_ROUTE)."""
    try:
        ch.basic_publish(exchange, routing_key, body, mandatory=True)
        return True
    except pex.UnroutableError as e:
        assert e.messages[0].method.reply_code == 312, e.messages[0].method
        return False


def drain(ch, q):
    """All messages in q right now (auto-ack), as (routing_key, body)."""
    got = []
    while True:
        m, _, body = ch.basic_get(q, auto_ack=True)
        if m is None:
            return got
        got.append((m.routing_key, body))


def connection_still_usable(conn):
    assert conn.is_open
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"alive")
    deadline = time.monotonic() + 10
    while True:
        m, _, body = ch.basic_get(q, auto_ack=True)
        if m is not None:
            assert body == b"alive"
            return
        assert time.monotonic() < deadline
        conn.sleep(0.02)


# ---------------------------------------------------------------------------
# 1. Empty routing keys
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("xtype", ["direct", "topic"])
def test_bind_with_empty_routing_key_routes_only_empty_key(conn, cleanup, xtype):
    x = cleanup.exchange(name("x"))
    q = cleanup.queue(name())
    ch = conn.channel()
    ch.exchange_declare(x, exchange_type=xtype)
    ch.queue_declare(q)
    ch.queue_bind(q, x, routing_key="")
    ch.confirm_delivery()
    assert routed(ch, x, "", b"empty") is True
    # an explicit "" binding is not a binding on the queue's name
    assert routed(ch, x, q, b"by-name") is False
    assert drain(ch, q) == [("", b"empty")]
    ch.queue_unbind(q, x, routing_key="")
    assert routed(ch, x, "", b"after-unbind") is False
    assert drain(ch, q) == []


@pytest.mark.parametrize("xtype", ["direct", "topic"])
def test_unbind_empty_key_leaves_other_bindings(conn, cleanup, xtype):
    x = cleanup.exchange(name("x"))
    q = cleanup.queue(name())
    ch = conn.channel()
    ch.exchange_declare(x, exchange_type=xtype)
    ch.queue_declare(q)
    ch.queue_bind(q, x, routing_key="")
    ch.queue_bind(q, x, routing_key="k")
    ch.queue_unbind(q, x, routing_key="")
    ch.confirm_delivery()
    assert routed(ch, x, "") is False
    assert routed(ch, x, "k", b"k") is True
    assert drain(ch, q) == [("k", b"k")]


def test_direct_empty_binding_only_matches_empty_key(conn, cleanup):
    """Two queues on one direct exchange, bound with "" and "a"."""
    x = cleanup.exchange(name("x"))
    q_empty = cleanup.queue(name())
    q_a = cleanup.queue(name())
    ch = conn.channel()
    ch.exchange_declare(x, exchange_type="direct")
    ch.queue_declare(q_empty)
    ch.queue_declare(q_a)
    ch.queue_bind(q_empty, x, routing_key="")
    ch.queue_bind(q_a, x, routing_key="a")
    ch.confirm_delivery()
    for rk in ["", "a", ".", " ", "#", "*"]:
        ch.basic_publish(x, rk, rk.encode())
    assert drain(ch, q_empty) == [("", b"")]
    assert drain(ch, q_a) == [("a", b"a")]


def test_kombu_style_bind_with_default_empty_routing_key(conn, cleanup):
    """kombu's Queue("q", Exchange("x", "direct")) binds with routing_key=""
    (its default) and producers publish with routing_key="": delivered."""
    x = cleanup.exchange(name("x"))
    q = cleanup.queue(name())
    ch = conn.channel()
    ch.exchange_declare(x, exchange_type="direct", durable=True)
    ch.queue_declare(q, durable=True)
    ch.queue_bind(q, x, routing_key="")
    got = []
    ch.basic_consume(q, lambda c, m, p, b: (got.append((m.routing_key, b)),
                                            c.basic_ack(m.delivery_tag)))
    pub = conn.channel()
    pub.confirm_delivery()
    pub.basic_publish(x, "", b"task", mandatory=True)   # no UnroutableError
    deadline = time.monotonic() + 10
    while not got:
        assert time.monotonic() < deadline, "not delivered"
        conn.process_data_events(time_limit=0.05)
    assert got == [("", b"task")]


def test_pika_omitted_routing_key_binds_queue_name(conn, cleanup):
    """pika (client side) fills an omitted routing_key with the queue name."""
    x = cleanup.exchange(name("x"))
    q = cleanup.queue(name())
    ch = conn.channel()
    ch.exchange_declare(x, exchange_type="direct")
    ch.queue_declare(q)
    ch.queue_bind(q, x)
    ch.confirm_delivery()
    assert routed(ch, x, q) is True
    assert routed(ch, x, "") is False


def test_bind_empty_queue_and_empty_key_binds_last_queue_by_name(conn, cleanup):
    """queue.bind with queue="" uses the channel's last declared queue, and
    with routing-key "" too, RabbitMQ binds with that queue's NAME (spec:
    "If the queue name is empty, the server uses the last queue declared on
    the channel. If the routing key is also empty, the server uses this
    queue name for the routing key as well"). queue.unbind likewise."""
    x = cleanup.exchange(name("x"))
    q = cleanup.queue(name())
    ch = conn.channel()
    ch.exchange_declare(x, exchange_type="direct")
    ch.queue_declare(q)
    ch.queue_bind("", x, routing_key="")
    ch.confirm_delivery()
    assert routed(ch, x, q, b"by-name") is True
    assert routed(ch, x, "", b"empty") is False
    assert drain(ch, q) == [(q, b"by-name")]
    ch.queue_unbind("", x, routing_key="")
    assert routed(ch, x, q) is False


def test_bind_empty_queue_with_key_binds_last_queue(conn, cleanup):
    x = cleanup.exchange(name("x"))
    q = cleanup.queue(name())
    ch = conn.channel()
    ch.exchange_declare(x, exchange_type="topic")
    ch.queue_declare(q)
    ch.queue_bind("", x, routing_key="k.*")
    ch.confirm_delivery()
    assert routed(ch, x, "k.1", b"1") is True
    assert routed(ch, x, q) is False
    assert drain(ch, q) == [("k.1", b"1")]


# Topic matching with empty words.  A routing key splits on "."; "" has no
# words at all, "." has two empty words, "a." is ["a", ""].
TOPIC_BINDING_KEYS = ["", ".", "a.", ".a", "#", "*", "#.#", "*.#", "a.#", "#.a"]
TOPIC_ROUTING_KEYS = ["", ".", "a", "a.", ".a", "a.b", ".."]

# Observed on RabbitMQ 3.10.8: binding key -> the routing keys it matches.
TOPIC_TRUTH = {
    "": {""},
    ".": {"."},
    "a.": {"a."},
    ".a": {".a"},
    "#": {"", ".", "a", "a.", ".a", "a.b", ".."},
    "*": {"a"},
    "#.#": {"", ".", "a", "a.", ".a", "a.b", ".."},
    "*.#": {".", "a", "a.", ".a", "a.b", ".."},
    "a.#": {"a", "a.", "a.b"},
    "#.a": {"a", ".a"},
}

# A direct exchange compares keys for equality: no wildcards, "" only "".
DIRECT_BINDING_KEYS = ["", ".", "a", "#", "*"]
DIRECT_TRUTH = {bk: {bk} & set(TOPIC_ROUTING_KEYS) for bk in DIRECT_BINDING_KEYS}


def _routing_table(broker, xtype, binding_keys):
    """One exchange, one queue per binding key; publish every routing key
    once; return {binding key: set of routing keys delivered}."""
    c = broker.connect()
    try:
        ch = c.channel()
        x = name("x")
        ch.exchange_declare(x, exchange_type=xtype, auto_delete=True)
        queues = {}
        for bk in binding_keys:
            q = ch.queue_declare("", exclusive=True).method.queue
            ch.queue_bind(q, x, routing_key=bk)
            queues[bk] = q
        ch.confirm_delivery()
        for rk in TOPIC_ROUTING_KEYS:
            ch.basic_publish(x, rk, ("rk=" + rk).encode())
        table = {}
        for bk, q in queues.items():
            got = drain(ch, q)
            for rk, body in got:
                assert body == ("rk=" + rk).encode()
            rks = [rk for rk, _ in got]
            assert len(rks) == len(set(rks)), "duplicate deliveries to %r: %r" % (bk, rks)
            table[bk] = set(rks)
        ch.exchange_delete(x)
        return table
    finally:
        c.close()


@pytest.fixture(scope="module")
def topic_table(broker):
    return _routing_table(broker, "topic", TOPIC_BINDING_KEYS)


@pytest.fixture(scope="module")
def direct_table(broker):
    return _routing_table(broker, "direct", DIRECT_BINDING_KEYS)


@pytest.mark.parametrize("bk", TOPIC_BINDING_KEYS, ids=lambda v: "bk=%r" % v)
@pytest.mark.parametrize("rk", TOPIC_ROUTING_KEYS, ids=lambda v: "rk=%r" % v)
def test_topic_empty_words_truth_table(topic_table, bk, rk):
    expected = rk in TOPIC_TRUTH[bk]
    assert (rk in topic_table[bk]) == expected, (
        "topic binding %r vs routing key %r: RabbitMQ %s, got %s (binding matched %r)" % (
            bk, rk, "matches" if expected else "does not match",
            "match" if not expected else "no match", sorted(topic_table[bk])))


@pytest.mark.parametrize("bk", DIRECT_BINDING_KEYS, ids=lambda v: "bk=%r" % v)
def test_direct_truth_table(direct_table, bk):
    assert direct_table[bk] == DIRECT_TRUTH[bk]


# ---------------------------------------------------------------------------
# 2. Unbinding what is not there: unbind-ok (RabbitMQ 3.10.8)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["missing-exchange", "missing-queue", "missing-both",
                                  "missing-binding", "missing-binding-amq.direct"])
def test_queue_unbind_missing_is_ok(conn, cleanup, case):
    x = cleanup.exchange(name("x"))
    q = cleanup.queue(name())
    ch = conn.channel()
    ch.exchange_declare(x, exchange_type="direct")
    ch.queue_declare(q)
    ch.queue_bind(q, x, routing_key="k1")
    src, dst = {
        "missing-exchange": (name("x"), q),
        "missing-queue": (x, name()),
        "missing-both": (name("x"), name()),
        "missing-binding": (x, q),
        "missing-binding-amq.direct": ("amq.direct", q),
    }[case]
    ok = ch.queue_unbind(dst, src, routing_key="k2")
    assert isinstance(ok.method, pika.spec.Queue.UnbindOk)
    # same channel still open, the real binding untouched
    ch.confirm_delivery()
    assert routed(ch, x, "k1") is True
    assert conn.is_open and ch.is_open


@pytest.mark.parametrize("case", ["missing-source", "missing-destination", "missing-both",
                                  "missing-binding"])
def test_exchange_unbind_missing_is_ok(conn, cleanup, case):
    x = cleanup.exchange(name("x"))
    y = cleanup.exchange(name("x"))
    q = cleanup.queue(name())
    ch = conn.channel()
    ch.exchange_declare(x, exchange_type="direct")
    ch.exchange_declare(y, exchange_type="direct")
    ch.queue_declare(q)
    ch.queue_bind(q, y, routing_key="k1")
    ch.exchange_bind(y, x, routing_key="k1")
    src, dst = {
        "missing-source": (name("x"), y),
        "missing-destination": (x, name("x")),
        "missing-both": (name("x"), name("x")),
        "missing-binding": (x, y),
    }[case]
    ok = ch.exchange_unbind(destination=dst, source=src, routing_key="k2")
    assert isinstance(ok.method, pika.spec.Exchange.UnbindOk)
    ch.confirm_delivery()
    assert routed(ch, x, "k1") is True
    assert conn.is_open and ch.is_open


def test_queue_unbind_from_default_exchange_403(conn, cleanup):
    q = cleanup.queue(name())
    ch = conn.channel()
    ch.queue_declare(q)
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        ch.queue_unbind(q, "", routing_key=q)
    assert_closed_exactly(ei, ACCESS_REFUSED,
                          "ACCESS_REFUSED - operation not permitted on the default exchange")
    connection_still_usable(conn)


# ---------------------------------------------------------------------------
# 3. Reply codes and texts
# ---------------------------------------------------------------------------

def _rabbit_short_text(text):
    """RabbitMQ cuts reply texts longer than 255 bytes to 252 + "..."."""
    b = text.encode()
    if len(b) > 255:
        return (b[:252] + b"...").decode()
    return text


def test_exclusive_queue_redeclared_non_exclusive_by_owner_405(broker, conn):
    q = name()
    ch = conn.channel()
    ch.queue_declare(q, exclusive=True)
    # the same declaration (and a passive one) from the owner are fine
    ch.queue_declare(q, exclusive=True)
    ch.queue_declare(q, passive=True)
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        ch.queue_declare(q, exclusive=False)
    full = ("RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '%s' in "
            "vhost '%s'. It could be originally declared on another connection or the "
            "exclusive property value does not match that of the original declaration."
            % (q, broker.vhost))
    assert_closed_exactly(ei, RESOURCE_LOCKED, _rabbit_short_text(full))
    assert ch.is_closed
    assert conn.is_open
    # the queue is still there and still the connection's
    ch2 = conn.channel()
    ch2.queue_declare(q, passive=True)
    connection_still_usable(conn)


EMPTY_NAME_OPS = {
    "basic.get": lambda ch: ch.basic_get(""),
    "basic.consume": lambda ch: ch.basic_consume("", lambda *a: None),
    "queue.purge": lambda ch: ch.queue_purge(""),
    "queue.bind": lambda ch: ch.queue_bind("", "amq.direct", routing_key="k"),
    "queue.bind-empty-key": lambda ch: ch.queue_bind("", "amq.direct", routing_key=""),
    "queue.unbind": lambda ch: ch.queue_unbind("", "amq.direct", routing_key="k"),
    "queue.delete": lambda ch: ch.queue_delete(""),
}


@pytest.mark.parametrize("op", list(EMPTY_NAME_OPS))
def test_empty_queue_name_without_declare_404(conn, op):
    ch = conn.channel()
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        EMPTY_NAME_OPS[op](ch)
    assert_closed_exactly(ei, NOT_FOUND, "NOT_FOUND - no previously declared queue")
    assert ch.is_closed
    connection_still_usable(conn)


def test_passive_declare_empty_name_404(conn):
    ch = conn.channel()
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        ch.queue_declare("", passive=True)
    assert_closed_exactly(ei, NOT_FOUND, "NOT_FOUND - no queue '' in vhost '/'")
    connection_still_usable(conn)


def test_empty_queue_name_means_last_declared(conn, cleanup):
    q = cleanup.queue(name())
    ch = conn.channel()
    ch.queue_declare(q)
    ch.confirm_delivery()
    for i in range(3):
        ch.basic_publish("", q, b"m%d" % i)
    m, _, body = ch.basic_get("", auto_ack=True)
    assert body == b"m0" and m.routing_key == q
    assert ch.queue_purge("").method.message_count == 2
    ch.basic_publish("", q, b"last")
    assert ch.queue_delete("").method.message_count == 1
    ch2 = conn.channel()
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        ch2.queue_declare(q, passive=True)
    assert ei.value.reply_code == NOT_FOUND


# ---------------------------------------------------------------------------
# 4. Closing handshakes (raw sockets)
# ---------------------------------------------------------------------------

def _raw(broker, heartbeat=0):
    return raw.connect(broker.host, broker.port, heartbeat=heartbeat,
                       user=broker.username, password=broker.password, vhost=broker.vhost)


def _write_for(c, seconds, frames):
    """Keep writing frames for `seconds`; returns the OSError that stopped it, or None."""
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            c.send(frames)
            time.sleep(0.02)
    except OSError as e:
        return e
    return None


def _socket_state(c):
    """"open" (nothing to read), "data", "eof" (the broker sent FIN) or
    "reset", without consuming anything."""
    r, _, _ = select.select([c.sock], [], [], 0)
    if not r:
        return "open"
    try:
        data = c.sock.recv(65536, socket.MSG_PEEK)
    except OSError:
        return "reset"
    return "data" if data else "eof"


def _wait_fully_closed(c, timeout):
    """Seconds until the broker has closed the socket altogether (reset, or
    after its FIN a write of ours fails), or None if not within timeout.
    Frames that still arrive are read and dropped (returned in c.late)."""
    t0 = time.monotonic()
    c.late = []
    while time.monotonic() - t0 < timeout:
        st = _socket_state(c)
        if st == "reset":
            return time.monotonic() - t0
        if st == "data":
            try:
                c.late.append(c.read_frame(timeout=1))
            except raw.Reset:
                return time.monotonic() - t0
            except (raw.Closed, socket.timeout):
                pass
            continue
        if st == "eof":
            # half closed by the broker: once its descriptor is closed too,
            # our write draws a reset and the next one fails
            try:
                c.send(raw.heartbeat_frame())
            except OSError:
                return time.monotonic() - t0
        time.sleep(0.05)
    return None


def test_client_close_then_keep_writing(broker):
    """connection.close, then more frames before and after close-ok: the
    broker answers close-ok, keeps reading (and dropping) what the client
    still writes, without a reset, and closes altogether once the client
    closes its side (RabbitMQ: ~1 ms after the client's FIN)."""
    c = _raw(broker)
    try:
        c.open_channel(1)
        junk = raw.basic_publish(1, "", name("nowhere"), b"x" * 100) + raw.heartbeat_frame()
        c.send(raw.connection_close(200, "bye") + junk * 10)
        f = c.read_method(timeout=5)
        assert f.method == (10, 51), f                 # close-ok, nothing else
        err = _write_for(c, 0.5, junk)
        assert err is None, "client write failed within 0.5 s after close-ok: %r" % (err,)
        st = _socket_state(c)
        assert st in ("open", "eof"), "after close-ok + 0.5 s of client writes: %s" % st
        c.sock.shutdown(socket.SHUT_WR)
        secs = _wait_fully_closed(c, 5)
        assert secs is not None, "broker did not close within 5 s of the client's FIN"
        assert [fr for fr in c.late if fr.type != raw.FRAME_HEARTBEAT] == []
    finally:
        c.close()


def test_client_close_broker_keeps_its_side_open(broker):
    """RabbitMQ sends no FIN after close-ok: it leaves closing the TCP
    connection to the client (or to its closing timeout)."""
    c = _raw(broker)
    try:
        c.open_channel(1)
        c.send(raw.connection_close(200, "bye"))
        f = c.read_method(timeout=5)
        assert f.method == (10, 51), f
        assert _write_for(c, 0.5, raw.heartbeat_frame()) is None
        assert _socket_state(c) == "open", (
            "broker closed its side (%s) within 0.5 s of close-ok, before the client did"
            % _socket_state(c))
    finally:
        c.close()


def test_client_close_silent_client_closed_by_broker(broker):
    """After close-ok, a client that neither writes nor closes: the broker
    closes the socket after a bounded time (RabbitMQ: the negotiated
    heartbeat interval after close-ok, capped at 30 s; here 5 s)."""
    c = _raw(broker, heartbeat=5)
    try:
        c.open_channel(1)
        c.send(raw.connection_close(200, "bye"))
        f = c.read_method(timeout=5)
        assert f.method == (10, 51), f
        assert _write_for(c, 0.5, raw.heartbeat_frame()) is None
        assert _socket_state(c) != "reset"
        secs = _wait_fully_closed(c, 20)
        assert secs is not None, "broker still holds the socket 20 s after close-ok"
    finally:
        c.close()


def test_server_close_client_keeps_writing(broker):
    """A frame on a channel that was never opened: RabbitMQ sends
    connection.close 504 "CHANNEL_ERROR - expected 'channel.open'" (60, 40).
    Frames the client sends before its close-ok are discarded without any
    reply (and without closing the socket); on close-ok the broker closes the
    socket (RabbitMQ: at once)."""
    c = _raw(broker)
    try:
        c.open_channel(1)
        c.send(raw.basic_publish(5, "", "x", b"x"))
        f = c.read_method(timeout=5)
        assert f.method == (10, 50), f
        assert raw.parse_close(f.args) == (CHANNEL_ERROR, "CHANNEL_ERROR - expected 'channel.open'",
                                           60, 40)
        junk = (raw.basic_publish(1, "", name("nowhere"), b"x" * 100)
                + raw.basic_publish(5, "", "x", b"x")
                + raw.channel_open(7)
                + raw.heartbeat_frame())
        assert _write_for(c, 0.5, junk) is None
        with pytest.raises(socket.timeout):
            extra = c.read_frame(timeout=0.3)
            pytest.fail("broker answered a frame sent after its connection.close: %r" % extra)
        c.send(raw.connection_close_ok())
        secs = _wait_fully_closed(c, 5)
        assert secs is not None, "broker did not close within 5 s of close-ok"
        assert c.late == []
    finally:
        c.close()


def test_server_close_without_close_ok_is_bounded(broker):
    """The client never answers the broker's connection.close: the broker
    closes the socket after a bounded time (RabbitMQ: min(heartbeat, 30 s),
    here heartbeat 5 s -> ~5 s)."""
    c = _raw(broker, heartbeat=5)
    try:
        c.open_channel(1)
        c.send(raw.basic_publish(5, "", "x", b"x"))
        f = c.read_method(timeout=5)
        assert f.method == (10, 50), f
        secs = _wait_fully_closed(c, 20)
        assert secs is not None, "socket still open 20 s after connection.close"
        assert [fr for fr in c.late if fr.type != raw.FRAME_HEARTBEAT] == []
    finally:
        c.close()


def test_close_with_publishes_queued(broker, conn, cleanup):
    """amqplib-style: many publishes and connection.close written in one go.
    Every write succeeds, close-ok arrives, and every publish made it."""
    q = cleanup.queue(name())
    conn.channel().queue_declare(q)
    n = 2000
    c = _raw(broker)
    try:
        c.open_channel(1)
        data = raw.basic_publish(1, "", q, b"p" * 1000) * n + raw.connection_close(200, "bye")
        err = []

        def write():
            try:
                c.send(data)
            except OSError as e:
                err.append(e)
        t = threading.Thread(target=write)
        t.start()
        f = c.read_method(timeout=30)
        t.join(30)
        assert not t.is_alive()
        assert err == []
        assert f.method == (10, 51), f
    finally:
        c.close()
    ch = conn.channel()
    deadline = time.monotonic() + 10
    while True:
        count = ch.queue_declare(q, passive=True).method.message_count
        if count == n or time.monotonic() > deadline:
            break
        conn.sleep(0.05)
    assert count == n


# ---------------------------------------------------------------------------
# 7. connection.update-secret
# ---------------------------------------------------------------------------

def test_update_secret_raw(broker):
    c = _raw(broker)
    try:
        c.send(raw.update_secret(broker.password, "refresh"))
        f = c.read_method(timeout=5)
        assert f.type == raw.FRAME_METHOD and f.channel == 0
        assert f.method == (10, 71), f              # connection.update-secret-ok
        assert f.args == b""
        c.open_channel(1)
        c.send(raw.queue_declare(1, "", exclusive=True))
        ok = c.expect(50, 11)
        assert raw.parse_shortstr(ok.args)[0].startswith("amq.gen-")
        c.send(raw.connection_close())
        c.expect(10, 51)
    finally:
        c.close()


def test_update_secret_pika(broker, conn):
    conn.update_secret(broker.password, "refresh")
    connection_still_usable(conn)
