//! One client connection: handshake, the frame loop, the writer and
//! heartbeats. The connection lives on the shard that accepted it.
//!
//! Two tasks per connection: the reader (this module's [`serve`]), which
//! owns the protocol state machine, and the writer, which sends whatever
//! accumulated in the connection's output buffer in one `write` per wakeup.
mod auth;
mod channel;
mod closing;
mod handle;
mod handshake;
mod output;

use bytes::BytesMut;
use futures_lite::FutureExt;
use std::rc::Rc;
use std::time::{Duration, Instant};

pub use handle::ConnHandle;

use crate::codec::{self, reply_code, ConnectionCloseOk, Frame, Method};
use crate::error::AmqpError;
use crate::ids::ConnId;
use crate::runtime::net::ConnSocket;
use crate::shard::{ConnectionClosed, Shard};
use channel::Channel;

/// A frame whose handling may wait.
enum SlowFrame {
    Connection(Method),
    Channel(channel::SlowMethod),
}

/// How a connection ends.
#[derive(Debug)]
pub(crate) enum Close {
    /// The peer went away or the socket failed.
    Gone,
    /// We closed it with connection.close (after any close-ok exchange).
    Error(AmqpError, u16, u16),
    /// The client asked to close and got close-ok.
    Done,
}

impl From<std::io::Error> for Close {
    fn from(_: std::io::Error) -> Self {
        Close::Gone
    }
}

/// Serves one accepted socket until it closes. A panic here is not caught:
/// connection code changes state the whole shard shares (queues, consumers,
/// the topology replica), so the process ends instead (see
/// `server::exit_on_panic`) and recovery starts it from the disk.
pub async fn serve(shard: Rc<Shard>, socket: ConnSocket) {
    socket.set_nodelay();
    let id = ConnId(shard.unique_id());
    let handle = ConnHandle::new(id, shard.clone(), socket.clone());
    shard.register_conn(id, handle.clone());
    let writer_task = crate::runtime::spawn_joinable(write_loop(handle.clone(), socket.clone()));
    let mut conn = Conn {
        shard: shard.clone(),
        handle: handle.clone(),
        socket,
        buf: BytesMut::new(),
        scratch: vec![0; FIRST_READ_CHUNK],
        vhost: codec::ShortStr::from_static("/"),
        user: String::new(),
        impersonator: false,
        channel_max: 2047,
        heartbeat: 0,
        channels: ahash::AHashMap::new(),
        confirm_dirty: Vec::new(),
        declared_exclusive: false,
        blocked_notify: false,
        published: false,
        phase: Phase::Handshake,
    };
    let outcome = conn.session().await;
    match &outcome {
        Ok(()) | Err(Close::Done) | Err(Close::Gone) => {}
        Err(Close::Error(e, ..)) => tracing::info!(conn = %id, "closed connection: {}", e.text),
    }
    let linger = matches!(outcome, Ok(()) | Err(Close::Done));
    conn.release_all();
    if conn.declared_exclusive {
        let op = ConnectionClosed {
            conn: shard.conn_ref(id),
        };
        let _ = Box::pin(shard.leader(op)).await;
    }
    shard.unregister_conn(id);
    handle.closed.set(true);
    handle.write_ready.notify();
    writer_task.await;
    shard.schedule_pump();
    if linger {
        // The writer sent close-ok; as RabbitMQ, leave closing to the
        // client and read on meanwhile, so its queued writes never meet a
        // reset.
        conn.linger_after_close_ok().await;
    }
    conn.socket.shutdown_write();
}

