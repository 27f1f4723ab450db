//! Protocol header, start/start-ok, tune/tune-ok and open/open-ok.
use std::time::Duration;

use super::auth::{self, AuthError};
use super::{conn_error, Close, Conn};
use crate::access::LoginError;
use crate::codec::{
    self, reply_code, ConnectionOpenOk, ConnectionStart, ConnectionTune, FieldTable, FieldValue,
    Frame, Method,
};
use crate::error::AmqpError;

/// RabbitMQ's handshake_timeout.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The capabilities Warren implements, as RabbitMQ names them.
const CAPABILITIES: [&str; 7] = [
    "publisher_confirms",
    "exchange_exchange_bindings",
    "basic.nack",
    "consumer_cancel_notify",
    "connection.blocked",
    "authentication_failure_close",
    "per_consumer_qos",
];

pub fn server_properties() -> FieldTable {
    let mut caps = FieldTable::new();
    for c in CAPABILITIES {
        caps.insert(c, FieldValue::Bool(true));
    }
    let s = |v: &str| FieldValue::LongStr(bytes::Bytes::copy_from_slice(v.as_bytes()));
    let mut t = FieldTable::new();
    t.insert("capabilities", FieldValue::Table(caps));
    t.insert("cluster_name", s("warren"));
    t.insert("copyright", s("Copyright (c) the Warren authors"));
    t.insert("information", s("Licensed under the Apache License 2.0"));
    t.insert("platform", s("Rust"));
    t.insert("product", s("Warren"));
    t.insert("version", s(env!("CARGO_PKG_VERSION")));
    t
}

fn expect_method(frame: Frame, what: &str) -> Result<Method, Close> {
    match frame {
        Frame::Method { channel: 0, method } => Ok(method),
        _ => Err(conn_error(
            reply_code::COMMAND_INVALID,
            format!("expected {what}"),
        )),
    }
}

