//! The verbs `warren ctl` knows: usage lines, arity, switches, info items
//! and defaults, as rabbitmqctl 3.10 declares them.
use super::args::Kind;
use crate::mgmt::proto::items;

/// How a verb's result is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// A table; `streamed` lists print nothing when empty, the others
    /// print an empty line (rabbitmqctl streams some lists, not others).
    List { streamed: bool },
    /// A message, a document or nothing.
    Plain,
}

/// One verb.
pub struct Verb {
    pub name: &'static str,
    /// The usage line after `<program> [--node <node>] [--longnames] [--quiet] `.
    pub usage: &'static str,
    pub about: &'static str,
    pub section: &'static str,
    pub min_args: usize,
    /// `None`: no upper bound.
    pub max_args: Option<usize>,
    pub switches: &'static [(&'static str, Kind)],
    pub aliases: &'static [(char, &'static str)],
    /// Declares `--timeout` (its usage line says so).
    pub timeout_switch: bool,
    pub output: Output,
    /// Valid info items (empty: the verb takes none).
    pub info_keys: &'static [&'static str],
    /// rabbitmqctl's per-verb default timeout (ms), where it has one.
    pub default_timeout_ms: Option<u64>,
    /// Prints its info line before the broker is reached.
    pub banner_first: bool,
}

const HELP: &str = "Help";
const NODES: &str = "Nodes";
const USERS: &str = "Users";
const ACCESS: &str = "Access Control";
const MONITORING: &str = "Monitoring, observability and health checks";
const POLICIES: &str = "Policies";
const VHOSTS: &str = "Virtual hosts";
const DEFINITIONS: &str = "Definitions";
const OPERATIONS: &str = "Operations";
const QUEUES: &str = "Queues";

/// Help sections in rabbitmqctl's order.
pub const SECTIONS: &[&str] = &[
    HELP,
    NODES,
    USERS,
    ACCESS,
    MONITORING,
    POLICIES,
    VHOSTS,
    DEFINITIONS,
    OPERATIONS,
    QUEUES,
];

/// The defaults every verb starts from.
const BASE: Verb = Verb {
    name: "",
    usage: "",
    about: "",
    section: OPERATIONS,
    min_args: 0,
    max_args: Some(0),
    switches: &[],
    aliases: &[],
    timeout_switch: false,
    output: Output::Plain,
    info_keys: &[],
    default_timeout_ms: None,
    banner_first: false,
};

/// A list verb: takes info items, declares `--timeout`.
const LIST: Verb = Verb {
    max_args: None,
    timeout_switch: true,
    output: Output::List { streamed: true },
    ..BASE
};

/// A list rabbitmqctl does not stream: it takes no info items.
const PLAIN_LIST: Verb = Verb {
    max_args: Some(0),
    output: Output::List { streamed: false },
    ..LIST
};

