//! `warren-perf sink`: the smallest AMQP server the generator can talk to.
//!
//! It completes the handshake, answers the declarations a run makes with
//! their -ok (counts are always 0), never delivers anything, and discards
//! publishes, scanning frames in place without decoding them. In confirm
//! mode it acks everything read so far with one `multiple` ack per read.
//! The generator's publish rate into it is the generator's own ceiling.

use bytes::{Bytes, BytesMut};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::thread;
use std::time::Duration;
use warren::codec::{
    encode_method, BasicAck, BasicConsumeOk, BasicQosOk, ChannelCloseOk, ChannelOpenOk,
    ConfirmSelectOk, ConnectionCloseOk, ConnectionOpenOk, ConnectionStart, ConnectionTune,
    ExchangeBindOk, ExchangeDeclareOk, ExchangeDeleteOk, FieldTable, FieldValue, Frame, Method,
    QueueBindOk, QueueDeclareOk, QueueDeleteOk, QueuePurgeOk, QueueUnbindOk, PROTOCOL_HEADER,
};

use crate::client::{decode_whole, method_ids, FrameBuf};
use crate::SinkArgs;

static PUBLISHES: AtomicU64 = AtomicU64::new(0);

pub fn run(a: SinkArgs) {
    let listener = TcpListener::bind((a.bind.as_str(), a.port))
        .unwrap_or_else(|e| crate::fatal(&format!("sink: bind {}:{}", a.bind, a.port), e));
    eprintln!("sink: listening on {}", listener.local_addr().unwrap());
    thread::spawn(|| {
        let mut last = 0;
        let mut idle = 0;
        loop {
            thread::sleep(Duration::from_secs(1));
            let n = PUBLISHES.load(Relaxed);
            if n != last {
                eprintln!("sink: {:>10} publishes/s ({} in all)", n - last, n);
                idle = 0;
            } else {
                idle += 1;
                if idle == 1 {
                    eprintln!("sink: idle ({n} publishes in all)");
                }
            }
            last = n;
        }
    });
    if a.exit_after > 0.0 {
        let secs = a.exit_after;
        thread::spawn(move || {
            thread::sleep(Duration::from_secs_f64(secs));
            eprintln!(
                "sink: {} publishes in all; exiting",
                PUBLISHES.load(Relaxed)
            );
            std::process::exit(0);
        });
    }
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        thread::spawn(move || {
            let peer = stream.peer_addr().ok();
            if let Err(e) = serve(stream) {
                if e.kind() != io::ErrorKind::UnexpectedEof {
                    eprintln!("sink: connection {peer:?}: {e}");
                }
            }
        });
    }
}

fn send(stream: &mut TcpStream, out: &mut BytesMut) -> io::Result<()> {
    if !out.is_empty() {
        stream.write_all(out)?;
        out.clear();
    }
    Ok(())
}

