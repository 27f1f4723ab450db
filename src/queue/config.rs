//! What a queue's arguments (and, later, its policy) ask of it, parsed and
//! checked once at declaration: RabbitMQ 3.10's validators and texts, so a
//! client gets the same 406 for the same bad argument.
use crate::codec::{FieldTable, FieldValue, ShortStr};

/// The longest TTL or expiry RabbitMQ accepts (ms): its timers' limit.
pub const MAX_EXPIRY_MS: i64 = u32::MAX as i64;
/// The highest `x-max-priority` RabbitMQ supports.
pub const MAX_PRIORITY: i64 = 255;

/// What happens to a publish that would take the queue over its length
/// limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// The oldest messages go (dead-lettered when the queue has a DLX).
    #[default]
    DropHead,
    /// The new message is refused (nacked in confirm mode).
    RejectPublish,
    /// Refused, and dead-lettered.
    RejectPublishDlx,
}

impl Overflow {
    /// RabbitMQ's name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "drop-head" => Some(Overflow::DropHead),
            "reject-publish" => Some(Overflow::RejectPublish),
            "reject-publish-dlx" => Some(Overflow::RejectPublishDlx),
            _ => None,
        }
    }
}

/// The queue type (`x-queue-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueKind {
    /// RabbitMQ's default.
    #[default]
    Classic,
    /// A quorum queue on one node: durable, every message logged and
    /// fsynced before it is confirmed, delivery limits.
    Quorum,
}

impl QueueKind {
    /// The name listings show (`type`).
    pub fn as_str(self) -> &'static str {
        match self {
            QueueKind::Classic => "classic",
            QueueKind::Quorum => "quorum",
        }
    }
}

/// Where dead letters go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterTo {
    /// The exchange (`""` is the default exchange).
    pub exchange: ShortStr,
    /// Replaces the message's routing keys when set.
    pub routing_key: Option<ShortStr>,
}

/// A queue's behaviour beyond the AMQP flags.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueueConfig {
    /// The queue type.
    pub kind: QueueKind,
    /// Per-queue message TTL (ms).
    pub message_ttl: Option<u32>,
    /// Deleted after this long unused (ms).
    pub expires: Option<u32>,
    /// Most ready messages.
    pub max_length: Option<u64>,
    /// Most body bytes of ready messages.
    pub max_length_bytes: Option<u64>,
    /// What a full queue does.
    pub overflow: Overflow,
    /// Dead-letter exchange and routing key.
    pub dead_letter: Option<DeadLetterTo>,
    /// Priority queue: priorities 0..=max.
    pub max_priority: Option<u8>,
    /// Only one consumer receives at a time.
    pub single_active_consumer: bool,
    /// Quorum queues: deliveries after which a message is dead-lettered
    /// or dropped.
    pub delivery_limit: Option<u64>,
}

/// The effective settings a policy adds (RabbitMQ's policy keys); the
/// queue's own arguments win where both set something, except the
/// numeric limits, where the lower wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyLimits {
    /// `message-ttl`
    pub message_ttl: Option<u32>,
    /// `expires`
    pub expires: Option<u32>,
    /// `max-length`
    pub max_length: Option<u64>,
    /// `max-length-bytes`
    pub max_length_bytes: Option<u64>,
    /// `overflow`
    pub overflow: Option<Overflow>,
    /// `dead-letter-exchange`
    pub dead_letter_exchange: Option<ShortStr>,
    /// `dead-letter-routing-key`
    pub dead_letter_routing_key: Option<ShortStr>,
    /// `delivery-limit`
    pub delivery_limit: Option<u64>,
}

