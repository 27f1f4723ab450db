"""The configuration file (RabbitMQ's rabbitmq.conf format) and
load_definitions, on brokers these tests start themselves; and a
definitions file exported from RabbitMQ 3.10 imported with `warren ctl`.

Warren only (they start processes with their own files)."""

import copy
import json
import os
import shutil
import subprocess
import tempfile
import time

import pika
import pytest

from conftest import free_port, port_open
from test_broker_process import warren_binary

pytestmark = pytest.mark.needs_warren_process

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "..", "fixtures", "rabbitmq-3.10-definitions.json")
# The fixture's user, exported by RabbitMQ 3.10.8 with this password.
FIXTURE_USER, FIXTURE_PASS, FIXTURE_VHOST = "defs_fixture_user", "fixture-pass", "defs_fixture_vhost"


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="warren-conf-")
    procs = []
    yield d, procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)
    shutil.rmtree(d, ignore_errors=True)


def start(workdir, conf_text, extra_env=None, expect_up=True):
    d, procs = workdir
    conf = os.path.join(d, "warren.conf")
    with open(conf, "w") as f:
        f.write(conf_text)
        # The HTTP listeners' fixed default ports would collide with other
        # brokers on this machine; a test about them names its own.
        if "management.tcp.port" not in conf_text:
            f.write("\nmanagement.tcp.port = 0\n")
        if "prometheus.tcp.port" not in conf_text:
            f.write("prometheus.tcp.port = 0\n")
    env = dict(os.environ)
    env.pop("WARREN_DATA_DIR", None)
    env.update(extra_env or {})
    err = open(os.path.join(d, "stderr.log"), "wb")
    p = subprocess.Popen([warren_binary(), "serve", "--config", conf], stdout=subprocess.DEVNULL,
                         stderr=err, stdin=subprocess.DEVNULL, env=env)
    err.close()
    procs.append(p)
    return p, conf


def stderr_of(workdir):
    with open(os.path.join(workdir[0], "stderr.log"), errors="replace") as f:
        return f.read()


def wait_port(p, port, workdir, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.poll() is not None:
            pytest.fail("broker exited %s:\n%s" % (p.returncode, stderr_of(workdir)))
        if port_open("127.0.0.1", port, timeout=0.2):
            return
        time.sleep(0.05)
    pytest.fail("broker did not listen on %d:\n%s" % (port, stderr_of(workdir)))


def login(port, user, password, vhost="/"):
    return pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=port, virtual_host=vhost,
        credentials=pika.PlainCredentials(user, password), connection_attempts=1,
        socket_timeout=5))


def test_unknown_key_stops_the_start_with_file_and_line(workdir):
    p, conf = start(workdir, "# a comment\nwarren.shards = 1\nno_such.setting = 3\n")
    assert p.wait(timeout=15) == 2
    err = stderr_of(workdir)
    assert "%s:3: " % conf in err and "no_such.setting" in err, err


def test_bad_value_stops_the_start(workdir):
    p, conf = start(workdir, "heartbeat = soon\n")
    assert p.wait(timeout=15) == 2
    err = stderr_of(workdir)
    assert "%s:1: " % conf in err and "heartbeat" in err, err


def test_file_sets_listener_defaults_and_data_dir(workdir):
    d, _ = workdir
    port = free_port()
    data = os.path.join(d, "data")
    p, conf = start(workdir, (
        "listeners.tcp.default = 127.0.0.1:%d\n"
        "warren.data_dir = %s\n"
        "warren.shards = 1\n"
        "default_user = boss\n"
        "default_pass = pw1\n"
        "default_vhost = apps\n"
        "default_user_tags.monitoring = true\n"
        "heartbeat = 7\n") % (port, data))
    wait_port(p, port, workdir)
    assert os.path.exists(os.path.join(data, "warren-ctl.sock"))
    c = login(port, "boss", "pw1", vhost="apps")
    assert c._impl.params.heartbeat == 7      # what connection.tune proposed
    c.close()
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        login(port, "guest", "guest", vhost="apps")   # no guest on this broker
    # `warren ctl` finds the broker through the same file.
    env = dict(os.environ, WARREN_CONFIG_FILE=conf)
    env.pop("WARREN_DATA_DIR", None)
    r = subprocess.run([warren_binary(), "ctl", "list_users", "-s"], capture_output=True,
                       text=True, timeout=30, env=env)
    assert (r.returncode, r.stdout) == (0, "boss\t[monitoring]\n"), r.stderr
    p.terminate()
    assert p.wait(timeout=15) == 0


def test_load_definitions_at_boot_imports_a_rabbitmq_export(workdir):
    d, _ = workdir
    port = free_port()
    defs = os.path.join(d, "defs.json")
    shutil.copy(FIXTURE, defs)
    p, _ = start(workdir, (
        "listeners.tcp.default = 127.0.0.1:%d\nwarren.data_dir = %s\nwarren.shards = 1\n"
        "load_definitions = %s\n") % (port, os.path.join(d, "data"), defs))
    wait_port(p, port, workdir)
    c = login(port, FIXTURE_USER, FIXTURE_PASS, vhost=FIXTURE_VHOST)
    ch = c.channel()
    assert ch.queue_declare("defs_fixture_q", passive=True).method.message_count == 0
    ch.confirm_delivery()
    ch.basic_publish("defs_fixture_x", "a.b", b"routed by the imported binding")
    assert ch.basic_get("defs_fixture_q", auto_ack=True)[2] == b"routed by the imported binding"
    # The queue with a length limit is there with its arguments (a
    # redeclaration with others would be refused).
    ch.queue_declare("defs_fixture_q_args", durable=True,
                     arguments={"x-max-length": 10, "x-overflow": "reject-publish"})
    c.close()
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        login(port, FIXTURE_USER, "wrong", vhost=FIXTURE_VHOST)


def test_load_definitions_failure_stops_the_start(workdir):
    d, _ = workdir
    p, _ = start(workdir, "warren.data_dir = %s\nwarren.shards = 1\nload_definitions = %s\n"
                 "listeners.tcp.default = 127.0.0.1:%d\n" % (
                     os.path.join(d, "data"), os.path.join(d, "missing.json"), free_port()))
    assert p.wait(timeout=15) == 1
    assert "load_definitions" in stderr_of(workdir)


def test_import_rabbitmq_export_with_ctl(broker, ctl):
    """The real 3.10.8 export imports whole: queues with their arguments,
    the policy; the exported user logs in with its old password."""
    r = ctl("import_definitions", os.path.abspath(FIXTURE), check=False)
    try:
        assert r.returncode == 0, (r.stdout, r.stderr)
        c = login(broker.port, FIXTURE_USER, FIXTURE_PASS, vhost=FIXTURE_VHOST)
        ch = c.channel()
        ch.queue_declare("defs_fixture_q", passive=True)
        ch.queue_declare("defs_fixture_q_args", durable=True,
                         arguments={"x-max-length": 10, "x-overflow": "reject-publish"})
        policies = ctl("list_policies", "-p", FIXTURE_VHOST, "-s").stdout
        assert "defs_fixture_policy\t^defs_fixture_\tqueues" in policies, policies
        c.close()
        users = ctl("list_users", "-s").stdout
        assert "%s\t[administrator]" % FIXTURE_USER in users, users
    finally:
        ctl("delete_vhost", FIXTURE_VHOST, check=False)
        for u in ("defs_fixture_user", "defs_fixture_np"):
            ctl("delete_user", u, check=False)

