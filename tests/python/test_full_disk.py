"""No confirm without storage (issue 10, item 8).

The broker's data directory lives on a small tmpfs that really fills up,
mounted in a private mount namespace the test makes (so nothing outside it
sees the mount, and it goes away with the namespace). Persistent messages
are published with confirms until nacks come; then the file system is
filled to the last byte, plain and transactional publishes and a durable
declare must fail loudly, the broker must survive, and a restart on the
still-full disk must come up with every acked message and nothing that was
refused.

Needs root (mount namespaces and tmpfs); a machine without it says so.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pika
import pika.exceptions as pex
import pytest

from conftest import REPO_ROOT, _default_bin, free_port

pytestmark = pytest.mark.needs_warren_process

FS_SIZE = "24m"
BODY = 64 * 1024


def _ns_available():
    if os.geteuid() != 0:
        return "needs root for a private mount namespace and a tmpfs"
    if not shutil.which("unshare") or not shutil.which("nsenter"):
        return "needs unshare and nsenter (util-linux)"
    return None


class SmallDisk:
    """A tmpfs of FS_SIZE at `path`, visible only inside its namespace."""

    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="warren-fulldisk-")
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sleep", "infinity"])
        deadline = time.monotonic() + 5
        own = os.readlink("/proc/self/ns/mnt")
        while os.readlink("/proc/%d/ns/mnt" % self.holder.pid) == own:
            assert time.monotonic() < deadline, "unshare made no mount namespace"
            time.sleep(0.01)
        self.run(["mount", "-t", "tmpfs", "-o", "size=" + FS_SIZE, "tmpfs", self.path])

    def prefix(self):
        return ["nsenter", "-t", str(self.holder.pid), "-m", "--"]

    def run(self, cmd, check=True):
        return subprocess.run(self.prefix() + cmd, check=check,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def fill(self):
        """Takes every free byte left (dd stops at ENOSPC)."""
        self.run(["dd", "if=/dev/zero", "of=" + os.path.join(self.path, "filler"),
                  "bs=4k"], check=False)
        out = self.run(["df", "-B1", "--output=avail", self.path]).stdout.decode()
        return int(out.split()[-1])

    def close(self):
        self.holder.kill()
        self.holder.wait()
        shutil.rmtree(self.path, ignore_errors=True)


class Broker:
    def __init__(self, disk, shards):
        self.disk = disk
        self.shards = shards
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="warren-fulldisk-", suffix=".log",
                                               delete=False)
        self.proc = None

    def start(self, disk_free_limit="0"):
        binary = os.path.join(REPO_ROOT, os.environ.get("WARREN_BIN") or _default_bin())
        cmd = self.disk.prefix() + [
            binary, "serve",
            "--port", str(self.port), "--bind", "127.0.0.1",
            "--shards", str(self.shards),
            "--data-dir", os.path.join(self.disk.path, "data"),
            "--segment-size", "4MiB", "--disk-free-limit", disk_free_limit, "--log", "info",
            "--management-port", "0", "--prometheus-port", "0"]
        self.log.write(("==== %s\n" % " ".join(cmd)).encode())
        self.log.flush()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "broker exited (%s):\n%s" % (
                self.proc.returncode, self.text())
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.5) as s:
                    s.sendall(b"AMQP\x00\x00\x09\x01")
                    if s.recv(1) == b"\x01":
                        return
            except OSError:
                pass
            time.sleep(0.05)
        pytest.fail("broker did not come up:\n" + self.text())

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=15) == 0, self.text()

    def text(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def connect(self):
        return pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", self.port, connection_attempts=1, socket_timeout=10,
            blocked_connection_timeout=30))


@pytest.fixture
def disk():
    why = _ns_available()
    if why:
        pytest.skip(why)
    d = SmallDisk()
    yield d
    d.close()


PERSISTENT = pika.BasicProperties(delivery_mode=2)


@pytest.fixture
def full_broker(disk):
    b = Broker(disk, int(os.environ.get("WARREN_SHARDS", "3")))
    yield b
    if b.proc and b.proc.poll() is None:
        b.proc.kill()
        b.proc.wait()
    os.unlink(b.log.name)


@pytest.mark.timeout(180)
def test_a_full_disk_gets_nacks_not_confirms_and_loses_nothing_acked(full_broker, disk):
    broker = full_broker
    broker.start()
    queues = ["full.q%d" % i for i in range(3)]  # spread over the shards
    conn = broker.connect()
    ch = conn.channel()
    for q in queues:
        ch.queue_declare(q, durable=True)
    ch.confirm_delivery()
    acked, nacked = set(), set()
    n = 0
    while len(nacked) < 10 and n < 2000:
        body = b"%08d" % n + b"x" * (BODY - 8)
        try:
            ch.basic_publish("", queues[n % 3], body, PERSISTENT)
            acked.add(n)
        except pex.NackError:
            nacked.add(n)
        n += 1
        assert broker.proc.poll() is None, "broker died:\n" + broker.text()
    assert nacked, "%d publishes into a %s file system and never a nack" % (n, FS_SIZE)
    assert acked, "nothing was ever confirmed"
    assert "message log: appending failed: No space left on device" in broker.text()
    conn.close()

    # Every byte gone: definitions cannot be written either.
    assert disk.fill() < 4096
    conn = broker.connect()
    # (Arguments big enough not to fit the last page of the file.)
    pad = {"x-pad": "d" * 16384}
    with pytest.raises(pex.ConnectionClosedByBroker) as e:
        conn.channel().queue_declare("full.new", durable=True, arguments=pad)
    assert e.value.reply_code == 541, e.value
    # A plain persistent publish that cannot be stored costs the
    # connection (once the segment a shard has open is full too).
    conn = broker.connect()
    ch = conn.channel()
    with pytest.raises(pex.ConnectionClosedByBroker) as e:
        for _ in range(200):
            ch.basic_publish("", queues[0], b"p" * BODY, PERSISTENT)
            time.sleep(0.005)
    assert e.value.reply_code == 541, e.value
    # A transaction with a message that cannot be stored does not commit.
    conn = broker.connect()
    ch = conn.channel()
    ch.tx_select()
    for _ in range(100):  # more than a segment holds
        ch.basic_publish("", queues[1], b"t" * BODY, PERSISTENT)
    with pytest.raises(pex.ConnectionClosedByBroker) as e:
        ch.tx_commit()
    assert e.value.reply_code == 541, e.value
    assert broker.proc.poll() is None, "broker died:\n" + broker.text()

    # A restart on the full disk comes up, with what was acked, and (with
    # a free-space limit) the disk alarm set; consumers still drain.
    broker.stop()
    broker.start(disk_free_limit="1MB")
    deadline = time.monotonic() + 5
    while "disk resource limit alarm set" not in broker.text():
        assert time.monotonic() < deadline, "no disk alarm on a full disk:\n" + broker.text()
        time.sleep(0.05)
    conn = broker.connect()
    ch = conn.channel()
    with pytest.raises(pex.ChannelClosedByBroker) as e:
        ch.queue_declare("full.new", passive=True)
    assert e.value.reply_code == 404, "a declare that failed to store came back"
    ch = conn.channel()
    got = []  # confirm-mode numbers; None for plain and tx messages
    for q in queues:
        while True:
            m, _, body = ch.basic_get(q, auto_ack=True)
            if m is None:
                break
            assert len(body) == BODY
            if body[:8].isdigit():
                assert body[8:] == b"x" * (BODY - 8), "a confirm-mode message changed"
                got.append(int(body[:8]))
            else:
                assert body in (b"p" * BODY, b"t" * BODY), "a stranger message"
                got.append(None)
    # (Plain and tx publishes stored before the disk ran out are there.)
    delivered = set(g for g in got if g is not None)
    assert acked <= delivered, "acked but lost: %s" % sorted(acked - delivered)[:10]
    assert not (delivered & nacked), "nacked yet stored: %s" % sorted(delivered & nacked)[:10]
    numbered = [g for g in got if g is not None]
    assert len(numbered) == len(delivered), "a message came back twice"
    conn.close()
    broker.stop()
