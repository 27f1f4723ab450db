"""AMQPS with pika: publish and consume over TLS, log in with EXTERNAL by
client certificate, an untrusted certificate refused, and the plain port
beside the TLS one. The certificates are made fresh by
tests/fixtures/make-test-certs.sh (openssl).

Brokers of its own: Warren by default (so skipped with WARREN_TEST_URL);
with WARREN_TEST_TLS_BROKER=rabbitmq a private RabbitMQ node
(rabbitmq_node.py) given the same certificate files and ssl_options.*
keys, to show the tests describe RabbitMQ's behaviour. Assertions on
Warren's own log lines are made against Warren only."""

import os
import shutil
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

KIND = tls_broker_kind()
ON_RABBITMQ = KIND == "rabbitmq"
# Against Warren the tests start the binary, which WARREN_TEST_URL runs do not.
pytestmark = [] if ON_RABBITMQ else [pytest.mark.needs_warren_process]

HERE = os.path.dirname(os.path.abspath(__file__))
MAKE_CERTS = os.path.join(HERE, "..", "fixtures", "make-test-certs.sh")
CLIENT_DN = "CN=tls-client,O=Warren Tests,C=GB"


def tls_keys(tls_port, certs):
    """The AMQPS keys both brokers are given, word for word."""
    c = lambda f: os.path.join(certs, f)
    return ("listeners.ssl.default = 127.0.0.1:%d\n"
            "ssl_options.cacertfile = %s\n"
            "ssl_options.certfile = %s\n"
            "ssl_options.keyfile = %s\n"
            "ssl_options.verify = verify_peer\n"
            "ssl_options.fail_if_no_peer_cert = true\n"
            "ssl_options.versions.1 = tlsv1.3\n"
            "ssl_options.versions.2 = tlsv1.2\n"
            % (tls_port, c("ca.pem"), c("server.pem"), c("server.key")))


def start_warren(d, certs, port, tls_port):
    data = os.path.join(d, "data")
    conf = os.path.join(d, "warren.conf")
    with open(conf, "w") as f:
        f.write(
            "listeners.tcp.default = 127.0.0.1:%d\n" % port
            + tls_keys(tls_port, certs)
            + "warren.data_dir = %s\n"
            "warren.shards = %s\n"
            "management.tcp.port = 0\n"
            "prometheus.tcp.port = 0\n"
            % (data, os.environ.get("WARREN_SHARDS") or os.environ.get("WARREN_TEST_SHARDS", "3")))
    err_path = os.path.join(d, "stderr.log")
    with open(err_path, "wb") as err:
        p = subprocess.Popen([warren_binary(), "serve", "--config", conf],
                             stdout=subprocess.DEVNULL, stderr=err,
                             stdin=subprocess.DEVNULL)

    def log():
        with open(err_path, errors="replace") as f:
            return f.read()

    def stop():
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)

    deadline = time.monotonic() + 20
    while not (port_open("127.0.0.1", port) and port_open("127.0.0.1", tls_port)):
        if p.poll() is not None or time.monotonic() > deadline:
            stop()
            pytest.fail("broker did not start:\n" + log())
        time.sleep(0.05)

    def ctl(*args):
        subprocess.run([warren_binary(), "ctl", "-n", data] + list(args), check=True,
                       stdout=subprocess.DEVNULL, timeout=30)

    return ctl, log, stop


def start_rabbitmq(d, certs, port, tls_port):
    # RabbitMQ 3.10 offers EXTERNAL only with its plugin and when
    # auth_mechanisms lists it (Warren offers all three by default);
    # distinguished_name is the default of both, written out here.
    node = RabbitMQNode(
        os.path.join(d, "rabbitmq"), port=port, wait_ports=[tls_port],
        plugins=["rabbitmq_auth_mechanism_ssl"],
        conf=tls_keys(tls_port, certs)
        + "auth_mechanisms.1 = PLAIN\n"
          "auth_mechanisms.2 = AMQPLAIN\n"
          "auth_mechanisms.3 = EXTERNAL\n"
          "ssl_cert_login_from = distinguished_name\n")
    try:
        node.start()
    except RabbitMQNodeError as e:
        pytest.fail(str(e), pytrace=False)
    return (lambda *args: node.ctl(*args)), node.log, node.stop


