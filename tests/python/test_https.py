"""HTTPS for the management API and for Prometheus (`management.ssl.*`,
`prometheus.ssl.*`), and reloading every TLS listener's certificates
without a restart (`warren ctl reload_certificates`, SIGHUP).

The broker here serves the management API over HTTPS only (with
verify_peer and fail_if_no_peer_cert, so clients show a certificate),
Prometheus over HTTPS (no client certificate) beside its plain port, and
AMQPS. The certificates are made fresh by tests/fixtures/make-test-certs.sh.

Brokers of its own: Warren by default (so skipped with WARREN_TEST_URL);
with WARREN_TEST_TLS_BROKER=rabbitmq a private RabbitMQ node
(rabbitmq_node.py, plugins rabbitmq_management and rabbitmq_prometheus)
given the same certificate files and the same ssl_options.*,
management.ssl.* and prometheus.* keys. Warren's log lines are checked
against Warren only; the reload and start-up checks are Warren's own and
skipped there."""

import base64
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import pika
import pytest

from conftest import free_port, port_open
from rabbitmq_node import RabbitMQNode, RabbitMQNodeError, tls_broker_kind
from test_broker_process import warren_binary
from test_rabbitmqadmin import find_rabbitmqadmin

ON_RABBITMQ = tls_broker_kind() == "rabbitmq"
# Against Warren the tests start the binary, which WARREN_TEST_URL runs do not.
pytestmark = [] if ON_RABBITMQ else [pytest.mark.needs_warren_process]

HERE = os.path.dirname(os.path.abspath(__file__))
MAKE_CERTS = os.path.join(HERE, "..", "fixtures", "make-test-certs.sh")
SHARDS = os.environ.get("WARREN_SHARDS") or os.environ.get("WARREN_TEST_SHARDS", "3")
AUTH = "Basic " + base64.b64encode(b"guest:guest").decode()


def make_certs(d):
    subprocess.run(["bash", MAKE_CERTS, d], check=True)
    return d


