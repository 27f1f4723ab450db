//! Policies and operator policies, as RabbitMQ 3.10 has them
//! (`rabbit_policy`, `rabbit_policies`): a name, a pattern matched
//! (unanchored) against queue or exchange names, what it applies to, a
//! priority and a definition of settings. Validation gives RabbitMQ's
//! texts; matching picks the highest priority; an operator policy's
//! numeric limits combine with the user policy's by taking the lower.
use serde_json::{Map, Value};

use super::Topology;

/// A user policy (`set_policy`) or an operator policy
/// (`set_operator_policy`, an override of a few limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// `set_policy`.
    User,
    /// `set_operator_policy`.
    Operator,
}

/// What a policy applies to (RabbitMQ 3.10's `apply-to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyTo {
    /// Queues only.
    Queues,
    /// Exchanges only.
    Exchanges,
    /// Both (the default).
    All,
}

impl ApplyTo {
    /// The name RabbitMQ shows.
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyTo::Queues => "queues",
            ApplyTo::Exchanges => "exchanges",
            ApplyTo::All => "all",
        }
    }

    /// From RabbitMQ's name.
    pub fn parse(s: &str) -> Option<ApplyTo> {
        match s {
            "queues" => Some(ApplyTo::Queues),
            "exchanges" => Some(ApplyTo::Exchanges),
            "all" => Some(ApplyTo::All),
            _ => None,
        }
    }

    fn fits(self, target: PolicyTarget) -> bool {
        matches!(
            (self, target),
            (ApplyTo::All, _)
                | (ApplyTo::Queues, PolicyTarget::Queue)
                | (ApplyTo::Exchanges, PolicyTarget::Exchange)
        )
    }
}

/// What a policy is looked up for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyTarget {
    /// A queue.
    Queue,
    /// An exchange.
    Exchange,
}

/// The settings of a definition the broker acts on, parsed. Keys RabbitMQ
/// 3.10 accepts that Warren does not act on (mirroring's `ha-*`,
/// `queue-master-locator`, `max-in-memory-*`, `queue-version`, the quorum
/// and stream settings) are validated and kept only in the raw definition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyDefinition {
    /// `message-ttl` (ms).
    pub message_ttl: Option<u64>,
    /// `expires` (ms, at least 1).
    pub expires: Option<u64>,
    /// `max-length` (messages).
    pub max_length: Option<u64>,
    /// `max-length-bytes`.
    pub max_length_bytes: Option<u64>,
    /// `overflow`: "drop-head" | "reject-publish" | "reject-publish-dlx".
    pub overflow: Option<String>,
    /// `dead-letter-exchange`.
    pub dead_letter_exchange: Option<String>,
    /// `dead-letter-routing-key`.
    pub dead_letter_routing_key: Option<String>,
    /// `alternate-exchange` (for exchanges).
    pub alternate_exchange: Option<String>,
    /// `delivery-limit` (quorum queues in RabbitMQ).
    pub delivery_limit: Option<u64>,
    /// `queue-mode`: "default" | "lazy" (accepted, no effect).
    pub queue_mode: Option<String>,
}

impl PolicyDefinition {
    /// The settings of a definition that passed [`validate_definition`].
    pub fn parse(def: &Map<String, Value>) -> PolicyDefinition {
        let num = |k: &str| def.get(k).and_then(Value::as_u64);
        let text = |k: &str| def.get(k).and_then(Value::as_str).map(str::to_string);
        PolicyDefinition {
            message_ttl: num("message-ttl"),
            expires: num("expires"),
            max_length: num("max-length"),
            max_length_bytes: num("max-length-bytes"),
            overflow: text("overflow"),
            dead_letter_exchange: text("dead-letter-exchange"),
            dead_letter_routing_key: text("dead-letter-routing-key"),
            alternate_exchange: text("alternate-exchange"),
            delivery_limit: num("delivery-limit"),
            queue_mode: text("queue-mode"),
        }
    }
}

/// One policy of a vhost.
#[derive(Debug, Clone)]
pub struct Policy {
    /// User or operator policy.
    pub kind: PolicyKind,
    /// Its name (unique per vhost and kind).
    pub name: String,
    /// The pattern as given.
    pub pattern: String,
    /// The pattern compiled (matched unanchored, as RabbitMQ's `re:run`).
    pub regex: regex::Regex,
    /// What it applies to.
    pub apply_to: ApplyTo,
    /// Higher wins.
    pub priority: i64,
    /// The definition as given (shown and exported as it is).
    pub definition: Map<String, Value>,
    /// The settings Warren acts on.
    pub parsed: PolicyDefinition,
}

