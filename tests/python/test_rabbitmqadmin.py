"""rabbitmqadmin (RabbitMQ 3.10's management CLI, a Python 3 script) driven
against the broker's management HTTP API.

Observed on RabbitMQ 3.10.8 with

    WARREN_TEST_URL=amqp://guest:guest@127.0.0.1:5672/%2F pytest test_rabbitmqadmin.py

rabbitmqadmin comes with Debian's rabbitmq-server package
(/usr/bin/rabbitmqadmin); tools/install-rabbitmqadmin.sh installs just the
script on a machine without it. Without it these tests fail (they do not
skip): the script is the point of the management API.

Every object is made in a vhost of the test's own, so the tables listed
with `-V vhost` hold only that test's rows and are compared whole, line by
line. Lists that are broker-wide (users, vhosts, connections) are compared
row by row for the test's objects.
"""

import json
import os
import re
import shutil
import subprocess
import time
import uuid

import pytest

from ctl_util import local_port
from mgmt_util import Mgmt, q, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
INSTALLER = os.path.join(REPO_ROOT, "tools", "install-rabbitmqadmin.sh")
ADMIN_TIMEOUT_S = 60


def short():
    return uuid.uuid4().hex[:12]


def find_rabbitmqadmin():
    return os.environ.get("RABBITMQADMIN") or shutil.which("rabbitmqadmin")


@pytest.fixture(scope="session")
def api(broker):
    return Mgmt(broker.mgmt_url, broker.username, broker.password)


@pytest.fixture(scope="session")
def admin(broker):
    """admin(*args, check=True) -> CompletedProcess of
    `rabbitmqadmin -H host -P mgmtport -u user -p password args...`."""
    script = find_rabbitmqadmin()
    if not script:
        pytest.fail("rabbitmqadmin not found on PATH (nor RABBITMQADMIN set): install it "
                    "with tools/install-rabbitmqadmin.sh", pytrace=False)
    base = [script, "-H", broker.host, "-P", str(broker.mgmt_port),
            "-u", broker.username, "-p", broker.password]

    def run(*args, check=True):
        r = subprocess.run(base + [str(a) for a in args], capture_output=True, text=True,
                           timeout=ADMIN_TIMEOUT_S, stdin=subprocess.DEVNULL)
        if check:
            assert r.returncode == 0, "rabbitmqadmin %s -> %d\n%s%s" % (
                " ".join(args), r.returncode, r.stdout, r.stderr)
        return r
    return run


@pytest.fixture
def avh(admin, api, broker):
    """A fresh vhost declared with rabbitmqadmin, the test's user granted
    everything in it; deleted (with everything in it) at teardown."""
    v = "pytest-av-%s" % short()
    assert admin("declare", "vhost", "name=" + v).stdout == "vhost declared\n"
    assert admin("declare", "permission", "vhost=" + v, "user=" + broker.username,
                 "configure=.*", "write=.*", "read=.*").stdout == "permission declared\n"
    yield v
    api.delete("/api/vhosts/" + q(v))