/// Every verb.
pub static VERBS: &[Verb] = &[
    Verb {
        name: "help",
        usage: "help (<command> | [--list-commands])",
        about: "Shows how to use a command, or lists them all",
        section: HELP,
        max_args: Some(1),
        switches: &[("list_commands", Kind::Bool)],
        ..BASE
    },
    Verb {
        name: "version",
        usage: "version",
        about: "Prints the version of this tool",
        section: HELP,
        ..BASE
    },
    Verb {
        name: "await_startup",
        usage: "await_startup",
        about: "Waits until the node has started and serves requests",
        section: NODES,
        ..BASE
    },
    Verb {
        name: "reset",
        usage: "reset",
        about: "Deletes all definitions and messages, returning the node to a blank state",
        section: NODES,
        ..BASE
    },
    Verb {
        name: "start_app",
        usage: "start_app",
        about: "Resumes serving clients after stop_app",
        section: NODES,
        banner_first: true,
        ..BASE
    },
    Verb {
        name: "stop",
        usage: "stop [--idempotent] [<pidfile>]",
        about: "Shuts the node down",
        section: NODES,
        max_args: Some(1),
        switches: &[("idempotent", Kind::Bool)],
        banner_first: true,
        ..BASE
    },
    Verb {
        name: "stop_app",
        usage: "stop_app",
        about: "Stops serving clients, leaving the process running",
        section: NODES,
        banner_first: true,
        ..BASE
    },
    Verb {
        name: "reload_certificates",
        usage: "reload_certificates",
        about: "Re-reads the TLS listeners' certificate, key and CA files (Warren's; SIGHUP does the same)",
        section: NODES,
        ..BASE
    },
    Verb {
        name: "add_user",
        usage: "add_user <username> <password>",
        about: "Creates a user without permissions",
        section: USERS,
        min_args: 1,
        max_args: Some(2),
        ..BASE
    },
    Verb {
        name: "authenticate_user",
        usage: "authenticate_user <username> <password>",
        about: "Checks a user's password; exits non-zero when it is wrong",
        section: USERS,
        min_args: 1,
        max_args: Some(2),
        ..BASE
    },
    Verb {
        name: "change_password",
        usage: "change_password <username> <password>",
        about: "Sets a user's password",
        section: USERS,
        min_args: 1,
        max_args: Some(2),
        ..BASE
    },
    Verb {
        name: "delete_user",
        usage: "delete_user <username>",
        about: "Deletes a user",
        section: USERS,
        min_args: 1,
        max_args: Some(1),
        ..BASE
    },
    Verb {
        name: "list_users",
        usage: "list_users [--no-table-headers]",
        about: "Lists users and their tags",
        section: USERS,
        ..PLAIN_LIST
    },
    Verb {
        name: "set_user_tags",
        usage: "set_user_tags <username> <tag> [...]",
        about: "Replaces a user's tags",
        section: USERS,
        min_args: 1,
        max_args: None,
        ..BASE
    },
    Verb {
        name: "clear_permissions",
        usage: "clear_permissions [--vhost <vhost>] <username>",
        about: "Removes a user's permissions in a virtual host",
        section: ACCESS,
        min_args: 1,
        max_args: Some(1),
        ..BASE
    },
    Verb {
        name: "list_permissions",
        usage: "list_permissions [--vhost <vhost>] [--no-table-headers]",
        about: "Lists the permissions granted in a virtual host",
        section: ACCESS,
        ..PLAIN_LIST
    },
    Verb {
        name: "list_user_permissions",
        usage: "list_user_permissions [--no-table-headers] <username>",
        about: "Lists a user's permissions in every virtual host",
        section: ACCESS,
        min_args: 1,
        max_args: Some(1),
        ..PLAIN_LIST
    },
    Verb {
        name: "list_vhosts",
        usage: "list_vhosts [--no-table-headers] [<column> ...]",
        about: "Lists virtual hosts",
        section: ACCESS,
        max_args: None,
        info_keys: items::VHOSTS,
        ..PLAIN_LIST
    },
    Verb {
        name: "set_permissions",
        usage: "set_permissions [--vhost <vhost>] <username> <conf> <write> <read>",
        about: "Grants a user configure, write and read permissions in a virtual host",
        section: ACCESS,
        min_args: 4,
        max_args: Some(4),
        ..BASE
    },
    Verb {
        name: "check_local_alarms",
        usage: "check_local_alarms",
        about: "Fails when the node has a memory or disk alarm in effect",
        section: MONITORING,
        timeout_switch: true,
        ..BASE
    },
    Verb {
        name: "check_port_connectivity",
        usage: "check_port_connectivity",
        about: "Fails when a listener's port does not accept TCP connections",
        section: MONITORING,
        timeout_switch: true,
        ..BASE
    },
    Verb {
        name: "check_running",
        usage: "check_running",
        about: "Fails unless the node is fully started",
        section: MONITORING,
        timeout_switch: true,
        banner_first: true,
        ..BASE
    },
    Verb {
        name: "list_bindings",
        usage: "list_bindings [--vhost <vhost>] [--no-table-headers] [<column> ...]",
        about: "Lists the bindings of a virtual host",
        section: MONITORING,
        info_keys: items::BINDINGS,
        ..LIST
    },
    Verb {
        name: "list_channels",
        usage: "list_channels [--no-table-headers] [<column> ...]",
        about: "Lists open channels",
        section: MONITORING,
        info_keys: items::CHANNELS,
        ..LIST
    },
    Verb {
        name: "list_connections",
        usage: "list_connections [--no-table-headers] [<column> ...]",
        about: "Lists client connections",
        section: MONITORING,
        info_keys: items::CONNECTIONS,
        ..LIST
    },
    Verb {
        name: "list_consumers",
        usage: "list_consumers [--vhost <vhost>] [--no-table-headers] [<column> ...]",
        about: "Lists the consumers of a virtual host",
        section: MONITORING,
        info_keys: items::CONSUMERS,
        ..LIST
    },
    Verb {
        name: "list_exchanges",
        usage: "list_exchanges [--vhost <vhost>] [--no-table-headers] [<column> ...]",
        about: "Lists the exchanges of a virtual host",
        section: MONITORING,
        info_keys: items::EXCHANGES,
        ..LIST
    },
    Verb {
        name: "list_queues",
        usage: "list_queues [--vhost <vhost>] [--online] [--offline] [--local] [--no-table-headers] [<column>, ...]",
        about: "Lists the queues of a virtual host",
        section: MONITORING,
        info_keys: items::QUEUES,
        switches: &[
            ("offline", Kind::Bool),
            ("online", Kind::Bool),
            ("local", Kind::Bool),
        ],
        default_timeout_ms: Some(60_000),
        ..LIST
    },
    Verb {
        name: "ping",
        usage: "ping",
        about: "Checks that the node answers on its control socket",
        section: MONITORING,
        timeout_switch: true,
        default_timeout_ms: Some(60_000),
        banner_first: true,
        ..BASE
    },
    Verb {
        name: "status",
        usage: "status [--unit <unit>]",
        about: "Shows the node's runtime, resource use and listeners",
        section: MONITORING,
        switches: &[("unit", Kind::Str)],
        timeout_switch: true,
        default_timeout_ms: Some(60_000),
        ..BASE
    },
    Verb {
        name: "clear_operator_policy",
        usage: "clear_operator_policy [--vhost <vhost>] <name>",
        about: "Clears an operator policy",
        section: POLICIES,
        min_args: 1,
        max_args: Some(1),
        ..BASE
    },
    Verb {
        name: "clear_policy",
        usage: "clear_policy [--vhost <vhost>] <name>",
        about: "Clears (removes) a policy",
        section: POLICIES,
        min_args: 1,
        max_args: Some(1),
        ..BASE
    },
    Verb {
        name: "list_operator_policies",
        usage: "list_operator_policies [--vhost <vhost>] [--no-table-headers] [--timeout <timeout>]",
        about: "Lists operator policy overrides for a virtual host",
        section: POLICIES,
        ..PLAIN_LIST
    },
    Verb {
        name: "list_policies",
        usage: "list_policies [--vhost <vhost>] [--no-table-headers] [--timeout <timeout>]",
        about: "Lists all policies in a virtual host",
        section: POLICIES,
        ..PLAIN_LIST
    },
    Verb {
        name: "set_operator_policy",
        usage: "set_operator_policy [--vhost <vhost>] [--priority <priority>] [--apply-to <apply-to>] <name> <pattern> <definition>",
        about: "Sets an operator policy that overrides a subset of arguments in user policies",
        section: POLICIES,
        min_args: 3,
        max_args: Some(3),
        switches: &[("priority", Kind::Int), ("apply_to", Kind::Str)],
        ..BASE
    },
    Verb {
        name: "set_policy",
        usage: "set_policy [--vhost <vhost>] [--priority <priority>] [--apply-to <apply-to>] <name> <pattern> <definition>",
        about: "Sets or updates a policy",
        section: POLICIES,
        min_args: 3,
        max_args: Some(3),
        switches: &[("priority", Kind::Int), ("apply_to", Kind::Str)],
        ..BASE
    },
    Verb {
        name: "add_vhost",
        usage: "add_vhost <vhost> [--description <description> --tags \"<tag1>,<tag2>,<...>\" --default-queue-type <quorum|classic|stream>]",
        about: "Creates a virtual host",
        section: VHOSTS,
        min_args: 1,
        max_args: Some(1),
        switches: &[
            ("description", Kind::Str),
            ("tags", Kind::Str),
            ("default_queue_type", Kind::Str),
        ],
        aliases: &[('d', "description")],
        ..BASE
    },
    Verb {
        name: "delete_vhost",
        usage: "delete_vhost <vhost>",
        about: "Deletes a virtual host and everything in it",
        section: VHOSTS,
        min_args: 1,
        max_args: Some(1),
        ..BASE
    },
    Verb {
        name: "export_definitions",
        usage: "export_definitions <file_path | \"-\"> [--format <json | erlang>]",
        about: "Writes users, virtual hosts, permissions, queues, exchanges and bindings as JSON",
        section: DEFINITIONS,
        min_args: 1,
        max_args: Some(1),
        switches: &[("format", Kind::Str)],
        timeout_switch: true,
        ..BASE
    },
    Verb {
        name: "import_definitions",
        usage: "import_definitions <file_path | \"-\"> [--format <json | erlang>] [--skip-if-unchanged]",
        about: "Creates the objects a definitions file describes",
        section: DEFINITIONS,
        max_args: Some(1),
        switches: &[("format", Kind::Str), ("skip_if_unchanged", Kind::Bool)],
        timeout_switch: true,
        ..BASE
    },
    Verb {
        name: "close_all_connections",
        usage: "close_all_connections [--vhost <vhost> --limit <limit>] [-n <node> --global] [--per-connection-delay <delay>] <explanation>",
        about: "Closes the connections of a virtual host, or all of them",
        section: OPERATIONS,
        min_args: 1,
        max_args: Some(1),
        switches: &[
            ("global", Kind::Bool),
            ("per_connection_delay", Kind::Int),
            ("limit", Kind::Int),
        ],
        ..BASE
    },
    Verb {
        name: "close_connection",
        usage: "close_connection <connection pid> <explanation>",
        about: "Closes one client connection, named as list_connections shows it",
        section: OPERATIONS,
        min_args: 2,
        max_args: Some(2),
        ..BASE
    },
    Verb {
        name: "delete_queue",
        usage: "delete_queue <queue_name> [--if-empty|-e] [--if-unused|-u]",
        about: "Deletes a queue",
        section: QUEUES,
        min_args: 1,
        max_args: Some(1),
        switches: &[("if_empty", Kind::Bool), ("if_unused", Kind::Bool)],
        aliases: &[('e', "if_empty"), ('u', "if_unused")],
        timeout_switch: true,
        ..BASE
    },
    Verb {
        name: "purge_queue",
        usage: "purge_queue <queue>",
        about: "Removes every ready message from a queue",
        section: QUEUES,
        min_args: 1,
        max_args: Some(1),
        timeout_switch: true,
        ..BASE
    },
];

