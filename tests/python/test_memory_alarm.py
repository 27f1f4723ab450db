"""The memory alarm (RabbitMQ's vm_memory_high_watermark) on a broker
process of the test's own.

RabbitMQ 3.10 (vm_memory_monitor.erl, rabbit_reader.erl, docs: memory.md):
while the node's resident memory is above the watermark, connections that
publish are blocked (`connection.blocked`, reason "low on memory", to a
client that takes it) and no longer read; consumers keep going; when the
memory falls below it they get `connection.unblocked`. `rabbitmqctl
check_local_alarms` and `status` name the alarm meanwhile.

The broker is started twice: first to measure its idle resident memory,
then with an absolute watermark that much plus WATERMARK_HEADROOM, so the
test means the same at 1 and 3 shards (WARREN_SHARDS). A publisher floods
transient messages into queues nobody consumes from while another thread
samples the process's VmRSS: its peak may not exceed the watermark by more
than 25% (the monitor must notice the flood in time). Then a consumer
drains the queues, the memory must fall back below the watermark (the
allocator must give the freed memory back) and the publisher be unblocked.

Marked ``needs_warren_process`` (skipped with WARREN_TEST_URL).
"""

import os
import re
import subprocess
import threading
import time

import pika
import pytest

from ctl_util import strip_ansi, wait_until
from test_broker_process import Warren, tmpdir_warren, warren_binary  # noqa: F401 (a fixture)

pytestmark = pytest.mark.needs_warren_process

MIB = 1 << 20
WATERMARK_HEADROOM = 64 * MIB
QUEUES = 6
BODY = b"m" * (32 * 1024)
# The flood is bounded, in case the alarm never comes.
FLOOD_LIMIT = 4 * WATERMARK_HEADROOM


class MemoryWarren(Warren):
    """A Warren started with a memory high watermark."""

    def __init__(self, tmp, watermark=None, **kw):
        super().__init__(tmp, **kw)
        self.watermark = watermark

    def start(self):
        # Warren.start's command with the watermark added.
        cmd = [warren_binary(), "serve", "--port", str(self.port),
               "--shards", os.environ.get("WARREN_SHARDS", "3"),
               "--data-dir", self.data_dir, "--log", "info",
               "--management-port", "0", "--prometheus-port", "0",
               "--bind", self.bind]
        if self.watermark is not None:
            cmd += ["--vm-memory-high-watermark", str(self.watermark)]
        self.cmd = cmd
        with open(self.log_path, "ab") as err, open(self.out_path, "ab") as out:
            self.log_offset = err.tell()
            self.started_at = time.monotonic()
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, cwd=self.tmp)
        return self


def vm_rss(pid):
    """VmRSS of a process in bytes (None once it is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class RssSampler(threading.Thread):
    """Samples a process's VmRSS every few milliseconds; keeps the peak."""

    def __init__(self, pid, interval=0.002):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak = 0
        self.last = 0
        self.samples = 0
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            rss = vm_rss(self.pid)
            if rss is None:
                return
            self.last = rss
            self.peak = max(self.peak, rss)
            self.samples += 1
            time.sleep(self.interval)

    def stop(self):
        self.stopping.set()
        self.join(timeout=5)


def connect(w):
    return pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=w.port, credentials=pika.PlainCredentials("guest", "guest"),
        connection_attempts=1, socket_timeout=10, heartbeat=0))


def wctl(w, *args):
    cmd = [warren_binary(), "ctl", "--data-dir", w.data_dir] + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def ctl_ready(w):
    wait_until(lambda: wctl(w, "ping").returncode == 0, timeout=15, what="ctl ping")


def idle_rss(w):
    """The broker's resident memory once it served a connection and settled."""
    conn = connect(w)
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, BODY)
    assert ch.basic_get(q, auto_ack=True)[2] == BODY
    conn.close()
    time.sleep(0.5)
    return vm_rss(w.proc.pid)


