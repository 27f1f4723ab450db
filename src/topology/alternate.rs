//! Alternate exchanges (the `alternate-exchange` exchange argument), as
//! RabbitMQ 3.10 checks them at declare time; routing is in
//! `routing/table.rs` (`RoutingTable::route`).
use super::ExchangeMeta;
use crate::codec::{FieldTable, FieldValue, ShortStr};
use crate::error::{AmqpError, AmqpResult};
use crate::routing::headers::type_name;

/// The exchange argument naming an alternate exchange.
pub const ALTERNATE_EXCHANGE: &str = "alternate-exchange";

/// The alternate exchange in effect for `meta`: the one place that decides
/// it (the routing table is told with `RoutingTable::set_alternate_exchange`).
/// RabbitMQ (`rabbit_policy:get_arg`) takes the argument first and a
/// policy's `alternate-exchange` (`policy`) only when the argument is
/// absent.
pub fn alternate_exchange(meta: &ExchangeMeta, policy: Option<&str>) -> Option<ShortStr> {
    let name = match meta.arguments.get(ALTERNATE_EXCHANGE) {
        Some(v) => v.as_str()?,
        None => policy?,
    };
    // Longer than an exchange name may be: no such exchange, ever.
    (name.len() <= 255).then(|| ShortStr::from(name))
}

/// A new exchange's `alternate-exchange` must be a longstr (406 otherwise,
/// with RabbitMQ's text).
pub fn check_argument(args: &FieldTable, name: &str, vhost: &str) -> AmqpResult<()> {
    match args.get(ALTERNATE_EXCHANGE) {
        None | Some(FieldValue::LongStr(_)) => Ok(()),
        Some(v) => Err(AmqpError::precondition(format!(
            "invalid type '{}' for arg '{ALTERNATE_EXCHANGE}' in {}",
            type_name(v),
            resource(name, vhost)
        ))),
    }
}

/// A redeclare must name the same alternate exchange (the one argument
/// RabbitMQ compares on exchanges), with RabbitMQ's 406 text.
pub fn check_equivalent(
    current: &FieldTable,
    declared: &FieldTable,
    name: &str,
    vhost: &str,
) -> AmqpResult<()> {
    super::args::check_equivalent(
        ALTERNATE_EXCHANGE,
        current,
        declared,
        &resource(name, vhost),
    )
}

/// `rabbit_misc:rs/1` of an exchange.
fn resource(name: &str, vhost: &str) -> String {
    format!("exchange '{name}' in vhost '{vhost}'")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn args(v: Option<FieldValue>) -> FieldTable {
        let mut t = FieldTable::default();
        if let Some(v) = v {
            t.insert(ALTERNATE_EXCHANGE, v);
        }
        t
    }
    fn s(x: &'static str) -> Option<FieldValue> {
        Some(FieldValue::LongStr(Bytes::from_static(x.as_bytes())))
    }

    #[test]
    fn type_and_equivalence_as_rabbitmq_words_them() {
        assert!(check_argument(&args(s("ae")), "x", "/").is_ok());
        let e = check_argument(&args(Some(FieldValue::I32(5))), "x", "/").unwrap_err();
        assert_eq!(
            e.text,
            "PRECONDITION_FAILED - invalid type 'signedint' for arg 'alternate-exchange' in exchange 'x' in vhost '/'"
        );
        assert!(check_equivalent(&args(s("a")), &args(s("a")), "x", "/").is_ok());
        let e = check_equivalent(&args(s("a")), &args(s("b")), "x", "/").unwrap_err();
        assert_eq!(
            e.text,
            "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange 'x' in vhost '/': received 'b' but current is 'a'"
        );
        let e = check_equivalent(&args(s("a")), &args(None), "x", "/").unwrap_err();
        assert_eq!(
            e.text,
            "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange 'x' in vhost '/': received none but current is the value 'a' of type 'longstr'"
        );
    }
}
