"""`warren ctl` as rabbitmqctl: verbs, output and exit codes.

Every expectation here was observed on RabbitMQ 3.10.8 (Debian package)
with this file run as

    WARREN_TEST_URL=amqp://guest:guest@127.0.0.1:5672/%2F pytest test_ctl.py

where the `ctl` fixture runs `rabbitmqctl` (and `ctl_diagnostics` runs
`rabbitmq-diagnostics`); against Warren both run `warren ctl --data-dir D`.
Exact strings are compared where RabbitMQ's are stable: info lines,
headers, column order, error texts, exit codes. Not compared: node names
(rabbit@host / warren@host), versions, memory figures, Erlang pids, and
the order of rows (RabbitMQ lists users, vhosts, queues... in hash-table
order).

Every object has a uuid-based name; users and vhosts are deleted at the end
of each test (the `accounts` fixture), so a shared broker stays clean.
Verbs that stop or reset the broker are in test_ctl_process.py, against a
Warren of their own.
"""

import json
import os
import re
import subprocess
import time

import pika
import pika.exceptions as pex
import pytest

from conftest import short_id, warren_bin
from ctl_util import (check_rabbit_sha256, connection_close_reason, local_port,
                      out_lines, row_strings, rows, strip_ansi, wait_until)
from test_semantics import drain_until

def add_user_done(ctl):
    """add_user's closing advice names the program it was run as."""
    prog = "rabbitmqctl" if ctl.external else "warren ctl"
    return ("Done. Don't forget to grant the user permissions to some virtual "
            "hosts! See '%s help set_permissions' to learn more." % prog)
PREDECLARED_EXCHANGES = {
    ("", "direct"),
    ("amq.direct", "direct"),
    ("amq.fanout", "fanout"),
    ("amq.headers", "headers"),
    ("amq.match", "headers"),
    ("amq.rabbitmq.trace", "topic"),
    ("amq.topic", "topic"),
}


def nm(kind):
    return "pytest-%s-%s" % (kind, short_id())


@pytest.fixture
def guest_vhost(accounts, broker):
    """A fresh vhost where guest has all permissions, and a guest connection to it."""
    v = accounts.vhost()
    accounts.grant("guest", v, ".*", ".*", ".*")
    conn = accounts.connect(broker.params(virtual_host=v))
    return v, conn


# ---------------------------------------------------------------------------
# list_users and the output options
# ---------------------------------------------------------------------------

@pytest.fixture
def tagged_users(accounts):
    admin = accounts.user(tags=["administrator"], permissions=False)
    two = accounts.user(tags=["monitoring", "management"], permissions=False)
    none = accounts.user(permissions=False)
    return admin, two, none


def test_list_users_table(ctl, tagged_users):
    admin, two, none = tagged_users
    r = ctl("list_users")
    assert r.stderr == ""
    lines = out_lines(r.stdout)
    assert lines[0] == "Listing users ..."
    assert lines[1] == "user\ttags"
    body = lines[2:]
    # tags in the order they were set, ", "-separated, in brackets
    assert "%s\t[administrator]" % admin.name in body
    assert "%s\t[monitoring, management]" % two.name in body
    assert "%s\t[]" % none.name in body
    assert "guest\t[administrator]" in body
    assert all(line.count("\t") == 1 for line in body), body


def test_list_users_quiet_silent_no_table_headers(ctl, tagged_users):
    admin, two, _ = tagged_users
    row = "%s\t[monitoring, management]" % two.name

    q = out_lines(ctl("list_users", "-q").stdout)        # no info line
    assert q[0] == "user\ttags" and row in q[1:]
    assert "Listing users ..." not in q

    s = out_lines(ctl("list_users", "-s").stdout)        # no info line, no header
    assert row in s and "user\ttags" not in s and "Listing users ..." not in s

    n = out_lines(ctl("list_users", "--no-table-headers").stdout)   # info line kept
    assert n[0] == "Listing users ..." and "user\ttags" not in n and row in n

    qn = out_lines(ctl("list_users", "-q", "--no-table-headers").stdout)
    assert row in qn and "user\ttags" not in qn and "Listing users ..." not in qn
    assert all(line.count("\t") == 1 for line in qn), qn


def test_list_users_json(ctl, tagged_users):
    admin, two, none = tagged_users
    r = ctl("list_users", "--formatter", "json")
    assert r.stdout.startswith("[")            # no info line with a formatter
    users = json.loads(r.stdout)
    assert isinstance(users, list)
    for u in users:
        assert set(u) == {"user", "tags"}, u
    by_name = {u["user"]: u["tags"] for u in users}
    assert by_name[admin.name] == ["administrator"]
    assert by_name[two.name] == ["monitoring", "management"]
    assert by_name[none.name] == []
    assert by_name["guest"] == ["administrator"]


# ---------------------------------------------------------------------------
# vhosts and permissions listings
# ---------------------------------------------------------------------------

def test_list_vhosts(ctl, accounts):
    v = accounts.vhost()
    lines = out_lines(ctl("list_vhosts").stdout)
    assert lines[:2] == ["Listing vhosts ...", "name"]
    assert v in lines[2:] and "/" in lines[2:]

    assert out_lines(ctl("list_vhosts", "name", "tracing", "-q").stdout)[0] == "name\ttracing"
    assert ["%s" % v, "false"] in rows(ctl("list_vhosts", "name", "tracing", "-s").stdout)

    vhosts = json.loads(ctl("list_vhosts", "--formatter", "json").stdout)
    assert {"name": v} in vhosts and {"name": "/"} in vhosts


def test_list_permissions(ctl, accounts):
    v = accounts.vhost()
    u1 = accounts.user(vhost=v, configure="^c", write="w.*", read="")
    u2 = accounts.user(vhost=v, configure=".*", write=".*", read=".*")
    lines = out_lines(ctl("list_permissions", "-p", v).stdout)
    assert lines[0] == 'Listing permissions for vhost "%s" ...' % v
    assert lines[1] == "user\tconfigure\twrite\tread"
    assert sorted(lines[2:]) == sorted(["%s\t^c\tw.*\t" % u1.name,     # empty read: empty column
                                        "%s\t.*\t.*\t.*" % u2.name])
    perms = json.loads(ctl("list_permissions", "-p", v, "--formatter", "json").stdout)
    assert sorted(perms, key=lambda p: p["user"]) == sorted([
        {"user": u1.name, "configure": "^c", "write": "w.*", "read": ""},
        {"user": u2.name, "configure": ".*", "write": ".*", "read": ".*"},
    ], key=lambda p: p["user"])