class Publisher(threading.Thread):
    """Floods transient messages round-robin into the queues until the
    broker blocks the connection; keeps serving the connection (so the
    unblocked notice is seen) until told to stop.

    An asynchronous connection (its own I/O loop in this thread): a
    BlockingConnection's publish waits until its socket takes the message,
    and it hears connection.blocked only between publishes, so once the
    broker stops reading a socket that was already full it never would."""

    # What may wait in the client's own buffer before it stops publishing
    # for a moment (the socket's buffers come on top).
    WRITE_BACKLOG = 256 * 1024

    def __init__(self, w, queues):
        super().__init__(daemon=True)
        self.w, self.queues = w, queues
        self.blocked = []        # reasons, in order
        self.unblocked = 0
        self.published = 0
        self.blocked_at = None
        self.error = None
        self.stopping = threading.Event()
        self.ready = threading.Event()
        self.flood_done = threading.Event()
        self.conn = self.ch = None
        self.props = pika.BasicProperties(delivery_mode=1)

    def on_blocked(self, _conn, frame):
        self.blocked.append(frame.method.reason)
        if self.blocked_at is None:
            self.blocked_at = self.published
            self.flood_s = time.monotonic() - self.started

    def on_unblocked(self, _conn, _frame):
        self.unblocked += 1

    def run(self):
        try:
            params = pika.ConnectionParameters(
                host="127.0.0.1", port=self.w.port, heartbeat=0, connection_attempts=1,
                credentials=pika.PlainCredentials("guest", "guest"))
            self.conn = pika.SelectConnection(
                params, on_open_callback=self.on_open, on_open_error_callback=self.on_failed,
                on_close_callback=self.on_closed)
            self.conn.add_on_connection_blocked_callback(self.on_blocked)
            self.conn.add_on_connection_unblocked_callback(self.on_unblocked)
            self.conn.ioloop.start()
        except Exception as e:  # noqa: BLE001 (reported by the test)
            self.error = e
        finally:
            self.ready.set()
            self.flood_done.set()

    def on_open(self, conn):
        conn.channel(on_open_callback=self.on_channel)

    def on_failed(self, _conn, err):
        self.error = err
        self.conn.ioloop.stop()

    def on_closed(self, _conn, reason):
        if not self.stopping.is_set():
            self.error = reason
        self.conn.ioloop.stop()

    def on_channel(self, ch):
        self.ch = ch
        self.started = time.monotonic()
        self.ready.set()
        self.tick()

    def tick(self):
        if self.stopping.is_set():
            self.conn.close()
            return
        if self.blocked or self.published * len(BODY) > FLOOD_LIMIT:
            self.flood_done.set()
            self.conn.ioloop.call_later(0.02, self.tick)
            return
        if self.conn._get_write_buffer_size() < self.WRITE_BACKLOG:
            for _ in range(8):
                q = self.queues[self.published % len(self.queues)]
                self.ch.basic_publish("", q, BODY, self.props)
                self.published += 1
        self.conn.ioloop.call_later(0, self.tick)


def test_memory_alarm_blocks_publishers_and_clears_after_draining(tmpdir_warren):
    # 1. The idle resident memory of this build at this shard count.
    probe = MemoryWarren(tmpdir_warren().tmp).start()
    try:
        probe.wait_accepting(timeout=15)
        idle = idle_rss(probe)
    finally:
        assert probe.stop() == 0
    watermark = idle + WATERMARK_HEADROOM

    # 2. The broker with that watermark.
    # A fresh data directory, as the probe had (a restarted broker maps
    # the segments it recovers, which counts in its resident memory).
    w = MemoryWarren(probe.tmp, watermark=watermark, port=probe.port,
                     data_dir=os.path.join(probe.tmp, "data-watermark"))
    w.start()
    try:
        w.wait_accepting(timeout=15)
        ctl_ready(w)
        run_flood(w, idle, watermark)
    finally:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait(timeout=10)


