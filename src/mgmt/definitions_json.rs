//! RabbitMQ's definitions JSON, what `rabbitmqctl export_definitions` and
//! `GET /api/definitions` produce and `import_definitions` reads, as serde
//! types. Pure: no broker state.
//!
//! Output matches `rabbitmqctl export_definitions` of RabbitMQ 3.10.8 byte
//! for byte ([`to_json`]): it encodes Erlang maps, so every object's keys
//! come out sorted, and the structs below declare their fields in that
//! order. (The management API writes the top-level keys in another order;
//! JSON readers do not care.) Input is as lenient as RabbitMQ's import:
//! every list may be missing, unknown fields are ignored, user tags may be a
//! comma-separated string, and `arguments` may be `[]`.
//!
//! Field-table arguments convert as RabbitMQ converts them
//! ([`table_to_json`], [`json_to_table`]).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

use crate::access::password::{HashAlgorithm, PasswordHash};
use crate::codec::{FieldTable, FieldValue};

/// The reason RabbitMQ's management API gives for a body that is not a JSON
/// object; [`parse`] errors for such input start with it.
pub const NOT_JSON: &str = "failed_to_parse_json";

/// A whole definitions file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Definitions {
    #[serde(default)]
    pub bindings: Vec<BindingDef>,
    #[serde(default)]
    pub exchanges: Vec<ExchangeDef>,
    #[serde(default)]
    pub global_parameters: Vec<Value>,
    #[serde(default)]
    pub parameters: Vec<Value>,
    #[serde(default)]
    pub permissions: Vec<PermissionDef>,
    #[serde(default)]
    pub policies: Vec<Value>,
    /// Written by the management API only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_version: Option<String>,
    #[serde(default)]
    pub queues: Vec<QueueDef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rabbit_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rabbitmq_version: Option<String>,
    #[serde(default)]
    pub topic_permissions: Vec<Value>,
    #[serde(default)]
    pub users: Vec<UserDef>,
    #[serde(default)]
    pub vhosts: Vec<VhostDef>,
}

impl Definitions {
    /// The version of the broker that wrote the file, preferring
    /// `rabbitmq_version` as RabbitMQ's import does; it decides the hashing
    /// algorithm of users that name none (see [`UserDef::credentials`]).
    pub fn version(&self) -> Option<&str> {
        self.rabbitmq_version
            .as_deref()
            .or(self.rabbit_version.as_deref())
    }
}

/// A user of RabbitMQ's internal database.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserDef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashing_algorithm: Option<String>,
    /// `{}` when unset; e.g. `{"max-channels": 16}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Value>,
    pub name: String,
    /// A cleartext password, accepted by RabbitMQ's import in hand-written
    /// files instead of `password_hash`; never exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// base64 of `salt ‖ digest`; `""` for a user without a password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// Required, as RabbitMQ refuses a user without tags (`tags_not_present`).
    pub tags: Tags,
}

impl UserDef {
    /// A user as RabbitMQ 3.10 exports one.
    pub fn new(name: &str, hash: &PasswordHash, tags: Tags) -> Self {
        UserDef {
            hashing_algorithm: Some(hash.algorithm.rabbit_name().to_owned()),
            limits: Some(Value::Object(Map::new())),
            name: name.to_owned(),
            password: None,
            password_hash: Some(hash.to_base64()),
            tags,
        }
    }

    /// The stored password this definition gives the user, decided as
    /// RabbitMQ's import does (rabbit_auth_backend_internal:put_user/3):
    /// a hash (with its algorithm, or the one implied by `rabbit_version`),
    /// or a cleartext password hashed now, never both; neither means no
    /// password.
    pub fn credentials(&self, rabbit_version: Option<&str>) -> Result<PasswordHash, String> {
        match (&self.password, &self.password_hash) {
            (Some(_), Some(_)) => Err("both_password_and_password_hash_are_provided".to_owned()),
            (None, Some(hash)) => {
                let alg = HashAlgorithm::for_definitions(
                    self.hashing_algorithm.as_deref(),
                    rabbit_version,
                )?;
                PasswordHash::from_base64(alg, hash)
                    .map_err(|e| format!("user '{}': {e}", self.name))
            }
            (Some(password), None) => Ok(PasswordHash::new(password)),
            (None, None) => Ok(PasswordHash::none()),
        }
    }
}

