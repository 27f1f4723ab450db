//! How rabbitmqctl renders values: table cells, AMQP field tables in
//! Erlang term syntax, Erlang floats, JSON rows and CSV fields.
//!
//! The broker sends JSON values. An AMQP field table (queue arguments,
//! client properties) comes either as a JSON object (types inferred:
//! string `longstr`, integer `long`, float `double`...) or, exactly, as
//! rabbitmqctl's JSON form: a list of `[key, type, value]` triples.
use serde_json::Value;
use std::fmt::Write as _;

/// AMQP field types as rabbitmqctl names them in its JSON output.
const AMQP_TYPES: &[&str] = &[
    "longstr",
    "shortstr",
    "binary",
    "long",
    "signedint",
    "unsignedint",
    "short",
    "unsignedshort",
    "byte",
    "unsignedbyte",
    "float",
    "double",
    "decimal",
    "timestamp",
    "bool",
    "void",
    "table",
    "array",
];

/// One AMQP field value, typed.
#[derive(Debug, Clone, PartialEq)]
enum Field {
    Str(String),
    /// An integer, kept as its decimal text (i64 and u64 alike).
    Int(String),
    Float(f64),
    Bool(bool),
    Void,
    Table(Vec<(String, String, Field)>),
    Array(Vec<(String, Field)>),
}

/// Whether `v` is a list of `[key, type, value]` triples.
fn is_typed_table(v: &Value) -> bool {
    match v {
        Value::Array(items) if !items.is_empty() => items.iter().all(|t| {
            matches!(t, Value::Array(t) if t.len() == 3
                && t[0].is_string()
                && t[1].as_str().is_some_and(|ty| AMQP_TYPES.contains(&ty)))
        }),
        _ => false,
    }
}

/// Whether a cell holds an AMQP field table.
fn is_table(v: &Value) -> bool {
    v.is_object() || is_typed_table(v)
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "longstr",
        Value::Number(n) if n.is_f64() => "double",
        Value::Number(_) => "long",
        Value::Bool(_) => "bool",
        Value::Null => "void",
        Value::Object(_) => "table",
        Value::Array(_) if is_typed_table(v) => "table",
        Value::Array(_) => "array",
    }
}

/// An untyped JSON value as a field, types inferred.
fn field(v: &Value) -> Field {
    match v {
        Value::String(s) => Field::Str(s.clone()),
        Value::Number(n) if n.is_f64() => Field::Float(n.as_f64().unwrap_or(0.0)),
        Value::Number(n) => Field::Int(n.to_string()),
        Value::Bool(b) => Field::Bool(*b),
        Value::Null => Field::Void,
        Value::Object(_) => table(v),
        Value::Array(_) if is_typed_table(v) => table(v),
        Value::Array(items) => Field::Array(
            items
                .iter()
                .map(|i| (type_of(i).to_string(), field(i)))
                .collect(),
        ),
    }
}

/// A field whose type was given: tables and arrays keep their shape.
fn typed_field(ty: &str, v: &Value) -> Field {
    match (ty, v) {
        ("table", _) => table(v),
        ("array", Value::Array(items)) => Field::Array(
            items
                .iter()
                .map(|i| match i {
                    // `[type, value]` pairs, as the broker may send them.
                    Value::Array(p)
                        if p.len() == 2
                            && p[0].as_str().is_some_and(|t| AMQP_TYPES.contains(&t)) =>
                    {
                        let t = p[0].as_str().unwrap_or("void");
                        (t.to_string(), typed_field(t, &p[1]))
                    }
                    other => (type_of(other).to_string(), field(other)),
                })
                .collect(),
        ),
        // rabbitmqctl's own JSON for an array: `{type: value, ...}`.
        ("array", Value::Object(map)) => Field::Array(
            map.iter()
                .map(|(t, v)| (t.clone(), typed_field(t, v)))
                .collect(),
        ),
        _ => field(v),
    }
}

/// An object or a typed-triple list as a field table.
fn table(v: &Value) -> Field {
    match v {
        Value::Object(map) => Field::Table(
            map.iter()
                .map(|(k, v)| (k.clone(), type_of(v).to_string(), field(v)))
                .collect(),
        ),
        Value::Array(items) => Field::Table(
            items
                .iter()
                .filter_map(|t| {
                    let t = t.as_array()?;
                    let ty = t[1].as_str()?;
                    Some((
                        t[0].as_str()?.to_string(),
                        ty.to_string(),
                        typed_field(ty, &t[2]),
                    ))
                })
                .collect(),
        ),
        _ => Field::Table(Vec::new()),
    }
}

