"""`warren ctl` verbs that stop, start or reset the broker, restarts that
must keep users, vhosts and permissions, ctl without a broker, and a
`rabbitmqctl` symlink to the binary.

All marked ``needs_warren_process`` (skipped with WARREN_TEST_URL): each
test starts a Warren of its own (test_broker_process.Warren: a temporary
data directory, a free port, --bind 127.0.0.1) so the session's broker and
a shared RabbitMQ are never stopped or reset. They could not be run against
RabbitMQ; the expected texts and codes come from rabbitmq_cli 3.10.8
(deps/rabbitmq_cli: stop_app_command.ex, start_app_command.ex,
reset_command.ex, stop_command.ex, core/validators.ex, rabbitmqctl.ex
format_validation_error/1, core/exit_codes.ex) and rabbit_reader.erl:

- stop_app: "Stopping rabbit application on node N ..."; the listeners
  stop (new TCP connections are refused) and each open connection gets
  connection.close 320 "CONNECTION_FORCED - broker forced connection
  closure with reason 'shutdown'". The node keeps answering ctl: `ping`
  succeeds; verbs that need the app (status, list_users, ...) fail with
  exit 64 "Error: this command requires the 'rabbit' app to be running on
  the target node. Start it with 'rabbitmqctl start_app'."
- start_app: "Starting node N ..."; connections are accepted again.
- reset: only while the app is stopped; while it runs: exit 64, nothing
  on stdout, "Error: this command requires the 'rabbit' app to be stopped
  on the target node. Stop it with 'rabbitmqctl stop_app'." After a reset
  only the defaults exist: user guest/guest [administrator], vhost "/",
  guest's ".*" ".*" ".*" there.
- stop: "Stopping and halting node N ..." and the process exits.
- no broker: exit 69, "Error: unable to perform an operation on node '...".
"""

import os
import re
import subprocess
import time

import pika
import pika.exceptions as pex
import pytest

from conftest import short_id
from ctl_util import out_lines, row_strings, rows, wait_until
from test_broker_process import tmpdir_warren, warren_binary  # noqa: F401 (tmpdir_warren: a fixture)
from test_semantics import drain_until

pytestmark = pytest.mark.needs_warren_process

APP_STOPPED = ("Error: this command requires the 'rabbit' app to be running on the target "
               "node. Start it with 'rabbitmqctl start_app'.")
APP_RUNNING = ("Error: this command requires the 'rabbit' app to be stopped on the target "
               "node. Stop it with 'rabbitmqctl stop_app'.")
SHUTDOWN_CLOSE = (320, "CONNECTION_FORCED - broker forced connection closure with reason "
                       "'shutdown'")
UNREACHABLE = "Error: unable to perform an operation on node '"


def wctl(w, *args, binary=None, timeout=60):
    data_dir = w if isinstance(w, str) else w.data_dir
    cmd = [binary or warren_binary(), "ctl", "--data-dir", data_dir] + [str(a) for a in args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def ok(r):
    assert r.returncode == 0, "%s -> %d\n--- stdout ---\n%s--- stderr ---\n%s" % (
        " ".join(r.args), r.returncode, r.stdout, r.stderr)
    return r


def connect(w, user="guest", password="guest", vhost="/"):
    return pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=w.port, virtual_host=vhost,
        credentials=pika.PlainCredentials(user, password),
        connection_attempts=1, socket_timeout=5))


