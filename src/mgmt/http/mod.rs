//! The management HTTP API and web page (`management.tcp.port`, 15672) and
//! the Prometheus endpoint (`prometheus.tcp.port`, 15692), RabbitMQ's, and
//! both over HTTPS (`management.ssl.port`, `prometheus.ssl.port`): the same
//! service behind a rustls handshake (futures-rustls over the same socket),
//! with the shard's current certificate (`mgmt::certs`).
//!
//! HTTP/1.1 is hyper's: it runs on shard 0's executor, beside the control
//! socket, over the runtime's socket and timer (`io.rs`). Requests fan out
//! to the shards through the same typed calls as `warren ctl`; nothing
//! here is on the message path. A request's work is cut with yields
//! (`runtime::yield_to_reactor`) where it walks long lists, so shard 0's
//! AMQP connections are not held up behind it.
mod api;
mod auth;
mod io;
mod lists;
mod objects;
mod request;
mod www;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::Value;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use super::certs::Listener as TlsListener;
use super::control::Context;
use super::stats::Sampler;
use crate::runtime::net::{SoleListener, Stream};
use crate::shard::Shard;
pub use request::{ApiError, ApiRequest, ApiResponse, Method};

/// Largest request body: a definitions import can be big.
const BODY_LIMIT: usize = 64 << 20;
/// A client has this long to send its request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Which service a listener gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Management,
    Prometheus,
}

/// A client has this long to finish its TLS handshake on an HTTPS port
/// (ranch's default handshake timeout, which RabbitMQ's listeners use).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds the management and Prometheus listeners (HTTP and HTTPS) that
/// `ctx` names and serves them on this shard. Fails when a port cannot be
/// bound, as the broker does for its AMQP port.
pub fn start(shard: Rc<Shard>, ctx: Rc<Context>) -> Result<(), String> {
    let listeners = [
        (ctx.management, Service::Management, None),
        (ctx.prometheus, Service::Prometheus, None),
        (
            ctx.management_tls,
            Service::Management,
            Some(TlsListener::Management),
        ),
        (
            ctx.prometheus_tls,
            Service::Prometheus,
            Some(TlsListener::Prometheus),
        ),
    ];
    if listeners.iter().all(|(a, _, _)| a.is_none()) {
        return Ok(());
    }
    // The rates' 5 s samples, for the API (Prometheus reads counters).
    let stats = crate::mgmt::stats::start(shard.clone());
    for (addr, service, tls) in listeners {
        let Some(addr) = addr else { continue };
        let scheme = if tls.is_some() { "HTTPS" } else { "HTTP" };
        let listener = SoleListener::bind(addr).map_err(|e| {
            let what = match service {
                Service::Management => "the management API",
                Service::Prometheus => "the Prometheus endpoint",
            };
            format!("cannot listen on {addr} for {what} over {scheme}: {e}")
        })?;
        tracing::info!("serving {service:?} over {scheme} on {addr}");
        let (shard, ctx, stats) = (shard.clone(), ctx.clone(), stats.clone());
        crate::runtime::spawn(accept_loop(listener, service, tls, shard, ctx, stats));
    }
    Ok(())
}

async fn accept_loop(
    listener: SoleListener,
    service: Service,
    tls: Option<TlsListener>,
    shard: Rc<Shard>,
    ctx: Rc<Context>,
    stats: Rc<Sampler>,
) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let (shard, ctx, stats) = (shard.clone(), ctx.clone(), stats.clone());
                match tls {
                    None => {
                        crate::runtime::spawn(serve_connection(stream, service, shard, ctx, stats))
                    }
                    Some(l) => {
                        crate::runtime::spawn(serve_tls(stream, l, service, shard, ctx, stats))
                    }
                }
            }
            Err(e) => {
                if crate::runtime::net::stopped_listening() {
                    return;
                }
                tracing::warn!("{service:?} listener: accept failed: {e}");
                crate::runtime::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// An HTTPS connection: the TLS handshake within [`HANDSHAKE_TIMEOUT`]
/// with this shard's current certificate, then HTTP as on the plain port.
/// A failed handshake (a plain HTTP client, an untrusted or missing client
/// certificate, a stall) is one log line and a closed socket.
async fn serve_tls(
    stream: Stream,
    listener: TlsListener,
    service: Service,
    shard: Rc<Shard>,
    ctx: Rc<Context>,
    stats: Rc<Sampler>,
) {
    use futures_lite::FutureExt;
    let peer = stream.peer_addr().ok();
    let Some(config) = super::certs::current(listener) else {
        tracing::error!(
            "{service:?} HTTPS connection from {peer:?} without a certificate installed, closing"
        );
        return;
    };
    let handshake = async {
        futures_rustls::TlsAcceptor::from(config)
            .accept(stream)
            .await
    };
    let expired = async {
        crate::runtime::sleep(HANDSHAKE_TIMEOUT).await;
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("did not finish within {HANDSHAKE_TIMEOUT:?}"),
        ))
    };
    match handshake.or(expired).await {
        Ok(tls) => serve_http(tls, peer, service, shard, ctx, stats).await,
        // Dropping the stream closes the socket.
        Err(e) => tracing::warn!(
            "{service:?} HTTPS connection from {}: TLS handshake failed, closing: {e}",
            peer.map(|p| p.to_string()).unwrap_or_else(|| "?".into())
        ),
    }
}

