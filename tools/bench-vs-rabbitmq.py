#!/usr/bin/env python3
"""Side-by-side benchmark: Warren against RabbitMQ, one command.

    tools/bench-vs-rabbitmq.py                  # every scenario, 3 rounds
    tools/bench-vs-rabbitmq.py --quick          # shorter runs
    tools/bench-vs-rabbitmq.py --scenarios S1,S5 --rounds 5
    tools/bench-vs-rabbitmq.py --scenarios S10,S11 --s10-conns 100 --s10-duration 10 \
        --s11-count 200000 --rounds 1 --no-chart --out /tmp/s10s11-smoke

What it does:
- installs rabbitmq-server with apt if it is missing;
- builds Warren and tools/warren-perf in release mode;
- starts its OWN RabbitMQ node (own node name, ports, epmd, data and log
  directories, no plugins) and its own Warren, both on free loopback ports,
  and stops both at the end; a system RabbitMQ on 5672 is never touched;
- runs every selected scenario against both brokers, alternating which goes
  first, for --rounds rounds, with warren-perf as the load generator;
- writes bench-results/<date>-<sha>/: raw JSON per run, summary.md (medians
  and ratios), machine.json, commands.txt and chart.png/.svg;
- holds the flag file /tmp/bench-running (its pid and output folder) while
  the brokers are up, so other work on the machine can wait for the end.

S10 (1,000 publisher + 1,000 consumer connections, 60 s) and S11 (a
5,000,000-message backlog, transient then persistent, and its drain) are
part of the full run and much longer than the rest: S10 about 1.5 min per
broker and round, S11 several minutes per broker, phase and round at 5M.
--s10-conns, --s10-duration and --s11-count (or BENCH_S11_COUNT) shrink
them; --quick uses 20 s and 1,000,000.

Only the Python standard library is needed; the chart uses matplotlib from a
venv the script creates in tools/.venv (skipped with a warning if that
fails, or with --no-chart).
"""

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------- scenarios
#
# kind "throughput": warren-perf for a duration; published and consumed msg/s.
# kind "latency": warren-perf at a fixed rate; latency percentiles.
# kind "idle": warren-perf idle; broker RSS per connection.
# kind "manyconn": warren-perf --poll, many rate-limited connections; broker
#   CPU and RSS over the steady phase (between the STEADY and END markers).
# kind "backlog": fill a queue with no consumer (broker RSS per queued
#   message), then drain it (msg/s).
SCENARIOS = [
    dict(id="S1", kind="throughput",
         title="1 producer -> 1 queue -> 1 consumer, 16 B, no confirms, auto-ack",
         args=["--producers", "1", "--consumers", "1", "--size", "16"]),
    dict(id="S2", kind="throughput",
         title="as S1 with confirms (window 1000), multi-ack every 100, prefetch 1000",
         args=["--producers", "1", "--consumers", "1", "--size", "16", "--confirm", "1000",
               "--multi-ack-every", "100", "--prefetch", "1000"]),
    dict(id="S3", kind="throughput",
         title="as S2 with persistent messages to a durable queue",
         args=["--producers", "1", "--consumers", "1", "--size", "16", "--confirm", "1000",
               "--multi-ack-every", "100", "--prefetch", "1000", "--persistent"]),
    dict(id="S4", kind="throughput",
         title="fanout: 1 producer -> 10 queues -> 10 consumers, 16 B",
         args=["--producers", "1", "--consumers", "10", "--queues", "10", "--size", "16",
               "--exchange", "bench-fanout", "--exchange-type", "fanout"]),
    dict(id="S5a", kind="throughput",
         title="topic exchange, 10 bindings (1 matches), 1 queue, 16 B",
         args=["--producers", "1", "--consumers", "1", "--size", "16",
               "--exchange", "bench-topic-10", "--exchange-type", "topic", "--bindings", "10"]),
    dict(id="S5b", kind="throughput",
         title="topic exchange, 10,000 bindings (1 matches), 1 queue, 16 B",
         args=["--producers", "1", "--consumers", "1", "--size", "16",
               "--exchange", "bench-topic-10k", "--exchange-type", "topic",
               "--bindings", "10000"]),
    dict(id="S6", kind="throughput",
         title="4 producers, 4 queues, 4 consumers, 16 B",
         args=["--producers", "4", "--consumers", "4", "--queues", "4", "--size", "16"]),
    dict(id="S7a", kind="throughput",
         title="as S1 with 1 KiB bodies",
         args=["--producers", "1", "--consumers", "1", "--size", "1024"]),
    dict(id="S7b", kind="throughput",
         title="as S1 with 64 KiB bodies",
         args=["--producers", "1", "--consumers", "1", "--size", "65536"]),
    # TLS variants: the same load over AMQPS (both brokers' TLS listeners,
    # one throwaway certificate made by tests/fixtures/make-test-certs.sh,
    # TLS 1.2 and 1.3 offered, no client certificate).
    dict(id="T1", kind="throughput", tls=True,
         title="S1 over TLS: 1 producer -> 1 queue -> 1 consumer, 16 B, no confirms, auto-ack",
         args=["--producers", "1", "--consumers", "1", "--size", "16"]),
    dict(id="T2", kind="throughput", tls=True,
         title="S2 over TLS: confirms (window 1000), multi-ack every 100, prefetch 1000",
         args=["--producers", "1", "--consumers", "1", "--size", "16", "--confirm", "1000",
               "--multi-ack-every", "100", "--prefetch", "1000"]),
    dict(id="T7a", kind="throughput", tls=True,
         title="S7a over TLS: 1 KiB bodies",
         args=["--producers", "1", "--consumers", "1", "--size", "1024"]),
    dict(id="T7b", kind="throughput", tls=True,
         title="S7b over TLS: 64 KiB bodies",
         args=["--producers", "1", "--consumers", "1", "--size", "65536"]),
    dict(id="S12", kind="throughput",
         title="as S2 into a queue with x-message-ttl 5 s, x-max-length 10,000 (drop-head) and "
               "a dead-letter queue for what the limit drops",
         args=["--producers", "1", "--consumers", "1", "--size", "16", "--confirm", "1000",
               "--multi-ack-every", "100", "--prefetch", "1000",
               "--queue-arg", "x-message-ttl=5000", "--queue-arg", "x-max-length=10000",
               "--dead-letter-queue", "bench-S12-dead"]),
    dict(id="S8", kind="idle",
         title="10,000 idle connections, one channel each: broker RSS per connection",
         args=["--connections", "10000"]),
    dict(id="S9a", kind="latency",
         title="latency at a fixed 10,000 msg/s (1 producer, 1 consumer, auto-ack, 16 B)",
         args=["--producers", "1", "--consumers", "1", "--size", "16", "--rate", "10000"]),
    dict(id="S9b", kind="latency",
         title="latency at a fixed 30,000 msg/s (1 producer, 1 consumer, auto-ack, 16 B)",
         args=["--producers", "1", "--consumers", "1", "--size", "16", "--rate", "30000"]),
    # Connection count, rate and duration come from --s10-conns,
    # --s10-rate and --s10-duration (filled into the title).
    dict(id="S10", kind="manyconn",
         title="many connections: {conns:,} publishers at {rate:g} msg/s (16 B, phase-staggered), "
               "each to its own queue, {conns:,} consumers with manual acks (prefetch 100), one "
               "connection each: {total:,.0f} msg/s for {secs:g} s",
         args=["--size", "16", "--multi-ack-every", "1", "--prefetch", "100", "--stagger"]),
    # Message count from --s11-count (filled into the title).
    dict(id="S11a", kind="backlog",
         title="backlog of {count:,} transient 16 B messages in a queue with no consumer, "
               "then drained (prefetch 5,000, multi-ack every 1,000)",
         args=["--size", "16"]),
    dict(id="S11b", kind="backlog", persistent=True,
         title="as S11a with {count:,} persistent messages in a durable queue",
         args=["--size", "16", "--persistent"]),
]

