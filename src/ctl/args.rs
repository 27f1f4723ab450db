//! Command-line parsing with rabbitmqctl's rules (Elixir's `OptionParser`
//! in strict mode): switches anywhere, before or after the verb;
//! `--name value` and `--name=value`; `--no-name` for booleans; clustered
//! boolean aliases (`-qs`); `--` ends the switches. Unknown switches and
//! bad values are collected, not fatal, so the caller can print
//! rabbitmqctl's "Invalid options for this command" error.
use std::collections::BTreeMap;

/// A switch's value type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Str,
    Int,
}

/// A parsed switch value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opt {
    Bool(bool),
    Str(String),
    Int(i64),
}

/// rabbitmqctl's global switches, plus Warren's `--data-dir`.
pub const GLOBAL: &[(&str, Kind)] = &[
    ("node", Kind::Str),
    ("quiet", Kind::Bool),
    ("silent", Kind::Bool),
    ("dry_run", Kind::Bool),
    ("vhost", Kind::Str),
    ("timeout", Kind::Int),
    ("longnames", Kind::Bool),
    ("formatter", Kind::Str),
    ("printer", Kind::Str),
    ("file", Kind::Str),
    ("script_name", Kind::Str),
    ("rabbitmq_home", Kind::Str),
    ("mnesia_dir", Kind::Str),
    ("plugins_dir", Kind::Str),
    ("enabled_plugins_file", Kind::Str),
    ("aliases_file", Kind::Str),
    ("erlang_cookie", Kind::Str),
    ("help", Kind::Bool),
    ("print_stacktrace", Kind::Bool),
    ("data_dir", Kind::Str),
];

/// Global one-letter aliases.
pub const GLOBAL_ALIASES: &[(char, &str)] = &[
    ('p', "vhost"),
    ('n', "node"),
    ('q', "quiet"),
    ('s', "silent"),
    ('l', "longnames"),
    ('t', "timeout"),
    ('?', "help"),
];

/// The table formatter's switches (valid only when it is in effect).
pub const TABLE: &[(&str, Kind)] = &[("table_headers", Kind::Bool), ("pad_to_header", Kind::Bool)];

/// What parsing found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    /// Positional arguments, the verb first.
    pub positional: Vec<String>,
    /// Switches by their snake_case name; the last occurrence wins.
    pub opts: BTreeMap<String, Opt>,
    /// Unknown switches and bad values: (the switch as typed, its value).
    pub invalid: Vec<(String, String)>,
}

impl Parsed {
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.opts.get(name), Some(Opt::Bool(true)))
    }

    /// A boolean switch that defaults to true (`--no-table-headers`).
    pub fn flag_or_true(&self, name: &str) -> bool {
        !matches!(self.opts.get(name), Some(Opt::Bool(false)))
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        match self.opts.get(name) {
            Some(Opt::Str(s)) => Some(s),
            _ => None,
        }
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        match self.opts.get(name) {
            Some(Opt::Int(i)) => Some(*i),
            _ => None,
        }
    }
}

/// The switches one parse accepts.
pub struct Spec<'a> {
    pub switches: Vec<&'a [(&'a str, Kind)]>,
    pub aliases: Vec<&'a [(char, &'a str)]>,
}

impl Spec<'_> {
    fn kind(&self, name: &str) -> Option<Kind> {
        self.switches
            .iter()
            .flat_map(|s| s.iter())
            .find(|(n, _)| *n == name)
            .map(|(_, k)| *k)
    }

    fn alias(&self, c: char) -> Option<&str> {
        self.aliases
            .iter()
            .flat_map(|a| a.iter())
            .find(|(a, _)| *a == c)
            .map(|(_, n)| *n)
    }
}

/// Whether a token reads as a number (a value, not a switch).
fn numeric(s: &str) -> bool {
    s.parse::<f64>().is_ok()
}

/// Whether `token` may be taken as a switch's value.
fn value_token(token: Option<&String>) -> Option<&String> {
    token.filter(|t| t.as_str() == "-" || !t.starts_with('-') || numeric(t))
}