/// Erlang's `~p` of a float: the shortest digits that read back, in
/// fixed or exponent notation, whichever is shorter (fixed on a tie;
/// exponent from 2^53 up).
pub fn erl_float(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    // `{:e}` gives the shortest round-trip digits: "-1.2345e4", "1e-5".
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut scientific = format!("{sign}{}.", &digits[..1]);
    scientific.push_str(if digits.len() > 1 { &digits[1..] } else { "0" });
    let _ = write!(scientific, "e{exp}");
    let point = exp + 1; // digits before the decimal point
    let fixed = if point <= 0 {
        format!("{sign}0.{}{digits}", "0".repeat((-point) as usize))
    } else if point as usize >= digits.len() {
        format!(
            "{sign}{digits}{}.0",
            "0".repeat(point as usize - digits.len())
        )
    } else {
        let (int, frac) = digits.split_at(point as usize);
        format!("{sign}{int}.{frac}")
    };
    // Integers beyond 2^53 print in exponent form: not exact any more.
    if scientific.len() < fixed.len() || x.abs() >= 9007199254740992.0 {
        scientific
    } else {
        fixed
    }
}

/// Printable for `~p` in Erlang's default `latin1` printable range.
fn printable_latin1(c: char) -> bool {
    matches!(c as u32, 32..=126 | 160..=255 | 8..=13 | 27)
}

/// A string as an Erlang charlist prints with `~tp`: `"..."` when every
/// character is printable latin1, `[]` when empty, otherwise the list of
/// code points.
fn charlist(s: &str) -> String {
    if s.is_empty() {
        return "[]".to_string();
    }
    if s.chars().all(printable_latin1) {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{0b}' => out.push_str("\\v"),
                '\u{08}' => out.push_str("\\b"),
                '\u{0c}' => out.push_str("\\f"),
                '\u{1b}' => out.push_str("\\e"),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    } else {
        let codes: Vec<String> = s.chars().map(|c| (c as u32).to_string()).collect();
        format!("[{}]", codes.join(","))
    }
}

/// A field as rabbitmqctl prints it inside an AMQP table (Erlang `~tp`).
fn term(f: &Field) -> String {
    match f {
        Field::Str(s) => charlist(s),
        Field::Int(i) => i.clone(),
        Field::Float(x) => erl_float(*x),
        Field::Bool(b) => b.to_string(),
        Field::Void => "undefined".to_string(),
        Field::Table(entries) => {
            let items: Vec<String> = entries
                .iter()
                .map(|(k, _, v)| format!("{{{},{}}}", charlist(k), term(v)))
                .collect();
            format!("[{}]", items.join(","))
        }
        Field::Array(items) => {
            // A list of small integers is a charlist to Erlang too.
            let chars: Option<String> = items
                .iter()
                .map(|(_, v)| match v {
                    Field::Int(i) => i
                        .parse::<u32>()
                        .ok()
                        .and_then(char::from_u32)
                        .filter(|c| printable_latin1(*c)),
                    _ => None,
                })
                .collect();
            match chars {
                Some(s) if !s.is_empty() => charlist(&s),
                _ => {
                    let parts: Vec<String> = items.iter().map(|(_, v)| term(v)).collect();
                    format!("[{}]", parts.join(","))
                }
            }
        }
    }
}

/// A number as Erlang prints it.
fn number(n: &serde_json::Number) -> String {
    if n.is_f64() {
        erl_float(n.as_f64().unwrap_or(0.0))
    } else {
        n.to_string()
    }
}

/// One table cell, as rabbitmqctl's table formatter prints the value.
pub fn cell(column: &str, v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => number(n),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        v if is_table(v) => term(&table(v)),
        Value::Array(items) => {
            let ints = !items.is_empty() && items.iter().all(|i| i.is_i64() || i.is_u64());
            if column == "protocol" && ints {
                // An Erlang tuple such as {0,9,1}.
                let parts: Vec<String> = items.iter().map(|i| i.to_string()).collect();
                format!("{{{}}}", parts.join(","))
            } else if items.first().is_some_and(|i| i.is_number()) {
                // A list starting with a number prints as an Erlang term.
                term(&field(v))
            } else {
                let parts: Vec<String> = items.iter().map(|i| cell(column, i)).collect();
                format!("[{}]", parts.join(", "))
            }
        }
        Value::Object(_) => term(&table(v)),
    }
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