# Chart labels.
SHORT = {"S1": "S1 1->1", "S2": "S2 confirms+acks", "S3": "S3 persistent", "S4": "S4 fanout x10",
         "S5a": "S5 topic 10 bind.", "S5b": "S5 topic 10k bind.", "S6": "S6 4p/4q/4c",
         "S7a": "S7 1 KiB", "S7b": "S7 64 KiB", "S8": "S8 idle conn.",
         "S12": "S12 TTL+limit+DLX", "T1": "T1 TLS 1->1", "T2": "T2 TLS confirms",
         "T7a": "T7 TLS 1 KiB", "T7b": "T7 TLS 64 KiB",
         "S9a": "S9 10k/s", "S9b": "S9 30k/s", "S10": "S10 1k+1k conn.",
         "S11a": "S11 transient", "S11b": "S11 persistent"}

BROKERS = ["warren", "rabbitmq"]
LABEL = {"warren": "Warren", "rabbitmq": "RabbitMQ"}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def die(msg):
    print(f"bench-vs-rabbitmq: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def run(cmd, **kw):
    """Runs a command, returns stdout (text); raises on failure."""
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw).stdout


def try_run(cmd, **kw):
    try:
        return run(cmd, **kw).strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def cpu_seconds(pid):
    """User + system CPU time of a process, all its threads, so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class TlsFiles:
    """A throwaway CA and server certificate for 127.0.0.1 (openssl)."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="bench-tls-"))
        run(["bash", str(ROOT / "tests" / "fixtures" / "make-test-certs.sh"), str(self.dir)])
        self.ca, self.cert, self.key = (self.dir / f for f in ("ca.pem", "server.pem",
                                                              "server.key"))

    def uri(self, port):
        return f"amqps://guest:guest@127.0.0.1:{port}/%2F?cacertfile={self.ca}"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def status_kib(pid, key):
    """A `key:` line of /proc/PID/status in KiB (VmRSS, RssAnon...), or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def nofile_limit(pid):
    """The soft open-files limit of a running process (None if unknown)."""
    try:
        with open(f"/proc/{pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    v = line.split()[3]
                    return None if v == "unlimited" else int(v)
    except (OSError, IndexError, ValueError):
        pass
    return None


class RssSampler:
    """Samples a process's VmRSS every `period` seconds on a thread; `peak`
    is the highest value seen (samples are also taken at start and stop)."""

    def __init__(self, pid, period=0.25):
        import threading
        self.pid = pid
        self.period = period
        self.peak = rss_kib(pid)
        self.samples = 1
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def sample(self):
        v = status_kib(self.pid, "VmRSS")
        if v is not None:
            self.peak = max(self.peak, v)
            self.samples += 1

    def run(self):
        while not self.stop_flag.wait(self.period):
            self.sample()

    def stop(self):
        self.stop_flag.set()
        self.thread.join(timeout=5)
        self.sample()
        return self.peak


FLAG = Path("/tmp/bench-running")


def set_flag(out):
    try:
        FLAG.write_text(f"pid {os.getpid()}\nout {out}\nsince {datetime.datetime.now().isoformat()}"
                        f"\n")
    except OSError as e:
        log(f"note: cannot write {FLAG}: {e}")


def clear_flag():
    """Removes the flag file if it is ours (another run may have replaced it)."""
    try:
        if FLAG.read_text().startswith(f"pid {os.getpid()}\n"):
            FLAG.unlink()
    except OSError:
        pass


# ------------------------------------------------------------------ brokers

class PagePoller:
    """What an open overview page asks of the management API: every 5 s
    the overview with its chart samples, the nodes and the first page of
    queues, and (as a Prometheus scrape would) /metrics."""

    PATHS = ["/api/overview?lengths_age=600&lengths_incr=5&msg_rates_age=600&msg_rates_incr=5",
             "/api/nodes", "/api/queues?page=1&page_size=100&pagination=true"]

    def __init__(self, mgmt_port, prom_port, period=5.0):
        import threading
        self.urls = [f"http://127.0.0.1:{mgmt_port}{p}" for p in self.PATHS]
        self.urls.append(f"http://127.0.0.1:{prom_port}/metrics")
        self.period = period
        self.stop_flag = threading.Event()
        self.requests = 0
        self.failures = 0
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        import base64
        import urllib.request
        auth = "Basic " + base64.b64encode(b"guest:guest").decode()
        while not self.stop_flag.is_set():
            for u in self.urls:
                try:
                    req = urllib.request.Request(u, headers={"Authorization": auth})
                    with urllib.request.urlopen(req, timeout=10) as r:
                        r.read()
                    self.requests += 1
                except Exception:
                    self.failures += 1
            self.stop_flag.wait(self.period)

    def stop(self):
        self.stop_flag.set()
        self.thread.join(timeout=15)


class Warren:
    name = "warren"

    def __init__(self, binary, logdir, management=False, tls=None):
        self.binary = binary
        self.logdir = logdir
        self.tls = tls
        self.proc = None
        self.crashes = []
        # --warren-management: serve the HTTP API and poll it as a page does.
        self.management = management
        self.poller = None

    def start(self):
        self.tmp = tempfile.mkdtemp(prefix="warren-bench-")
        self.port = free_port()
        self.logfile = self.logdir / f"warren-{int(time.time())}-{self.port}.log"
        if self.management:
            self.mgmt_port, self.prom_port = free_port(), free_port()
            http = ["--management-port", str(self.mgmt_port),
                    "--prometheus-port", str(self.prom_port)]
        else:
            http = ["--management-port", "0", "--prometheus-port", "0"]
        if self.tls:
            self.tls_port = free_port()
            http += ["--ssl-port", str(self.tls_port), "--ssl-certfile", str(self.tls.cert),
                     "--ssl-keyfile", str(self.tls.key)]
        self.cmd = [str(self.binary), "serve", "--bind", "127.0.0.1", "--port", str(self.port),
                    "--data-dir", self.tmp, "--log", "warn", *http]
        self.proc = subprocess.Popen(self.cmd, stdout=open(self.logfile, "w"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 30
        while not (port_open(self.port) and (not self.tls or port_open(self.tls_port))):
            if self.proc.poll() is not None or time.time() > deadline:
                die(f"Warren did not start; see {self.logfile}")
            time.sleep(0.1)
        self.pid = self.proc.pid
        if self.management:
            self.poller = PagePoller(self.mgmt_port, self.prom_port)

    @property
    def uri(self):
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    @property
    def tls_uri(self):
        return self.tls.uri(self.tls_port)

    def alive(self):
        # A panicked shard thread can leave the process up but half dead.
        if self.proc is None or self.proc.poll() is not None:
            return False
        return "panicked" not in self.logfile.read_text(errors="replace")

    def stop(self):
        if self.poller:
            self.poller.stop()
            log(f"  management poller: {self.poller.requests} requests, "
                f"{self.poller.failures} failed")
            self.poller = None
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def version(self):
        return try_run([str(self.binary), "--version"])


class RabbitMQ:
    """A private RabbitMQ node: own node name, AMQP/dist/epmd ports, data,
    logs, config and (empty) plugin list, so a system node is untouched."""
    name = "rabbitmq"

    def __init__(self, logdir, tls=None):
        self.logdir = logdir
        self.tls = tls
        self.proc = None
        self.crashes = []
        lib = Path("/usr/lib/rabbitmq/bin")
        # Debian's /usr/sbin wrappers switch to the rabbitmq user; the real
        # scripts run as whoever we are, with our environment.
        self.server = str(lib / "rabbitmq-server") if (lib / "rabbitmq-server").exists() \
            else shutil.which("rabbitmq-server")
        self.ctl = str(lib / "rabbitmqctl") if (lib / "rabbitmqctl").exists() \
            else shutil.which("rabbitmqctl")

    def start(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="rabbitmq-bench-"))
        for d in ("home", "mnesia", "log"):
            (self.tmp / d).mkdir()
        self.port, self.dist_port, self.epmd_port = free_port(), free_port(), free_port()
        self.node = f"warrenbench{os.getpid()}@localhost"
        (self.tmp / "enabled_plugins").write_text("[].\n")
        conf = "loopback_users.guest = true\nlisteners.tcp.default = %d\n" % self.port
        if self.tls:
            self.tls_port = free_port()
            conf += ("listeners.ssl.default = %d\n"
                     "ssl_options.cacertfile = %s\n"
                     "ssl_options.certfile = %s\n"
                     "ssl_options.keyfile = %s\n"
                     "ssl_options.verify = verify_none\n"
                     "ssl_options.fail_if_no_peer_cert = false\n"
                     "ssl_options.versions.1 = tlsv1.3\n"
                     "ssl_options.versions.2 = tlsv1.2\n"
                     % (self.tls_port, self.tls.ca, self.tls.cert, self.tls.key))
        (self.tmp / "rabbitmq.conf").write_text(conf)
        self.env = dict(os.environ)
        self.env.update({
            "HOME": str(self.tmp / "home"),  # own Erlang cookie
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),  # own epmd, killed at the end
            "RABBITMQ_MNESIA_BASE": str(self.tmp / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.tmp / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.tmp / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.tmp / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.tmp / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.tmp / "pid"),
        })
        self.logfile = self.logdir / f"rabbitmq-{int(time.time())}-{self.port}.log"
        self.proc = subprocess.Popen([self.server], env=self.env, stdout=open(self.logfile, "w"),
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     cwd=self.tmp)
        deadline = time.time() + 120
        while True:
            if self.proc.poll() is not None:
                die(f"RabbitMQ exited during startup; see {self.logfile}")
            r = subprocess.run([self.ctl, "-n", self.node, "await_startup", "--timeout", "10"],
                               env=self.env, capture_output=True, text=True)
            if r.returncode == 0 and port_open(self.port) and \
                    (not self.tls or port_open(self.tls_port)):
                break
            if time.time() > deadline:
                self.stop()
                die(f"RabbitMQ did not start in 120 s; see {self.logfile}")
            time.sleep(1)
        self.pid = int((self.tmp / "pid").read_text().strip())

    @property
    def uri(self):
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    @property
    def tls_uri(self):
        return self.tls.uri(self.tls_port)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def status(self):
        out = try_run([self.ctl, "-n", self.node, "status", "--formatter", "json"], env=self.env)
        try:
            return json.loads(out) if out else {}
        except json.JSONDecodeError:
            return {}

    def stop(self):
        if self.proc and self.proc.poll() is None:
            subprocess.run([self.ctl, "-n", self.node, "stop"], env=self.env,
                           capture_output=True, timeout=120)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for f in (self.tmp / "log").glob("*.log"):
            shutil.copy(f, self.logdir / f"{self.logfile.stem}-{f.name}")
        # Our own epmd (on our own port) outlives the node: stop it.
        if shutil.which("epmd"):
            subprocess.run(["epmd", "-port", str(self.epmd_port), "-kill"], env=self.env,
                           capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)


# ---------------------------------------------------------------- machinery

def ensure_rabbitmq():
    if shutil.which("rabbitmq-server") or Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists():
        return
    log("rabbitmq-server not found: installing it with apt")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(sudo + ["apt-get", "update"], check=True, env=env)
    subprocess.run(sudo + ["apt-get", "install", "-y", "rabbitmq-server"], check=True, env=env)


def target_dir():
    meta = json.loads(run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT))
    return Path(meta["target_directory"])


def build(warren_bin=None):
    """Builds warren-perf and, unless `warren_bin` names a build to measure
    instead (an earlier commit's, for a before/after run), Warren."""
    packages = ["-p", "warren-perf"] if warren_bin else ["-p", "warren", "-p", "warren-perf"]
    log(f"building {'warren-perf' if warren_bin else 'Warren and warren-perf'} (release)")
    subprocess.run(["cargo", "build", "--release", *packages], cwd=ROOT, check=True)
    t = target_dir() / "release"
    if warren_bin and not Path(warren_bin).is_file():
        die(f"--warren-bin {warren_bin}: no such file")
    return Path(warren_bin) if warren_bin else t / "warren", t / "warren-perf"


def machine_info(rabbit):
    def first(path, key):
        try:
            for line in open(path):
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return None

    st = rabbit.status()
    sha = try_run(["git", "rev-parse", "HEAD"], cwd=ROOT)
    dirty = bool(try_run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT))
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "git_sha": sha,
        "git_dirty": dirty,
        "git_branch": try_run(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=ROOT),
        "cpus": os.cpu_count(),
        "cpus_allowed": len(os.sched_getaffinity(0)),
        "cpu_model": first("/proc/cpuinfo", "model name"),
        "kernel": platform.release(),
        "os": try_run(["sh", "-c", ". /etc/os-release && echo \"$PRETTY_NAME\""]),
        "ram_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "rustc": try_run(["rustc", "--version"]),
        "rabbitmq_version": st.get("rabbitmq_version"),
        "erlang_version": st.get("erlang_version"),
        "python": platform.python_version(),
    }


