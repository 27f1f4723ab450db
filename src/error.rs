//! AMQP errors as the broker raises them: a reply code plus RabbitMQ-style
//! text. Whether one closes the channel or the connection follows from the
//! code (the spec's soft and hard errors).
#![warn(missing_docs)]

use crate::codec::reply_code::*;

/// An error with its AMQP reply code and RabbitMQ's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpError {
    /// The reply code (`codec::reply_code`).
    pub code: u16,
    /// `CODE_NAME - what happened`, as RabbitMQ writes it.
    pub text: String,
}

impl AmqpError {
    /// An error with `code`; the text gets the code's name in front.
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

    /// 404 NOT_FOUND.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(NOT_FOUND, what)
    }
    /// 406 PRECONDITION_FAILED.
    pub fn precondition(what: impl Into<String>) -> Self {
        Self::new(PRECONDITION_FAILED, what)
    }
    /// 403 ACCESS_REFUSED.
    pub fn access_refused(what: impl Into<String>) -> Self {
        Self::new(ACCESS_REFUSED, what)
    }
    /// 405 RESOURCE_LOCKED.
    pub fn locked(what: impl Into<String>) -> Self {
        Self::new(RESOURCE_LOCKED, what)
    }
    /// 503 COMMAND_INVALID.
    pub fn command_invalid(what: impl Into<String>) -> Self {
        Self::new(COMMAND_INVALID, what)
    }
    /// 541 INTERNAL_ERROR: something the client did not cause.
    pub fn internal(what: impl Into<String>) -> Self {
        Self::new(INTERNAL_ERROR, what)
    }
    /// 540 NOT_IMPLEMENTED.
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

/// A result whose error is an [`AmqpError`].
pub type AmqpResult<T> = Result<T, AmqpError>;

/// 405 for another connection's exclusive queue, in RabbitMQ's words.
pub fn exclusive_locked(name: &str, vhost: &str) -> AmqpError {
    AmqpError::locked(format!(
        "cannot obtain exclusive access to locked queue '{name}' in vhost '{vhost}'. It could be \
         originally declared on another connection or the exclusive property value does not \
         match that of the original declaration."
    ))
}

/// RabbitMQ's way of naming a resource in error texts.
pub fn describe(kind: &str, name: &str, vhost: &str) -> String {
    format!("no {kind} '{name}' in vhost '{vhost}'")
}
