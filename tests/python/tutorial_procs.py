"""Run Warren's re-creations of the RabbitMQ tutorial programs (tests/python/tutorials/) as subprocesses and read what they print."""

import os
import queue
import signal
import subprocess
import sys
import threading
import time

from conftest import TUTORIALS_DIR


class Script:
    """A running tutorial script whose stdout lines are collected by a reader thread."""

    def __init__(self, broker, name, *args):
        env = dict(os.environ)
        env["AMQP_HOST"] = broker.host
        env["AMQP_PORT"] = str(broker.port)
        env["PYTHONUNBUFFERED"] = "1"  # prints reach us as they happen
        self.name = name
        self.args = list(args)
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(TUTORIALS_DIR, name)] + self.args,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            env=env, cwd=TUTORIALS_DIR, text=True, bufsize=1)
        self.lines = []          # every stdout line seen so far (without '\n')
        self._q = queue.Queue()
        self._pos = 0
        self._eof = False
        self._err = []
        self._t_out = threading.Thread(target=self._pump, args=(self.proc.stdout, self._q), daemon=True)
        self._t_err = threading.Thread(target=self._pump_err, daemon=True)
        self._t_out.start()
        self._t_err.start()

    def _pump(self, stream, q):
        for line in stream:
            q.put(line.rstrip("\n"))
        q.put(None)

    def _pump_err(self):
        for line in self.proc.stderr:
            self._err.append(line)

    @property
    def stderr(self):
        return "".join(self._err)

    def _drain(self, timeout):
        """Move at most one line from the pipe queue into self.lines; False on EOF/timeout."""
        try:
            line = self._q.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return False
        if line is None:
            self._eof = True
            self._q.put(None)  # keep EOF sticky
            return False
        self.lines.append(line)
        return True

    def describe(self):
        return "%s %s (rc=%r)\n--- stdout ---\n%s\n--- stderr ---\n%s" % (
            self.name, " ".join(self.args), self.proc.poll(),
            "\n".join(self.lines), self.stderr[-5000:])

    def wait_line(self, predicate, timeout=15.0):
        """Wait until a not-yet-consumed stdout line satisfies predicate; return it.

        ``predicate`` may be a string (exact line match) or a callable.
        Lines are consumed in order: each call continues after the last match.
        """
        if isinstance(predicate, str):
            expected = predicate
            predicate = lambda l: l == expected  # noqa: E731
        deadline = time.monotonic() + timeout
        while True:
            while self._pos < len(self.lines):
                line = self.lines[self._pos]
                self._pos += 1
                if predicate(line):
                    return line
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("timed out after %.0fs waiting for a line in %s"
                                     % (timeout, self.describe()))
            if not self._drain(min(remaining, 0.2)) and self._eof:
                raise AssertionError("process exited before the expected line: %s"
                                     % self.describe())

    def collect_until(self, predicate, timeout=15.0):
        """Like wait_line, but return all lines consumed up to and including the match."""
        start = self._pos
        self.wait_line(predicate, timeout)
        return self.lines[start:self._pos]

    def wait_exit(self, timeout=30.0):
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("%s did not exit within %.0fs: %s" % (self.name, timeout, self.describe()))
        self._t_out.join(timeout=5)
        self._t_err.join(timeout=5)
        while self._drain(0):
            pass
        return rc

    def kill(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


class Scripts:
    """Fixture helper: starts scripts and kills any still running at teardown."""

    def __init__(self, broker):
        self.broker = broker
        self.started = []

    def start(self, name, *args):
        s = Script(self.broker, name, *args)
        self.started.append(s)
        return s

    def run(self, name, *args, timeout=30.0):
        """Run a script to completion; assert it exited 0; return its stdout lines."""
        s = self.start(name, *args)
        rc = s.wait_exit(timeout)
        assert rc == 0, "non-zero exit: %s" % s.describe()
        return s.lines

    def cleanup(self):
        for s in self.started:
            s.kill()