@pytest.fixture
def tls_broker():
    d = tempfile.mkdtemp(prefix="warren-tls-")
    certs = os.path.join(d, "certs")
    subprocess.run(["bash", MAKE_CERTS, certs], check=True)
    port, tls_port = free_port(), free_port()
    start = start_rabbitmq if ON_RABBITMQ else start_warren
    try:
        ctl, log, stop = start(d, certs, port, tls_port)
    except BaseException:
        shutil.rmtree(d, ignore_errors=True)
        raise
    b = type("TlsBroker", (), dict(kind=KIND, port=port, tls_port=tls_port, certs=certs,
                                   ctl=staticmethod(ctl), log=staticmethod(log)))
    try:
        yield b
    finally:
        stop()
        shutil.rmtree(d, ignore_errors=True)


def context(b, client="client", versions=None):
    ctx = ssl.create_default_context(cafile=os.path.join(b.certs, "ca.pem"))
    if client:
        ctx.load_cert_chain(os.path.join(b.certs, client + ".pem"),
                            os.path.join(b.certs, client + ".key"))
    if versions:
        ctx.minimum_version, ctx.maximum_version = versions
    return ctx


def connect(b, credentials=None, **kw):
    return pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=b.tls_port, connection_attempts=1, socket_timeout=5,
        credentials=credentials or pika.PlainCredentials("guest", "guest"),
        ssl_options=pika.SSLOptions(context(b, **kw), server_hostname="localhost")))


def roundtrip(conn, body):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.confirm_delivery()
    ch.basic_publish("", q, body)
    got = []
    for method, _props, payload in ch.consume(q, inactivity_timeout=5):
        assert method is not None, "no delivery within 5 s"
        got.append(payload)
        ch.basic_ack(method.delivery_tag)
        break
    ch.cancel()
    assert got == [body]


def test_publish_consume_over_tls_12_and_13(tls_broker):
    for versions in [(ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3),
                     (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2)]:
        conn = connect(tls_broker, versions=versions)
        roundtrip(conn, b"hello over " + versions[0].name.encode())
        roundtrip(conn, os.urandom(200_000))
        conn.close()


def test_external_login_by_certificate(tls_broker):
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        connect(tls_broker, pika.credentials.ExternalCredentials())
    if not ON_RABBITMQ:  # Warren's log line
        assert "no user '%s'" % CLIENT_DN in tls_broker.log()
    tls_broker.ctl("add_user", CLIENT_DN, "not-used")
    tls_broker.ctl("set_permissions", "-p", "/", CLIENT_DN, ".*", ".*", ".*")
    conn = connect(tls_broker, pika.credentials.ExternalCredentials())
    roundtrip(conn, b"logged in by certificate")
    conn.close()


def test_untrusted_certificate_is_refused(tls_broker):
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        connect(tls_broker, client="rogue")
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        connect(tls_broker, client=None)
    deadline = time.monotonic() + 5
    while not ON_RABBITMQ and "TLS handshake failed" not in tls_broker.log():  # Warren's line
        assert time.monotonic() < deadline, tls_broker.log()
        time.sleep(0.05)
    # Still serving trusted clients, and the plain port.
    conn = connect(tls_broker)
    roundtrip(conn, b"trusted")
    conn.close()
    plain = pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=tls_broker.port, connection_attempts=1))
    roundtrip(plain, b"plain")
    plain.close()


def test_plain_client_on_tls_port_is_closed(tls_broker):
    s = socket.create_connection(("127.0.0.1", tls_broker.tls_port), timeout=5)
    s.sendall(b"AMQP\x00\x00\x09\x01")
    t0 = time.monotonic()
    data = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    assert time.monotonic() - t0 < 3
    assert not data.startswith(b"AMQP")
    s.close()