class Bench:
    def __init__(self, args):
        self.args = args
        self.commands = []
        self.results = {}  # (scenario id, broker) -> list of result dicts
        self.failures = []
        self.notes = set()

    def record(self, cmd):
        self.commands.append(" ".join(shlex.quote(str(c)) for c in cmd))

    def perf_run(self, sc, broker, rnd):
        a = self.args
        tag = f"{sc['id']}-{broker.name}-r{rnd}"
        out = self.raw / f"{tag}.json"
        secs = (a.latency_seconds if sc["kind"] == "latency" else a.seconds)
        uri = broker.tls_uri if sc.get("tls") else broker.uri
        cmd = [self.perf, "--uri", uri, *sc["args"], "--duration", str(secs),
               "--queue-pattern", f"bench-{sc['id']}-%d", "--cleanup", "--json", out,
               "--label", f"{sc['id']} {broker.name} round {rnd}"]
        self.record(cmd)
        cpu0 = cpu_seconds(broker.pid)
        with open(self.raw / f"{tag}.log", "w") as lf:
            try:
                rc = subprocess.run([str(c) for c in cmd], stdout=lf, stderr=subprocess.STDOUT,
                                    timeout=secs + 300).returncode
            except subprocess.TimeoutExpired:
                rc = "nothing (killed after a timeout)"
        if rc != 0 or not out.exists():
            self.fail(sc, broker, rnd, f"warren-perf exited {rc}; see raw/{tag}.log")
            return None
        res = json.loads(out.read_text())
        # Set-up and clean-up included: both are small beside the run.
        res["broker_cpu_seconds"] = cpu_seconds(broker.pid) - cpu0
        res["broker"] = broker.name
        res["scenario"] = sc["id"]
        res["round"] = rnd
        out.write_text(json.dumps(res, indent=2) + "\n")
        return res

    def idle_run(self, sc, broker, rnd):
        """RSS per idle connection on a freshly started broker."""
        tag = f"{sc['id']}-{broker.name}-r{rnd}"
        log(f"  restarting {LABEL[broker.name]} for a clean RSS baseline")
        broker.stop()
        broker.start()
        n = int(sc["args"][sc["args"].index("--connections") + 1])
        # One fd per connection in each broker (and in the generator): stay
        # inside the limit they inherit (and say so in the summary).
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if n + 1000 > limit:
            n = (limit - 1000) // 1000 * 1000
            self.notes.add(f"S8 opened {n:,} connections, not 10,000: RLIMIT_NOFILE is {limit:,}"
                           " here.")
        time.sleep(3)
        before = rss_kib(broker.pid)
        cmd = [self.perf, "idle", "--uri", broker.uri, "--connections", n, "--hold", "600"]
        self.record(cmd)
        lf = open(self.raw / f"{tag}.log", "w")
        p = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=lf, text=True)
        t0 = time.time()
        line = p.stdout.readline()
        open_s = time.time() - t0
        if not line.startswith("READY"):
            p.kill()
            p.wait()
            self.fail(sc, broker, rnd, f"idle connections failed; see raw/{tag}.log")
            return None
        time.sleep(10)  # let the broker settle (Erlang GC and hibernation)
        after = rss_kib(broker.pid)
        p.send_signal(signal.SIGKILL)
        p.wait()
        lf.close()
        res = {
            "tool": "bench-vs-rabbitmq idle", "broker": broker.name, "scenario": sc["id"],
            "round": rnd, "connections": n, "rss_before_kib": before, "rss_after_kib": after,
            "kib_per_connection": (after - before) / n, "open_seconds": open_s,
            "pid": broker.pid,
        }
        (self.raw / f"{tag}.json").write_text(json.dumps(res, indent=2) + "\n")
        return res

    def restart_for_baseline(self, broker):
        log(f"  restarting {LABEL[broker.name]} for a clean RSS baseline")
        broker.stop()
        broker.start()
        time.sleep(3)

    def perf_cmd(self, cmd, tag, timeout):
        """Runs warren-perf with its output in raw/<tag>.log; its exit status
        (or a sentence on a timeout)."""
        self.record(cmd)
        with open(self.raw / f"{tag}.log", "w") as lf:
            try:
                return subprocess.run([str(c) for c in cmd], stdout=lf, stderr=subprocess.STDOUT,
                                      timeout=timeout).returncode
            except subprocess.TimeoutExpired:
                return f"nothing (killed after {timeout:.0f} s)"

    def manyconn_run(self, sc, broker, rnd):
        """S10: many rate-limited publisher and consumer connections
        (warren-perf --poll) on a freshly started broker; broker CPU and
        RSS over the steady phase, between warren-perf's STEADY and END
        markers."""
        a = self.args
        tag = f"{sc['id']}-{broker.name}-r{rnd}"
        out = self.raw / f"{tag}.json"
        n, rate, secs = a.s10_conns, a.s10_rate, a.s10_duration
        self.restart_for_baseline(broker)
        # One fd per connection (2n of them) in the broker and in
        # warren-perf, plus the admin connection, files and some slack.
        need = 2 * n + 200
        for who, lim in (("warren-perf", resource.getrlimit(resource.RLIMIT_NOFILE)[0]),
                         (LABEL[broker.name], nofile_limit(broker.pid))):
            if lim is not None and lim < need:
                self.fail(sc, broker, rnd, f"{who} may open {lim:,} files; {2 * n:,} connections"
                          f" need about {need:,} (raise ulimit -Hn)")
                return None
        before = rss_kib(broker.pid)
        cmd = [self.perf, "--uri", broker.uri, "--poll", "--producers", n, "--consumers", n,
               "--queues", n, "--rate", rate, *sc["args"], "--duration", secs, "--markers",
               "--queue-pattern", f"bench-{sc['id']}-%d", "--cleanup", "--json", out,
               "--label", f"{sc['id']} {broker.name} round {rnd}"]
        self.record(cmd)
        import threading
        marks = {}
        cpu0 = cpu_seconds(broker.pid)
        lf = open(self.raw / f"{tag}.log", "w")
        p = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=lf, text=True)

        def read_markers():
            sampler = None
            for line in p.stdout:
                word = line.strip()
                try:
                    if word == "STEADY" and "steady" not in marks:
                        marks["steady"] = (time.time(), cpu_seconds(broker.pid))
                        sampler = RssSampler(broker.pid)
                    elif word == "END" and sampler and "end" not in marks:
                        marks["end"] = (time.time(), cpu_seconds(broker.pid))
                        marks["rss_max"] = sampler.stop()
                        sampler = None
                except OSError as e:  # the broker is gone
                    marks["error"] = repr(e)
                lf.write(line)
                lf.flush()
            if sampler:
                sampler.stop()

        reader = threading.Thread(target=read_markers, daemon=True)
        reader.start()
        # Opening 2n connections takes a while on a slow broker.
        timeout = secs + 300 + n / 10
        try:
            rc = p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            rc = f"nothing (killed after {timeout:.0f} s)"
        reader.join(timeout=10)
        lf.close()
        if rc != 0 or not out.exists():
            self.fail(sc, broker, rnd, f"warren-perf exited {rc}; see raw/{tag}.log")
            return None
        if "end" not in marks:
            self.fail(sc, broker, rnd, f"no STEADY/END markers from warren-perf "
                      f"({marks.get('error', 'none seen')}); see raw/{tag}.log")
            return None
        res = json.loads(out.read_text())
        (t_s, c_s), (t_e, c_e) = marks["steady"], marks["end"]
        sent, received = res["sent"], res["received"]
        steady_cpu = c_e - c_s
        res.update({
            "broker": broker.name, "scenario": sc["id"], "round": rnd, "pid": broker.pid,
            # The whole run (connections opened and closed included) ...
            "broker_cpu_seconds": cpu_seconds(broker.pid) - cpu0,
            # ... and the steady phase only, which the summary reports.
            "broker_cpu_seconds_steady": steady_cpu,
            "steady_wall_seconds": t_e - t_s,
            "broker_cpu_percent_steady": steady_cpu / max(t_e - t_s, 1e-9) * 100,
            "broker_cpu_per_100k_msgs": steady_cpu / (sent / 1e5) if sent else None,
            "broker_rss_before_kib": before,
            "broker_rss_max_kib": marks["rss_max"],
            "broker_nofile_limit": nofile_limit(broker.pid),
            "target_rate": n * rate,
        })
        # Is the broker keeping up? Everything sent in the steady phase must
        # have been delivered (warren-perf waits up to 2 s for stragglers),
        # and the generator must have sent what its schedule asked for.
        due = n * rate * res["poll"]["steady_seconds"]
        problems = []
        if received < 0.99 * sent:
            problems.append(f"delivered {received:,} of {sent:,} sent")
        if sent < 0.95 * due:
            problems.append(f"sent {sent:,} of {due:,.0f} due")
        res["keeping_up"] = not problems
        if problems:
            self.fail(sc, broker, rnd, "not keeping up: " + "; ".join(problems))
        out.write_text(json.dumps(res, indent=2) + "\n")
        return res

    def backlog_run(self, sc, broker, rnd):
        """S11: on a freshly started broker, publish N messages (confirmed)
        into one queue with no consumer, measure the RSS the backlog adds,
        then drain it with one fast consumer."""
        a = self.args
        tag = f"{sc['id']}-{broker.name}-r{rnd}"
        n = a.s11_count
        pid = lambda: broker.pid  # noqa: E731 (a restart changes it)
        self.restart_for_baseline(broker)
        before, before_anon = rss_kib(pid()), status_kib(pid(), "RssAnon")
        common = ["--uri", broker.uri, "--queues", "1", "--queue-pattern",
                  f"bench-{sc['id']}-%d", *sc["args"]]
        timeout = 600 + n / 1000
        fill_out = self.raw / f"{tag}-fill.json"
        fill = [self.perf, *common, "--producers", "1", "--consumers", "0", "--count", n,
                "--confirm", "5000", "--json", fill_out,
                "--label", f"{sc['id']} fill {broker.name} round {rnd}"]
        cpu0 = cpu_seconds(pid())
        sampler = RssSampler(pid(), period=0.5)
        rc = self.perf_cmd(fill, f"{tag}-fill", timeout)
        peak = sampler.stop()
        cpu1 = cpu_seconds(pid())
        fres = json.loads(fill_out.read_text()) if rc == 0 and fill_out.exists() else None
        if fres is None or fres["confirmed"] != n or fres["nacked"]:
            why = (f"fill: warren-perf exited {rc}" if fres is None else
                   f"fill: {fres['confirmed']:,} of {n:,} confirmed, {fres['nacked']:,} nacked")
            self.fail(sc, broker, rnd, f"{why}; see raw/{tag}-fill.log")
            self.restart_for_baseline(broker)  # a fresh data dir: no backlog left
            return None
        time.sleep(5)  # let the broker settle (Erlang GC)
        after, after_anon = rss_kib(pid()), status_kib(pid(), "RssAnon")
        drain_out = self.raw / f"{tag}-drain.json"
        drain = [self.perf, *common, "--producers", "0", "--consumers", "1", "--no-purge",
                 "--expect", n, "--prefetch", "5000", "--multi-ack-every", "1000", "--cleanup",
                 "--json", drain_out, "--label", f"{sc['id']} drain {broker.name} round {rnd}"]
        cpu2 = cpu_seconds(pid())
        rc = self.perf_cmd(drain, f"{tag}-drain", timeout)
        cpu3 = cpu_seconds(pid())
        dres = json.loads(drain_out.read_text()) if rc == 0 and drain_out.exists() else None
        drained = dres is not None and dres["received"] >= n and not dres.get("expect_stalled")
        res = {
            "tool": "bench-vs-rabbitmq backlog", "broker": broker.name, "scenario": sc["id"],
            "round": rnd, "pid": pid(), "count": n, "size": 16,
            "persistent": bool(sc.get("persistent")),
            "rss_before_kib": before, "rss_after_kib": after, "rss_peak_kib": max(peak, after),
            "rss_anon_before_kib": before_anon, "rss_anon_after_kib": after_anon,
            "bytes_per_message": (after - before) * 1024 / n,
            "fill_seconds": fres["run_seconds"],
            "fill_rate": n / fres["run_seconds"] if fres["run_seconds"] > 0 else None,
            "drain_received": dres["received"] if dres else None,
            "drain_seconds": (dres["received"] / dres["consume_rate"]
                              if drained and dres["consume_rate"] else None),
            "drain_rate": dres["consume_rate"] if drained else None,
            "broker_cpu_fill_seconds": cpu1 - cpu0,
            "broker_cpu_drain_seconds": cpu3 - cpu2,
            "broker_cpu_per_million": (cpu1 - cpu0 + cpu3 - cpu2) / (n / 1e6) if drained
            else None,
            "fill_json": fill_out.name, "drain_json": drain_out.name,
        }
        (self.raw / f"{tag}.json").write_text(json.dumps(res, indent=2) + "\n")
        if not drained:
            got = f"{dres['received']:,} of {n:,} received" if dres else f"warren-perf exited {rc}"
            self.fail(sc, broker, rnd, f"drain: {got}; see raw/{tag}-drain.log")
            self.restart_for_baseline(broker)
        return res

    def fail(self, sc, broker, rnd, why):
        log(f"  FAILED {sc['id']} on {LABEL[broker.name]} round {rnd}: {why}")
        self.failures.append(f"{sc['id']} {LABEL[broker.name]} round {rnd}: {why}")

    def main(self):
        a = self.args
        ensure_rabbitmq()
        warren_bin, self.perf = build(a.warren_bin)
        sha = (try_run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT) or "nogit")
        self.out = Path(a.out) if a.out else \
            ROOT / "bench-results" / f"{datetime.date.today().isoformat()}-{sha}"
        self.raw = self.out / "raw"
        self.raw.mkdir(parents=True, exist_ok=True)
        logs = self.out / "broker-logs"
        logs.mkdir(exist_ok=True)
        # Enough file descriptors for S8 in the brokers we start.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        try:
            want = max(hard, 65536)
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 10000 + 1000:
            log("note: RLIMIT_NOFILE is below 11,000: S8 will open fewer connections")

        wanted = [s.strip() for s in a.scenarios.split(",")] if a.scenarios else None
        scs = [s for s in SCENARIOS
               if not wanted or s["id"] in wanted or s["id"].rstrip("ab") in wanted]
        if not scs:
            die(f"no scenario matches {a.scenarios!r}")
        # S10's and S11's titles carry their sizes.
        params = dict(conns=a.s10_conns, rate=a.s10_rate, secs=a.s10_duration,
                      total=a.s10_conns * a.s10_rate, count=a.s11_count)
        scs = [dict(s, title=s["title"].format(**params))
               if s["kind"] in ("manyconn", "backlog") else s for s in scs]
        tls = TlsFiles() if any(s.get("tls") for s in scs) else None
        brokers = {"warren": Warren(warren_bin, logs, management=a.warren_management, tls=tls),
                   "rabbitmq": RabbitMQ(logs, tls=tls)}
        set_flag(self.out)
        try:
            for b in brokers.values():
                log(f"starting {LABEL[b.name]}")
                b.start()
                log(f"  {LABEL[b.name]} on 127.0.0.1:{b.port} (pid {b.pid}, open files limit "
                    f"{nofile_limit(b.pid)})")
            self.machine = machine_info(brokers["rabbitmq"])
            self.machine["warren_version"] = brokers["warren"].version()
            # With --warren-bin the checkout's sha is not what was measured.
            self.machine["warren_bin"] = str(warren_bin)
            self.machine["warren_command"] = " ".join(brokers["warren"].cmd)
            self.machine["rabbitmq_node"] = brokers["rabbitmq"].node
            self.machine["nofile_limit"] = {
                "bench": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                **{n: nofile_limit(b.pid) for n, b in brokers.items()}}
            (self.out / "machine.json").write_text(json.dumps(self.machine, indent=2) + "\n")
            for rnd in range(1, a.rounds + 1):
                for i, sc in enumerate(scs):
                    order = BROKERS if (rnd + i) % 2 else BROKERS[::-1]
                    for bn in order:
                        b = brokers[bn]
                        log(f"round {rnd}/{a.rounds} {sc['id']} on {LABEL[bn]}: {sc['title']}")
                        run_one = {"idle": self.idle_run, "manyconn": self.manyconn_run,
                                   "backlog": self.backlog_run}.get(sc["kind"], self.perf_run)
                        res = run_one(sc, b, rnd)
                        if res:
                            self.results.setdefault((sc["id"], bn), []).append(res)
                            log("  " + one_line(res))
                        if not b.alive():
                            self.fail(sc, b, rnd, f"{LABEL[bn]} died or panicked; see "
                                      f"broker-logs/{b.logfile.name}")
                            b.crashes.append(f"{sc['id']} round {rnd}")
                            b.stop()
                            b.start()
                        try:
                            self.write_outputs(scs, brokers)
                        except Exception as e:  # never lose a run to a report bug
                            log(f"  (could not write the summary yet: {e!r})")
        finally:
            for b in brokers.values():
                log(f"stopping {LABEL[b.name]}")
                b.stop()
            clear_flag()
        self.write_outputs(scs, brokers)
        if tls:
            shutil.rmtree(tls.dir, ignore_errors=True)
        if not a.no_chart:
            chart(self, scs)
        log(f"results in {self.out}")

    def write_outputs(self, scs, brokers):
        (self.out / "commands.txt").write_text(
            "# one command for the whole run:\n"
            + " ".join(shlex.quote(x) for x in [str(Path(sys.argv[0])), *sys.argv[1:]])
            + "\n\n# brokers:\n"
            + f"{' '.join(brokers['warren'].cmd) if hasattr(brokers['warren'], 'cmd') else ''}\n"
            + f"RabbitMQ: {brokers['rabbitmq'].server} with RABBITMQ_* settings for node "
            + f"{getattr(brokers['rabbitmq'], 'node', '?')} (see machine.json)\n"
            + "\n# every load run, in order:\n" + "\n".join(self.commands) + "\n")
        (self.out / "summary.md").write_text(summary(self, scs))