def test_list_permissions_empty_prints_an_empty_line(ctl, accounts):
    # list_permissions and list_user_permissions print "" as their (empty)
    # table, i.e. a blank line; list_queues & co. print nothing at all.
    v = accounts.vhost()
    assert ctl("list_permissions", "-p", v).stdout == \
        'Listing permissions for vhost "%s" ...\n\n' % v
    assert ctl("list_permissions", "-p", v, "-q").stdout == "\n"
    assert ctl("list_permissions", "-p", v, "-s").stdout == "\n"
    assert json.loads(ctl("list_permissions", "-p", v, "--formatter", "json").stdout) == []
    u = accounts.user(permissions=False)
    assert ctl("list_user_permissions", u.name).stdout == \
        'Listing permissions for user "%s" ...\n\n' % u.name
    assert ctl("list_user_permissions", u.name, "-q").stdout == "\n"


def test_list_permissions_unknown_vhost(ctl):
    v = nm("nov")
    r = ctl("list_permissions", "-p", v, check=False)
    assert r.returncode == 65
    assert r.stdout == 'Listing permissions for vhost "%s" ...\n' % v
    assert r.stderr == "Virtual host '%s' does not exist\n" % v   # no "Error:" line


def test_list_user_permissions(ctl, accounts):
    v1 = accounts.vhost()
    v2 = accounts.vhost()
    u = accounts.user(vhost=v1, configure="^a", write="", read=".*")
    accounts.grant(u, v2, ".*", "^w", "")
    lines = out_lines(ctl("list_user_permissions", u.name).stdout)
    assert lines[0] == 'Listing permissions for user "%s" ...' % u.name
    assert lines[1] == "vhost\tconfigure\twrite\tread"
    assert sorted(lines[2:]) == sorted(["%s\t^a\t\t.*" % v1, "%s\t.*\t^w\t" % v2])
    perms = json.loads(ctl("list_user_permissions", u.name, "--formatter", "json").stdout)
    assert sorted(perms, key=lambda p: p["vhost"]) == sorted([
        {"vhost": v1, "configure": "^a", "write": "", "read": ".*"},
        {"vhost": v2, "configure": ".*", "write": "^w", "read": ""},
    ], key=lambda p: p["vhost"])


def test_list_user_permissions_unknown_user(ctl):
    u = nm("nou")
    r = ctl("list_user_permissions", u, check=False)
    assert r.returncode == 69
    assert r.stdout == 'Listing permissions for user "%s" ...\n' % u
    # RabbitMQ prints the Elixir term of its error here
    assert r.stderr == 'Error:\n{:no_such_user, "%s"}\n' % u


# ---------------------------------------------------------------------------
# list_queues, list_exchanges, list_bindings
# ---------------------------------------------------------------------------

QUEUE_ITEMS = ["name", "messages", "messages_ready", "messages_unacknowledged",
               "consumers", "durable", "auto_delete", "exclusive", "arguments"]


def test_list_queues(ctl, broker, guest_vhost):
    v, conn = guest_vhost
    ch = conn.channel()
    qd, qa, qe, qs = nm("dur"), nm("ad"), nm("ex"), nm("str")
    # The listing's formatting of arguments is what is under test.
    ch.queue_declare(qd, durable=True, arguments={"x-max-length": 100})
    ch.queue_declare(qa, auto_delete=True)
    ch.queue_declare(qe, exclusive=True)
    ch.queue_declare(qs, arguments={"x-dead-letter-exchange": "dlx"})
    ch.confirm_delivery()
    for i in range(5):
        ch.basic_publish("", qd, b"m%d" % i)
    consumer_ch = conn.channel()
    consumer_ch.basic_qos(prefetch_count=2)
    got = []
    consumer_ch.basic_consume(qd, lambda c, m, p, b: got.append(m.delivery_tag))
    drain_until(conn, lambda: len(got) == 2)     # 2 unacked, 3 ready

    r = ctl("list_queues", "-p", v)
    lines = out_lines(r.stdout)
    assert lines[:3] == ["Timeout: 60.0 seconds ...",
                         "Listing queues for vhost %s ..." % v,
                         "name\tmessages"]
    assert sorted(lines[3:]) == sorted(["%s\t5" % qd, "%s\t0" % qa, "%s\t0" % qe, "%s\t0" % qs])

    r = ctl("list_queues", "-p", v, *QUEUE_ITEMS)
    lines = out_lines(r.stdout)
    assert lines[2] == "\t".join(QUEUE_ITEMS)
    assert sorted(lines[3:]) == sorted([
        "%s\t5\t3\t2\t1\ttrue\tfalse\tfalse\t[{\"x-max-length\",100}]" % qd,
        "%s\t0\t0\t0\t0\tfalse\ttrue\tfalse\t[]" % qa,
        "%s\t0\t0\t0\t0\tfalse\tfalse\ttrue\t[]" % qe,
        "%s\t0\t0\t0\t0\tfalse\tfalse\tfalse\t[{\"x-dead-letter-exchange\",\"dlx\"}]" % qs,
    ])

    # -q: header and rows; -s: rows only; --no-table-headers: info lines and rows
    assert out_lines(ctl("list_queues", "-p", v, "-q").stdout)[0] == "name\tmessages"
    assert sorted(row_strings(ctl("list_queues", "-p", v, "-s").stdout)) == \
        sorted(["%s\t5" % qd, "%s\t0" % qa, "%s\t0" % qe, "%s\t0" % qs])
    n = out_lines(ctl("list_queues", "-p", v, "--no-table-headers", "name").stdout)
    assert n[:2] == ["Timeout: 60.0 seconds ...", "Listing queues for vhost %s ..." % v]
    assert sorted(n[2:]) == sorted([qd, qa, qe, qs])

    js = json.loads(ctl("list_queues", "-p", v, "--formatter", "json", *QUEUE_ITEMS).stdout)
    by_name = {q["name"]: q for q in js}
    assert set(by_name) == {qd, qa, qe, qs}
    assert list(by_name[qd]) == QUEUE_ITEMS          # keys in the order asked for
    assert by_name[qd] == {
        "name": qd, "messages": 5, "messages_ready": 3, "messages_unacknowledged": 2,
        "consumers": 1, "durable": True, "auto_delete": False, "exclusive": False,
        # JSON gives each argument as [name, AMQP field type, value]
        "arguments": [["x-max-length", "signedint", 100]],
    }
    assert by_name[qs]["arguments"] == [["x-dead-letter-exchange", "longstr", "dlx"]]
    assert by_name[qe]["exclusive"] is True and by_name[qa]["auto_delete"] is True