class Broker:
    """The broker of the module's docstring: Warren, or with
    WARREN_TEST_TLS_BROKER=rabbitmq a private RabbitMQ node."""

    def __init__(self, d):
        self.dir = d
        self.certs = make_certs(os.path.join(d, "certs"))
        self.port, self.amqps_port = free_port(), free_port()
        self.mgmt_port, self.prom_port, self.prom_plain_port = free_port(), free_port(), free_port()
        self.proc = None
        self.node = None
        if ON_RABBITMQ:
            self._start_rabbitmq()
        else:
            self._start_warren()

    def tls_keys(self):
        """The TLS keys both brokers are given, word for word."""
        c = self.cert
        return (
            "listeners.ssl.default = 127.0.0.1:%d\n"
            "ssl_options.cacertfile = %s\n"
            "ssl_options.certfile = %s\n"
            "ssl_options.keyfile = %s\n"
            "ssl_options.verify = verify_peer\n"
            "ssl_options.fail_if_no_peer_cert = true\n"
            "management.ssl.port = %d\n"
            "management.ssl.ip = 127.0.0.1\n"
            "management.ssl.cacertfile = %s\n"
            "management.ssl.certfile = %s\n"
            "management.ssl.keyfile = %s\n"
            "management.ssl.verify = verify_peer\n"
            "management.ssl.fail_if_no_peer_cert = true\n"
            "management.ssl.versions.1 = tlsv1.3\n"
            "management.ssl.versions.2 = tlsv1.2\n"
            "prometheus.ssl.port = %d\n"
            "prometheus.ssl.ip = 127.0.0.1\n"
            "prometheus.ssl.certfile = %s\n"
            "prometheus.ssl.keyfile = %s\n"
            "prometheus.tcp.port = %d\n"
            "prometheus.tcp.ip = 127.0.0.1\n"
            % (self.amqps_port, c("ca.pem"), c("server.pem"), c("server.key"),
               self.mgmt_port, c("ca.pem"), c("server.pem"), c("server.key"),
               self.prom_port, c("server.pem"), c("server.key"), self.prom_plain_port))

    def _start_warren(self):
        d = self.dir
        self.data = os.path.join(d, "data")
        self.err_path = os.path.join(d, "stderr.log")
        self.conf = os.path.join(d, "warren.conf")
        with open(self.conf, "w") as f:
            f.write("listeners.tcp.default = 127.0.0.1:%d\n" % self.port
                    + self.tls_keys()
                    + "warren.data_dir = %s\n"
                      "warren.shards = %s\n" % (self.data, SHARDS))
        with open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen([warren_binary(), "serve", "--config", self.conf],
                                         stdout=subprocess.DEVNULL, stderr=err,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        ports = [self.port, self.amqps_port, self.mgmt_port, self.prom_port, self.prom_plain_port]
        while not all(port_open("127.0.0.1", p) for p in ports):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail("broker did not start:\n" + self.log())
            time.sleep(0.05)

    def _start_rabbitmq(self):
        self.node = RabbitMQNode(
            os.path.join(self.dir, "rabbitmq"), port=self.port, conf=self.tls_keys(),
            plugins=["rabbitmq_management", "rabbitmq_prometheus"],
            wait_ports=[self.amqps_port, self.mgmt_port, self.prom_port, self.prom_plain_port])
        try:
            self.node.start()
        except RabbitMQNodeError as e:
            pytest.fail(str(e), pytrace=False)

    def cert(self, name):
        return os.path.join(self.certs, name)

    def log(self):
        if self.node:
            return self.node.log()
        with open(self.err_path, errors="replace") as f:
            return f.read()

    def ctl(self, *args):
        if self.node:
            return self.node.ctl(*args, check=False)
        return subprocess.run([warren_binary(), "ctl", "-n", self.data] + list(args),
                              capture_output=True, text=True, timeout=30)

    def stop(self):
        if self.node:
            self.node.stop()
            return
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def hb():
    """The HTTPS broker (see the module's docstring), in a temp directory."""
    d = tempfile.mkdtemp(prefix="warren-https-")
    try:
        b = Broker(d)
    except BaseException:
        shutil.rmtree(d, ignore_errors=True)
        raise
    try:
        yield b
    finally:
        b.stop()
        shutil.rmtree(d, ignore_errors=True)


def context(cafile, client=None):
    """A client context trusting only `cafile`, showing `client` (a
    (cert, key) pair) when given."""
    ctx = ssl.create_default_context(cafile=cafile)
    if client:
        ctx.load_cert_chain(*client)
    return ctx


def client_of(b, name="client"):
    return (b.cert(name + ".pem"), b.cert(name + ".key"))


def get(port, path, ctx, auth=True):
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": AUTH} if auth else {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def wait_for_log(b, text, limit=5):
    """Waits for one of Warren's log lines (not checked against RabbitMQ,
    whose lines are its own)."""
    if ON_RABBITMQ:
        return
    deadline = time.monotonic() + limit
    while text not in b.log():
        assert time.monotonic() < deadline, "no %r in the log:\n%s" % (text, b.log())
        time.sleep(0.05)


def test_api_over_https(hb):
    ctx = context(hb.cert("ca.pem"), client_of(hb))
    status, body = get(hb.mgmt_port, "/api/overview", ctx)
    assert status == 200, body
    protocols = {l["protocol"]: l["port"] for l in json.loads(body)["listeners"]}
    assert protocols.get("https") == hb.mgmt_port
    assert protocols.get("amqp/ssl") == hb.amqps_port, protocols
    assert protocols.get("https/prometheus") == hb.prom_port
    assert protocols.get("http/prometheus") == hb.prom_plain_port
    # Only management.ssl.* is configured: no plain management listener,
    # as in RabbitMQ.
    assert "http" not in protocols, protocols
    status, body = get(hb.mgmt_port, "/api/queues", ctx)
    assert status == 200 and json.loads(body) == [], body
    # The page too, and the API's own 401 without credentials.
    status, body = get(hb.mgmt_port, "/", ctx, auth=False)
    assert status == 200 and b"<html" in body.lower()
    status, _ = get(hb.mgmt_port, "/api/overview", ctx, auth=False)
    assert status == 401


def test_rabbitmqadmin_over_https(hb):
    script = find_rabbitmqadmin()
    if not script:
        pytest.fail("rabbitmqadmin not found on PATH (nor RABBITMQADMIN set): install it "
                    "with tools/install-rabbitmqadmin.sh", pytrace=False)
    cert, key = client_of(hb)
    base = [script, "--ssl", "-H", "127.0.0.1", "-P", str(hb.mgmt_port),
            "-u", "guest", "-p", "guest", "--ssl-cert-file", cert, "--ssl-key-file", key]

    def admin(*args, ca=hb.cert("ca.pem")):
        return subprocess.run(base + ["--ssl-ca-cert-file", ca] + list(args),
                              capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL)

    r = admin("declare", "queue", "name=over-https", "durable=false")
    assert r.returncode == 0 and "queue declared" in r.stdout, (r.stdout, r.stderr)
    r = admin("-f", "tsv", "-q", "list", "queues", "name", "durable")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "over-https\tFalse" in r.stdout.splitlines(), r.stdout
    # Trusting another CA: the server's certificate is refused.
    r = admin("list", "queues", ca=hb.cert("rogue-ca.pem"))
    assert r.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in r.stdout + r.stderr, (
        r.stdout, r.stderr)


def test_prometheus_over_https_beside_http(hb):
    status, body = get(hb.prom_port, "/metrics", context(hb.cert("ca.pem")), auth=False)
    assert status == 200
    assert b"rabbitmq_queues " in body or b"rabbitmq_queues{" in body, body[:500]
    conn = http.client.HTTPConnection("127.0.0.1", hb.prom_plain_port, timeout=10)
    conn.request("GET", "/metrics")
    r = conn.getresponse()
    assert r.status == 200 and b"rabbitmq_" in r.read()
    conn.close()


def read_until_closed(s, limit):
    """Everything the server sends until it closes; fails after `limit` s."""
    s.settimeout(limit)
    data = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return data
            data += chunk
    except ConnectionResetError:
        return data
    except socket.timeout:
        pytest.fail("the server did not close the socket within %s s" % limit)


def test_plain_http_on_https_port_is_closed(hb):
    for port in (hb.mgmt_port, hb.prom_port):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /api/overview HTTP/1.1\r\nHost: localhost\r\n\r\n")
        t0 = time.monotonic()
        data = read_until_closed(s, 5)
        assert time.monotonic() - t0 < 3
        assert not data.startswith(b"HTTP/"), data
        s.close()
    wait_for_log(hb, "TLS handshake failed")


def test_stalled_handshake_is_closed(hb):
    s = socket.create_connection(("127.0.0.1", hb.mgmt_port), timeout=5)
    t0 = time.monotonic()
    data = read_until_closed(s, 10)
    elapsed = time.monotonic() - t0
    assert data == b"" and 4 < elapsed < 8, (data, elapsed)
    s.close()
    wait_for_log(hb, "did not finish within")
    # Still serving.
    status, _ = get(hb.mgmt_port, "/api/overview",
                    context(hb.cert("ca.pem"), client_of(hb)))
    assert status == 200


def test_client_certificate_required(hb):
    ca = hb.cert("ca.pem")
    for client in (None, client_of(hb, "rogue")):
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            get(hb.mgmt_port, "/api/overview", context(ca, client))
    wait_for_log(hb, "TLS handshake failed")
    status, _ = get(hb.mgmt_port, "/api/overview", context(ca, client_of(hb)))
    assert status == 200


def amqps(b, cafile, client):
    return pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=b.amqps_port, connection_attempts=1, socket_timeout=5,
        ssl_options=pika.SSLOptions(context(cafile, client), server_hostname="localhost")))