def one_line(r):
    if "bytes_per_message" in r:
        drain = f"{r['drain_rate']:,.0f}/s" if r.get("drain_rate") else "incomplete"
        return (f"{r['bytes_per_message']:,.1f} B of RSS per queued message "
                f"({r['rss_before_kib']} -> {r['rss_after_kib']} KiB),"
                f" fill {r['fill_rate']:,.0f}/s, drain {drain}")
    if "broker_cpu_per_100k_msgs" in r:
        lat = r.get("latency_us") or {}
        cpu = r["broker_cpu_per_100k_msgs"]
        return (f"delivered {r['consume_rate']:,.0f}/s of {r['publish_rate']:,.0f}/s sent"
                f"{'' if r['keeping_up'] else ' (NOT KEEPING UP)'}, broker CPU "
                f"{cpu if cpu is None else round(cpu, 3)} s/100k msgs "
                f"({r['broker_cpu_percent_steady']:.0f}% of a core), RSS max "
                f"{r['broker_rss_max_kib'] / 1024:,.0f} MiB, latency p50 {lat.get('p50', 0):,.0f}"
                f" p99 {lat.get('p99', 0):,.0f} us")
    if "kib_per_connection" in r:
        return (f"{r['kib_per_connection']:.1f} KiB/connection "
                f"({r['rss_before_kib']} -> {r['rss_after_kib']} KiB)")
    s = f"published {r['publish_rate']:,.0f}/s, consumed {r['consume_rate']:,.0f}/s"
    lat = r.get("latency_us")
    if lat:
        s += f", latency p50 {lat['p50']:,.0f} p99 {lat['p99']:,.0f} p99.9 {lat['p99_9']:,.0f} us"
    return s


