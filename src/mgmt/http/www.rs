//! The management web page: static files compiled into the binary (no
//! files to install, nothing fetched from the network). It talks to the
//! API at `/api` like any other client.
use bytes::Bytes;

use super::{text_response, HttpResponse, Method};

/// Path, content type, contents.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "/index.html",
        "text/html; charset=utf-8",
        include_bytes!("../www/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../www/app.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_bytes!("../www/style.css"),
    ),
];

/// Answers a request for the page's files.
pub fn serve(path: &str, method: Method) -> HttpResponse {
    if !matches!(method, Method::Get | Method::Head) {
        return text_response(
            405,
            "text/plain",
            Bytes::from_static(b"Method Not Allowed\n"),
        );
    }
    let path = if path == "/" { "/index.html" } else { path };
    match FILES.iter().find(|(p, _, _)| *p == path) {
        Some((_, ct, body)) => text_response(200, ct, Bytes::from_static(body)),
        None => text_response(404, "text/plain", Bytes::from_static(b"Not Found\n")),
    }
}