/// The verb called `name`.
pub fn find(name: &str) -> Option<&'static Verb> {
    VERBS.iter().find(|v| v.name == name)
}

/// The verb's default info items.
pub fn default_keys(verb: &str) -> &'static [&'static str] {
    match verb {
        "list_vhosts" => items::VHOSTS_DEFAULT,
        "list_queues" => items::QUEUES_DEFAULT,
        "list_exchanges" => items::EXCHANGES_DEFAULT,
        "list_bindings" => items::BINDINGS_DEFAULT,
        "list_connections" => items::CONNECTIONS_DEFAULT,
        "list_channels" => items::CHANNELS_DEFAULT,
        "list_consumers" => items::CONSUMERS_DEFAULT,
        _ => &[],
    }
}

/// Jaro similarity, as Elixir's `String.jaro_distance`.
pub fn jaro(a: &str, b: &str) -> f64 {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let window = (a.len().max(b.len()) / 2).saturating_sub(1);
    let mut a_hit = vec![false; a.len()];
    let mut b_hit = vec![false; b.len()];
    let mut matches = 0usize;
    for (i, ca) in a.iter().enumerate() {
        let lo = i.saturating_sub(window);
        let hi = (i + window + 1).min(b.len());
        for j in lo..hi {
            if !b_hit[j] && b[j] == *ca {
                a_hit[i] = true;
                b_hit[j] = true;
                matches += 1;
                break;
            }
        }
    }
    if matches == 0 {
        return 0.0;
    }
    let a_seq = a.iter().zip(&a_hit).filter(|(_, h)| **h).map(|(c, _)| c);
    let b_seq = b.iter().zip(&b_hit).filter(|(_, h)| **h).map(|(c, _)| c);
    let transpositions = a_seq.zip(b_seq).filter(|(x, y)| x != y).count() / 2;
    let m = matches as f64;
    (m / a.len() as f64 + m / b.len() as f64 + (m - transpositions as f64) / m) / 3.0
}