def test_list_queues_empty_vhost(ctl, accounts):
    v = accounts.vhost()
    assert ctl("list_queues", "-p", v).stdout == \
        "Timeout: 60.0 seconds ...\nListing queues for vhost %s ...\n" % v   # no header
    assert ctl("list_queues", "-p", v, "-q").stdout == ""
    assert json.loads(ctl("list_queues", "-p", v, "--formatter", "json").stdout) == []


def test_list_queues_unknown_item_64(ctl, accounts):
    v = accounts.vhost()
    r = ctl("list_queues", "-p", v, "name", "bogus_item", check=False)
    assert r.returncode == 64
    assert r.stdout == ""
    assert r.stderr.startswith(
        "Error (argument validation): Info key(s) bogus_item are not supported\n"), r.stderr


def test_list_exchanges(ctl, guest_vhost):
    v, conn = guest_vhost
    ch = conn.channel()
    xt, xa = nm("xt"), nm("xa")
    ch.exchange_declare(xt, "topic", durable=True)
    ch.exchange_declare(xa, "fanout", auto_delete=True)

    lines = out_lines(ctl("list_exchanges", "-p", v).stdout)
    assert lines[:2] == ["Listing exchanges for vhost %s ..." % v, "name\ttype"]
    got = {tuple(line.split("\t")) for line in lines[2:]}
    assert got == PREDECLARED_EXCHANGES | {(xt, "topic"), (xa, "fanout")}

    items = ["name", "type", "durable", "auto_delete", "internal", "arguments"]
    lines = out_lines(ctl("list_exchanges", "-p", v, *items).stdout)
    assert lines[1] == "\t".join(items)
    body = set(lines[2:])
    assert "%s\ttopic\ttrue\tfalse\tfalse\t[]" % xt in body
    assert "%s\tfanout\tfalse\ttrue\tfalse\t[]" % xa in body
    assert "\tdirect\ttrue\tfalse\tfalse\t[]" in body               # the default exchange
    assert "amq.rabbitmq.trace\ttopic\ttrue\tfalse\ttrue\t[]" in body  # internal
    assert "amq.direct\tdirect\ttrue\tfalse\tfalse\t[]" in body

    js = json.loads(ctl("list_exchanges", "-p", v, "--formatter", "json").stdout)
    assert {"name": xt, "type": "topic"} in js and {"name": "", "type": "direct"} in js


def test_list_bindings(ctl, guest_vhost):
    v, conn = guest_vhost
    ch = conn.channel()
    q1, q2, x, x2 = nm("q1"), nm("q2"), nm("x"), nm("x2")
    ch.queue_declare(q1)
    ch.queue_declare(q2)
    ch.exchange_declare(x, "topic")
    ch.exchange_declare(x2, "fanout")
    ch.queue_bind(q1, x, "a.#", arguments={"k": "v"})
    ch.queue_bind(q2, x, "b")
    ch.exchange_bind(x2, x, "r")

    lines = out_lines(ctl("list_bindings", "-p", v).stdout)
    assert lines[0] == "Listing bindings for vhost %s..." % v      # no space before "..."
    assert lines[1] == ("source_name\tsource_kind\tdestination_name\tdestination_kind\t"
                        "routing_key\targuments")
    assert sorted(lines[2:]) == sorted([
        # the default exchange's implicit bindings are listed, source name ""
        "\texchange\t%s\tqueue\t%s\t[]" % (q1, q1),
        "\texchange\t%s\tqueue\t%s\t[]" % (q2, q2),
        "%s\texchange\t%s\tqueue\ta.#\t[{\"k\",\"v\"}]" % (x, q1),
        "%s\texchange\t%s\tqueue\tb\t[]" % (x, q2),
        "%s\texchange\t%s\texchange\tr\t[]" % (x, x2),
    ])
    js = json.loads(ctl("list_bindings", "-p", v, "--formatter", "json").stdout)
    assert {"source_name": x, "source_kind": "exchange", "destination_name": q1,
            "destination_kind": "queue", "routing_key": "a.#",
            "arguments": [["k", "longstr", "v"]]} in js
    assert len(js) == 5

    empty = v  # and an empty vhost lists nothing, not even the header
    ch.queue_delete(q1)
    ch.queue_delete(q2)
    ch.exchange_delete(x)
    ch.exchange_delete(x2)
    assert ctl("list_bindings", "-p", empty, "-q").stdout == ""


# ---------------------------------------------------------------------------
# list_connections, list_channels, list_consumers
# ---------------------------------------------------------------------------

def test_list_connections(ctl, broker, accounts):
    v = accounts.vhost()
    u = accounts.user(vhost=v)
    conn = accounts.connect(u)
    conn.channel()
    conn.channel()
    port = local_port(conn)

    lines = out_lines(ctl("list_connections").stdout)
    assert lines[:2] == ["Listing connections ...", "user\tpeer_host\tpeer_port\tstate"]
    assert "%s\t127.0.0.1\t%d\trunning" % (u.name, port) in lines[2:]

    items = ["user", "peer_host", "peer_port", "state", "vhost", "name", "channels",
             "port", "host"]
    mine = [r for r in rows(ctl("list_connections", "-s", *items).stdout)
            if r[2] == str(port)]
    assert mine == [[u.name, "127.0.0.1", str(port), "running", v,
                     "127.0.0.1:%d -> 127.0.0.1:%d" % (port, broker.port), "2",
                     str(broker.port), "127.0.0.1"]]

    js = json.loads(ctl("list_connections", "--formatter", "json", *items).stdout)
    mine = [c for c in js if c["peer_port"] == port]
    assert len(mine) == 1
    c = mine[0]
    assert (c["user"], c["state"], c["vhost"], c["channels"]) == (u.name, "running", v, 2)
    # RabbitMQ listens dual-stack and gives the IPv4-mapped address as a tuple
    assert c["peer_host"] in ("127.0.0.1", [0, 0, 0, 0, 0, 65535, 32512, 1]), c