# ------------------------------------------------------------------ summary

def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, unit=""):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}{unit}"
    return f"{v:,.1f}{unit}"


def metrics(sc):
    """(key, label, getter, higher_is_better) per row of the summary."""
    if sc["kind"] == "idle":
        return [("kib", "broker RSS per idle connection (KiB)",
                 lambda r: r["kib_per_connection"], False)]
    lat = lambda k: (lambda r: r["latency_us"][k] if r.get("latency_us") else None)  # noqa: E731
    if sc["kind"] == "manyconn":
        return [("cpu", "broker CPU s per 100k messages, steady phase (lower is better)",
                 lambda r: r.get("broker_cpu_per_100k_msgs"), False),
                ("rss", "broker RSS, max over the steady phase, MiB (lower is better)",
                 lambda r: r["broker_rss_max_kib"] / 1024, False),
                ("p50", "latency p50 (us, lower is better)", lat("p50"), False),
                ("p99", "latency p99 (us, lower is better)", lat("p99"), False),
                ("con", "delivered msg/s", lambda r: r["consume_rate"], True)]
    if sc["kind"] == "backlog":
        return [("bpm", "broker RSS per queued message, bytes (lower is better)",
                 lambda r: r["bytes_per_message"], False),
                ("rss", "broker RSS with the backlog, MiB (lower is better)",
                 lambda r: r["rss_after_kib"] / 1024, False),
                ("fill", "fill msg/s (one publisher, confirms)", lambda r: r["fill_rate"], True),
                ("drain", "drain msg/s", lambda r: r.get("drain_rate"), True),
                ("cpm", "broker CPU s per million, fill + drain (lower is better)",
                 lambda r: r.get("broker_cpu_per_million"), False)]
    rows = [("pub", "published msg/s", lambda r: r["publish_rate"], True),
            ("con", "consumed msg/s", lambda r: r["consume_rate"], True)]
    if "--confirm" in sc["args"]:
        rows.insert(1, ("cnf", "confirmed msg/s", lambda r: r["confirm_rate"], True))
    if sc["kind"] == "latency":
        rows += [("p50", "latency p50 (us)", lat("p50"), False),
                 ("p99", "latency p99 (us)", lat("p99"), False),
                 ("p999", "latency p99.9 (us)", lat("p99_9"), False)]
    size = int(sc["args"][sc["args"].index("--size") + 1]) if "--size" in sc["args"] else 0
    if size >= 1024:
        rows.append(("mbs", "consumed MiB/s", lambda r: r["consume_rate"] * size / 2**20, True))
        rows.append(("cpg", "broker CPU s per GiB consumed",
                     lambda r: per(r, r["received"] * size / 2**30), False))
    elif sc["kind"] == "throughput":
        rows.append(("cpm", "broker CPU s per million consumed",
                     lambda r: per(r, r["received"] / 1e6), False))
    return rows