impl Conn {
    pub(super) async fn handshake(&mut self) -> Result<(), Close> {
        let _ = self.socket.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
        while self.buf.len() < 8 {
            self.fill().await?;
        }
        if self.buf[..8] != codec::PROTOCOL_HEADER {
            if self.buf[0] == 0x16 && !self.socket.is_tls() {
                // A TLS record (handshake): a client that meant the AMQPS
                // port.
                tracing::warn!(
                    conn = %self.handle.id,
                    "a TLS client on the plain AMQP port (use the AMQPS port), closing"
                );
            } else {
                tracing::info!(conn = %self.handle.id, "bad AMQP protocol header, closing");
            }
            // Tell the client which protocol we speak, then hang up.
            let mut w = self.handle.out.borrow_mut();
            w.extend_from_slice(&codec::PROTOCOL_HEADER);
            drop(w);
            self.handle.write_ready.notify();
            return Err(Close::Gone);
        }
        let _ = self.buf.split_to(8);
        let limits = self.shard.options().limits;
        // 0 in the configuration means no limit, as in RabbitMQ; a frame is
        // still never above the largest message.
        let max_frame = match limits.frame_max {
            0 => super::channel::MAX_MESSAGE_SIZE as u32,
            n => n,
        };
        let max_channels = match limits.channel_max {
            0 => u16::MAX,
            n => n,
        };
        self.handle.frame_max.set(max_frame);
        // A verified client certificate (rustls checked it in the
        // handshake) lets the client log in as its subject: EXTERNAL.
        let cert = self.socket.peer_certificate();
        let offered = auth::offered(&self.shard.options().access.auth_mechanisms, cert.is_some());
        self.handle.send_method(
            0,
            &Method::ConnectionStart(ConnectionStart {
                version_major: 0,
                version_minor: 9,
                server_properties: server_properties(),
                mechanisms: bytes::Bytes::from(auth::mechanisms_field(&offered)),
                locales: bytes::Bytes::from_static(b"en_US"),
            }),
        );

        let frame = self.next_frame().await?;
        let Method::ConnectionStartOk(ok) = expect_method(frame, "connection.start-ok")? else {
            return Err(conn_error(
                reply_code::COMMAND_INVALID,
                "expected connection.start-ok",
            ));
        };
        let peer = self.socket.peer_addr().ok().map(|a| a.ip());
        // A mechanism not offered is unknown here, as in RabbitMQ.
        if !offered.iter().any(|m| m.name() == &*ok.mechanism) {
            return Err(conn_error(
                reply_code::COMMAND_INVALID,
                format!("unknown authentication mechanism '{}'", ok.mechanism),
            ));
        }
        let external = &*ok.mechanism == "EXTERNAL";
        let (user, password) = if external {
            // Offered only with a certificate, so always there.
            let Some(cert) = &cert else {
                return Err(conn_error(
                    reply_code::COMMAND_INVALID,
                    "unknown authentication mechanism 'EXTERNAL'",
                ));
            };
            let from = self.shard.options().access.cert_login_from;
            match auth::certificate_user(cert, from) {
                Some(user) => (user, String::new()),
                None => {
                    tracing::warn!(
                        conn = %self.handle.id,
                        "EXTERNAL login refused: no {from:?} in the client certificate"
                    );
                    return Err(Close::Error(
                        AmqpError::access_refused(
                            "Login was refused using authentication mechanism EXTERNAL. For details see the broker logfile.",
                        ),
                        0,
                        0,
                    ));
                }
            }
        } else {
            match auth::credentials(&ok.mechanism, &ok.response) {
                Ok(c) => c,
                Err(AuthError::UnknownMechanism) => {
                    return Err(conn_error(
                        reply_code::COMMAND_INVALID,
                        format!("unknown authentication mechanism '{}'", ok.mechanism),
                    ))
                }
                Err(AuthError::Malformed) => (String::new(), String::new()),
            }
        };
        // On a dual-stack socket 127.0.0.1 arrives as ::ffff:127.0.0.1.
        let remote = peer.is_some_and(|ip| !ip.to_canonical().is_loopback());
        let loopback_only = self.shard.options().access.loopback_users.contains(&user);
        let login = self.shard.with_topology(|t| {
            if external {
                t.access.login_external(&user, loopback_only, remote)
            } else {
                t.access.login(&user, &password, loopback_only, remote)
            }
            .map(|u| u.has_tag("impersonator"))
        });
        match login {
            Ok(impersonator) => {
                self.user = user;
                self.impersonator = impersonator;
            }
            Err(e) => {
                // The client hears only that the login was refused, as from
                // RabbitMQ; the log says why.
                let why = match e {
                    LoginError::Refused if external => {
                        format!("no user '{user}' (the client certificate's subject)")
                    }
                    LoginError::Refused => format!("invalid credentials for user '{user}'"),
                    LoginError::LoopbackOnly => {
                        format!("user '{user}' can only connect via localhost")
                    }
                };
                tracing::warn!(
                    conn = %self.handle.id,
                    "{} login refused: {why}",
                    ok.mechanism
                );
                let text = format!(
                    "Login was refused using authentication mechanism {}. For details see the broker logfile.",
                    ok.mechanism
                );
                return Err(Close::Error(AmqpError::access_refused(text), 0, 0));
            }
        }
        {
            let mut meta = self.handle.meta.borrow_mut();
            meta.user = self.user.clone();
            meta.auth_mechanism = ok.mechanism.to_string();
            if let Some(cert) = &cert {
                meta.peer_cert_subject = crate::access::cert::subject_dn(cert).unwrap_or_default();
            }
            meta.client_properties = ok.client_properties.clone();
        }
        if let Some(FieldValue::Table(caps)) = ok.client_properties.get("capabilities") {
            let on = |k: &str| caps.get(k).and_then(FieldValue::as_bool).unwrap_or(false);
            self.handle.cancel_notify.set(on("consumer_cancel_notify"));
            self.blocked_notify = on("connection.blocked");
        }

        self.handle.send_method(
            0,
            &Method::ConnectionTune(ConnectionTune {
                channel_max: max_channels,
                frame_max: limits.frame_max,
                heartbeat: limits.heartbeat,
            }),
        );
        let frame = self.next_frame().await?;
        let Method::ConnectionTuneOk(tune) = expect_method(frame, "connection.tune-ok")? else {
            return Err(conn_error(
                reply_code::COMMAND_INVALID,
                "expected connection.tune-ok",
            ));
        };
        let frame_max = if tune.frame_max == 0 {
            max_frame
        } else {
            tune.frame_max
        };
        if frame_max < codec::FRAME_MIN_SIZE {
            return Err(conn_error(
                reply_code::NOT_ALLOWED,
                format!("frame_max={frame_max} < {} min size", codec::FRAME_MIN_SIZE),
            ));
        }
        if frame_max > max_frame {
            return Err(conn_error(
                reply_code::NOT_ALLOWED,
                format!("frame_max={frame_max} > {max_frame} max size"),
            ));
        }
        self.handle.frame_max.set(frame_max);
        self.channel_max = match tune.channel_max {
            0 => max_channels,
            n => n.min(max_channels),
        };
        self.heartbeat = tune.heartbeat;

        let frame = self.next_frame().await?;
        let Method::ConnectionOpen(open) = expect_method(frame, "connection.open")? else {
            return Err(conn_error(
                reply_code::COMMAND_INVALID,
                "expected connection.open",
            ));
        };
        if !self.shard.vhost_exists(&open.virtual_host) {
            return Err(conn_error(
                reply_code::NOT_ALLOWED,
                format!("vhost {} not found", open.virtual_host),
            ));
        }
        if self
            .shard
            .permission(&self.user, &open.virtual_host)
            .is_none()
        {
            return Err(conn_error(
                reply_code::NOT_ALLOWED,
                format!(
                    "access to vhost '{}' refused for user '{}'",
                    open.virtual_host, self.user
                ),
            ));
        }
        self.vhost = open.virtual_host.clone();
        {
            let mut meta = self.handle.meta.borrow_mut();
            meta.vhost = self.vhost.to_string();
            meta.state = crate::shard::ConnState::Running;
            meta.heartbeat = self.heartbeat;
            meta.channel_max = self.channel_max;
        }
        self.handle
            .send_method(0, &Method::ConnectionOpenOk(ConnectionOpenOk {}));
        // A peer silent for two heartbeat intervals is gone.
        let timeout = (self.heartbeat > 0).then(|| Duration::from_secs(2 * self.heartbeat as u64));
        let _ = self.socket.set_read_timeout(timeout);
        self.phase = super::Phase::Open;
        Ok(())
    }
}
