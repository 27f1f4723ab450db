//! Headers-exchange matching, after RabbitMQ's `rabbit_exchange_type_headers`.
//!
//! - `x-match`: `all` (default), `any`, `all-with-x`, `any-with-x`. An
//!   unrecognised value routes as `all` (RabbitMQ's legacy fallback); binds
//!   with one are refused earlier by [`validate_x_match`].
//! - the `x-match` argument itself never takes part in matching; other
//!   arguments starting with `x-` are ignored unless a `-with-x` mode is used.
//! - a binding argument of type Void only requires the header to be present.
//! - otherwise values compare like Erlang's `==` on RabbitMQ's decoded values:
//!   the AMQP type tag is ignored at top level, so all integer types and
//!   timestamps compare by numeric value, an integer equals a float of the
//!   same value (1 == 1.0), and long strings equal byte arrays with the same
//!   bytes. Nested arrays/tables compare structurally, types included, as
//!   RabbitMQ keeps `{Type, Value}` inside them.
//! - with no arguments left to check, `all` matches every message and `any`
//!   matches none. Missing message headers behave as an empty table.
//!
//! RabbitMQ merges the two key-sorted tables; a key lookup is equivalent for
//! tables without repeated keys (we use the first occurrence otherwise).

use super::{FieldTable, FieldValue};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum XMatch {
    All,
    Any,
    AllWithX,
    AnyWithX,
}

fn parse(v: &FieldValue) -> Option<XMatch> {
    match v {
        FieldValue::LongStr(s) => match &s[..] {
            b"all" => Some(XMatch::All),
            b"any" => Some(XMatch::Any),
            b"all-with-x" => Some(XMatch::AllWithX),
            b"any-with-x" => Some(XMatch::AnyWithX),
            _ => None,
        },
        _ => None,
    }
}

/// RabbitMQ's name for a field's type, as its error texts give it.
pub fn type_name(v: &FieldValue) -> &'static str {
    match v {
        FieldValue::Bool(_) => "bool",
        FieldValue::I8(_) => "byte",
        FieldValue::U8(_) => "unsignedbyte",
        FieldValue::I16(_) => "short",
        FieldValue::U16(_) => "unsignedshort",
        FieldValue::I32(_) => "signedint",
        FieldValue::U32(_) => "unsignedint",
        FieldValue::I64(_) => "long",
        FieldValue::U64(_) => "unsignedlong",
        FieldValue::F32(_) => "float",
        FieldValue::F64(_) => "double",
        FieldValue::Decimal { .. } => "decimal",
        FieldValue::LongStr(_) => "longstr",
        FieldValue::ByteArray(_) => "binary",
        FieldValue::Array(_) => "array",
        FieldValue::Timestamp(_) => "timestamp",
        FieldValue::Table(_) => "table",
        FieldValue::Void => "void",
    }
}

/// Checks the `x-match` binding argument of a headers-exchange binding.
/// The error text mirrors RabbitMQ's; the broker should close the channel
/// with 406 PRECONDITION_FAILED carrying it.
pub fn validate_x_match(args: &FieldTable) -> Result<(), String> {
    let Some(v) = args.get("x-match") else {
        return Ok(());
    };
    if parse(v).is_some() {
        return Ok(());
    }
    match v {
        FieldValue::LongStr(s) => Err(format!(
            "Invalid x-match field value <<\"{}\">>; expected all, any, all-with-x, or any-with-x",
            String::from_utf8_lossy(s)
        )),
        other => Err(format!(
            "Invalid x-match field type {} (value {:?}); expected longstr",
            type_name(other),
            other
        )),
    }
}

enum Num {
    Int(i128),
    Float(f64),
}

fn as_num(v: &FieldValue) -> Option<Num> {
    use FieldValue::*;
    Some(match *v {
        I8(x) => Num::Int(x.into()),
        U8(x) => Num::Int(x.into()),
        I16(x) => Num::Int(x.into()),
        U16(x) => Num::Int(x.into()),
        I32(x) => Num::Int(x.into()),
        U32(x) => Num::Int(x.into()),
        I64(x) => Num::Int(x.into()),
        U64(x) => Num::Int(x.into()),
        Timestamp(x) => Num::Int(x.into()),
        F32(x) => Num::Float(x.into()),
        F64(x) => Num::Float(x),
        _ => return None,
    })
}

fn int_eq_float(i: i128, f: f64) -> bool {
    // Exact comparison: a float equals an integer only if it is integral.
    // Our integers fit in +-2^64; the bound keeps `as i128` from saturating.
    f.is_finite() && f.fract() == 0.0 && f.abs() < 1e38 && f as i128 == i
}

