//! The close handshakes, as RabbitMQ runs them: after either side's
//! `connection.close` the broker keeps reading (and discarding) what the
//! client still sends, for a bounded time, instead of hanging up on it. A
//! client with publishes queued behind its close would otherwise get EPIPE
//! or a reset and never see its close callback.
use std::time::{Duration, Instant};

use super::{truncate_text, Close, Conn, Phase};
use crate::codec::{self, ConnectionClose, ConnectionCloseOk, Frame, Method};
use crate::error::AmqpError;

/// RabbitMQ's bound on a closing connection: 30 s, or the heartbeat
/// interval when one was negotiated and is shorter.
const CLOSING_TIMEOUT: Duration = Duration::from_secs(30);

impl Conn {
    fn closing_timeout(&self) -> Duration {
        match self.heartbeat {
            0 => CLOSING_TIMEOUT,
            s => CLOSING_TIMEOUT.min(Duration::from_secs(s as u64)),
        }
    }

    /// Sends connection.close, then discards whatever arrives until
    /// close-ok (or the client's own close, crossing ours), the socket's
    /// end, or the closing timeout.
    pub(super) async fn close_with(
        &mut self,
        e: AmqpError,
        class_id: u16,
        method_id: u16,
    ) -> Result<(), Close> {
        self.release_all();
        self.handle.send_method(
            0,
            &Method::ConnectionClose(ConnectionClose {
                reply_code: e.code,
                reply_text: codec::ShortStr::from(truncate_text(&e.text)),
                class_id,
                method_id,
            }),
        );
        let limit = self.closing_timeout();
        self.phase = Phase::Closing;
        let _ = self.socket.set_read_timeout(Some(limit));
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            // Whatever frames come meanwhile are dropped unread (RabbitMQ's
            // `closing` state); only a bad frame or the socket's end stops it.
            match self.next_frame().await {
                Ok(Frame::Method {
                    channel: 0,
                    method: Method::ConnectionCloseOk(_),
                }) => break,
                Ok(Frame::Method {
                    channel: 0,
                    method: Method::ConnectionClose(_),
                }) => {
                    self.handle
                        .send_method(0, &Method::ConnectionCloseOk(ConnectionCloseOk {}));
                    break;
                }
                Ok(_) => continue,
                Err(_) => break,
            }
        }
        Err(Close::Error(e, class_id, method_id))
    }

    /// After close-ok went out (and the writer shut down its side): reads
    /// and drops bytes until the client closes the socket, or the closing
    /// timeout passes.
    pub(super) async fn linger_after_close_ok(&mut self) {
        let limit = self.closing_timeout();
        let deadline = Instant::now() + limit;
        let mut sink = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.socket.set_read_timeout(Some(left)).is_err() {
                return;
            }
            match self.socket.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}
