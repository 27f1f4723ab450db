//! One API request and its answer, apart from hyper: the path as decoded
//! segments, the query, the body; the answer as a status and JSON. Errors
//! carry RabbitMQ's status codes and bodies.
use bytes::Bytes;
use serde_json::{json, Value};
use std::net::SocketAddr;

/// The HTTP methods the API serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Put,
    Post,
    Delete,
    Options,
    Other,
}

/// One request to the API.
#[derive(Debug)]
pub struct ApiRequest {
    pub method: Method,
    /// The path's segments after `/api`, %-decoded (`%2F` is `/`).
    pub segments: Vec<String>,
    /// The query's pairs, %-decoded, in order.
    pub query: Vec<(String, String)>,
    /// `Authorization`, if sent.
    pub authorization: Option<String>,
    /// `X-Reason` (a connection's close reason).
    pub reason: Option<String>,
    pub body: Bytes,
    pub peer: Option<SocketAddr>,
}

impl ApiRequest {
    /// A query parameter.
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A query flag (`?if-empty=true`).
    pub fn query_flag(&self, key: &str) -> bool {
        self.query(key).is_some_and(|v| v == "true")
    }

    /// The body as a JSON object; an empty body is an empty object.
    pub fn json(&self) -> Result<serde_json::Map<String, Value>, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Map::new());
        }
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(ApiError::BadRequest("not_json".into())),
        }
    }
}

/// What a handler answers: a status and, unless 204, a JSON document.
#[derive(Debug)]
pub struct ApiResponse {
    pub status: u16,
    pub body: Option<Value>,
    /// `Location` for a created binding.
    pub location: Option<String>,
}

impl ApiResponse {
    /// 200 with `body`.
    pub fn ok(body: Value) -> ApiResponse {
        ApiResponse {
            status: 200,
            body: Some(body),
            location: None,
        }
    }

    /// 201 Created (no body) or 204 No Content.
    pub fn created(created: bool) -> ApiResponse {
        ApiResponse {
            status: if created { 201 } else { 204 },
            body: None,
            location: None,
        }
    }

    /// 204 No Content.
    pub fn no_content() -> ApiResponse {
        ApiResponse::created(false)
    }
}

/// A failed request, as RabbitMQ's management plugin answers it.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// 401 without credentials: the browser is asked for them.
    NoCredentials,
    /// 401 `not_authorized`: the login failed.
    LoginFailed(String),
    /// 401 `not_authorised`: logged in, but not allowed (RabbitMQ answers
    /// 401, not 403).
    Forbidden(&'static str),
    /// 404.
    NotFound,
    /// 404 naming what is missing, as RabbitMQ answers for objects its
    /// AMQP side reports (`{"error":"not_found","reason":...}`).
    NotFoundBecause(String),
    /// 401 `not_authorised` for another user's object.
    NotYours,
    /// 400 with RabbitMQ's own error name (pagination).
    BadRequestNamed(&'static str, String),
    /// 400 whose reason is not text (RabbitMQ's import: a list).
    BadRequestValue(Value),
    /// 400 `bad_request` with the reason.
    BadRequest(String),
    /// 405, with the methods the resource has.
    MethodNotAllowed(&'static str),
    /// 503 with a document (failed health checks).
    Unavailable(Value),
    /// 501: what Warren does not do yet.
    NotImplemented(String),
    /// 500.
    Internal(String),
}

/// The texts RabbitMQ gives a refused request.
pub mod refused {
    pub const NOT_MANAGEMENT: &str = "Not management user";
    pub const NOT_ADMIN: &str = "Not administrator user";
    pub const NOT_MONITOR: &str = "Not monitor user";
    pub const NOT_VHOST: &str = "User not authorised to access virtual host";
    pub const ACCESS_REFUSED: &str = "Access refused.";
}

impl ApiError {
    /// The status code.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::NoCredentials | ApiError::LoginFailed(_) | ApiError::Forbidden(_) => 401,
            ApiError::NotFound | ApiError::NotFoundBecause(_) => 404,
            ApiError::NotYours => 401,
            ApiError::BadRequestNamed(..) | ApiError::BadRequestValue(_) => 400,
            ApiError::BadRequest(_) => 400,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::Unavailable(_) => 503,
            ApiError::NotImplemented(_) => 501,
            ApiError::Internal(_) => 500,
        }
    }

    /// The JSON body (`None`: empty, as RabbitMQ sends it).
    pub fn body(&self) -> Option<Value> {
        Some(match self {
            ApiError::NoCredentials | ApiError::MethodNotAllowed(_) => return None,
            ApiError::NotFoundBecause(r) => json!({"error": "not_found", "reason": r}),
            ApiError::NotYours => {
                json!({"error": "not_authorised", "reason": "User not authorised to access object"})
            }
            ApiError::BadRequestNamed(e, r) => json!({"error": e, "reason": r}),
            ApiError::BadRequestValue(r) => json!({"error": "bad_request", "reason": r}),
            ApiError::LoginFailed(r) => json!({"error": "not_authorized", "reason": r}),
            ApiError::Forbidden(r) => json!({"error": "not_authorised", "reason": r}),
            ApiError::NotFound => json!({"error": "Object Not Found", "reason": "Not Found"}),
            ApiError::BadRequest(r) => json!({"error": "bad_request", "reason": r}),
            ApiError::Unavailable(doc) => doc.clone(),
            ApiError::NotImplemented(r) => json!({"error": "not_implemented", "reason": r}),
            ApiError::Internal(r) => json!({"error": "internal_server_error", "reason": r}),
        })
    }
}

