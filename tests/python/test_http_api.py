"""The management HTTP API (port 15672) as RabbitMQ 3.10.8 answers it.

Every expectation was observed on RabbitMQ 3.10.8 (rabbitmq_management)
with this file run as

    WARREN_TEST_URL=amqp://guest:guest@127.0.0.1:5672/%2F pytest test_http_api.py

Status codes, error/reason texts, Location headers and JSON shapes are
compared exactly where RabbitMQ's are stable; rates and figures only for
presence and type. RabbitMQ's statistics (message counts, rates, a
connection's channel count) are emitted every 5 s, so those are polled
with a bounded wait (wait_for), never slept for.

Objects have uuid-based names, are made in vhosts of their own where the
test can, and are deleted at teardown: the broker may be shared.
"""

import base64
import re
import threading
import time
import uuid

import pika
import pika.exceptions as pex
import pytest

from ctl_util import check_rabbit_sha256, local_port
from mgmt_util import Mgmt, dig, q, wait_for

STATS_WAIT_S = 15.0

NOT_FOUND = {"error": "Object Not Found", "reason": "Not Found"}
LOGIN_FAILED = {"error": "not_authorized", "reason": "Login failed"}


def not_authorised(reason):
    return {"error": "not_authorised", "reason": reason}


def bad_request(reason):
    return {"error": "bad_request", "reason": reason}


def short():
    return uuid.uuid4().hex[:12]


@pytest.fixture(scope="session")
def api(broker):
    return Mgmt(broker.mgmt_url, broker.username, broker.password)


class HttpObjects:
    """Users and vhosts made through the HTTP API; deleted at teardown."""

    def __init__(self, api, broker):
        self.api = api
        self.broker = broker
        self.users = []
        self.vhosts = []
        self.conns = []

    def vhost(self, grant_admin=True):
        name = "pytest-hv-%s" % short()
        self.vhosts.append(name)
        self.api.ok("PUT", "/api/vhosts/" + q(name), {}, expect=(201,))
        if grant_admin:
            self.api.ok("PUT", "/api/permissions/%s/%s" % (q(name), q(self.broker.username)),
                        {"configure": ".*", "write": ".*", "read": ".*"})
        return name

    def user(self, tags="", vhosts=(), password=None):
        """A user with `tags` ("a,b") and full permissions in `vhosts`;
        returns (name, password, Mgmt logged in as it)."""
        name = "pytest-hu-%s" % short()
        password = password or "pw-" + short()
        self.users.append(name)
        self.api.ok("PUT", "/api/users/" + q(name), {"password": password, "tags": tags},
                    expect=(201,))
        for v in vhosts:
            self.api.ok("PUT", "/api/permissions/%s/%s" % (q(v), q(name)),
                        {"configure": ".*", "write": ".*", "read": ".*"}, expect=(201,))
        return name, password, self.api.as_user(name, password)

    def adopt_user(self, name):
        self.users.append(name)

    def adopt_vhost(self, name):
        self.vhosts.append(name)

    def connect(self, vhost, **kw):
        c = self.broker.connect(virtual_host=vhost, **kw)
        self.conns.append(c)
        return c

    def cleanup(self):
        for c in self.conns:
            try:
                if c.is_open:
                    c.close()
            except Exception:
                pass
        for u in self.users:
            self.api.delete("/api/users/" + q(u))
        for v in self.vhosts:
            self.api.delete("/api/vhosts/" + q(v))


@pytest.fixture
def objs(api, broker):
    o = HttpObjects(api, broker)
    yield o
    o.cleanup()


@pytest.fixture
def vh(objs):
    """A fresh vhost where the test's (admin) user has all permissions."""
    return objs.vhost()


def publish(api, vhost, rk, payload, exchange="amq.default", properties=None,
            encoding="string"):
    return api.ok("POST", "/api/exchanges/%s/%s/publish" % (q(vhost), q(exchange)),
                  {"properties": properties or {}, "routing_key": rk,
                   "payload": payload, "payload_encoding": encoding}, expect=(200,))


def queue_path(vhost, name):
    return "/api/queues/%s/%s" % (q(vhost), q(name))


def wait_queue_field(api, vhost, name, field, value):
    def check():
        _, _, b = api.get(queue_path(vhost, name))
        return isinstance(b, dict) and dig(b, field) == value and b
    return wait_for(check, timeout=STATS_WAIT_S,
                    what="%s of queue %s == %r" % (field, name, value))


# ---------------------------------------------------------------------------
# overview, whoami
# ---------------------------------------------------------------------------

def test_overview(api, broker):
    status, headers, o = api.get("/api/overview")
    assert status == 200
    assert headers.get("content-type", "").startswith("application/json")
    for key in ("rabbitmq_version", "cluster_name", "node", "erlang_version",
                "management_version", "product_name", "product_version"):
        assert isinstance(o[key], str) and o[key], key
    # versions and product names are the broker's own (not compared with
    # Warren), but rabbitmq_version is a dotted version tools can parse
    assert re.match(r"^\d+\.\d+\.\d+", o["rabbitmq_version"]), o["rabbitmq_version"]
    if broker.external:
        assert re.match(r"^3\.10\.\d+$", o["rabbitmq_version"]), o["rabbitmq_version"]
        assert o["product_name"] == "RabbitMQ"
    for key in ("connections", "channels", "consumers", "exchanges", "queues"):
        assert isinstance(o["object_totals"][key], int), key
    assert o["object_totals"]["exchanges"] >= 7       # the predeclared ones
    for key in ("messages", "messages_ready", "messages_unacknowledged"):
        assert isinstance(o["queue_totals"][key], int), key
        assert isinstance(o["queue_totals"][key + "_details"]["rate"], (int, float))
    assert isinstance(o["message_stats"], dict)
    types = {t["name"] for t in o["exchange_types"]}
    assert {"direct", "fanout", "headers", "topic"} <= types
    for t in o["exchange_types"]:
        assert set(t) >= {"name", "description", "enabled"}
    amqp = [li for li in o["listeners"] if li["protocol"] == "amqp"]
    assert amqp, o["listeners"]
    for li in o["listeners"]:
        assert set(li) >= {"node", "protocol", "ip_address", "port"}
        assert isinstance(li["port"], int)
    assert amqp[0]["node"] == o["node"]


def test_overview_columns(api):
    status, _, o = api.get("/api/overview?columns=rabbitmq_version,object_totals.queues")
    assert status == 200
    # a nested column keeps its whole top-level object (3.10 filters the
    # first level only)
    assert set(o) == {"rabbitmq_version", "object_totals"}
    assert {"queues", "exchanges", "connections", "channels",
            "consumers"} <= set(o["object_totals"])


def test_whoami(api, broker, objs):
    assert api.get("/api/whoami")[::2] == (200, {"name": broker.username,
                                                 "tags": ["administrator"]})
    name, _, as_u = objs.user(tags="management,monitoring")
    assert as_u.get("/api/whoami")[::2] == (200, {"name": name,
                                                  "tags": ["management", "monitoring"]})


# ---------------------------------------------------------------------------
# vhosts
# ---------------------------------------------------------------------------