fn serve(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut header = [0u8; 8];
    stream.read_exact(&mut header)?;
    if header != PROTOCOL_HEADER {
        stream.write_all(&PROTOCOL_HEADER)?;
        return Ok(());
    }
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut caps = FieldTable::new();
    caps.insert("publisher_confirms", FieldValue::Bool(true));
    caps.insert("basic.nack", FieldValue::Bool(true));
    let mut props = FieldTable::new();
    props.insert(
        "product",
        FieldValue::LongStr(Bytes::from_static(b"warren-perf sink")),
    );
    props.insert("capabilities", FieldValue::Table(caps));
    encode_method(
        &mut out,
        0,
        &Method::ConnectionStart(ConnectionStart {
            version_major: 0,
            version_minor: 9,
            server_properties: props,
            mechanisms: Bytes::from_static(b"PLAIN AMQPLAIN"),
            locales: Bytes::from_static(b"en_US"),
        }),
    );
    send(&mut stream, &mut out)?;

    let mut rb = FrameBuf::new(1 << 20);
    // Per channel: in confirm mode, and the last publish sequence number.
    let mut confirm: Vec<bool> = vec![false; 2048];
    let mut seq: Vec<u64> = vec![0; 2048];
    let mut acked: Vec<u64> = vec![0; 2048];
    let mut confirm_channels: Vec<usize> = Vec::new();
    let mut queue_no = 0u64;
    loop {
        if rb.fill(&mut stream)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let mut publishes = 0u64;
        loop {
            let f = match rb.poll_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            };
            if f.kind != 1 {
                continue; // headers, bodies, heartbeats: discarded
            }
            let ch = f.channel as usize % 2048;
            if method_ids(&rb.buf[f.payload.clone()]) == (60, 40) {
                publishes += 1;
                seq[ch] += 1;
                continue;
            }
            let m = match decode_whole(&rb.buf[f.whole.clone()]) {
                Ok(Frame::Method { method, .. }) => method,
                Ok(_) => continue,
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            };
            let reply = match m {
                Method::ConnectionStartOk(_) => Some(Method::ConnectionTune(ConnectionTune {
                    channel_max: 2047,
                    frame_max: 131_072,
                    heartbeat: 0,
                })),
                Method::ConnectionOpen(_) => Some(Method::ConnectionOpenOk(ConnectionOpenOk {})),
                Method::ConnectionClose(_) => {
                    encode_method(
                        &mut out,
                        0,
                        &Method::ConnectionCloseOk(ConnectionCloseOk {}),
                    );
                    send(&mut stream, &mut out)?;
                    PUBLISHES.fetch_add(publishes, Relaxed);
                    return Ok(());
                }
                Method::ChannelOpen(_) => {
                    confirm[ch] = false;
                    seq[ch] = 0;
                    acked[ch] = 0;
                    Some(Method::ChannelOpenOk(ChannelOpenOk {}))
                }
                Method::ChannelClose(_) => Some(Method::ChannelCloseOk(ChannelCloseOk {})),
                Method::ConfirmSelect(c) => {
                    confirm[ch] = true;
                    if !confirm_channels.contains(&ch) {
                        confirm_channels.push(ch);
                    }
                    seq[ch] = 0;
                    (!c.nowait).then_some(Method::ConfirmSelectOk(ConfirmSelectOk {}))
                }
                Method::ExchangeDeclare(d) => {
                    (!d.no_wait).then_some(Method::ExchangeDeclareOk(ExchangeDeclareOk {}))
                }
                Method::ExchangeDelete(d) => {
                    (!d.no_wait).then_some(Method::ExchangeDeleteOk(ExchangeDeleteOk {}))
                }
                Method::ExchangeBind(d) => {
                    (!d.no_wait).then_some(Method::ExchangeBindOk(ExchangeBindOk {}))
                }
                Method::QueueDeclare(d) => {
                    let queue = if d.queue.is_empty() {
                        queue_no += 1;
                        format!("amq.gen-sink-{queue_no}").into()
                    } else {
                        d.queue.clone()
                    };
                    (!d.no_wait).then_some(Method::QueueDeclareOk(QueueDeclareOk {
                        queue,
                        message_count: 0,
                        consumer_count: 0,
                    }))
                }
                Method::QueueBind(d) => (!d.no_wait).then_some(Method::QueueBindOk(QueueBindOk {})),
                Method::QueueUnbind(_) => Some(Method::QueueUnbindOk(QueueUnbindOk {})),
                Method::QueuePurge(d) => {
                    (!d.no_wait).then_some(Method::QueuePurgeOk(QueuePurgeOk { message_count: 0 }))
                }
                Method::QueueDelete(d) => (!d.no_wait)
                    .then_some(Method::QueueDeleteOk(QueueDeleteOk { message_count: 0 })),
                Method::BasicQos(_) => Some(Method::BasicQosOk(BasicQosOk {})),
                Method::BasicConsume(c) => {
                    (!c.no_wait).then_some(Method::BasicConsumeOk(BasicConsumeOk {
                        consumer_tag: if c.consumer_tag.is_empty() {
                            "amq.ctag-sink".into()
                        } else {
                            c.consumer_tag.clone()
                        },
                    }))
                }
                _ => None,
            };
            if let Some(r) = reply {
                encode_method(&mut out, f.channel, &r);
            }
        }
        for &ch in &confirm_channels {
            if confirm[ch] && seq[ch] > acked[ch] {
                encode_method(
                    &mut out,
                    ch as u16,
                    &Method::BasicAck(BasicAck {
                        delivery_tag: seq[ch],
                        multiple: true,
                    }),
                );
                acked[ch] = seq[ch];
            }
        }
        PUBLISHES.fetch_add(publishes, Relaxed);
        send(&mut stream, &mut out)?;
    }
}