fn lower<T: Ord + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl QueueConfig {
    /// The settings of a queue declared with `args` (already checked by
    /// [`check_arguments`]).
    pub fn from_arguments(args: &FieldTable) -> Self {
        let int = |k: &str| args.get(k).and_then(FieldValue::as_i64);
        let text = |k: &str| args.get(k).and_then(FieldValue::as_str).map(ShortStr::from);
        let kind = match args.get("x-queue-type").and_then(FieldValue::as_str) {
            Some("quorum") => QueueKind::Quorum,
            _ => QueueKind::Classic,
        };
        QueueConfig {
            kind,
            message_ttl: int("x-message-ttl").map(|v| v as u32),
            expires: int("x-expires").map(|v| v as u32),
            max_length: int("x-max-length").map(|v| v as u64),
            max_length_bytes: int("x-max-length-bytes").map(|v| v as u64),
            overflow: args
                .get("x-overflow")
                .and_then(FieldValue::as_str)
                .and_then(Overflow::parse)
                .unwrap_or_default(),
            dead_letter: text("x-dead-letter-exchange").map(|exchange| DeadLetterTo {
                exchange,
                routing_key: text("x-dead-letter-routing-key"),
            }),
            max_priority: int("x-max-priority")
                .filter(|p| *p > 0)
                .map(|p| p.min(MAX_PRIORITY) as u8),
            single_active_consumer: args
                .get("x-single-active-consumer")
                .and_then(FieldValue::as_bool)
                .unwrap_or(false),
            delivery_limit: int("x-delivery-limit").map(|v| v.max(0) as u64),
        }
    }

    /// The settings of a queue declared with `args` under a policy and
    /// an operator policy, resolved as RabbitMQ does: numeric limits take
    /// the lowest value set anywhere; the dead-letter exchange, its
    /// routing key and overflow come from the arguments when they set
    /// them, else from the policy (operator policies carry only limits).
    pub fn resolve(args: &FieldTable, policy: &PolicyLimits, operator: &PolicyLimits) -> Self {
        let mut c = Self::from_arguments(args);
        for p in [policy, operator] {
            c.message_ttl = lower(c.message_ttl, p.message_ttl);
            c.expires = lower(c.expires, p.expires);
            c.max_length = lower(c.max_length, p.max_length);
            c.max_length_bytes = lower(c.max_length_bytes, p.max_length_bytes);
            c.delivery_limit = lower(c.delivery_limit, p.delivery_limit);
        }
        let exchange = c
            .dead_letter
            .as_ref()
            .map(|d| d.exchange.clone())
            .or_else(|| policy.dead_letter_exchange.clone());
        let routing_key = c
            .dead_letter
            .as_ref()
            .and_then(|d| d.routing_key.clone())
            .or_else(|| policy.dead_letter_routing_key.clone());
        c.dead_letter = exchange.map(|exchange| DeadLetterTo {
            exchange,
            routing_key,
        });
        if args.get("x-overflow").is_none() {
            c.overflow = policy.overflow.unwrap_or_default();
        }
        c
    }

    /// Whether there is a length limit.
    pub fn is_limited(&self) -> bool {
        self.max_length.is_some() || self.max_length_bytes.is_some()
    }
}

pub use crate::routing::headers::type_name;

/// Why an argument was refused, printed as RabbitMQ prints the Erlang
/// term (`{value_negative,-1}`, `"expected integer, got longstr"`...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgError {
    /// Not one of the integer types.
    NotInteger(&'static str),
    /// The wrong type for this argument.
    UnacceptableType(&'static str),
    /// A negative number where none is allowed.
    Negative(i64),
    /// Zero where it is not allowed.
    Zero(i64),
    /// Above the timers' limit.
    TooLarge(i64),
    /// Above the highest priority.
    MaxExceeded(i64),
    /// An `x-dead-letter-routing-key` without an exchange.
    RoutingKeyWithoutDlx,
    /// Not a known overflow behaviour.
    InvalidOverflow,
    /// Not a known queue mode.
    QueueMode(String),
    /// Not a known queue type.
    QueueType(String),
    /// Not a known dead-letter strategy.
    InvalidDlxStrategy,
}

impl std::fmt::Display for ArgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArgError::NotInteger(t) => write!(f, "\"expected integer, got {t}\""),
            ArgError::UnacceptableType(t) => write!(f, "{{unacceptable_type,{t}}}"),
            ArgError::Negative(v) => write!(f, "{{value_negative,{v}}}"),
            ArgError::Zero(v) => write!(f, "{{value_zero,{v}}}"),
            ArgError::TooLarge(v) => write!(f, "{{value_too_large,{v}}}"),
            ArgError::MaxExceeded(v) => write!(f, "{{max_value_exceeded,{v}}}"),
            ArgError::RoutingKeyWithoutDlx => f.write_str("routing_key_but_no_dlx_defined"),
            ArgError::InvalidOverflow => f.write_str("invalid_overflow"),
            ArgError::QueueMode(m) => write!(f, "\"unsupported queue mode '{m}'\""),
            ArgError::QueueType(t) => write!(f, "\"unsupported queue type '{t}'\""),
            ArgError::InvalidDlxStrategy => f.write_str("invalid_dlx_strategy"),
        }
    }
}

