"""A private RabbitMQ node for tests that start brokers of their own
(test_tls.py, test_https.py with ``WARREN_TEST_TLS_BROKER=rabbitmq``).

The node is isolated from any system node and from other private ones
(tools/bench-vs-rabbitmq.py's approach): its own node name
(``warren-tls-<pid>-<n>@localhost``), HOME (so its own Erlang cookie),
AMQP, distribution and epmd ports (free loopback ports; epmd and the
distribution listener bound to 127.0.0.1), and a temporary directory
holding its rabbitmq.conf, enabled_plugins file, mnesia and log
directories. It runs the scripts in /usr/lib/rabbitmq/bin (Debian's
/usr/sbin wrappers switch to the rabbitmq user and drop the environment).

    node = RabbitMQNode(dir, conf="listeners.ssl.default = ...\\n",
                        plugins=["rabbitmq_management"],
                        users=[("alice", "pw", ["administrator"])])
    node.start()          # waits for await_startup and every listener
    node.ctl("add_user", "bob", "pw")   # rabbitmqctl -n <node> ...
    node.log()            # the node's log file
    node.stop()           # rabbitmqctl stop, then SIGKILL; stops its epmd

``start()`` raises RabbitMQNodeError (with the log's tail) when the node
does not come up; ``stop()`` may be called any number of times."""

import itertools
import os
import shutil
import signal
import socket
import subprocess
import time

from conftest import free_port, port_open

LIB_BIN = "/usr/lib/rabbitmq/bin"
START_TIMEOUT_S = 120
CTL_TIMEOUT_S = 60
_SEQ = itertools.count(1)


def tls_broker_kind():
    """WARREN_TEST_TLS_BROKER: which broker test_tls.py and test_https.py
    start, "warren" (default) or "rabbitmq"."""
    kind = (os.environ.get("WARREN_TEST_TLS_BROKER") or "warren").strip().lower()
    if kind not in ("warren", "rabbitmq"):
        raise ValueError("WARREN_TEST_TLS_BROKER must be 'warren' or 'rabbitmq', not %r"
                         % os.environ.get("WARREN_TEST_TLS_BROKER"))
    return kind


def _script(name):
    p = os.path.join(LIB_BIN, name)
    return p if os.path.exists(p) else shutil.which(name)


def missing():
    """Why a node cannot be started here (a sentence), or None."""
    for name in ("rabbitmq-server", "rabbitmqctl"):
        if not _script(name):
            return ("%s not found (in %s or on PATH): install RabbitMQ 3.10 "
                    "(apt-get install rabbitmq-server)" % (name, LIB_BIN))
    return None


def _port_open(port, timeout=0.5):
    return port_open("127.0.0.1", port, timeout)


class RabbitMQNodeError(RuntimeError):
    pass