def per(r, amount):
    """Broker CPU seconds per `amount` (None for runs from before it was
    measured, or when nothing moved)."""
    cpu = r.get("broker_cpu_seconds")
    return cpu / amount if cpu is not None and amount > 0 else None


def table_rows(bench, sc):
    out = []
    for key, label, get, higher in metrics(sc):
        vals = {}
        for b in BROKERS:
            rs = bench.results.get((sc["id"], b), [])
            vs = [get(r) for r in rs]
            vs = [v for v in vs if v is not None]
            vals[b] = (med(vs), min(vs) if vs else None, max(vs) if vs else None, len(vs))
        w, r = vals["warren"][0], vals["rabbitmq"][0]
        ratio = None
        if w and r and w > 0 and r > 0:
            ratio = (w / r) if higher else (r / w)
        out.append((key, label, vals, ratio, higher))
    return out


def summary(bench, scs):
    m = getattr(bench, "machine", {})
    a = bench.args
    lines = [
        f"# Warren vs RabbitMQ: {m.get('date', '')}",
        "",
        f"Git {m.get('git_sha', '?')}{' (uncommitted changes)' if m.get('git_dirty') else ''}"
        f" on branch {m.get('git_branch', '?')}. {a.rounds} round(s), brokers alternating;"
        f" throughput runs {a.seconds} s, latency runs {a.latency_seconds} s"
        f"{' (--quick)' if a.quick else ''}. Figures are medians over the rounds,"
        " with the range (min-max) below them.",
        "",
        "Ratio: Warren / RabbitMQ for rates; for latency, memory and CPU (lower is better)"
        " RabbitMQ / Warren, so above 1 always means Warren is that many times better.",
        "",
        "| scenario | metric | Warren | RabbitMQ | ratio |",
        "|---|---|---:|---:|---:|",
    ]
    for sc in scs:
        first = True
        for key, label, vals, ratio, higher in table_rows(bench, sc):
            name = f"**{sc['id']}** {sc['title']}" if first else ""
            first = False
            cells = []
            for b in BROKERS:
                v, lo, hi, n = vals[b]
                cell = fmt(v)
                if n > 1:
                    cell += f"<br><sub>{fmt(lo)}-{fmt(hi)}</sub>"
                cells.append(cell)
            rt = f"{ratio:.2f}x" if ratio else "-"
            lines.append(f"| {name} | {label} | {cells[0]} | {cells[1]} | {rt} |")
    lines += [
        "",
        "## Notes",
        "",
        "- Load generator: `warren-perf` (tools/warren-perf), one process on the same machine as"
        " the brokers, blocking sockets, one thread per connection; it shares the CPUs with the"
        " broker under test. The other broker is started but idle during a run.",
        "- Published = messages written by the producers per second; consumed = deliveries"
        " received by all consumers per second (a fanout to 10 queues counts 10 deliveries per"
        " message). Runs without confirms publish flat out, so a broker whose consumers fall"
        " behind builds a backlog: compare the consumed rate, and read latency there as queueing"
        " delay, not broker latency. S9 (fixed rates) is the latency comparison.",
        "- **S3 durability.** Warren (default `--sync fsync`) confirms a persistent message only"
        " after an fdatasync covering its record in the segment log (group commit). RabbitMQ's"
        " classic queue writes persistent messages to its message store; per its documentation,"
        " confirms for them are sent once persisted, with fsyncs batched (or earlier, when every"
        " queue has already delivered and had the message acked).",
        "- Latency is publish-to-delivery, from a timestamp in the first 8 bytes of each body"
        " (one clock, one process), recorded in an HDR histogram.",
        "- S8 restarts the broker first, measures its RSS (VmRSS of the Warren process, of"
        " RabbitMQ's beam.smp), opens 10,000 connections with one channel each,"
        " waits 10 s and measures again. RabbitMQ runs with no plugins (no management).",
        "- Broker CPU: user + system seconds of the broker process (all threads; RabbitMQ's"
        " beam.smp) over the whole load run, set-up and clean-up included, per million messages"
        " or per GiB consumed. warren-perf's own CPU is not in it.",
        "- T1-T7b are S1, S2, S7a and S7b over AMQPS: both brokers use the same throwaway"
        " certificate (P-256), offer TLS 1.3 and 1.2 and ask no client certificate; warren-perf"
        " uses rustls. The negotiated version and cipher suite are in each raw JSON (`tls`).",
        "- The machine is shared and noisy: compare medians and ratios from the same run only.",
        "",
    ]
    ids = {sc["id"] for sc in scs}
    if "S10" in ids:
        lines[-1:-1] = [
            f"- **S10** restarts the broker, then warren-perf `--poll` opens {a.s10_conns:,}"
            f" consumer connections (manual acks, prefetch 100, one queue each) and {a.s10_conns:,}"
            f" publisher connections, all driven by one epoll thread; each publisher sends"
            f" {a.s10_rate:g} msg/s (16 B) to its own queue, phases staggered so the"
            f" {a.s10_conns * a.s10_rate:,.0f} msg/s arrive evenly, for {a.s10_duration:g} s."
            " Broker CPU is utime + stime from /proc/PID/stat between warren-perf's STEADY and"
            " END markers (every connection open, until publishing stops) per 100k messages"
            " published in it; RSS is the highest VmRSS sampled every 0.25 s over the same phase."
            " A run counts as failed unless at least 99% of what was sent was delivered.",
        ]
    if ids & {"S11a", "S11b"}:
        lines[-1:-1] = [
            f"- **S11** restarts the broker, measures its VmRSS, publishes {a.s11_count:,}"
            " 16 B messages (one publisher, confirms, window 5,000; S11b persistent into a durable"
            " queue) into one queue with no consumer, waits 5 s and measures again: RSS per queued"
            " message = (after - before) / count. Then one consumer (prefetch 5,000, multi-ack"
            " every 1,000) drains the queue: drain msg/s = messages / time to the last delivery."
            " The raw JSON also has RssAnon and the peak RSS while filling.",
        ]
    lines[-1:-1] = [f"- {n}" for n in sorted(bench.notes)]
    if bench.failures:
        lines += ["## Failures", ""] + [f"- {f}" for f in bench.failures] + [""]
    lines += ["## Machine", ""]
    for k in ("cpu_model", "cpus", "cpus_allowed", "ram_gib", "kernel", "os", "rustc",
              "rabbitmq_version", "erlang_version", "warren_version", "git_sha"):
        lines.append(f"- {k}: {m.get(k)}")
    lines += ["", "Exact commands: `commands.txt`. Raw results: `raw/*.json` (logs beside them).",
              "Chart: `chart.png` / `chart.svg`.", ""]
    if (bench.out / "chart.png").exists() or not a.no_chart:
        lines.insert(2, "![throughput per scenario](chart.png)\n")
    return "\n".join(lines)