def keep(d, names):
    """Copies of the hb's files now, to trust and show after they change."""
    os.makedirs(d)
    for n in names:
        shutil.copy(n, d)
    return d


def install(b, src):
    """Writes `src`'s CA, server and client files over the hb's."""
    for n in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key"):
        shutil.copy(os.path.join(src, n), b.cert(n) + ".new")
        os.replace(b.cert(n) + ".new", b.cert(n))


def check_serves(b, ca, client):
    status, _ = get(b.mgmt_port, "/api/overview", context(ca, client))
    assert status == 200
    status, _ = get(b.prom_port, "/metrics", context(ca), auth=False)
    assert status == 200
    conn = amqps(b, ca, client)
    conn.channel().queue_declare("", exclusive=True)
    conn.close()


def check_refuses(b, ca, client):
    for port in (b.mgmt_port, b.prom_port):
        with pytest.raises(ssl.SSLCertVerificationError):
            get(port, "/api/overview", context(ca, client))
    # pika raises the handshake's own error.
    with pytest.raises((ssl.SSLError, pika.exceptions.AMQPConnectionError)):
        amqps(b, ca, client)


@pytest.mark.skipif(ON_RABBITMQ, reason=(
    "WARREN_TEST_TLS_BROKER=rabbitmq: `warren ctl reload_certificates` and the SIGHUP "
    "reload are Warren's; rabbitmqctl 3.10 has no such verb (RabbitMQ rereads the files "
    "when Erlang's PEM cache is cleared)"))