/// Writes the output buffer whenever something is in it: all frames that
/// became ready during one run of the reactor go out in a single write.
async fn write_loop(handle: Rc<ConnHandle>, socket: ConnSocket) {
    // Grows with use; an idle connection holds no output buffer.
    let mut spare = output::Output::default();
    loop {
        let pending = handle.out.borrow().is_empty();
        if pending {
            if handle.closed.get() {
                break;
            }
            handle.write_ready.wait().await;
            continue;
        }
        let mut out = std::mem::replace(&mut *handle.out.borrow_mut(), spare);
        let bytes = out.total_len() as u64;
        let written = if out.contiguous() {
            socket.write_all(&out).await
        } else {
            socket.write_all_vectored(&out.slices()).await
        };
        if written.is_err() {
            handle.closed.set(true);
            // Deliveries that could not be written still return their
            // credit; the channels' release requeues them.
            handle.return_credits();
            break;
        }
        handle.last_write.set(Instant::now());
        handle.stats.send_oct.add(bytes);
        handle.stats.send_cnt.inc();
        handle.return_credits();
        // Keep a big buffer for the next burst; a small write's buffer goes,
        // so idle connections hold none.
        spare = if out.capacity() >= 16 * 1024 {
            out.clear();
            out
        } else {
            output::Output::default()
        };
    }
}

pub(crate) struct Conn {
    shard: Rc<Shard>,
    handle: Rc<ConnHandle>,
    socket: ConnSocket,
    buf: BytesMut,
    /// Where reads land: small for a quiet connection, grown to
    /// `READ_CHUNK` once a read fills it.
    scratch: Vec<u8>,
    vhost: codec::ShortStr,
    /// The authenticated user.
    user: String,
    /// The user may publish with another user's `user_id`.
    impersonator: bool,
    channel_max: u16,
    heartbeat: u16,
    /// Boxed: a channel is ~600 bytes and the map allocates room for
    /// several, which idle connections would pay for.
    channels: ahash::AHashMap<u16, Box<Channel>>,
    /// Channels with publisher confirms waiting to be sent.
    confirm_dirty: Vec<u16>,
    declared_exclusive: bool,
    /// The client takes connection.blocked/unblocked (its capabilities).
    blocked_notify: bool,
    /// A publish completed since the frame loop last looked.
    published: bool,
    /// What a read timeout means now (for its log line).
    phase: Phase,
}

/// Where a connection is in its life, as far as a read timeout goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Before connection.open-ok: the handshake's time limit.
    Handshake,
    /// Open: a read timeout is two missed heartbeat intervals.
    Open,
    /// We sent connection.close and wait for close-ok.
    Closing,
}

const READ_CHUNK: usize = 64 * 1024;
/// Frames at least this big are read in place (see `fill_large`).
const LARGE_FRAME: usize = 16 * 1024;
/// Idle connections are the common case (S8: 10,000 of them); they should
/// cost kilobytes, not the 64 KiB a busy one reads at once.
const FIRST_READ_CHUNK: usize = 512;

impl Conn {
    async fn session(&mut self) -> Result<(), Close> {
        // Boxed (like every rare path): a task is as big as its largest
        // await state, and idle connections should stay small.
        match Box::pin(self.handshake()).await {
            Ok(()) => {}
            Err(Close::Error(e, class_id, method_id)) => {
                return Box::pin(self.close_with(e, class_id, method_id)).await;
            }
            Err(other) => return Err(self.forced_close().unwrap_or(other)),
        }
        self.spawn_heartbeat();
        match self.frame_loop().await {
            Err(Close::Error(e, class_id, method_id)) => {
                Box::pin(self.close_with(e, class_id, method_id)).await
            }
            Err(other) => Err(self.forced_close().unwrap_or(other)),
            Ok(()) => Ok(()),
        }
    }

    /// An operator closed this connection (its read was ended to wake the
    /// reader): send connection.close. Nothing can be read any more, so
    /// the close-ok is not awaited.
    fn forced_close(&mut self) -> Option<Close> {
        let (code, text) = self.handle.forced.borrow().clone()?;
        tracing::info!(conn = %self.handle.id, "closing connection: {text}");
        let text = AmqpError::new(code, text).text;
        self.handle.send_method(
            0,
            &Method::ConnectionClose(codec::ConnectionClose {
                reply_code: code,
                reply_text: codec::ShortStr::from(truncate_text(&text)),
                class_id: 0,
                method_id: 0,
            }),
        );
        Some(Close::Gone)
    }

