"""AMQP permission checks as RabbitMQ 3.10 makes them: which of configure,
write and read each method needs on which resource, the exact refusal
texts, what happens at connection.open, user_id, and when a changed
permission takes effect.

Observed on RabbitMQ 3.10.8 with
WARREN_TEST_URL=amqp://guest:guest@127.0.0.1:5672/%2F (users and
permissions made with rabbitmqctl through the `ctl` fixture). Each test
has a user of its own, in a vhost this module creates; every rule is
checked both ways (refused without the permission, allowed with it), so
each test fails if the check were removed.

The rules (rabbit_channel.erl):
- configure: queue.declare (a server-named queue is checked under its
  generated name amq.gen-...), queue.delete, exchange.declare,
  exchange.delete. A new queue with a dead-letter exchange also needs read
  on itself and write on that exchange.
- write: basic.publish on the exchange (the default exchange is checked as
  amq.default); queue.bind/unbind on the queue; exchange.bind/unbind on the
  destination.
- read: basic.get, basic.consume, queue.purge on the queue; queue.bind/unbind
  on the exchange; exchange.bind/unbind on the source.
- passive declares are not checked.
- regexes are unanchored; "" matches nothing.
- a refusal closes the channel (403), never the connection.
"""

import time

import pika
import pika.exceptions as pex
import pytest

from conftest import short_id
from ctl_util import connection_close_reason, row_strings

ACCESS_REFUSED = 403
NOT_FOUND = 404
PRECONDITION_FAILED = 406
NOT_ALLOWED = 530
LOGIN_REFUSED = ("ACCESS_REFUSED - Login was refused using authentication mechanism "
                 "PLAIN. For details see the broker logfile.")


class PV:
    """The module's vhost, and a guest connection to it for setting things up."""

    def __init__(self, name, conn):
        self.name = name
        self.conn = conn

    def queue(self, messages=0):
        q = "q%s" % short_id()
        ch = self.conn.channel()
        ch.queue_declare(q)
        if messages:
            ch.confirm_delivery()
            for i in range(messages):
                ch.basic_publish("", q, b"m%d" % i)
        ch.close()
        return q

    def exchange(self, kind="direct"):
        x = "x%s" % short_id()
        ch = self.conn.channel()
        ch.exchange_declare(x, kind)
        ch.close()
        return x

    def bind(self, q, x, rk):
        ch = self.conn.channel()
        ch.queue_bind(q, x, rk)
        ch.close()

    def count(self, q):
        ch = self.conn.channel()
        try:
            return ch.queue_declare(q, passive=True).method.message_count
        finally:
            ch.close()

    def exists(self, kind, n):
        ch = self.conn.channel()
        try:
            if kind == "queue":
                ch.queue_declare(n, passive=True)
            else:
                ch.exchange_declare(n, passive=True)
            ch.close()
            return True
        except pex.ChannelClosedByBroker as e:
            assert e.reply_code == NOT_FOUND, e
            return False

    def get(self, q):
        ch = self.conn.channel()
        try:
            deadline = time.monotonic() + 10
            while True:
                m, p, body = ch.basic_get(q, auto_ack=True)
                if m is not None or time.monotonic() > deadline:
                    return body
                time.sleep(0.02)
        finally:
            ch.close()


@pytest.fixture(scope="module")
def pv(broker, module_accounts):
    v = module_accounts.vhost("perm")
    module_accounts.grant("guest", v, ".*", ".*", ".*")
    conn = module_accounts.connect(broker.params(virtual_host=v))
    return PV(v, conn)


@pytest.fixture
def as_user(pv, accounts):
    """as_user(configure, write, read) -> (User, its connection to pv)."""
    def make(configure, write, read):
        u = accounts.user(vhost=pv.name, configure=configure, write=write, read=read)
        return u, accounts.connect(u)
    return make


def refusal(kind, name, v, user):
    return "ACCESS_REFUSED - access to %s '%s' in vhost '%s' refused for user '%s'" % (
        kind, name, v, user)


def sync(ch):
    """A round trip no permission guards (basic.qos), to see an asynchronous
    refusal (basic.publish) come back."""
    ch.basic_qos(prefetch_count=0)


def assert_refused(conn, fn, kind, name, pv, user):
    """fn(channel) is refused with 403 naming the resource; only the channel
    closes: the connection is still usable."""
    ch = conn.channel()
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        fn(ch)
        sync(ch)
    assert (ei.value.reply_code, ei.value.reply_text) == \
        (ACCESS_REFUSED, refusal(kind, name, pv.name, user.name))
    assert ch.is_closed
    assert conn.is_open
    other = conn.channel()
    sync(other)
    other.close()