async fn serve_connection(
    stream: Stream,
    service: Service,
    shard: Rc<Shard>,
    ctx: Rc<Context>,
    stats: Rc<Sampler>,
) {
    let peer = stream.peer_addr().ok();
    serve_http(stream, peer, service, shard, ctx, stats).await
}

/// HTTP/1.1 on `stream` (plain, or TLS after its handshake).
async fn serve_http<S>(
    stream: S,
    peer: Option<SocketAddr>,
    service: Service,
    shard: Rc<Shard>,
    ctx: Rc<Context>,
    stats: Rc<Sampler>,
) where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let (shard, ctx, stats) = (shard.clone(), ctx.clone(), stats.clone());
        async move {
            let r = handle(req, peer, service, shard, ctx, stats).await;
            Ok::<_, std::convert::Infallible>(r)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(io::ShardTimer)
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(true);
    if let Err(e) = builder.serve_connection(io::HyperIo(stream), svc).await {
        tracing::debug!("HTTP connection from {peer:?}: {e}");
    }
}

type HttpResponse = hyper::Response<Full<Bytes>>;

async fn handle(
    req: hyper::Request<Incoming>,
    peer: Option<SocketAddr>,
    service: Service,
    shard: Rc<Shard>,
    ctx: Rc<Context>,
    stats: Rc<Sampler>,
) -> HttpResponse {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, BODY_LIMIT).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return json_response(
                &ApiError::BadRequest("request body too large or cut off".into()),
                None,
            )
        }
    };
    let path = parts.uri.path();
    let method = match parts.method {
        hyper::Method::GET => Method::Get,
        hyper::Method::HEAD => Method::Head,
        hyper::Method::PUT => Method::Put,
        hyper::Method::POST => Method::Post,
        hyper::Method::DELETE => Method::Delete,
        hyper::Method::OPTIONS => Method::Options,
        _ => Method::Other,
    };
    match service {
        Service::Prometheus => prometheus(path, method, &shard, &ctx).await,
        Service::Management => {
            let Some(rest) = path.strip_prefix("/api") else {
                return www::serve(path, method);
            };
            let header = |name: &str| {
                parts
                    .headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let api_req = ApiRequest {
                method,
                segments: segments(rest),
                query: query(parts.uri.query().unwrap_or("")),
                authorization: header("authorization"),
                reason: header("x-reason"),
                body,
                peer,
            };
            match api::route(&shard, &ctx, &stats, api_req).await {
                Ok(r) => ok_response(r).await,
                Err(e) => json_response(&e, None),
            }
        }
    }
}

/// Work on long lists gives the reactor a turn every this many items, so
/// AMQP connections on this shard are served while a big answer is built.
const ITEMS_PER_TURN: usize = 32;

/// Call once per item of a long loop.
pub(super) async fn breathe(i: usize) {
    if i % ITEMS_PER_TURN == ITEMS_PER_TURN - 1 {
        crate::runtime::yield_to_reactor().await;
    }
}

