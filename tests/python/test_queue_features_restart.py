"""Queue features across a restart (Warren only: it restarts its broker):
durable priority queues keep their order, x-expires restarts its timer,
TTL and dead-letter settings stay, quorum queues keep transient messages.
"""

import random
import time

import pika
import pika.exceptions as pex
import pytest

from test_broker_process import Warren, tmpdir_warren  # noqa: F401

pytestmark = pytest.mark.needs_warren_process


def connect(w):
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", w.port, credentials=pika.PlainCredentials("guest", "guest")))


def restart(w):
    assert w.stop() == 0
    w.start()
    w.wait_accepting(timeout=30)


def drain(ch, q):
    out = []
    while True:
        m, props, body = ch.basic_get(q, auto_ack=True)
        if m is None:
            return out
        out.append((props, body))


def wait_drain(ch, q, timeout):
    """Drains `q` once something is in it, or returns [] after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = drain(ch, q)
        if got:
            return got
        time.sleep(0.05)
    return []


def test_durable_features_survive_a_restart(tmpdir_warren):
    w = tmpdir_warren().start()
    w.wait_accepting(timeout=30)
    c = connect(w)
    ch = c.channel()
    ch.confirm_delivery()
    # A priority queue with a backlog beyond the memory window.
    ch.queue_declare("prio", durable=True, arguments={"x-max-priority": 9})
    rng = random.Random(7)
    sent = []
    for i in range(10000):
        p = rng.randrange(10)
        sent.append((p, i))
        ch.basic_publish("", "prio", b"%d" % i, pika.BasicProperties(delivery_mode=2, priority=p))
    # Dead-lettering and a TTL, set before the restart.
    ch.exchange_declare("dlx", "fanout", durable=True)
    ch.queue_declare("dead", durable=True)
    ch.queue_bind("dead", "dlx")
    ch.queue_declare("ttl", durable=True, arguments={"x-message-ttl": 60000,
                                                     "x-dead-letter-exchange": "dlx"})
    # (At the head: messages behind an unexpired head wait, as in RabbitMQ.)
    ch.basic_publish("", "ttl", b"soon", pika.BasicProperties(delivery_mode=2, expiration="1500"))
    ch.basic_publish("", "ttl", b"kept", pika.BasicProperties(delivery_mode=2))
    # Quorum queues log every message, persistent or not.
    ch.queue_declare("quorum", durable=True, arguments={"x-queue-type": "quorum"})
    ch.basic_publish("", "quorum", b"transient", pika.BasicProperties(delivery_mode=1))
    ch.queue_declare("expiring", durable=True, arguments={"x-expires": 1500})
    c.close()

    restart(w)
    c = connect(w)
    ch = c.channel()
    ch.queue_declare("expiring", passive=True)  # a fresh timer after the restart
    got = [int(b) for _, b in drain(ch, "prio")]
    want = [i for _, i in sorted(sent, key=lambda t: (-t[0], t[1]))]
    assert got == want
    assert [b for _, b in drain(ch, "quorum")] == [b"transient"]
    # The expired message goes to the dead-letter exchange; the other stays.
    dead = wait_drain(ch, "dead", 10)
    assert [b for _, b in dead] == [b"soon"]
    assert dead[0][0].headers["x-death"][0]["reason"] == "expired"
    m, _, body = ch.basic_get("ttl")
    assert body == b"kept"
    ch.basic_reject(m.delivery_tag, requeue=False)
    dead = wait_drain(ch, "dead", 5)
    assert [b for _, b in dead] == [b"kept"]
    assert dead[0][0].headers["x-death"][0]["reason"] == "rejected"
    time.sleep(2.0)
    with pytest.raises(pex.ChannelClosedByBroker) as e:
        c.channel().queue_declare("expiring", passive=True)
    assert e.value.reply_code == 404
    c.close()
    # Expired while running: gone for good, also after another restart.
    restart(w)
    c = connect(w)
    with pytest.raises(pex.ChannelClosedByBroker):
        c.channel().queue_declare("expiring", passive=True)
    c.close()


def test_a_logged_ttl_counts_from_publication_across_a_restart(tmpdir_warren):
    """As RabbitMQ keeps a message's expiry time: a restart neither restarts
    a TTL nor saves a message whose deadline passed while the broker was
    down (it is dead-lettered as expired at once)."""
    w = tmpdir_warren().start()
    w.wait_accepting(timeout=30)
    c = connect(w)
    ch = c.channel()
    ch.confirm_delivery()
    ch.exchange_declare("dlx", "fanout", durable=True)
    ch.queue_declare("dead", durable=True)
    ch.queue_bind("dead", "dlx")
    ch.queue_declare("ttl", durable=True, arguments={"x-dead-letter-exchange": "dlx"})
    persistent = lambda ms: pika.BasicProperties(delivery_mode=2, expiration=str(ms))  # noqa: E731
    ch.basic_publish("", "ttl", b"while-down", persistent(800))
    published = time.monotonic()
    ch.queue_declare("later", durable=True)
    ch.basic_publish("", "later", b"after", persistent(5000))
    ch.basic_publish("", "later", b"long", persistent(120000))
    c.close()
    assert w.stop() == 0
    time.sleep(1.5)  # the first deadline passes while the broker is down
    w.start()
    w.wait_accepting(timeout=30)
    c = connect(w)
    ch = c.channel()
    dead = wait_drain(ch, "dead", 5)
    assert [b for _, b in dead] == [b"while-down"]
    assert dead[0][0].headers["x-death"][0]["reason"] == "expired"
    assert ch.queue_declare("ttl", passive=True).method.message_count == 0
    # 5 s from publication, not from the restart (which came >= 1.5 s later).
    assert ch.queue_declare("later", passive=True).method.message_count == 2
    while time.monotonic() < published + 5.0 + 0.7:
        time.sleep(0.05)
    m, _, body = ch.basic_get("later", auto_ack=True)
    assert body == b"long"
    assert ch.basic_get("later", auto_ack=True)[0] is None
    c.close()