def allowed(conn, fn):
    ch = conn.channel()
    result = fn(ch)
    sync(ch)
    ch.close()
    return result


# ---------------------------------------------------------------------------
# configure
# ---------------------------------------------------------------------------

def test_queue_declare_needs_configure(pv, as_user):
    i = short_id()
    u, conn = as_user("^ok%s" % i, ".*", ".*")
    allowed(conn, lambda ch: ch.queue_declare("ok%s-q" % i))
    assert pv.exists("queue", "ok%s-q" % i)
    assert_refused(conn, lambda ch: ch.queue_declare("no%s" % i), "queue", "no%s" % i, pv, u)
    assert not pv.exists("queue", "no%s" % i)


def test_server_named_queue_checked_as_amq_gen(pv, as_user):
    u, conn = as_user(r"^amq\.gen-.*", "", "")
    name = allowed(conn, lambda ch: ch.queue_declare("", exclusive=True).method.queue)
    assert name.startswith("amq.gen-")
    foo = "foo%s" % short_id()
    assert_refused(conn, lambda ch: ch.queue_declare(foo), "queue", foo, pv, u)


def test_server_named_queue_refusal_names_the_generated_name(pv, as_user):
    u, conn = as_user("", "", "")
    ch = conn.channel()
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        ch.queue_declare("", exclusive=True)
    text = ei.value.reply_text
    assert ei.value.reply_code == ACCESS_REFUSED
    prefix = "ACCESS_REFUSED - access to queue 'amq.gen-"
    suffix = "' in vhost '%s' refused for user '%s'" % (pv.name, u.name)
    assert text.startswith(prefix) and text.endswith(suffix), text
    gen = text[len(prefix):-len(suffix)]
    assert len(gen) == 22 and all(c.isalnum() or c in "-_" for c in gen), gen
    assert conn.is_open


def test_new_queue_with_dead_letter_exchange_needs_write_on_it_and_read_on_itself(pv, as_user):
    i = short_id()
    dlx = {"x-dead-letter-exchange": "dlx%s" % i}
    # Write on the dead-letter exchange is missing: refused, nothing made.
    u, conn = as_user(".*", "^nothing$", ".*")
    assert_refused(conn, lambda ch: ch.queue_declare("a%s" % i, arguments=dlx),
                   "exchange", "dlx%s" % i, pv, u)
    assert not pv.exists("queue", "a%s" % i)
    # Read on the queue itself is missing.
    u, conn = as_user(".*", ".*", "^nothing$")
    assert_refused(conn, lambda ch: ch.queue_declare("b%s" % i, arguments=dlx),
                   "queue", "b%s" % i, pv, u)
    assert not pv.exists("queue", "b%s" % i)
    # The default exchange as dead-letter exchange is checked as amq.default.
    u, conn = as_user(".*", "^nothing$", ".*")
    assert_refused(conn, lambda ch: ch.queue_declare(
        "c%s" % i, arguments={"x-dead-letter-exchange": ""}), "exchange", "amq.default", pv, u)
    # With both, the queue is made (the exchange need not exist); a
    # redeclare of an existing queue is not checked again.
    u, conn = as_user(".*", "^dlx%s$" % i, "^d%s$" % i)
    allowed(conn, lambda ch: ch.queue_declare("d%s" % i, arguments=dlx))
    assert pv.exists("queue", "d%s" % i)
    u, conn = as_user(".*", "^nothing$", "^nothing$")
    allowed(conn, lambda ch: ch.queue_declare("d%s" % i, arguments=dlx))


def test_queue_delete_needs_configure(pv, as_user, accounts):
    q = pv.queue(messages=1)
    u, conn = as_user("", ".*", ".*")
    assert_refused(conn, lambda ch: ch.queue_delete(q), "queue", q, pv, u)
    assert pv.count(q) == 1
    # checked before the queue is looked up
    missing = "missing%s" % short_id()
    assert_refused(conn, lambda ch: ch.queue_delete(missing), "queue", missing, pv, u)
    accounts.grant(u, pv.name, "^" + q, "", "")
    allowed(conn, lambda ch: ch.queue_delete(q))
    assert not pv.exists("queue", q)