impl PartialEq for Policy {
    fn eq(&self, other: &Policy) -> bool {
        self.kind == other.kind
            && self.name == other.name
            && self.pattern == other.pattern
            && self.apply_to == other.apply_to
            && self.priority == other.priority
            && self.definition == other.definition
    }
}

impl Policy {
    /// A policy from stored or validated parts (the definition is taken
    /// as it is; fails when the pattern does not compile).
    pub fn new(
        kind: PolicyKind,
        name: &str,
        pattern: &str,
        apply_to: ApplyTo,
        priority: i64,
        definition: Map<String, Value>,
    ) -> Result<Policy, String> {
        let regex = compile(pattern)?;
        let parsed = PolicyDefinition::parse(&definition);
        Ok(Policy {
            kind,
            name: name.to_string(),
            pattern: pattern.to_string(),
            regex,
            apply_to,
            priority,
            definition,
            parsed,
        })
    }

    /// Whether it applies to `name` as a `target`.
    pub fn matches(&self, name: &str, target: PolicyTarget) -> bool {
        self.apply_to.fits(target) && self.regex.is_match(name)
    }

    /// The definition as one JSON text (keys in order, as RabbitMQ's
    /// `rabbitmqctl list_policies` prints it).
    pub fn definition_text(&self) -> String {
        Value::Object(self.definition.clone()).to_string()
    }

    /// RabbitMQ's JSON for it (`/api/policies`, definitions export).
    pub fn to_json(&self, vhost: &str) -> Value {
        serde_json::json!({
            "vhost": vhost,
            "name": self.name,
            "pattern": self.pattern,
            "apply-to": self.apply_to.as_str(),
            "definition": Value::Object(self.definition.clone()),
            "priority": self.priority,
        })
    }
}

fn compile(pattern: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(pattern).map_err(|e| {
        // PCRE's words where the failure is the common one.
        let (what, at) = match &e {
            regex::Error::Syntax(s) if s.contains("unclosed group") => {
                ("missing )".to_string(), pattern.len())
            }
            regex::Error::Syntax(s) if s.contains("unopened group") => {
                ("unmatched parentheses".to_string(), pattern.len())
            }
            regex::Error::Syntax(s) if s.contains("unclosed character class") => (
                "missing terminating ] for character class".to_string(),
                pattern.len(),
            ),
            other => (
                other
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or("invalid")
                    .trim_start_matches("error: ")
                    .to_string(),
                0,
            ),
        };
        format!(
            "pattern should be regular expression but is invalid: {{{},{at}}}",
            erl_string(&what)
        )
    })
}

/// What a set_policy asks for, before validation: the definition may be
/// anything JSON, the priority and pattern anything (the HTTP API's
/// body), as RabbitMQ validates them.
#[derive(Debug, Clone)]
pub struct PolicySpec {
    /// The pattern.
    pub pattern: Value,
    /// The definition.
    pub definition: Value,
    /// The priority (`None`: 0).
    pub priority: Option<Value>,
    /// apply-to (`None`: all).
    pub apply_to: Option<Value>,
}