    /// Reads more bytes; `Close::Gone` on EOF or on a read timeout (a peer
    /// silent for two heartbeat intervals).
    async fn fill(&mut self) -> Result<(), Close> {
        // Only called when `buf` holds no complete frame, so a frame whose
        // header has arrived is within frame_max (decode_frame checked).
        if let Some(total) = codec::frame_len(&self.buf) {
            if total >= LARGE_FRAME && total > self.buf.len() {
                return self.fill_large(total).await;
            }
        }
        // Read into a reused scratch buffer and append what arrived: cheaper
        // than zeroing the BytesMut's spare capacity before every read.
        let n = recv(
            &self.socket,
            self.handle.id,
            self.phase,
            &mut self.scratch[..],
        )
        .await?;
        self.handle.stats.recv_oct.add(n as u64);
        self.handle.stats.recv_cnt.inc();
        if self.buf.is_empty() && n < FIRST_READ_CHUNK {
            // A quiet connection: a fresh, right-sized buffer rather than
            // keeping a big one around between rare reads.
            self.buf = BytesMut::from(&self.scratch[..n]);
        } else {
            self.buf.extend_from_slice(&self.scratch[..n]);
        }
        if n == self.scratch.len() && n < READ_CHUNK {
            self.scratch.resize(READ_CHUNK, 0);
        }
        Ok(())
    }

    /// Reads the rest of a big frame (a large message body) straight into a
    /// buffer sized for it. Through `scratch` it was copied once more, and
    /// again each time `buf` grew: 11% of a shard moving 64 KiB messages.
    async fn fill_large(&mut self, total: usize) -> Result<(), Close> {
        if self.buf.capacity() < total {
            let mut big = BytesMut::with_capacity(total);
            big.extend_from_slice(&self.buf);
            self.buf = big;
        }
        let have = self.buf.len();
        // Zeroing only the missing part costs less than the copy it saves.
        self.buf.resize(total, 0);
        let got = recv(
            &self.socket,
            self.handle.id,
            self.phase,
            &mut self.buf[have..],
        )
        .await;
        if let Ok(n) = got {
            self.handle.stats.recv_oct.add(n as u64);
            self.handle.stats.recv_cnt.inc();
        }
        self.buf.truncate(have + *got.as_ref().unwrap_or(&0));
        got.map(|_| ())
    }

    /// The largest frame we accept: the negotiated size plus the 8 bytes of
    /// slack RabbitMQ allows, for clients that count frame_max as payload.
    fn frame_max(&self) -> u32 {
        self.handle.frame_max.get().saturating_add(8)
    }

    /// Reads the next frame, or fails the connection.
    async fn next_frame(&mut self) -> Result<Frame, Close> {
        loop {
            let frame_max = self.frame_max();
            match codec::decode_frame(&mut self.buf, frame_max) {
                Ok(Some(f)) => return Ok(f),
                Ok(None) => self.fill().await?,
                Err(e) => {
                    return Err(Close::Error(
                        AmqpError::new(e.code, e.text),
                        e.class_id,
                        e.method_id,
                    ))
                }
            }
        }
    }