def test_list_channels_and_consumers(ctl, broker, guest_vhost):
    v, conn = guest_vhost
    port = local_port(conn)
    q = nm("q")
    plain = conn.channel()                     # channel 1
    plain.queue_declare(q)
    plain.confirm_delivery()
    plain.basic_publish("", q, b"one")
    consuming = conn.channel()                 # channel 2
    consuming.basic_qos(prefetch_count=3)
    got = []
    tag = "ctag-" + short_id()
    consuming.basic_consume(q, lambda c, m, p, b: got.append(b), consumer_tag=tag)
    drain_until(conn, lambda: got)
    tag2 = "ctag2-" + short_id()
    plain.basic_consume(q, lambda *a: None, auto_ack=True, consumer_tag=tag2,
                        arguments={"x-priority": 5})

    lines = out_lines(ctl("list_channels").stdout)
    assert lines[:2] == ["Listing channels ...",
                         "pid\tuser\tconsumer_count\tmessages_unacknowledged"]

    items = ["pid", "connection", "number", "name", "user", "vhost", "consumer_count",
             "messages_unacknowledged", "prefetch_count"]
    conn_name = "127.0.0.1:%d -> 127.0.0.1:%d" % (port, broker.port)
    mine = sorted((r for r in rows(ctl("list_channels", "-s", *items).stdout)
                   if r[3].startswith(conn_name + " (")), key=lambda r: int(r[2]))
    assert [r[2:] for r in mine] == [
        ["1", conn_name + " (1)", "guest", v, "1", "0", "0"],
        ["2", conn_name + " (2)", "guest", v, "1", "1", "3"],
    ]
    pid1, pid2 = mine[0][0], mine[1][0]
    assert mine[0][1] == mine[1][1]            # same connection
    conn_pid = [r[0] for r in rows(ctl("list_connections", "-s", "pid", "peer_port").stdout)
                if r[1] == str(port)]
    assert conn_pid == [mine[0][1]]
    # the default columns, same channels
    default_rows = rows(ctl("list_channels", "-s").stdout)
    assert [pid2, "guest", "1", "1"] in default_rows
    assert [pid1, "guest", "1", "0"] in default_rows

    lines = out_lines(ctl("list_consumers", "-p", v).stdout)
    assert lines[:2] == ["Listing consumers in vhost %s ..." % v,
                         "queue_name\tchannel_pid\tconsumer_tag\tack_required\t"
                         "prefetch_count\tactive\targuments"]
    assert sorted(lines[2:]) == sorted([
        "%s\t%s\t%s\ttrue\t3\ttrue\t[]" % (q, pid2, tag),
        "%s\t%s\t%s\tfalse\t0\ttrue\t[{\"x-priority\",5}]" % (q, pid1, tag2),
    ])
    js = json.loads(ctl("list_consumers", "-p", v, "--formatter", "json").stdout)
    by_tag = {c["consumer_tag"]: c for c in js}
    assert set(by_tag) == {tag, tag2}
    c = by_tag[tag]
    assert (c["queue_name"], c["ack_required"], c["prefetch_count"], c["active"],
            c["arguments"]) == (q, True, 3, True, [])
    assert by_tag[tag2]["arguments"] == [["x-priority", "signedint", 5]]


# ---------------------------------------------------------------------------
# Users
# ---------------------------------------------------------------------------

def test_add_user(ctl, accounts):
    u = accounts.adopt_user(nm("u"))
    r = ctl("add_user", u, "secret")
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == 'Adding user "%s" ...\n%s\n' % (u, add_user_done(ctl))
    assert "%s\t[]" % u in row_strings(ctl("list_users", "-s").stdout)
    u2 = accounts.adopt_user(nm("u"))
    assert ctl("add_user", u2, "secret", "-q").stdout == ""


def test_add_user_existing_70(ctl, accounts):
    u = accounts.user(permissions=False)
    r = ctl("add_user", u.name, "other", check=False)
    assert r.returncode == 70
    assert r.stdout == 'Adding user "%s" ...\n' % u.name
    assert r.stderr == 'Error:\nUser "%s" already exists\n' % u.name
    # the password did not change
    assert ctl("authenticate_user", u.name, u.password, check=False).returncode == 0


def test_add_user_arity_64(ctl):
    r = ctl("add_user", check=False)
    assert r.returncode == 64 and r.stdout == ""
    assert r.stderr.startswith("Error (argument validation): not enough arguments.\n"
                               "Arguments given:\n\tadd_user\n"), r.stderr
    r = ctl("list_users", "extra", check=False)
    assert r.returncode == 64
    assert r.stderr.startswith("Error (argument validation): too many arguments.\n"
                               "Arguments given:\n\tlist_users extra\n"), r.stderr


def test_delete_user(ctl, broker, accounts):
    v = accounts.vhost()
    u = accounts.user(vhost=v)
    conn = accounts.connect(u)
    r = ctl("delete_user", u.name)
    assert r.stdout == 'Deleting user "%s" ...\n' % u.name
    assert u.name not in [row[0] for row in rows(ctl("list_users", "-s").stdout)]
    # the user's connections are closed
    with pytest.raises(pex.ConnectionClosedByBroker) as ei:
        drain_until(conn, lambda: False, timeout=10)
    assert (ei.value.reply_code, ei.value.reply_text) == \
        (320, "CONNECTION_FORCED - user '%s' is deleted" % u.name)
    with pytest.raises(pex.ProbableAuthenticationError):
        pika.BlockingConnection(u.params())


def test_delete_missing_user_67(ctl):
    u = nm("nou")
    r = ctl("delete_user", u, check=False)
    assert r.returncode == 67
    assert r.stdout == 'Deleting user "%s" ...\n' % u
    assert r.stderr == 'Error:\nUser "%s" does not exist\n' % u