/// Validates a policy as RabbitMQ's `rabbit_policy:validate` does;
/// the error is RabbitMQ's whole text (`Validation failed\n\n...`).
pub fn validate(kind: PolicyKind, name: &str, spec: &PolicySpec) -> Result<Policy, String> {
    // rabbit_parameter_validation:proplist reports the errors of the
    // definition, apply-to, pattern and priority, in that order.
    let mut errors = Vec::new();
    let definition = match &spec.definition {
        Value::Object(m) => match validate_definition(kind, m) {
            Ok(()) => Some(m.clone()),
            Err(e) => {
                errors.push(e);
                None
            }
        },
        other => {
            errors.push(format!(
                "definition must be a dictionary: {}",
                erl_term(other)
            ));
            None
        }
    };
    let apply_to = match &spec.apply_to {
        None | Some(Value::Null) => Some(ApplyTo::All),
        Some(Value::String(s)) => match ApplyTo::parse(s) {
            Some(a) => Some(a),
            None => {
                errors.push(format!(
                    "apply-to '{s}' unrecognised; should be 'queues', 'exchanges' or 'all'"
                ));
                None
            }
        },
        Some(other) => {
            errors.push(format!(
                "apply-to '{}' unrecognised; should be 'queues', 'exchanges' or 'all'",
                erl_term(other)
            ));
            None
        }
    };
    let pattern = match &spec.pattern {
        Value::String(p) => match compile(p) {
            Ok(_) => Some(p.clone()),
            Err(e) => {
                errors.push(e);
                None
            }
        },
        other => {
            errors.push(format!(
                "pattern should be a binary but was {}",
                erl_term(other)
            ));
            None
        }
    };
    let priority = match &spec.priority {
        None | Some(Value::Null) => Some(0),
        Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64(),
        Some(other) => {
            errors.push(format!(
                "priority should be a number, actually was {}",
                erl_term(other)
            ));
            None
        }
    };
    match (definition, apply_to, pattern, priority) {
        (Some(d), Some(a), Some(p), Some(n)) if errors.is_empty() => {
            Policy::new(kind, name, &p, a, n, d).map_err(|e| failed(&[e]))
        }
        _ => Err(failed(&errors)),
    }
}

fn failed(errors: &[String]) -> String {
    let mut s = String::from("Validation failed\n\n");
    for e in errors {
        s.push_str(e);
        s.push('\n');
    }
    s
}

/// The keys each kind of policy accepts, as RabbitMQ 3.10 registers its
/// validators (`rabbit_policies`, `rabbit_mirror_queue_misc`,
/// `rabbit_queue_location_validator`).
const USER_KEYS: &[&str] = &[
    "alternate-exchange",
    "dead-letter-exchange",
    "dead-letter-routing-key",
    "dead-letter-strategy",
    "message-ttl",
    "expires",
    "max-length",
    "max-length-bytes",
    "max-in-memory-length",
    "max-in-memory-bytes",
    "queue-mode",
    "queue-version",
    "overflow",
    "delivery-limit",
    "max-age",
    "stream-max-segment-size-bytes",
    "queue-leader-locator",
    "initial-cluster-size",
];
const MIRROR_KEYS: &[&str] = &[
    "ha-mode",
    "ha-params",
    "ha-sync-mode",
    "ha-sync-batch-size",
    "ha-promote-on-shutdown",
    "ha-promote-on-failure",
];
const LOCATOR_KEY: &str = "queue-master-locator";
const OPERATOR_KEYS: &[&str] = &[
    "expires",
    "message-ttl",
    "max-length",
    "max-length-bytes",
    "max-in-memory-length",
    "max-in-memory-bytes",
    "delivery-limit",
];

/// The keys whose operator value combines with the user's by the lower
/// (`rabbit_policies:merge_policy_value`).
const MERGED_BY_MIN: &[&str] = OPERATOR_KEYS;

/// Validates a definition's keys and values (the first error only, as
/// RabbitMQ's validators stop at it).
pub fn validate_definition(kind: PolicyKind, def: &Map<String, Value>) -> Result<(), String> {
    if def.is_empty() {
        return Err("no policy provided".into());
    }
    // Keys in order: RabbitMQ's definitions are maps, listed sorted.
    let own: Vec<(&String, &Value)> = def
        .iter()
        .filter(|(k, _)| match kind {
            PolicyKind::User => USER_KEYS.contains(&k.as_str()),
            PolicyKind::Operator => OPERATOR_KEYS.contains(&k.as_str()),
        })
        .collect();
    for (k, v) in &own {
        validate_value(k, v)?;
    }
    let mut known: Vec<&str> = own.iter().map(|(k, _)| k.as_str()).collect();
    if kind == PolicyKind::User {
        if MIRROR_KEYS.iter().any(|k| def.contains_key(*k)) {
            validate_mirroring(def)?;
            known.extend(MIRROR_KEYS);
        }
        if let Some(v) = def.get(LOCATOR_KEY) {
            match v.as_str() {
                Some("min-masters" | "client-local" | "random") => known.push(LOCATOR_KEY),
                _ => {
                    return Err(format!(
                        "{} invalid queue-master-locator value",
                        erl_term(v)
                    ))
                }
            }
        }
    }
    let unknown: Vec<String> = def
        .iter()
        .filter(|(k, _)| !known.contains(&k.as_str()))
        .map(|(k, v)| format!("{{{},{}}}", erl_binary(k), erl_term(v)))
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "[{}] are not recognised policy settings",
            unknown.join(",")
        ))
    }
}

