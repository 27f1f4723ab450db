"""Shared fixtures for Warren's Python (pika) compatibility tests.

Two modes:

* Default: start the broker binary given by ``WARREN_BIN`` (or, if unset,
  ``target/release/warren`` / ``target/debug/warren`` from the repo root) with
  ``--shards $WARREN_SHARDS`` (default 3) on a free port and a fresh data
  directory; stop it at the end of the session.
* ``WARREN_TEST_URL=amqp://guest:guest@127.0.0.1:5672/%2F``: use an already
  running broker (e.g. a real RabbitMQ, to validate that the tests describe
  RabbitMQ's actual behaviour).  Tests marked ``needs_warren_process`` are
  skipped in this mode.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid

import pika
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
TUTORIALS_DIR = os.path.join(HERE, "tutorials")

STARTUP_TIMEOUT_S = 15.0

_STATE = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_sessionfinish(session, exitstatus):
    yield
    msg = _STATE.pop("unreported_exit", None)
    if msg:
        sys.stderr.write("\nFAILED: " + msg + "\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "needs_warren_process: test inspects the broker process started by the "
        "fixture; skipped when WARREN_TEST_URL points at an external broker",
    )


def free_port():
    """Ask the kernel for a free TCP port on 127.0.0.1."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def port_open(host, port, timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _default_bin():
    for profile in ("release", "debug"):
        p = os.path.join(REPO_ROOT, "target", profile, "warren")
        if os.path.exists(p):
            return p
    return os.path.join(REPO_ROOT, "target", "release", "warren")