def test_change_password(ctl, accounts):
    u = accounts.user()
    before = accounts.connect(u)
    r = ctl("change_password", u.name, "new-secret")
    assert r.stdout == 'Changing password for user "%s" ...\n' % u.name
    new = accounts.connect(u.params(credentials=pika.PlainCredentials(u.name, "new-secret")))
    assert new.is_open
    with pytest.raises(pex.ProbableAuthenticationError):
        pika.BlockingConnection(u.params())          # the old password
    # a connection opened with the old password stays open
    before.process_data_events(time_limit=0.5)
    assert before.is_open
    before.channel().queue_declare("", exclusive=True)


def test_change_password_missing_user_67(ctl):
    u = nm("nou")
    r = ctl("change_password", u, "x", check=False)
    assert r.returncode == 67
    assert r.stdout == 'Changing password for user "%s" ...\n' % u
    assert r.stderr == 'Error:\nUser "%s" does not exist\n' % u


def test_authenticate_user(ctl, accounts):
    u = accounts.user(permissions=False)
    r = ctl("authenticate_user", u.name, u.password, check=False)
    assert (r.returncode, r.stdout, r.stderr) == \
        (0, 'Authenticating user "%s" ...\nSuccess\n' % u.name, "")
    r = ctl("authenticate_user", u.name, "wrong", check=False)
    assert r.returncode == 65
    assert r.stdout == 'Authenticating user "%s" ...\n' % u.name
    assert r.stderr == ('Error:\nError: failed to authenticate user "%s"\n'
                        "user '%s' - invalid credentials\n" % (u.name, u.name))
    missing = nm("nou")
    r = ctl("authenticate_user", missing, "x", check=False)
    assert r.returncode == 65
    assert r.stderr == ('Error:\nError: failed to authenticate user "%s"\n'
                        "user '%s' - invalid credentials\n" % (missing, missing))


def test_set_user_tags(ctl, accounts):
    u = accounts.user(permissions=False)
    r = ctl("set_user_tags", u.name, "monitoring", "policymaker")
    assert r.stdout == 'Setting tags for user "%s" to [monitoring, policymaker] ...\n' % u.name
    assert "%s\t[monitoring, policymaker]" % u.name in row_strings(ctl("list_users", "-s").stdout)
    r = ctl("set_user_tags", u.name)
    assert r.stdout == 'Setting tags for user "%s" to [] ...\n' % u.name
    assert "%s\t[]" % u.name in row_strings(ctl("list_users", "-s").stdout)
    missing = nm("nou")
    r = ctl("set_user_tags", missing, "administrator", check=False)
    assert r.returncode == 67
    assert r.stdout == 'Setting tags for user "%s" to [administrator] ...\n' % missing
    assert r.stderr == 'Error:\nUser "%s" does not exist\n' % missing


# ---------------------------------------------------------------------------
# Vhosts and permissions
# ---------------------------------------------------------------------------

def test_add_and_delete_vhost(ctl, accounts):
    v = accounts.adopt_vhost(nm("v"))
    r = ctl("add_vhost", v)
    assert (r.stdout, r.stderr) == ('Adding vhost "%s" ...\n' % v, "")
    assert v in row_strings(ctl("list_vhosts", "-s").stdout)
    r = ctl("add_vhost", v, check=False)       # adding it again: no error in 3.10
    assert (r.returncode, r.stdout, r.stderr) == (0, 'Adding vhost "%s" ...\n' % v, "")
    r = ctl("delete_vhost", v)
    assert r.stdout == 'Deleting vhost "%s" ...\n' % v
    assert v not in row_strings(ctl("list_vhosts", "-s").stdout)
    r = ctl("delete_vhost", v, check=False)
    assert r.returncode == 65
    assert r.stdout == 'Deleting vhost "%s" ...\n' % v
    assert r.stderr == "Virtual host '%s' does not exist\n" % v


def test_delete_vhost_closes_connections_and_drops_its_objects(ctl, broker, accounts):
    v = accounts.vhost()
    accounts.grant("guest", v, ".*", ".*", ".*")
    conn = accounts.connect(broker.params(virtual_host=v))
    other = accounts.connect(broker.params())    # in "/": not affected
    ch = conn.channel()
    q = nm("q")
    ch.queue_declare(q, durable=True)
    ch.confirm_delivery()
    ch.basic_publish("", q, b"x", properties=pika.BasicProperties(delivery_mode=2))
    ctl("delete_vhost", v)
    with pytest.raises(pex.ConnectionClosedByBroker) as ei:
        drain_until(conn, lambda: False, timeout=10)
    # RabbitMQ closes them on its vhost_deleted event ("is deleted"); the
    # vhost_down event that follows says "is down" and sometimes wins the race
    assert ei.value.reply_code == 320
    assert ei.value.reply_text in ("CONNECTION_FORCED - vhost '%s' is deleted" % v,
                                   "CONNECTION_FORCED - vhost '%s' is down" % v), ei.value
    other.process_data_events(time_limit=0.2)
    assert other.is_open

    ctl("add_vhost", v)
    # its permissions went with it
    assert ctl("list_permissions", "-p", v, "-q").stdout == "\n"
    with pytest.raises(pex.ProbableAccessDeniedError):
        pika.BlockingConnection(broker.params(virtual_host=v))
    accounts.grant("guest", v, ".*", ".*", ".*")
    assert ctl("list_queues", "-p", v, "-q").stdout == ""
    c2 = accounts.connect(broker.params(virtual_host=v))
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        c2.channel().queue_declare(q, passive=True)
    assert ei.value.reply_code == 404


def test_set_and_clear_permissions(ctl, broker, accounts):
    v = accounts.vhost()
    u = accounts.user(vhost=v, permissions=False)
    r = ctl("set_permissions", "-p", v, u.name, "^c", "^w", "^r")
    assert r.stdout == 'Setting permissions for user "%s" in vhost "%s" ...\n' % (u.name, v)
    assert rows(ctl("list_permissions", "-p", v, "-s").stdout) == [[u.name, "^c", "^w", "^r"]]
    conn = pika.BlockingConnection(u.params())
    conn.close()
    # setting again replaces
    ctl("set_permissions", "-p", v, u.name, ".*", "", "")
    assert rows(ctl("list_permissions", "-p", v, "-s").stdout) == [[u.name, ".*", "", ""]]

    r = ctl("clear_permissions", "-p", v, u.name)
    assert r.stdout == 'Clearing permissions for user "%s" in vhost "%s" ...\n' % (u.name, v)
    assert ctl("list_permissions", "-p", v, "-s").stdout == "\n"
    with pytest.raises(pex.ProbableAccessDeniedError) as ei:
        pika.BlockingConnection(u.params())
    assert connection_close_reason(ei.value) == \
        (530, "NOT_ALLOWED - access to vhost '%s' refused for user '%s'" % (v, u.name))
    # clearing what is not there is fine
    assert ctl("clear_permissions", "-p", v, u.name, check=False).returncode == 0