/// User or vhost tags. RabbitMQ 3.10 exports a list; older files and
/// hand-written ones use a comma-separated string, which RabbitMQ splits
/// and trims, dropping empty items.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tags(pub Vec<String>);

impl Tags {
    fn from_csv(s: &str) -> Self {
        Tags(
            s.split(',')
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect(),
        )
    }

    /// Tags from a JSON string or list of strings; `None` for anything else.
    fn from_json(v: &Value) -> Option<Self> {
        match v {
            Value::String(s) => Some(Self::from_csv(s)),
            Value::Array(items) => items
                .iter()
                .map(|t| t.as_str().map(|t| t.trim().to_owned()))
                .collect::<Option<Vec<_>>>()
                .map(Tags),
            _ => None,
        }
    }
}

impl Serialize for Tags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for t in &self.0 {
            seq.serialize_element(t)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TagsVisitor;
        impl<'de> Visitor<'de> for TagsVisitor {
            type Value = Tags;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of tags or a comma-separated string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Tags, E> {
                Ok(Tags::from_csv(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tags, A::Error> {
                let mut tags = Vec::new();
                while let Some(t) = seq.next_element::<String>()? {
                    tags.push(t.trim().to_owned());
                }
                Ok(Tags(tags))
            }
        }
        d.deserialize_any(TagsVisitor)
    }
}

/// A virtual host. 3.10 exports `limits` (a list of `[name, value]` pairs,
/// `[]` when unset) and `metadata` (`description`, `tags`, maybe
/// `default_queue_type`); older files put `description` and `tags` at the
/// top level, where they take precedence on import.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VhostDef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
}

impl VhostDef {
    fn metadata_field(&self, key: &str) -> Option<&Value> {
        self.metadata.as_ref()?.get(key)
    }

    /// The description RabbitMQ's import gives the vhost ("" if none).
    pub fn description(&self) -> &str {
        self.description
            .as_deref()
            .or_else(|| self.metadata_field("description")?.as_str())
            .unwrap_or("")
    }

    /// The tags RabbitMQ's import gives the vhost; metadata tags may be a
    /// string (`add_vhost --tags a,b` stores it so) or a list.
    pub fn tags(&self) -> Tags {
        if let Some(tags) = &self.tags {
            return tags.clone();
        }
        self.metadata_field("tags")
            .and_then(Tags::from_json)
            .unwrap_or_default()
    }

    pub fn default_queue_type(&self) -> Option<&str> {
        self.metadata_field("default_queue_type")?.as_str()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionDef {
    pub configure: String,
    pub read: String,
    pub user: String,
    pub vhost: String,
    pub write: String,
}

/// A queue. `vhost` is absent in a single vhost's definitions
/// (`GET /api/definitions/{vhost}`), where the importer supplies it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueDef {
    #[serde(default, deserialize_with = "arguments_in")]
    pub arguments: Map<String, Value>,
    pub auto_delete: bool,
    pub durable: bool,
    pub name: String,
    /// `classic`, `quorum` or `stream`, written by 3.10; import ignores it
    /// (`x-queue-type` in `arguments` decides).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub queue_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vhost: Option<String>,
}

/// An exchange. RabbitMQ's export leaves out internal exchanges and so
/// never writes `internal`; its import takes a missing one as false.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExchangeDef {
    #[serde(default, deserialize_with = "arguments_in")]
    pub arguments: Map<String, Value>,
    pub auto_delete: bool,
    pub durable: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub internal: bool,
    pub name: String,
    #[serde(rename = "type")]
    pub exchange_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vhost: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BindingDef {
    #[serde(default, deserialize_with = "arguments_in")]
    pub arguments: Map<String, Value>,
    pub destination: String,
    /// `queue` or `exchange`.
    pub destination_type: String,
    pub routing_key: String,
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vhost: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `arguments` as RabbitMQ's import takes it: an object, or `[]` / `null`
/// for none (empty Erlang proplists encode as `[]`).
fn arguments_in<'de, D: Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
    match Value::deserialize(d)? {
        Value::Object(m) => Ok(m),
        Value::Null => Ok(Map::new()),
        Value::Array(a) if a.is_empty() => Ok(Map::new()),
        other => Err(de::Error::custom(format!(
            "arguments must be an object, got {other}"
        ))),
    }
}

/// Parses a definitions file. An empty text is an empty file, as in
/// RabbitMQ. Errors for input that is not a JSON object start with
/// [`NOT_JSON`]; other errors name the offending field.
pub fn parse(text: &str) -> Result<Definitions, String> {
    if text.is_empty() {
        return Ok(Definitions::default());
    }
    // serde would also take a top-level array as the struct's fields in
    // order; RabbitMQ wants an object.
    if !text.trim_start().starts_with('{') {
        return Err(match serde_json::from_str::<de::IgnoredAny>(text) {
            Err(e) => format!("{NOT_JSON}: {e}"),
            Ok(_) => format!("{NOT_JSON}: definitions must be a JSON object"),
        });
    }
    serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => format!("invalid definitions: {e}"),
        _ => format!("{NOT_JSON}: {e}"),
    })
}