fn validate_value(key: &str, v: &Value) -> Result<(), String> {
    let int_at_least = |min: u64| v.as_u64().is_some_and(|n| n >= min);
    let one_of = |allowed: &[&str]| v.as_str().is_some_and(|s| allowed.contains(&s));
    let (ok, what) = match key {
        "alternate-exchange" => (v.is_string(), "is not a valid alternate exchange name"),
        "dead-letter-exchange" => (v.is_string(), "is not a valid dead letter exchange name"),
        "dead-letter-routing-key" => (v.is_string(), "is not a valid dead letter routing key"),
        "dead-letter-strategy" => (
            one_of(&["at-most-once", "at-least-once"]),
            "is not a valid dead letter strategy",
        ),
        "message-ttl" => (int_at_least(0), "is not a valid message TTL"),
        "expires" => (int_at_least(1), "is not a valid queue expiry"),
        "max-length" => (int_at_least(0), "is not a valid maximum length"),
        "max-length-bytes" => (int_at_least(0), "is not a valid maximum length in bytes"),
        "max-in-memory-length" | "max-in-memory-bytes" => {
            (int_at_least(0), "is not a valid maximum memory in bytes")
        }
        "queue-mode" => (
            one_of(&["default", "lazy"]),
            "is not a valid queue-mode value",
        ),
        "queue-version" => (
            matches!(v.as_i64(), Some(1 | 2)),
            "is not a valid queue-version value",
        ),
        "overflow" => (
            one_of(&["drop-head", "reject-publish", "reject-publish-dlx"]),
            "is not a valid overflow value",
        ),
        "delivery-limit" => (int_at_least(0), "is not a valid delivery limit"),
        "max-age" => (valid_max_age(v), "is not a valid max age"),
        "queue-leader-locator" => (
            one_of(&["client-local", "balanced", "random", "least-leaders"]),
            "is not a valid queue leader locator value",
        ),
        "initial-cluster-size" => (int_at_least(0), "is not a valid cluster size"),
        "stream-max-segment-size-bytes" => (
            v.as_u64().is_some_and(|n| n <= 3_000_000_000),
            "is not a valid segment size",
        ),
        _ => (true, ""),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{} {what}", erl_term(v)))
    }
}

/// `rabbit_amqqueue:check_max_age`: a number and a unit (Y M D h m s).
fn valid_max_age(v: &Value) -> bool {
    let Some(s) = v.as_str() else {
        return false;
    };
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &s[digits.len()..];
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && matches!(unit, "Y" | "M" | "D" | "h" | "m" | "s")
}

/// `rabbit_mirror_queue_misc:validate_policy`.
fn validate_mirroring(def: &Map<String, Value>) -> Result<(), String> {
    let Some(mode) = def.get("ha-mode") else {
        return Err(
            "ha-mode must be specified to specify ha-params, ha-sync-mode or ha-promote-on-shutdown"
                .into(),
        );
    };
    let params = def.get("ha-params");
    match mode.as_str() {
        Some("all") => {
            if params.is_some() {
                return Err("ha-mode=\"all\" does not take parameters".into());
            }
        }
        Some("exactly") => {
            if params.and_then(Value::as_i64).is_none_or(|n| n <= 0) {
                return Err(format!(
                    "ha-mode=\"exactly\" takes an integer, {} given",
                    params.map(erl_term).unwrap_or_else(|| "none".into())
                ));
            }
        }
        Some("nodes") => match params {
            Some(Value::Array(a)) if a.is_empty() => {
                return Err("ha-mode=\"nodes\" list must be non-empty".into())
            }
            Some(Value::Array(a)) => {
                let bad: Vec<String> = a.iter().filter(|x| !x.is_string()).map(erl_term).collect();
                if !bad.is_empty() {
                    return Err(format!(
                        "ha-mode=\"nodes\" takes a list of strings, [{}] was not a string",
                        bad.join(",")
                    ));
                }
            }
            other => {
                return Err(format!(
                    "ha-mode=\"nodes\" takes a list, {} given",
                    other.map(erl_term).unwrap_or_else(|| "none".into())
                ))
            }
        },
        _ => return Err(format!("{} is not a valid ha-mode value", erl_term(mode))),
    }
    let either = |key: &str, a: &str, b: &str, text: &str| -> Result<(), String> {
        match def.get(key) {
            None => Ok(()),
            Some(v) if v.as_str() == Some(a) || v.as_str() == Some(b) => Ok(()),
            Some(v) => Err(format!("{text}, got {}", erl_term(v))),
        }
    };
    either(
        "ha-sync-mode",
        "manual",
        "automatic",
        "ha-sync-mode must be \"manual\" or \"automatic\"",
    )?;
    if let Some(v) = def.get("ha-sync-batch-size") {
        if v.as_i64().is_none_or(|n| n <= 0) {
            return Err(format!(
                "ha-sync-batch-size takes an integer greater than 0, {} given",
                erl_term(v)
            ));
        }
    }
    either(
        "ha-promote-on-shutdown",
        "always",
        "when-synced",
        "ha-promote-on-shutdown must be \"always\" or \"when-synced\"",
    )?;
    either(
        "ha-promote-on-failure",
        "always",
        "when-synced",
        "ha-promote-on-failure must be \"always\" or \"when-synced\"",
    )
}