/// Top-level value equality with Erlang `==` semantics (see module docs).
fn value_eq(p: &FieldValue, d: &FieldValue) -> bool {
    use FieldValue::*;
    if let (Some(a), Some(b)) = (as_num(p), as_num(d)) {
        return match (a, b) {
            (Num::Int(a), Num::Int(b)) => a == b,
            (Num::Float(a), Num::Float(b)) => a == b,
            (Num::Int(i), Num::Float(f)) | (Num::Float(f), Num::Int(i)) => int_eq_float(i, f),
        };
    }
    match (p, d) {
        (LongStr(a) | ByteArray(a), LongStr(b) | ByteArray(b)) => a == b,
        (Bool(a), Bool(b)) => a == b,
        (Decimal { .. }, Decimal { .. }) | (Array(_), Array(_)) | (Table(_), Table(_)) => p == d,
        _ => false,
    }
}

/// Does a message with `message_headers` match a headers binding with
/// `binding_args`? See the module docs for the exact rules.
pub fn headers_match(binding_args: &FieldTable, message_headers: Option<&FieldTable>) -> bool {
    let mode = binding_args
        .get("x-match")
        .and_then(parse)
        .unwrap_or(XMatch::All);
    let all = matches!(mode, XMatch::All | XMatch::AllWithX);
    let with_x = matches!(mode, XMatch::AllWithX | XMatch::AnyWithX);
    for (key, want) in binding_args.iter() {
        if &**key == "x-match" || (!with_x && key.starts_with("x-")) {
            continue;
        }
        let ok = match message_headers.and_then(|h| h.get(key)) {
            None => false,
            Some(_) if matches!(want, FieldValue::Void) => true,
            Some(have) => value_eq(want, have),
        };
        if ok && !all {
            return true;
        }
        if !ok && all {
            return false;
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use FieldValue::*;

    fn s(v: &'static str) -> FieldValue {
        LongStr(Bytes::from_static(v.as_bytes()))
    }
    fn t(pairs: &[(&'static str, FieldValue)]) -> FieldTable {
        FieldTable(
            pairs
                .iter()
                .map(|(k, v)| ((*k).into(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn all_default_and_explicit() {
        let b = t(&[("a", s("1")), ("b", I32(2))]);
        let bx = t(&[("x-match", s("all")), ("a", s("1")), ("b", I32(2))]);
        for b in [&b, &bx] {
            assert!(headers_match(b, Some(&t(&[("a", s("1")), ("b", I32(2))]))));
            assert!(headers_match(
                b,
                Some(&t(&[("b", I32(2)), ("c", Void), ("a", s("1"))]))
            ));
            assert!(!headers_match(b, Some(&t(&[("a", s("1"))]))));
            assert!(!headers_match(b, Some(&t(&[("a", s("1")), ("b", I32(3))]))));
            assert!(!headers_match(b, None));
        }
    }

    #[test]
    fn any() {
        let b = t(&[("x-match", s("any")), ("a", s("1")), ("b", I32(2))]);
        assert!(headers_match(&b, Some(&t(&[("a", s("1"))]))));
        assert!(headers_match(&b, Some(&t(&[("a", s("x")), ("b", I32(2))]))));
        assert!(!headers_match(
            &b,
            Some(&t(&[("a", s("x")), ("b", I32(3))]))
        ));
        assert!(!headers_match(&b, Some(&t(&[]))));
        assert!(!headers_match(&b, None));
    }

    #[test]
    fn empty_bindings() {
        // all with nothing to check matches everything; any matches nothing.
        assert!(headers_match(&t(&[]), None));
        assert!(headers_match(
            &t(&[("x-match", s("all"))]),
            Some(&t(&[("a", I8(1))]))
        ));
        assert!(headers_match(&t(&[("x-foo", s("bar"))]), None));
        assert!(!headers_match(
            &t(&[("x-match", s("any"))]),
            Some(&t(&[("a", I8(1))]))
        ));
        assert!(!headers_match(
            &t(&[("x-match", s("any")), ("x-foo", s("b"))]),
            Some(&t(&[("x-foo", s("b"))]))
        ));
        assert!(headers_match(&t(&[("x-match", s("all-with-x"))]), None));
        assert!(!headers_match(&t(&[("x-match", s("any-with-x"))]), None));
    }

    #[test]
    fn x_keys_ignored_unless_with_x() {
        let all = t(&[("x-match", s("all")), ("x-id", I32(7)), ("a", s("1"))]);
        assert!(headers_match(&all, Some(&t(&[("a", s("1"))]))));
        let allx = t(&[
            ("x-match", s("all-with-x")),
            ("x-id", I32(7)),
            ("a", s("1")),
        ]);
        assert!(!headers_match(&allx, Some(&t(&[("a", s("1"))]))));
        assert!(headers_match(
            &allx,
            Some(&t(&[("a", s("1")), ("x-id", I64(7))]))
        ));
        let anyx = t(&[
            ("x-match", s("any-with-x")),
            ("x-id", I32(7)),
            ("a", s("1")),
        ]);
        assert!(headers_match(&anyx, Some(&t(&[("x-id", I32(7))]))));
        let any = t(&[("x-match", s("any")), ("x-id", I32(7)), ("a", s("1"))]);
        assert!(!headers_match(&any, Some(&t(&[("x-id", I32(7))]))));
        // x-match itself is never compared, even in -with-x modes.
        assert!(headers_match(
            &allx,
            Some(&t(&[("a", s("1")), ("x-id", I32(7)), ("x-match", s("no"))]))
        ));
    }

    #[test]
    fn void_means_presence() {
        let b = t(&[("a", Void)]);
        assert!(headers_match(&b, Some(&t(&[("a", s("anything"))]))));
        assert!(headers_match(&b, Some(&t(&[("a", Void)]))));
        assert!(!headers_match(&b, Some(&t(&[("b", Void)]))));
        // A void header only matches a void (presence) binding value.
        assert!(!headers_match(
            &t(&[("a", I32(0))]),
            Some(&t(&[("a", Void)]))
        ));
        let any = t(&[("x-match", s("any")), ("a", Void), ("b", I8(1))]);
        assert!(headers_match(&any, Some(&t(&[("a", Bool(false))]))));
    }

    #[test]
    fn value_comparison() {
        let m =
            |p: FieldValue, d: FieldValue| headers_match(&t(&[("k", p)]), Some(&t(&[("k", d)])));
        assert!(m(I8(5), U64(5)));
        assert!(m(I32(-1), I64(-1)));
        assert!(!m(I32(-1), U32(u32::MAX)));
        assert!(m(Timestamp(10), I32(10)));
        assert!(m(I32(1), F64(1.0)));
        assert!(m(F32(0.5), F64(0.5)));
        assert!(!m(F32(0.1), F64(0.1)));
        assert!(!m(I32(1), F64(1.5)));
        assert!(!m(F64(f64::NAN), F64(f64::NAN)));
        assert!(m(U64(u64::MAX), U64(u64::MAX)));
        assert!(m(U64(1 << 63), F64(2f64.powi(63))));
        assert!(m(U64(u64::MAX - 2047), F64((u64::MAX - 2047) as f64)));
        assert!(!m(I64(i64::MIN), F64(1e300)));
        assert!(m(s("abc"), ByteArray(Bytes::from_static(b"abc"))));
        assert!(!m(s("abc"), s("abd")));
        assert!(!m(s("1"), I32(1)));
        assert!(!m(Bool(true), I32(1)));
        assert!(m(Bool(true), Bool(true)));
        assert!(m(
            Decimal { scale: 2, value: 5 },
            Decimal { scale: 2, value: 5 }
        ));
        assert!(!m(
            Decimal { scale: 1, value: 5 },
            Decimal { scale: 2, value: 5 }
        ));
        // Nested values keep their types.
        assert!(m(Array(vec![I32(1)]), Array(vec![I32(1)])));
        assert!(!m(Array(vec![I32(1)]), Array(vec![I64(1)])));
        assert!(m(Table(t(&[("a", s("b"))])), Table(t(&[("a", s("b"))]))));
        assert!(!m(Table(t(&[("a", s("b"))])), Table(t(&[]))));
    }

    #[test]
    fn invalid_x_match_routes_as_all_and_fails_validation() {
        let b = t(&[("x-match", s("some")), ("a", I8(1))]);
        assert!(headers_match(&b, Some(&t(&[("a", I8(1))]))));
        let e = validate_x_match(&b).unwrap_err();
        assert!(e.starts_with("Invalid x-match field value"), "{e}");
        let e = validate_x_match(&t(&[("x-match", I32(1))])).unwrap_err();
        assert!(e.starts_with("Invalid x-match field type signedint"), "{e}");
        for ok in ["all", "any", "all-with-x", "any-with-x"] {
            assert!(validate_x_match(&t(&[("x-match", s(ok))])).is_ok());
        }
        assert!(validate_x_match(&t(&[])).is_ok());
    }
}