/// Compact JSON, byte for byte what `rabbitmqctl export_definitions` writes
/// for the same definitions (floats aside: Erlang writes `1.0e3`).
pub fn to_json(defs: &Definitions) -> String {
    serde_json::to_string(defs).expect("definitions have string keys only")
}

pub fn to_json_pretty(defs: &Definitions) -> String {
    serde_json::to_string_pretty(defs).expect("definitions have string keys only")
}

/// Field-table arguments as RabbitMQ's definitions write them
/// (rabbit_misc:amqp_table/1), including its quirks, which a file moving
/// between the brokers must keep:
/// - `L` is read as signed by RabbitMQ, so a `U64` above `i64::MAX` wraps;
/// - a decimal of scale `s` and value `v` becomes the float `s.v` (scale 2,
///   value 314 → 2.314: RabbitMQ prints the pair with a dot);
/// - a long string or byte array that is not UTF-8 becomes
///   `"Not UTF-8, base64 is: …"` with the base64 split into 76-char lines;
/// - void becomes the string `"undefined"` (the Erlang atom);
/// - timestamps are plain integers, `f` floats widen to doubles.
///
/// Non-finite floats (RabbitMQ's parser cannot even read them) become null.
pub fn table_to_json(table: &FieldTable) -> Map<String, Value> {
    // Later duplicates win, as in maps:from_list/1.
    table
        .iter()
        .map(|(k, v)| (k.to_string(), value_to_json(v)))
        .collect()
}

fn value_to_json(v: &FieldValue) -> Value {
    match v {
        FieldValue::Bool(b) => Value::Bool(*b),
        FieldValue::I8(n) => (*n).into(),
        FieldValue::U8(n) => (*n).into(),
        FieldValue::I16(n) => (*n).into(),
        FieldValue::U16(n) => (*n).into(),
        FieldValue::I32(n) => (*n).into(),
        FieldValue::U32(n) => (*n).into(),
        FieldValue::I64(n) => (*n).into(),
        FieldValue::U64(n) => (*n as i64).into(),
        FieldValue::Timestamp(t) => (*t).into(),
        FieldValue::F32(f) => float(f64::from(*f)),
        FieldValue::F64(f) => float(*f),
        FieldValue::Decimal { scale, value } => float(
            format!("{scale}.{value}")
                .parse()
                .expect("digits, a dot, digits"),
        ),
        FieldValue::LongStr(b) | FieldValue::ByteArray(b) => Value::String(utf8_safe(b)),
        FieldValue::Array(items) => Value::Array(items.iter().map(value_to_json).collect()),
        FieldValue::Table(t) => Value::Object(table_to_json(t)),
        FieldValue::Void => Value::String("undefined".to_owned()),
    }
}

fn float(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

fn utf8_safe(b: &Bytes) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => {
            let b64 = STANDARD.encode(b);
            let lines: Vec<&str> = b64
                .as_bytes()
                .chunks(76)
                .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
                .collect();
            format!("Not UTF-8, base64 is: {}", lines.join("\n"))
        }
    }
}