def test_vhost_lifecycle(api, objs, broker):
    v = "pytest-hv-%s" % short()
    objs.adopt_vhost(v)
    path = "/api/vhosts/" + q(v)
    if not broker.external:
        # Warren stores no vhost metadata yet and says so (README).
        status, _, body = api.put(path, {"description": "a test vhost", "tags": "t1,t2"})
        assert status == 501 and "not supported by Warren yet" in body["reason"], body
        assert api.get(path)[0] == 404, "a refused PUT creates nothing"
        assert api.put(path, {})[::2] == (201, None)
        b = api.get(path)[2]
        assert (b["name"], b["description"], b["tags"], b["tracing"]) == (v, "", [], False)
        assert api.put(path, {"description": ""})[::2] == (204, None)
        assert api.delete(path)[::2] == (204, None)
        assert api.get(path)[::2] == (404, NOT_FOUND)
        return
    status, headers, body = api.put(path, {"description": "a test vhost", "tags": "t1,t2"})
    assert (status, body) == (201, None)
    status, _, b = api.get(path)
    assert status == 200
    assert b["name"] == v
    assert b["description"] == "a test vhost"
    assert b["tags"] == ["t1", "t2"]
    assert b["tracing"] is False
    names = [x["name"] for x in api.get("/api/vhosts")[2]]
    assert v in names and "/" in names
    assert api.put(path, {"description": "changed"})[::2] == (204, None)
    b = api.get(path)[2]
    # a PUT replaces the metadata: tags not given are cleared
    assert (b["description"], b["tags"]) == ("changed", [])
    assert api.delete(path)[::2] == (204, None)
    assert api.get(path)[::2] == (404, NOT_FOUND)
    assert api.delete(path)[::2] == (404, NOT_FOUND)


# ---------------------------------------------------------------------------
# users and permissions
# ---------------------------------------------------------------------------

