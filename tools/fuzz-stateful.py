#!/usr/bin/env python3
"""Stateful AMQP fuzzer: random, well-formed method sequences against a model.

    tools/fuzz-stateful.py --duration 60                 # starts its own Warren
    tools/fuzz-stateful.py --bin target/release/warren --shards 1 --seed 5
    tools/fuzz-stateful.py --url amqp://guest:guest@127.0.0.1:5672/%2F   # any broker

Drives several connections with several channels each (pika, one thread)
through random sequences of exchange/queue declares (passive, exclusive,
auto-delete, server-named), binds/unbinds, publishes (mandatory, persistent,
with and without confirms), basic.get, consumes (ack and no-ack, exclusive),
acks/nacks/rejects (multiple, requeue, and invalid tags), cancels, qos,
purges, deletes (if-empty, if-unused), channel and connection closes, over
small name pools so that operations collide.

It keeps a model of what must exist and which messages each queue holds,
and checks every reply against it:
- each operation's outcome: the -ok or the channel error code (404, 405,
  406, 403) the model predicts; a connection error is always a failure;
- each delivery: the message is in that queue and not already delivered to
  someone else, its body, exchange and routing key are right, redelivered
  is set exactly when the message was delivered before (before a consumer
  goes, the fuzzer waits until nothing is in flight to it), basic.get
  never overtakes an older message from the same publishing channel when
  nothing else consumes, delivery tags are unique per channel and increase
  per consumer, and no consumer holds more unacked messages than its
  prefetch;
- declare-ok/get-ok/purge-ok/delete-ok message and consumer counts, where
  the model knows them exactly (unconfirmed publishes and requeues land
  asynchronously in RabbitMQ: the fuzzer waits until a passive declare
  shows them before relying on a count);
- mandatory returns happen exactly for unroutable messages, and consumers
  of a deleted queue get basic.cancel;
- at checkpoints (every consumer cancelled, every channel closed so unacked
  messages return): passive declares of every pool name give the model's
  existence, message count and consumer count 0; sometimes every queue is
  drained with basic.get and compared message by message;
The model follows RabbitMQ 3.10 (checked against 3.10.8), e.g. unbind,
queue.delete and exchange.delete of what is missing are -ok, exclusive
queues do not compare `durable`, `amq.*` queue names are refused (403)
for any non-passive declare, auto-delete and exclusive queues go
asynchronously (the fuzzer waits for them to be gone).
- the broker never hangs (an operation over --op-timeout seconds fails the
  run) and, when this tool started it, never exits.

Prints the seed, the operation counts and the channel error codes seen; on a
failure, also the last operations and how to replay it. Exit status 1 on a
failure, 3 on a hang. The same seed gives the same operations as long as
deliveries arrive at the same moments (they depend on timing).
"""

import argparse
import collections
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pika
import pika.exceptions as pex

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from chaos import default_bin, free_port  # noqa: E402  (one copy of each, beside us)

NOT_FOUND, RESOURCE_LOCKED, PRECONDITION_FAILED, ACCESS_REFUSED = 404, 405, 406, 403
PROBE = -1   # channel slot for the fuzzer's own checks

CONN_LOST = (pex.AMQPConnectionError, pex.StreamLostError, pex.ConnectionClosed,
             OSError, EOFError)


class Failure(Exception):
    pass


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------

class Msg:
    __slots__ = ("mid", "pos", "src", "exchange", "key", "delivered")

    def __init__(self, mid, pos, src, exchange, key):
        self.mid = mid
        self.pos = pos            # place in its queue: requeued messages keep it
        self.src = src            # publishing channel: order is only defined per channel
        self.exchange = exchange
        self.key = key
        self.delivered = False    # delivered before: every later delivery is redelivered


class MQueue:
    def __init__(self, name, durable, exclusive_owner, auto_delete):
        self.name = name
        self.durable = durable
        self.owner = exclusive_owner   # MConn uid, or None
        self.auto_delete = auto_delete
        self.ready = {}                # mid -> Msg
        self.unacked = {}              # mid -> Msg (held by some channel)
        self.consumers = {}            # ctag -> MConsumer
        self.had_consumer = False
        self.deleted = False
        self.next_pos = 0
        # Unconfirmed publishes or requeues may still be on their way in
        # (RabbitMQ applies them asynchronously): counts are not exact until
        # a passive declare shows the model's count again.
        self.unsettled = False

    def enqueue(self, mid, src, exchange, key):
        m = Msg(mid, self.next_pos, src, exchange, key)
        self.next_pos += 1
        self.ready[mid] = m

    def earlier(self, m):
        """A ready message from m's publishing channel that must leave before m."""
        older = [o for o in self.ready.values() if o.src == m.src and o.pos < m.pos]
        return min(older, key=lambda o: o.pos) if older else None


class MExchange:
    def __init__(self, name, typ, durable, auto_delete):
        self.name = name
        self.type = typ
        self.durable = durable
        self.auto_delete = auto_delete


class MConsumer:
    def __init__(self, ctag, queue, chan, no_ack, exclusive, limit):
        self.ctag = ctag
        self.queue = queue
        self.chan = chan
        self.no_ack = no_ack
        self.exclusive = exclusive
        self.limit = limit        # prefetch at basic.consume time; 0 = none
        self.unacked = 0
        self.last_tag = 0


class MChan:
    uids = 0

    def __init__(self, conn, slot):
        MChan.uids += 1
        self.uid = MChan.uids
        self.conn = conn
        self.slot = slot
        self.ch = None
        self.confirm = False
        self.prefetch = 0
        self.last_tag = 0
        self.seen_tags = set()
        self.unacked = collections.OrderedDict()   # tag -> (MQueue, Msg, MConsumer or None)
        self.settled_tags = []                     # recently settled: acking them again is an error
        self.consumers = {}                        # ctag -> MConsumer
        self.dirty = False                         # unconfirmed publishes since the last sync op
        self.expected_returns = set()              # mids a mandatory publish here must get back

    @property
    def open(self):
        return self.ch is not None and self.ch.is_open

    def label(self):
        return "c%d.%s" % (self.conn.slot, "p" if self.slot == PROBE else self.slot)


class MConn:
    uids = 0

    def __init__(self, slot):
        MConn.uids += 1
        self.uid = MConn.uids
        self.slot = slot
        self.conn = None
        self.chans = {}


# ---------------------------------------------------------------------------
# Watchdog: a reply that never comes must not hang the run
# ---------------------------------------------------------------------------