class RabbitMQNode:
    """See the module's docstring. `conf`: rabbitmq.conf lines added after
    the node's own (listeners.tcp.default on `port`, the distribution
    listener on 127.0.0.1); `plugins`: the enabled_plugins list; `users`:
    (name, password, tags) made with rabbitmqctl after the start, with
    all permissions on "/"; `wait_ports`: more ports that must accept
    connections before start() returns (the listeners `conf` adds)."""

    def __init__(self, directory, conf="", plugins=(), users=(), port=None,
                 wait_ports=(), prefix="warren-tls"):
        self.dir = os.path.abspath(directory)
        self.conf_extra = conf
        self.plugins = list(plugins)
        self.users = list(users)
        self.port = port or free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.wait_ports = [self.port] + list(wait_ports)
        self.node = "%s-%d-%d@localhost" % (prefix, os.getpid(), next(_SEQ))
        self.server = _script("rabbitmq-server")
        self.ctl_bin = _script("rabbitmqctl")
        self.proc = None
        self.console_path = os.path.join(self.dir, "console.log")
        self.log_dir = os.path.join(self.dir, "log")
        self._epmd_ours = False
        self.env = None

    # --- setup ----------------------------------------------------------
    def _write_files(self):
        for d in ("home", "mnesia", "log"):
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
        with open(os.path.join(self.dir, "enabled_plugins"), "w") as f:
            f.write("[%s].\n" % ",".join(self.plugins))
        with open(os.path.join(self.dir, "rabbitmq.conf"), "w") as f:
            f.write("listeners.tcp.default = 127.0.0.1:%d\n"
                    "distribution.listener.interface = 127.0.0.1\n"
                    "loopback_users.guest = true\n"
                    "log.file.level = info\n"
                    % self.port)
            f.write(self.conf_extra)
        # An empty rabbitmq-env.conf: nothing from /etc/rabbitmq applies.
        open(os.path.join(self.dir, "rabbitmq-env.conf"), "w").close()
        self.env = dict(os.environ)
        for k in list(self.env):
            if k.startswith("RABBITMQ_") or k in ("ERL_EPMD_PORT", "ERL_EPMD_ADDRESS"):
                del self.env[k]
        self.env.update({
            "HOME": os.path.join(self.dir, "home"),  # own Erlang cookie
            "RABBITMQ_CONF_ENV_FILE": os.path.join(self.dir, "rabbitmq-env.conf"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),  # own epmd, stopped by stop()
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": os.path.join(self.dir, "mnesia"),
            "RABBITMQ_LOG_BASE": self.log_dir,
            "RABBITMQ_CONFIG_FILE": os.path.join(self.dir, "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": os.path.join(self.dir, "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(self.dir, "enabled_plugins"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": os.path.join(self.dir, "plugins-expand"),
            "RABBITMQ_PID_FILE": os.path.join(self.dir, "pid"),
        })

    def start(self):
        why = missing()
        if why:
            raise RabbitMQNodeError(why)
        self._write_files()
        # The epmd port was free a moment ago: whatever answers there
        # after the start is the epmd this node started.
        self._epmd_ours = not _port_open(self.epmd_port, timeout=0.2)
        with open(self.console_path, "wb") as out:
            self.proc = subprocess.Popen([self.server], env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, cwd=self.dir)
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RabbitMQNodeError("RabbitMQ node %s exited during startup (code %s)\n%s"
                                            % (self.node, self.proc.returncode, self.tail()))
                left = max(1, int(deadline - time.monotonic()))
                r = self.ctl("await_startup", "--timeout", str(min(left, 20)), check=False,
                             timeout=min(left, 20) + 30)
                if r.returncode == 0 and all(_port_open(p) for p in self.wait_ports):
                    break
                if time.monotonic() > deadline:
                    raise RabbitMQNodeError("RabbitMQ node %s did not start within %d s\n"
                                            "last await_startup: %s%s\n%s"
                                            % (self.node, START_TIMEOUT_S, r.stdout, r.stderr,
                                               self.tail()))
                time.sleep(0.5)
            for name, password, tags in self.users:
                self.ctl("add_user", name, password)
                self.ctl("set_user_tags", name, *tags)
                self.ctl("set_permissions", "-p", "/", name, ".*", ".*", ".*")
        except BaseException:
            self.stop()
            raise
        return self

    # --- use ------------------------------------------------------------
    def ctl(self, *args, check=True, timeout=CTL_TIMEOUT_S):
        """rabbitmqctl -n <node> args -> CompletedProcess (text); check=True
        raises RabbitMQNodeError on a non-zero exit."""
        cmd = [self.ctl_bin, "-n", self.node] + [str(a) for a in args]
        r = subprocess.run(cmd, env=self.env, capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise RabbitMQNodeError("%s exited with %d\n--- stdout ---\n%s--- stderr ---\n%s"
                                    % (" ".join(cmd), r.returncode, r.stdout, r.stderr))
        return r

    def log_path(self):
        return os.path.join(self.log_dir, self.node + ".log")

    def log(self):
        """The node's log file (RABBITMQ_LOG_BASE/<node>.log)."""
        try:
            with open(self.log_path(), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def tail(self, n=8000):
        try:
            with open(self.console_path, errors="replace") as f:
                console = f.read()[-n:]
        except OSError:
            console = ""
        return "--- %s (tail) ---\n%s\n--- rabbitmq-server output (tail) ---\n%s" % (
            self.log_path(), self.log()[-n:], console)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    # --- teardown -------------------------------------------------------
    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.ctl("stop", check=False, timeout=60)
            except subprocess.TimeoutExpired:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)
        # beam.smp runs in the server script's session; one left behind
        # (the script exited, the VM did not) is killed by its own pid.
        pid = self._pid_from_file()
        if pid and _is_running(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._stop_epmd()
        self.proc = None

    def _pid_from_file(self):
        try:
            with open(os.path.join(self.dir, "pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def _stop_epmd(self):
        """Stops the epmd this node started on its own port (daemonised,
        so outside the server's session), and only that one."""
        if not self._epmd_ours:
            return
        epmd = shutil.which("epmd")
        if epmd:
            subprocess.run([epmd, "-port", str(self.epmd_port), "-kill"], env=self.env,
                           capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while _port_open(self.epmd_port, timeout=0.2) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _port_open(self.epmd_port, timeout=0.2):
            # Still there (-kill refused): the epmd process whose
            # environment names this node's epmd port, by its pid.
            for pid in _epmd_pids_for_port(self.epmd_port):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def _is_running(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _epmd_pids_for_port(port):
    want = ("ERL_EPMD_PORT=%d" % port).encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/comm" % entry) as f:
                if f.read().strip() != "epmd":
                    continue
            with open("/proc/%s/environ" % entry, "rb") as f:
                if want in f.read().split(b"\0"):
                    pids.append(int(entry))
        except OSError:
            continue
    return pids
