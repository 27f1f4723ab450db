#!/usr/bin/env python3
"""Crash-recovery chaos test for Warren.

    tools/chaos.py --cycles 50 --seed 7            # WARREN_BIN or --bin
    tools/chaos.py --bin target/release/warren --shards 1 --cycles 5 -v

Starts its own broker (own port, own temporary data directory), declares a
durable topology, and runs publishers (publisher confirms, persistent
messages, one unique id per message), consumers (manual acks, with held,
multiple, requeued and dropped acks) and a topology churner (durable queues,
bindings, exchanges declared and deleted) while the broker is killed with
SIGKILL at random moments and restarted on the same port and data directory.
After the last kill: the clients stop, the broker is stopped with SIGTERM
and started again, every queue is drained and these are checked:

1. every publish the broker confirmed (basic.ack) was delivered at least
   once from every queue it was routed to;
2. nothing was delivered that was never published, to a queue it was not
   routed to, or with a different body;
3. per (queue, message), every delivery after the first carried
   redelivered=true (after a crash too: a delivered-but-unsettled message
   recovered from disk must come back marked redelivered);
4. every queue, exchange and binding whose declare/bind was confirmed
   (-ok received) still exists, and every one whose delete/unbind was
   confirmed is gone (passive declares, and mandatory publishes through
   each binding);
plus: every (re)start accepts AMQP connections within --start-timeout
seconds, the broker never exits by itself, SIGTERM exits 0, no channel or
connection is closed by the broker, and publishes are confirmed in every
cycle that runs --stall-s seconds after every shard is ready (Warren logs
"listening on" then; a handshake may succeed before, on a shard that has
recovered, while requests for the others' queues wait).

Nacked publishes are counted (allowed); publishes whose confirm was lost to
a kill are "unknown" (may or may not be delivered). Prints a summary and
exits 1 on any violation or when it cannot run, 2 on a usage error.

Every client is a thread with its own connection (pika connections are not
thread-safe); each run owns its broker, port and data directory, so several
runs can go side by side. The seed fixes the kill schedule and every
client's choices; thread interleaving still varies from run to run.
run(parser().parse_args([...])) does it all from Python (tests/python/test_chaos.py).
"""

import argparse
import collections
import hashlib
import json
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

EXCHANGE = "chaos.direct"
FANOUT = "chaos.fan"
QUEUES = ["chaos.q0", "chaos.q1", "chaos.q2"]
COLD = "chaos.cold"  # never consumed until the final drain: a growing backlog
CORE_QUEUES = QUEUES + [COLD]

# Publish states
PENDING, CONFIRMED, NACKED, UNKNOWN, RETURNED = range(5)
STATE_NAMES = ["pending", "confirmed", "nacked", "unknown", "returned"]


def routes():
    """(exchange, routing key, queues it must reach), fixed by set_up_topology."""
    r = []
    for i, q in enumerate(QUEUES):
        dest = (q, COLD) if i == 0 else (q,)
        r.append(("", q, (q,)))
        r.append((EXCHANGE, "k%d" % i, dest))
        # through the fanout exchange, bound to the direct one (e2e binding)
        r.append((FANOUT, "k%d" % i, dest))
    return r