/// JSON text of `v`; an array (or a page's `items`) item by item with
/// turns for the reactor between them.
async fn to_json(v: &Value) -> Vec<u8> {
    let (items, page) = match v {
        Value::Array(a) => (a, None),
        Value::Object(o) => match o.get("items") {
            Some(Value::Array(a)) => (a, Some(o)),
            _ => return serde_json::to_vec(v).unwrap_or_default(),
        },
        _ => return serde_json::to_vec(v).unwrap_or_default(),
    };
    let mut out = Vec::with_capacity(items.len() * 256);
    if let Some(o) = page {
        out.push(b'{');
        for (k, val) in o.iter().filter(|(k, _)| *k != "items") {
            let _ = serde_json::to_writer(&mut out, k);
            out.push(b':');
            let _ = serde_json::to_writer(&mut out, val);
            out.push(b',');
        }
        out.extend_from_slice(b"\"items\":");
    }
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut out, item);
        breathe(i).await;
    }
    out.push(b']');
    if page.is_some() {
        out.push(b'}');
    }
    out
}

/// `/api/queues/%2F/q` → `["queues", "/", "q"]`.
fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(decode)
        .collect()
}

fn query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(&k.replace('+', " ")), decode(&v.replace('+', " ")))
        })
        .collect()
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

async fn ok_response(r: ApiResponse) -> HttpResponse {
    let mut b = hyper::Response::builder()
        .status(r.status)
        .header("cache-control", "no-cache");
    if let Some(loc) = &r.location {
        b = b.header("location", loc.as_str());
    }
    let body = match r.body {
        Some(v) => {
            b = b.header("content-type", "application/json");
            Bytes::from(to_json(&v).await)
        }
        None => Bytes::new(),
    };
    b.body(Full::new(body)).unwrap_or_else(|_| internal())
}

fn json_response(e: &ApiError, _: Option<()>) -> HttpResponse {
    let mut b = hyper::Response::builder()
        .status(e.status())
        .header("content-type", "application/json")
        .header("cache-control", "no-cache");
    if matches!(e, ApiError::NoCredentials | ApiError::LoginFailed(_)) {
        b = b.header("www-authenticate", "Basic realm=\"RabbitMQ Management\"");
    }
    if let ApiError::MethodNotAllowed(allow) = e {
        b = b.header("allow", *allow);
    }
    let body = match e.body() {
        Some(v) => Bytes::from(serde_json::to_vec(&v).unwrap_or_default()),
        None => Bytes::new(),
    };
    b.body(Full::new(body)).unwrap_or_else(|_| internal())
}

fn internal() -> HttpResponse {
    let mut r = hyper::Response::new(Full::new(Bytes::new()));
    *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
    r
}

fn text_response(status: u16, content_type: &'static str, body: Bytes) -> HttpResponse {
    hyper::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body))
        .unwrap_or_else(|_| internal())
}

async fn prometheus(path: &str, method: Method, shard: &Rc<Shard>, ctx: &Context) -> HttpResponse {
    if !matches!(method, Method::Get | Method::Head) {
        return text_response(
            405,
            "text/plain",
            Bytes::from_static(b"Method Not Allowed\n"),
        );
    }
    let per_object = match path.trim_end_matches('/') {
        "/metrics" | "" => false,
        "/metrics/per-object" => true,
        _ => return text_response(404, "text/plain", Bytes::from_static(b"Not Found\n")),
    };
    let text = super::prometheus::render(shard, ctx, per_object).await;
    text_response(200, super::prometheus::CONTENT_TYPE, Bytes::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_json_is_serde_json() {
        let page = serde_json::json!({"page": 1, "items": [{"a": 1}, {"b": [2, 3]}], "x": "y"});
        let list = serde_json::json!([1, "two", {"three": 3}]);
        for v in [page, list, serde_json::json!({"k": "v"})] {
            let text = futures_lite::future::block_on(to_json(&v));
            let back: Value = serde_json::from_slice(&text).unwrap();
            assert_eq!(back, v);
        }
    }

    #[test]
    fn paths_and_queries_are_decoded() {
        assert_eq!(segments("/queues/%2F/my%20q/"), ["queues", "/", "my q"]);
        assert_eq!(
            query("columns=name,messages&name=a+b&x"),
            vec![
                ("columns".to_string(), "name,messages".to_string()),
                ("name".to_string(), "a b".to_string()),
                ("x".to_string(), String::new()),
            ]
        );
    }
}