/// Parses `args` against `spec`.
pub fn parse(args: &[String], spec: &Spec) -> Parsed {
    let mut p = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let token = &args[i];
        i += 1;
        if token == "--" {
            p.positional.extend(args[i..].iter().cloned());
            break;
        }
        let (display, name, inline) = if let Some(long) = token.strip_prefix("--") {
            let (n, v) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let display = format!("--{n}");
            // Only dashes separate words on the command line.
            if n.contains('_') || n.is_empty() {
                p.invalid.push((display, v.unwrap_or_default()));
                continue;
            }
            (display, n.replace('-', "_"), v)
        } else if token.len() > 1 && token.starts_with('-') && !numeric(token) {
            let letters: Vec<char> = token[1..].chars().collect();
            if letters.len() == 1 {
                match spec.alias(letters[0]) {
                    Some(n) => (token.clone(), n.to_string(), None),
                    None => {
                        p.invalid.push((token.clone(), String::new()));
                        continue;
                    }
                }
            } else {
                // `-qs`: a cluster of boolean aliases.
                let names: Option<Vec<&str>> = letters
                    .iter()
                    .map(|c| spec.alias(*c).filter(|n| spec.kind(n) == Some(Kind::Bool)))
                    .collect();
                match names {
                    Some(names) => {
                        for n in names {
                            p.opts.insert(n.to_string(), Opt::Bool(true));
                        }
                    }
                    None => p.invalid.push((token.clone(), String::new())),
                }
                continue;
            }
        } else {
            p.positional.push(token.clone());
            continue;
        };
        let kind = match spec.kind(&name) {
            Some(k) => k,
            None => {
                // `--no-<boolean>` turns a boolean off.
                if let Some(base) = name.strip_prefix("no_") {
                    if spec.kind(base) == Some(Kind::Bool) && inline.is_none() {
                        p.opts.insert(base.to_string(), Opt::Bool(false));
                        continue;
                    }
                }
                p.invalid.push((display, inline.unwrap_or_default()));
                continue;
            }
        };
        match kind {
            Kind::Bool => match inline.as_deref() {
                None | Some("true") => {
                    p.opts.insert(name, Opt::Bool(true));
                }
                Some("false") => {
                    p.opts.insert(name, Opt::Bool(false));
                }
                Some(other) => p.invalid.push((display, other.to_string())),
            },
            Kind::Str | Kind::Int => {
                let value = match inline {
                    Some(v) => Some(v),
                    None => match value_token(args.get(i)) {
                        Some(v) => {
                            i += 1;
                            Some(v.clone())
                        }
                        None => None,
                    },
                };
                match (kind, value) {
                    (_, None) => p.invalid.push((display, String::new())),
                    (Kind::Int, Some(v)) => match v.parse::<i64>() {
                        Ok(n) => {
                            p.opts.insert(name, Opt::Int(n));
                        }
                        Err(_) => p.invalid.push((display, v)),
                    },
                    (_, Some(v)) => {
                        p.opts.insert(name, Opt::Str(v));
                    }
                }
            }
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    fn global() -> Spec<'static> {
        Spec {
            switches: vec![
                GLOBAL,
                TABLE,
                &[("if_empty", Kind::Bool), ("limit", Kind::Int)],
            ],
            aliases: vec![GLOBAL_ALIASES, &[('e', "if_empty")]],
        }
    }

    #[test]
    fn switches_before_and_after_the_verb() {
        let p = parse(
            &strings(&[
                "-p",
                "v1",
                "list_queues",
                "name",
                "--formatter",
                "json",
                "-q",
            ]),
            &global(),
        );
        assert_eq!(p.positional, strings(&["list_queues", "name"]));
        assert_eq!(p.str("vhost"), Some("v1"));
        assert_eq!(p.str("formatter"), Some("json"));
        assert!(p.flag("quiet"));
        assert!(p.invalid.is_empty());
    }

    #[test]
    fn equals_negation_and_clusters() {
        let p = parse(
            &strings(&[
                "--formatter=json",
                "--no-table-headers",
                "-qs",
                "-e",
                "--limit=3",
            ]),
            &global(),
        );
        assert_eq!(p.str("formatter"), Some("json"));
        assert!(!p.flag_or_true("table_headers"));
        assert!(p.flag("quiet") && p.flag("silent") && p.flag("if_empty"));
        assert_eq!(p.int("limit"), Some(3));
    }

    #[test]
    fn bad_switches_are_collected_as_typed() {
        let p = parse(
            &strings(&[
                "list_users",
                "--bogus",
                "-x",
                "-t",
                "abc",
                "--if_empty",
                "--formatter",
            ]),
            &global(),
        );
        assert_eq!(p.positional, strings(&["list_users"]));
        assert_eq!(
            p.invalid,
            vec![
                ("--bogus".to_string(), String::new()),
                ("-x".to_string(), String::new()),
                ("-t".to_string(), "abc".to_string()),
                ("--if_empty".to_string(), String::new()),
                ("--formatter".to_string(), String::new()),
            ]
        );
    }

    #[test]
    fn unknown_switches_do_not_swallow_the_next_token() {
        let p = parse(&strings(&["--bogus", "list_users"]), &global());
        assert_eq!(p.positional, strings(&["list_users"]));
        assert_eq!(p.invalid.len(), 1);
    }

    #[test]
    fn double_dash_ends_switches_and_dash_is_a_value() {
        let p = parse(
            &strings(&["export_definitions", "-", "--", "-q"]),
            &global(),
        );
        assert_eq!(p.positional, strings(&["export_definitions", "-", "-q"]));
        assert!(!p.flag("quiet"));
        let p = parse(&strings(&["-t", "-", "x"]), &global());
        assert_eq!(p.invalid, vec![("-t".to_string(), "-".to_string())]);
    }

    #[test]
    fn string_switch_does_not_take_a_switch_as_value() {
        let p = parse(&strings(&["-p", "-q"]), &global());
        assert_eq!(p.invalid, vec![("-p".to_string(), String::new())]);
        assert!(p.flag("quiet"));
    }
}