class Broker:
    """Where the broker under test listens, and (if we started it) its process."""

    def __init__(self, host, port, username="guest", password="guest",
                 vhost="/", proc=None, stderr_path=None, stdout_path=None,
                 data_dir=None, shards=None, mgmt_port=15672, prom_port=15692):
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.vhost = vhost
        self.proc = proc
        self.stderr_path = stderr_path
        self.stdout_path = stdout_path
        self.data_dir = data_dir
        self.shards = shards
        # The management HTTP API (and page) and the Prometheus endpoint.
        self.mgmt_port = mgmt_port
        self.prom_port = prom_port
        self.exit_reported = False

    @property
    def mgmt_url(self):
        """Base URL of the management HTTP API and page, no trailing slash."""
        return "http://%s:%d" % (self.host, self.mgmt_port)

    @property
    def prom_url(self):
        """Base URL of the Prometheus endpoint, no trailing slash."""
        return "http://%s:%d" % (self.host, self.prom_port)

    @property
    def external(self):
        return self.proc is None

    @property
    def url(self):
        return "amqp://%s:%s@%s:%d/%s" % (
            urllib.parse.quote(self.username, safe=""),
            urllib.parse.quote(self.password, safe=""),
            self.host, self.port,
            urllib.parse.quote(self.vhost, safe=""))

    def params(self, **overrides):
        """pika.ConnectionParameters for this broker; keyword args override."""
        kw = dict(
            host=self.host,
            port=self.port,
            virtual_host=self.vhost,
            credentials=pika.PlainCredentials(self.username, self.password),
            connection_attempts=1,
            socket_timeout=10,
            blocked_connection_timeout=30,
        )
        kw.update(overrides)
        return pika.ConnectionParameters(**kw)

    def url_params(self):
        return pika.URLParameters(self.url)

    def connect(self, **overrides):
        return pika.BlockingConnection(self.params(**overrides))

    # --- process state (only meaningful when we started the broker) ---
    def alive(self):
        return self.proc is None or self.proc.poll() is None

    def _read(self, path):
        if not path:
            return ""
        try:
            with open(path, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stderr_text(self):
        return self._read(self.stderr_path)

    def stdout_text(self):
        return self._read(self.stdout_path)

    def describe_exit(self):
        tail = self.stderr_text()[-20000:]
        out_tail = self.stdout_text()[-5000:]
        return ("broker process exited early with code %r\n"
                "--- broker stderr (tail) ---\n%s\n"
                "--- broker stdout (tail) ---\n%s" % (
                    self.proc.returncode if self.proc else None, tail, out_tail))


def _external_broker(url):
    p = urllib.parse.urlparse(url)
    if p.scheme not in ("amqp", ""):
        raise pytest.UsageError("WARREN_TEST_URL must be an amqp:// URL: %r" % url)
    vhost = urllib.parse.unquote(p.path[1:]) if len(p.path) > 1 else "/"
    return Broker(
        host=p.hostname or "127.0.0.1",
        port=p.port or 5672,
        username=urllib.parse.unquote(p.username or "guest"),
        password=urllib.parse.unquote(p.password or "guest"),
        vhost=vhost,
    )


def _start_broker():
    binary = os.environ.get("WARREN_BIN") or _default_bin()
    if not os.path.isabs(binary):
        binary = os.path.join(REPO_ROOT, binary)
    if not os.path.exists(binary):
        pytest.exit("broker binary not found: %s (set WARREN_BIN or run "
                    "`cargo build --release`)" % binary, returncode=3)
    shards = os.environ.get("WARREN_SHARDS", "3")
    data_dir = tempfile.mkdtemp(prefix="warren-pytest-")
    stderr_path = os.path.join(data_dir, "..",
                               os.path.basename(data_dir) + ".stderr.log")
    stdout_path = os.path.join(data_dir, "..",
                               os.path.basename(data_dir) + ".stdout.log")
    stderr_path = os.path.abspath(stderr_path)
    stdout_path = os.path.abspath(stdout_path)

    last_err = None
    for _attempt in range(3):  # a port grabbed by someone else between probe and bind: retry
        port, mgmt_port, prom_port = free_port(), free_port(), free_port()
        cmd = [binary, "serve", "--port", str(port), "--bind", "127.0.0.1",
               "--management-port", str(mgmt_port), "--prometheus-port", str(prom_port),
               "--shards", str(shards), "--data-dir", data_dir, "--log", "info"]
        errf = open(stderr_path, "wb")
        outf = open(stdout_path, "wb")
        proc = subprocess.Popen(cmd, stdout=outf, stderr=errf,
                                stdin=subprocess.DEVNULL, cwd=REPO_ROOT)
        errf.close()
        outf.close()
        broker = Broker("127.0.0.1", port, proc=proc, stderr_path=stderr_path,
                        stdout_path=stdout_path, data_dir=data_dir, shards=shards,
                        mgmt_port=mgmt_port, prom_port=prom_port)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if port_open("127.0.0.1", port, timeout=0.2):
                return broker
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
            last_err = ("broker did not accept TCP connections on port %d within "
                        "%.0f s\ncommand: %s\n--- stderr ---\n%s" % (
                            port, STARTUP_TIMEOUT_S, " ".join(cmd),
                            broker.stderr_text()[-20000:]))
            break
        last_err = "command: %s\n%s" % (" ".join(cmd), broker.describe_exit())
        if "address in use" not in broker.stderr_text().lower():
            break
    shutil.rmtree(data_dir, ignore_errors=True)
    pytest.exit("could not start the broker:\n%s" % last_err, returncode=3)


@pytest.fixture(scope="session")
def broker():
    url = os.environ.get("WARREN_TEST_URL")
    if url:
        yield _external_broker(url)
        return

    b = _start_broker()
    try:
        yield b
    finally:
        exited_early = b.proc.poll() is not None
        if not exited_early:
            b.proc.terminate()
            try:
                b.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                b.proc.kill()
                b.proc.wait(timeout=10)
        if os.environ.get("WARREN_KEEP_DATA") != "1":
            shutil.rmtree(b.data_dir, ignore_errors=True)
            if not exited_early:
                for p in (b.stderr_path, b.stdout_path):
                    try:
                        os.unlink(p)
                    except OSError:
                        pass
        if exited_early and not b.exit_reported:
            # Died after the last test's check: report it and fail the run
            # from pytest_sessionfinish (raising here would only print a traceback).
            _STATE["unreported_exit"] = b.describe_exit()


@pytest.fixture(autouse=True)
def _broker_still_alive(request):
    """After every test: if we started the broker, it must still be running."""
    yield
    if "broker" not in request.fixturenames:
        return
    b = request.getfixturevalue("broker")
    if not b.alive() and not b.exit_reported:
        b.exit_reported = True
        # Everything after this would fail with "connection refused": stop the run.
        request.session.shouldstop = "broker process exited early"
        pytest.fail(b.describe_exit(), pytrace=False)


def pytest_collection_modifyitems(config, items):
    if not os.environ.get("WARREN_TEST_URL"):
        return
    skip = pytest.mark.skip(reason="WARREN_TEST_URL set: broker process not started by the tests")
    for item in items:
        if "needs_warren_process" in item.keywords:
            item.add_marker(skip)


# ---------------------------------------------------------------------------
# Generic helpers used by several test modules
# ---------------------------------------------------------------------------

@pytest.fixture
def conn(broker):
    c = broker.connect()
    yield c
    if c.is_open:
        try:
            c.close()
        except Exception:
            pass


@pytest.fixture
def channel(conn):
    return conn.channel()


@pytest.fixture
def unique():
    """unique('q') -> 'pytest.q.<uuid>' : names that never collide between tests."""
    def make(prefix="x"):
        return "pytest.%s.%s" % (prefix, uuid.uuid4().hex)
    return make


@pytest.fixture
def cleanup(broker):
    """cleanup.queue(n) / cleanup.exchange(n): delete after the test (best effort)."""
    class C:
        def __init__(self):
            self.queues = []
            self.exchanges = []

        def queue(self, n):
            self.queues.append(n)
            return n

        def exchange(self, n):
            self.exchanges.append(n)
            return n

    c = C()
    yield c
    if not (c.queues or c.exchanges):
        return
    try:
        conn = broker.connect()
    except Exception:
        return
    try:
        for delete, names in (("queue_delete", c.queues), ("exchange_delete", c.exchanges)):
            for n in names:
                try:
                    ch = conn.channel()
                    getattr(ch, delete)(n)
                    ch.close()
                except Exception:
                    pass
    finally:
        try:
            conn.close()
        except Exception:
            pass


# ---------------------------------------------------------------------------
# rabbitmqctl / `warren ctl`, and users and vhosts made for a test
# ---------------------------------------------------------------------------

CTL_TIMEOUT_S = 60


def warren_bin():
    """The Warren binary: WARREN_BIN (relative to the repo root), else
    target/release/warren, else target/debug/warren."""
    binary = os.environ.get("WARREN_BIN") or _default_bin()
    if not os.path.isabs(binary):
        binary = os.path.join(REPO_ROOT, binary)
    return binary


class CtlError(AssertionError):
    """A ctl command exited non-zero while check=True."""

    def __init__(self, result):
        self.result = result
        super().__init__("%s exited with %d\n--- stdout ---\n%s--- stderr ---\n%s" % (
            " ".join(result.args), result.returncode, result.stdout, result.stderr))


class Ctl:
    """ctl(*args, check=True) -> subprocess.CompletedProcess (text stdout/stderr).

    With WARREN_TEST_URL: ``rabbitmqctl <args>`` (RABBITMQCTL overrides the
    command). Otherwise ``<warren> ctl <args>`` with ``WARREN_DATA_DIR`` set to
    the broker's data directory.
    stdin is /dev/null unless ``input`` is given. check=True raises CtlError
    (an AssertionError with the command's output) on a non-zero exit."""

    def __init__(self, base, external, data_dir=None):
        self.base = list(base)
        self.external = external
        self.data_dir = data_dir

    def __call__(self, *args, check=True, timeout=CTL_TIMEOUT_S, input=None):
        cmd = self.base + [str(a) for a in args]
        kw = dict(capture_output=True, text=True, timeout=timeout)
        if self.data_dir is not None:
            # Found as an unchanged script finds it (no --data-dir in the
            # arguments, which rabbitmqctl's messages echo).
            kw["env"] = dict(os.environ, WARREN_DATA_DIR=self.data_dir)
        if input is None:
            kw["stdin"] = subprocess.DEVNULL
        else:
            kw["input"] = input
        r = subprocess.run(cmd, **kw)
        if check and r.returncode != 0:
            raise CtlError(r)
        return r


@pytest.fixture(scope="session")
def ctl(broker):
    if broker.external:
        return Ctl([os.environ.get("RABBITMQCTL", "rabbitmqctl")], external=True)
    return Ctl([warren_bin(), "ctl"], external=False, data_dir=broker.data_dir)


@pytest.fixture(scope="session")
def ctl_diagnostics(broker):
    """The health-check verbs (ping, check_running, check_local_alarms,
    check_port_connectivity). RabbitMQ has them in rabbitmq-diagnostics
    (rabbitmqctl 3.10 answers 'Command ... not found', exit 64, for the
    check_* ones); Warren's `warren ctl` serves them."""
    if broker.external:
        return Ctl([os.environ.get("RABBITMQ_DIAGNOSTICS", "rabbitmq-diagnostics")],
                   external=True)
    return Ctl([warren_bin(), "ctl"], external=False, data_dir=broker.data_dir)


@pytest.fixture
def ctl_tmpdir():
    """A temporary directory for files ctl reads or writes. Mode 0777: the
    Debian rabbitmqctl wrapper run as root switches to the rabbitmq user,
    which must be able to read and create files in it."""
    d = tempfile.mkdtemp(prefix="warren-ctl-")
    os.chmod(d, 0o777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def short_id():
    return uuid.uuid4().hex[:16]


class User:
    def __init__(self, broker, name, password, vhost):
        self.broker = broker
        self.name = name
        self.password = password
        self.vhost = vhost

    def params(self, **overrides):
        """pika parameters logging in as this user into its vhost."""
        kw = dict(virtual_host=self.vhost,
                  credentials=pika.PlainCredentials(self.name, self.password))
        kw.update(overrides)
        return self.broker.params(**kw)


class Accounts:
    """Users and vhosts made through ctl for a test; deleted at teardown,
    with every pika connection opened through connect().

    - vhost(prefix) -> name: add_vhost a fresh vhost.
    - user(vhost=..., configure=, write=, read=, password=, tags=) -> User:
      add_user; set_permissions in vhost unless perms is None
      (permissions=None); set_user_tags when tags are given.
    - grant(user, vhost, c, w, r): set_permissions.
    - adopt_user(name) / adopt_vhost(name): delete at teardown objects the
      test made another way (import_definitions, add_user in the test).
    - connect(user_or_params, **overrides) -> BlockingConnection."""

    def __init__(self, broker, ctl):
        self.broker = broker
        self.ctl = ctl
        self.users = []
        self.vhosts = []
        self.conns = []

    def vhost(self, prefix="v"):
        name = "pytest-%s-%s" % (prefix, short_id())
        self.vhosts.append(name)
        self.ctl("add_vhost", name)
        return name

    def user(self, vhost=None, configure=".*", write=".*", read=".*",
             password=None, tags=(), permissions=True, prefix="u"):
        name = "pytest-%s-%s" % (prefix, short_id())
        password = password if password is not None else "pw-" + short_id()
        vhost = vhost if vhost is not None else self.broker.vhost
        self.users.append(name)
        self.ctl("add_user", name, password)
        if tags:
            self.ctl("set_user_tags", name, *tags)
        if permissions:
            self.grant(name, vhost, configure, write, read)
        return User(self.broker, name, password, vhost)

    def grant(self, user, vhost, configure, write, read):
        uname = user.name if isinstance(user, User) else user
        self.ctl("set_permissions", "-p", vhost, uname, configure, write, read)

    def adopt_user(self, name):
        self.users.append(name)
        return name

    def adopt_vhost(self, name):
        self.vhosts.append(name)
        return name

    def connect(self, who, **overrides):
        params = who.params(**overrides) if isinstance(who, User) else who
        c = pika.BlockingConnection(params)
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
            try:
                self.ctl("delete_user", u, check=False)
            except Exception:
                pass
        for v in self.vhosts:
            try:
                self.ctl("delete_vhost", v, check=False)
            except Exception:
                pass


@pytest.fixture
def accounts(broker, ctl):
    a = Accounts(broker, ctl)
    yield a
    a.cleanup()


@pytest.fixture(scope="module")
def module_accounts(broker, ctl):
    a = Accounts(broker, ctl)
    yield a
    a.cleanup()