ROUTES = routes()


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def port_open(port, timeout=0.2):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def make_body(mid):
    """Body derived from the id alone, so any delivery can be verified."""
    h = hashlib.blake2b(mid.encode(), digest_size=16).digest()
    sel = int.from_bytes(h[:2], "big") % 1000
    if sel < 5:
        n = 140000 + h[2] * 64  # more than one 128 KiB frame
    else:
        n = 16 + int.from_bytes(h[2:4], "big") % 1024
    pad = (h * (n // len(h) + 1))[:n]
    return mid.encode() + b"|" + pad


def params_for(port, **kw):
    p = dict(host="127.0.0.1", port=port,
             credentials=pika.PlainCredentials("guest", "guest"),
             connection_attempts=1, socket_timeout=5, stack_timeout=10,
             blocked_connection_timeout=30, heartbeat=30)
    p.update(kw)
    return pika.ConnectionParameters(**p)


def broker_closed(exc):
    """(code, text) if exc says the broker closed the channel/connection."""
    if isinstance(exc, (pex.ChannelClosedByBroker, pex.ConnectionClosedByBroker)):
        return exc.reply_code, exc.reply_text
    return None


# Expected ways for a client to notice the broker went away.
CONN_LOST = (pex.AMQPConnectionError, pex.ConnectionClosed, pex.StreamLostError,
             pex.ChannelWrongStateError, pex.ConnectionWrongStateError,
             OSError, EOFError)


# ---------------------------------------------------------------------------
# The broker process
# ---------------------------------------------------------------------------

class BrokerProc:
    def __init__(self, binary, shards, root, sync=None, log_level="info"):
        self.binary = binary
        self.shards = shards
        self.data_dir = os.path.join(root, "data")
        self.log_path = os.path.join(root, "broker.log")
        self.port = free_port()
        self.sync = sync
        self.log_level = log_level
        self.proc = None
        self.starts = 0
        self._log_offset = 0
        self.t_spawn = None
        self.ready_s = None

    def cmd(self):
        c = [self.binary, "serve", "--port", str(self.port), "--bind", "127.0.0.1",
             "--shards", str(self.shards), "--data-dir", self.data_dir,
             "--log", self.log_level, "--management-port", "0", "--prometheus-port", "0"]
        if self.sync:
            c += ["--sync", self.sync]
        return c

    def log_since_start(self, limit=6000):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                text = f.read().decode(errors="replace")
                return text if limit is None else text[-limit:]
        except OSError:
            return ""

    def start(self, timeout):
        """Start; wait for the port and an AMQP handshake. Returns
        (None, (port_s, amqp_s)) or (error text, None)."""
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(("\n==== chaos: start #%d: %s\n" % (self.starts, " ".join(self.cmd()))).encode())
            log.flush()
            self._log_offset = log.tell()
            self.proc = subprocess.Popen(self.cmd(), stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, cwd=REPO_ROOT)
        t0 = self.t_spawn = time.monotonic()
        self.ready_s = None
        deadline = t0 + timeout
        port_s = None
        while True:
            if self.proc.poll() is not None:
                return ("exited with code %s during start-up:\n%s" % (
                    self.proc.returncode, self.log_since_start()), None)
            now = time.monotonic()
            if port_s is None and port_open(self.port):
                port_s = now - t0
            if port_s is not None:
                # The listener may be up before recovery is done: only a
                # completed handshake means it serves.
                try:
                    left = max(0.5, deadline - now)
                    c = pika.BlockingConnection(params_for(
                        self.port, socket_timeout=left, stack_timeout=left))
                    c.close()
                    return None, (port_s, time.monotonic() - t0)
                except pex.AMQPError:
                    pass
            if time.monotonic() >= deadline:
                what = "an AMQP handshake" if port_s is not None else "TCP connections"
                self.kill()
                return ("did not accept %s within %.0f s:\n%s" % (
                    what, timeout, self.log_since_start()), None)
            time.sleep(0.02)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def check_ready(self):
        """Seconds from spawn to Warren's "listening on" line (logged once
        every shard has recovered), or None while it has not appeared. A
        handshake can succeed earlier, on a shard that is done, while
        requests for queues of the others wait."""
        if self.ready_s is None and "listening on" in self.log_since_start(limit=None):
            self.ready_s = time.monotonic() - self.t_spawn
        return self.ready_s

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    def terminate(self, timeout=10):
        """SIGTERM; returns the exit code (None if it had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None


# ---------------------------------------------------------------------------
# What happened: publishes, deliveries, violations
# ---------------------------------------------------------------------------

class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.t0 = time.monotonic()
        self.pubs = {}          # id -> [route index, state, kills so far, published at, settled at]
        self.events = []        # (time, what): kills, starts, phases
        self.sessions = {}      # publisher connection -> when it opened
        self.deliveries = {}    # (queue, id) -> [(seq, redelivered, cycle, who), ...]
        self.seq = 0
        self.cycle = 0
        self.violations = []    # (kind, detail)
        self.counts = collections.Counter()
        self.channel_errors = collections.Counter()

    def violation(self, kind, detail):
        with self.lock:
            self.violations.append((kind, detail))

    def published(self, mid, route, session):
        with self.lock:
            self.pubs[mid] = [route, PENDING, self.cycle, time.monotonic() - self.t0, None, session]
            self.counts["published"] += 1

    def settle(self, mids, state):
        with self.lock:
            for mid in mids:
                rec = self.pubs[mid]
                if rec[1] == PENDING:
                    rec[1] = state
                    rec[4] = time.monotonic() - self.t0
                    self.counts[STATE_NAMES[state]] += 1
                elif rec[1] == RETURNED and state in (CONFIRMED, UNKNOWN):
                    pass  # the confirm that follows a basic.return
                else:
                    self.violations.append((
                        "confirm", "%s got a second confirm (%s after %s)" % (
                            mid, STATE_NAMES[state], STATE_NAMES[rec[1]])))

    def event(self, what):
        with self.lock:
            self.events.append((time.monotonic() - self.t0, what))

    def when(self, t):
        """'12.34 s (after <last event>)' for violation reports."""
        last = [w for (te, w) in self.events if te <= t]
        return "%.2f s (last event: %s)" % (t, last[-1] if last else "none")

    def returned(self, mid):
        with self.lock:
            rec = self.pubs.get(mid)
            if rec is not None and rec[1] == PENDING:
                rec[1] = RETURNED

    def delivered(self, queue, mid, redelivered, who):
        with self.lock:
            self.seq += 1
            self.deliveries.setdefault((queue, mid), []).append(
                (self.seq, bool(redelivered), self.cycle, who))
            self.counts["delivered"] += 1


# ---------------------------------------------------------------------------
# Clients
# ---------------------------------------------------------------------------

class Ctx:
    def __init__(self, port, ledger, args):
        self.port = port
        self.ledger = ledger
        self.args = args
        self.stop_publishing = threading.Event()
        self.stop_consuming = threading.Event()
        self.stop_churn = threading.Event()

    def params(self, **kw):
        return params_for(self.port, **kw)


class Publisher(threading.Thread):
    """Confirm-mode publisher on a SelectConnection, with up to --window
    publishes awaiting their confirm, so a kill catches many in flight."""

    def __init__(self, idx, ctx, seed):
        super().__init__(name="publisher-%d" % idx, daemon=True)
        self.idx = idx
        self.ctx = ctx
        self.rng = random.Random(seed)
        self.n = 0
        self.session_no = 0

    def run(self):
        while not self.ctx.stop_publishing.is_set():
            self.session()
            if not self.ctx.stop_publishing.is_set():
                time.sleep(self.rng.uniform(0.02, 0.1))

    def session(self):
        self.outstanding = {}   # delivery tag -> id
        self.next_tag = 1
        self.ch = None
        self.tokens = 0.0
        self.last = time.monotonic()
        self.drain_deadline = None
        led = self.ctx.ledger
        try:
            self.conn = pika.SelectConnection(
                self.ctx.params(), on_open_callback=self.on_open,
                on_open_error_callback=lambda c, e: c.ioloop.stop(),
                on_close_callback=self.on_closed)
            self.conn.ioloop.start()
        except Exception as e:  # noqa: BLE001 - a client bug must not end the run silently
            led.violation("client", "%s: %r" % (self.name, e))
        # Confirms still owed when the connection went: the kill ate them.
        led.settle(list(self.outstanding.values()), UNKNOWN)

    def on_open(self, conn):
        self.session_no += 1
        with self.ctx.ledger.lock:
            self.ctx.ledger.sessions[(self.idx, self.session_no)] = time.monotonic() - self.ctx.ledger.t0
        conn.channel(on_open_callback=self.on_channel)

    def on_closed(self, conn, reason):
        bc = broker_closed(reason)
        if bc and not (bc[0] == 320 and self.ctx.stop_publishing.is_set()):
            self.ctx.ledger.violation("connection closed by broker", "%s: %s %s" % ((self.name,) + bc))
        conn.ioloop.stop()

    def on_channel(self, ch):
        self.ch = ch
        ch.add_on_close_callback(self.on_channel_closed)
        ch.add_on_return_callback(self.on_return)
        ch.confirm_delivery(ack_nack_callback=self.on_confirm,
                            callback=lambda _f: self.pump())

    def on_channel_closed(self, ch, reason):
        bc = broker_closed(reason)
        if bc:
            self.ctx.ledger.violation("channel closed by broker", "%s: %s %s" % ((self.name,) + bc))
        if self.conn.is_open:
            self.conn.close()

    def on_return(self, ch, method, props, body):
        # Every route is bound for the whole run: a return means a queue or
        # binding whose declare was confirmed has gone.
        self.ctx.ledger.violation("returned", "%s via %r/%r: %s %s" % (
            props.message_id, method.exchange, method.routing_key,
            method.reply_code, method.reply_text))
        self.ctx.ledger.returned(props.message_id)

    def on_confirm(self, frame):
        m = frame.method
        state = CONFIRMED if isinstance(m, pika.spec.Basic.Ack) else NACKED
        if m.multiple:
            tags = [t for t in self.outstanding if t <= m.delivery_tag]
        else:
            tags = [m.delivery_tag] if m.delivery_tag in self.outstanding else []
        if not tags:
            self.ctx.ledger.violation("confirm", "%s: %s for unknown delivery tag %d" % (
                self.name, type(m).__name__, m.delivery_tag))
        self.ctx.ledger.settle([self.outstanding.pop(t) for t in tags], state)

    def pump(self):
        if self.ch is None or not self.ch.is_open:
            return
        a = self.ctx.args
        if self.ctx.stop_publishing.is_set():
            if self.drain_deadline is None:
                self.drain_deadline = time.monotonic() + 15
            if not self.outstanding or time.monotonic() > self.drain_deadline:
                if self.outstanding:
                    self.ctx.ledger.violation("stall", "%s: %d confirms still owed 15 s after the "
                                              "last publish" % (self.name, len(self.outstanding)))
                self.conn.close()
                return
        else:
            now = time.monotonic()
            self.tokens = min(a.window, self.tokens + (now - self.last) * a.rate)
            self.last = now
            while self.tokens >= 1 and len(self.outstanding) < a.window:
                self.tokens -= 1
                self.publish_one()
        self.conn.ioloop.call_later(0.005, self.pump)

    def publish_one(self):
        self.n += 1
        mid = "p%d.%d" % (self.idx, self.n)
        ri = self.rng.randrange(len(ROUTES))
        exchange, key, _ = ROUTES[ri]
        self.ctx.ledger.published(mid, ri, (self.idx, self.session_no))
        self.outstanding[self.next_tag] = mid
        self.next_tag += 1
        self.ch.basic_publish(exchange, key, make_body(mid),
                              pika.BasicProperties(delivery_mode=2, message_id=mid),
                              mandatory=True)


class Consumer(threading.Thread):
    """Manual-ack consumer of one queue. Acks most deliveries at once, some
    later with multiple=true, requeues or drops a few, and holds a few
    unacked until the connection dies (they must come back redelivered)."""

    def __init__(self, idx, queue, ctx, seed):
        super().__init__(name="consumer-%d-%s" % (idx, queue), daemon=True)
        self.queue = queue
        self.ctx = ctx
        self.rng = random.Random(seed)

    def run(self):
        while not self.ctx.stop_consuming.is_set():
            try:
                self.session()
            except CONN_LOST as e:
                bc = broker_closed(e)
                if bc:
                    self.ctx.ledger.violation("closed by broker", "%s: %s %s" % ((self.name,) + bc))
            except Exception as e:  # noqa: BLE001
                self.ctx.ledger.violation("client", "%s: %r" % (self.name, e))
            if not self.ctx.stop_consuming.is_set():
                time.sleep(self.rng.uniform(0.02, 0.1))

    def session(self):
        led = self.ctx.ledger
        conn = pika.BlockingConnection(self.ctx.params())
        try:
            ch = conn.channel()
            ch.basic_qos(prefetch_count=self.rng.choice([1, 10, 50, 200]))
            ch.add_on_cancel_callback(lambda f: led.violation(
                "consumer cancelled by broker", "%s on %s" % (self.name, self.queue)))
            unacked = []   # delivery tags, ascending
            held_forever = set()

            def on_message(ch, method, props, body):
                mid = props.message_id or ""
                led.delivered(self.queue, mid, method.redelivered, self.name)
                if body != make_body(mid):
                    led.violation("corrupt", "%s from %s: body of %d bytes does not match" % (
                        mid, self.queue, len(body)))
                tag = method.delivery_tag
                r = self.rng.random()
                if r < 0.70:
                    ch.basic_ack(tag)
                elif r < 0.85:
                    unacked.append(tag)            # acked later, multiple=true
                elif r < 0.90:
                    ch.basic_nack(tag, requeue=True)
                elif r < 0.93:
                    ch.basic_reject(tag, requeue=True)
                elif r < 0.95:
                    ch.basic_reject(tag, requeue=False)  # dropped: delivered once, done
                elif len(held_forever) < 5:
                    unacked.append(tag)
                    held_forever.add(tag)
                else:
                    ch.basic_ack(tag)

            ch.basic_consume(self.queue, on_message, auto_ack=False)
            while not self.ctx.stop_consuming.is_set():
                conn.process_data_events(time_limit=0.05)
                later = [t for t in unacked if t not in held_forever]
                if len(later) >= 8 or (later and self.rng.random() < 0.1):
                    top = later[-1]
                    if self.rng.random() < 0.2:
                        ch.basic_nack(top, multiple=True, requeue=True)
                    else:
                        ch.basic_ack(top, multiple=True)
                    # multiple settles every earlier tag, held ones too
                    held_forever.difference_update(t for t in unacked if t <= top)
                    unacked[:] = [t for t in unacked if t > top]
        finally:
            if conn.is_open:
                try:
                    conn.close()   # unacked messages go back to the queue
                except CONN_LOST:
                    pass


class Churner(threading.Thread):
    """Declares, binds, unbinds and deletes durable queues and exchanges with
    unique names. An operation whose -ok arrived fixes what must exist after
    recovery; one cut short by a kill makes that entity unknown."""

    def __init__(self, ctx, seed):
        super().__init__(name="churner", daemon=True)
        self.ctx = ctx
        self.rng = random.Random(seed)
        self.n = 0
        self.queues = {}     # name -> "present" | "absent" | "unknown"
        self.bindings = {}   # queue name -> "bound" | "unbound" | "unknown" (key tk.<queue>)
        self.exchanges = {}  # name -> "present" | "absent" | "unknown"
        self.ops = 0

    def run(self):
        while not self.ctx.stop_churn.is_set():
            try:
                self.session()
            except CONN_LOST as e:
                bc = broker_closed(e)
                if bc:
                    self.ctx.ledger.violation("closed by broker", "%s: %s %s" % ((self.name,) + bc))
            except Exception as e:  # noqa: BLE001
                self.ctx.ledger.violation("client", "%s: %r" % (self.name, e))
            if not self.ctx.stop_churn.is_set():
                time.sleep(self.rng.uniform(0.02, 0.1))

    def live(self, d, state):
        return [k for k, v in d.items() if v == state]

    def session(self):
        conn = pika.BlockingConnection(self.ctx.params())
        try:
            ch = conn.channel()
            while not self.ctx.stop_churn.is_set():
                self.step(ch)
                self.ops += 1
                conn.sleep(self.rng.uniform(0.02, 0.08))
        finally:
            if conn.is_open:
                try:
                    conn.close()
                except CONN_LOST:
                    pass

    def step(self, ch):
        r = self.rng.random()
        present = self.live(self.queues, "present")
        if r < 0.3 or not present:
            self.n += 1
            name = "chaos.tq.%d" % self.n
            self.apply(self.queues, name, "present", lambda: ch.queue_declare(name, durable=True))
            self.bindings[name] = "unbound"
        elif r < 0.5:
            q = self.rng.choice(present)
            if self.bindings[q] == "unbound":
                self.apply(self.bindings, q, "bound",
                           lambda: ch.queue_bind(q, EXCHANGE, routing_key="tk." + q))
        elif r < 0.6:
            q = self.rng.choice(present)
            if self.bindings[q] == "bound":
                self.apply(self.bindings, q, "unbound",
                           lambda: ch.queue_unbind(q, EXCHANGE, routing_key="tk." + q))
        elif r < 0.8:
            if len(present) > 3 or self.rng.random() < 0.3:
                q = self.rng.choice(present)
                self.apply(self.queues, q, "absent", lambda: ch.queue_delete(q))
                if self.queues[q] == "absent" and self.bindings[q] == "bound":
                    self.bindings[q] = "unbound"   # deleting a queue removes its bindings
                elif self.queues[q] == "unknown":
                    self.bindings[q] = "unknown"
        elif r < 0.9:
            self.n += 1
            name = "chaos.tx.%d" % self.n
            self.apply(self.exchanges, name, "present",
                       lambda: ch.exchange_declare(name, "fanout", durable=True))
        else:
            xs = self.live(self.exchanges, "present")
            if xs:
                x = self.rng.choice(xs)
                self.apply(self.exchanges, x, "absent", lambda: ch.exchange_delete(x))

    def apply(self, table, key, new_state, op):
        table[key] = "unknown"   # until the -ok says otherwise
        try:
            op()
        except CONN_LOST as e:
            bc = broker_closed(e)
            if bc:
                self.ctx.ledger.violation("closed by broker", "churner %s -> %s: %s %s" % (
                    (key, new_state) + bc))
            raise
        table[key] = new_state


# ---------------------------------------------------------------------------
# Set-up, drain, checks
# ---------------------------------------------------------------------------

def set_up_topology(port):
    c = pika.BlockingConnection(params_for(port))
    ch = c.channel()
    ch.exchange_declare(EXCHANGE, "direct", durable=True)
    ch.exchange_declare(FANOUT, "fanout", durable=True)
    ch.exchange_bind(EXCHANGE, FANOUT)
    for i, q in enumerate(QUEUES):
        ch.queue_declare(q, durable=True)
        ch.queue_bind(q, EXCHANGE, routing_key="k%d" % i)
    ch.queue_declare(COLD, durable=True)
    ch.queue_bind(COLD, EXCHANGE, routing_key="k0")
    c.close()


def drain(port, ledger, queue, idle_s=1.0, limit_s=300):
    """Consume `queue` until it is empty; every delivery goes into the ledger."""
    c = pika.BlockingConnection(params_for(port))
    try:
        ch = c.channel()
        ch.basic_qos(prefetch_count=500)
        state = {"last": time.monotonic(), "tag": 0, "acked": 0, "n": 0}

        def ack_all():
            if state["tag"] > state["acked"]:
                ch.basic_ack(state["tag"], multiple=True)
                state["acked"] = state["tag"]

        def on_message(ch, method, props, body):
            mid = props.message_id or ""
            ledger.delivered(queue, mid, method.redelivered, "drain")
            if body != make_body(mid):
                ledger.violation("corrupt", "%s from %s in the drain" % (mid, queue))
            state.update(last=time.monotonic(), tag=method.delivery_tag, n=state["n"] + 1)
            if state["n"] % 200 == 0:
                ack_all()

        ch.basic_consume(queue, on_message, auto_ack=False)
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            c.process_data_events(time_limit=0.1)
            if time.monotonic() - state["last"] >= idle_s:
                ack_all()
                if ch.queue_declare(queue, passive=True).method.message_count == 0:
                    break
        else:
            ledger.violation("stall", "draining %s took over %d s" % (queue, limit_s))
        ack_all()
        left = ch.queue_declare(queue, passive=True).method.message_count
        if left:
            ledger.violation("drain", "%s still holds %d message(s) after the drain" % (queue, left))
        return state["n"]
    finally:
        if c.is_open:
            c.close()


def check_topology(port, ledger, churner):
    """Point 4: confirmed declares/binds exist, confirmed deletes/unbinds are gone."""
    c = pika.BlockingConnection(params_for(port))
    ch = [c.channel()]
    checked = collections.Counter()

    def exists(kind, name):
        try:
            if kind == "queue":
                ch[0].queue_declare(name, passive=True)
            else:
                ch[0].exchange_declare(name, passive=True)
            return True
        except pex.ChannelClosedByBroker as e:
            if e.reply_code != 404:
                ledger.violation("topology", "passive declare of %s %s: %s %s" % (
                    kind, name, e.reply_code, e.reply_text))
            ch[0] = c.channel()
            return False

    for x in (EXCHANGE, FANOUT):
        checked["exchange"] += 1
        if not exists("exchange", x):
            ledger.violation("topology", "exchange %s is gone" % x)
    for q in CORE_QUEUES:
        checked["queue"] += 1
        if not exists("queue", q):
            ledger.violation("topology", "queue %s is gone" % q)
    for name, st in sorted(churner.queues.items()):
        if st == "unknown":
            continue
        checked["queue"] += 1
        if exists("queue", name) != (st == "present"):
            ledger.violation("topology", "queue %s should be %s" % (name, st))
    for name, st in sorted(churner.exchanges.items()):
        if st == "unknown":
            continue
        checked["exchange"] += 1
        if exists("exchange", name) != (st == "present"):
            ledger.violation("topology", "exchange %s should be %s" % (name, st))

    # Bindings: a mandatory, confirmed probe through each one.
    pch = c.channel()
    pch.confirm_delivery()

    def probe(exchange, key):
        """Publish a probe; returns its id, or None if it came back unroutable."""
        mid = "probe.%s.%s" % (exchange, key)
        try:
            pch.basic_publish(exchange, key, b"probe", pika.BasicProperties(message_id=mid),
                              mandatory=True)
            return mid
        except pex.UnroutableError:
            return None

    def take(queue):
        m, props, _ = ch[0].basic_get(queue, auto_ack=True)
        return props.message_id if m else None

    for exchange, key, dests in ROUTES:
        checked["binding"] += 1
        mid = probe(exchange, key)
        if mid is None:
            ledger.violation("topology", "route %r/%r is unroutable" % (exchange, key))
            continue
        for q in CORE_QUEUES:
            deadline = time.monotonic() + 5
            got = take(q)
            while q in dests and got is None and time.monotonic() < deadline:
                c.sleep(0.02)
                got = take(q)
            if (q in dests) != (got == mid):
                ledger.violation("topology", "probe via %r/%r: %s got %r" % (exchange, key, q, got))
    for q, st in sorted(churner.bindings.items()):
        if st == "unknown" or churner.queues.get(q) == "unknown":
            continue
        checked["binding"] += 1
        mid = probe(EXCHANGE, "tk." + q)
        if st == "unbound":
            if mid is not None:
                ledger.violation("topology", "binding %s was removed but still routes" % q)
            continue
        if mid is None:
            ledger.violation("topology", "binding %s/tk.%s is gone" % (EXCHANGE, q))
            continue
        got = None
        deadline = time.monotonic() + 5
        while got is None and time.monotonic() < deadline:
            got = take(q)
            if got is None:
                c.sleep(0.02)
        if got != mid:
            ledger.violation("topology", "probe through binding tk.%s: %s got %r" % (q, q, got))
    c.close()
    return checked


def check_messages(ledger):
    """Points 1-3. Returns figures for the summary."""
    f = collections.Counter()
    v = ledger.violation
    for mid, (ri, state, kills, t_pub, t_settle, session) in ledger.pubs.items():
        f[STATE_NAMES[state]] += 1
        dests = ROUTES[ri][2]
        got = [q for q in dests if (q, mid) in ledger.deliveries]
        if state == CONFIRMED and len(got) < len(dests):
            f["lost_confirmed"] += 1
            v("lost", "%s via %r/%r never delivered from %s; published at %s on a connection "
              "opened at %s, confirmed at %s" % (
                  mid, ROUTES[ri][0], ROUTES[ri][1], ", ".join(q for q in dests if q not in got),
                  ledger.when(t_pub), ledger.when(ledger.sessions.get(session, -1)),
                  ledger.when(t_settle)))
        if state == UNKNOWN and got:
            f["unknown_delivered"] += 1
        if state == NACKED and got:
            f["nacked_delivered"] += 1
    for (q, mid), ds in ledger.deliveries.items():
        rec = ledger.pubs.get(mid)
        if rec is None:
            f["phantom"] += 1
            v("phantom", "%r delivered from %s was never published" % (mid, q))
            continue
        if q not in ROUTES[rec[0]][2]:
            f["misrouted"] += 1
            v("misrouted", "%s delivered from %s, routed only to %s" % (
                mid, q, ROUTES[rec[0]][2]))
        if len(ds) > 1:
            f["duplicates"] += 1
            if len({d[2] for d in ds}) > 1:
                f["redelivered_across_restart"] += 1   # check 3 across a crash
        ds = sorted(ds)
        if ds[0][1]:
            f["first_delivery_redelivered"] += 1
        bad = [d for d in ds[1:] if not d[1]]
        if bad:
            f["redelivered_missing"] += 1
            v("redelivered", "%s from %s: deliveries (cycle, redelivered, by) %s" % (
                mid, q, [(d[2], d[1], d[3]) for d in ds]))
    return f


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------

def default_bin():
    """$WARREN_BIN (relative to the repository), else the newest build."""
    b = os.environ.get("WARREN_BIN")
    if b:
        return b if os.path.isabs(b) else os.path.join(REPO_ROOT, b)
    for profile in ("release", "debug"):
        p = os.path.join(REPO_ROOT, "target", profile, "warren")
        if os.path.exists(p):
            return p
    return os.path.join(REPO_ROOT, "target", "release", "warren")


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default=None, help="broker binary (default: $WARREN_BIN, "
                   "else target/release/warren)")
    p.add_argument("--shards", type=int, default=int(os.environ.get("WARREN_SHARDS", "3")))
    p.add_argument("--cycles", type=int, default=20, help="kills (default 20)")
    p.add_argument("--seed", type=int, default=None, help="default: random, printed")
    p.add_argument("--min-up", type=float, default=1.0, help="shortest uptime before a kill, s")
    p.add_argument("--max-up", type=float, default=6.0, help="longest uptime before a kill, s")
    p.add_argument("--early-kill", type=float, default=0.15,
                   help="share of kills within 0.3 s of start-up (during recovery "
                   "and the reconnection storm)")
    p.add_argument("--max-down", type=float, default=0.3, help="longest pause between kill and restart, s")
    p.add_argument("--publishers", type=int, default=3)
    p.add_argument("--consumers", type=int, default=4, help="spread over %s" % ", ".join(QUEUES))
    p.add_argument("--rate", type=float, default=150.0, help="publishes per second per publisher")
    p.add_argument("--window", type=int, default=64, help="unconfirmed publishes per publisher")
    p.add_argument("--no-churn", action="store_true", help="no topology churn thread")
    p.add_argument("--start-timeout", type=float, default=10.0)
    p.add_argument("--stall-s", type=float, default=4.0,
                   help="this long after every shard is ready without a confirmed "
                   "publish is a violation")
    p.add_argument("--sync", choices=["fsync", "os"], default=None, help="passed to warren serve")
    p.add_argument("--keep", action="store_true", help="keep the data directory and broker log")
    p.add_argument("--json", default=None, help="also write the summary as JSON here")
    p.add_argument("-v", "--verbose", action="store_true", help="one line per cycle")
    return p


def run(args, out=print):
    """Runs the whole test; returns the summary dict (violations inside)."""
    # Kills make pika log every lost connection; the ledger records what matters.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    binary = args.bin or default_bin()
    if not os.path.isabs(binary):
        binary = os.path.abspath(binary)
    if not os.path.exists(binary):
        raise SystemExit("broker binary not found: %s" % binary)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    rng = random.Random(seed)
    root = tempfile.mkdtemp(prefix="warren-chaos-")
    broker = BrokerProc(binary, args.shards, root, sync=args.sync)
    ledger = Ledger()
    ctx = Ctx(broker.port, ledger, args)
    t_begin = time.monotonic()
    start_times = []
    ready_times = []
    killed_before_ready = 0
    cycle_lines = []
    out("chaos: seed %d, %d shard(s), %d cycle(s), binary %s, data %s, port %d" % (
        seed, args.shards, args.cycles, binary, broker.data_dir, broker.port))

    def start(what):
        for attempt in range(4):
            ledger.event("%s: starting" % what)
            err, t = broker.start(args.start_timeout)
            if err is None:
                ledger.event("%s: serving (port open after %.3f s, AMQP after %.3f s)" % ((what,) + t))
                start_times.append(t)
                return True
            ledger.violation("start", "%s (attempt %d): %s" % (what, attempt + 1, err))
            out("chaos: %s failed: %s" % (what, err.splitlines()[0]))
            time.sleep(0.5)   # the failure is recorded; retry so the other checks still run
        return False

    threads = []
    churner = None
    summary = {}
    try:
        if not start("first start"):
            raise RuntimeError("the broker never came up")
        set_up_topology(broker.port)
        for i in range(args.publishers):
            threads.append(Publisher(i, ctx, rng.randrange(1 << 30)))
        for i in range(args.consumers):
            threads.append(Consumer(i, QUEUES[i % len(QUEUES)], ctx, rng.randrange(1 << 30)))
        if not args.no_churn:
            churner = Churner(ctx, rng.randrange(1 << 30))
            threads.append(churner)
        for t in threads:
            t.start()

        for cycle in range(1, args.cycles + 1):
            if rng.random() < args.early_kill:
                up = rng.uniform(0.0, 0.3)
            else:
                up = rng.uniform(args.min_up, args.max_up)
            d0, c0 = ledger.counts["delivered"], ledger.counts["confirmed"]
            c_ready = t_ready = None
            deadline = time.monotonic() + up
            while time.monotonic() < deadline and broker.alive():
                if t_ready is None and broker.check_ready() is not None:
                    t_ready, c_ready = time.monotonic(), ledger.counts["confirmed"]
                    ledger.event("all shards ready after %.3f s" % broker.ready_s)
                time.sleep(0.02)
            if not broker.alive():
                ledger.violation("crash", "cycle %d: the broker exited by itself with code %s:\n%s" % (
                    cycle, broker.proc.returncode, broker.log_since_start()))
            t_kill = time.monotonic()
            broker.kill()
            ledger.event("kill %d" % cycle)
            c1 = ledger.counts["confirmed"]
            if t_ready is None:
                killed_before_ready += 1
            else:
                ready_times.append(broker.ready_s)
                # Liveness: once every shard serves, confirms must flow.
                if t_kill - t_ready >= args.stall_s and c1 == c_ready:
                    ledger.violation("stall", "cycle %d: no publish confirmed in the %.1f s after every "
                                     "shard was ready" % (cycle, t_kill - t_ready))
            with ledger.lock:
                ledger.cycle = cycle
            line = "cycle %d: killed after %.2f s up (%s); +%d confirmed, +%d delivered" % (
                cycle, up, "before every shard had recovered" if t_ready is None
                else "every shard had recovered %.2f s after its start" % broker.ready_s,
                c1 - c0, ledger.counts["delivered"] - d0)
            cycle_lines.append(line)
            time.sleep(rng.uniform(0, args.max_down))
            if not start("restart after kill %d" % cycle):
                raise RuntimeError("the broker did not come back after kill %d" % cycle)
            if args.verbose:
                out("%s; restarted: port open after %.2f s, AMQP handshake after %.2f s" % (
                    line, start_times[-1][0], start_times[-1][1]))

        # Let clients reconnect and settle once more, then stop them while up.
        time.sleep(max(args.min_up, 1.0))
        ctx.stop_publishing.set()
        ctx.stop_churn.set()
        ledger.event("publishers stopping")
        for t in threads:
            if isinstance(t, (Publisher, Churner)):
                t.join(timeout=30)
        ctx.stop_consuming.set()
        ledger.event("consumers stopping")
        for t in threads:
            t.join(timeout=30)
            if t.is_alive():
                ledger.violation("stall", "%s did not stop within 30 s" % t.name)

        ledger.event("SIGTERM")
        code = broker.terminate()
        if code != 0:
            ledger.violation("stop", "SIGTERM: exit code %s (None: still running after 10 s):\n%s" % (
                code, broker.log_since_start()))
        if not start("final clean restart"):
            raise RuntimeError("the broker did not come back after the clean stop")
        with ledger.lock:
            ledger.cycle = args.cycles + 1
        drained = {q: drain(broker.port, ledger, q) for q in CORE_QUEUES}
        checked = check_topology(broker.port, ledger, churner or Churner(ctx, 0))
        code = broker.terminate()
        if code != 0:
            ledger.violation("stop", "final SIGTERM: exit code %s" % code)
        figures = check_messages(ledger)
        summary = {
            "seed": seed,
            "shards": args.shards,
            "cycles": args.cycles,
            "broker_starts": broker.starts,
            "published": ledger.counts["published"],
            "confirmed": figures["confirmed"],
            "nacked": figures["nacked"],
            "unknown": figures["unknown"],
            "returned": figures["returned"],
            "pending_at_end": figures["pending"],
            "unknown_delivered": figures["unknown_delivered"],
            "nacked_delivered": figures["nacked_delivered"],
            "deliveries": ledger.counts["delivered"],
            "distinct_delivered": len(ledger.deliveries),
            "drained_at_end": drained,
            "duplicates": figures["duplicates"],
            "redelivered_across_restart": figures["redelivered_across_restart"],
            "first_delivery_redelivered": figures["first_delivery_redelivered"],
            "redelivered_missing": figures["redelivered_missing"],
            "phantom": figures["phantom"],
            "misrouted": figures["misrouted"],
            "lost_confirmed": figures["lost_confirmed"],
            "topology_checked": dict(checked),
            "churn_ops": churner.ops if churner else 0,
            "start_s_max": round(max(t[1] for t in start_times), 3),
            "ready_s_median": round(sorted(ready_times)[len(ready_times) // 2], 3) if ready_times else None,
            "ready_s_max": round(max(ready_times), 3) if ready_times else None,
            "killed_before_ready": killed_before_ready,
            "start_s_median": round(sorted(t[1] for t in start_times)[len(start_times) // 2], 3),
            "wall_s": round(time.monotonic() - t_begin, 1),
        }
    except Exception as e:  # noqa: BLE001 - report, then clean up
        ledger.violation("run", "%s: %s" % (type(e).__name__, e))
        summary.setdefault("seed", seed)
    finally:
        ctx.stop_publishing.set()
        ctx.stop_consuming.set()
        ctx.stop_churn.set()
        broker.kill()
    kinds = collections.Counter(k for k, _ in ledger.violations)
    summary["violations"] = dict(kinds)
    summary["violation_details"] = [
        "%s: %s" % kd for kd in _first_per_kind(ledger.violations, 10)]
    summary["cycle_log"] = cycle_lines
    summary["broker_log"] = broker.log_path
    if ledger.violations or args.keep:
        summary["kept"] = root
    else:
        shutil.rmtree(root, ignore_errors=True)
    return summary


def _first_per_kind(violations, n):
    seen = collections.Counter()
    for k, d in violations:
        seen[k] += 1
        if seen[k] <= n:
            yield k, d


def format_summary(s):
    lines = ["", "chaos summary (seed %s, %s shard(s))" % (s.get("seed"), s.get("shards"))]
    keys = ["cycles", "broker_starts", "published", "confirmed", "nacked", "unknown", "returned",
            "pending_at_end", "unknown_delivered", "nacked_delivered", "deliveries",
            "distinct_delivered", "duplicates", "redelivered_across_restart",
            "first_delivery_redelivered",
            "redelivered_missing", "phantom", "misrouted", "lost_confirmed", "churn_ops",
            "topology_checked", "drained_at_end", "start_s_median", "start_s_max",
            "ready_s_median", "ready_s_max", "killed_before_ready", "wall_s"]
    for k in keys:
        if k in s:
            lines.append("  %-28s %s" % (k, s[k]))
    if s["violations"]:
        lines.append("VIOLATIONS: %s" % s["violations"])
        lines += ["  " + d.replace("\n", "\n    ") for d in s["violation_details"]]
        lines.append("data directory and broker log kept in %s" % s.get("kept"))
        lines.append("replay with --seed %s" % s.get("seed"))
    else:
        lines.append("no violations")
    return "\n".join(lines)


def main(argv=None):
    args = parser().parse_args(argv)
    if args.cycles < 1 or args.min_up > args.max_up or args.consumers < 1:
        parser().error("need --cycles >= 1, --min-up <= --max-up, --consumers >= 1")
    s = run(args)
    print(format_summary(s))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(s, f, indent=2, sort_keys=True)
    return 1 if s["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