/// A JSON value as Erlang's `~p` prints the term RabbitMQ decodes it to.
pub fn erl_term(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) => erl_float(f),
            _ => n.to_string(),
        },
        Value::String(s) => erl_binary(s),
        Value::Array(a) => format!("[{}]", a.iter().map(erl_term).collect::<Vec<_>>().join(",")),
        Value::Object(m) => format!(
            "#{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{} => {}", erl_binary(k), erl_term(v)))
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

fn erl_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

fn erl_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn erl_binary(s: &str) -> String {
    if s.is_ascii() {
        format!("<<{}>>", erl_string(s))
    } else {
        format!("<<{}/utf8>>", erl_string(s))
    }
}

impl Topology {
    /// The user policy and the operator policy in effect for `name` in
    /// `vhost` as a `target`: for each kind, the highest-priority policy
    /// that matches (`rabbit_policy:match`); between equal priorities the
    /// first by name.
    pub fn effective_policies(
        &self,
        vhost: &str,
        name: &str,
        target: PolicyTarget,
    ) -> (Option<&Policy>, Option<&Policy>) {
        let Some(v) = self.vhost(vhost) else {
            return (None, None);
        };
        (
            best(v.policies.values(), name, target),
            best(v.operator_policies.values(), name, target),
        )
    }
}

/// The policy of `policies` that applies to `name` (highest priority).
pub fn best<'a>(
    policies: impl Iterator<Item = &'a Policy>,
    name: &str,
    target: PolicyTarget,
) -> Option<&'a Policy> {
    policies
        .filter(|p| p.matches(name, target))
        .min_by(|a, b| b.priority.cmp(&a.priority).then(a.name.cmp(&b.name)))
}

/// RabbitMQ's `effective_policy_definition`
/// (`rabbit_policy:merge_operator_definitions`): the user policy's keys
/// and the operator policy's; a key both have takes the lower value for
/// the numeric limits, the operator's for booleans, the user's otherwise.
pub fn merged_definition(user: Option<&Policy>, op: Option<&Policy>) -> Map<String, Value> {
    let mut out = user.map(|p| p.definition.clone()).unwrap_or_default();
    let Some(op) = op else {
        return out;
    };
    for (k, opv) in &op.definition {
        let merged = match out.get(k) {
            None => opv.clone(),
            Some(uv) if MERGED_BY_MIN.contains(&k.as_str()) => match (uv.as_f64(), opv.as_f64()) {
                (Some(a), Some(b)) if b < a => opv.clone(),
                _ => uv.clone(),
            },
            Some(uv) if uv.is_boolean() && opv.is_boolean() => opv.clone(),
            Some(uv) => uv.clone(),
        };
        out.insert(k.clone(), merged);
    }
    out
}