def test_exchange_declare_needs_configure(pv, as_user):
    i = short_id()
    u, conn = as_user("^ok%s" % i, ".*", ".*")
    allowed(conn, lambda ch: ch.exchange_declare("ok%s-x" % i, "fanout"))
    assert pv.exists("exchange", "ok%s-x" % i)
    assert_refused(conn, lambda ch: ch.exchange_declare("no%s" % i, "fanout"),
                   "exchange", "no%s" % i, pv, u)
    assert not pv.exists("exchange", "no%s" % i)


def test_exchange_delete_needs_configure(pv, as_user, accounts):
    x = pv.exchange()
    u, conn = as_user("", ".*", ".*")
    assert_refused(conn, lambda ch: ch.exchange_delete(x), "exchange", x, pv, u)
    assert pv.exists("exchange", x)
    accounts.grant(u, pv.name, "^" + x, "", "")
    allowed(conn, lambda ch: ch.exchange_delete(x))
    assert not pv.exists("exchange", x)


# ---------------------------------------------------------------------------
# write
# ---------------------------------------------------------------------------

def test_publish_needs_write_on_exchange(pv, as_user, accounts):
    q, x = pv.queue(), pv.exchange()
    pv.bind(q, x, "rk")
    u, conn = as_user(".*", "^" + q, ".*")        # write on the queue is not enough
    assert_refused(conn, lambda ch: ch.basic_publish(x, "rk", b"no"), "exchange", x, pv, u)
    assert pv.count(q) == 0
    accounts.grant(u, pv.name, "", "^" + x, "")
    allowed(conn, lambda ch: ch.basic_publish(x, "rk", b"yes"))
    assert pv.get(q) == b"yes"


def test_default_exchange_checked_as_amq_default(pv, as_user, accounts):
    q = pv.queue()
    u, conn = as_user(".*", "^" + q, ".*")       # matches the routing key, not amq.default
    assert_refused(conn, lambda ch: ch.basic_publish("", q, b"no"), "exchange", "amq.default",
                   pv, u)
    accounts.grant(u, pv.name, "", r"^amq\.default", "")
    allowed(conn, lambda ch: ch.basic_publish("", q, b"yes"))
    assert pv.get(q) == b"yes"


def test_publish_refused_before_exchange_lookup(pv, as_user, accounts):
    missing = "missing%s" % short_id()
    u, conn = as_user(".*", "", ".*")
    assert_refused(conn, lambda ch: ch.basic_publish(missing, "", b"x"), "exchange", missing,
                   pv, u)
    accounts.grant(u, pv.name, ".*", ".*", ".*")
    ch = conn.channel()
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        ch.basic_publish(missing, "", b"x")
        sync(ch)
    assert (ei.value.reply_code, ei.value.reply_text) == \
        (NOT_FOUND, "NOT_FOUND - no exchange '%s' in vhost '%s'" % (missing, pv.name))


def test_queue_bind_needs_write_on_queue(pv, as_user, accounts):
    q, x = pv.queue(), pv.exchange()
    u, conn = as_user("", "^" + x, ".*")          # write on the exchange is not enough
    assert_refused(conn, lambda ch: ch.queue_bind(q, x, "k"), "queue", q, pv, u)
    accounts.grant(u, pv.name, "", "^" + q, "^" + x)
    allowed(conn, lambda ch: ch.queue_bind(q, x, "k"))
    ch = pv.conn.channel()
    ch.confirm_delivery()
    ch.basic_publish(x, "k", b"bound")
    assert pv.get(q) == b"bound"


def test_queue_bind_needs_read_on_exchange(pv, as_user, accounts):
    q, x = pv.queue(), pv.exchange()
    u, conn = as_user("", ".*", "^" + q)          # read on the queue is not enough
    assert_refused(conn, lambda ch: ch.queue_bind(q, x, "k"), "exchange", x, pv, u)
    accounts.grant(u, pv.name, "", "^" + q, "^" + x)
    allowed(conn, lambda ch: ch.queue_bind(q, x, "k"))


def test_queue_unbind_needs_write_on_queue_and_read_on_exchange(pv, as_user, accounts):
    q, x = pv.queue(), pv.exchange()
    pv.bind(q, x, "k")
    u, conn = as_user("", "", ".*")
    assert_refused(conn, lambda ch: ch.queue_unbind(q, x, "k"), "queue", q, pv, u)
    accounts.grant(u, pv.name, "", ".*", "")
    assert_refused(conn, lambda ch: ch.queue_unbind(q, x, "k"), "exchange", x, pv, u)
    accounts.grant(u, pv.name, "", "^" + q, "^" + x)
    allowed(conn, lambda ch: ch.queue_unbind(q, x, "k"))
    ch = pv.conn.channel()
    ch.confirm_delivery()
    ch.basic_publish(x, "k", b"unbound")
    assert pv.count(q) == 0


