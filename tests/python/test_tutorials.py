"""The six RabbitMQ tutorials (Python / pika 1.x), run against the broker.

The programs in tutorials/ are Warren's own re-creations of the tutorial
programs (same pika calls, command line and printed lines; see
tutorials/README.md), connecting to AMQP_HOST/AMQP_PORT.  These tests run them
as subprocesses and check what they print, as a user following the tutorials
would see it.
"""

import time
import uuid

import pika
import pytest

from tutorial_procs import Scripts

WAITING_MESSAGES = " [*] Waiting for messages. To exit press CTRL+C"
WAITING_LOGS = " [*] Waiting for logs. To exit press CTRL+C"


@pytest.fixture
def scripts(broker):
    s = Scripts(broker)
    yield s
    s.cleanup()


def _delete_queues(broker, *names):
    """The tutorials use fixed queue names; start each test from a clean slate."""
    c = broker.connect()
    try:
        for name in names:
            ch = c.channel()
            ch.queue_delete(queue=name)
            ch.close()
    finally:
        c.close()


def _wait_consumers(broker, queue_name, count, timeout=15.0):
    """Poll (passive declare) until queue_name has `count` consumers."""
    c = broker.connect()
    try:
        ch = c.channel()
        deadline = time.monotonic() + timeout
        while True:
            ok = ch.queue_declare(queue=queue_name, passive=True)
            if ok.method.consumer_count == count:
                return
            if time.monotonic() > deadline:
                raise AssertionError("queue %r has %d consumers, expected %d" % (
                    queue_name, ok.method.consumer_count, count))
            c.sleep(0.05)
    finally:
        c.close()


@pytest.fixture
def clean_queues(broker):
    names = []

    def clean(*qs):
        names.extend(qs)
        _delete_queues(broker, *qs)

    yield clean
    if names:
        try:
            _delete_queues(broker, *names)
        except Exception:
            pass


# --------------------------------------------------------------------------
# 1. Hello World
# --------------------------------------------------------------------------

def test_hello_world(scripts, clean_queues):
    clean_queues("hello")
    receiver = scripts.start("receive.py")
    receiver.wait_line(WAITING_MESSAGES)

    out = scripts.run("send.py")
    assert out == [" [x] Sent 'Hello World!'"]

    # body is bytes in pika 1.x, so %r prints b'...'
    receiver.wait_line(" [x] Received b'Hello World!'")


def test_hello_world_send_before_receive(scripts, clean_queues):
    """send.py declares the queue, so the message waits there for receive.py."""
    clean_queues("hello")
    assert scripts.run("send.py") == [" [x] Sent 'Hello World!'"]
    assert scripts.run("send.py") == [" [x] Sent 'Hello World!'"]
    receiver = scripts.start("receive.py")
    lines = receiver.collect_until(" [x] Received b'Hello World!'")
    assert lines == [WAITING_MESSAGES, " [x] Received b'Hello World!'"]
    receiver.wait_line(" [x] Received b'Hello World!'")


# --------------------------------------------------------------------------
# 2. Work queues
# --------------------------------------------------------------------------

def _received(task):
    # worker.py prints body.decode() with %r
    return " [x] Received %r" % task


def test_work_queue_single_worker(scripts, clean_queues):
    clean_queues("task_queue")
    assert scripts.run("new_task.py", "First", "message.") == [" [x] Sent 'First message.'"]
    assert scripts.run("new_task.py") == [" [x] Sent 'Hello World!'"]
    worker = scripts.start("worker.py")
    assert worker.collect_until(" [x] Done") == [
        WAITING_MESSAGES, _received("First message."), " [x] Done"]
    assert worker.collect_until(" [x] Done") == [_received("Hello World!"), " [x] Done"]


def test_work_queue_task_is_durable_and_persistent(broker, scripts, clean_queues):
    """new_task.py declares task_queue durable and publishes with delivery_mode=2."""
    clean_queues("task_queue")
    assert scripts.run("new_task.py", "keep", "me.") == [" [x] Sent 'keep me.'"]
    c = broker.connect()
    try:
        ch = c.channel()
        method, props, body = ch.basic_get(queue="task_queue", auto_ack=True)
        assert method is not None, "task_queue is empty"
        assert body == b"keep me."
        assert props.delivery_mode == 2
        # durable: re-declaring it non-durable is refused
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:
            ch.queue_declare(queue="task_queue", durable=False)
        assert err.value.reply_code == 406
    finally:
        c.close()


