//! Protocol header, start/start-ok, tune/tune-ok and open/open-ok.
use std::time::Duration;

use super::auth::{self, AuthError};
use super::{conn_error, Close, Conn};
use crate::codec::{
    self, reply_code, ConnectionOpenOk, ConnectionStart, ConnectionTune, FieldTable, FieldValue,
    Frame, Method,
};
use crate::error::AmqpError;

pub const CHANNEL_MAX: u16 = 2047;
pub const FRAME_MAX: u32 = 131_072;
pub const HEARTBEAT: u16 = 60;
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
            // Tell the client which protocol we speak, then hang up.
            let mut w = self.handle.out.borrow_mut();
            w.extend_from_slice(&codec::PROTOCOL_HEADER);
            drop(w);
            self.handle.write_ready.notify();
            return Err(Close::Gone);
        }
        let _ = self.buf.split_to(8);
        self.handle.frame_max.set(FRAME_MAX);
        self.handle.send_method(
            0,
            &Method::ConnectionStart(ConnectionStart {
                version_major: 0,
                version_minor: 9,
                server_properties: server_properties(),
                mechanisms: bytes::Bytes::from_static(auth::MECHANISMS.as_bytes()),
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
        match auth::authenticate(&ok.mechanism, &ok.response, peer) {
            Ok(user) => self.user = user,
            Err(AuthError::UnknownMechanism) => {
                return Err(conn_error(
                    reply_code::COMMAND_INVALID,
                    format!("unknown authentication mechanism '{}'", ok.mechanism),
                ))
            }
            Err(e) => {
                let text = if e == AuthError::LoopbackOnly {
                    "User can only log in via localhost".to_string()
                } else {
                    format!(
                        "Login was refused using authentication mechanism {}. For details see the broker logfile.",
                        ok.mechanism
                    )
                };
                return Err(Close::Error(AmqpError::access_refused(text), 0, 0));
            }
        }
        if let Some(FieldValue::Table(caps)) = ok.client_properties.get("capabilities") {
            let on = |k: &str| caps.get(k).and_then(FieldValue::as_bool).unwrap_or(false);
            self.handle.cancel_notify.set(on("consumer_cancel_notify"));
            self.blocked_notify = on("connection.blocked");
        }

        self.handle.send_method(
            0,
            &Method::ConnectionTune(ConnectionTune {
                channel_max: CHANNEL_MAX,
                frame_max: FRAME_MAX,
                heartbeat: HEARTBEAT,
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
            FRAME_MAX
        } else {
            tune.frame_max
        };
        if frame_max < codec::FRAME_MIN_SIZE {
            return Err(conn_error(
                reply_code::NOT_ALLOWED,
                format!("frame_max={frame_max} < {} min size", codec::FRAME_MIN_SIZE),
            ));
        }
        if frame_max > FRAME_MAX {
            return Err(conn_error(
                reply_code::NOT_ALLOWED,
                format!("frame_max={frame_max} > {FRAME_MAX} max size"),
            ));
        }
        self.handle.frame_max.set(frame_max);
        self.channel_max = match tune.channel_max {
            0 => CHANNEL_MAX,
            n => n.min(CHANNEL_MAX),
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
        self.vhost = open.virtual_host.clone();
        self.handle
            .send_method(0, &Method::ConnectionOpenOk(ConnectionOpenOk {}));
        // A peer silent for two heartbeat intervals is gone.
        let timeout = (self.heartbeat > 0).then(|| Duration::from_secs(2 * self.heartbeat as u64));
        let _ = self.socket.set_read_timeout(timeout);
        self.phase = super::Phase::Open;
        Ok(())
    }
}