class Watchdog(threading.Thread):
    def __init__(self, timeout, report):
        super().__init__(daemon=True, name="watchdog")
        self.timeout = timeout
        self.report = report
        self.lock = threading.Lock()
        self.what = None
        self.since = None
        self.stopped = False

    def begin(self, what):
        with self.lock:
            self.what, self.since = what, time.monotonic()

    def end(self):
        with self.lock:
            self.what = self.since = None

    def run(self):
        while not self.stopped:
            time.sleep(0.25)
            with self.lock:
                late = self.since is not None and time.monotonic() - self.since > self.timeout
                what = self.what
            if late and not self.stopped:
                self.report("HANG: %r did not complete within %.0f s" % (what, self.timeout))
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(3)


# ---------------------------------------------------------------------------
# The fuzzer
# ---------------------------------------------------------------------------

class Fuzzer:
    def __init__(self, params, seed, prefix, n_conns=3, n_chans=3, op_timeout=10.0,
                 alive=lambda: True, out=print, verbose=False, on_hang=lambda: None):
        self.params = params
        self.rng = random.Random(seed)
        self.seed = seed
        self.p = prefix
        self.alive = alive
        self.out = out
        self.verbose = verbose
        self.queue_pool = [prefix + "q%d" % i for i in range(4)]
        self.exchange_pool = {prefix + "d0": "direct", prefix + "d1": "direct",
                              prefix + "f0": "fanout"}
        self.keys = [prefix + k for k in ("a", "b", "c")]
        self.queues = {}        # name -> MQueue, existing ones only
        self.exchanges = {"amq.direct": MExchange("amq.direct", "direct", True, False)}
        self.bindings = set()   # (exchange name, queue name, key)
        self.conns = [MConn(i) for i in range(n_conns)]
        self.n_chans = n_chans
        self.trace = collections.deque(maxlen=60)
        self.ops = collections.Counter()
        self.codes = collections.Counter()
        self.stats = collections.Counter()
        self.expected_cancels = {}      # ctag -> MChan: the broker must cancel it (queue deleted)
        self.pending_failures = []      # found inside callbacks, raised after the call
        self.gone_pending = set()       # queue names deleted as a side effect, maybe not yet
        self.mid_seq = 0
        self.on_hang = on_hang
        self.watchdog = Watchdog(op_timeout, self.report_hang)

    # --- plumbing --------------------------------------------------------

    def log(self, what):
        self.trace.append(what)
        if self.verbose:
            self.out("  " + what)

    def report_hang(self, msg):
        self.out(self.failure_report(msg))
        self.on_hang()   # the process exits next: do not leave a broker we started behind

    def failure_report(self, msg):
        lines = ["FAILURE: " + msg, "seed %d; last operations (oldest first):" % self.seed]
        lines += ["  " + t for t in self.trace]
        lines.append("replay: tools/fuzz-stateful.py --seed %d (same --duration, --connections, "
                     "--channels; deliveries depend on timing)" % self.seed)
        return "\n".join(lines)

    def fail(self, msg):
        raise Failure(msg)

    def check_alive(self, what):
        if not self.alive():
            self.fail("the broker process exited (during or after %s)" % what)

    def call(self, chan, what, fn, expect=None):
        """Run fn() on chan. expect: None (must succeed) or the set of reply
        codes it may fail with (None in it: it may also succeed). Returns
        (result, None) or (None, code)."""
        if expect and expect != {None} and chan.consumers:
            # The error closes the channel: nothing may be in flight to it.
            for q in {c.queue for c in chan.consumers.values()}:
                self.catch_up(q)
        self.log(what)
        self.watchdog.begin(what)
        try:
            res = fn()
        except pex.ChannelClosedByBroker as e:
            self.watchdog.end()
            self.codes[e.reply_code] += 1
            self.channel_gone(chan, by_broker=True)
            if not expect or expect == {None}:
                self.fail("%s: unexpected channel error %d %s" % (what, e.reply_code, e.reply_text))
            if e.reply_code not in expect:
                self.fail("%s: expected channel error %s, got %d %s" % (
                    what, sorted(expect, key=str), e.reply_code, e.reply_text))
            self.log("  -> channel error %d %s" % (e.reply_code, e.reply_text))
            return None, e.reply_code
        except pex.ConnectionClosedByBroker as e:
            self.watchdog.end()
            self.codes[e.reply_code] += 1
            self.check_alive(what)
            self.fail("%s: connection error %d %s" % (what, e.reply_code, e.reply_text))
        except CONN_LOST as e:
            self.watchdog.end()
            self.check_alive(what)
            self.fail("%s: connection lost: %r" % (what, e))
        self.watchdog.end()
        self.raise_pending()
        if expect and None not in expect:
            self.fail("%s: expected channel error %s, but it succeeded (%r)" % (
                what, sorted(expect, key=str), res))
        return res, None

    def raise_pending(self):
        if self.pending_failures:
            self.fail(self.pending_failures[0])

    def conn_open(self, mc):
        if mc.conn is not None and mc.conn.is_open:
            return mc.conn
        self.log("c%d: connection open" % mc.slot)
        self.watchdog.begin("connection open c%d" % mc.slot)
        try:
            mc.conn = pika.BlockingConnection(self.params)
        except CONN_LOST as e:
            self.check_alive("connection open")
            self.fail("c%d: connection open failed: %r" % (mc.slot, e))
        finally:
            self.watchdog.end()
        mc.chans = {}
        return mc.conn

    def chan_open(self, mc, slot):
        conn = self.conn_open(mc)
        chan = mc.chans.get(slot)
        if chan is not None and chan.open:
            return chan
        chan = MChan(mc, slot)
        mc.chans[slot] = chan
        self.watchdog.begin("channel.open on %s" % chan.label())
        try:
            chan.ch = conn.channel()
            chan.confirm = self.rng.random() < 0.7
            if chan.confirm:
                chan.ch.confirm_delivery()
        except CONN_LOST as e:
            self.check_alive("channel.open")
            self.fail("channel.open: %r" % e)
        finally:
            self.watchdog.end()
        chan.ch.add_on_return_callback(lambda _c, m, p, b: self.on_return(chan, m, p))
        chan.ch.add_on_cancel_callback(lambda f: self.on_broker_cancel(chan, f.method.consumer_tag))
        self.log("%s: channel open (confirm=%s)" % (chan.label(), chan.confirm))
        return chan

    def any_chan(self):
        mc = self.rng.choice(self.conns)
        return self.chan_open(mc, self.rng.randrange(self.n_chans))

    def all_chans(self):
        for mc in self.conns:
            for chan in list(mc.chans.values()):
                if chan.open:
                    yield chan

    def can_err(self, chan):
        """Whether to provoke a channel error here: only on confirm channels
        (an unconfirmed publish to a missing exchange fails some time
        later), and not under no-ack consumers (kept simple: their in-flight
        deliveries would be lost with the channel)."""
        return chan.confirm and not any(c.no_ack for c in chan.consumers.values())

    def flush_others(self, chan):
        """Unconfirmed publishes must be routed (with the topology of the
        moment) before an operation that changes or depends on it: a sync
        method on their channel comes back after they were."""
        for other in list(self.all_chans()):
            if other.dirty:
                self.sync(other)

    def settle(self, q):
        """Wait until what is on its way into q has arrived: its passive
        count equals the model's. Only possible without consumers."""
        self.flush_others(None)
        if q is None or not q.unsettled or q.consumers or q.deleted:
            return
        deadline = time.monotonic() + 3.0
        while True:
            chan = self.cp_chan(q)
            ok, _ = self.call(chan, "%s: queue.declare(%s, passive) [settle]" % (chan.label(), q.name),
                              lambda: chan.ch.queue_declare(q.name, passive=True))
            if ok.method.message_count == len(q.ready):
                q.unsettled = False
                return
            if time.monotonic() > deadline:
                self.fail("%s: message_count stays %d, model %d ready (%d unacked)" % (
                    q.name, ok.method.message_count, len(q.ready), len(q.unacked)))
            time.sleep(0.02)

    def await_gone(self, name):
        """Auto-delete and exclusive queues go a little after their trigger
        in RabbitMQ: wait for that before using the name again."""
        if name not in self.gone_pending:
            return
        self.gone_pending.discard(name)
        deadline = time.monotonic() + 3.0
        while True:
            chan = self.cp_chan()
            _, err = self.call(chan, "%s: queue.declare(%s, passive) [gone yet?]" % (chan.label(), name),
                               lambda: chan.ch.queue_declare(name, passive=True),
                               {NOT_FOUND, RESOURCE_LOCKED, None})
            if err == NOT_FOUND:
                return
            if time.monotonic() > deadline:
                self.fail("queue %s still exists 3 s after it should have been deleted" % name)
            time.sleep(0.02)

    def sync(self, chan):
        self.call(chan, "%s: basic.qos(%d) [sync]" % (chan.label(), chan.prefetch),
                  lambda: chan.ch.basic_qos(prefetch_count=chan.prefetch))
        chan.dirty = False

    def pump(self, mc, t=0.0):
        if mc.conn is None or not mc.conn.is_open:
            return
        self.watchdog.begin("process_data_events on c%d" % mc.slot)
        try:
            mc.conn.process_data_events(time_limit=t)
        except pex.ConnectionClosedByBroker as e:
            self.fail("connection c%d closed by the broker: %d %s" % (mc.slot, e.reply_code, e.reply_text))
        except CONN_LOST as e:
            self.check_alive("process_data_events")
            self.fail("connection c%d lost: %r" % (mc.slot, e))
        finally:
            self.watchdog.end()
        self.raise_pending()

    # --- model transitions -------------------------------------------------

    def new_mid(self):
        self.mid_seq += 1
        return "%sm%d" % (self.p, self.mid_seq)

    def route(self, exchange, key):
        if exchange == "":
            q = self.queues.get(key)
            return [q] if q else []
        x = self.exchanges[exchange]
        names = {qn for (xn, qn, k) in self.bindings
                 if xn == exchange and (x.type == "fanout" or k == key)}
        return [self.queues[n] for n in sorted(names)]

    def remove_binding(self, b):
        self.bindings.discard(b)
        xn = b[0]
        x = self.exchanges.get(xn)
        if x and x.auto_delete and not any(bb[0] == xn for bb in self.bindings):
            self.log("  (model: auto-delete exchange %s goes with its last binding)" % xn)
            del self.exchanges[xn]

    def delete_queue(self, q, why, sync=False):
        self.log("  (model: queue %s deleted: %s)" % (q.name, why))
        q.deleted = True
        if not sync:
            self.gone_pending.add(q.name)
        self.queues.pop(q.name, None)
        for b in [b for b in self.bindings if b[1] == q.name]:
            self.remove_binding(b)
        for c in list(q.consumers.values()):
            # The broker tells each consumer with basic.cancel.
            c.chan.consumers.pop(c.ctag, None)
            self.expected_cancels[c.ctag] = c.chan
        q.consumers.clear()

    def drop_consumer(self, c, why):
        q = c.queue
        q.consumers.pop(c.ctag, None)
        c.chan.consumers.pop(c.ctag, None)
        if q.auto_delete and q.had_consumer and not q.consumers and not q.deleted:
            self.delete_queue(q, "auto-delete, last consumer gone (%s)" % why)

    def requeue(self, q, m):
        if q.deleted:
            return
        q.unacked.pop(m.mid, None)
        m.delivered = True
        q.ready[m.mid] = m
        q.unsettled = True

    def settle_tags(self, chan, tags, requeue):
        for t in tags:
            q, m, c = chan.unacked.pop(t)
            chan.settled_tags.append(t)
            if c is not None:
                c.unacked -= 1
            if requeue:
                self.requeue(q, m)
            else:
                q.unacked.pop(m.mid, None)
        del chan.settled_tags[:-20]

    def channel_gone(self, chan, by_broker):
        """The channel closed (by us, the broker, or with its connection)."""
        for c in list(chan.consumers.values()):
            self.drop_consumer(c, "channel closed")
        for t, (q, m, c) in list(chan.unacked.items()):
            self.requeue(q, m)
        chan.unacked.clear()
        chan.expected_returns.clear()   # returns not yet read are lost with it
        for t in [t for t, ch in self.expected_cancels.items() if ch is chan]:
            del self.expected_cancels[t]   # and so are cancels
        chan.dirty = False

    def connection_gone(self, mc):
        for chan in list(mc.chans.values()):
            self.channel_gone(chan, by_broker=False)
        for q in list(self.queues.values()):
            if q.owner == mc.uid:
                self.delete_queue(q, "exclusive, owner connection closed")
        mc.chans = {}

    # --- callbacks (never raise: pika would swallow or mangle it) ----------

    def on_return(self, chan, method, props):
        if chan.confirm:
            return   # confirm channels see it as UnroutableError from basic_publish
        mid = props.message_id
        if mid in chan.expected_returns:
            chan.expected_returns.discard(mid)
            self.stats["returns"] += 1
        else:
            self.pending_failures.append("%s: unexpected basic.return of %s (%s %s)" % (
                chan.label(), mid, method.reply_code, method.reply_text))

    def on_broker_cancel(self, chan, ctag):
        self.stats["broker_cancels"] += 1
        if self.expected_cancels.pop(ctag, None) is None:
            self.pending_failures.append("%s: unexpected basic.cancel from the broker for %s" % (
                chan.label(), ctag))

    def on_delivery(self, chan, consumer, method, props, body):
        try:
            self.delivered(chan, consumer.queue, consumer, method, props, body)
        except Failure as e:
            self.pending_failures.append(str(e))

    def delivered(self, chan, q, consumer, method, props, body, get_ok=False):
        """A message arrived by deliver or get-ok: check it against the model."""
        mid = props.message_id
        self.stats["deliveries"] += 1
        where = "%s: %s from %s (tag %d)" % (chan.label(), "get-ok" if get_ok else "deliver",
                                             q.name, method.delivery_tag)
        # pika hands get-ok over at once and deliveries later, so tags are
        # unique per channel and increase per consumer.
        tag = method.delivery_tag
        if tag in chan.seen_tags:
            self.fail("%s: delivery tag used twice on this channel" % where)
        chan.seen_tags.add(tag)
        if consumer is not None:
            if tag <= consumer.last_tag:
                self.fail("%s: delivery tag not above this consumer's previous %d" % (
                    where, consumer.last_tag))
            consumer.last_tag = tag
        chan.last_tag = max(chan.last_tag, tag)
        m = q.ready.get(mid)
        if m is None:
            if mid in q.unacked:
                self.fail("%s: %s delivered again while unacked elsewhere" % (where, mid))
            self.fail("%s: %s is not in this queue (model holds %d ready)" % (where, mid, len(q.ready)))
        if body != mid.encode():
            self.fail("%s: %s has body %r" % (where, mid, body[:60]))
        if (method.exchange, method.routing_key) != (m.exchange, m.key):
            self.fail("%s: %s published via %r/%r, delivered as %r/%r" % (
                where, mid, m.exchange, m.key, method.exchange, method.routing_key))
        if m.delivered and not method.redelivered:
            self.fail("%s: %s was delivered before but redelivered=false" % (where, mid))
        if method.redelivered and not m.delivered:
            self.fail("%s: %s never delivered before but redelivered=true" % (where, mid))
        no_ack = consumer.no_ack if consumer else get_ok == "no_ack"
        self.log("  -> %s %s redelivered=%s" % (where, mid, method.redelivered))
        del q.ready[mid]
        m.delivered = True
        if no_ack:
            return m
        q.unacked[mid] = m
        chan.unacked[method.delivery_tag] = (q, m, consumer)
        if consumer is not None:
            consumer.unacked += 1
            if consumer.limit and consumer.unacked > consumer.limit:
                self.fail("%s: consumer %s holds %d unacked, prefetch %d" % (
                    where, consumer.ctag, consumer.unacked, consumer.limit))
        return m

    # --- operations ----------------------------------------------------------

    def pick_queue_name(self, settle=True):
        server_named = [n for n in self.queues if n.startswith("amq.gen")]
        if server_named and self.rng.random() < 0.2:
            name = self.rng.choice(server_named)
        else:
            name = self.rng.choice(self.queue_pool)
        self.await_gone(name)
        if settle:
            self.settle(self.queues.get(name))
        return name

    def locked(self, q, chan):
        return q is not None and q.owner is not None and q.owner != chan.conn.uid

    def queue_errors(self, q, chan):
        """What using queue `q` (None: missing) from `chan` must answer:
        404 when it is missing, 405 when another connection owns it."""
        if q is None:
            return {NOT_FOUND}
        if self.locked(q, chan):
            return {RESOURCE_LOCKED}
        return None

    def op_exchange_declare(self, chan):
        r = self.rng.random()
        if r < 0.04:
            name = "amq.fz" + self.p.replace(".", "")
        elif r < 0.1:
            name = "amq.direct"
        else:
            name = self.rng.choice(sorted(self.exchange_pool))
        typ = self.exchange_pool.get(name, "direct")
        if self.rng.random() < 0.08:
            typ = "fanout" if typ == "direct" else "direct"
        durable = self.rng.random() < 0.5
        auto_delete = self.rng.random() < 0.15
        passive = self.rng.random() < 0.2
        x = self.exchanges.get(name)
        if passive:
            expect = None if x else {NOT_FOUND}
        elif name.startswith("amq.") and x is None:
            expect = {ACCESS_REFUSED}   # reserved prefix; an existing one may be redeclared
        elif x and (x.type, x.durable, x.auto_delete) != (typ, durable, auto_delete):
            expect = {PRECONDITION_FAILED}
        else:
            expect = None
        if expect and not self.can_err(chan):
            return
        what = "%s: exchange.declare(%s, %s, durable=%s, auto_delete=%s, passive=%s)" % (
            chan.label(), name, typ, durable, auto_delete, passive)
        _, err = self.call(chan, what, lambda: chan.ch.exchange_declare(
            name, typ, passive=passive, durable=durable, auto_delete=auto_delete), expect)
        if err is None and not passive and x is None:
            self.exchanges[name] = MExchange(name, typ, durable, auto_delete)

    def op_exchange_delete(self, chan):
        name = "amq.direct" if self.rng.random() < 0.05 else self.rng.choice(sorted(self.exchange_pool))
        if_unused = self.rng.random() < 0.4
        x = self.exchanges.get(name)
        used = any(b[0] == name for b in self.bindings)
        if name.startswith("amq."):
            expect = {ACCESS_REFUSED}
        elif x is None:
            expect = None   # RabbitMQ 3.10: deleting what is not there is delete-ok
        elif if_unused and used:
            expect = {PRECONDITION_FAILED}
        else:
            expect = None
        if expect and not self.can_err(chan):
            return
        self.flush_others(chan)
        _, err = self.call(chan, "%s: exchange.delete(%s, if_unused=%s)" % (chan.label(), name, if_unused),
                           lambda: chan.ch.exchange_delete(name, if_unused=if_unused), expect)
        if err is None and x is not None:
            del self.exchanges[name]
            for b in [b for b in self.bindings if b[0] == name]:
                self.bindings.discard(b)

    def op_queue_declare(self, chan):
        if self.rng.random() < 0.08:
            auto_delete = self.rng.random() < 0.3
            what = "%s: queue.declare('', exclusive, auto_delete=%s)" % (chan.label(), auto_delete)
            ok, _ = self.call(chan, what, lambda: chan.ch.queue_declare(
                "", exclusive=True, auto_delete=auto_delete))
            name = ok.method.queue
            if name in self.queues or not name:
                self.fail("%s: server-named queue %r already exists" % (what, name))
            self.log("  -> %s" % name)
            self.queues[name] = MQueue(name, False, chan.conn.uid, auto_delete)
            return
        name = self.pick_queue_name()
        q = self.queues.get(name)
        passive = self.rng.random() < 0.25
        durable = self.rng.random() < 0.5
        exclusive = self.rng.random() < 0.2
        auto_delete = self.rng.random() < 0.2
        if q is not None and self.rng.random() < 0.6:
            # mostly an equivalent redeclare: the interesting path is the -ok
            durable, exclusive, auto_delete = q.durable, q.owner is not None, q.auto_delete
        if name.startswith("amq.") and not passive:
            expect = {ACCESS_REFUSED}   # reserved prefix, checked first (server-named too)
        elif self.locked(q, chan):
            expect = {RESOURCE_LOCKED}
        elif passive:
            expect = None if q else {NOT_FOUND}
        elif q is not None and exclusive != (q.owner is not None):
            expect = {RESOURCE_LOCKED}   # RabbitMQ: exclusivity differs, as if locked
        elif q is not None and (q.auto_delete != auto_delete or (
                q.owner is None and q.durable != durable)):
            # RabbitMQ 3.10 does not compare durable for exclusive queues
            expect = {PRECONDITION_FAILED}
        else:
            expect = None
        if name.startswith("amq.gen") and q is None:
            return   # a deleted server-named queue: nothing left to test
        if expect and not self.can_err(chan):
            return
        self.flush_others(chan)
        what = "%s: queue.declare(%s, durable=%s, exclusive=%s, auto_delete=%s, passive=%s)" % (
            chan.label(), name, durable, exclusive, auto_delete, passive)
        ok, err = self.call(chan, what, lambda: chan.ch.queue_declare(
            name, passive=passive, durable=durable, exclusive=exclusive, auto_delete=auto_delete),
            expect)
        if err is not None:
            return
        if q is None and not passive:
            q = MQueue(name, durable, chan.conn.uid if exclusive else None, auto_delete)
            self.queues[name] = q
        self.check_counts(what, q, ok.method.message_count, ok.method.consumer_count)

    def check_counts(self, what, q, message_count, consumer_count):
        if consumer_count is not None and consumer_count != len(q.consumers):
            self.fail("%s: consumer_count %d, model %d" % (what, consumer_count, len(q.consumers)))
        # With consumers, ready messages may be in flight: the count is not exact.
        if not q.consumers and not q.unsettled and message_count != len(q.ready):
            self.fail("%s: message_count %d, model %d ready (%d unacked)" % (
                what, message_count, len(q.ready), len(q.unacked)))

    def op_queue_delete(self, chan):
        name = self.pick_queue_name()
        q = self.queues.get(name)
        if_unused = self.rng.random() < 0.3
        if_empty = self.rng.random() < 0.3
        if q is not None and if_empty and q.consumers:
            return   # whether ready messages are in flight decides: not exact
        if q is None:
            expect = None   # RabbitMQ 3.10: delete-ok, message_count 0
        elif self.locked(q, chan):
            expect = {RESOURCE_LOCKED}
        elif if_unused and q.consumers:
            expect = {PRECONDITION_FAILED}
        elif if_empty and q.ready:
            expect = {PRECONDITION_FAILED}
        else:
            expect = None
        if expect and not self.can_err(chan):
            return
        self.flush_others(chan)
        what = "%s: queue.delete(%s, if_unused=%s, if_empty=%s)" % (chan.label(), name, if_unused, if_empty)
        ok, err = self.call(chan, what, lambda: chan.ch.queue_delete(
            name, if_unused=if_unused, if_empty=if_empty), expect)
        if err is None:
            want = len(q.ready) if q is not None else 0
            if (q is None or not q.consumers) and ok.method.message_count != want:
                self.fail("%s: delete-ok message_count %d, model %d" % (
                    what, ok.method.message_count, want))
            if q is not None:
                self.delete_queue(q, "queue.delete", sync=True)

    def op_queue_purge(self, chan):
        name = self.pick_queue_name()
        q = self.queues.get(name)
        if q is not None and q.consumers:
            return   # what is in flight to them cannot be purged: not exact
        expect = self.queue_errors(q, chan)
        if expect and not self.can_err(chan):
            return
        self.flush_others(chan)
        what = "%s: queue.purge(%s)" % (chan.label(), name)
        ok, err = self.call(chan, what, lambda: chan.ch.queue_purge(name), expect)
        if err is None:
            if ok.method.message_count != len(q.ready):
                self.fail("%s: purge-ok message_count %d, model %d" % (
                    what, ok.method.message_count, len(q.ready)))
            q.ready.clear()

    def pick_exchange(self):
        return "amq.direct" if self.rng.random() < 0.15 else self.rng.choice(sorted(self.exchange_pool))

    def op_bind(self, chan, unbind=False):
        name = self.pick_queue_name(settle=False)
        xn = self.pick_exchange()
        key = self.rng.choice(self.keys)
        q, x = self.queues.get(name), self.exchanges.get(xn)
        if unbind:
            # RabbitMQ 3.10: unbinding what does not exist is unbind-ok
            expect = {RESOURCE_LOCKED, None} if self.locked(q, chan) else None
        elif q is None or x is None:
            expect = {NOT_FOUND} if not self.locked(q, chan) else {NOT_FOUND, RESOURCE_LOCKED}
        elif self.locked(q, chan):
            expect = {RESOURCE_LOCKED}
        else:
            expect = None
        if expect and not self.can_err(chan):
            return
        self.flush_others(chan)
        op = "queue.unbind" if unbind else "queue.bind"
        what = "%s: %s(%s, %s, %s)" % (chan.label(), op, name, xn, key)
        if unbind:
            fn = lambda: chan.ch.queue_unbind(name, xn, routing_key=key)
        else:
            fn = lambda: chan.ch.queue_bind(name, xn, routing_key=key)
        _, err = self.call(chan, what, fn, expect)
        if err is None:
            b = (xn, name, key)
            if unbind:
                if b in self.bindings:
                    self.remove_binding(b)
            else:
                self.bindings.add(b)

    def op_publish(self, chan, burst=1):
        r = self.rng.random()
        if r < 0.4:
            xn, key = "", self.pick_queue_name(settle=False)
        else:
            xn, key = self.pick_exchange(), self.rng.choice(self.keys)
            if r > 0.97:
                xn = self.p + "nowhere"
        if xn and xn not in self.exchanges and not self.can_err(chan):
            return
        mandatory = self.rng.random() < 0.4
        persistent = self.rng.random() < 0.5
        for _ in range(burst):
            mid = self.new_mid()
            props = pika.BasicProperties(message_id=mid, delivery_mode=2 if persistent else 1)
            what = "%s: basic.publish(%r, %r, mandatory=%s) %s%s" % (
                chan.label(), xn, key, mandatory, mid, "" if chan.confirm else " [no confirm]")
            if xn and xn not in self.exchanges:
                self.call(chan, what, lambda: chan.ch.basic_publish(xn, key, mid.encode(), props),
                          {NOT_FOUND})
                return
            targets = self.route(xn, key)
            if not chan.confirm:
                self.call(chan, what, lambda: chan.ch.basic_publish(
                    xn, key, mid.encode(), props, mandatory=mandatory))
                chan.dirty = True
                for q in targets:
                    q.unsettled = True
                if mandatory and not targets:
                    chan.expected_returns.add(mid)
            else:
                def publish():
                    try:
                        chan.ch.basic_publish(xn, key, mid.encode(), props, mandatory=mandatory)
                        return "ack"
                    except pex.UnroutableError:
                        return "returned"
                    except pex.NackError:
                        return "nack"
                res, _ = self.call(chan, what, publish)
                want = "returned" if (mandatory and not targets) else "ack"
                if res != want:
                    self.fail("%s: %s, model expects %s (routes to %s)" % (
                        what, res, want, [q.name for q in targets]))
                if res == "returned":
                    self.stats["returns"] += 1
            for q in targets:
                q.enqueue(mid, chan.uid, xn, key)
            self.stats["published"] += 1

    def op_get(self, chan):
        name = self.pick_queue_name()
        q = self.queues.get(name)
        no_ack = self.rng.random() < 0.3
        expect = self.queue_errors(q, chan)
        if expect and not self.can_err(chan):
            return
        self.flush_others(chan)
        what = "%s: basic.get(%s, auto_ack=%s)" % (chan.label(), name, no_ack)
        res, err = self.call(chan, what, lambda: chan.ch.basic_get(name, auto_ack=no_ack), expect)
        if err is not None:
            return
        method, props, body = res
        if method is None:
            self.log("  -> get-empty")
            if q.ready and not q.consumers:
                self.fail("%s: get-empty, model has %d ready" % (what, len(q.ready)))
            return
        m = q.ready.get(props.message_id)
        first = q.earlier(m) if m is not None else None
        m = self.delivered(chan, q, None, method, props, body, get_ok="no_ack" if no_ack else "ack")
        if not q.consumers:
            if first is not None:
                self.fail("%s: got %s, but %s from the same channel is ahead of it" % (
                    what, m.mid, first.mid))
            if method.message_count != len(q.ready):
                self.fail("%s: get-ok message_count %d, model %d" % (
                    what, method.message_count, len(q.ready)))

    def op_consume(self, chan):
        name = self.pick_queue_name(settle=False)
        q = self.queues.get(name)
        no_ack = self.rng.random() < 0.3
        exclusive = self.rng.random() < 0.1
        expect = self.queue_errors(q, chan)
        if not expect and ((exclusive and q.consumers)
                           or any(c.exclusive for c in q.consumers.values())):
            expect = {ACCESS_REFUSED}
        if expect and not self.can_err(chan):
            return
        self.flush_others(chan)
        holder = {}
        what = "%s: basic.consume(%s, auto_ack=%s, exclusive=%s) prefetch %d" % (
            chan.label(), name, no_ack, exclusive, chan.prefetch)
        ctag, err = self.call(chan, what, lambda: chan.ch.basic_consume(
            name, lambda _c, m, p, b: self.on_delivery(chan, holder["c"], m, p, b),
            auto_ack=no_ack, exclusive=exclusive), expect)
        if err is None:
            c = MConsumer(ctag, q, chan, no_ack, exclusive, chan.prefetch)
            holder["c"] = c
            q.consumers[ctag] = c
            q.had_consumer = True
            chan.consumers[ctag] = c

    def cancel(self, chan, c):
        self.catch_up(c.queue)
        what = "%s: basic.cancel(%s on %s, auto_ack=%s)" % (chan.label(), c.ctag, c.queue.name, c.no_ack)
        pending, _ = self.call(chan, what, lambda: chan.ch.basic_cancel(c.ctag))
        # pika hands back what arrived for a no-ack consumer before cancel-ok
        for evt in pending or []:
            method, props, body = evt[-3:]
            self.delivered(chan, c.queue, c, method, props, body)
        self.drop_consumer(c, "basic.cancel")

    def catch_up(self, q):
        """Let the broker hand out what it will before a consumer of q goes
        (cancel, channel or connection close, a channel error): afterwards
        nothing is in flight to q's consumers, so nothing comes back unseen
        with redelivered=true, and pika (which drops no-ack deliveries that
        arrive after basic.cancel) loses nothing. Done when the model's
        ready messages of q are all dispatched, or every consumer of q is
        at its prefetch limit (a no-ack consumer has none)."""
        deadline = time.monotonic() + 3.0
        while q.consumers and not q.deleted:
            for chan in {c.chan for c in q.consumers.values()}:
                if chan.open:
                    self.sync(chan)      # deliveries sent before qos-ok are read ...
            for mc in self.conns:        # ... and dispatched
                self.pump(mc)
            if not q.ready or q.deleted or all(
                    c.limit and c.unacked >= c.limit for c in q.consumers.values()):
                return
            if time.monotonic() > deadline:
                self.fail("%s: %d ready message(s) %s not delivered to %d consumer(s) with room "
                          "for them within 3 s" % (q.name, len(q.ready), sorted(q.ready)[:5],
                                                   len(q.consumers)))
            time.sleep(0.01)

    def op_cancel(self, chan):
        if not chan.consumers:
            return
        self.cancel(chan, chan.consumers[self.rng.choice(sorted(chan.consumers))])

    def op_settle(self, chan):
        kind = self.rng.choice(["ack", "ack", "nack", "reject"])
        multiple = kind != "reject" and self.rng.random() < 0.3
        requeue = self.rng.random() < 0.5
        bogus = self.rng.random() < 0.05 and self.can_err(chan)
        if bogus:
            tag = chan.settled_tags[-1] if chan.settled_tags and self.rng.random() < 0.5 \
                else chan.last_tag + 1000
            if tag in chan.unacked:
                return
            multiple = False
            expect = {PRECONDITION_FAILED}
        elif not chan.unacked:
            return
        else:
            tag = self.rng.choice(list(chan.unacked))
            if multiple and not chan.consumers and self.rng.random() < 0.1:
                # multiple with tag 0: everything outstanding, which with a
                # consumer would include deliveries not read yet
                tag = 0
            expect = None
        what = "%s: basic.%s(%d, multiple=%s%s)" % (
            chan.label(), kind, tag, multiple, "" if kind == "ack" else ", requeue=%s" % requeue)

        def send():
            if kind == "ack":
                chan.ch.basic_ack(tag, multiple=multiple)
            elif kind == "nack":
                chan.ch.basic_nack(tag, multiple=multiple, requeue=requeue)
            else:
                chan.ch.basic_reject(tag, requeue=requeue)
            # The method has no reply; an error would come later. A sync
            # method on the same channel brings it now.
            if bogus or self.rng.random() < 0.5:
                chan.ch.basic_qos(prefetch_count=chan.prefetch)
            else:
                chan.dirty = True   # requeues land later: flush before counting

        if multiple:
            # Deliveries with lower tags than a get-ok came before it on the
            # wire but pika dispatches them later: dispatch them first, as
            # multiple settles them too.
            self.pump(chan.conn)
            tags = [t for t in chan.unacked if tag == 0 or t <= tag]
        else:
            tags = [tag] if tag in chan.unacked else []
        _, err = self.call(chan, what, send, expect)
        if err is None:
            self.settle_tags(chan, tags, requeue and kind != "ack")

    def op_qos(self, chan):
        n = self.rng.choice([0, 1, 2, 3, 10])
        self.call(chan, "%s: basic.qos(%d)" % (chan.label(), n), lambda: chan.ch.basic_qos(prefetch_count=n))
        chan.prefetch = n
        chan.dirty = False

    def quiesce_chan(self, chan):
        """Before a voluntary close: settle the accounting that a close
        would lose (deliveries in flight, unread returns)."""
        for c in [c for c in chan.consumers.values() if c.no_ack]:
            self.cancel(chan, c)
        for q in {c.queue for c in chan.consumers.values()}:
            self.catch_up(q)
        if chan.dirty:
            self.sync(chan)
        self.pump(chan.conn)
        deadline = time.monotonic() + 2.0
        while any(ch is chan for ch in self.expected_cancels.values()):
            # consumers of a deleted queue hear of it by basic.cancel (pika
            # announces consumer_cancel_notify), maybe a moment after delete-ok
            if time.monotonic() > deadline:
                self.fail("%s: no basic.cancel from the broker for %s, whose queue was deleted" % (
                    chan.label(), sorted(t for t, ch in self.expected_cancels.items() if ch is chan)))
            time.sleep(0.01)
            self.pump(chan.conn)
        if chan.expected_returns:
            self.fail("%s: mandatory publishes %s were not returned" % (
                chan.label(), sorted(chan.expected_returns)))

    def op_close_channel(self, chan):
        self.quiesce_chan(chan)
        self.call(chan, "%s: channel.close" % chan.label(), chan.ch.close)
        self.channel_gone(chan, by_broker=False)

    def op_close_connection(self, chan):
        mc = chan.conn
        for ch in list(mc.chans.values()):
            if ch.open:
                self.quiesce_chan(ch)
        self.log("c%d: connection.close" % mc.slot)
        self.watchdog.begin("connection.close c%d" % mc.slot)
        try:
            mc.conn.close()
        except CONN_LOST as e:
            self.check_alive("connection.close")
            self.fail("connection.close c%d: %r" % (mc.slot, e))
        finally:
            self.watchdog.end()
        self.connection_gone(mc)
        self.conns[mc.slot] = MConn(mc.slot)

    def op_pump(self, chan):
        self.pump(chan.conn, self.rng.choice([0, 0, 0.01, 0.05]))

    # --- checkpoints -----------------------------------------------------------

    def checkpoint(self, drain=False):
        """Everything back in the queues, then compare existence and counts."""
        self.log("== checkpoint%s" % (" (drain)" if drain else ""))
        self.stats["checkpoints"] += 1
        for chan in list(self.all_chans()):
            if chan.open:
                for c in list(chan.consumers.values()):
                    self.cancel(chan, c)
                self.op_close_channel(chan)
        for mc in self.conns:
            self.pump(mc)
        # Deletions that follow a close (exclusive, auto-delete) may lag a little.
        deadline = time.monotonic() + 2.0
        while True:
            try:
                self.compare_existence()
                break
            except Failure:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        if drain:
            for name, q in sorted(self.queues.items()):
                while q.ready:
                    chan = self.cp_chan(q)
                    what = "%s: basic.get(%s, auto_ack=True) [drain]" % (chan.label(), name)
                    (method, props, body), _ = self.call(
                        chan, what, lambda: chan.ch.basic_get(name, auto_ack=True))
                    if method is None:
                        self.fail("%s: get-empty, model still has %d" % (what, len(q.ready)))
                    m = q.ready.get(props.message_id)
                    first = q.earlier(m) if m is not None else None
                    self.delivered(chan, q, None, method, props, body, get_ok="no_ack")
                    if first is not None:
                        self.fail("%s: got %s, but %s from the same channel is ahead of it" % (
                            what, m.mid, first.mid))
                chan = self.cp_chan(q)
                (method, props, _b), _ = self.call(
                    chan, "%s: basic.get(%s) [must be empty]" % (chan.label(), name),
                    lambda: chan.ch.basic_get(name, auto_ack=True))
                if method is not None:
                    self.fail("drain of %s: got %s after the model's last message" % (
                        name, props.message_id))

    def cp_chan(self, q=None):
        """The probe channel (never consumes) of the queue's owner connection,
        else of the first one."""
        mc = self.conns[0]
        if q is not None and q.owner is not None:
            mc = next(m for m in self.conns if m.uid == q.owner)
        return self.chan_open(mc, PROBE)

    def compare_existence(self):
        for name in self.queue_pool + [n for n in self.queues if n.startswith("amq.gen")]:
            self.await_gone(name)
            q = self.queues.get(name)
            self.settle(q)
            chan = self.cp_chan(q)
            what = "%s: queue.declare(%s, passive) [checkpoint]" % (chan.label(), name)
            ok, err = self.call(chan, what, lambda: chan.ch.queue_declare(name, passive=True),
                                None if q else {NOT_FOUND})
            if q:
                self.check_counts(what, q, ok.method.message_count, ok.method.consumer_count)
        for name in sorted(self.exchange_pool):
            chan = self.cp_chan()
            self.call(chan, "%s: exchange.declare(%s, passive) [checkpoint]" % (chan.label(), name),
                      lambda: chan.ch.exchange_declare(name, passive=True),
                      None if name in self.exchanges else {NOT_FOUND})

    # --- the run -----------------------------------------------------------------

    def clean_slate(self):
        """Remove what an earlier run with this prefix left on a shared broker."""
        c = pika.BlockingConnection(self.params)
        for name in self.queue_pool:
            ch = c.channel()
            try:
                ch.queue_delete(name)
            except pex.ChannelClosedByBroker:
                pass
        for name in self.exchange_pool:
            ch = c.channel()
            try:
                ch.exchange_delete(name)
            except pex.ChannelClosedByBroker:
                pass
        if c.is_open:
            c.close()

    OPS = [
        ("exchange_declare", 6), ("exchange_delete", 2), ("queue_declare", 8),
        ("queue_delete", 3), ("queue_purge", 2), ("bind", 8), ("unbind", 3),
        ("publish", 25), ("get", 8), ("consume", 5), ("cancel", 3), ("settle", 14),
        ("qos", 3), ("close_channel", 2), ("close_connection", 1), ("pump", 8),
    ]

    def step(self):
        # A queue deleted as a side effect must be gone (and out of every
        # route) before anything else happens, or routing is not exact.
        for name in sorted(self.gone_pending):
            self.await_gone(name)
        names, weights = zip(*self.OPS)
        op = self.rng.choices(names, weights)[0]
        chan = self.any_chan()
        if op not in ("publish", "pump"):
            self.flush_others(chan)
        self.ops[op] += 1
        if op == "unbind":
            self.op_bind(chan, unbind=True)
        elif op == "publish":
            self.op_publish(chan, burst=self.rng.choice([1, 1, 1, 3, 10]))
        else:
            getattr(self, "op_" + op)(chan)
        self.check_alive(op)

    def run(self, duration):
        self.watchdog.start()
        t_end = time.monotonic() + duration
        self.clean_slate()
        next_cp = self.rng.randrange(40, 150)
        n = 0
        try:
            while time.monotonic() < t_end:
                self.step()
                n += 1
                if n >= next_cp:
                    self.checkpoint(drain=self.rng.random() < 0.3)
                    next_cp = n + self.rng.randrange(40, 150)
            self.checkpoint(drain=True)
        finally:
            self.watchdog.stopped = True
        for mc in self.conns:
            if mc.conn is not None and mc.conn.is_open:
                mc.conn.close()
        self.clean_slate()
        return n