/// JSON arguments as RabbitMQ's import types them (rabbit_misc:to_amqp_table/1):
/// integers → `l` (signed 64), other numbers → `d`, strings → `S`, booleans
/// → `t`, lists → `A`, objects → `F`. RabbitMQ refuses null
/// (`null_not_allowed`); so do we, and integers beyond `i64` and keys
/// longer than a short string, which RabbitMQ could not put on the wire.
pub fn json_to_table(map: &Map<String, Value>) -> Result<FieldTable, String> {
    let mut table = FieldTable::new();
    for (k, v) in map {
        if k.len() > 255 {
            return Err(format!("argument name longer than 255 bytes: '{k}'"));
        }
        table.insert(k.as_str(), json_to_value(k, v)?);
    }
    Ok(table)
}

fn json_to_value(key: &str, v: &Value) -> Result<FieldValue, String> {
    Ok(match v {
        Value::String(s) => FieldValue::LongStr(Bytes::copy_from_slice(s.as_bytes())),
        Value::Bool(b) => FieldValue::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.is_f64()) {
            (Some(i), _) => FieldValue::I64(i),
            (None, true) => FieldValue::F64(n.as_f64().expect("an f64 number")),
            (None, false) => return Err(format!("argument '{key}': integer {n} out of range")),
        },
        Value::Array(items) => FieldValue::Array(
            items
                .iter()
                .map(|i| json_to_value(key, i))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => FieldValue::Table(json_to_table(m)?),
        Value::Null => return Err(format!("null_not_allowed (argument '{key}')")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A real `rabbitmqctl export_definitions` of RabbitMQ 3.10.8, reduced to
    /// the fixture's objects and the default guest user and `/` vhost.
    const FIXTURE: &str = include_str!("../../tests/fixtures/rabbitmq-3.10-definitions.json");

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object: {v}"),
        }
    }

    fn s(text: &str) -> FieldValue {
        FieldValue::LongStr(Bytes::copy_from_slice(text.as_bytes()))
    }

    #[test]
    fn fixture_parses_with_every_section() {
        let d = parse(FIXTURE).unwrap();
        assert_eq!(d.version(), Some("3.10.8"));
        assert_eq!(d.rabbit_version.as_deref(), Some("3.10.8"));
        assert_eq!(d.product_name, None);

        let user = d
            .users
            .iter()
            .find(|u| u.name == "defs_fixture_user")
            .unwrap();
        assert_eq!(user.tags, Tags(vec!["administrator".into()]));
        assert_eq!(user.limits, Some(json!({"max-channels": 16})));
        let hash = user.credentials(d.version()).unwrap();
        assert_eq!(hash.algorithm, HashAlgorithm::Sha256);
        assert!(hash.verify("fixture-pass"));
        assert!(!hash.verify("fixture-pas"));
        let guest = d.users.iter().find(|u| u.name == "guest").unwrap();
        assert!(guest.credentials(d.version()).unwrap().verify("guest"));
        // Exported after `rabbitmqctl clear_password`.
        let np = d
            .users
            .iter()
            .find(|u| u.name == "defs_fixture_np")
            .unwrap();
        assert_eq!(np.password_hash.as_deref(), Some(""));
        assert!(np.credentials(d.version()).unwrap().is_none());

        let vh = d
            .vhosts
            .iter()
            .find(|v| v.name == "defs_fixture_vhost")
            .unwrap();
        assert_eq!(vh.description(), "Warren fixture vhost");
        assert_eq!(vh.tags(), Tags(vec!["fixture".into(), "defs".into()]));
        assert_eq!(
            vh.limits,
            Some(json!([["max-connections", 64], ["max-queues", 256]]))
        );
        let root = d.vhosts.iter().find(|v| v.name == "/").unwrap();
        assert_eq!(root.description(), "Default virtual host");
        assert_eq!(root.tags(), Tags::default());

        assert!(d.permissions.contains(&PermissionDef {
            configure: ".*".into(),
            read: ".*".into(),
            user: "defs_fixture_user".into(),
            vhost: "defs_fixture_vhost".into(),
            write: "^defs_fixture_.*".into(),
        }));
        assert_eq!(d.topic_permissions[0]["exchange"], "amq.topic");
        assert_eq!(d.topic_permissions[0]["write"], "^a\\.");

        let q = d
            .queues
            .iter()
            .find(|q| q.name == "defs_fixture_q_args")
            .unwrap();
        assert!(q.durable && !q.auto_delete);
        assert_eq!(q.queue_type.as_deref(), Some("classic"));
        assert_eq!(q.vhost.as_deref(), Some("defs_fixture_vhost"));
        let args = json_to_table(&q.arguments).unwrap();
        assert_eq!(args.get("x-max-length"), Some(&FieldValue::I64(10)));
        assert_eq!(args.get("x-overflow"), Some(&s("reject-publish")));
        assert!(d
            .queues
            .iter()
            .any(|q| q.name == "defs_fixture_q" && q.arguments.is_empty()));

        let x = &d.exchanges[0];
        assert_eq!(
            (x.name.as_str(), x.exchange_type.as_str()),
            ("defs_fixture_x", "topic")
        );
        assert!(x.durable && !x.internal);
        let b = &d.bindings[0];
        assert_eq!(
            (
                b.source.as_str(),
                b.destination.as_str(),
                b.destination_type.as_str()
            ),
            ("defs_fixture_x", "defs_fixture_q", "queue")
        );
        assert_eq!(b.routing_key, "a.#");

        assert_eq!(
            d.policies[0]["definition"],
            json!({"max-length": 100, "overflow": "drop-head"})
        );
        assert_eq!(d.parameters[0]["component"], "vhost-limits");
        // Erlang proplists encode as lists of pairs.
        assert_eq!(
            d.global_parameters[0]["value"],
            json!([["k", "v"], ["n", 2]])
        );
    }

    #[test]
    fn fixture_reserialises_byte_for_byte() {
        let d = parse(FIXTURE).unwrap();
        assert_eq!(to_json(&d), FIXTURE.trim_end());
    }

    #[test]
    fn pretty_output_parses_back_equal() {
        let d = parse(FIXTURE).unwrap();
        let pretty = to_json_pretty(&d);
        assert!(pretty.contains("\n  \"bindings\": ["));
        assert_eq!(parse(&pretty).unwrap(), d);
    }

    #[test]
    fn partial_files_and_unknown_fields() {
        assert_eq!(parse("").unwrap(), Definitions::default());
        let d = parse(r#"{"vhosts":[{"name":"v","tracing":false}],"future_section":[1]}"#).unwrap();
        assert_eq!(d.vhosts.len(), 1);
        assert_eq!(d.vhosts[0].description(), "");
        assert!(d.users.is_empty() && d.queues.is_empty() && d.rabbit_version.is_none());
        // Nothing unknown is written back; empty lists are, as RabbitMQ does.
        let out = to_json(&d);
        assert!(!out.contains("future_section") && !out.contains("tracing"));
        assert!(out.contains(r#""users":[]"#));
    }

    #[test]
    fn not_json_errors_look_like_rabbitmq() {
        for bad in ["not json {", "{\"users\": [", "[]", "42", " ", "{} x"] {
            let e = parse(bad).unwrap_err();
            assert!(e.starts_with(NOT_JSON), "{bad:?}: {e}");
        }
        assert!(parse("[]").unwrap_err().contains("must be a JSON object"));
        let e = parse(r#"{"users": {"name": "x"}}"#).unwrap_err();
        assert!(e.starts_with("invalid definitions"), "{e}");
        let e = parse(r#"{"queues": [{"name": "q", "durable": true}]}"#).unwrap_err();
        assert!(e.contains("auto_delete"), "{e}");
    }

    #[test]
    fn tags_accept_a_string_or_a_list_and_write_a_list() {
        let user = |tags: &str| {
            let text = format!(r#"{{"users":[{{"name":"u","password_hash":"","tags":{tags}}}]}}"#);
            parse(&text).unwrap().users.remove(0)
        };
        let want = Tags(vec!["administrator".into(), "monitoring".into()]);
        assert_eq!(user(r#""administrator, monitoring,""#).tags, want);
        assert_eq!(user(r#"["administrator"," monitoring"]"#).tags, want);
        assert_eq!(user(r#""""#).tags, Tags::default());
        assert!(
            to_json(&parse(r#"{"users":[{"name":"u","tags":"a,b"}]}"#).unwrap())
                .contains(r#""tags":["a","b"]"#)
        );
        let e = parse(r#"{"users":[{"name":"u","tags":7}]}"#).unwrap_err();
        assert!(e.contains("comma-separated"), "{e}");
        assert!(parse(r#"{"users":[{"name":"u"}]}"#)
            .unwrap_err()
            .contains("tags"));
    }

    #[test]
    fn vhost_top_level_fields_override_metadata() {
        let d = parse(
            r#"{"vhosts":[{"name":"v","description":"top","tags":"a,b",
                "metadata":{"description":"meta","tags":["c"],"default_queue_type":"quorum"}}]}"#,
        )
        .unwrap();
        let v = &d.vhosts[0];
        assert_eq!(v.description(), "top");
        assert_eq!(v.tags(), Tags(vec!["a".into(), "b".into()]));
        assert_eq!(v.default_queue_type(), Some("quorum"));
        let meta_only = VhostDef {
            description: None,
            tags: None,
            ..v.clone()
        };
        assert_eq!(meta_only.description(), "meta");
        assert_eq!(meta_only.tags(), Tags(vec!["c".into()]));
    }

    #[test]
    fn user_credentials_follow_rabbitmq_import() {
        let u = |extra: &str| {
            let text = format!(r#"{{"users":[{{"name":"u","tags":[]{extra}}}]}}"#);
            parse(&text).unwrap().users.remove(0)
        };
        let clear = u(r#","password":"pw""#).credentials(None).unwrap();
        assert!(clear.verify("pw") && !clear.verify("px"));
        assert!(u("").credentials(None).unwrap().is_none());
        let both = u(r#","password":"pw","password_hash":"""#).credentials(None);
        assert_eq!(
            both.unwrap_err(),
            "both_password_and_password_hash_are_provided"
        );
        // No algorithm in a 3.5 export means MD5 (salt deadbeef, "s3cret").
        let md5 = u(r#","password_hash":"3q2+7+KYsZ+5Qt2oRkzTPL9OV2g=""#);
        let h = md5.credentials(Some("3.5.7")).unwrap();
        assert_eq!(h.algorithm, HashAlgorithm::Md5);
        assert!(h.verify("s3cret"));
        assert!(md5.credentials(Some("3.10.8")).is_err());
        let unknown = u(r#","password_hash":"","hashing_algorithm":"rabbit_password_hashing_foo""#);
        assert!(unknown.credentials(None).is_err());
    }

    #[test]
    fn new_user_def_writes_what_rabbitmq_exports() {
        let hash = PasswordHash::with_salt(HashAlgorithm::Sha512, [1, 2, 3, 4], "pw");
        let u = UserDef::new("alice", &hash, Tags(vec!["management".into()]));
        let text = serde_json::to_string(&u).unwrap();
        let want = format!(
            r#"{{"hashing_algorithm":"rabbit_password_hashing_sha512","limits":{{}},"name":"alice","password_hash":"{}","tags":["management"]}}"#,
            hash.to_base64()
        );
        assert_eq!(text, want);
        assert_eq!(u.credentials(Some("3.10.8")).unwrap(), hash);
    }

    #[test]
    fn arguments_may_be_an_empty_list_or_missing() {
        let d = parse(
            r#"{"queues":[{"name":"q","vhost":"/","durable":true,"auto_delete":false,"arguments":[]}],
                "exchanges":[{"name":"x","vhost":"/","type":"direct","durable":true,"auto_delete":false}],
                "bindings":[{"source":"x","destination":"q","destination_type":"queue","routing_key":"k","arguments":null}]}"#,
        )
        .unwrap();
        assert!(d.queues[0].arguments.is_empty());
        assert!(d.exchanges[0].arguments.is_empty());
        assert!(d.bindings[0].arguments.is_empty());
        assert_eq!(d.bindings[0].vhost, None);
        let e = parse(
            r#"{"queues":[{"name":"q","durable":true,"auto_delete":false,"arguments":[1]}]}"#,
        )
        .unwrap_err();
        assert!(e.contains("arguments must be an object"), "{e}");
    }

    #[test]
    fn internal_is_written_only_when_true() {
        let mut x: ExchangeDef = serde_json::from_value(
            json!({"name": "x", "type": "fanout", "durable": false, "auto_delete": true}),
        )
        .unwrap();
        assert!(!x.internal);
        assert!(!serde_json::to_string(&x).unwrap().contains("internal"));
        x.internal = true;
        let back: ExchangeDef = serde_json::from_str(&serde_json::to_string(&x).unwrap()).unwrap();
        assert!(back.internal);
    }

    /// Declared on RabbitMQ 3.10.8 over AMQP with these typed arguments;
    /// `export_definitions` then wrote `OBSERVED`.
    #[test]
    fn table_to_json_matches_rabbitmq_export() {
        let table: FieldTable = [
            (
                "p_A",
                FieldValue::Array(vec![
                    FieldValue::I32(1),
                    s("two"),
                    FieldValue::Bool(true),
                    FieldValue::Array(vec![]),
                    FieldValue::Table(FieldTable::new()),
                    FieldValue::Void,
                ]),
            ),
            ("p_B", FieldValue::U8(200)),
            (
                "p_D",
                FieldValue::Decimal {
                    scale: 2,
                    value: 314,
                },
            ),
            ("p_D0", FieldValue::Decimal { scale: 0, value: 7 }),
            (
                "p_F",
                FieldValue::Table(
                    [("k", s("v")), ("n", FieldValue::I32(1))]
                        .into_iter()
                        .collect(),
                ),
            ),
            ("p_I", FieldValue::I32(-70000)),
            ("p_L", FieldValue::U64((1 << 63) + 5)),
            ("p_S", s("hello")),
            (
                "p_S_bad",
                FieldValue::LongStr(Bytes::from_static(b"\xff\xfe")),
            ),
            (
                "p_S_badlong",
                FieldValue::LongStr(Bytes::from(vec![0xff; 80])),
            ),
            ("p_T", FieldValue::Timestamp(1_700_000_000)),
            ("p_V", FieldValue::Void),
            ("p_b", FieldValue::I8(-5)),
            ("p_d", FieldValue::F64(1.5)),
            ("p_d_big", FieldValue::F64(1e300)),
            ("p_d_int", FieldValue::F64(2.0)),
            ("p_d_small", FieldValue::F64(1e-7)),
            ("p_f", FieldValue::F32(0.1)),
            ("p_i", FieldValue::U32(4_000_000_000)),
            ("p_l", FieldValue::I64(-(1 << 40))),
            ("p_s", FieldValue::I16(-300)),
            ("p_t", FieldValue::Bool(true)),
            ("p_t0", FieldValue::Bool(false)),
            ("p_u", FieldValue::U16(60000)),
            ("p_uni", s("é日🐇/\"\\\n")),
            ("p_x", FieldValue::ByteArray(Bytes::from_static(b"ab"))),
            (
                "p_x_bad",
                FieldValue::ByteArray(Bytes::from_static(b"\xff")),
            ),
        ]
        .into_iter()
        .collect();
        // Erlang's float notation (1.0e300) parses to the same numbers.
        const OBSERVED: &str = r#"{"p_A":[1,"two",true,[],{},"undefined"],"p_B":200,"p_D":2.314,"p_D0":0.7,"p_F":{"k":"v","n":1},"p_I":-70000,"p_L":-9223372036854775803,"p_S":"hello","p_S_bad":"Not UTF-8, base64 is: //4=","p_S_badlong":"Not UTF-8, base64 is: ////////////////////////////////////////////////////////////////////////////\n//////////////////////////////8=","p_T":1700000000,"p_V":"undefined","p_b":-5,"p_d":1.5,"p_d_big":1.0e300,"p_d_int":2.0,"p_d_small":1.0e-7,"p_f":0.10000000149011612,"p_i":4000000000,"p_l":-1099511627776,"p_s":-300,"p_t":true,"p_t0":false,"p_u":60000,"p_uni":"é日🐇/\"\\\n","p_x":"ab","p_x_bad":"Not UTF-8, base64 is: /w=="}"#;
        let want = obj(serde_json::from_str(OBSERVED).unwrap());
        let got = table_to_json(&table);
        for (k, v) in &want {
            assert_eq!(got.get(k), Some(v), "{k}");
        }
        assert_eq!(got, want);
    }

    /// Imported into RabbitMQ 3.10.8, these arguments were stored with the
    /// types below (`amqqueue:get_arguments/1`).
    #[test]
    fn json_to_table_matches_rabbitmq_import() {
        let json = obj(json!({
            "a": [1, "x", {"k": 1}, [2]], "b": true, "big": i64::MAX, "f": 1.5,
            "fe": 1e3, "n": 5, "neg": -5, "o": {"k": 2, "z": "y"}, "s": "x"
        }));
        let want: FieldTable = [
            (
                "a",
                FieldValue::Array(vec![
                    FieldValue::I64(1),
                    s("x"),
                    FieldValue::Table([("k", FieldValue::I64(1))].into_iter().collect()),
                    FieldValue::Array(vec![FieldValue::I64(2)]),
                ]),
            ),
            ("b", FieldValue::Bool(true)),
            ("big", FieldValue::I64(i64::MAX)),
            ("f", FieldValue::F64(1.5)),
            ("fe", FieldValue::F64(1000.0)),
            ("n", FieldValue::I64(5)),
            ("neg", FieldValue::I64(-5)),
            (
                "o",
                FieldValue::Table(
                    [("k", FieldValue::I64(2)), ("z", s("y"))]
                        .into_iter()
                        .collect(),
                ),
            ),
            ("s", s("x")),
        ]
        .into_iter()
        .collect();
        let table = json_to_table(&json).unwrap();
        assert_eq!(table, want);
        assert_eq!(table_to_json(&table), json);
    }

    #[test]
    fn json_to_table_refuses_what_rabbitmq_cannot_encode() {
        let e = json_to_table(&obj(json!({"x-max-length": null}))).unwrap_err();
        assert!(
            e.starts_with("null_not_allowed") && e.contains("x-max-length"),
            "{e}"
        );
        assert!(json_to_table(&obj(json!({"a": [1, null]}))).is_err());
        let e = json_to_table(&obj(json!({"n": u64::MAX}))).unwrap_err();
        assert!(e.contains("out of range"), "{e}");
        let long_key = "k".repeat(256);
        assert!(json_to_table(&obj(json!({ long_key: 1 }))).is_err());
        let max_key = "k".repeat(255);
        assert!(json_to_table(&obj(json!({ max_key: 1 }))).is_ok());
    }

    #[test]
    fn table_round_trips_through_json() {
        let table: FieldTable = [
            ("x-message-ttl", FieldValue::I64(60_000)),
            ("x-dead-letter-exchange", s("dlx")),
            ("ratio", FieldValue::F64(0.5)),
            ("flag", FieldValue::Bool(false)),
            ("list", FieldValue::Array(vec![s("a"), FieldValue::I64(-1)])),
            (
                "nested",
                FieldValue::Table([("deep", FieldValue::Bool(true))].into_iter().collect()),
            ),
        ]
        .into_iter()
        .collect();
        let back = json_to_table(&table_to_json(&table)).unwrap();
        // JSON objects are unordered; compare entry by entry.
        assert_eq!(back.len(), table.len());
        for (k, v) in table.iter() {
            assert_eq!(back.get(k), Some(v), "{k}");
        }
        // Narrow integers widen to `l`, as they would through RabbitMQ.
        let narrow: FieldTable = [("n", FieldValue::U16(7))].into_iter().collect();
        let widened = json_to_table(&table_to_json(&narrow)).unwrap();
        assert_eq!(widened.get("n"), Some(&FieldValue::I64(7)));
        // Non-finite floats have no JSON form.
        let nan: FieldTable = [("f", FieldValue::F64(f64::NAN))].into_iter().collect();
        assert_eq!(table_to_json(&nan)["f"], Value::Null);
    }
}