def test_work_queue_fair_dispatch(broker, scripts, clean_queues):
    """prefetch_count=1: a busy worker gets nothing more until it acks."""
    clean_queues("task_queue")
    tag = uuid.uuid4().hex[:8]
    w1 = scripts.start("worker.py")
    w2 = scripts.start("worker.py")
    w1.wait_line(WAITING_MESSAGES)
    w2.wait_line(WAITING_MESSAGES)
    # Belt and braces: both consumers registered before any task is queued.
    _wait_consumers(broker, "task_queue", 2)

    slow = "slow-%s..." % tag      # 3 s of "work"
    fast = ["fast%d-%s" % (i, tag) for i in range(3)]  # no dots: instant
    scripts.run("new_task.py", slow)
    for f in fast:
        scripts.run("new_task.py", f)

    got = {id(w1): [], id(w2): []}
    pending = set([slow] + fast)
    deadline = time.monotonic() + 30
    while pending:
        assert time.monotonic() < deadline, "not all tasks done: %s\n%s" % (
            w1.describe(), w2.describe())
        for w in (w1, w2):
            try:
                line = w.wait_line(lambda l: l.startswith(" [x] Received"), timeout=0.3)
            except AssertionError:
                continue
            task = line[len(" [x] Received '"):-1]
            got[id(w)].append(task)
            pending.discard(task)

    slow_worker, other = (w1, w2) if slow in got[id(w1)] else (w2, w1)
    assert got[id(slow_worker)] == [slow], "busy worker got more work: %r" % got
    assert sorted(got[id(other)]) == sorted(fast), got
    slow_worker.wait_line(" [x] Done", timeout=15)


def test_work_queue_redelivery_when_worker_dies(broker, scripts, clean_queues):
    """A worker killed before acking: its message goes to the other worker."""
    clean_queues("task_queue")
    tag = uuid.uuid4().hex[:8]
    w1 = scripts.start("worker.py")
    w2 = scripts.start("worker.py")
    w1.wait_line(WAITING_MESSAGES)
    w2.wait_line(WAITING_MESSAGES)
    _wait_consumers(broker, "task_queue", 2)

    task = "doomed-%s..." % tag   # 3 s: plenty of time to kill the worker mid-task
    assert scripts.run("new_task.py", task) == [" [x] Sent %r" % task]

    # whichever worker got it, kill it before it acks
    victim = survivor = None
    deadline = time.monotonic() + 15
    while victim is None:
        assert time.monotonic() < deadline, "nobody received the task:\n%s\n%s" % (
            w1.describe(), w2.describe())
        for w, other in ((w1, w2), (w2, w1)):
            try:
                w.wait_line(_received(task), timeout=0.2)
            except AssertionError:
                continue
            victim, survivor = w, other
            break
    victim.kill()
    assert " [x] Done" not in victim.lines[victim.lines.index(_received(task)):], \
        "worker finished before it could be killed"

    survivor.wait_line(_received(task), timeout=15)
    survivor.wait_line(" [x] Done", timeout=15)


# --------------------------------------------------------------------------
# 3. Publish/Subscribe
# --------------------------------------------------------------------------

def test_publish_subscribe(scripts):
    r1 = scripts.start("receive_logs.py")
    r2 = scripts.start("receive_logs.py")
    r1.wait_line(WAITING_LOGS)
    r2.wait_line(WAITING_LOGS)

    msg = "info: Hello %s" % uuid.uuid4().hex
    assert scripts.run("emit_log.py", *msg.split(" ")) == [" [x] Sent %r" % msg]
    expected = " [x] %r" % msg.encode()   # receive_logs prints the bytes body
    r1.wait_line(expected)
    r2.wait_line(expected)


def test_publish_subscribe_default_message(scripts):
    r1 = scripts.start("receive_logs.py")
    r1.wait_line(WAITING_LOGS)
    assert scripts.run("emit_log.py") == [" [x] Sent 'info: Hello World!'"]
    r1.wait_line(" [x] b'info: Hello World!'")


# --------------------------------------------------------------------------
# 4. Routing
# --------------------------------------------------------------------------

def _log_lines(proc, tag, sentinel_line, timeout=15):
    """Lines mentioning `tag`, up to (and including) the sentinel line."""
    lines = proc.collect_until(sentinel_line, timeout=timeout)
    return [l for l in lines if tag in l]


def test_routing(scripts):
    tag = uuid.uuid4().hex
    r_we = scripts.start("receive_logs_direct.py", "warning", "error")
    r_info = scripts.start("receive_logs_direct.py", "info")
    r_we.wait_line(WAITING_LOGS)
    r_info.wait_line(WAITING_LOGS)

    sent = [("error", "Run. Run. Or it will explode. %s" % tag),
            ("info", "all fine %s" % tag),
            ("warning", "careful %s" % tag),
            ("debug", "nobody listens %s" % tag)]
    for sev, msg in sent:
        out = scripts.run("emit_log_direct.py", sev, *msg.split(" "))
        assert out == [" [x] Sent %r:%r" % (sev, msg)]
    # sentinels mark "everything before has been routed"
    s_err = ("error", "sentinel %s" % tag)
    s_info = ("info", "sentinel %s" % tag)
    for sev, msg in (s_err, s_info):
        scripts.run("emit_log_direct.py", sev, *msg.split(" "))

    def line(sev, msg):
        return " [x] %r:%r" % (sev, msg.encode())

    got_we = _log_lines(r_we, tag, line(*s_err))
    got_info = _log_lines(r_info, tag, line(*s_info))
    assert sorted(got_we) == sorted([line(*sent[0]), line(*sent[2]), line(*s_err)])
    assert sorted(got_info) == sorted([line(*sent[1]), line(*s_info)])