def start_broker(binary, shards, root):
    port = free_port()
    log_path = os.path.join(root, "broker.log")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [binary, "serve", "--port", str(port), "--bind", "127.0.0.1", "--shards", str(shards),
             "--data-dir", os.path.join(root, "data"), "--log", "info",
             "--management-port", "0", "--prometheus-port", "0"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the broker exited during start-up:\n" + open(log_path).read()[-3000:])
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port, log_path
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the broker did not listen within 15 s")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=None, help="default: random, printed")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of operations")
    ap.add_argument("--url", default=None, help="use this broker instead of starting one")
    ap.add_argument("--bin", default=None, help="broker binary (default $WARREN_BIN, else "
                    "target/release/warren)")
    ap.add_argument("--shards", type=int, default=int(os.environ.get("WARREN_SHARDS", "3")))
    ap.add_argument("--connections", type=int, default=3)
    ap.add_argument("--channels", type=int, default=3, help="per connection")
    ap.add_argument("--op-timeout", type=float, default=10.0)
    ap.add_argument("-v", "--verbose", action="store_true", help="print every operation")
    args = ap.parse_args(argv)
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    proc = root = None
    if args.url:
        params = pika.URLParameters(args.url)
    else:
        binary = os.path.abspath(args.bin or default_bin())
        root = tempfile.mkdtemp(prefix="warren-fuzz-")
        proc, port, log_path = start_broker(binary, args.shards, root)
        params = pika.ConnectionParameters("127.0.0.1", port)
    # Heartbeats off: a connection left alone between operations must not time out.
    params.heartbeat = 0
    params.socket_timeout = 10
    params.connection_attempts = 1
    alive = (lambda: proc.poll() is None) if proc else (lambda: True)
    where = args.url or "warren --shards %d (%s)" % (args.shards, binary)
    print("fuzz-stateful: seed %d, %.0f s, %d connections x %d channels, %s" % (
        seed, args.duration, args.connections, args.channels, where))

    def on_hang():
        if proc is not None:
            proc.kill()
            print("broker killed; its log and data kept in %s" % root)

    fz = Fuzzer(params, seed, "fz.%d." % seed, args.connections, args.channels,
                args.op_timeout, alive, verbose=args.verbose, on_hang=on_hang)
    t0 = time.monotonic()
    status = 0
    try:
        n = fz.run(args.duration)
        print("ok: %d operations in %.1f s, %d checkpoints" % (n, time.monotonic() - t0,
                                                              fz.stats["checkpoints"]))
    except Failure as e:
        print(fz.failure_report(str(e)))
        status = 1
    print("operations: %s" % dict(sorted(fz.ops.items())))
    print("channel/connection error codes seen: %s" % dict(sorted(fz.codes.items())))
    print("figures: %s" % dict(sorted(fz.stats.items())))
    if proc is not None:
        if proc.poll() is not None:
            print("FAILURE: the broker exited with code %s; log %s" % (proc.returncode, log_path))
            status = 1
        else:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if status == 0:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print("broker log and data kept in %s" % root)
    return status


if __name__ == "__main__":
    sys.exit(main())