def test_user_put_with_password(api, objs, broker):
    u = "pytest-hu-%s" % short()
    objs.adopt_user(u)
    path = "/api/users/" + q(u)
    assert api.put(path, {"password": "s3cret", "tags": "management,policymaker"})[::2] == (201, None)
    status, _, b = api.get(path)
    assert status == 200
    assert set(b) == {"name", "password_hash", "hashing_algorithm", "tags", "limits"}
    assert b["name"] == u
    assert b["tags"] == ["management", "policymaker"]
    assert b["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert b["limits"] == {}
    assert len(b["password_hash"]) == 48
    assert check_rabbit_sha256(b["password_hash"], "s3cret")
    # tags as a list; an existing user answers 204
    assert api.put(path, {"password": "s3cret", "tags": ["monitoring"]})[::2] == (204, None)
    assert api.get(path)[2]["tags"] == ["monitoring"]
    assert api.as_user(u, "s3cret").get("/api/whoami")[::2] == (
        200, {"name": u, "tags": ["monitoring"]})
    assert u in [x["name"] for x in api.get("/api/users")[2]]
    assert api.delete(path)[::2] == (204, None)
    assert api.get(path)[::2] == (404, NOT_FOUND)
    assert api.delete(path)[::2] == (404, NOT_FOUND)


def test_user_put_with_password_hash(api, objs, broker, vh):
    import hashlib
    import os
    salt = os.urandom(4)
    h = base64.b64encode(salt + hashlib.sha256(salt + b"hashed-pw").digest()).decode()
    u = "pytest-hu-%s" % short()
    objs.adopt_user(u)
    assert api.put("/api/users/" + q(u), {"password_hash": h, "tags": ""})[::2] == (201, None)
    b = api.get("/api/users/" + q(u))[2]
    assert b["password_hash"] == h and b["tags"] == []
    api.ok("PUT", "/api/permissions/%s/%s" % (q(vh), q(u)),
           {"configure": ".*", "write": ".*", "read": ".*"}, expect=(201,))
    c = objs.connect(vh, credentials=pika.PlainCredentials(u, "hashed-pw"))
    assert c.is_open


def test_user_without_password(api, objs):
    u = "pytest-hu-%s" % short()
    objs.adopt_user(u)
    assert api.put("/api/users/" + q(u), {"tags": "management"})[::2] == (201, None)
    b = api.get("/api/users/" + q(u))[2]
    # no password given: a hash of a password nobody knows, not ""
    assert b["tags"] == ["management"] and len(b["password_hash"]) == 48
    for pw in ("", "x"):
        assert api.as_user(u, pw).get("/api/whoami")[::2] == (401, LOGIN_FAILED)


def test_user_put_existing_without_tags(api, objs):
    name, pw, _ = objs.user(tags="management")
    assert api.put("/api/users/" + q(name), {"password": pw})[::2] == (
        400, bad_request("tags_not_present"))


def test_permissions(api, objs, vh):
    name, _, _ = objs.user(tags="")
    path = "/api/permissions/%s/%s" % (q(vh), q(name))
    assert api.put(path, {"configure": ".*", "write": ".*", "read": ".*"})[::2] == (201, None)
    assert api.put(path, {"configure": "^c", "write": "w", "read": ""})[::2] == (204, None)
    mine = {"user": name, "vhost": vh, "configure": "^c", "write": "w", "read": ""}
    assert api.get(path)[::2] == (200, mine)
    assert api.get("/api/users/%s/permissions" % q(name))[::2] == (200, [mine])
    in_vhost = api.get("/api/vhosts/%s/permissions" % q(vh))[2]
    assert mine in in_vhost
    assert all(set(p) == {"user", "vhost", "configure", "write", "read"} for p in in_vhost)
    assert mine in api.get("/api/permissions")[2]
    assert api.put(path, {"configure": ".*"})[::2] == (
        400, bad_request("[{key_missing,write},{key_missing,read}]"))
    nouser = "/api/permissions/%s/no-such-user-%s" % (q(vh), short())
    assert api.put(nouser, {"configure": ".*", "write": ".*", "read": ".*"})[::2] == (
        400, bad_request("vhost_or_user_not_found"))
    assert api.delete(path)[::2] == (204, None)
    assert api.get(path)[::2] == (404, NOT_FOUND)
    assert api.delete(path)[::2] == (404, NOT_FOUND)
    assert api.get("/api/users/%s/permissions" % q(name))[::2] == (200, [])


# ---------------------------------------------------------------------------
# queues
# ---------------------------------------------------------------------------

QUEUE_FIELDS = {"name", "vhost", "node", "type", "state", "durable", "auto_delete",
                "exclusive", "arguments", "policy", "consumers", "memory", "messages",
                "messages_ready", "messages_unacknowledged"}
# present only once the queue's first statistics are in (up to 5 s)
STATS_FIELDS = {"messages", "messages_ready", "messages_unacknowledged", "state",
                "memory", "policy", "consumers"}


def test_queue_declare_and_get(api, vh):
    name = "q-" + short()
    path = queue_path(vh, name)
    status, _, body = api.put(path, {"durable": "true", "auto_delete": False,
                                     "arguments": {"x-app-level": 10}, "extra": "ignored"})
    assert (status, body) == (201, None)
    assert api.put(path, {"durable": True, "arguments": {"x-app-level": 10}})[::2] == (204, None)
    status, _, b = api.get(path)
    assert status == 200
    # the counts (messages, ...) come with the first statistics, up to 5 s
    # later: test_queue_message_counts waits for them
    assert QUEUE_FIELDS - STATS_FIELDS <= set(b), QUEUE_FIELDS - set(b)
    assert b["name"] == name and b["vhost"] == vh
    assert b["durable"] is True and b["auto_delete"] is False and b["exclusive"] is False
    assert b["arguments"] == {"x-app-level": 10}
    assert b["type"] == "classic"
    assert isinstance(b["node"], str)
    listed = api.get("/api/queues/" + q(vh))[2]
    assert [x["name"] for x in listed] == [name]
    assert name in [x["name"] for x in api.get("/api/queues")[2] if x["vhost"] == vh]
    # defaults: not durable, not auto-delete
    other = "q-" + short()
    assert api.put(queue_path(vh, other), {})[0] == 201
    o = api.get(queue_path(vh, other))[2]
    assert (o["durable"], o["auto_delete"], o["arguments"]) == (False, False, {})


def test_queue_declare_inequivalent(api, vh):
    name = "q-" + short()
    path = queue_path(vh, name)
    api.ok("PUT", path, {"durable": True, "arguments": {"x-app-level": 10}}, expect=(201,))
    assert api.put(path, {"durable": False})[::2] == (400, bad_request(
        "inequivalent arg 'durable' for queue '%s' in vhost '%s': "
        "received 'false' but current is 'true'" % (name, vh)))
    # arguments the broker does not know are not compared, as in RabbitMQ
    assert api.put(path, {"durable": True, "arguments": {"x-app-level": 11}})[::2] == (204, None)


def test_queue_declare_bad_argument_and_body(api, vh, broker):
    name = "q-" + short()
    status, _, body = api.put(queue_path(vh, name), {"arguments": {"x-max-length": "5"}})
    assert (status, body) == (
        400, bad_request("invalid arg 'x-max-length' for queue '%s' in vhost '%s': "
                         "\"expected integer, got longstr\"" % (name, vh)))
    assert api.put(queue_path(vh, name), raw_body="not json")[::2] == (
        400, bad_request("not_json"))
    assert api.get(queue_path(vh, name))[::2] == (404, NOT_FOUND)
    assert api.put(queue_path(vh, "amq.x" + short()), {})[::2] == (
        401, not_authorised("Access refused."))


def test_queue_delete_if_empty_and_purge(api, vh):
    name = "q-" + short()
    path = queue_path(vh, name)
    api.ok("PUT", path, {}, expect=(201,))
    publish(api, vh, name, "x")
    publish(api, vh, name, "y")
    assert api.delete(path + "?if-empty=true")[::2] == (
        400, bad_request("queue '%s' in vhost '%s' not empty" % (name, vh)))
    assert api.get(path)[0] == 200
    assert api.delete(path + "/contents")[::2] == (204, None)
    got = api.post(path + "/get", {"count": 5, "ackmode": "ack_requeue_false",
                                   "encoding": "auto"})
    assert got[::2] == (200, [])
    assert api.delete(path + "?if-empty=true")[::2] == (204, None)
    assert api.get(path)[::2] == (404, NOT_FOUND)
    assert api.delete(path)[::2] == (404, NOT_FOUND)


def test_delete_if_unused(api, objs, vh):
    name = "q-" + short()
    c = objs.connect(vh)
    ch = c.channel()
    ch.queue_declare(name)
    ch.basic_consume(name, lambda *a: None)
    in_use = (400, bad_request("queue '%s' in vhost '%s' in use" % (name, vh)))
    assert api.delete(queue_path(vh, name) + "?if-unused=true")[::2] == in_use
    assert api.delete(queue_path(vh, name) + "?if-unused=true&if-empty=true")[::2] == in_use
    x = "x-" + short()
    xpath = "/api/exchanges/%s/%s" % (q(vh), x)
    api.ok("PUT", xpath, {"type": "direct"}, expect=(201,))
    api.ok("POST", "/api/bindings/%s/e/%s/q/%s" % (q(vh), x, name), {"routing_key": "r"},
           expect=(201,))
    assert api.delete(xpath + "?if-unused=true")[::2] == (
        400, bad_request("exchange '%s' in vhost '%s' in use" % (x, vh)))
    api.ok("DELETE", "/api/bindings/%s/e/%s/q/%s/r" % (q(vh), x, name), expect=(204,))
    assert api.delete(xpath + "?if-unused=true")[::2] == (204, None)
    other = "q-" + short()
    api.ok("PUT", queue_path(vh, other), {}, expect=(201,))
    assert api.delete(queue_path(vh, other) + "?if-unused=true")[::2] == (204, None)


def test_exclusive_queue_of_another_connection(api, objs, vh):
    name = "q-" + short()
    c = objs.connect(vh)
    c.channel().queue_declare(name, exclusive=True)
    assert api.get(queue_path(vh, name))[2]["exclusive"] is True
    locked = (400, bad_request(
        "cannot obtain exclusive access to locked queue '%s' in vhost '%s'. It could be "
        "originally declared on another connection or the exclusive property value does "
        "not match that of the original declaration." % (name, vh)))
    assert api.put(queue_path(vh, name), {})[::2] == locked
    assert api.delete(queue_path(vh, name))[::2] == locked
    assert api.get(queue_path(vh, name))[0] == 200


def test_queue_missing_404(api, vh):
    assert api.get(queue_path(vh, "nope-" + short()))[::2] == (404, NOT_FOUND)
    assert api.get("/api/queues/no-such-vhost-" + short())[::2] == (404, NOT_FOUND)
    assert api.get("/api/queues/no-such-vhost-%s/x" % short())[::2] == (404, NOT_FOUND)
    assert api.post(queue_path(vh, "nope") + "/get",
                    {"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"})[::2] == (
        404, {"error": "not_found", "reason": "NOT_FOUND - no queue 'nope' in vhost '%s'" % vh})


def test_queue_get_ackmodes(api, vh):
    name = "q-" + short()
    path = queue_path(vh, name)
    api.ok("PUT", path, {}, expect=(201,))
    publish(api, vh, name, "hello")
    publish(api, vh, name, "aGk=", encoding="base64",
            properties={"content_type": "text/plain", "delivery_mode": 2,
                        "headers": {"h": 1}})

    status, _, items = api.post(path + "/get", {"count": "1", "ackmode": "ack_requeue_true",
                                                "encoding": "auto"})
    assert status == 200
    assert items == [{"payload_bytes": 5, "redelivered": False, "exchange": "",
                      "routing_key": name, "message_count": 1, "properties": [],
                      "payload": "hello", "payload_encoding": "string"}]
    # requeued: still there, now redelivered, and count as many as asked
    items = api.post(path + "/get", {"count": 5, "ackmode": "ack_requeue_true",
                                     "encoding": "auto"})[2]
    assert [(i["payload"], i["redelivered"], i["message_count"]) for i in items] == [
        ("hello", True, 1), ("hi", False, 0)]
    assert items[1]["properties"] == {"content_type": "text/plain", "delivery_mode": 2,
                                      "headers": {"h": 1}}
    assert items[1]["payload_bytes"] == 2
    # ack_requeue_false removes them
    items = api.post(path + "/get", {"count": 5, "ackmode": "ack_requeue_false",
                                     "encoding": "auto"})[2]
    assert [(i["payload"], i["redelivered"]) for i in items] == [("hello", True), ("hi", True)]
    assert api.post(path + "/get", {"count": 5, "ackmode": "ack_requeue_false",
                                    "encoding": "auto"})[::2] == (200, [])


def test_queue_get_reject_requeue(api, vh):
    name = "q-" + short()
    path = queue_path(vh, name)
    api.ok("PUT", path, {}, expect=(201,))
    publish(api, vh, name, "r")
    items = api.post(path + "/get", {"count": 1, "ackmode": "reject_requeue_true",
                                     "encoding": "auto"})[2]
    assert [(i["payload"], i["redelivered"]) for i in items] == [("r", False)]
    items = api.post(path + "/get", {"count": 1, "ackmode": "reject_requeue_false",
                                     "encoding": "auto"})[2]
    assert [(i["payload"], i["redelivered"]) for i in items] == [("r", True)]
    assert api.post(path + "/get", {"count": 1, "ackmode": "ack_requeue_true",
                                    "encoding": "auto"})[2] == []


def test_queue_get_encodings(api, vh):
    name = "q-" + short()
    path = queue_path(vh, name)
    api.ok("PUT", path, {}, expect=(201,))
    publish(api, vh, name, "text")
    publish(api, vh, name, base64.b64encode(b"\xff\xfe\x00").decode(), encoding="base64")
    auto = api.post(path + "/get", {"count": 2, "ackmode": "ack_requeue_true",
                                    "encoding": "auto"})[2]
    assert [(i["payload"], i["payload_encoding"], i["payload_bytes"]) for i in auto] == [
        ("text", "string", 4), ("//4A", "base64", 3)]
    b64 = api.post(path + "/get", {"count": 2, "ackmode": "ack_requeue_true",
                                   "encoding": "base64"})[2]
    assert [(i["payload"], i["payload_encoding"]) for i in b64] == [
        ("dGV4dA==", "base64"), ("//4A", "base64")]
    trunc = api.post(path + "/get", {"count": 1, "ackmode": "ack_requeue_true",
                                     "encoding": "auto", "truncate": 2})[2]
    assert (trunc[0]["payload"], trunc[0]["payload_bytes"]) == ("te", 4)


def test_queue_get_errors(api, vh):
    name = "q-" + short()
    path = queue_path(vh, name)
    api.ok("PUT", path, {}, expect=(201,))
    assert api.post(path + "/get", {"count": 1, "encoding": "auto"})[::2] == (
        400, bad_request("[{key_missing,ackmode}]"))
    assert api.post(path + "/get", {"count": 1, "ackmode": "ack_requeue_true"})[::2] == (
        400, bad_request("[{key_missing,encoding}]"))
    assert api.post(path + "/get", {"count": 1, "ackmode": "ack_requeue_true",
                                    "encoding": "utf8"})[::2] == (
        400, bad_request("Unsupported encoding. Please use auto or base64."))
    assert api.post(path + "/get", raw_body="{")[::2] == (400, bad_request("not_json"))
    assert api.post(path + "/get")[::2] == (400, bad_request(
        "[{key_missing,ackmode},{key_missing,count},{key_missing,encoding}]"))


def test_queue_get_utf8_payload(api, vh):
    name = "q-" + short()
    path = queue_path(vh, name)
    api.ok("PUT", path, {}, expect=(201,))
    publish(api, vh, name, "caf\u00e9 \u2603")       # a "string" payload is sent as UTF-8
    [item] = api.post(path + "/get", {"count": 1, "ackmode": "ack_requeue_true",
                                      "encoding": "auto"})[2]
    assert (item["payload"], item["payload_encoding"], item["payload_bytes"]) == (
        "caf\u00e9 \u2603", "string", 9)
    [item] = api.post(path + "/get", {"count": 1, "ackmode": "ack_requeue_true",
                                      "encoding": "base64"})[2]
    assert base64.b64decode(item["payload"]) == "caf\u00e9 \u2603".encode("utf-8")


# ---------------------------------------------------------------------------
# exchanges and publishing
# ---------------------------------------------------------------------------

def test_exchange_declare_get_delete(api, vh):
    x = "x-" + short()
    path = "/api/exchanges/%s/%s" % (q(vh), q(x))
    assert api.put(path, {"type": "topic", "durable": "true"})[::2] == (201, None)
    assert api.put(path, {"type": "topic", "durable": True})[::2] == (204, None)
    status, _, b = api.get(path)
    assert status == 200
    assert {k: b[k] for k in ("name", "vhost", "type", "durable", "auto_delete",
                              "internal", "arguments")} == {
        "name": x, "vhost": vh, "type": "topic", "durable": True, "auto_delete": False,
        "internal": False, "arguments": {}}
    assert api.put(path, {"type": "direct"})[::2] == (400, bad_request(
        "inequivalent arg 'type' for exchange '%s' in vhost '%s': "
        "received 'direct' but current is 'topic'" % (x, vh)))
    bogus = "/api/exchanges/%s/%s" % (q(vh), q("y-" + short()))
    assert api.put(bogus, {"type": "bogus"})[::2] == (
        400, bad_request("invalid exchange type 'bogus'"))
    listed = {e["name"]: e["type"] for e in api.get("/api/exchanges/" + q(vh))[2]}
    assert listed == {"": "direct", "amq.direct": "direct", "amq.fanout": "fanout",
                      "amq.headers": "headers", "amq.match": "headers",
                      "amq.rabbitmq.trace": "topic", "amq.topic": "topic", x: "topic"}
    assert x in [e["name"] for e in api.get("/api/exchanges")[2] if e["vhost"] == vh]
    assert api.delete(path)[::2] == (204, None)
    assert api.get(path)[::2] == (404, NOT_FOUND)
    assert api.delete(path)[::2] == (404, NOT_FOUND)


def test_default_exchange_is_amq_default(api, vh):
    status, _, b = api.get("/api/exchanges/%s/amq.default" % q(vh))
    assert status == 200
    assert (b["name"], b["type"], b["durable"]) == ("", "direct", True)
    refused = (401, not_authorised("Access refused."))
    assert api.put("/api/exchanges/%s/amq.default" % q(vh), {"type": "direct"})[::2] == refused
    assert api.delete("/api/exchanges/%s/amq.default" % q(vh))[::2] == refused
    assert api.delete("/api/exchanges/%s/amq.direct" % q(vh))[::2] == refused


def test_publish_routed(api, vh):
    name = "q-" + short()
    api.ok("PUT", queue_path(vh, name), {}, expect=(201,))
    assert publish(api, vh, name, "x") == {"routed": True}
    assert publish(api, vh, "nobody-" + short(), "x") == {"routed": False}
    x = "x-" + short()
    api.ok("PUT", "/api/exchanges/%s/%s" % (q(vh), x), {"type": "fanout"}, expect=(201,))
    assert publish(api, vh, "", "x", exchange=x) == {"routed": False}


def test_publish_errors(api, vh):
    path = "/api/exchanges/%s/amq.default/publish" % q(vh)
    assert api.post(path, {"routing_key": "k", "payload": "x",
                           "payload_encoding": "string"})[::2] == (
        400, bad_request("[{key_missing,properties}]"))
    assert api.post(path, {"properties": {}, "routing_key": "k", "payload": "x"})[::2] == (
        400, bad_request("[{key_missing,payload_encoding}]"))
    nox = "nox-" + short()
    ix = "ix-" + short()
    api.ok("PUT", "/api/exchanges/%s/%s" % (q(vh), ix),
           {"type": "direct", "internal": True, "auto_delete": "false"}, expect=(201,))
    assert api.get("/api/exchanges/%s/%s" % (q(vh), ix))[2]["internal"] is True
    assert api.post("/api/exchanges/%s/%s/publish" % (q(vh), ix),
                    {"properties": {}, "routing_key": "", "payload": "x",
                     "payload_encoding": "string"})[::2] == (
        400, bad_request("403 ACCESS_REFUSED - cannot publish to internal exchange "
                         "'%s' in vhost '%s'" % (ix, vh)))
    assert api.post("/api/exchanges/%s/%s/publish" % (q(vh), nox),
                    {"properties": {}, "routing_key": "k", "payload": "x",
                     "payload_encoding": "string"})[::2] == (
        400, bad_request("404 NOT_FOUND - no exchange '%s' in vhost '%s'" % (nox, vh)))


# ---------------------------------------------------------------------------
# bindings
# ---------------------------------------------------------------------------

def test_bindings(api, vh):
    x, name = "x-" + short(), "q-" + short()
    api.ok("PUT", "/api/exchanges/%s/%s" % (q(vh), x), {"type": "topic"}, expect=(201,))
    api.ok("PUT", queue_path(vh, name), {}, expect=(201,))
    base = "/api/bindings/%s/e/%s/q/%s" % (q(vh), q(x), q(name))

    status, headers, body = api.post(base, {"routing_key": "a.b", "arguments": {}})
    assert (status, body, headers.get("location")) == (201, None, "%s/a.b" % name)
    status, headers, _ = api.post(base, {"routing_key": "k", "arguments": {"x": "y"}})
    assert status == 201
    loc = headers.get("location")
    assert re.match(r"^%s/k~[A-Za-z0-9_-]+$" % re.escape(name), loc), loc
    args_key = loc.split("/", 1)[1]
    status, headers, _ = api.post(base, {})
    assert (status, headers.get("location")) == (201, "%s/~" % name)

    def b(rk, args, key):
        return {"source": x, "vhost": vh, "destination": name, "destination_type": "queue",
                "routing_key": rk, "arguments": args, "properties_key": key}
    mine = [b("", {}, "~"), b("a.b", {}, "a.b"), b("k", {"x": "y"}, args_key)]
    srt = lambda lst: sorted(lst, key=lambda d: d["properties_key"])
    assert srt(api.get(base)[2]) == srt(mine)
    default = {"source": "", "vhost": vh, "destination": name, "destination_type": "queue",
               "routing_key": name, "arguments": {}, "properties_key": name}
    assert srt(api.get(queue_path(vh, name) + "/bindings")[2]) == srt(mine + [default])
    assert srt(api.get("/api/exchanges/%s/%s/bindings/source" % (q(vh), q(x)))[2]) == srt(mine)
    assert api.get("/api/exchanges/%s/%s/bindings/destination" % (q(vh), q(x)))[2] == []
    assert srt(api.get("/api/bindings/" + q(vh))[2]) == srt(mine + [default])
    assert all(d in api.get("/api/bindings")[2] for d in mine)
    assert api.get(base + "/a.b")[::2] == (200, mine[1])

    assert publish(api, vh, "a.b", "x", exchange=x) == {"routed": True}
    assert publish(api, vh, "a.c", "x", exchange=x) == {"routed": False}

    assert api.delete(base + "/a.b")[::2] == (204, None)
    assert api.delete(base + "/a.b")[::2] == (404, NOT_FOUND)
    assert api.get(base + "/a.b")[::2] == (404, NOT_FOUND)
    assert api.delete(base + "/" + q(args_key))[::2] == (204, None)
    assert api.delete(base + "/~")[::2] == (204, None)
    assert api.get(base)[::2] == (200, [])


def test_binding_errors(api, vh):
    x = "x-" + short()
    api.ok("PUT", "/api/exchanges/%s/%s" % (q(vh), x), {"type": "direct"}, expect=(201,))
    nq = "nq-" + short()
    assert api.post("/api/bindings/%s/e/%s/q/%s" % (q(vh), x, nq), {"routing_key": "k"})[::2] == (
        404, {"error": "not_found", "reason": "no queue '%s' in vhost '%s'" % (nq, vh)})
    name = "q-" + short()
    api.ok("PUT", queue_path(vh, name), {}, expect=(201,))
    assert api.post("/api/bindings/%s/e/amq.default/q/%s" % (q(vh), name),
                    {"routing_key": "k"})[::2] == (401, not_authorised("Access refused."))


def test_exchange_to_exchange_binding(api, vh):
    x = "x-" + short()
    api.ok("PUT", "/api/exchanges/%s/%s" % (q(vh), x), {"type": "direct"}, expect=(201,))
    base = "/api/bindings/%s/e/%s/e/amq.fanout" % (q(vh), x)
    status, headers, _ = api.post(base, {"routing_key": "r"})
    assert (status, headers.get("location")) == (201, "amq.fanout/r")
    assert api.get("/api/exchanges/%s/amq.fanout/bindings/destination" % q(vh))[2] == [
        {"source": x, "vhost": vh, "destination": "amq.fanout", "destination_type": "exchange",
         "routing_key": "r", "arguments": {}, "properties_key": "r"}]
    assert api.delete(base + "/r")[::2] == (204, None)
    assert api.get(base)[::2] == (200, [])


# ---------------------------------------------------------------------------
# connections, channels, consumers
# ---------------------------------------------------------------------------

def _my_connection(api, port, path="/api/connections"):
    def find():
        lst = api.get(path)[2]
        mine = [c for c in lst if c.get("peer_port") == port]
        return mine and mine[0]
    return wait_for(find, timeout=STATS_WAIT_S, what="connection from port %d listed" % port)


def test_connections(api, objs, vh, broker):
    cname = "pytest-conn-" + short()
    c = objs.connect(vh, client_properties={"connection_name": cname})
    c.channel()
    port = local_port(c)
    conn = _my_connection(api, port)
    assert conn["name"] == "127.0.0.1:%d -> 127.0.0.1:%d" % (port, broker.port) \
        or conn["name"].endswith(":%d" % broker.port)
    assert conn["user"] == broker.username and conn["vhost"] == vh
    assert conn["state"] == "running"
    assert conn["peer_host"] == "127.0.0.1" and conn["peer_port"] == port
    assert conn["port"] == broker.port
    assert conn["protocol"] == "AMQP 0-9-1"
    assert conn["auth_mechanism"] == "PLAIN"
    assert conn["client_properties"]["connection_name"] == cname
    assert conn["client_properties"]["product"] == "Pika Python Client Library"
    assert conn["client_properties"]["capabilities"]["publisher_confirms"] is True
    assert conn["user_provided_name"] == cname
    assert isinstance(conn["channels"], int)
    wait_for(lambda: _my_connection(api, port)["channels"] == 1, timeout=STATS_WAIT_S,
             what="channels == 1")
    status, _, one = api.get("/api/connections/" + q(conn["name"]))
    assert status == 200 and one["name"] == conn["name"] and one["peer_port"] == port
    assert isinstance(one["recv_oct_details"]["rate"], (int, float))
    assert _my_connection(api, port, "/api/vhosts/%s/connections" % q(vh))["name"] == conn["name"]
    assert api.get("/api/connections/no-such-connection")[::2] == (404, NOT_FOUND)
    # a management user sees only its own connections, a monitoring one all
    _, _, as_mgmt = objs.user(tags="management", vhosts=[vh])
    _, _, as_mon = objs.user(tags="monitoring")
    assert port not in [x["peer_port"] for x in as_mgmt.get("/api/connections")[2]]
    assert as_mgmt.get("/api/connections/" + q(conn["name"]))[::2] == (
        401, not_authorised("User not authorised to access object"))
    assert port in [x["peer_port"] for x in as_mon.get("/api/connections")[2]]
    assert as_mon.get("/api/connections/" + q(conn["name"]))[0] == 200
    assert vh in [v["name"] for v in as_mon.get("/api/vhosts")[2]]
    assert as_mon.get("/api/nodes")[0] == 200
    assert as_mon.get("/api/users")[::2] == (401, not_authorised("Not administrator user"))


def test_close_connection(api, objs, vh):
    """DELETE with and without X-Reason; pika sees connection.close 320."""
    conns = [objs.connect(vh), objs.connect(vh)]
    ports = [local_port(c) for c in conns]

    def both():
        lst = {x["peer_port"]: x["name"] for x in api.get("/api/connections")[2]}
        return all(p in lst for p in ports) and [lst[p] for p in ports]
    names = wait_for(both, timeout=STATS_WAIT_S, what="both connections listed")
    for c, name, reason in zip(conns, names, (None, "pytest says bye")):
        headers = {"X-Reason": reason} if reason else None
        assert api.delete("/api/connections/" + q(name), headers=headers)[::2] == (204, None)
        with pytest.raises(pex.ConnectionClosedByBroker) as ei:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                c.process_data_events(0.5)
        expected = "CONNECTION_FORCED - " + (reason or "Closed via management plugin")
        assert (ei.value.reply_code, ei.value.reply_text) == (320, expected)
    for name in names:
        wait_for(lambda: api.get("/api/connections/" + q(name))[0] == 404,
                 timeout=STATS_WAIT_S, what="closed connection gone")


def test_channels_and_consumers(api, objs, vh, broker):
    c = objs.connect(vh)
    ch = c.channel()
    ch.basic_qos(prefetch_count=7)
    name = "q-" + short()
    ch.queue_declare(name)
    tag = "ctag-" + short()
    ch.basic_consume(name, lambda *a: None, consumer_tag=tag)
    port = local_port(c)

    def find_ch():
        lst = api.get("/api/channels")[2]
        mine = [x for x in lst if dig(x, "connection_details.peer_port") == port]
        return mine and mine[0]
    chan = wait_for(find_ch, timeout=STATS_WAIT_S, what="channel listed")
    conn_name = _my_connection(api, port)["name"]
    assert chan["name"] == "%s (1)" % conn_name
    assert chan["number"] == 1
    assert chan["connection_details"] == {"name": conn_name, "peer_host": "127.0.0.1",
                                          "peer_port": port}
    assert chan["user"] == broker.username and chan["vhost"] == vh
    assert chan["prefetch_count"] == 7 and chan["global_prefetch_count"] == 0
    assert chan["consumer_count"] == 1
    assert chan["confirm"] is False and chan["transactional"] is False
    assert chan["state"] == "running"
    for k in ("messages_unacknowledged", "messages_unconfirmed", "messages_uncommitted",
              "acks_uncommitted"):
        assert chan[k] == 0, k
    assert [x["name"] for x in api.get("/api/connections/%s/channels" % q(conn_name))[2]] == [
        chan["name"]]
    assert chan["name"] in [x["name"] for x in api.get("/api/vhosts/%s/channels" % q(vh))[2]]
    status, _, one = api.get("/api/channels/" + q(chan["name"]))
    assert status == 200 and one["name"] == chan["name"]
    assert [d["consumer_tag"] for d in one["consumer_details"]] == [tag]

    expected = {
        "arguments": {}, "ack_required": True, "active": True, "activity_status": "up",
        "consumer_tag": tag, "exclusive": False, "prefetch_count": 7,
        "queue": {"name": name, "vhost": vh},
        "channel_details": {"connection_name": conn_name, "name": chan["name"],
                            "node": chan["node"], "number": 1, "peer_host": "127.0.0.1",
                            "peer_port": port, "user": broker.username},
    }
    assert api.get("/api/consumers/" + q(vh))[::2] == (200, [expected])
    assert expected in api.get("/api/consumers")[2]
    qb = api.get(queue_path(vh, name))[2]
    assert qb["consumers"] == 1
    assert [d["consumer_tag"] for d in qb["consumer_details"]] == [tag]
    assert api.get("/api/channels/no-such-channel")[::2] == (404, NOT_FOUND)


# ---------------------------------------------------------------------------
# nodes, definitions, aliveness, health checks
# ---------------------------------------------------------------------------

def test_nodes(api):
    status, _, nodes = api.get("/api/nodes")
    assert status == 200 and len(nodes) >= 1
    n = nodes[0]
    for k, t in (("name", str), ("type", str), ("running", bool), ("mem_used", int),
                 ("mem_limit", int), ("mem_alarm", bool), ("disk_free", int),
                 ("disk_free_limit", int), ("disk_free_alarm", bool), ("fd_used", int),
                 ("fd_total", int), ("uptime", int), ("partitions", list),
                 ("sockets_used", int), ("proc_used", int), ("processors", int)):
        assert isinstance(n[k], t), (k, n.get(k))
    assert n["running"] is True and n["type"] == "disc"
    assert n["mem_alarm"] is False and n["disk_free_alarm"] is False
    assert 0 < n["mem_used"] and 0 < n["mem_limit"]
    assert 0 < n["fd_used"] <= n["fd_total"]
    assert n["partitions"] == []
    overview = api.get("/api/overview")[2]
    assert n["name"] == overview["node"]
    status, _, one = api.get("/api/nodes/" + q(n["name"]))
    assert status == 200 and one["name"] == n["name"] and one["running"] is True


def test_definitions_export(api, objs, vh):
    name, _, _ = objs.user(tags="management", vhosts=[vh])
    x, qn = "x-" + short(), "q-" + short()
    api.ok("PUT", "/api/exchanges/%s/%s" % (q(vh), x), {"type": "fanout", "durable": True},
           expect=(201,))
    api.ok("PUT", queue_path(vh, qn), {"durable": True, "arguments": {"x-app-level": 3}},
           expect=(201,))
    api.ok("POST", "/api/bindings/%s/e/%s/q/%s" % (q(vh), x, qn), {"routing_key": "r"},
           expect=(201,))
    status, _, d = api.get("/api/definitions")
    assert status == 200
    assert {"rabbit_version", "users", "vhosts", "permissions", "topic_permissions",
            "parameters", "global_parameters", "policies", "queues", "exchanges",
            "bindings"} <= set(d)
    u = [u for u in d["users"] if u["name"] == name]
    assert len(u) == 1 and set(u[0]) >= {"name", "password_hash", "hashing_algorithm", "tags"}
    assert u[0]["tags"] == ["management"]
    assert {"name": vh} in [{"name": v["name"]} for v in d["vhosts"]]
    assert {"user": name, "vhost": vh, "configure": ".*", "write": ".*",
            "read": ".*"} in d["permissions"]
    assert [x_ for x_ in d["queues"] if x_["vhost"] == vh] == [
        {"name": qn, "vhost": vh, "durable": True, "auto_delete": False,
         "arguments": {"x-app-level": 3}}]
    assert [e for e in d["exchanges"] if e["vhost"] == vh] == [
        {"name": x, "vhost": vh, "type": "fanout", "durable": True, "auto_delete": False,
         "internal": False, "arguments": {}}]
    assert [b for b in d["bindings"] if b["vhost"] == vh] == [
        {"source": x, "vhost": vh, "destination": qn, "destination_type": "queue",
         "routing_key": "r", "arguments": {}}]
    # per vhost: the same objects without their vhost key
    status, _, dv = api.get("/api/definitions/" + q(vh))
    assert status == 200
    assert dv["queues"] == [{"name": qn, "durable": True, "auto_delete": False,
                             "arguments": {"x-app-level": 3}}]
    assert dv["bindings"] == [{"source": x, "destination": qn, "destination_type": "queue",
                               "routing_key": "r", "arguments": {}}]


def test_definitions_import(api, objs):
    v, u = "pytest-hv-%s" % short(), "pytest-hu-%s" % short()
    objs.adopt_vhost(v)
    objs.adopt_user(u)
    doc = {
        "users": [{"name": u, "password_hash": "", "hashing_algorithm":
                   "rabbit_password_hashing_sha256", "tags": "management"}],
        "vhosts": [{"name": v}],
        "permissions": [{"user": u, "vhost": v, "configure": ".*", "write": ".*", "read": ""}],
        "queues": [{"name": "dq", "vhost": v, "durable": True, "auto_delete": False,
                    "arguments": {}}],
        "exchanges": [{"name": "dx", "vhost": v, "type": "fanout", "durable": True,
                       "auto_delete": False, "internal": False, "arguments": {}}],
        "bindings": [{"source": "dx", "vhost": v, "destination": "dq",
                      "destination_type": "queue", "routing_key": "r", "arguments": {}}],
    }
    assert api.post("/api/definitions", doc)[::2] == (204, None)
    assert api.post("/api/definitions", doc)[::2] == (204, None)     # idempotent
    assert api.get("/api/users/" + q(u))[2]["tags"] == ["management"]
    assert api.get("/api/permissions/%s/%s" % (q(v), q(u)))[::2] == (200, {
        "user": u, "vhost": v, "configure": ".*", "write": ".*", "read": ""})
    assert api.get(queue_path(v, "dq"))[2]["durable"] is True
    assert api.get("/api/exchanges/%s/dx" % q(v))[2]["type"] == "fanout"
    assert [b["routing_key"] for b in api.get("/api/bindings/%s/e/dx/q/dq" % q(v))[2]] == ["r"]
    # per-vhost import: objects without a vhost key land in that vhost
    assert api.post("/api/definitions/" + q(v), {"queues": [
        {"name": "dq2", "durable": False, "auto_delete": False, "arguments": {}}]})[::2] == (
        204, None)
    assert api.get(queue_path(v, "dq2"))[0] == 200
    assert api.post("/api/definitions", raw_body="garbage")[::2] == (
        400, bad_request("failed_to_parse_json"))
    nv = "no-such-vhost-" + short()
    assert api.post("/api/definitions", {"queues": [
        {"name": "x", "vhost": nv, "durable": True, "auto_delete": False,
         "arguments": {}}]})[::2] == (400, bad_request(["no_such_vhost", nv]))


def test_aliveness_test(api, vh, objs):
    assert api.get("/api/aliveness-test/" + q(vh))[::2] == (200, {"status": "ok"})
    assert api.get("/api/aliveness-test/%2F")[::2] == (200, {"status": "ok"})
    assert api.get("/api/aliveness-test/no-such-vhost-" + short())[::2] == (404, NOT_FOUND)
    _, _, as_m = objs.user(tags="management")
    assert as_m.get("/api/aliveness-test/" + q(vh))[::2] == (
        401, not_authorised("User not authorised to access virtual host"))


@pytest.mark.parametrize("check", ["alarms", "local-alarms", "virtual-hosts"])
def test_health_checks_ok(api, check):
    assert api.get("/api/health/checks/" + check)[::2] == (200, {"status": "ok"})


def test_health_check_listeners(api, broker):
    assert api.get("/api/health/checks/port-listener/%d" % broker.port)[::2] == (
        200, {"status": "ok", "port": broker.port})
    assert api.get("/api/health/checks/protocol-listener/amqp")[::2] == (
        200, {"status": "ok", "protocol": "amqp"})
    assert api.get("/api/health/checks/protocol-listener/amqp091")[::2] == (
        200, {"status": "ok", "protocol": "amqp"})
    status, _, b = api.get("/api/health/checks/port-listener/1")
    assert status == 503
    assert (b["status"], b["reason"], b["missing"]) == ("failed", "No active listener", 1)
    assert broker.port in b["ports"] and broker.mgmt_port in b["ports"]
    status, _, b = api.get("/api/health/checks/protocol-listener/mqtt")
    assert status == 503
    assert (b["status"], b["reason"], b["missing"]) == ("failed", "No active listener", "mqtt")
    assert "amqp" in b["protocols"] and "http" in b["protocols"]
    assert api.get("/api/health/checks/port-listener/abc")[::2] == (
        400, bad_request("Invalid port"))


def test_health_checks_for_management_user(objs):
    _, _, as_m = objs.user(tags="management")
    assert as_m.get("/api/health/checks/alarms")[::2] == (200, {"status": "ok"})


# ---------------------------------------------------------------------------
# authentication and authorisation
# ---------------------------------------------------------------------------

def test_no_credentials(api):
    status, headers, body = api.get("/api/overview", auth=False)
    assert status == 401
    assert headers.get("www-authenticate") == 'Basic realm="RabbitMQ Management"'
    assert body is None


def test_bad_credentials(api, objs):
    name, _, _ = objs.user(tags="administrator")
    for who in (api.as_user(name, "wrong"), api.as_user("no-such-user-" + short(), "x")):
        status, headers, body = who.get("/api/whoami")
        assert (status, body) == (401, LOGIN_FAILED)
        assert headers.get("www-authenticate") == 'Basic realm="RabbitMQ Management"'


def test_user_without_tags(objs):
    _, _, as_n = objs.user(tags="")
    for path in ("/api/whoami", "/api/overview", "/api/queues", "/api/health/checks/alarms",
                 "/api/aliveness-test/%2F", "/api/definitions"):
        status, headers, body = as_n.get(path)
        assert (status, body) == (401, not_authorised("Not management user")), path
        assert headers.get("www-authenticate") is None


def test_management_user_scope(api, objs, vh):
    other = objs.vhost()
    name, _, as_m = objs.user(tags="management", vhosts=[vh])
    api.ok("PUT", queue_path(vh, "mine"), {}, expect=(201,))
    api.ok("PUT", queue_path(other, "theirs"), {}, expect=(201,))
    assert [v["name"] for v in as_m.get("/api/vhosts")[2]] == [vh]
    assert {x["vhost"] for x in as_m.get("/api/queues")[2]} == {vh}
    assert [x["name"] for x in as_m.get("/api/queues/" + q(vh))[2]] == ["mine"]
    denied_vhost = (401, not_authorised("User not authorised to access virtual host"))
    assert as_m.get("/api/queues/" + q(other))[::2] == denied_vhost
    assert as_m.get(queue_path(other, "theirs"))[::2] == denied_vhost
    not_admin = (401, not_authorised("Not administrator user"))
    for path in ("/api/users", "/api/users/" + q(name), "/api/permissions",
                 "/api/definitions", "/api/vhosts/" + q(vh)):
        assert as_m.get(path)[::2] == not_admin, path
    assert as_m.put("/api/vhosts/x-" + short(), {})[::2] == not_admin
    assert as_m.get("/api/nodes")[::2] == (401, not_authorised("Not monitor user"))
    # may manage objects in its vhost
    assert as_m.put(queue_path(vh, "made-by-m"), {})[0] == 201


def test_unknown_path_404(api):
    assert api.get("/api/no-such-endpoint")[::2] == (404, NOT_FOUND)


def test_method_not_allowed(api):
    for method, path in (("POST", "/api/overview"), ("DELETE", "/api/overview"),
                         ("PUT", "/api/queues/%2F")):
        status, headers, body = api.request(method, path, body={})
        assert (status, body) == (405, None), (method, path)
        assert headers.get("allow") == "HEAD, GET, OPTIONS", (method, path)


def test_declare_in_missing_vhost(api):
    nv = "no-such-vhost-" + short()
    missing = (404, {"error": "not_found", "reason": "vhost_not_found"})
    assert api.put(queue_path(nv, "q"), {})[::2] == missing
    assert api.put("/api/exchanges/%s/x" % nv, {"type": "direct"})[::2] == missing


# ---------------------------------------------------------------------------
# list query parameters
# ---------------------------------------------------------------------------

@pytest.fixture
def five_queues(api, vh):
    for n in ("b", "a", "c", "ab", "d"):
        api.ok("PUT", queue_path(vh, "q-" + n), {"arguments": {"x-app-level": ord(n[0])}},
               expect=(201,))
    return vh


def test_list_columns(api, five_queues):
    vh = five_queues
    lst = api.get("/api/queues/%s?columns=name,arguments.x-app-level" % q(vh))[2]
    assert sorted(lst, key=lambda d: d["name"]) == [
        {"name": "q-a", "arguments": {"x-app-level": 97}},
        {"name": "q-ab", "arguments": {"x-app-level": 97}},
        {"name": "q-b", "arguments": {"x-app-level": 98}},
        {"name": "q-c", "arguments": {"x-app-level": 99}},
        {"name": "q-d", "arguments": {"x-app-level": 100}}]
    assert api.get(queue_path(vh, "q-a") + "?columns=name,vhost")[2] == {
        "name": "q-a", "vhost": vh}
    # a nested column keeps the whole top-level value
    two = "q-two-" + short()
    api.ok("PUT", queue_path(vh, two),
           {"arguments": {"x-app-level": 5, "x-app-tag": 1000}}, expect=(201,))
    assert api.get(queue_path(vh, two) + "?columns=name,arguments.x-app-level")[2] == {
        "name": two, "arguments": {"x-app-level": 5, "x-app-tag": 1000}}


def test_list_sort(api, five_queues):
    vh = five_queues
    base = "/api/queues/%s?columns=name&sort=name" % q(vh)
    names = lambda path: [x["name"] for x in api.get(path)[2]]
    assert names(base) == ["q-a", "q-ab", "q-b", "q-c", "q-d"]
    assert names(base + "&sort_reverse=true") == ["q-d", "q-c", "q-b", "q-ab", "q-a"]
    by_len = names("/api/queues/%s?columns=name&sort=arguments.x-app-level&sort_reverse=true"
                   % q(vh))
    assert by_len[:3] == ["q-d", "q-c", "q-b"]


def test_list_pagination(api, five_queues):
    vh = five_queues
    base = "/api/queues/%s?columns=name&sort=name" % q(vh)
    assert api.get(base + "&page=1&page_size=2")[::2] == (200, {
        "filtered_count": 5, "item_count": 2, "items": [{"name": "q-a"}, {"name": "q-ab"}],
        "page": 1, "page_count": 3, "page_size": 2, "total_count": 5})
    assert api.get(base + "&page=3&page_size=2")[2] == {
        "filtered_count": 5, "item_count": 1, "items": [{"name": "q-d"}],
        "page": 3, "page_count": 3, "page_size": 2, "total_count": 5}
    # name filter: case-insensitive substring, or a regex with use_regex
    assert api.get(base + "&page=1&name=A")[2] == {
        "filtered_count": 2, "item_count": 2, "items": [{"name": "q-a"}, {"name": "q-ab"}],
        "page": 1, "page_count": 1, "page_size": 100, "total_count": 5}
    assert api.get(base + "&page=1&name=%5Eq-a%24&use_regex=true")[2]["items"] == [
        {"name": "q-a"}]
    assert api.get(base + "&page=4&page_size=2")[::2] == (400, {
        "error": "page_out_of_range",
        "reason": "Page out of range, page: 4 page size: 2, len: 5"})
    assert api.get(base + "&page=0&page_size=2")[::2] == (400, {
        "error": "invalid_pagination_parameters",
        "reason": "Invalid pagination parameters: page number 0, page size 2"})
    assert api.get(base + "&page=1&page_size=501")[::2] == (400, {
        "error": "invalid_pagination_parameters",
        "reason": "Invalid pagination parameters: page number 1, page size 501"})
    assert api.get(base + "&page=x")[::2] == (400, bad_request("Pagination parameters are invalid"))
    xs = api.get("/api/exchanges/%s?columns=name&sort=name&page=1&page_size=3" % q(vh))[2]
    assert xs == {"filtered_count": 7, "item_count": 3, "page": 1, "page_count": 3,
                  "page_size": 3, "total_count": 7,
                  "items": [{"name": ""}, {"name": "amq.direct"}, {"name": "amq.fanout"}]}


# ---------------------------------------------------------------------------
# message counts and rates
# ---------------------------------------------------------------------------

def test_queue_message_counts(api, objs, vh):
    name = "q-" + short()
    api.ok("PUT", queue_path(vh, name), {}, expect=(201,))
    for i in range(4):
        publish(api, vh, name, "m%d" % i)
    # RabbitMQ's queue figures arrive in more than one statistics event
    def complete():
        _, _, b = api.get(queue_path(vh, name))
        return isinstance(b, dict) and b.get("messages") == 4 and QUEUE_FIELDS <= set(b) and b
    b = wait_for(complete, timeout=STATS_WAIT_S, what="queue %s with all its fields" % name)
    assert b["state"] == "running" and b["consumers"] == 0 and b["policy"] is None
    assert isinstance(b["memory"], int)
    assert b["messages_ready"] == 4 and b["messages_unacknowledged"] == 0
    # the vhost's totals (`messages` in /api/vhosts and /api/vhosts/{v})
    v = [x for x in api.get("/api/vhosts")[2] if x["name"] == vh][0]
    assert (v["messages"], v["messages_ready"], v["messages_unacknowledged"]) == (4, 4, 0)
    assert api.get("/api/vhosts/" + q(vh))[2]["messages"] == 4
    c = objs.connect(vh)
    ch = c.channel()
    m1 = ch.basic_get(name)
    m2 = ch.basic_get(name)
    assert m1[0] and m2[0]
    def settled():
        _, _, b = api.get(queue_path(vh, name))
        return (isinstance(b, dict) and b.get("messages_unacknowledged") == 2
                and dig(b, "message_stats.publish") == 4 and b)
    b = wait_for(settled, timeout=STATS_WAIT_S, what="queue %s after two gets" % name)
    assert b["messages"] == 4 and b["messages_ready"] == 2


def test_message_rates(api, objs, vh):
    name = "q-" + short()
    c = objs.connect(vh)
    ch = c.channel()
    ch.queue_declare(name, arguments={"x-app-level": 1000})
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline:
        for _ in range(20):
            ch.basic_publish("", name, b"rate")
        c.process_data_events(0.1)

    def rates():
        o = api.get("/api/overview")[2]
        qb = api.get(queue_path(vh, name))[2]
        orate = dig(o, "message_stats.publish_details.rate") or 0
        qrate = dig(qb, "message_stats.publish_details.rate") or 0
        return orate > 0 and qrate > 0 and (o, qb)
    o, qb = wait_for(rates, timeout=STATS_WAIT_S, what="publish rates > 0")
    assert isinstance(o["message_stats"]["publish"], int) and o["message_stats"]["publish"] > 0
    assert qb["message_stats"]["publish"] > 0
    vhost = api.get("/api/vhosts/" + q(vh))[2]
    assert dig(vhost, "message_stats.publish_details.rate", 0) > 0