fn integer(v: &FieldValue) -> Result<i64, ArgError> {
    match v {
        FieldValue::I8(_)
        | FieldValue::U8(_)
        | FieldValue::I16(_)
        | FieldValue::U16(_)
        | FieldValue::I32(_)
        | FieldValue::U32(_)
        | FieldValue::I64(_) => Ok(v.as_i64().expect("an integer")),
        other => Err(ArgError::NotInteger(type_name(other))),
    }
}

fn non_negative(v: &FieldValue) -> Result<i64, ArgError> {
    let n = integer(v)?;
    if n < 0 {
        return Err(ArgError::Negative(n));
    }
    Ok(n)
}

fn expiry(n: i64) -> Result<i64, ArgError> {
    if n < 0 {
        Err(ArgError::Negative(n))
    } else if n > MAX_EXPIRY_MS {
        Err(ArgError::TooLarge(n))
    } else {
        Ok(n)
    }
}

fn string(v: &FieldValue) -> Result<&str, ArgError> {
    match v {
        FieldValue::LongStr(_) => Ok(v.as_str().unwrap_or_default()),
        other => Err(ArgError::UnacceptableType(type_name(other))),
    }
}

fn one_of(
    v: &FieldValue,
    allowed: &[&str],
    bad: impl FnOnce(&str) -> ArgError,
) -> Result<(), ArgError> {
    let s = string(v)?;
    if allowed.contains(&s) {
        Ok(())
    } else {
        Err(bad(s))
    }
}