def test_exchange_bind_needs_write_on_destination(pv, as_user, accounts):
    dst, src = pv.exchange("fanout"), pv.exchange("fanout")
    u, conn = as_user("", "^" + src, ".*")
    assert_refused(conn, lambda ch: ch.exchange_bind(dst, src, "k"), "exchange", dst, pv, u)
    accounts.grant(u, pv.name, "", "^" + dst, "^" + src)
    allowed(conn, lambda ch: ch.exchange_bind(dst, src, "k"))
    q = pv.queue()
    pv.bind(q, dst, "")
    ch = pv.conn.channel()
    ch.confirm_delivery()
    ch.basic_publish(src, "k", b"via e2e")
    assert pv.get(q) == b"via e2e"


def test_exchange_bind_needs_read_on_source(pv, as_user, accounts):
    dst, src = pv.exchange("fanout"), pv.exchange("fanout")
    u, conn = as_user("", ".*", "^" + dst)
    assert_refused(conn, lambda ch: ch.exchange_bind(dst, src, "k"), "exchange", src, pv, u)
    accounts.grant(u, pv.name, "", "^" + dst, "^" + src)
    allowed(conn, lambda ch: ch.exchange_bind(dst, src, "k"))


def test_exchange_unbind_needs_write_on_destination_and_read_on_source(pv, as_user, accounts):
    dst, src = pv.exchange("fanout"), pv.exchange("fanout")
    ch = pv.conn.channel()
    ch.exchange_bind(dst, src, "k")
    u, conn = as_user("", "", ".*")
    assert_refused(conn, lambda ch: ch.exchange_unbind(dst, src, "k"), "exchange", dst, pv, u)
    accounts.grant(u, pv.name, "", ".*", "")
    assert_refused(conn, lambda ch: ch.exchange_unbind(dst, src, "k"), "exchange", src, pv, u)
    accounts.grant(u, pv.name, "", "^" + dst, "^" + src)
    allowed(conn, lambda ch: ch.exchange_unbind(dst, src, "k"))


# ---------------------------------------------------------------------------
# read
# ---------------------------------------------------------------------------

def test_basic_get_needs_read(pv, as_user, accounts):
    q = pv.queue(messages=1)
    u, conn = as_user(".*", ".*", "")
    assert_refused(conn, lambda ch: ch.basic_get(q), "queue", q, pv, u)
    assert pv.count(q) == 1
    accounts.grant(u, pv.name, "", "", "^" + q)
    m, _, body = allowed(conn, lambda ch: ch.basic_get(q, auto_ack=True))
    assert body == b"m0"


def test_basic_consume_needs_read(pv, as_user, accounts):
    q = pv.queue(messages=1)
    u, conn = as_user(".*", ".*", "")
    assert_refused(conn, lambda ch: ch.basic_consume(q, lambda *a: None), "queue", q, pv, u)
    accounts.grant(u, pv.name, "", "", "^" + q)
    got = []
    ch = conn.channel()
    ch.basic_consume(q, lambda c, m, p, b: got.append(b), auto_ack=True)
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.1)
    assert got == [b"m0"]


def test_queue_purge_needs_read(pv, as_user, accounts):
    q = pv.queue(messages=2)
    u, conn = as_user(".*", ".*", "")
    assert_refused(conn, lambda ch: ch.queue_purge(q), "queue", q, pv, u)
    assert pv.count(q) == 2
    accounts.grant(u, pv.name, "", "", "^" + q)
    ok = allowed(conn, lambda ch: ch.queue_purge(q))
    assert ok.method.message_count == 2
    assert pv.count(q) == 0


# ---------------------------------------------------------------------------
# passive declares, regexes
# ---------------------------------------------------------------------------

def test_passive_declare_not_checked(pv, as_user):
    q, x = pv.queue(messages=3), pv.exchange()
    u, conn = as_user("", "", "")
    ok = allowed(conn, lambda ch: ch.queue_declare(q, passive=True))
    assert ok.method.message_count == 3
    allowed(conn, lambda ch: ch.exchange_declare(x, passive=True))
    # a missing one is 404, not 403
    ch = conn.channel()
    missing = "missing%s" % short_id()
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        ch.queue_declare(missing, passive=True)
    assert (ei.value.reply_code, ei.value.reply_text) == \
        (NOT_FOUND, "NOT_FOUND - no queue '%s' in vhost '%s'" % (missing, pv.name))
    # but the same declare, not passive, is refused
    assert_refused(conn, lambda ch: ch.queue_declare(q), "queue", q, pv, u)