/// The policies of a vhost sorted as RabbitMQ lists them: by priority,
/// lowest first (then by name).
pub fn sorted<'a>(policies: impl Iterator<Item = &'a Policy>) -> Vec<&'a Policy> {
    let mut v: Vec<&Policy> = policies.collect();
    v.sort_by(|a, b| a.priority.cmp(&b.priority).then(a.name.cmp(&b.name)));
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::TopologyChange;
    use serde_json::json;

    fn spec(pattern: &str, def: Value) -> PolicySpec {
        PolicySpec {
            pattern: json!(pattern),
            definition: def,
            priority: None,
            apply_to: None,
        }
    }

    fn user(name: &str, pattern: &str, prio: i64, apply: ApplyTo, def: Value) -> Policy {
        let mut s = spec(pattern, def);
        s.priority = Some(json!(prio));
        s.apply_to = Some(json!(apply.as_str()));
        validate(PolicyKind::User, name, &s).unwrap()
    }

    fn err(kind: PolicyKind, def: Value) -> String {
        validate(kind, "p", &spec(".*", def)).unwrap_err()
    }

    #[test]
    fn validation_texts_are_rabbitmqs() {
        let u = PolicyKind::User;
        assert_eq!(
            err(u, json!({"foo": 1})),
            "Validation failed\n\n[{<<\"foo\">>,1}] are not recognised policy settings\n"
        );
        assert_eq!(
            err(u, json!({"foo": 1, "bar": 2})),
            "Validation failed\n\n[{<<\"bar\">>,2},{<<\"foo\">>,1}] are not recognised policy settings\n"
        );
        assert_eq!(
            err(u, json!({"message-ttl": -1})),
            "Validation failed\n\n-1 is not a valid message TTL\n"
        );
        assert!(
            err(u, json!({"message-ttl": "a"})).contains("<<\"a\">> is not a valid message TTL")
        );
        assert!(err(u, json!({"message-ttl": 1.5})).contains("1.5 is not a valid message TTL"));
        // Keys in order: expires before message-ttl; unknown keys last.
        assert!(err(u, json!({"message-ttl": -1, "expires": 0}))
            .contains("\n0 is not a valid queue expiry\n"));
        assert!(
            err(u, json!({"foo": 1, "message-ttl": -1})).contains("-1 is not a valid message TTL")
        );
        assert!(
            err(u, json!({"overflow": "x"})).contains("<<\"x\">> is not a valid overflow value")
        );
        assert!(err(u, json!({"queue-mode": "x"})).contains("is not a valid queue-mode value"));
        assert!(err(u, json!({"alternate-exchange": 1}))
            .contains("1 is not a valid alternate exchange name"));
        assert!(err(u, json!({})).ends_with("\n\nno policy provided\n"));
        assert!(err(u, json!({"ha-mode": "x"})).contains("<<\"x\">> is not a valid ha-mode value"));
        assert!(err(u, json!({"ha-params": 2})).contains("ha-mode must be specified"));
        // Accepted as RabbitMQ accepts them.
        for ok in [
            json!({"dead-letter-routing-key": "x"}),
            json!({"ha-mode": "all"}),
            json!({"ha-mode": "exactly", "ha-params": 2, "ha-sync-mode": "automatic"}),
            json!({"queue-master-locator": "min-masters"}),
            json!({"max-age": "1D", "queue-version": 2}),
            json!({"message-ttl": 0, "expires": 1, "max-length": 0, "overflow": "reject-publish-dlx"}),
        ] {
            assert!(validate(u, "p", &spec(".*", ok.clone())).is_ok(), "{ok}");
        }
        let op = PolicyKind::Operator;
        assert!(err(op, json!({"overflow": "drop-head"}))
            .contains("[{<<\"overflow\">>,<<\"drop-head\">>}] are not recognised policy settings"));
        assert!(validate(op, "p", &spec(".*", json!({"max-in-memory-length": 3}))).is_ok());
        let mut bad = spec("(", json!({"message-ttl": 1}));
        bad.apply_to = Some(json!("foo"));
        bad.priority = Some(json!("5"));
        assert_eq!(
            validate(u, "p", &bad).unwrap_err(),
            "Validation failed\n\napply-to 'foo' unrecognised; should be 'queues', 'exchanges' or 'all'\npattern should be regular expression but is invalid: {\"missing )\",1}\npriority should be a number, actually was <<\"5\">>\n"
        );
    }

    #[test]
    fn matching_priority_and_merge() {
        let mut t = Topology::new();
        let v = crate::codec::ShortStr::from("/");
        for p in [
            user(
                "low",
                "^q",
                1,
                ApplyTo::All,
                json!({"message-ttl": 100, "max-length": 9}),
            ),
            user("high", "q", 5, ApplyTo::Queues, json!({"max-length": 5})),
            user(
                "ex",
                "^q",
                9,
                ApplyTo::Exchanges,
                json!({"alternate-exchange": "ae"}),
            ),
        ] {
            t.apply(&TopologyChange::PolicySet(v.clone(), Box::new(p)));
        }
        let op = validate(
            PolicyKind::Operator,
            "op",
            &spec(
                "^q",
                json!({"max-length": 3, "message-ttl": 1000, "expires": 50}),
            ),
        )
        .unwrap();
        t.apply(&TopologyChange::PolicySet(v.clone(), Box::new(op)));
        let (u, o) = t.effective_policies("/", "q1", PolicyTarget::Queue);
        assert_eq!(u.unwrap().name, "high");
        assert_eq!(o.unwrap().name, "op");
        // Unanchored: "aq" matches "q" but not "^q".
        assert_eq!(
            t.effective_policies("/", "aq", PolicyTarget::Queue)
                .0
                .unwrap()
                .name,
            "high"
        );
        assert_eq!(
            t.effective_policies("/", "q1", PolicyTarget::Exchange)
                .0
                .unwrap()
                .name,
            "ex"
        );
        assert!(t
            .effective_policies("/", "zz", PolicyTarget::Queue)
            .0
            .is_none());
        assert!(t
            .effective_policies("nope", "q", PolicyTarget::Queue)
            .0
            .is_none());
        let m = merged_definition(u, o);
        assert_eq!(
            Value::Object(m),
            json!({"max-length": 3, "message-ttl": 1000, "expires": 50})
        );
        let low = t.vhost("/").unwrap().policies.get("low").unwrap();
        let m = merged_definition(Some(low), o);
        assert_eq!(m["message-ttl"], json!(100), "the lower wins");
        assert_eq!(merged_definition(None, None), Map::new());
        assert_eq!(u.unwrap().parsed.max_length, Some(5));
        // Cleared, then gone with its vhost.
        t.apply(&TopologyChange::PolicyCleared(
            v.clone(),
            PolicyKind::User,
            "high".into(),
        ));
        assert_eq!(
            t.effective_policies("/", "q1", PolicyTarget::Queue)
                .0
                .unwrap()
                .name,
            "low"
        );
        // Equal priorities: the first by name.
        t.apply(&TopologyChange::PolicySet(
            v.clone(),
            Box::new(user(
                "a-low",
                "^q",
                1,
                ApplyTo::All,
                json!({"max-length": 1}),
            )),
        ));
        assert_eq!(
            t.effective_policies("/", "q1", PolicyTarget::Queue)
                .0
                .unwrap()
                .name,
            "a-low"
        );
        let names: Vec<&str> = sorted(t.vhost("/").unwrap().policies.values())
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["a-low", "low", "ex"]);
        t.apply(&TopologyChange::VhostRemoved(v.clone()));
        assert!(t
            .effective_policies("/", "q1", PolicyTarget::Queue)
            .0
            .is_none());
    }

    #[test]
    fn parsed_definition() {
        let p = user(
            "p",
            ".",
            0,
            ApplyTo::All,
            json!({"message-ttl": 1, "expires": 2, "max-length": 3, "max-length-bytes": 4,
                   "overflow": "drop-head", "dead-letter-exchange": "dlx",
                   "dead-letter-routing-key": "k", "alternate-exchange": "ae",
                   "delivery-limit": 5, "queue-mode": "lazy", "ha-mode": "all"}),
        );
        assert_eq!(
            p.parsed,
            PolicyDefinition {
                message_ttl: Some(1),
                expires: Some(2),
                max_length: Some(3),
                max_length_bytes: Some(4),
                overflow: Some("drop-head".into()),
                dead_letter_exchange: Some("dlx".into()),
                dead_letter_routing_key: Some("k".into()),
                alternate_exchange: Some("ae".into()),
                delivery_limit: Some(5),
                queue_mode: Some("lazy".into()),
            }
        );
        assert_eq!(
            p.definition_text(),
            r#"{"alternate-exchange":"ae","dead-letter-exchange":"dlx","dead-letter-routing-key":"k","delivery-limit":5,"expires":2,"ha-mode":"all","max-length":3,"max-length-bytes":4,"message-ttl":1,"overflow":"drop-head","queue-mode":"lazy"}"#
        );
    }
}