# -------------------------------------------------------------------- chart

def chart(bench, scs):
    venv = ROOT / "tools" / ".venv"
    py = venv / "bin" / "python"
    try:
        if not py.exists():
            log("creating tools/.venv for the chart (matplotlib)")
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        if subprocess.run([str(py), "-c", "import matplotlib"], capture_output=True).returncode:
            subprocess.run([str(py), "-m", "pip", "install", "-q", "matplotlib"], check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        log(f"no chart (cannot set up matplotlib: {e})")
        return
    data = {"throughput": [], "latency": [], "idle": [], "backlog": []}
    for sc in scs:
        rows = {k: (vals, ratio) for k, _, vals, ratio, _ in table_rows(bench, sc)}
        if sc["kind"] == "manyconn":
            for k, lbl in (("p50", "p50"), ("p99", "p99")):
                v, ratio = rows[k]
                data["latency"].append([f"{SHORT[sc['id']]} {lbl}", v["warren"][0],
                                        v["rabbitmq"][0], ratio])
        elif sc["kind"] == "backlog":
            v, ratio = rows["bpm"]
            data["backlog"].append([SHORT[sc["id"]], v["warren"][0], v["rabbitmq"][0], ratio])
            v, ratio = rows["drain"]
            data["throughput"].append([f"{SHORT[sc['id']]} drain", v["warren"][0],
                                       v["rabbitmq"][0], ratio])
        elif sc["kind"] == "throughput":
            # The end-to-end figure: what consumers received.
            v, ratio = rows["con"]
            data["throughput"].append([SHORT[sc["id"]], v["warren"][0], v["rabbitmq"][0], ratio])
        elif sc["kind"] == "latency":
            for k, lbl in (("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")):
                v, ratio = rows[k]
                data["latency"].append([f"{SHORT[sc['id']]} {lbl}", v["warren"][0], v["rabbitmq"][0],
                                        ratio])
        else:
            v, ratio = rows["kib"]
            data["idle"].append([SHORT[sc["id"]], v["warren"][0], v["rabbitmq"][0], ratio])
    spec = bench.out / "chart-data.json"
    spec.write_text(json.dumps({"data": data, "title": f"Warren vs RabbitMQ "
                                f"({bench.machine.get('cpus')} cores, {bench.args.rounds} rounds,"
                                f" medians) {bench.machine.get('git_sha', '')[:9]}"}, indent=1))
    r = subprocess.run([str(py), "-c", CHART_SCRIPT, str(spec), str(bench.out / "chart")],
                       capture_output=True, text=True)
    if r.returncode:
        log(f"chart failed: {r.stderr.strip()[-2000:]}")


CHART_SCRIPT = r'''
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
spec = json.load(open(sys.argv[1]))
d = spec["data"]
panels = [k for k in ("throughput", "latency", "idle", "backlog") if d.get(k)]
ratios = {"throughput": max(len(d["throughput"]), 1), "latency": max(len(d["latency"]), 1),
          "idle": 1.2, "backlog": max(len(d.get("backlog", [])), 1.2)}
fig, axes = plt.subplots(len(panels), 1, figsize=(10, 1.2 + 0.62 * sum(ratios[p] for p in panels) + 0.8 * len(panels)),
                         gridspec_kw={"height_ratios": [ratios[p] for p in panels]}, squeeze=False)
colors = {"Warren": "#d9622b", "RabbitMQ": "#7a7a7a"}
titles = {"throughput": "Consumed messages/s (higher is better)",
          "latency": "Publish-to-deliver latency, microseconds (lower is better)",
          "idle": "Broker memory per idle connection, KiB (lower is better)",
          "backlog": "Broker memory per queued message, bytes (lower is better)"}
for ax, p in zip(axes[:, 0], panels):
    rows = d[p][::-1]
    y = range(len(rows))
    h = 0.38
    for j, (name, idx) in enumerate((("RabbitMQ", 2), ("Warren", 1))):
        vals = [r[idx] or 0 for r in rows]
        ax.barh([i + (j - 0.5) * h for i in y], vals, height=h, color=colors[name], label=name)
    ax.set_yticks(list(y))
    ax.set_yticklabels([r[0] for r in rows])
    ax.set_xscale("log")
    ax.set_title(titles[p], loc="left", fontsize=11)
    ax.grid(axis="x", which="major", alpha=0.3)
    xmax = max([(r[1] or 0) for r in rows] + [(r[2] or 0) for r in rows] + [1])
    present = [v for r in rows for v in (r[1], r[2]) if v]
    ax.set_xlim(left=max(min(present) / 3 if present else 1, 0.1), right=xmax * 6)
    for i, r in zip(y, rows):
        if r[3]:
            better = r[3] >= 1
            ax.text(max(r[1] or 0, r[2] or 0) * 1.15, i, f"{r[3]:.2f}x",
                    va="center", fontsize=9, color="#1a7f37" if better else "#b42318",
                    fontweight="bold")
handles, labels = axes[0, 0].get_legend_handles_labels()
fig.legend(handles[::-1], labels[::-1], loc="upper right", fontsize=9, frameon=False)
fig.suptitle(spec["title"] + "\nratio = how many times better Warren is", fontsize=11)
fig.tight_layout(rect=(0, 0, 1, 0.97))
fig.savefig(sys.argv[2] + ".png", dpi=110)
fig.savefig(sys.argv[2] + ".svg")
'''


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="rounds per scenario and broker (3)")
    p.add_argument("--scenarios", help="comma-separated ids: S1..S12, T1..T7 (S5, S7, S9, S11,"
                   " T7 select both variants; S5a/S5b etc. one); default: all, S10 and S11"
                   " included")
    p.add_argument("--quick", action="store_true",
                   help="short runs: 5 s throughput, 8 s latency, 20 s S10, 1,000,000-message"
                        " S11 (default 10 s, 15 s, 60 s, 5,000,000)")
    p.add_argument("--seconds", type=float, help="seconds per throughput run")
    p.add_argument("--latency-seconds", type=float, help="seconds per latency run")
    p.add_argument("--s10-conns", type=int, default=1000, metavar="N",
                   help="S10: publisher connections, and as many consumer connections and"
                        " queues (1000)")
    p.add_argument("--s10-rate", type=float, default=20.0, metavar="MSG_S",
                   help="S10: messages/s per publisher (20)")
    p.add_argument("--s10-duration", type=float, metavar="SECONDS",
                   help="S10: seconds of steady load (60; 20 with --quick)")
    p.add_argument("--s11-count", type=int, metavar="N",
                   default=int(os.environ["BENCH_S11_COUNT"])
                   if os.environ.get("BENCH_S11_COUNT") else None,
                   help="S11: messages in each backlog (default $BENCH_S11_COUNT, else 5000000;"
                        " 1000000 with --quick)")
    p.add_argument("--out", help="output folder (default bench-results/<date>-<sha>)")
    p.add_argument("--no-chart", action="store_true", help="skip the matplotlib chart")
    p.add_argument("--warren-management", action="store_true",
                   help="Warren serves its management API and Prometheus endpoint, polled "
                        "every 5 s as an open overview page and a scraper do")
    p.add_argument("--warren-bin", metavar="PATH",
                   help="measure this Warren binary (e.g. an earlier commit's build) instead"
                        " of building the checkout's")
    p.add_argument("--redraw", metavar="RUN_DIR",
                   help="only redraw RUN_DIR/chart.png from its chart-data.json")
    a = p.parse_args()
    if a.redraw:
        d = Path(a.redraw)
        py = ROOT / "tools" / ".venv" / "bin" / "python"
        subprocess.run([str(py), "-c", CHART_SCRIPT, str(d / "chart-data.json"), str(d / "chart")],
                       check=True)
        return
    if a.seconds is None:
        a.seconds = 5.0 if a.quick else 10.0
    if a.latency_seconds is None:
        a.latency_seconds = 8.0 if a.quick else 15.0
    if a.s10_duration is None:
        a.s10_duration = 20.0 if a.quick else 60.0
    if a.s11_count is None:
        a.s11_count = 1_000_000 if a.quick else 5_000_000
    if a.rounds < 1:
        die("--rounds must be at least 1")
    if a.s10_conns < 1 or a.s10_rate <= 0 or a.s10_duration <= 0 or a.s11_count < 1:
        die("--s10-conns, --s10-rate, --s10-duration and --s11-count must be positive")
    # A plain `kill` still stops the brokers and removes the flag file.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    Bench(a).main()


if __name__ == "__main__":
    main()
