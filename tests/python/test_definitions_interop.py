"""Definitions moving from Warren to RabbitMQ: Warren's export imported by
a real RabbitMQ. (The other way, a RabbitMQ 3.10 export imported by Warren,
is in test_config.py.) Runs in the parity runs, where WARREN_TEST_URL points
at a RabbitMQ and rabbitmqctl reaches it; the Warren side is a broker this
test starts."""

import json
import os
import shutil
import subprocess
import time

import pika
import pytest

from conftest import free_port
from test_broker_process import warren_binary
from test_config import login, start, wait_port, workdir  # noqa: F401 (workdir: a fixture)

def test_warren_export_imports_into_rabbitmq(workdir):
    """Warren's export_definitions, imported by a real RabbitMQ: its user
    logs in there with the password set on Warren, and the exchange, queue
    and binding route. Needs a RabbitMQ to import into: runs when
    WARREN_TEST_URL points at one (the parity runs), where rabbitmqctl
    reaches it."""
    url = os.environ.get("WARREN_TEST_URL")
    if not url or shutil.which("rabbitmqctl") is None:
        pytest.skip("needs a RabbitMQ (WARREN_TEST_URL and rabbitmqctl) to import into")
    d, _ = workdir
    port = free_port()
    data = os.path.join(d, "data")
    p, _ = start(workdir, "listeners.tcp.default = 127.0.0.1:%d\nwarren.data_dir = %s\n"
                 "warren.shards = 1\n" % (port, data))
    wait_port(p, port, workdir)
    env = dict(os.environ, WARREN_DATA_DIR=data)

    def wctl(*args):
        r = subprocess.run([warren_binary(), "ctl", "-q"] + list(args), capture_output=True,
                           text=True, timeout=30, env=env)
        assert r.returncode == 0, (args, r.stderr)
        return r

    user, vhost = "xfer_user_" + str(port), "xfer_vhost_" + str(port)
    wctl("add_user", user, "xfer-pass")
    wctl("add_vhost", vhost)
    wctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    wctl("set_policy", "-p", vhost, "--priority", "2", "--apply-to", "queues",
         "xfer_policy", "^xfer_", '{"max-length":5,"overflow":"reject-publish"}')
    c = login(port, user, "xfer-pass", vhost=vhost)
    ch = c.channel()
    ch.exchange_declare("xfer_x", "topic", durable=True)
    ch.queue_declare("xfer_q", durable=True)
    ch.queue_bind("xfer_q", "xfer_x", "k.#")
    c.close()
    defs = json.loads(wctl("export_definitions", "-").stdout)
    # Only what this test made: the RabbitMQ under test keeps its own guest.
    defs["users"] = [u for u in defs["users"] if u["name"] == user]
    defs["vhosts"] = [v for v in defs["vhosts"] if v["name"] == vhost]
    defs["permissions"] = [x for x in defs["permissions"] if x["user"] == user]
    defs["policies"] = [x for x in defs["policies"] if x["vhost"] == vhost]
    path = os.path.join(d, "for-rabbitmq.json")
    with open(path, "w") as f:
        json.dump(defs, f)
    os.chmod(d, 0o755)
    os.chmod(path, 0o644)     # the Debian wrapper reads it as the rabbitmq user
    try:
        subprocess.run(["rabbitmqctl", "import_definitions", path], check=True,
                       capture_output=True, timeout=60)
        deadline = time.monotonic() + 20     # RabbitMQ's import is asynchronous
        while True:
            try:
                target = pika.URLParameters(url)
                c = pika.BlockingConnection(pika.ConnectionParameters(
                    host=target.host, port=target.port, virtual_host=vhost,
                    credentials=pika.PlainCredentials(user, "xfer-pass"),
                    connection_attempts=1, socket_timeout=5))
                break
            except pika.exceptions.AMQPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        ch = c.channel()
        ch.confirm_delivery()
        ch.basic_publish("xfer_x", "k.a", b"defined on Warren")
        assert ch.basic_get("xfer_q", auto_ack=True)[2] == b"defined on Warren"
        c.close()
        listed = subprocess.run(["rabbitmqctl", "list_policies", "-p", vhost, "-s"],
                                check=True, capture_output=True, text=True, timeout=60)
        assert listed.stdout == ('%s\txfer_policy\t^xfer_\tqueues\t'
                                 '{"max-length":5,"overflow":"reject-publish"}\t2\n' % vhost)
    finally:
        subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True, timeout=60)
        subprocess.run(["rabbitmqctl", "delete_user", user], capture_output=True, timeout=60)