def test_set_permissions_errors(ctl, accounts):
    v = accounts.vhost()
    u = accounts.user(permissions=False)
    nov, nou = nm("nov"), nm("nou")
    r = ctl("set_permissions", "-p", nov, u.name, ".*", ".*", ".*", check=False)
    assert r.returncode == 69
    assert r.stdout == 'Setting permissions for user "%s" in vhost "%s" ...\n' % (u.name, nov)
    assert r.stderr == "Error:\nVirtual host %s does not exist\n" % nov   # no quotes here
    r = ctl("set_permissions", "-p", v, nou, ".*", ".*", ".*", check=False)
    assert r.returncode == 67
    assert r.stderr == "Error:\nUser %s does not exist\n" % nou          # nor here
    r = ctl("clear_permissions", "-p", v, nou, check=False)
    assert r.returncode == 67
    assert r.stdout == 'Clearing permissions for user "%s" in vhost "%s" ...\n' % (nou, v)
    assert r.stderr == "Error:\nUser %s does not exist\n" % nou
    r = ctl("clear_permissions", "-p", nov, u.name, check=False)
    assert r.returncode == 69
    assert r.stderr == "Error:\nVirtual host %s does not exist\n" % nov
    # an invalid regex is refused, nothing is stored
    r = ctl("set_permissions", "-p", v, u.name, "(", ".*", ".*", check=False)
    assert r.returncode == 69
    assert "Error:\n" in r.stderr
    assert ctl("list_permissions", "-p", v, "-s").stdout == "\n"


# ---------------------------------------------------------------------------
# Queues
# ---------------------------------------------------------------------------

def test_purge_queue(ctl, guest_vhost):
    v, conn = guest_vhost
    ch = conn.channel()
    q = nm("q")
    ch.queue_declare(q)
    ch.confirm_delivery()
    for i in range(4):
        ch.basic_publish("", q, b"x")
    r = ctl("purge_queue", "-p", v, q)
    assert (r.stdout, r.stderr) == ("Purging queue '%s' in vhost '%s' ...\n" % (q, v), "")
    assert ch.queue_declare(q, passive=True).method.message_count == 0
    missing = nm("noq")
    r = ctl("purge_queue", "-p", v, missing, check=False)
    assert r.returncode == 69
    assert r.stdout == "Purging queue '%s' in vhost '%s' ...\n" % (missing, v)
    assert r.stderr == "Error:\nnot_found\n"


def test_delete_queue(ctl, guest_vhost):
    v, conn = guest_vhost
    ch = conn.channel()
    q = nm("q")
    ch.queue_declare(q)
    ch.confirm_delivery()
    for i in range(3):
        ch.basic_publish("", q, b"x")

    cch = conn.channel()
    cch.basic_qos(prefetch_count=1)
    cch.basic_consume(q, lambda *a: None)
    r = ctl("delete_queue", "-p", v, q, "--if-unused", check=False)
    assert r.returncode == 64
    assert r.stdout == "Deleting queue '%s' on vhost '%s' if queue is unused ...\n" % (q, v)
    assert r.stderr == "Error:\nQueue is in use\n"
    cch.close()                                 # cancels the consumer, requeues

    r = ctl("delete_queue", "-p", v, q, "--if-empty", check=False)
    assert r.returncode == 64
    assert r.stdout == "Deleting queue '%s' on vhost '%s' if queue is empty ...\n" % (q, v)
    assert r.stderr == "Error:\nQueue is not empty\n"
    assert ch.queue_declare(q, passive=True).method.message_count == 3   # still there

    r = ctl("delete_queue", "-p", v, q)
    assert r.stdout == ("Deleting queue '%s' on vhost '%s' ...\n"
                        "Queue was successfully deleted with 3 ready messages\n" % (q, v))
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        ch.queue_declare(q, passive=True)
    assert ei.value.reply_code == 404

    r = ctl("delete_queue", "-p", v, q, check=False)
    assert r.returncode == 64
    assert r.stdout == "Deleting queue '%s' on vhost '%s' ...\n" % (q, v)
    assert r.stderr == "Error:\nQueue not found\n"

    # --if-empty on an empty queue deletes it
    ch2 = conn.channel()
    ch2.queue_declare(q)
    r = ctl("delete_queue", "-p", v, "-e", q)
    assert r.stdout == ("Deleting queue '%s' on vhost '%s' if queue is empty ...\n"
                        "Queue was successfully deleted with 0 ready messages\n" % (q, v))


# ---------------------------------------------------------------------------
# Closing connections
# ---------------------------------------------------------------------------

def conn_pid(ctl, conn):
    port = str(local_port(conn))
    pids = [r[0] for r in rows(ctl("list_connections", "-s", "pid", "peer_port").stdout)
            if r[1] == port]
    assert len(pids) == 1, pids
    return pids[0]


def test_close_connection(ctl, broker, guest_vhost, accounts):
    v, conn = guest_vhost
    bystander = accounts.connect(broker.params(virtual_host=v))
    pid = conn_pid(ctl, conn)
    r = ctl("close_connection", pid, "go away now")
    assert (r.stdout, r.stderr) == ("Closing connection %s, reason: go away now...\n" % pid, "")
    with pytest.raises(pex.ConnectionClosedByBroker) as ei:
        drain_until(conn, lambda: False, timeout=10)
    assert (ei.value.reply_code, ei.value.reply_text) == (320, "CONNECTION_FORCED - go away now")
    bystander.process_data_events(time_limit=0.2)
    assert bystander.is_open


def test_close_connection_bad_pid(ctl):
    r = ctl("close_connection", "bogus", "x", check=False)
    assert r.returncode == 69
    assert r.stdout == "Closing connection bogus, reason: x...\n"