def table(rows):
    """rabbitmqadmin's table layout (-f table, the default): header cells
    centred ("{:^w}", an odd space goes right), body cells left-aligned,
    one space of padding, +---+ rules."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(cells, header):
        out = []
        for c, w in zip(cells, widths):
            fmt = ("{0:^%d}" if header else "{0:<%d}") % w
            out.append(" " + fmt.format(c) + " ")
        return "|" + "|".join(out) + "|"
    lines = [rule, line(rows[0], True), rule]
    lines += [line(r, False) for r in rows[1:]]
    lines.append(rule)
    return "\n".join(lines) + "\n"


def cells(stdout):
    """The rows of a table as lists of stripped cells, header first."""
    return [[c.strip() for c in ln.strip("|").split("|")]
            for ln in stdout.splitlines() if ln.startswith("|")]


def test_installer_exists():
    assert os.access(INSTALLER, os.X_OK), INSTALLER


def test_installer_installs_into_a_bare_path(tmp_path):
    """The installer, on a PATH without rabbitmqadmin, fetches Debian's
    script into DEST; run again, it does nothing."""
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        pytest.skip("not a Debian system")
    bindir, dest = tmp_path / "bin", tmp_path / "dest"
    bindir.mkdir()
    dest.mkdir()
    for tool in ("sh", "apt-get", "apt-config", "dpkg", "dpkg-deb", "python3", "mktemp",
                 "ls", "head", "find", "mkdir", "cp", "chmod", "mv", "rm", "id", "basename",
                 "tar", "gzip", "xz", "zstd", "cat"):
        p = shutil.which(tool)
        if p:
            os.symlink(p, str(bindir / tool))
    env = {"PATH": str(bindir), "DEST": str(dest), "HOME": str(tmp_path)}
    r = subprocess.run(["sh", INSTALLER], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    script = dest / "rabbitmqadmin"
    assert os.access(str(script), os.X_OK)
    assert script.read_text().startswith("#!")
    mtime = script.stat().st_mtime_ns
    r = subprocess.run(["sh", INSTALLER], env=env, capture_output=True, text=True,
                       timeout=300)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert script.stat().st_mtime_ns == mtime
    v = subprocess.run([shutil.which("python3"), str(script), "--version"],
                       capture_output=True, text=True, timeout=60)
    assert v.returncode == 0 and v.stdout.startswith("rabbitmqadmin "), (v.stdout, v.stderr)


def test_declare_list_delete_queue_and_exchange(admin, avh):
    V = ("-V", avh)
    assert admin(*V, "declare", "queue", "name=q1", "durable=true").stdout == "queue declared\n"
    assert admin(*V, "declare", "queue", "name=q-two", "durable=false").stdout == \
        "queue declared\n"
    assert admin(*V, "declare", "exchange", "name=x1", "type=topic").stdout == \
        "exchange declared\n"
    assert admin(*V, "declare", "binding", "source=x1", "destination=q1",
                 "routing_key=a.b").stdout == "binding declared\n"

    assert admin(*V, "list", "queues", "name", "durable").stdout == table(
        [["name", "durable"], ["q-two", "False"], ["q1", "True"]])
    assert admin(*V, "list", "exchanges", "name", "type").stdout == table([
        ["name", "type"], ["", "direct"], ["amq.direct", "direct"], ["amq.fanout", "fanout"],
        ["amq.headers", "headers"], ["amq.match", "headers"], ["amq.rabbitmq.trace", "topic"],
        ["amq.topic", "topic"], ["x1", "topic"]])
    # the default columns: exchanges name,type; bindings source,destination,routing_key
    assert admin(*V, "list", "exchanges").stdout == admin(*V, "list", "exchanges", "name",
                                                          "type").stdout
    assert admin(*V, "list", "bindings").stdout == table([
        ["source", "destination", "routing_key"], ["", "q-two", "q-two"], ["", "q1", "q1"],
        ["x1", "q1", "a.b"]])
    # queues: name, messages (blank until the first statistics)
    rows = cells(admin(*V, "list", "queues").stdout)
    assert rows[0] == ["name", "messages"]
    assert [r[0] for r in rows[1:]] == ["q-two", "q1"]

    raw = json.loads(admin(*V, "-f", "raw_json", "list", "queues").stdout)
    assert sorted(x["name"] for x in raw) == ["q-two", "q1"]
    assert {x["name"]: x["durable"] for x in raw} == {"q-two": False, "q1": True}
    assert all(x["vhost"] == avh for x in raw)
    tsv = admin(*V, "-f", "tsv", "list", "queues", "name", "durable").stdout
    assert tsv == "name\tdurable\nq-two\tFalse\nq1\tTrue\n"

    assert admin(*V, "delete", "binding", "source=x1", "destination=q1",
                 "destination_type=queue", "properties_key=a.b").stdout == "binding deleted\n"
    assert admin(*V, "delete", "queue", "name=q1").stdout == "queue deleted\n"
    assert admin(*V, "delete", "exchange", "name=x1").stdout == "exchange deleted\n"
    assert admin(*V, "list", "queues", "name").stdout == table([["name"], ["q-two"]])
    assert admin(*V, "list", "exchanges", "name").stdout.count("x1") == 0
    r = admin(*V, "delete", "queue", "name=q1", check=False)
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.strip() == "*** Not found: /api/queues/%s/q1" % q(avh)


def test_declare_list_delete_policies(admin, avh):
    V = ("-V", avh)
    assert admin(*V, "declare", "policy", "name=p1", "pattern=^q", "priority=3",
                 "apply-to=queues", 'definition={"max-length":5}').stdout == "policy declared\n"
    assert admin(*V, "declare", "operator_policy", "name=op1", "pattern=.",
                 'definition={"expires":1000}').stdout == "operator_policy declared\n"
    # `list policies` lists every vhost's (GET /api/policies)
    rows = cells(admin(*V, "list", "policies", "vhost", "name", "pattern", "apply-to",
                       "priority").stdout)
    assert rows[0] == ["vhost", "name", "pattern", "apply-to", "priority"]
    assert [r for r in rows[1:] if r[0] == avh] == [[avh, "p1", "^q", "queues", "3"]]
    raw = json.loads(admin(*V, "-f", "raw_json", "list", "operator_policies").stdout)
    assert [(x["name"], x["definition"]) for x in raw if x["vhost"] == avh] == \
        [("op1", {"expires": 1000})]
    r = admin(*V, "declare", "policy", "name=p2", "pattern=.", 'definition={"foo":1}',
              check=False)
    assert r.returncode != 0
    assert "are not recognised policy settings" in r.stderr
    assert admin(*V, "delete", "policy", "name=p1").stdout == "policy deleted\n"
    assert admin(*V, "delete", "operator_policy", "name=op1").stdout == \
        "operator_policy deleted\n"
    assert [x for x in json.loads(admin(*V, "-f", "raw_json", "list", "policies").stdout)
            if x["vhost"] == avh] == []


def test_publish_and_get(admin, avh):
    V = ("-V", avh)
    admin(*V, "declare", "queue", "name=pq")
    assert admin(*V, "publish", "routing_key=pq", "payload=hello-admin").stdout == \
        "Message published\n"
    assert admin(*V, "publish", "routing_key=nobody", "payload=x").stdout == \
        "Message published but NOT routed\n"
    head = ["routing_key", "exchange", "message_count", "payload", "payload_bytes",
            "payload_encoding", "properties", "redelivered"]
    # the default ackmode requeues
    assert admin(*V, "get", "queue=pq").stdout == table(
        [head, ["pq", "", "0", "hello-admin", "11", "string", "", "False"]])
    assert admin(*V, "get", "queue=pq", "ackmode=ack_requeue_false").stdout == table(
        [head, ["pq", "", "0", "hello-admin", "11", "string", "", "True"]])
    r = admin(*V, "get", "queue=pq", "ackmode=ack_requeue_false")
    assert (r.stdout, r.stderr) == ("No items\n", "")     # an empty JSON list


def test_list_users_vhosts_connections(admin, api, avh, broker):
    u, pw = "pytest-au-%s" % short(), "pw-" + short()
    try:
        assert admin("declare", "user", "name=" + u, "password=" + pw,
                     "tags=management,monitoring").stdout == "user declared\n"
        h = api.get("/api/users/" + q(u))[2]["password_hash"]
        rows = cells(admin("list", "users").stdout)
        assert rows[0] == ["name", "hashing_algorithm", "password_hash", "tags"]
        # a list of strings is shown space-separated
        assert [u, "rabbit_password_hashing_sha256", h, "management monitoring"] in rows
        rows = cells(admin("list", "vhosts").stdout)
        assert rows[0] == ["name", "messages"]
        assert avh in [r[0] for r in rows[1:]]
        assert ["/"] in [r[:1] for r in rows]
        assert avh in [r[0] for r in cells(admin("list", "vhosts", "name").stdout)]

        c = broker.connect(virtual_host=avh)
        try:
            c.channel()
            port = local_port(c)
            suffix = ":%d -> " % port

            def listed():
                rows = cells(admin("list", "connections").stdout)
                mine = [r for r in rows if suffix in r[0]]
                return mine and mine[0][2] == "1" and (rows, mine[0])
            rows, mine = wait_for(listed, timeout=15, what="connection listed with 1 channel")
            assert rows[0] == ["name", "user", "channels"]
            assert mine[1] == broker.username
            raw = json.loads(admin("-f", "raw_json", "list", "connections").stdout)
            assert [x["vhost"] for x in raw if x["peer_port"] == port] == [avh]
        finally:
            c.close()
        assert admin("delete", "user", "name=" + u).stdout == "user deleted\n"
    finally:
        api.delete("/api/users/" + q(u))


def test_export_import(admin, api, avh, tmp_path):
    V = ("-V", avh)
    admin(*V, "declare", "queue", "name=eq", "durable=true")
    admin(*V, "declare", "exchange", "name=ex", "type=fanout")
    admin(*V, "declare", "binding", "source=ex", "destination=eq", "routing_key=r")

    full = tmp_path / "all.json"
    r = admin("export", str(full))
    assert r.stdout == 'Exported definitions for %s to "%s"\n' % (api_host(api), full)
    d = json.loads(full.read_text())
    assert {"name": "eq", "vhost": avh, "durable": True, "auto_delete": False,
            "arguments": {}} in d["queues"]
    assert {"source": "ex", "vhost": avh, "destination": "eq", "destination_type": "queue",
            "routing_key": "r", "arguments": {}} in d["bindings"]

    # Import a broker-wide document back, holding only this vhost's objects
    # (the broker may be shared: re-importing everything could recreate
    # others' deleted objects).
    mine = {k: [o for o in d[k] if o.get("vhost") == avh]
            for k in ("queues", "exchanges", "bindings")}
    mine["vhosts"] = [x for x in d["vhosts"] if x["name"] == avh]
    only = tmp_path / "mine.json"
    only.write_text(json.dumps(mine))
    admin(*V, "delete", "queue", "name=eq")
    admin(*V, "delete", "exchange", "name=ex")
    r = admin("import", str(only))
    assert r.stdout == ('Uploaded definitions from "%s" to %s. The import process may take '
                        'some time. Consult server logs to track progress.\n'
                        % (api_host(api), only))
    assert admin(*V, "list", "bindings").stdout == table([
        ["source", "destination", "routing_key"], ["", "eq", "eq"], ["ex", "eq", "r"]])

    # per vhost: export -V / import -V
    per = tmp_path / "vhost.json"
    admin(*V, "export", str(per))
    dv = json.loads(per.read_text())
    assert dv["queues"] == [{"name": "eq", "durable": True, "auto_delete": False,
                             "arguments": {}}]
    admin(*V, "delete", "queue", "name=eq")
    admin(*V, "import", str(per))
    assert admin(*V, "list", "queues", "name").stdout == table([["name"], ["eq"]])


def api_host(api):
    return api.base_url.split("//", 1)[1].rsplit(":", 1)[0]


def test_overview_and_errors(admin, avh, broker):
    rows = cells(admin("show", "overview").stdout)
    assert rows[0][:2] == ["rabbitmq_version", "cluster_name"]
    assert rows[0][2:] == ["queue_totals.messages", "object_totals.queues"]
    assert re.match(r"^\d+\.\d+\.\d+", rows[1][0]), rows
    if broker.external:
        assert rows[1][0].startswith("3.10.")
    r = admin("-V", avh, "declare", "queue", "name=amq.nope", check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == "*** Access refused: /api/queues/%s/amq.nope" % q(avh)
    r = admin("-V", avh, "declare", "queue", "name=dq", "durable=true")
    r = admin("-V", avh, "declare", "queue", "name=dq", "durable=false", check=False)
    assert (r.returncode, r.stdout) == (1, "")
    # a 400 prints the reason
    assert r.stderr == ("*** inequivalent arg 'durable' for queue 'dq' in vhost '%s': "
                        "received 'false' but current is 'true'\n\n" % avh)