def roundtrip(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.confirm_delivery()
    ch.basic_publish("", q, b"ping")
    assert ch.basic_get(q, auto_ack=True)[2] == b"ping"
    ch.close()


def started(make):
    w = make().start()
    w.wait_accepting(timeout=15)
    wait_until(lambda: wctl(w, "ping").returncode == 0, timeout=15, what="ctl ping")
    return w


def restart(w, kill=False):
    if kill:
        w.proc.kill()
        w.proc.wait(timeout=10)
    else:
        assert w.stop() == 0
    w.start()
    w.wait_accepting(timeout=15)
    wait_until(lambda: wctl(w, "ping").returncode == 0, timeout=15, what="ctl ping")


def test_stop_app_and_start_app(tmpdir_warren):
    w = started(tmpdir_warren)
    conn = connect(w)
    r = ok(wctl(w, "stop_app"))
    assert re.fullmatch(r"Stopping rabbit application on node \S+ \.\.\.\n", r.stdout), r.stdout

    with pytest.raises(pex.ConnectionClosedByBroker) as ei:
        drain_until(conn, lambda: False, timeout=10)
    assert (ei.value.reply_code, ei.value.reply_text) == SHUTDOWN_CLOSE
    with pytest.raises(pex.AMQPConnectionError):
        connect(w)
    assert w.proc.poll() is None, "stop_app stopped the process"

    # the node still answers ctl
    r = ok(wctl(w, "ping"))
    assert out_lines(r.stdout)[-1] == "Ping succeeded"
    for verb in ("status", "list_users"):
        r = wctl(w, verb)
        assert r.returncode == 64, r
        assert r.stderr.startswith(APP_STOPPED + "\n"), r.stderr

    r = ok(wctl(w, "start_app"))
    assert re.fullmatch(r"Starting node \S+ \.\.\.\n", r.stdout), r.stdout

    def accepts():
        try:
            return connect(w)
        except pex.AMQPConnectionError:
            return None
    c = wait_until(accepts, timeout=10, what="AMQP after start_app")
    roundtrip(c)
    c.close()
    assert ok(wctl(w, "status")).stdout.startswith("Status of node ")
    assert w.stop() == 0


def test_reset_refused_while_running(tmpdir_warren):
    w = started(tmpdir_warren)
    u = "u%s" % short_id()
    ok(wctl(w, "add_user", u, "pw"))
    conn = connect(w)
    r = wctl(w, "reset")
    assert r.returncode == 64
    assert r.stdout == ""
    assert r.stderr.startswith(APP_RUNNING + "\n"), r.stderr
    assert wctl(w, "authenticate_user", u, "pw").returncode == 0     # nothing was reset
    conn.process_data_events(time_limit=0.2)
    assert conn.is_open
    roundtrip(conn)
    conn.close()
    assert w.stop() == 0


def test_reset_after_stop_app_leaves_only_the_defaults(tmpdir_warren):
    w = started(tmpdir_warren)
    u, v, q, x = ("u%s" % short_id(), "v%s" % short_id(), "q%s" % short_id(),
                  "x%s" % short_id())
    ok(wctl(w, "add_user", u, "pw"))
    ok(wctl(w, "add_vhost", v))
    ok(wctl(w, "set_permissions", "-p", v, u, ".*", ".*", ".*"))
    ok(wctl(w, "set_user_tags", "guest", "monitoring"))
    ok(wctl(w, "change_password", "guest", "changed"))
    c = connect(w, password="changed")
    ch = c.channel()
    ch.queue_declare(q, durable=True)
    ch.exchange_declare(x, "topic", durable=True)
    ch.confirm_delivery()
    ch.basic_publish("", q, b"gone after reset", properties=pika.BasicProperties(delivery_mode=2))
    c.close()

    ok(wctl(w, "stop_app"))
    r = ok(wctl(w, "reset"))
    assert re.fullmatch(r"Resetting node \S+ \.\.\.\n", r.stdout), r.stdout
    ok(wctl(w, "start_app"))

    def check_defaults():
        assert ok(wctl(w, "list_users", "-s")).stdout == "guest\t[administrator]\n"
        assert ok(wctl(w, "list_vhosts", "-s")).stdout == "/\n"
        assert ok(wctl(w, "list_permissions", "-p", "/", "-s")).stdout == "guest\t.*\t.*\t.*\n"
        assert ok(wctl(w, "list_queues", "-p", "/", "-s")).stdout == ""
        names = {r[0] for r in rows(ok(wctl(w, "list_exchanges", "-p", "/", "-s", "name")).stdout)}
        assert x not in names and "amq.direct" in names

    check_defaults()
    c = wait_until(lambda: _try_connect(w), timeout=10, what="guest/guest after reset")
    roundtrip(c)
    c.close()
    with pytest.raises(pex.ProbableAuthenticationError):
        connect(w, user=u, password="pw")
    # and it stays reset across a restart
    restart(w)
    check_defaults()
    assert w.stop() == 0


def _try_connect(w, **kw):
    try:
        return connect(w, **kw)
    except pex.AMQPConnectionError:
        return None


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_users_vhosts_permissions_survive_restart(tmpdir_warren, how):
    """What ctl reported done is on disk: a clean stop or a kill -9 right
    after the last command loses nothing."""
    w = started(tmpdir_warren)
    u, gone, v = "u%s" % short_id(), "gone%s" % short_id(), "v%s" % short_id()
    ok(wctl(w, "add_user", u, "first"))
    ok(wctl(w, "change_password", u, "second"))
    ok(wctl(w, "set_user_tags", u, "monitoring", "management"))
    ok(wctl(w, "add_user", gone, "pw"))
    ok(wctl(w, "add_vhost", v))
    ok(wctl(w, "set_permissions", "-p", v, u, "^c", "^w", ".*"))
    ok(wctl(w, "delete_user", gone))

    restart(w, kill=(how == "sigkill"))

    users = row_strings(ok(wctl(w, "list_users", "-s")).stdout)
    assert "%s\t[monitoring, management]" % u in users
    assert "guest\t[administrator]" in users
    assert not any(line.startswith(gone + "\t") for line in users)
    assert v in row_strings(ok(wctl(w, "list_vhosts", "-s")).stdout)
    assert ok(wctl(w, "list_permissions", "-p", v, "-s")).stdout == "%s\t^c\t^w\t.*\n" % u
    assert wctl(w, "authenticate_user", u, "second").returncode == 0
    assert wctl(w, "authenticate_user", u, "first").returncode == 65
    c = connect(w, user=u, password="second", vhost=v)
    ch = c.channel()
    ch.queue_declare("c-%s" % short_id(), exclusive=True)          # configure ^c
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        c.channel().queue_declare("other-%s" % short_id(), exclusive=True)
    assert ei.value.reply_code == 403
    c.close()
    assert w.stop() == 0


def test_ctl_without_broker_exits_69_quickly(tmpdir_warren, tmp_path):
    # a data dir that never had a broker, one that does not exist
    for d in (str(tmp_path), str(tmp_path / "does-not-exist")):
        t = time.monotonic()
        r = wctl(d, "list_users")
        assert r.returncode == 69, r
        assert r.stderr.startswith(UNREACHABLE), r.stderr
        assert time.monotonic() - t < 5
    # a broker killed with -9 leaves its socket file behind
    w = started(tmpdir_warren)
    w.proc.kill()
    w.proc.wait(timeout=10)
    t = time.monotonic()
    r = wctl(w, "list_users")
    took = time.monotonic() - t
    assert r.returncode == 69, r
    assert r.stderr.startswith(UNREACHABLE), r.stderr
    assert took < 5, took


def test_stop_halts_the_broker(tmpdir_warren):
    w = started(tmpdir_warren)
    r = ok(wctl(w, "stop"))
    assert re.fullmatch(r"Stopping and halting node \S+ \.\.\.\n", r.stdout), r.stdout
    assert w.proc.wait(timeout=15) == 0
    r = wctl(w, "list_users")
    assert r.returncode == 69, r


def test_rabbitmqctl_symlink_behaves_like_warren_ctl(tmpdir_warren, tmp_path):
    w = started(tmpdir_warren)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    link = bindir / "rabbitmqctl"
    os.symlink(warren_binary(), link)

    def via_link(*args):
        return subprocess.run([str(link), "--data-dir", w.data_dir] + list(args),
                              capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)

    u = "u%s" % short_id()
    r = via_link("add_user", u, "pw")
    assert r.returncode == 0, r
    assert r.stdout.startswith('Adding user "%s" ...\n' % u)
    ok(wctl(w, "set_user_tags", u, "management"))
    for args in (["list_users"], ["list_users", "-s"], ["list_vhosts"],
                 ["list_permissions", "-p", "/"], ["list_users", "--formatter", "json"],
                 ["add_user", u, "again"], ["delete_user", "missing%s" % short_id()],
                 ["authenticate_user", u, "wrong"], ["authenticate_user", u, "pw"],
                 ["frobnicate"], ["list_queues", "-p", "/", "name", "messages"]):
        a, b = via_link(*args), wctl(w, *args)
        # usage texts may name the program as it was invoked
        assert (a.returncode, a.stdout, a.stderr) == \
            (b.returncode, b.stdout, b.stderr.replace("warren ctl", "rabbitmqctl")), args
    assert "%s\t[management]" % u in row_strings(via_link("list_users", "-s").stdout)
    assert via_link("frobnicate").returncode == 64
    assert via_link("add_user", u, "again").returncode == 70
    assert w.stop() == 0
