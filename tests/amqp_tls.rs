//! AMQPS: TLS on its own port beside plain AMQP, client certificates,
//! the EXTERNAL mechanism, and what the broker does with bad input on
//! either port. The certificates are made fresh for each test by
//! `tests/fixtures/make-test-certs.sh` (Debian's openssl).

#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions,
};
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The client certificate's subject as RabbitMQ writes it: the EXTERNAL
/// user under `ssl_cert_login_from = distinguished_name`.
const CLIENT_DN: &str = "CN=tls-client,O=Warren Tests,C=GB";

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn certs() -> PathBuf {
    let dir = std::env::temp_dir().join(unique("warren-tls-certs"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make-test-certs.sh");
    let ok = std::process::Command::new("bash")
        .arg(script)
        .arg(&dir)
        .status()
        .expect("run make-test-certs.sh (needs openssl)")
        .success();
    assert!(ok, "make-test-certs.sh failed");
    dir
}

struct TlsBroker {
    broker: TestBroker,
    tls_port: u16,
    certs: PathBuf,
}

/// A broker with an AMQPS listener configured through the file, as a
/// RabbitMQ user would configure theirs; `extra` adds lines.
async fn start(extra: &str) -> TlsBroker {
    let verify = "ssl_options.verify = verify_peer\nssl_options.fail_if_no_peer_cert = true";
    start_files(
        "ca.pem",
        "server.pem",
        "server.key",
        &format!("{verify}\n{extra}"),
    )
    .await
}

/// The same with these files (made by `certs`) as cacertfile, certfile
/// and keyfile.
async fn start_files(ca: &str, cert: &str, key: &str, extra: &str) -> TlsBroker {
    let certs = certs();
    let tls_port = free_port();
    let conf = certs.join("warren.conf");
    let c = |f: &str| certs.join(f).display().to_string();
    std::fs::write(
        &conf,
        format!(
            "listeners.ssl.default = {tls_port}\n\
             ssl_options.cacertfile = {}\n\
             ssl_options.certfile = {}\n\
             ssl_options.keyfile = {}\n\
             {extra}\n",
            c(ca),
            c(cert),
            c(key),
        ),
    )
    .unwrap();
    let broker =
        TestBroker::start_with(&["--config", &conf.display().to_string(), "--log", "info"]).await;
    TlsBroker {
        broker,
        tls_port,
        certs,
    }
}

impl TlsBroker {
    fn tls_config(&self, client: Option<&str>) -> OwnedTLSConfig {
        let read = |f: &str| std::fs::read(self.certs.join(f)).unwrap();
        OwnedTLSConfig {
            identity: client.map(|name| OwnedIdentity::PKCS8 {
                pem: read(&format!("{name}.pem")),
                key: read(&format!("{name}.key")),
            }),
            cert_chain: Some(String::from_utf8(read("ca.pem")).unwrap()),
        }
    }

    async fn connect(&self, query: &str, client: Option<&str>) -> lapin::Result<Connection> {
        let uri = format!("amqps://127.0.0.1:{}/%2f{query}", self.tls_port);
        w!(Connection::connect_with_config(
            &uri,
            ConnectionProperties::default(),
            self.tls_config(client),
            lapin::runtime::default_runtime().unwrap(),
        ))
    }

    fn ctl(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_warren"))
            .arg("ctl")
            .arg("-n")
            .arg(self.broker.data_dir())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "warren ctl {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    fn add_user(&self, user: &str) {
        self.ctl(&["add_user", user, "unused-password"]);
        self.ctl(&["set_permissions", "-p", "/", user, ".*", ".*", ".*"]);
    }
}

async fn publish_and_consume(conn: &Connection, body: &[u8]) {
    let ch = w!(conn.create_channel()).unwrap();
    let q = unique("tls-q");
    w!(ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default()
    ))
    .unwrap();
    w!(ch.basic_publish(
        "".into(),
        q.as_str().into(),
        BasicPublishOptions::default(),
        body,
        BasicProperties::default()
    ))
    .unwrap();
    let mut consumer = w!(ch.basic_consume(
        q.as_str().into(),
        "c".into(),
        BasicConsumeOptions::default(),
        FieldTable::default()
    ))
    .unwrap();
    let delivery = w!(consumer.next()).expect("a delivery").unwrap();
    assert_eq!(delivery.data, body);
    w!(delivery.ack(BasicAckOptions::default())).unwrap();
}

/// Reads until EOF (or a reset); the time it took. Panics if the socket
/// stays open past `limit`.
async fn closed_within(sock: &mut tokio::net::TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let t0 = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match within(limit, sock.read(&mut buf)).await {
            Ok(0) | Err(_) => return (got, t0.elapsed()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_consume_over_tls_with_plain_and_external_logins() {
    let b = start("").await;
    b.add_user(CLIENT_DN);
    // PLAIN over TLS, with a client certificate as the broker demands.
    let conn = b.connect("", Some("client")).await.expect("PLAIN over TLS");
    publish_and_consume(&conn, b"over tls").await;
    // A body bigger than a TLS record and than the read chunk.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    publish_and_consume(&conn, &big).await;
    w!(conn.close(200, "bye".into())).unwrap();
    // EXTERNAL: the user is the certificate's subject, no password.
    let conn = b
        .connect("?auth_mechanism=external", Some("client"))
        .await
        .expect("EXTERNAL login by certificate");
    publish_and_consume(&conn, b"external").await;
    // Listed as RabbitMQ lists a TLS connection.
    let listed = b.ctl(&[
        "-s",
        "list_connections",
        "ssl",
        "ssl_protocol",
        "auth_mechanism",
        "user",
        "peer_cert_subject",
    ]);
    let line = format!("true\ttlsv1.3\tEXTERNAL\t{CLIENT_DN}\t{CLIENT_DN}");
    assert!(listed.lines().any(|l| l == line), "{listed}");
    w!(conn.close(200, "bye".into())).unwrap();
    b.broker
        .wait_log_line("listening on", Duration::from_secs(1))
        .await;
    // The plain port still serves beside the TLS one.
    let plain = b.broker.connect().await;
    publish_and_consume(&plain, b"plain").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_needs_an_existing_user() {
    let b = start("").await;
    // No user named after the certificate: refused.
    let refused = b.connect("?auth_mechanism=external", Some("client")).await;
    assert!(refused.is_err(), "EXTERNAL without such a user must fail");
    b.broker
        .wait_log_line("no user 'CN=tls-client,O=Warren Tests,C=GB'", STEP)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn common_name_login_and_external_only_with_a_certificate() {
    let b =
        start("ssl_options.fail_if_no_peer_cert = false\nssl_cert_login_from = common_name").await;
    b.add_user("tls-client");
    let conn = b
        .connect("?auth_mechanism=external", Some("client"))
        .await
        .expect("EXTERNAL login as the certificate's CN");
    publish_and_consume(&conn, b"cn").await;
    // Without a certificate the broker lets TLS through (fail_if_no_peer_cert
    // is false) and PLAIN works, but EXTERNAL is not on offer.
    let conn = b
        .connect("", None)
        .await
        .expect("TLS without a client cert");
    publish_and_consume(&conn, b"no cert").await;
    assert!(b.connect("?auth_mechanism=external", None).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_mechanisms_limits_what_a_client_may_choose() {
    // RabbitMQ's way to allow certificate logins only.
    let b = start("auth_mechanisms.1 = EXTERNAL").await;
    b.add_user(CLIENT_DN);
    let conn = b
        .connect("?auth_mechanism=external", Some("client"))
        .await
        .expect("EXTERNAL is configured");
    publish_and_consume(&conn, b"external only").await;
    // PLAIN is no longer on offer, over TLS or on the plain port (where
    // nothing is left to offer).
    assert!(b.connect("", Some("client")).await.is_err());
    let plain = w!(Connection::connect(
        &b.broker.url(),
        ConnectionProperties::default()
    ));
    assert!(plain.is_err(), "PLAIN must be refused");
    // The broker is fine afterwards.
    publish_and_consume(&conn, b"still").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_to_the_root_comes_from_cacertfile() {
    // The server certificate is signed by an intermediate CA that only
    // the cacertfile holds; a client that trusts only the root verifies
    // it, as against RabbitMQ (which sends the chain it builds there).
    let b = start_files("ca-bundle.pem", "server-int.pem", "server-int.key", "").await;
    let conn = b
        .connect("", None)
        .await
        .expect("the root alone verifies the chain");
    publish_and_consume(&conn, b"chained").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_or_missing_client_certificate_is_refused() {
    let b = start("").await;
    b.add_user(CLIENT_DN);
    let rogue = b.connect("", Some("rogue")).await;
    assert!(
        rogue.is_err(),
        "a certificate from an unknown CA must be refused"
    );
    b.broker.wait_log_line("TLS handshake failed", STEP).await;
    let none = b.connect("", None).await;
    assert!(
        none.is_err(),
        "no certificate with fail_if_no_peer_cert = true"
    );
    // The broker is fine afterwards.
    let conn = b
        .connect("", Some("client"))
        .await
        .expect("a trusted client");
    publish_and_consume(&conn, b"after").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_client_on_tls_port_and_tls_client_on_plain_port_are_closed() {
    let b = start("").await;
    // A plain AMQP client on the TLS port: closed at once, said in the log.
    let mut sock = w!(tokio::net::TcpStream::connect(("127.0.0.1", b.tls_port))).unwrap();
    w!(sock.write_all(b"AMQP\x00\x00\x09\x01")).unwrap();
    let (got, took) = closed_within(&mut sock, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
    assert!(
        !got.starts_with(b"AMQP"),
        "no AMQP reply on the TLS port: {got:?}"
    );
    b.broker
        .wait_log_line("a non-TLS client on the TLS port", STEP)
        .await;
    // A TLS ClientHello's record header on the plain port: the broker
    // answers with its protocol header, as to any bad header, and closes.
    let mut sock = w!(tokio::net::TcpStream::connect(b.broker.addr())).unwrap();
    w!(sock.write_all(b"\x16\x03\x01\x00\xf4\x01\x00\x00\xf0\x03\x03")).unwrap();
    let (got, took) = closed_within(&mut sock, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
    assert_eq!(got, b"AMQP\x00\x00\x09\x01");
    b.broker
        .wait_log_line("a TLS client on the plain AMQP port", STEP)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_that_never_finishes_is_cut_off() {
    let b = start("ssl_handshake_timeout = 1000").await;
    let t0 = Instant::now();
    // Connects and says nothing.
    let mut silent = w!(tokio::net::TcpStream::connect(("127.0.0.1", b.tls_port))).unwrap();
    // Sends half a ClientHello record and stops.
    let mut half = w!(tokio::net::TcpStream::connect(("127.0.0.1", b.tls_port))).unwrap();
    w!(half.write_all(b"\x16\x03\x01\x02\x00\x01\x00")).unwrap();
    for sock in [&mut silent, &mut half] {
        closed_within(sock, Duration::from_secs(6)).await;
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(500) && took < Duration::from_secs(4),
            "closed after {took:?}"
        );
    }
    b.broker
        .wait_log_line("did not finish within 1s", STEP)
        .await;
    // Still serving.
    let conn = b
        .connect("", Some("client"))
        .await
        .expect("a trusted client");
    publish_and_consume(&conn, b"after timeouts").await;
}

/// A client's TLS settings from the files in `dir`: its CA and, when
/// named, its certificate and key.
fn tls_config_in(dir: &Path, client: Option<&str>) -> OwnedTLSConfig {
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    OwnedTLSConfig {
        identity: client.map(|name| OwnedIdentity::PKCS8 {
            pem: read(&format!("{name}.pem")),
            key: read(&format!("{name}.key")),
        }),
        cert_chain: Some(String::from_utf8(read("ca.pem")).unwrap()),
    }
}

async fn connect_with(b: &TlsBroker, tls: OwnedTLSConfig) -> lapin::Result<Connection> {
    let uri = format!("amqps://127.0.0.1:{}/%2f", b.tls_port);
    w!(Connection::connect_with_config(
        &uri,
        ConnectionProperties::default(),
        tls,
        lapin::runtime::default_runtime().unwrap(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloaded_certificates_serve_new_connections_and_open_ones_keep_theirs() {
    let b = start("").await;
    let old = certs();
    for f in ["ca.pem", "client.pem", "client.key"] {
        std::fs::copy(b.certs.join(f), old.join(f)).unwrap();
    }
    let open = connect_with(&b, tls_config_in(&old, Some("client")))
        .await
        .expect("a connection before the reload");
    // A new CA, server and client certificate over the configured files.
    let new = certs();
    for f in ["ca.pem", "server.pem", "server.key"] {
        std::fs::copy(new.join(f), b.certs.join(f)).unwrap();
    }
    b.ctl(&["reload_certificates"]);
    b.broker
        .wait_log_line("reloaded the certificates of AMQPS", STEP)
        .await;
    let fresh = connect_with(&b, tls_config_in(&new, Some("client")))
        .await
        .expect("the new CA's client after the reload");
    publish_and_consume(&fresh, b"new certificate").await;
    assert!(
        connect_with(&b, tls_config_in(&old, Some("client")))
            .await
            .is_err(),
        "the old CA's client must be refused after the reload"
    );
    publish_and_consume(&open, b"kept its session").await;
    // A bad key: the reload fails (exit 65) and the new files stay in use.
    std::fs::write(b.certs.join("server.key"), "not a key\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["ctl", "-n"])
        .arg(b.broker.data_dir())
        .arg("reload_certificates")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ssl_options.keyfile"),
        "{out:?}"
    );
    let again = connect_with(&b, tls_config_in(&new, Some("client")))
        .await
        .expect("still the reloaded certificate");
    publish_and_consume(&again, b"after a failed reload").await;
}