/// A field in rabbitmqctl's JSON form: tables as `[key, type, value]`
/// triples, non-empty arrays as an object keyed by each element's type
/// (keys repeat: that is what rabbitmqctl prints).
fn json_field(f: &Field) -> String {
    match f {
        Field::Str(s) => json_str(s),
        Field::Int(i) => i.clone(),
        Field::Float(x) => Value::from(*x).to_string(),
        Field::Bool(b) => b.to_string(),
        Field::Void => "null".to_string(),
        Field::Table(entries) => {
            let items: Vec<String> = entries
                .iter()
                .map(|(k, ty, v)| format!("[{},{},{}]", json_str(k), json_str(ty), json_field(v)))
                .collect();
            format!("[{}]", items.join(","))
        }
        Field::Array(items) if items.is_empty() => "[]".to_string(),
        Field::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|(ty, v)| format!("{}:{}", json_str(ty), json_field(v)))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
    }
}

/// One cell in `--formatter json` output.
pub fn json_cell(v: &Value) -> String {
    if is_table(v) {
        json_field(&table(v))
    } else {
        v.to_string()
    }
}

/// One row as a JSON object, keys in column order.
pub fn json_row(columns: &[String], row: &[Value]) -> String {
    let parts: Vec<String> = columns
        .iter()
        .zip(row.iter().chain(std::iter::repeat(&Value::Null)))
        .map(|(c, v)| format!("{}:{}", json_str(c), json_cell(v)))
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// A CSV field: always quoted, quotes doubled.
pub fn csv_field(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A JSON value as Elixir's `inspect` prints the decoded term (for the
/// `{:badmap, ...}` error of a definitions file that is not an object).
pub fn elixir_inspect(v: &Value) -> String {
    match v {
        Value::Null => "nil".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number(n),
        Value::String(s) => json_str(s),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(elixir_inspect).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Object(map) => {
            let parts: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{} => {}", json_str(k), elixir_inspect(v)))
                .collect();
            format!("%{{{}}}", parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn erlang_floats_pick_the_shorter_notation() {
        let cases = [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (1.0e-5, "1.0e-5"),
            (1.0e20, "1.0e20"),
            (100.0, "100.0"),
            (12345.0, "12345.0"),
            (1.0e6, "1.0e6"),
            (123456.7, "123456.7"),
            (0.00012, "1.2e-4"),
            (0.0001, "0.0001"),
            (1234567.0, "1234567.0"),
            (99999999999999.0, "99999999999999.0"),
            (1.0e14, "1.0e14"),
            (-2.5, "-2.5"),
            (0.0, "0.0"),
            (60.0, "60.0"),
            (10.1106, "10.1106"),
            (123456789012345678.0, "1.2345678901234568e17"),
            // Checked against `erl` (OTP 25, as RabbitMQ 3.10.8 runs on).
            (1000.0, "1.0e3"),
            (120.0, "120.0"),
            (1200.0, "1.2e3"),
            (9007199254740992.0, "9.007199254740992e15"),
            (9007199254740990.0, "9007199254740990.0"),
            (0.00123, "0.00123"),
            (0.000123, "1.23e-4"),
            (0.0015, "0.0015"),
            (3.3333333333333335e-5, "3.3333333333333335e-5"),
            (2.5e15, "2.5e15"),
            (5.0e-324, "5.0e-324"),
            (1.7976931348623157e308, "1.7976931348623157e308"),
        ];
        for (x, want) in cases {
            assert_eq!(erl_float(x), want, "{x}");
        }
    }

    #[test]
    fn scalar_cells() {
        assert_eq!(cell("name", &json!("amq.direct")), "amq.direct");
        assert_eq!(cell("name", &json!("")), "");
        assert_eq!(cell("messages", &json!(42)), "42");
        assert_eq!(cell("x", &json!(0.5)), "0.5");
        assert_eq!(cell("durable", &json!(true)), "true");
        assert_eq!(cell("exclusive", &json!(false)), "false");
        assert_eq!(cell("policy", &Value::Null), "");
        // No escaping outside tables.
        assert_eq!(cell("name", &json!("a\"b\\c")), "a\"b\\c");
    }

    #[test]
    fn list_cells() {
        assert_eq!(
            cell("tags", &json!(["administrator", "monitoring"])),
            "[administrator, monitoring]"
        );
        assert_eq!(cell("tags", &json!([])), "[]");
        assert_eq!(cell("protocol", &json!([0, 9, 1])), "{0,9,1}");
        assert_eq!(cell("other", &json!([1, 2])), "[1,2]");
    }

    #[test]
    fn object_cells_print_as_amqp_tables() {
        let args = json!({"x-max-length": 10, "x-message-ttl": 60000, "x-queue-mode": "lazy"});
        assert_eq!(
            cell("arguments", &args),
            r#"[{"x-max-length",10},{"x-message-ttl",60000},{"x-queue-mode","lazy"}]"#
        );
        assert_eq!(cell("arguments", &json!({})), "[]");
        // Empty strings are empty charlists; nested tables and arrays.
        let props = json!({"a": "", "b": {"c": 2}, "d": [1, "a", true], "e": []});
        assert_eq!(
            cell("client_properties", &props),
            r#"[{"a",[]},{"b",[{"c",2}]},{"d",[1,"a",true]},{"e",[]}]"#
        );
    }

    #[test]
    fn charlists_follow_erlang_printability() {
        let props = json!({"lat": "h\u{e9}llo", "q": "a\"b\\c\nd", "uni": "h\u{e9}llo \u{65e5}", "ints": [104, 105], "v": null});
        assert_eq!(
            cell("client_properties", &props),
            "[{\"ints\",\"hi\"},{\"lat\",\"h\u{e9}llo\"},{\"q\",\"a\\\"b\\\\c\\nd\"},\
             {\"uni\",[104,233,108,108,111,32,26085]},{\"v\",undefined}]"
        );
    }

    #[test]
    fn typed_triples_keep_order_and_types() {
        let args = json!([
            ["x-max-length", "signedint", 5],
            ["x-dead-letter-exchange", "longstr", ""]
        ]);
        assert_eq!(
            cell("arguments", &args),
            r#"[{"x-max-length",5},{"x-dead-letter-exchange",[]}]"#
        );
        assert_eq!(
            json_cell(&args),
            r#"[["x-max-length","signedint",5],["x-dead-letter-exchange","longstr",""]]"#
        );
        let nested = json!([
            ["caps", "table", [["basic.nack", "bool", true]]],
            ["l", "array", [["signedint", 1], ["longstr", "a"]]]
        ]);
        assert_eq!(
            cell("client_properties", &nested),
            r#"[{"caps",[{"basic.nack",true}]},{"l",[1,"a"]}]"#
        );
        let from_rabbitmqctl = json!([["l", "array", {"signedint": 1, "longstr": "a"}]]);
        assert_eq!(
            cell("client_properties", &from_rabbitmqctl),
            r#"[{"l",["a",1]}]"#
        );
        assert_eq!(
            json_cell(&nested),
            r#"[["caps","table",[["basic.nack","bool",true]]],["l","array",{"signedint":1,"longstr":"a"}]]"#
        );
    }

    #[test]
    fn json_cells_infer_amqp_types_for_objects() {
        let args = json!({"k": "v", "n": 5, "b": true, "t": {}, "a": [], "l": [1, 2]});
        assert_eq!(
            json_cell(&args),
            r#"[["a","array",[]],["b","bool",true],["k","longstr","v"],["l","array",{"long":1,"long":2}],["n","long",5],["t","table",[]]]"#
        );
        assert_eq!(json_cell(&json!(["administrator"])), r#"["administrator"]"#);
        assert_eq!(json_cell(&json!(7)), "7");
    }

    #[test]
    fn json_rows_keep_column_order() {
        let cols = vec!["user".to_string(), "tags".to_string()];
        assert_eq!(
            json_row(&cols, &[json!("guest"), json!(["administrator"])]),
            r#"{"user":"guest","tags":["administrator"]}"#
        );
        // A short row is padded with nulls rather than dropping columns.
        assert_eq!(
            json_row(&cols, &[json!("x")]),
            r#"{"user":"x","tags":null}"#
        );
    }

    #[test]
    fn csv_fields_are_quoted() {
        assert_eq!(csv_field("a\"b"), "\"a\"\"b\"");
        assert_eq!(csv_field("2"), "\"2\"");
    }

    #[test]
    fn elixir_terms() {
        assert_eq!(elixir_inspect(&json!([1, 2])), "[1, 2]");
        assert_eq!(elixir_inspect(&json!("str")), "\"str\"");
        assert_eq!(elixir_inspect(&Value::Null), "nil");
        assert_eq!(elixir_inspect(&json!({"a": 1})), "%{\"a\" => 1}");
    }
}
