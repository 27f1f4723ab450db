//! AMQP errors as the broker raises them: a reply code plus RabbitMQ-style
//! text. Whether one closes the channel or the connection follows from the
//! code (the spec's soft and hard errors).
use crate::codec::reply_code::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpError {
    pub code: u16,
    pub text: String,
}

impl AmqpError {
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        let name = match code {
            CONTENT_TOO_LARGE => "CONTENT_TOO_LARGE",
            NO_ROUTE => "NO_ROUTE",
            NO_CONSUMERS => "NO_CONSUMERS",
            CONNECTION_FORCED => "CONNECTION_FORCED",
            INVALID_PATH => "INVALID_PATH",
            ACCESS_REFUSED => "ACCESS_REFUSED",
            NOT_FOUND => "NOT_FOUND",
            RESOURCE_LOCKED => "RESOURCE_LOCKED",
            PRECONDITION_FAILED => "PRECONDITION_FAILED",
            FRAME_ERROR => "FRAME_ERROR",
            SYNTAX_ERROR => "SYNTAX_ERROR",
            COMMAND_INVALID => "COMMAND_INVALID",
            CHANNEL_ERROR => "CHANNEL_ERROR",
            UNEXPECTED_FRAME => "UNEXPECTED_FRAME",
            RESOURCE_ERROR => "RESOURCE_ERROR",
            NOT_ALLOWED => "NOT_ALLOWED",
            NOT_IMPLEMENTED => "NOT_IMPLEMENTED",
            _ => "INTERNAL_ERROR",
        };
        // RabbitMQ prefixes its reply text with the code's name.
        AmqpError {
            code,
            text: format!("{name} - {}", text.into()),
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(NOT_FOUND, what)
    }
    pub fn precondition(what: impl Into<String>) -> Self {
        Self::new(PRECONDITION_FAILED, what)
    }
    pub fn access_refused(what: impl Into<String>) -> Self {
        Self::new(ACCESS_REFUSED, what)
    }
    pub fn locked(what: impl Into<String>) -> Self {
        Self::new(RESOURCE_LOCKED, what)
    }
    pub fn command_invalid(what: impl Into<String>) -> Self {
        Self::new(COMMAND_INVALID, what)
    }
    pub fn not_implemented(what: impl Into<String>) -> Self {
        Self::new(NOT_IMPLEMENTED, what)
    }

    /// Hard errors close the whole connection; soft ones only the channel.
    pub fn is_connection_error(&self) -> bool {
        !matches!(
            self.code,
            CONTENT_TOO_LARGE
                | NO_ROUTE
                | NO_CONSUMERS
                | ACCESS_REFUSED
                | NOT_FOUND
                | RESOURCE_LOCKED
                | PRECONDITION_FAILED
        )
    }
}

pub type AmqpResult<T> = Result<T, AmqpError>;

/// 405 for another connection's exclusive queue, in RabbitMQ's words.
pub fn exclusive_locked(name: &str, vhost: &str) -> AmqpError {
    AmqpError::locked(format!(
        "cannot obtain exclusive access to locked queue '{name}' in vhost '{vhost}'. It could be \
         originally declared on another connection or the exclusive property value does not \
         match that of the original declaration."
    ))
}

/// A name with `prefix` and 22 random URL-safe characters, the shape of
/// RabbitMQ's `amq.gen-…` queue names and `amq.ctag-…` consumer tags.
pub fn random_name(prefix: &str) -> crate::codec::ShortStr {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::thread_rng();
    let suffix: String = (0..22)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    crate::codec::ShortStr::from(format!("{prefix}{suffix}"))
}

/// RabbitMQ's way of naming a resource in error texts.
pub fn describe(kind: &str, name: &str, vhost: &str) -> String {
    format!("no {kind} '{name}' in vhost '{vhost}'")
}