def test_empty_regex_matches_nothing(pv, as_user):
    q = pv.queue(messages=1)
    u, conn = as_user("", "", "")
    assert_refused(conn, lambda ch: ch.queue_declare(q), "queue", q, pv, u)
    assert_refused(conn, lambda ch: ch.basic_publish("", q, b"x"), "exchange", "amq.default",
                   pv, u)
    assert_refused(conn, lambda ch: ch.basic_get(q), "queue", q, pv, u)
    assert pv.count(q) == 1


def test_regexes_are_unanchored(pv, as_user, accounts):
    i = short_id()
    u, conn = as_user(i, "", "")                  # like RabbitMQ's 'q' permitting 'aqa'
    allowed(conn, lambda ch: ch.queue_declare("a%sa" % i))
    allowed(conn, lambda ch: ch.queue_declare(i))
    assert pv.exists("queue", "a%sa" % i)
    accounts.grant(u, pv.name, "^" + i, "", "")
    assert_refused(conn, lambda ch: ch.queue_declare("b%s" % i), "queue", "b%s" % i, pv, u)
    allowed(conn, lambda ch: ch.queue_declare("%sb" % i))


# ---------------------------------------------------------------------------
# Channel-level refusals
# ---------------------------------------------------------------------------

def test_refusal_closes_only_the_channel(pv, as_user):
    q = pv.queue()
    u, conn = as_user("^" + q, "", ".*")
    good = conn.channel()
    good.queue_declare(q)
    bad = conn.channel()
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        bad.basic_publish("", q, b"x")
        sync(bad)
    assert ei.value.reply_code == ACCESS_REFUSED
    assert bad.is_closed and good.is_open and conn.is_open
    # the channel opened before the refusal still works
    assert good.queue_declare(q, passive=True).method.message_count == 0
    assert good.basic_get(q)[0] is None


# ---------------------------------------------------------------------------
# Connection-level: vhost access, login
# ---------------------------------------------------------------------------

def test_no_permission_in_vhost_530(pv, accounts, broker):
    other = accounts.vhost()
    u = accounts.user(vhost=other)               # permissions elsewhere only
    with pytest.raises(pex.ProbableAccessDeniedError) as ei:
        pika.BlockingConnection(u.params(virtual_host=pv.name))
    assert connection_close_reason(ei.value) == \
        (NOT_ALLOWED, "NOT_ALLOWED - access to vhost '%s' refused for user '%s'" % (pv.name, u.name))
    c = accounts.connect(u)                      # where it has them it may
    assert c.is_open


def test_all_empty_permissions_still_open_the_vhost(pv, as_user):
    # a permission entry, even one matching nothing, grants vhost access
    u, conn = as_user("", "", "")
    assert conn.is_open


def test_unknown_vhost_530(accounts):
    u = accounts.user()
    v = "nosuch%s" % short_id()
    with pytest.raises(pex.ProbableAccessDeniedError) as ei:
        pika.BlockingConnection(u.params(virtual_host=v))
    assert connection_close_reason(ei.value) == (NOT_ALLOWED, "NOT_ALLOWED - vhost %s not found" % v)


def test_wrong_password_403(accounts):
    u = accounts.user()
    with pytest.raises(pex.ProbableAuthenticationError) as ei:
        pika.BlockingConnection(u.params(credentials=pika.PlainCredentials(u.name, "wrong")))
    assert connection_close_reason(ei.value) == (ACCESS_REFUSED, LOGIN_REFUSED)


def test_unknown_user_403_same_text(broker):
    with pytest.raises(pex.ProbableAuthenticationError) as ei:
        pika.BlockingConnection(broker.params(
            credentials=pika.PlainCredentials("nobody%s" % short_id(), "x")))
    assert connection_close_reason(ei.value) == (ACCESS_REFUSED, LOGIN_REFUSED)


def test_user_without_tags_uses_amqp(ctl, pv, as_user):
    # tags only matter to the management UI / HTTP API
    u, conn = as_user(".*", ".*", ".*")
    assert "%s\t[]" % u.name in row_strings(ctl("list_users", "-s").stdout)
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.confirm_delivery()
    ch.basic_publish("", q, b"no tags needed")
    assert ch.basic_get(q, auto_ack=True)[2] == b"no tags needed"