def test_reload_certificates(hb):
    old = keep(os.path.join(hb.dir, "old"),
               [hb.cert(n) for n in ("ca.pem", "client.pem", "client.key")])
    old_ca, old_client = os.path.join(old, "ca.pem"), (
        os.path.join(old, "client.pem"), os.path.join(old, "client.key"))
    # Connections made before the reload.
    api = http.client.HTTPSConnection("127.0.0.1", hb.mgmt_port,
                                      context=context(old_ca, old_client), timeout=10)
    api.request("GET", "/api/overview", headers={"Authorization": AUTH})
    assert api.getresponse().read()
    amqp = amqps(hb, old_ca, old_client)
    ch = amqp.channel()
    q = ch.queue_declare("", exclusive=True).method.queue

    new = make_certs(os.path.join(hb.dir, "new"))
    install(hb, new)
    # Not reloaded yet: the files changed, the listeners did not.
    check_serves(hb, old_ca, old_client)
    r = hb.ctl("reload_certificates")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "Reloading TLS certificates on node" in r.stdout
    wait_for_log(hb, "reloaded the certificates of AMQPS, management HTTPS, Prometheus HTTPS")
    new_ca, new_client = os.path.join(new, "ca.pem"), (
        os.path.join(new, "client.pem"), os.path.join(new, "client.key"))
    check_serves(hb, new_ca, new_client)
    check_refuses(hb, old_ca, old_client)
    # Those open before keep theirs.
    api.request("GET", "/api/queues", headers={"Authorization": AUTH})
    r = api.getresponse()
    assert r.status == 200 and r.read().startswith(b"[")
    api.close()
    ch.basic_publish("", q, b"still here")
    method, _, body = ch.basic_get(q, auto_ack=True)
    assert body == b"still here"
    amqp.close()

    # A bad key: the reload fails, says why, and the certificates in use stay.
    with open(hb.cert("server.key"), "w") as f:
        f.write("not a key\n")
    r = hb.ctl("reload_certificates")
    assert r.returncode == 65, (r.returncode, r.stdout, r.stderr)
    assert "ssl_options.keyfile" in r.stderr and "old ones stay in use" in r.stderr, r.stderr
    check_serves(hb, new_ca, new_client)

    # SIGHUP reloads too.
    third = make_certs(os.path.join(hb.dir, "third"))
    install(hb, third)
    hb.proc.send_signal(signal.SIGHUP)
    third_ca, third_client = os.path.join(third, "ca.pem"), (
        os.path.join(third, "client.pem"), os.path.join(third, "client.key"))
    deadline = time.monotonic() + 10
    while True:
        try:
            check_serves(hb, third_ca, third_client)
            break
        except (ssl.SSLError, pika.exceptions.AMQPConnectionError, ConnectionError):
            assert time.monotonic() < deadline, hb.log()
            time.sleep(0.1)
    assert hb.proc.poll() is None, "SIGHUP stopped the broker"
    assert "SIGHUP received, reloading certificates" in hb.log()


@pytest.mark.skipif(ON_RABBITMQ, reason=(
    "WARREN_TEST_TLS_BROKER=rabbitmq: runs `warren serve` on bad files (Warren's own "
    "start-up check, exit code 2 and the key named)"))
def test_bad_certificate_files_stop_the_start(tmp_path):
    certs = make_certs(str(tmp_path / "certs"))
    cases = [
        ("management.ssl.certfile = %s\nmanagement.ssl.keyfile = %s/missing.key\n"
         % (os.path.join(certs, "server.pem"), certs), "management.ssl.keyfile"),
        ("prometheus.ssl.certfile = %s\nprometheus.ssl.keyfile = %s\n"
         % (os.path.join(certs, "ca.key"), os.path.join(certs, "server.key")),
         "prometheus.ssl.certfile"),
        ("management.ssl.port = %d\n" % free_port(), "management.ssl.certfile"),
        ("prometheus.ssl.certfile = %s\nprometheus.ssl.keyfile = %s\n"
         "prometheus.ssl.verify = verify_peer\n"
         % (os.path.join(certs, "server.pem"), os.path.join(certs, "server.key")),
         "prometheus.ssl.cacertfile"),
    ]
    for i, (keys, expect) in enumerate(cases):
        conf = tmp_path / ("w%d.conf" % i)
        conf.write_text("listeners.tcp.default = 127.0.0.1:%d\nwarren.data_dir = %s\n%s"
                        % (free_port(), tmp_path / ("data%d" % i), keys))
        r = subprocess.run([warren_binary(), "serve", "--config", str(conf)],
                           capture_output=True, text=True, timeout=20,
                           stdin=subprocess.DEVNULL)
        assert r.returncode == 2, (keys, r.returncode, r.stderr)
        assert expect in r.stderr, (keys, r.stderr)
