"""Helpers for the ctl and permission tests (test_ctl*.py, test_permissions.py,
test_loopback.py): reading rabbitmqctl's output and pika's connection errors."""

import ast
import base64
import hashlib
import re
import time

ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text):
    return ANSI_RE.sub("", text)


def out_lines(stdout):
    """stdout split into lines; every rabbitmqctl output ends with a newline."""
    assert stdout.endswith("\n"), repr(stdout)
    return stdout[:-1].split("\n")


def rows(stdout):
    """The tab-separated rows of a `-s` (no info line, no header) listing."""
    if stdout == "":
        return []
    return [line.split("\t") for line in out_lines(stdout)]


def row_strings(stdout):
    return [] if stdout == "" else out_lines(stdout)


def wait_until(predicate, timeout=15.0, interval=0.2, what="condition"):
    """Call predicate() until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        assert time.monotonic() < deadline, "%s not reached within %.0f s" % (what, timeout)
        time.sleep(interval)


def connection_close_reason(exc):
    """(reply_code, reply_text) of the connection.close behind a pika
    connection error.

    pika raises ConnectionClosedByBroker once the connection is open; while
    opening it wraps it into ProbableAuthenticationError (closed while
    authenticating) or ProbableAccessDeniedError (closed at connection.open)
    whose only argument is the repr of the original,
    "ConnectionClosedByBroker: (530) 'NOT_ALLOWED - ...'"."""
    if hasattr(exc, "reply_code"):
        return exc.reply_code, exc.reply_text
    assert len(exc.args) == 1 and isinstance(exc.args[0], str), repr(exc)
    return close_reason_from_repr(exc.args[0])


def close_reason_from_repr(text):
    """(reply_code, reply_text) from "ConnectionClosedByBroker: (403) '...'"."""
    m = re.match(r"^ConnectionClosedByBroker: \((\d+)\) (.*)$", text, re.S)
    assert m, "not a close by the broker: %r" % (text,)
    return int(m.group(1)), ast.literal_eval(m.group(2))


def local_port(conn):
    """The client-side TCP port of a pika BlockingConnection."""
    return conn._impl._transport._sock.getsockname()[1]


def check_rabbit_sha256(password_hash, password):
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt(4) ||
    sha256(salt || utf8 password))."""
    raw = base64.b64decode(password_hash)
    assert len(raw) == 36, (password_hash, len(raw))
    salt, digest = raw[:4], raw[4:]
    return hashlib.sha256(salt + password.encode("utf-8")).digest() == digest