# ---------------------------------------------------------------------------
# user_id
# ---------------------------------------------------------------------------

def test_user_id_must_match_login(pv, as_user):
    q = pv.queue()
    u, conn = as_user(".*", ".*", ".*")
    ch = conn.channel()
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        ch.basic_publish("", q, b"x", properties=pika.BasicProperties(user_id="someone-else"))
        sync(ch)
    assert (ei.value.reply_code, ei.value.reply_text) == (
        PRECONDITION_FAILED,
        "PRECONDITION_FAILED - user_id property set to 'someone-else' but authenticated "
        "user was '%s'" % u.name)
    assert conn.is_open
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("", q, b"mine", properties=pika.BasicProperties(user_id=u.name))
    m, props, body = ch.basic_get(q, auto_ack=True)
    assert body == b"mine" and props.user_id == u.name
    assert pv.count(q) == 0


# ---------------------------------------------------------------------------
# When permission changes take effect
# ---------------------------------------------------------------------------

def test_revocation_applies_to_open_connection(pv, as_user, accounts):
    """A connection stays open when its permissions shrink; every check not
    made on a channel before (a new channel, another resource) uses the new
    ones."""
    q1, q2 = pv.queue(), pv.queue()
    u, conn = as_user(".*", ".*", ".*")
    old = conn.channel()
    old.queue_declare(q1)
    accounts.grant(u, pv.name, "^nothing%s" % short_id(), "", "")
    assert conn.is_open
    assert_refused(conn, lambda ch: ch.queue_declare(q1), "queue", q1, pv, u)   # new channel
    with pytest.raises(pex.ChannelClosedByBroker) as ei:                        # old channel,
        old.queue_declare(q2)                                                   # other queue
    assert (ei.value.reply_code, ei.value.reply_text) == \
        (ACCESS_REFUSED, refusal("queue", q2, pv.name, u.name))


def test_grant_applies_to_open_connection(pv, as_user, accounts):
    q = pv.queue()
    u, conn = as_user("^nothing%s" % short_id(), "", "")
    old = conn.channel()
    sync(old)
    assert_refused(conn, lambda ch: ch.queue_declare(q), "queue", q, pv, u)
    accounts.grant(u, pv.name, "^" + q, "", "")
    old.queue_declare(q)                        # a channel opened before the grant
    allowed(conn, lambda ch: ch.queue_declare(q))


def test_clear_permissions_keeps_connection_but_refuses(pv, as_user, ctl):
    q = pv.queue()
    u, conn = as_user(".*", ".*", ".*")
    ctl("clear_permissions", "-p", pv.name, u.name)
    conn.process_data_events(time_limit=0.3)
    assert conn.is_open                          # vhost access is checked at connection.open only
    assert_refused(conn, lambda ch: ch.queue_declare(q), "queue", q, pv, u)
    with pytest.raises(pex.ProbableAccessDeniedError) as ei:
        pika.BlockingConnection(u.params())
    assert connection_close_reason(ei.value)[0] == NOT_ALLOWED


def test_channel_caches_granted_checks_while_busy(pv, as_user, accounts):
    """RabbitMQ's channel remembers the last 12 checks that passed
    (permission_cache in rabbit_channel.erl) and forgets them when it
    hibernates, after about a second without work. So a revoked permission
    still passes on a busy channel that already used it, and is refused once
    that channel has been idle."""
    q = pv.queue()
    u, conn = as_user(".*", ".*", ".*")
    busy = conn.channel()
    busy.queue_declare(q)

    import threading
    done = threading.Event()
    result = {}

    def revoke():
        try:
            accounts.grant(u, pv.name, "^nothing%s" % short_id(), "", "")
        except BaseException as e:       # reported below
            result["error"] = e
        done.set()

    t = threading.Thread(target=revoke)
    t.start()
    n = 0
    while not done.is_set():             # keep the channel busy meanwhile
        busy.queue_declare(q)
        n += 1
        conn.sleep(0.05)
    t.join()
    assert "error" not in result, result
    # revoked: a fresh channel is refused ...
    assert_refused(conn, lambda ch: ch.queue_declare(q), "queue", q, pv, u)
    # ... while the busy one keeps passing the check it made before
    for _ in range(20):
        busy.queue_declare(q)
        conn.sleep(0.05)
    # idle for a while: the cache is gone, the check is made again
    conn.sleep(4)
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        busy.queue_declare(q)
    assert (ei.value.reply_code, ei.value.reply_text) == \
        (ACCESS_REFUSED, refusal("queue", q, pv.name, u.name))
