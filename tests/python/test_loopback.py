"""guest may log in from loopback only (RabbitMQ's default loopback_users =
[<<"guest">>]), checked from a real non-loopback address.

The test makes a network namespace of its own (root and `ip netns`
needed, else it is skipped saying why), gives it `lo` and 10.213.0.1/24 (on
a dummy interface; where the kernel has no dummy driver, a veth pair inside
the namespace, else `lo` itself), and runs a Warren there listening on all
interfaces. Clients inside the namespace connect to 10.213.0.1: the
broker sees a peer that is not loopback. Nothing outside the namespace is
ever connected to.

What the client gets comes from rabbit_reader.erl (3.10.8) auth_phase/2 and
auth_fail/5: a loopback-only user from elsewhere fails like a bad password.
The log gets "user 'guest' can only connect via localhost"; a client that
announced the authentication_failure_close capability (pika does) gets
connection.close 403 "ACCESS_REFUSED - Login was refused using
authentication mechanism PLAIN. For details see the broker logfile."
(otherwise the socket is just closed). Could not be run against RabbitMQ
(that would mean connecting to a non-loopback address of this machine),
hence Warren-only (needs_warren_process).

Not covered yet: other users made loopback-only through the config file's
loopback_users.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import short_id
from ctl_util import close_reason_from_repr, strip_ansi
from test_broker_process import warren_binary

pytestmark = pytest.mark.needs_warren_process

ADDR = "10.213.0.1"
PORT = 5672          # inside the namespace: nothing else listens there
LOGIN_REFUSED = ("ACCESS_REFUSED - Login was refused using authentication mechanism "
                 "PLAIN. For details see the broker logfile.")

CLIENT = r'''
import json, socket, sys, time
import pika, pika.exceptions as pex

port = int(sys.argv[1])
attempts = json.loads(sys.argv[2])

def wait_port(host, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)

def attempt(host, user, password):
    try:
        c = pika.BlockingConnection(pika.ConnectionParameters(
            host=host, port=port, credentials=pika.PlainCredentials(user, password),
            connection_attempts=1, socket_timeout=5))
    except pex.AMQPConnectionError as e:
        return {"ok": False, "type": type(e).__name__, "args": [str(a) for a in e.args]}
    try:
        local = c._impl._transport._sock.getsockname()[0]
        ch = c.channel()
        q = ch.queue_declare("", exclusive=True).method.queue
        ch.confirm_delivery()
        ch.basic_publish("", q, b"hello from " + local.encode())
        body = ch.basic_get(q, auto_ack=True)[2]
        return {"ok": True, "local": local, "body": body.decode()}
    finally:
        c.close()

out = {"ready": wait_port("127.0.0.1")}
if out["ready"]:
    out["results"] = [attempt(*a) for a in attempts]
print(json.dumps(out))
'''


def run(cmd, check=True, timeout=30):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        pytest.fail("%s -> %d\n%s%s" % (" ".join(cmd), r.returncode, r.stdout, r.stderr),
                    pytrace=False)
    return r


@pytest.fixture
def netns():
    if os.geteuid() != 0:
        pytest.skip("needs root: creates a network namespace (ip netns add)")
    ip = shutil.which("ip")
    if ip is None:
        pytest.skip("iproute2's `ip` is not installed: cannot create a network namespace")
    ns = "pytest-lb-%s" % short_id()[:8]
    r = run([ip, "netns", "add", ns], check=False)
    if r.returncode != 0:
        pytest.skip("`ip netns add` failed (no network namespaces here?): %s" % r.stderr.strip())
    try:
        run([ip, "-n", ns, "link", "set", "lo", "up"])
        how = None
        if run([ip, "-n", ns, "link", "add", "d0", "type", "dummy"], check=False).returncode == 0:
            run([ip, "-n", ns, "addr", "add", ADDR + "/24", "dev", "d0"])
            run([ip, "-n", ns, "link", "set", "d0", "up"])
            how = "dummy"
        elif run([ip, "-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1"],
                 check=False).returncode == 0:
            run([ip, "-n", ns, "addr", "add", ADDR + "/24", "dev", "v0"])
            run([ip, "-n", ns, "link", "set", "v1", "up"])
            run([ip, "-n", ns, "link", "set", "v0", "up"])
            how = "veth"
        else:
            run([ip, "-n", ns, "addr", "add", ADDR + "/24", "dev", "lo"])
            how = "lo"
        yield ip, ns, how
    finally:
        run([ip, "netns", "del", ns], check=False)


def test_guest_refused_from_non_loopback_address(netns, tmp_path):
    ip, ns, how = netns
    data = tmp_path / "data"
    log_path = tmp_path / "warren.log"
    client = tmp_path / "client.py"
    client.write_text(CLIENT)

    def in_ns(*cmd):
        return [ip, "netns", "exec", ns] + [str(c) for c in cmd]

    def ctl(*args):
        return run(in_ns(warren_binary(), "ctl", "--data-dir", data, *args))

    with open(log_path, "wb") as log:
        # no --bind: every interface, as a default RabbitMQ listens
        proc = subprocess.Popen(in_ns(warren_binary(), "serve", "--port", PORT,
                                      "--data-dir", data, "--shards", "1", "--log", "info",
                                      "--management-port", "0", "--prometheus-port", "0"),
                                stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while run(in_ns(warren_binary(), "ctl", "--data-dir", data, "ping"),
                  check=False).returncode != 0:
            assert proc.poll() is None, "warren exited with %r:\n%s" % (
                proc.returncode, strip_ansi(log_path.read_text(errors="replace"))[-3000:])
            assert time.monotonic() < deadline, "ctl ping never succeeded"
            time.sleep(0.1)
        user, password = "remote-%s" % short_id(), "pw-%s" % short_id()
        ctl("add_user", user, password)
        ctl("set_permissions", "-p", "/", user, ".*", ".*", ".*")

        attempts = [
            ["127.0.0.1", "guest", "guest"],   # loopback: allowed
            [ADDR, "guest", "guest"],          # from 10.213.0.1: refused
            [ADDR, user, password],            # another user from there: allowed
        ]
        r = run(in_ns(sys.executable, client, PORT, json.dumps(attempts)), timeout=60)
        out = json.loads(r.stdout.strip().splitlines()[-1])
        log_text = strip_ansi(log_path.read_text(errors="replace"))
        assert out["ready"], "warren never listened on 127.0.0.1:%d\n%s" % (PORT, log_text[-3000:])
        loop, remote_guest, remote_user = out["results"]

        assert loop["ok"], loop
        assert loop["body"] == "hello from 127.0.0.1"

        assert not remote_guest["ok"], "guest logged in from %s (%s address)" % (ADDR, how)
        assert remote_guest["type"] == "ProbableAuthenticationError", remote_guest
        assert close_reason_from_repr(remote_guest["args"][0]) == (403, LOGIN_REFUSED)
        assert "can only connect via localhost" in log_text, log_text[-3000:]

        assert remote_user["ok"], remote_user
        assert remote_user["local"] == ADDR
        assert remote_user["body"] == "hello from " + ADDR
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