def run_flood(w, idle, watermark):
    log = strip_ansi(w.log(since_start=True))
    assert "Memory high watermark set to %d MiB (%d bytes)" % (watermark // MIB, watermark) in log, log
    r = wctl(w, "status")
    assert r.returncode == 0, r.stderr
    status = strip_ansi(r.stdout)
    gb = "%s gb" % round(watermark / 1e9, 4)
    assert "Memory high watermark setting: %s, computed to: %s" % (gb, gb) in status, status
    assert wctl(w, "check_local_alarms").returncode == 0

    admin = connect(w)
    ch = admin.channel()
    queues = ["mem-flood-%d" % i for i in range(QUEUES)]
    for q in queues:
        ch.queue_declare(q)

    sampler = RssSampler(w.proc.pid)
    sampler.start()
    pub = Publisher(w, queues)
    pub.start()
    assert pub.ready.wait(15) and pub.error is None, pub.error
    try:
        wait_until(lambda: pub.blocked or pub.error or not pub.is_alive(), timeout=60,
                   interval=0.01, what="connection.blocked (%d messages published)"
                   % pub.published)
        assert pub.error is None, pub.error
        assert pub.blocked == ["low on memory"], (pub.blocked, pub.published)
        sent = pub.published * len(BODY)
        assert sent > WATERMARK_HEADROOM / 2, "blocked after %d bytes only" % sent

        # The alarm while it is set: the log (once), ctl.
        log = strip_ansi(w.log(since_start=True))
        assert log.count("memory resource limit alarm set on node") >= 1, log
        r = wctl(w, "check_local_alarms")
        assert r.returncode != 0
        assert re.search(r"Memory alarm on node \S+", r.stdout + r.stderr), (r.stdout, r.stderr)
        status = strip_ansi(wctl(w, "status").stdout)
        assert re.search(r"Alarms\n\nMemory alarm on node \S+\n", status), status

        # Nothing more gets in while blocked: the memory stays near the mark.
        time.sleep(0.5)
        peak = sampler.peak
        print("idle %.1f MiB, watermark %.1f MiB, peak %.1f MiB (%+.1f%%), %d messages "
              "(%.1f MiB, %.0f MiB/s) before blocked, %d RSS samples"
              % (idle / MIB, watermark / MIB, peak / MIB, 100.0 * (peak - watermark) / watermark,
                 pub.blocked_at, pub.blocked_at * len(BODY) / MIB,
                 pub.blocked_at * len(BODY) / MIB / pub.flood_s, sampler.samples))
        assert peak <= watermark * 1.25, (
            "RSS peaked at %.1f MiB, watermark %.1f MiB (idle %.1f MiB, %d messages)"
            % (peak / MIB, watermark / MIB, idle / MIB, pub.published))

        # Consumers keep going: drain every queue, including what the
        # publisher's socket still held when it was blocked (read once the
        # alarm clears: the memory may then cross the mark again, and block
        # it again, as with RabbitMQ).
        assert pub.flood_done.wait(10)
        published = pub.published
        got = [0]

        def on_message(c, method, _props, body):
            got[0] += 1

        for q in queues:
            ch.basic_consume(q, on_message, auto_ack=True)
        deadline = time.monotonic() + 60
        while got[0] < published:
            assert time.monotonic() < deadline, "drained %d of %d" % (got[0], published)
            admin.process_data_events(0.1)
        assert pub.error is None, pub.error

        # The memory falls below the mark, the alarm clears, the publisher
        # hears so.
        wait_until(lambda: pub.unblocked and pub.unblocked == len(pub.blocked), timeout=20,
                   what="connection.unblocked (RSS now %.1f MiB, watermark %.1f MiB)"
                   % (sampler.last / MIB, watermark / MIB))
        assert set(pub.blocked) == {"low on memory"}, pub.blocked
        print("after draining: RSS %.1f MiB, blocked %d time(s)"
              % (sampler.last / MIB, len(pub.blocked)))
        wait_until(lambda: wctl(w, "check_local_alarms").returncode == 0, timeout=10,
                   what="check_local_alarms passing")
        assert vm_rss(w.proc.pid) <= watermark
        log = strip_ansi(w.log(since_start=True))
        sets = log.count("memory resource limit alarm set on node")
        assert sets >= 1 and log.count("memory resource limit alarm cleared on node") == sets, log
        assert "Alarms\n\n(none)" in strip_ansi(wctl(w, "status").stdout)

        # Publishing works again.
        ch.confirm_delivery()
        ch.basic_publish("", queues[0], b"after")
    finally:
        pub.stopping.set()
        pub.join(timeout=10)
        sampler.stop()
        try:
            admin.close()
        except Exception:  # noqa: BLE001
            pass
    assert sampler.peak <= watermark * 1.25
