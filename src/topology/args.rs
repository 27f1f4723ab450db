//! RabbitMQ's comparison of a redeclaration's arguments with the current
//! ones (`rabbit_misc:assert_args_equivalence`), for queues and exchanges.
use crate::codec::{FieldTable, FieldValue};
use crate::error::{AmqpError, AmqpResult};
use crate::routing::headers::type_name;

/// Whether two values of an argument are the same to RabbitMQ: integers
/// of any width compare by value.
fn same(a: Option<&FieldValue>, b: Option<&FieldValue>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => match (a.as_i64(), b.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        },
        _ => false,
    }
}

fn value_text(v: &FieldValue) -> String {
    match v {
        FieldValue::LongStr(b) | FieldValue::ByteArray(b) => {
            String::from_utf8_lossy(b).into_owned()
        }
        FieldValue::Bool(b) => b.to_string(),
        FieldValue::F32(f) => f.to_string(),
        FieldValue::F64(f) => f.to_string(),
        v => v
            .as_i64()
            .map_or_else(|| format!("{v:?}"), |i| i.to_string()),
    }
}

/// `rabbit_misc:val/1`: a bare value when both sides have one, else the
/// value with its type, or `none`.
fn show(v: Option<&FieldValue>, both: bool) -> String {
    match v {
        None => "none".to_owned(),
        Some(v) if both => format!("'{}'", value_text(v)),
        Some(v) => format!("the value '{}' of type '{}'", value_text(v), type_name(v)),
    }
}

/// 406 unless `declared` asks for the same `key` as `current`;
/// `resource` is RabbitMQ's `rs/1` ("queue 'q' in vhost '/'").
pub fn check_equivalent(
    key: &str,
    current: &FieldTable,
    declared: &FieldTable,
    resource: &str,
) -> AmqpResult<()> {
    let (cur, got) = (current.get(key), declared.get(key));
    if same(cur, got) {
        return Ok(());
    }
    let both = cur.is_some() && got.is_some();
    Err(AmqpError::precondition(format!(
        "inequivalent arg '{key}' for {resource}: received {} but current is {}",
        show(got, both),
        show(cur, both)
    )))
}
