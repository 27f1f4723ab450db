"""Tests that start their own Warren processes: listening addresses (IPv6,
dual stack), repeated restarts on one port and data directory, and what
goes into the log.

All marked ``needs_warren_process`` (skipped with WARREN_TEST_URL). The
binary is WARREN_BIN (else target/release/warren, else target/debug/warren),
run with ``--shards $WARREN_SHARDS`` (default 3), a temporary data
directory and a free port. Clients connect to loopback addresses only.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pika
import pytest

import amqp_raw as raw

pytestmark = pytest.mark.needs_warren_process

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))


def warren_binary():
    b = os.environ.get("WARREN_BIN")
    if not b:
        for profile in ("release", "debug"):
            p = os.path.join(REPO_ROOT, "target", profile, "warren")
            if os.path.exists(p):
                b = p
                break
        else:
            b = os.path.join(REPO_ROOT, "target", "release", "warren")
    if not os.path.isabs(b):
        b = os.path.join(REPO_ROOT, b)
    if not os.path.exists(b):
        pytest.fail("broker binary not found: %s (set WARREN_BIN)" % b, pytrace=False)
    return b


def ipv6_loopback_usable():
    if not socket.has_ipv6:
        return False
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            s.bind(("::1", 0))
        finally:
            s.close()
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not ipv6_loopback_usable(),
                                reason="no IPv6 here (socket.has_ipv6 false or ::1 not bindable)")


def free_port(dual=False):
    """A port free on 127.0.0.1 (and, with dual, on :: as well)."""
    if dual:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        addr = ("::", 0)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        addr = ("127.0.0.1", 0)
    try:
        s.bind(addr)
        return s.getsockname()[1]
    finally:
        s.close()


def strip_ansi(text):
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


class Warren:
    """One broker process with its stderr (and stdout) in files."""

    def __init__(self, tmp, port=None, bind="127.0.0.1", data_dir=None, dual=False):
        self.tmp = tmp
        self.port = port or free_port(dual=dual)
        self.bind = bind
        self.data_dir = data_dir or os.path.join(tmp, "data")
        self.log_path = os.path.join(tmp, "stderr-%d.log" % self.port)
        self.out_path = os.path.join(tmp, "stdout-%d.log" % self.port)
        self.proc = None
        self.started_at = None

    def start(self):
        cmd = [warren_binary(), "serve", "--port", str(self.port),
               "--shards", os.environ.get("WARREN_SHARDS", "3"),
               "--data-dir", self.data_dir, "--log", "info",
               "--management-port", "0", "--prometheus-port", "0"]
        if self.bind is not None:
            cmd += ["--bind", self.bind]
        self.cmd = cmd
        # appending: one log over all the starts of a restart test
        with open(self.log_path, "ab") as err, open(self.out_path, "ab") as out:
            self.log_offset = err.tell()
            self.started_at = time.monotonic()
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, cwd=self.tmp)
        return self

    def log(self, since_start=False):
        try:
            with open(self.log_path, "rb") as f:
                if since_start:
                    f.seek(self.log_offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_accepting(self, host="127.0.0.1", timeout=5.0, family=None, label=""):
        """Seconds from spawn until an AMQP handshake as guest succeeds; fails
        the test (with the log) if not within timeout or the process exits."""
        deadline = self.started_at + timeout
        last = None
        while True:
            if self.proc.poll() is not None:
                pytest.fail("%swarren exited with %r before accepting connections\n"
                            "command: %s\n--- stderr ---\n%s" % (
                                label, self.proc.returncode, " ".join(self.cmd),
                                strip_ansi(self.log(since_start=True))[-5000:]),
                            pytrace=False)
            try:
                c = raw.connect(host, self.port, timeout=1.0, family=family)
                c.send(raw.connection_close())
                c.close()
                return time.monotonic() - self.started_at
            except (OSError, raw.Closed, raw.Reset, AssertionError) as e:
                last = e
            if time.monotonic() > deadline:
                pytest.fail("%swarren did not accept an AMQP connection on %s:%d within %.0f s "
                            "(last error %r)\n--- stderr ---\n%s" % (
                                label, host, self.port, timeout, last,
                                strip_ansi(self.log(since_start=True))[-5000:]),
                            pytrace=False)
            time.sleep(0.05)

    def stop(self, timeout=10.0):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            pytest.fail("warren did not exit within %.0f s of SIGTERM\n--- stderr ---\n%s"
                        % (timeout, self.log()[-5000:]), pytrace=False)


@pytest.fixture
def tmpdir_warren():
    d = tempfile.mkdtemp(prefix="warren-proc-")
    procs = []

    def make(**kw):
        w = Warren(d, **kw)
        procs.append(w)
        return w
    yield make
    for w in procs:
        if w.proc is not None and w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait(timeout=10)
    if os.environ.get("WARREN_KEEP_DATA") != "1":
        shutil.rmtree(d, ignore_errors=True)


def pika_roundtrip(host, port):
    """Log in as guest over (host, port), declare a queue, publish, get."""
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        host=host, port=port, credentials=pika.PlainCredentials("guest", "guest"),
        connection_attempts=1, socket_timeout=5))
    try:
        ch = conn.channel()
        q = ch.queue_declare("", exclusive=True).method.queue
        ch.confirm_delivery()
        ch.basic_publish("", q, b"via " + host.encode())
        m, _, body = ch.basic_get(q, auto_ack=True)
        assert body == b"via " + host.encode()
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# 5. IPv6 and the default (dual-stack) listener
# ---------------------------------------------------------------------------

@needs_ipv6
def test_bind_ipv6_wildcard_accepts_ipv4_and_ipv6_loopback(tmpdir_warren):
    w = tmpdir_warren(bind="::", dual=True).start()
    w.wait_accepting("127.0.0.1")
    pika_roundtrip("127.0.0.1", w.port)     # guest from ::ffff:127.0.0.1 is loopback
    pika_roundtrip("::1", w.port)
    assert w.stop() == 0


@needs_ipv6
def test_default_bind_is_dual_stack(tmpdir_warren):
    """No --bind: like RabbitMQ, listen on IPv6 and IPv4 (we connect to the
    loopback addresses only)."""
    w = tmpdir_warren(bind=None, dual=True).start()
    w.wait_accepting("127.0.0.1")
    pika_roundtrip("127.0.0.1", w.port)
    pika_roundtrip("::1", w.port)
    assert w.stop() == 0


@needs_ipv6
def test_bind_ipv6_loopback(tmpdir_warren):
    w = tmpdir_warren(bind="::1", dual=True).start()
    w.wait_accepting("::1", family=socket.AF_INET6)
    pika_roundtrip("::1", w.port)
    assert w.stop() == 0


# ---------------------------------------------------------------------------
# 11. Restarts on one port and data directory
# ---------------------------------------------------------------------------

RESTARTS = 20
HELD = 3           # connections open when SIGTERM comes
TRANSIENT = 24     # connections that come and go in each run


def test_restart_twenty_times_same_port_and_data_dir(tmpdir_warren):
    w = tmpdir_warren()
    held_from_last_run = []
    startup_times = []
    try:
        for i in range(RESTARTS):
            w.start()
            secs = w.wait_accepting(timeout=5.0, label="start %d of %d: " % (i + 1, RESTARTS))
            startup_times.append(secs)
            log = w.log(since_start=True)
            for bad in ("address already in use", "cannot listen"):
                assert bad not in log.lower(), "start %d: %s" % (i + 1, log[-3000:])
            # the previous run's clients notice only now that it went away
            for c in held_from_last_run:
                c.close()
            held_from_last_run = []
            for j in range(TRANSIENT):
                c = raw.connect("127.0.0.1", w.port, timeout=5)
                c.open_channel(1)
                c.send(raw.queue_declare(1, "", exclusive=True))
                c.expect(50, 11)
                if j % 3 == 0:
                    c.close()                      # just drop the socket
                else:
                    c.send(raw.connection_close())
                    c.expect(10, 51)
                    c.close()
            for j in range(HELD):
                c = raw.connect("127.0.0.1", w.port, heartbeat=30, timeout=5)
                c.open_channel(1)
                c.send(raw.queue_declare(1, "", exclusive=True))
                c.expect(50, 11)
                held_from_last_run.append(c)
            rc = w.stop()
            assert rc == 0, "run %d: exit status %r after SIGTERM\n%s" % (
                i + 1, rc, w.log(since_start=True)[-3000:])
    finally:
        for c in held_from_last_run:
            c.close()
    assert len(startup_times) == RESTARTS
    assert max(startup_times) < 5.0, startup_times


# ---------------------------------------------------------------------------
# 12. Log hygiene
# ---------------------------------------------------------------------------

def test_log_to_file_has_no_ansi_escapes(tmpdir_warren):
    w = tmpdir_warren().start()
    w.wait_accepting()
    # some activity that logs: a connection closed with an error, a clean one
    c = raw.connect("127.0.0.1", w.port)
    c.send(raw.basic_publish(3, "", "x", b"x"))
    c.expect(10, 50)
    c.send(raw.connection_close_ok())
    c.close()
    pika_roundtrip("127.0.0.1", w.port)
    assert w.stop() == 0
    log = w.log()
    assert "listening" in log, log[-2000:]
    assert "\x1b[" not in log, "ANSI escapes in a log written to a file:\n%r" % log[-1500:]


def test_close_ok_timeout_is_not_logged_as_missed_heartbeats(tmpdir_warren):
    """Warren closes the connection (frame on an unopened channel, 504); the
    client then says nothing, sends no close-ok, and keeps the socket open.
    Warren must close after a bounded time (RabbitMQ: min(heartbeat, 30 s)
    after its connection.close) and must not log that as missed heartbeats."""
    w = tmpdir_warren().start()
    w.wait_accepting()
    conns = {}
    for hb in (5, 0):
        c = raw.connect("127.0.0.1", w.port, heartbeat=hb)
        c.open_channel(1)
        conns[hb] = c
    sent = {}
    for hb, c in conns.items():
        c.send(raw.basic_publish(5, "", "x", b"x"))
        sent[hb] = time.monotonic()
        f = c.read_method(timeout=5)
        assert f.method == (10, 50), f
        assert raw.parse_close(f.args)[0] == 504
    closed_after = {}
    deadline = time.monotonic() + 45
    while len(closed_after) < len(conns) and time.monotonic() < deadline:
        for hb, c in conns.items():
            if hb in closed_after:
                continue
            try:
                c.read_frame(timeout=0.1)          # heartbeats may still come
            except socket.timeout:
                continue
            except (raw.Closed, raw.Reset):
                closed_after[hb] = time.monotonic() - sent[hb]
    for c in conns.values():
        c.close()
    time.sleep(0.2)
    log = w.log()
    assert w.stop() == 0
    assert set(closed_after) == {0, 5}, (
        "connections still open 45 s after connection.close, no close-ok: %r\n%s"
        % ({hb: closed_after.get(hb) for hb in conns}, log[-3000:]))
    # RabbitMQ: heartbeat 5 -> ~5 s, heartbeat 0 -> 30 s
    assert 1.0 <= closed_after[5] <= 15.0, closed_after
    assert 1.0 <= closed_after[0] <= 40.0, closed_after
    # only these two connections (and wait_accepting's clean probe) ever
    # lived on this broker: any heartbeat line is about them
    lines = strip_ansi(log).splitlines()
    heartbeat_lines = [l for l in lines if "heartbeat" in l.lower()]
    assert heartbeat_lines == [], (
        "no client missed a heartbeat; these connections never sent close-ok:\n"
        + "\n".join(heartbeat_lines))
    about_close = [l for l in lines
                   if re.search(r"close.?ok|clos\w* time|time\w* out", l, re.I)]
    assert len(about_close) >= 2, (
        "expected a log line per connection saying close-ok did not come in time:\n"
        + log[-3000:])