/// The verb rabbitmqctl would suggest for a mistyped name.
pub fn suggest(typed: &str) -> Option<&'static str> {
    let (best, score) = VERBS
        .iter()
        .map(|v| (v.name, jaro(v.name, typed)))
        .fold(("", -1.0), |acc, x| if x.1 > acc.1 { x } else { acc });
    (score >= 0.77).then_some(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_are_unique_and_sectioned() {
        for (i, v) in VERBS.iter().enumerate() {
            assert!(
                VERBS[i + 1..].iter().all(|w| w.name != v.name),
                "{}",
                v.name
            );
            assert!(SECTIONS.contains(&v.section), "{}", v.name);
            assert!(v.usage.starts_with(v.name), "{}", v.name);
            for k in default_keys(v.name) {
                assert!(v.info_keys.contains(k), "{} {k}", v.name);
            }
        }
    }

    #[test]
    fn jaro_matches_elixir() {
        assert!((jaro("martha", "marhta") - 0.9444).abs() < 1e-3);
        assert!((jaro("dwayne", "duane") - 0.8222).abs() < 1e-3);
        assert_eq!(jaro("same", "same"), 1.0);
        assert_eq!(jaro("", "x"), 0.0);
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("list_queuez"), Some("list_queues"));
        assert_eq!(suggest("nosuchverbatall"), None);
    }
}