def test_close_all_connections_in_vhost(ctl, broker, accounts):
    v = accounts.vhost()
    accounts.grant("guest", v, ".*", ".*", ".*")
    a = accounts.connect(broker.params(virtual_host=v))
    b = accounts.connect(broker.params(virtual_host=v))
    elsewhere = accounts.connect(broker.params())
    # always with -p: without it RabbitMQ closes the connections of vhost "/"
    r = ctl("close_all_connections", "-p", v, "maintenance now")
    assert r.stdout == ("Closing all connections in vhost %s, reason: maintenance now...\n"
                        "Closed 2 connections\n" % v)
    for c in (a, b):
        with pytest.raises(pex.ConnectionClosedByBroker) as ei:
            drain_until(c, lambda: False, timeout=10)
        assert (ei.value.reply_code, ei.value.reply_text) == \
            (320, "CONNECTION_FORCED - maintenance now")
    elsewhere.process_data_events(time_limit=0.2)
    assert elsewhere.is_open
    r = ctl("close_all_connections", "-p", v, "again")
    assert r.stdout.endswith("\nClosed 0 connections\n"), r.stdout


# ---------------------------------------------------------------------------
# status, health checks, bad verbs, no broker
# ---------------------------------------------------------------------------

def test_status(ctl, broker):
    r = ctl("status")
    assert r.returncode == 0
    text = strip_ansi(r.stdout)      # RabbitMQ bolds section titles even off a terminal
    lines = text.split("\n")
    assert lines[0].startswith("Status of node ") and lines[0].endswith(" ...")
    for section in ("Runtime", "Alarms", "Memory", "Listeners"):
        assert section in lines, section
    assert "Total memory used: " in text
    assert re.search(r"^Interface: \S+, port: %d, protocol: amqp, " % broker.port, text, re.M), text
    js = json.loads(ctl("status", "--formatter", "json").stdout)
    assert any(lst["protocol"] == "amqp" and lst["port"] == broker.port
               for lst in js["listeners"]), js["listeners"]
    assert "total" in js["memory"]
    assert js["alarms"] == []


def test_ping(ctl):
    r = ctl("ping")
    assert r.returncode == 0
    assert out_lines(r.stdout)[-1] == "Ping succeeded"


@pytest.mark.parametrize("verb,expect", [
    ("ping", r"^Ping succeeded$"),
    ("check_running", r"^RabbitMQ on node \S+ is fully booted and running$"),
    ("check_local_alarms", r"^Node \S+ reported no local alarms$"),
    ("check_port_connectivity", r"^Successfully connected to ports .*\b%(port)d\b.* on node \S+\.$"),
])
def test_health_checks(ctl_diagnostics, broker, verb, expect):
    r = ctl_diagnostics(verb)
    assert r.returncode == 0, r
    assert re.search(expect % {"port": broker.port}, r.stdout, re.M), r.stdout


def test_unknown_verb_64(ctl):
    verb = "frobnicate_%s" % short_id()
    r = ctl(verb, check=False)
    assert r.returncode == 64
    assert r.stdout == ""
    assert "Command '%s' not found." % verb in r.stderr


def test_ctl_without_broker_69(ctl, broker, tmp_path):
    """No broker behind it: exit 69 and RabbitMQ's 'unable to perform an
    operation' error (Warren: a data dir with no broker; RabbitMQ: a node
    name nobody runs)."""
    if ctl.external:
        cmd = ctl.base + ["-n", "pytest_nonode_%s@localhost" % short_id(), "list_users"]
    else:
        cmd = [warren_bin(), "ctl", "--data-dir", str(tmp_path), "list_users"]
    t = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    took = time.monotonic() - t
    assert r.returncode == 69, r
    assert r.stdout == ""
    assert r.stderr.startswith("Error: unable to perform an operation on node '"), r.stderr
    if not ctl.external:
        assert took < 5, took


# ---------------------------------------------------------------------------
# Definitions
# ---------------------------------------------------------------------------