pub type ApiResult = Result<ApiResponse, ApiError>;

/// A boolean field as clients send it: `true` or `"true"` (rabbitmqadmin
/// sends strings).
pub fn field_bool(
    body: &serde_json::Map<String, Value>,
    key: &str,
    default: bool,
) -> Result<bool, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s == "true" => Ok(true),
        Some(Value::String(s)) if s == "false" => Ok(false),
        Some(_) => Err(ApiError::BadRequest(format!("{key} must be true or false"))),
    }
}

/// A count as clients send it: `5` or `"5"`.
pub fn field_u64(
    body: &serde_json::Map<String, Value>,
    key: &str,
) -> Result<Option<u64>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| ApiError::BadRequest(format!("{key} must be a non-negative integer"))),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| ApiError::BadRequest(format!("{key} must be a non-negative integer"))),
        Some(_) => Err(ApiError::BadRequest(format!(
            "{key} must be a non-negative integer"
        ))),
    }
}

/// A string field (`None` when absent).
pub fn field_str<'a>(
    body: &'a serde_json::Map<String, Value>,
    key: &str,
) -> Result<Option<&'a str>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::BadRequest(format!("{key} must be a string"))),
    }
}

/// RabbitMQ's reason for missing required fields, all of them in order.
pub fn key_missing(keys: &[&str]) -> ApiError {
    let list: Vec<String> = keys
        .iter()
        .map(|k| format!("{{key_missing,{k}}}"))
        .collect();
    ApiError::BadRequest(format!("[{}]", list.join(",")))
}

/// Fails with every one of `keys` that `body` lacks.
pub fn require_keys(body: &serde_json::Map<String, Value>, keys: &[&str]) -> Result<(), ApiError> {
    let missing: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| body.get(*k).is_none_or(Value::is_null))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(key_missing(&missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn strings_stand_for_booleans_and_numbers() {
        let b = body(json!({"durable": "true", "auto_delete": false, "count": "3", "n": 4}));
        assert_eq!(field_bool(&b, "durable", false), Ok(true));
        assert_eq!(field_bool(&b, "auto_delete", true), Ok(false));
        assert_eq!(field_bool(&b, "missing", true), Ok(true));
        assert_eq!(field_u64(&b, "count"), Ok(Some(3)));
        assert_eq!(field_u64(&b, "n"), Ok(Some(4)));
        assert_eq!(field_u64(&b, "missing"), Ok(None));
        let bad = body(json!({"durable": "yes", "count": "-1"}));
        assert!(field_bool(&bad, "durable", false).is_err());
        assert!(field_u64(&bad, "count").is_err());
    }

    #[test]
    fn errors_have_rabbitmqs_codes_and_bodies() {
        assert_eq!(ApiError::Forbidden(refused::NOT_ADMIN).status(), 401);
        assert_eq!(
            ApiError::Forbidden(refused::NOT_ADMIN).body(),
            Some(json!({"error": "not_authorised", "reason": "Not administrator user"}))
        );
        assert_eq!(ApiError::NotFound.status(), 404);
        assert_eq!(
            key_missing(&["ackmode"]).body().unwrap()["reason"],
            "[{key_missing,ackmode}]"
        );
        assert_eq!(ApiError::NoCredentials.body(), None);
    }
}
