"""AMQPS with pika: publish and consume over TLS, log in with EXTERNAL by
client certificate, an untrusted certificate refused, and the plain port
beside the TLS one. The certificates are made fresh by
tests/fixtures/make-test-certs.sh (openssl).

Warren only (it starts brokers with files of its own)."""

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
from test_broker_process import warren_binary

pytestmark = pytest.mark.needs_warren_process

HERE = os.path.dirname(os.path.abspath(__file__))
MAKE_CERTS = os.path.join(HERE, "..", "fixtures", "make-test-certs.sh")
CLIENT_DN = "CN=tls-client,O=Warren Tests,C=GB"


@pytest.fixture
def tls_broker():
    d = tempfile.mkdtemp(prefix="warren-tls-")
    certs = os.path.join(d, "certs")
    subprocess.run(["bash", MAKE_CERTS, certs], check=True)
    port, tls_port = free_port(), free_port()
    data = os.path.join(d, "data")
    conf = os.path.join(d, "warren.conf")
    c = lambda f: os.path.join(certs, f)
    with open(conf, "w") as f:
        f.write(
            "listeners.tcp.default = 127.0.0.1:%d\n"
            "listeners.ssl.default = 127.0.0.1:%d\n"
            "ssl_options.cacertfile = %s\n"
            "ssl_options.certfile = %s\n"
            "ssl_options.keyfile = %s\n"
            "ssl_options.verify = verify_peer\n"
            "ssl_options.fail_if_no_peer_cert = true\n"
            "ssl_options.versions.1 = tlsv1.3\n"
            "ssl_options.versions.2 = tlsv1.2\n"
            "warren.data_dir = %s\n"
            "warren.shards = %s\n"
            "management.tcp.port = 0\n"
            "prometheus.tcp.port = 0\n"
            % (port, tls_port, c("ca.pem"), c("server.pem"), c("server.key"), data,
               os.environ.get("WARREN_SHARDS") or os.environ.get("WARREN_TEST_SHARDS", "3")))
    err_path = os.path.join(d, "stderr.log")
    with open(err_path, "wb") as err:
        p = subprocess.Popen([warren_binary(), "serve", "--config", conf],
                             stdout=subprocess.DEVNULL, stderr=err,
                             stdin=subprocess.DEVNULL)

    def log():
        with open(err_path, errors="replace") as f:
            return f.read()

    deadline = time.monotonic() + 20
    while not (port_open("127.0.0.1", port) and port_open("127.0.0.1", tls_port)):
        if p.poll() is not None or time.monotonic() > deadline:
            pytest.fail("broker did not start:\n" + log())
        time.sleep(0.05)

    def ctl(*args):
        subprocess.run([warren_binary(), "ctl", "-n", data] + list(args), check=True,
                       stdout=subprocess.DEVNULL, timeout=30)

    b = type("TlsBroker", (), dict(port=port, tls_port=tls_port, certs=certs, ctl=ctl,
                                   log=staticmethod(log)))
    yield b
    p.terminate()
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout=10)
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
    while "TLS handshake failed" not in tls_broker.log():
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