def test_export_definitions(ctl, broker, accounts, ctl_tmpdir):
    v = accounts.vhost()
    accounts.grant("guest", v, ".*", ".*", ".*")
    u = accounts.user(vhost=v, configure="^c", write="^w", read="^r",
                      tags=["monitoring", "management"])
    conn = accounts.connect(broker.params(virtual_host=v))
    ch = conn.channel()
    qd, qt, qx, x = nm("qd"), nm("qt"), nm("qx"), nm("x")
    ch.queue_declare(qd, durable=True, arguments={"x-app-limit": 10})
    ch.queue_declare(qt)                       # non-durable: exported too
    ch.queue_declare(qx, exclusive=True)       # exclusive: not exported
    ch.exchange_declare(x, "topic", durable=True)
    ch.queue_bind(qd, x, "a.#")

    path = os.path.join(ctl_tmpdir, "defs.json")
    r = ctl("export_definitions", path)
    assert r.stdout == 'Exporting definitions in JSON to a file at "%s" ...\n' % path
    with open(path) as f:
        d = json.load(f)
    for key in ("rabbit_version", "rabbitmq_version", "users", "vhosts", "permissions",
                "topic_permissions", "parameters", "global_parameters", "policies",
                "queues", "exchanges", "bindings"):
        assert key in d, key

    users = {e["name"]: e for e in d["users"]}
    e = users[u.name]
    assert e["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert e["tags"] == ["monitoring", "management"]
    assert e["limits"] == {}
    assert check_rabbit_sha256(e["password_hash"], u.password)
    assert not check_rabbit_sha256(e["password_hash"], u.password + "x")
    assert check_rabbit_sha256(users["guest"]["password_hash"], "guest")

    assert v in [e["name"] for e in d["vhosts"]]
    assert {"user": u.name, "vhost": v, "configure": "^c", "write": "^w", "read": "^r"} \
        in d["permissions"]
    queues = {e["name"]: e for e in d["queues"] if e["vhost"] == v}
    assert set(queues) == {qd, qt}
    assert queues[qd] == {"name": qd, "vhost": v, "durable": True, "auto_delete": False,
                          "arguments": {"x-app-limit": 10}, "type": "classic"}
    exchanges = [e for e in d["exchanges"] if e["vhost"] == v]
    assert [(e["name"], e["type"], e["durable"], e["auto_delete"]) for e in exchanges] == \
        [(x, "topic", True, False)]               # no amq.* exchanges
    assert [e for e in d["bindings"] if e["vhost"] == v] == [
        {"source": x, "vhost": v, "destination": qd, "destination_type": "queue",
         "routing_key": "a.#", "arguments": {}}]      # no default-exchange bindings

    # "-" writes the document to stdout, nothing else
    r = ctl("export_definitions", "-")
    assert u.name in [e["name"] for e in json.loads(r.stdout)["users"]]


def test_export_definitions_to_missing_directory_65(ctl, ctl_tmpdir):
    path = os.path.join(ctl_tmpdir, "no", "such", "defs.json")
    r = ctl("export_definitions", path, check=False)
    assert r.returncode == 65
    assert r.stderr.startswith("Error (argument validation): Bad argument: Directory %s "
                               "does not exist\n" % os.path.dirname(path)), r.stderr


def authenticated(ctl, user, password):
    return ctl("authenticate_user", user, password, check=False).returncode == 0


def test_import_definitions(ctl, broker, accounts, ctl_tmpdir):
    u, v = nm("iu"), nm("iv")
    accounts.adopt_user(u)
    accounts.adopt_vhost(v)
    q, x = nm("iq"), nm("ix")
    defs = {
        "users": [{"name": u, "password": "imported-pw", "tags": ["management"]}],
        "vhosts": [{"name": v}],
        "permissions": [{"user": u, "vhost": v, "configure": ".*", "write": ".*",
                         "read": ".*"}],
        "queues": [{"name": q, "vhost": v, "durable": True, "auto_delete": False,
                    "arguments": {}}],
        "exchanges": [{"name": x, "vhost": v, "type": "direct", "durable": True,
                       "auto_delete": False, "internal": False, "arguments": {}}],
        "bindings": [{"source": x, "vhost": v, "destination": q, "destination_type": "queue",
                      "routing_key": "rk", "arguments": {}}],
    }
    path = os.path.join(ctl_tmpdir, "import.json")
    with open(path, "w") as f:
        json.dump(defs, f)
    os.chmod(path, 0o644)
    r = ctl("import_definitions", path)
    assert r.stdout == ('Importing definitions in JSON from a file at "%s" ...\n'
                        "Successfully started definition import. This process is "
                        "asynchronous and can take some time.\n" % path)
    # asynchronous in RabbitMQ: wait for it
    wait_until(lambda: authenticated(ctl, u, "imported-pw"), timeout=30, what="imported user")
    assert "%s\t[management]" % u in row_strings(ctl("list_users", "-s").stdout)

    def login():
        try:
            return pika.BlockingConnection(broker.params(
                virtual_host=v, credentials=pika.PlainCredentials(u, "imported-pw")))
        except pex.AMQPConnectionError:
            return None
    conn = wait_until(login, timeout=30, what="login to the imported vhost")
    accounts.conns.append(conn)
    ch = conn.channel()
    ch.exchange_declare(x, passive=True)
    assert ch.queue_declare(q, passive=True).method.message_count == 0
    ch.confirm_delivery()
    ch.basic_publish(x, "rk", b"through the imported binding")
    m, _, body = ch.basic_get(q, auto_ack=True)
    assert body == b"through the imported binding"
    assert [q, "true"] in rows(ctl("list_queues", "-p", v, "-s", "name", "durable").stdout)
    assert [x, "exchange", q, "queue", "rk", "[]"] in \
        rows(ctl("list_bindings", "-p", v, "-s").stdout)


def test_import_definitions_password_hash_round_trip(ctl, accounts, ctl_tmpdir):
    """A user exported with its password_hash and imported under another name
    logs in with the first user's password."""
    src = accounts.user(permissions=False)
    exported = json.loads(ctl("export_definitions", "-").stdout)
    entry = dict([e for e in exported["users"] if e["name"] == src.name][0])
    copy = accounts.adopt_user(nm("copy"))
    entry["name"] = copy
    path = os.path.join(ctl_tmpdir, "users.json")
    with open(path, "w") as f:
        json.dump({"users": [entry]}, f)
    os.chmod(path, 0o644)
    ctl("import_definitions", path)
    wait_until(lambda: authenticated(ctl, copy, src.password), timeout=30, what="imported hash")
    assert not authenticated(ctl, copy, src.password + "x")


def test_import_definitions_bad_input_65(ctl, ctl_tmpdir):
    path = os.path.join(ctl_tmpdir, "bad.json")
    with open(path, "w") as f:
        f.write("not json")
    os.chmod(path, 0o644)
    r = ctl("import_definitions", path, check=False)
    assert r.returncode == 65
    assert r.stdout == 'Importing definitions in JSON from a file at "%s" ...\n' % path
    assert r.stderr.startswith("Error:\nFailed to deserialise input (format: JSON)"), r.stderr
    missing = os.path.join(ctl_tmpdir, "missing.json")
    r = ctl("import_definitions", missing, check=False)
    assert r.returncode == 65
    assert r.stdout == ""
    assert r.stderr.startswith("Error (argument validation): Bad argument: File %s does not "
                               "exist\n" % missing), r.stderr


def test_the_operators_sequence_verbatim(ctl, broker):
    """The sequence operators run on a new RabbitMQ, word for word, then a
    pika program logs in as the new user."""
    ctl("delete_user", "admin", check=False)      # a leftover from another run
    try:
        for cmd in (["add_user", "admin", "s3cret-pass"],
                    ["set_user_tags", "admin", "administrator"],
                    ["set_permissions", "-p", "/", "admin", ".*", ".*", ".*"]):
            r = ctl(*cmd)
            assert r.returncode == 0 and r.stderr == "", (cmd, r)
        conn = pika.BlockingConnection(broker.params(
            credentials=pika.PlainCredentials("admin", "s3cret-pass")))
        try:
            ch = conn.channel()
            q = ch.queue_declare("", exclusive=True).method.queue
            ch.confirm_delivery()
            ch.basic_publish("", q, b"as admin")
            assert ch.basic_get(q, auto_ack=True)[2] == b"as admin"
        finally:
            conn.close()
        assert "admin\t[administrator]" in row_strings(ctl("list_users", "-s").stdout)
    finally:
        ctl("delete_user", "admin", check=False)