/// Checks one argument's type and value as RabbitMQ's declare does.
/// Unknown arguments pass (RabbitMQ ignores them).
pub fn check_argument(key: &str, v: &FieldValue, args: &FieldTable) -> Result<(), ArgError> {
    match key {
        "x-expires" => {
            let n = integer(v)?;
            if n == 0 {
                return Err(ArgError::Zero(n));
            }
            expiry(n).map(drop)
        }
        "x-message-ttl" => expiry(integer(v)?).map(drop),
        "x-max-length"
        | "x-max-length-bytes"
        | "x-max-in-memory-length"
        | "x-max-in-memory-bytes"
        | "x-delivery-limit" => non_negative(v).map(drop),
        "x-max-priority" => {
            let n = non_negative(v)?;
            if n > MAX_PRIORITY {
                return Err(ArgError::MaxExceeded(n));
            }
            Ok(())
        }
        "x-dead-letter-exchange" => string(v).map(drop),
        "x-dead-letter-routing-key" => {
            string(v)?;
            if args.get("x-dead-letter-exchange").is_none() {
                return Err(ArgError::RoutingKeyWithoutDlx);
            }
            Ok(())
        }
        "x-dead-letter-strategy" => one_of(v, &["at-most-once", "at-least-once"], |_| {
            ArgError::InvalidDlxStrategy
        }),
        "x-overflow" => one_of(
            v,
            &["drop-head", "reject-publish", "reject-publish-dlx"],
            |_| ArgError::InvalidOverflow,
        ),
        "x-queue-mode" => one_of(v, &["default", "lazy"], |m| ArgError::QueueMode(m.into())),
        "x-queue-version" => {
            let n = integer(v)?;
            if n == 1 || n == 2 {
                Ok(())
            } else {
                Err(ArgError::UnacceptableType("integer"))
            }
        }
        "x-single-active-consumer" => match v {
            FieldValue::Bool(_) => Ok(()),
            other => Err(ArgError::UnacceptableType(type_name(other))),
        },
        "x-queue-type" => one_of(v, &["classic", "quorum", "stream"], |t| {
            ArgError::QueueType(t.into())
        }),
        "x-quorum-initial-group-size" | "x-initial-cluster-size" => {
            let n = non_negative(v)?;
            if n == 0 {
                return Err(ArgError::Zero(n));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The arguments each queue type takes; any other of [`ALL_TYPED_ARGS`]
/// is refused for that type ("invalid arg ... of queue type ...").
const CLASSIC_ARGS: &[&str] = &[
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-version",
    "x-single-active-consumer",
    "x-queue-type",
    "x-queue-master-locator",
];
const QUORUM_ARGS: &[&str] = &[
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-dead-letter-strategy",
    "x-expires",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-overflow",
    "x-single-active-consumer",
    "x-queue-type",
    "x-quorum-initial-group-size",
    "x-delivery-limit",
    "x-message-ttl",
    "x-queue-leader-locator",
];
/// Every argument some queue type knows.
const ALL_TYPED_ARGS: &[&str] = &[
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-dead-letter-strategy",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-version",
    "x-single-active-consumer",
    "x-queue-type",
    "x-queue-master-locator",
    "x-quorum-initial-group-size",
    "x-delivery-limit",
    "x-queue-leader-locator",
    "x-max-age",
    "x-stream-max-segment-size-bytes",
    "x-initial-cluster-size",
];

/// The arguments a queue of `kind` takes (and compares on redeclaration).
pub fn type_arguments(kind: QueueKind) -> &'static [&'static str] {
    match kind {
        QueueKind::Classic => CLASSIC_ARGS,
        QueueKind::Quorum => QUORUM_ARGS,
    }
}

/// The queue type's name in RabbitMQ's "of queue type" errors.
pub fn type_module(kind: QueueKind) -> &'static str {
    match kind {
        QueueKind::Classic => "rabbit_classic_queue",
        QueueKind::Quorum => "rabbit_quorum_queue",
    }
}

/// Why a declaration's arguments were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeclareArgError {
    /// A bad value: "invalid arg 'K' for <queue>: <why>".
    Invalid(String, ArgError),
    /// An argument its type does not take: "invalid arg 'K' for <queue>
    /// of queue type <module>".
    WrongType(String, QueueKind),
    /// `x-queue-type: stream` (not implemented).
    Stream,
}

/// Checks a declaration's arguments in RabbitMQ's order: the type first,
/// then each argument that type takes, then arguments it does not take.
pub fn check_arguments(args: &FieldTable) -> Result<QueueKind, DeclareArgError> {
    let invalid = |k: &str, e| DeclareArgError::Invalid(k.to_string(), e);
    if let Some(v) = args.get("x-queue-type") {
        check_argument("x-queue-type", v, args).map_err(|e| invalid("x-queue-type", e))?;
    }
    let kind = match args.get("x-queue-type").and_then(FieldValue::as_str) {
        Some("quorum") => QueueKind::Quorum,
        Some("stream") => return Err(DeclareArgError::Stream),
        _ => QueueKind::Classic,
    };
    let takes = match kind {
        QueueKind::Classic => CLASSIC_ARGS,
        QueueKind::Quorum => QUORUM_ARGS,
    };
    // RabbitMQ runs its validators in its own list order, not the table's.
    for key in ALL_TYPED_ARGS.iter().filter(|k| takes.contains(k)) {
        if let Some(v) = args.get(key) {
            check_argument(key, v, args).map_err(|e| invalid(key, e))?;
        }
    }
    for (key, _) in args.iter() {
        let key: &str = key;
        if ALL_TYPED_ARGS.contains(&key) && !takes.contains(&key) {
            return Err(DeclareArgError::WrongType(key.to_string(), kind));
        }
    }
    Ok(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(&str, FieldValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in entries {
            t.insert(*k, v.clone());
        }
        t
    }

    #[test]
    fn values_are_checked_as_rabbitmq_prints_them() {
        let cases = [
            ("x-message-ttl", FieldValue::I32(-1), "{value_negative,-1}"),
            (
                "x-message-ttl",
                "10".into(),
                "\"expected integer, got longstr\"",
            ),
            ("x-expires", FieldValue::I32(0), "{value_zero,0}"),
            (
                "x-expires",
                FieldValue::I64(1 << 33),
                "{value_too_large,8589934592}",
            ),
            (
                "x-max-priority",
                FieldValue::I32(256),
                "{max_value_exceeded,256}",
            ),
            ("x-max-length", FieldValue::I8(-2), "{value_negative,-2}"),
            ("x-overflow", "drop-tail".into(), "invalid_overflow"),
            (
                "x-overflow",
                FieldValue::I32(1),
                "{unacceptable_type,signedint}",
            ),
            (
                "x-dead-letter-exchange",
                FieldValue::Bool(true),
                "{unacceptable_type,bool}",
            ),
            (
                "x-single-active-consumer",
                "yes".into(),
                "{unacceptable_type,longstr}",
            ),
            (
                "x-queue-mode",
                "fast".into(),
                "\"unsupported queue mode 'fast'\"",
            ),
        ];
        for (k, v, want) in cases {
            let args = table(&[(k, v.clone())]);
            let err = check_argument(k, &v, &args).unwrap_err();
            assert_eq!(err.to_string(), want, "{k}");
        }
        let rk_alone = table(&[("x-dead-letter-routing-key", "k".into())]);
        assert_eq!(
            check_arguments(&rk_alone),
            Err(DeclareArgError::Invalid(
                "x-dead-letter-routing-key".into(),
                ArgError::RoutingKeyWithoutDlx
            ))
        );
    }

    #[test]
    fn each_queue_type_takes_its_arguments() {
        let quorum_priority = table(&[
            ("x-queue-type", "quorum".into()),
            ("x-max-priority", FieldValue::I32(5)),
        ]);
        assert_eq!(
            check_arguments(&quorum_priority),
            Err(DeclareArgError::WrongType(
                "x-max-priority".into(),
                QueueKind::Quorum
            ))
        );
        let classic_limit = table(&[("x-delivery-limit", FieldValue::I32(5))]);
        assert_eq!(
            check_arguments(&classic_limit),
            Err(DeclareArgError::WrongType(
                "x-delivery-limit".into(),
                QueueKind::Classic
            ))
        );
        let fine = table(&[
            ("x-message-ttl", FieldValue::I32(1000)),
            ("x-dead-letter-exchange", "dlx".into()),
            ("x-app-thing", "anything".into()),
        ]);
        assert_eq!(check_arguments(&fine), Ok(QueueKind::Classic));
        let c = QueueConfig::from_arguments(&fine);
        assert_eq!(c.message_ttl, Some(1000));
        assert_eq!(&*c.dead_letter.unwrap().exchange, "dlx");
    }

    #[test]
    fn policies_take_the_lower_limit_and_never_override_the_dlx() {
        let own = table(&[
            ("x-max-length", FieldValue::I32(10)),
            ("x-dead-letter-exchange", "mine".into()),
        ]);
        let policy = PolicyLimits {
            max_length: Some(5),
            message_ttl: Some(100),
            dead_letter_exchange: Some("theirs".into()),
            ..Default::default()
        };
        let op = PolicyLimits {
            message_ttl: Some(50),
            ..Default::default()
        };
        let c = QueueConfig::resolve(&own, &policy, &op);
        assert_eq!(c.max_length, Some(5));
        assert_eq!(c.message_ttl, Some(50));
        assert_eq!(&*c.dead_letter.unwrap().exchange, "mine");
        let none = QueueConfig::resolve(&FieldTable::default(), &policy, &op);
        assert_eq!(&*none.dead_letter.unwrap().exchange, "theirs");
    }
}