    async fn frame_loop(&mut self) -> Result<(), Close> {
        let alarms = crate::alarm::local();
        loop {
            // Backpressure: while another shard's mailbox is backed up, stop
            // reading, so TCP slows the publisher down.
            if self.shard.congested() {
                self.shard.schedule_pump();
                self.shard.until_uncongested().await;
            }
            // Handle every complete frame already buffered, then flush
            // confirms once for the whole batch.
            loop {
                let frame_max = self.frame_max();
                let frame = match codec::decode_frame(&mut self.buf, frame_max) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => {
                        return Err(Close::Error(
                            AmqpError::new(e.code, e.text),
                            e.class_id,
                            e.method_id,
                        ))
                    }
                };
                let handled = match self.handle_frame(frame) {
                    Ok(None) => Ok(()),
                    Ok(Some(slow)) => self.handle_slow_frame(slow).await,
                    Err(e) => Err(e),
                };
                match handled {
                    Ok(()) => {}
                    Err(Close::Done) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            self.flush_confirms();
            if self.handle.store_failed.get() {
                return Err(conn_error(
                    reply_code::INTERNAL_ERROR,
                    "a queue could not store a message published here (see the broker's log)",
                ));
            }
            // A resource alarm blocks connections that publish while it is
            // set (RabbitMQ's rule: consumers keep going).
            if std::mem::take(&mut self.published) && alarms.any() {
                self.blocked_by_alarm(&alarms).await?;
            }
            // Route what this batch published now (nothing is borrowed
            // here), then let the shard's other tasks and its reactor run:
            // a read from a busy socket is ready at once, so a flat-out
            // publisher would otherwise keep the task queue busy and the
            // reactor (socket readiness, mesh wakeups: credits, acks) would
            // only be polled at the runtime's 100 ms preemption.
            self.shard.pump();
            crate::runtime::yield_to_reactor().await;
            self.fill().await?;
        }
    }

    /// Stops reading this connection until every alarm clears, telling a
    /// client that asked for it. Its deliveries, confirms and heartbeats
    /// still go out. Warren's own heartbeat timeout is suspended meanwhile
    /// (it is the read timeout, and nothing is read), as in RabbitMQ.
    async fn blocked_by_alarm(&mut self, alarms: &crate::alarm::Alarms) -> Result<(), Close> {
        tracing::debug!(conn = %self.handle.id, "blocked by a resource alarm");
        if self.blocked_notify {
            self.handle.send_method(
                0,
                &Method::ConnectionBlocked(codec::ConnectionBlocked {
                    reason: codec::ShortStr::from_static(alarms.reason()),
                }),
            );
        }
        self.handle.meta.borrow_mut().state = crate::shard::ConnState::Blocked;
        while alarms.any() {
            // The writer marks a dead socket closed: stop waiting then; an
            // operator's close, too.
            if self.handle.closed.get() || self.handle.forced.borrow().is_some() {
                return Err(Close::Gone);
            }
            alarms
                .changed()
                .or(crate::runtime::sleep(Duration::from_secs(1)))
                .await;
        }
        self.handle.meta.borrow_mut().state = crate::shard::ConnState::Running;
        tracing::debug!(conn = %self.handle.id, "unblocked");
        if self.blocked_notify {
            self.handle.send_method(
                0,
                &Method::ConnectionUnblocked(codec::ConnectionUnblocked {}),
            );
        }
        Ok(())
    }

    /// Handles one frame. Content frames and per-message methods (nearly
    /// every frame) are handled synchronously: the frame is not moved into
    /// a future, and no future is built (those moves were ~20% of a
    /// publishing shard).
    fn handle_frame(&mut self, frame: Frame) -> Result<Option<SlowFrame>, Close> {
        match frame {
            Frame::Heartbeat { channel: 0 } => Ok(None),
            Frame::Heartbeat { channel } => Err(conn_error(
                reply_code::UNEXPECTED_FRAME,
                format!("heartbeat frame on channel {channel}"),
            )),
            Frame::Method { channel: 0, method } => Ok(Some(SlowFrame::Connection(method))),
            Frame::Method { channel, method } => Ok(self
                .channel_method(channel, method)?
                .map(SlowFrame::Channel)),
            Frame::Header { channel, header } => {
                self.content_header(channel, header).map(|()| None)
            }
            Frame::Body { channel, payload } => self.content_body(channel, payload).map(|()| None),
        }
    }

    async fn handle_slow_frame(&mut self, slow: SlowFrame) -> Result<(), Close> {
        match slow {
            SlowFrame::Connection(method) => Box::pin(self.connection_method(method)).await,
            SlowFrame::Channel(m) => self.channel_method_slow(m).await,
        }
    }

    async fn connection_method(&mut self, method: Method) -> Result<(), Close> {
        match method {
            Method::ConnectionClose(_) => {
                self.release_all();
                self.handle
                    .send_method(0, &Method::ConnectionCloseOk(ConnectionCloseOk {}));
                Err(Close::Done)
            }
            Method::ConnectionCloseOk(_) => Err(Close::Gone),
            Method::ConnectionUpdateSecret(m) => {
                // The new secret must still authenticate the user (for the
                // internal database, it is the password); the user and its
                // rights stay those of the login.
                let secret = String::from_utf8_lossy(&m.new_secret).into_owned();
                let valid = self
                    .shard
                    .with_topology(|t| t.access.login(&self.user, &secret, false, false).is_ok());
                if !valid {
                    return Err(Close::Error(
                        AmqpError::new(
                            reply_code::NOT_ALLOWED,
                            "New secret was refused by one of the backends",
                        ),
                        codec::ConnectionUpdateSecret::CLASS_ID,
                        codec::ConnectionUpdateSecret::METHOD_ID,
                    ));
                }
                tracing::info!(
                    conn = %self.handle.id,
                    user = %self.user,
                    reason = %m.reason,
                    "connection.update-secret: secret updated"
                );
                self.handle.send_method(
                    0,
                    &Method::ConnectionUpdateSecretOk(codec::ConnectionUpdateSecretOk {}),
                );
                Ok(())
            }
            other => Err(Close::Error(
                AmqpError::command_invalid(format!(
                    "unexpected method {} on channel 0",
                    other.name()
                )),
                other.class_id(),
                other.method_id(),
            )),
        }
    }

    fn spawn_heartbeat(&self) {
        if self.heartbeat == 0 {
            return;
        }
        let interval = Duration::from_secs(self.heartbeat as u64);
        let handle = self.handle.clone();
        crate::runtime::spawn(async move {
            loop {
                crate::runtime::sleep(interval / 2).await;
                if handle.closed.get() {
                    break;
                }
                if handle.last_write.get().elapsed() >= interval / 2 {
                    codec::encode_heartbeat(&mut handle.out.borrow_mut());
                    handle.write_ready.notify();
                }
            }
        });
    }

    /// Closes every channel's claims: unacked messages go back, consumers
    /// are removed.
    fn release_all(&mut self) {
        let numbers: Vec<u16> = self.channels.keys().copied().collect();
        for n in numbers {
            self.release_channel(n);
            self.forget_channel(n);
        }
    }
}

/// One read from the socket; `Close::Gone` on EOF, errors and read timeouts
/// (logged as what they mean in `phase`).
async fn recv(
    socket: &ConnSocket,
    conn: ConnId,
    phase: Phase,
    dst: &mut [u8],
) -> Result<usize, Close> {
    match socket.read(dst).await {
        Ok(0) => Err(Close::Gone),
        Ok(n) => Ok(n),
        Err(e) => {
            if e.kind() == std::io::ErrorKind::TimedOut {
                match phase {
                    Phase::Handshake => tracing::info!(%conn, "handshake timed out, closing"),
                    Phase::Open => tracing::info!(%conn, "missed heartbeats from client, closing"),
                    Phase::Closing => {
                        tracing::info!(%conn, "connection.close-ok did not come in time, closing")
                    }
                }
            }
            Err(Close::Gone)
        }
    }
}

/// AMQP reply texts are short strings: a longer one is cut to 252 bytes
/// and marked with "...", as RabbitMQ does.
fn truncate_text(s: &str) -> String {
    if s.len() <= 255 {
        return s.to_string();
    }
    let mut end = 252;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

pub(crate) fn conn_error(code: u16, text: impl Into<String>) -> Close {
    Close::Error(AmqpError::new(code, text), 0, 0)
}

#[cfg(test)]
mod tests {
    use super::truncate_text;

    #[test]
    fn long_reply_texts_are_cut_with_an_ellipsis() {
        assert_eq!(truncate_text("short"), "short");
        let exact = "x".repeat(255);
        assert_eq!(truncate_text(&exact), exact);
        let long = "é".repeat(200); // 400 bytes, 2 per char
        let cut = truncate_text(&long);
        assert!(cut.len() <= 255 && cut.ends_with("..."), "{}", cut.len());
        assert_eq!(cut, format!("{}...", "é".repeat(126)));
    }
}