def test_routing_usage_error(scripts):
    s = scripts.start("receive_logs_direct.py")
    assert s.wait_exit(30) == 1
    assert "Usage:" in s.stderr


# --------------------------------------------------------------------------
# 5. Topics
# --------------------------------------------------------------------------

def test_topics(scripts):
    tag = uuid.uuid4().hex
    patterns = ["kern.*", "*.critical", "#", "kern.#"]
    receivers = {}
    for p in patterns:
        receivers[p] = scripts.start("receive_logs_topic.py", p)
    both = scripts.start("receive_logs_topic.py", "kern.*", "*.critical")
    for r in list(receivers.values()) + [both]:
        r.wait_line(WAITING_LOGS)

    keys = ["kern.critical", "kern.info", "auth.critical", "kern.disk.full",
            "kern", "auth.info", "cron.disk.critical"]
    matches = {
        "kern.*": {"kern.critical", "kern.info"},
        "*.critical": {"kern.critical", "auth.critical"},
        "#": set(keys),
        "kern.#": {"kern.critical", "kern.info", "kern.disk.full", "kern"},
    }
    for k in keys:
        msg = "msg %s" % tag
        out = scripts.run("emit_log_topic.py", k, *msg.split(" "))
        assert out == [" [x] Sent %r:%r" % (k, msg)]
    # sentinel: "kern.critical" matches every pattern above
    sentinel = "sentinel %s" % tag
    scripts.run("emit_log_topic.py", "kern.critical", *sentinel.split(" "))
    sentinel_line = " [x] %r:%r" % ("kern.critical", sentinel.encode())

    def line(k):
        return " [x] %r:%r" % (k, ("msg %s" % tag).encode())

    for p, r in receivers.items():
        got = _log_lines(r, tag, sentinel_line)
        assert got[-1] == sentinel_line
        assert sorted(got[:-1]) == sorted(line(k) for k in matches[p]), p
    got = _log_lines(both, tag, sentinel_line)
    # a message matching both bindings of one queue is delivered once
    assert sorted(got[:-1]) == sorted(line(k) for k in matches["kern.*"] | matches["*.critical"])


def test_topics_default_routing_key(scripts):
    r = scripts.start("receive_logs_topic.py", "anonymous.*")
    r.wait_line(WAITING_LOGS)
    assert scripts.run("emit_log_topic.py") == [" [x] Sent 'anonymous.info':'Hello World!'"]
    r.wait_line(" [x] 'anonymous.info':b'Hello World!'")


# --------------------------------------------------------------------------
# 6. RPC
# --------------------------------------------------------------------------

def test_rpc(scripts, clean_queues):
    clean_queues("rpc_queue")
    server = scripts.start("rpc_server.py")
    server.wait_line(" [x] Awaiting RPC requests")
    out = scripts.run("rpc_client.py", timeout=60)
    assert out == [" [x] Requesting fib(30)", " [.] Got 832040"]
    server.wait_line(" [.] fib(30)")


def test_rpc_two_clients(scripts, clean_queues):
    clean_queues("rpc_queue")
    server = scripts.start("rpc_server.py")
    server.wait_line(" [x] Awaiting RPC requests")
    c1 = scripts.start("rpc_client.py")
    c2 = scripts.start("rpc_client.py")
    for c in (c1, c2):
        assert c.wait_exit(60) == 0, c.describe()
        assert c.lines == [" [x] Requesting fib(30)", " [.] Got 832040"]


def test_rpc_reply_carries_correlation_id(broker, scripts, clean_queues):
    """rpc_server.py answers on reply_to, echoing each request's correlation_id.

    Two requests in a row: with prefetch_count=1 the second is only delivered
    once the first has been acknowledged.
    """
    clean_queues("rpc_queue")
    server = scripts.start("rpc_server.py")
    server.wait_line(" [x] Awaiting RPC requests")
    c = broker.connect()
    try:
        ch = c.channel()
        reply_q = ch.queue_declare(queue="", exclusive=True).method.queue
        got = []
        ch.basic_consume(queue=reply_q, auto_ack=True,
                         on_message_callback=lambda _c, _m, p, b: got.append((p.correlation_id, b)))
        corr = [uuid.uuid4().hex, uuid.uuid4().hex]
        for cid, n in zip(corr, ("20", "10")):
            ch.basic_publish(exchange="", routing_key="rpc_queue", body=n,
                             properties=pika.BasicProperties(reply_to=reply_q, correlation_id=cid))
        deadline = time.monotonic() + 15
        while len(got) < 2:
            assert time.monotonic() < deadline, "replies so far %r: %s" % (got, server.describe())
            c.process_data_events(time_limit=0.2)
        assert got == [(corr[0], b"6765"), (corr[1], b"55")]
        assert server.collect_until(" [.] fib(10)") == [" [.] fib(20)", " [.] fib(10)"]
    finally:
        c.close()
