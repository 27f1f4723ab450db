//! `warren ctl`, also installed as `rabbitmqctl`: rabbitmqctl's verbs,
//! switches, output and exit codes, over the broker's control socket
//! (`mgmt::proto`). The broker answers with data; everything an operator
//! reads is laid out here: info lines, tables, `-q`/`-s`,
//! `--formatter json`, errors.
//!
//! [`run`] does the work against any writers and reader, so tests
//! capture what a command prints; [`main`] binds it to the process's
//! stdio and environment.
mod args;
mod banner;
mod client;
mod format;
mod reply;
mod status;
mod verbs;

pub use client::Env;

use crate::mgmt::proto::{exit, Reply, Request};
use args::{Kind, Opt, Parsed, Spec};
use format::{csv_field, erl_float, json_row, json_str};
use serde_json::Value;
use std::ffi::OsString;
use std::io::{self, BufRead, Write};
use std::path::Path;
use std::time::{Duration, Instant};
use verbs::{Output, Verb};

/// Where a command reads and writes.
pub struct Io<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
    /// Passwords and `import_definitions` without a file come from here.
    pub input: &'a mut dyn BufRead,
}

/// The fallback deadline where rabbitmqctl would wait forever.
const DEFAULT_TIMEOUT_MS: u64 = 60_000;
/// rabbitmqctl's `await_startup` default.
const AWAIT_STARTUP_TIMEOUT_MS: u64 = 300_000;

/// Runs one command with the process's stdio and environment. `args`
/// excludes the program name (and a leading `ctl`); `program` is how
/// usage texts name the tool. Returns the exit code.
pub fn main(program: &str, args: Vec<OsString>) -> i32 {
    let (stdout, stderr, stdin) = (io::stdout(), io::stderr(), io::stdin());
    let (mut out, mut err, mut input) = (stdout.lock(), stderr.lock(), stdin.lock());
    let code = run(
        program,
        &args,
        &Env::from_process(),
        &mut Io {
            out: &mut out,
            err: &mut err,
            input: &mut input,
        },
    );
    let _ = out.flush();
    let _ = err.flush();
    code
}

/// Runs one command against `io` and `env`; returns the exit code.
pub fn run(program: &str, args: &[OsString], env: &Env, io: &mut Io) -> i32 {
    let mut raw: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if raw.is_empty() {
        let _ = writeln!(io.err, "{}", all_usage(program));
        return exit::USAGE;
    }
    if raw == ["--help"] {
        let _ = writeln!(io.out, "{}", all_usage(program));
        return exit::OK;
    }
    if raw == ["--version"] {
        raw = vec!["version".to_string()];
    }
    let global = args::parse(
        &raw,
        &Spec {
            switches: vec![args::GLOBAL],
            aliases: vec![args::GLOBAL_ALIASES],
        },
    );
    let Some(name) = global.positional.first() else {
        let _ = writeln!(io.err, "{}", all_usage(program));
        return exit::USAGE;
    };
    let Some(verb) = verbs::find(name) else {
        let msg = match verbs::suggest(name) {
            Some(s) => format!("\nCommand '{name}' not found. \nDid you mean '{s}'? \n"),
            None => format!("\nCommand '{name}' not found. \n{}", all_usage(program)),
        };
        let _ = writeln!(io.err, "{msg}");
        return exit::USAGE;
    };
    let table_default = matches!(verb.output, Output::List { .. });
    let formatter = global
        .str("formatter")
        .map(str::to_string)
        .unwrap_or_else(|| if table_default { "table" } else { "string" }.to_string());
    let mut switches = vec![args::GLOBAL, verb.switches];
    if formatter == "table" {
        switches.push(args::TABLE);
    }
    let p = args::parse(
        &raw,
        &Spec {
            switches,
            aliases: vec![args::GLOBAL_ALIASES, verb.aliases],
        },
    );
    let mut ctx = Ctx {
        program,
        raw,
        verb,
        operands: p.positional[1..].to_vec(),
        formatter: match formatter.as_str() {
            "json" => Fmt::Json,
            "json_stream" => Fmt::JsonStream,
            "csv" => Fmt::Csv,
            "table" | "string" => Fmt::Table,
            _ => Fmt::Unsupported,
        },
        p,
        env,
        io,
        node: String::new(),
        banner_pending: false,
    };
    ctx.start()
}

/// The output formatter in effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fmt {
    Table,
    Json,
    JsonStream,
    Csv,
    Unsupported,
}

/// Why argument validation failed, with rabbitmqctl's exit code.
struct Invalid {
    detail: String,
    code: i32,
}

impl Invalid {
    fn usage(detail: impl Into<String>) -> Invalid {
        Invalid {
            detail: detail.into(),
            code: exit::USAGE,
        }
    }

    fn bad_argument(detail: &str) -> Invalid {
        Invalid {
            detail: format!("Bad argument: {detail}"),
            code: exit::DATAERR,
        }
    }
}

/// Info items as rabbitmqctl reads them: comma- or space-separated,
/// trimmed, without repeats.
fn info_items(operands: &[String]) -> Vec<String> {
    let mut items: Vec<String> = Vec::new();
    for item in operands
        .iter()
        .flat_map(|a| a.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if !items.iter().any(|i| i == item) {
            items.push(item.to_string());
        }
    }
    items
}

/// One command being run.
struct Ctx<'a, 'b> {
    program: &'a str,
    /// The arguments as given, for "Arguments given:".
    raw: Vec<String>,
    verb: &'static Verb,
    operands: Vec<String>,
    formatter: Fmt,
    p: Parsed,
    env: &'a Env,
    io: &'a mut Io<'b>,
    node: String,
    /// The info line is due but not yet printed.
    banner_pending: bool,
}

impl Ctx<'_, '_> {
    fn out(&mut self, s: &str) {
        let _ = self.io.out.write_all(s.as_bytes());
    }

    fn outln(&mut self, s: &str) {
        let _ = writeln!(self.io.out, "{s}");
    }

    fn errln(&mut self, s: &str) {
        let _ = writeln!(self.io.err, "{s}");
    }

    fn quiet(&self) -> bool {
        self.p.flag("quiet") || self.silent()
    }

    fn silent(&self) -> bool {
        // `export_definitions -` is silent so the document stays clean.
        self.p.flag("silent") || (self.verb.name == "export_definitions" && self.operands == ["-"])
    }

    fn json(&self) -> bool {
        matches!(self.formatter, Fmt::Json | Fmt::JsonStream)
    }

    fn vhost(&self) -> &str {
        self.p.str("vhost").unwrap_or("/")
    }

    fn operand(&self, i: usize) -> &str {
        self.operands.get(i).map(String::as_str).unwrap_or("")
    }

    fn timeout_ms(&self) -> u64 {
        match self.p.int("timeout") {
            Some(s) => (s.max(0) as u64).saturating_mul(1000),
            None if self.verb.name == "await_startup" => AWAIT_STARTUP_TIMEOUT_MS,
            None => self.verb.default_timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
        }
    }

    fn base_usage(&self) -> String {
        base_usage(self.program, self.verb)
    }

    fn start(&mut self) -> i32 {
        if !self.p.invalid.is_empty() {
            let lines: Vec<String> = self
                .p
                .invalid
                .iter()
                .map(|(k, v)| format!("{k} : {v}"))
                .collect();
            let detail = format!("Invalid options for this command:\n{}", lines.join("\n"));
            return self.invalid(Invalid::usage(detail));
        }
        if self.p.flag("help") {
            let usage = command_usage(self.program, self.verb);
            self.out(&usage);
            return exit::OK;
        }
        if self.formatter == Fmt::Unsupported {
            return self.invalid(Invalid::usage(
                "the requested formatter is not supported by this command",
            ));
        }
        if let Err(e) = self.validate() {
            return self.invalid(e);
        }
        let target = client::locate(self.p.str("data_dir"), self.p.str("node"), self.env);
        self.node = target.node.clone();
        match self.verb.name {
            "help" => self.help(),
            "version" => self.version(),
            _ => self.remote(&target.socket),
        }
    }

    /// rabbitmqctl's argument checks, in its order.
    fn validate(&self) -> Result<(), Invalid> {
        let v = self.verb;
        let n = self.operands.len();
        if !v.info_keys.is_empty() {
            let mut bad: Vec<String> = info_items(&self.operands)
                .into_iter()
                .filter(|i| !v.info_keys.contains(&i.as_str()))
                .collect();
            if bad.is_empty() {
                return Ok(());
            }
            bad.sort();
            return Err(Invalid::usage(format!(
                "Info key(s) {} are not supported",
                bad.join(",")
            )));
        }
        if matches!(v.name, "export_definitions" | "import_definitions") {
            match self.p.str("format") {
                None | Some("json") | Some("JSON") => {}
                Some("erlang") => {
                    return Err(Invalid::bad_argument(
                        "Erlang term format is not supported by Warren, use json",
                    ))
                }
                Some(_) => {
                    return Err(Invalid::bad_argument(
                        "Format should be either json or erlang",
                    ))
                }
            }
        }
        if n < v.min_args {
            return Err(Invalid::usage("not enough arguments."));
        }
        if v.max_args.is_some_and(|m| n > m) {
            return Err(Invalid::usage("too many arguments."));
        }
        match v.name {
            "add_user" if n == 2 && self.operands[0].is_empty() => {
                Err(Invalid::bad_argument("user cannot be an empty string"))
            }
            "delete_queue" if self.operands[0].is_empty() => Err(Invalid::bad_argument(
                "queue name cannot be an empty string",
            )),
            "status" => match self.p.str("unit") {
                Some(u) if !status::UNITS.contains(&u.to_ascii_lowercase().as_str()) => {
                    Err(Invalid::usage(format!(
                        "\"unit '{u}' is not supported. Please use one of: bytes, mb, gb\""
                    )))
                }
                _ => Ok(()),
            },
            "export_definitions" if self.operands[0] != "-" => {
                let path = Path::new(&self.operands[0]);
                let dir = match path.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d,
                    _ => Path::new("."),
                };
                if dir.exists() {
                    Ok(())
                } else {
                    Err(Invalid::bad_argument(&format!(
                        "Directory {} does not exist",
                        dir.display()
                    )))
                }
            }
            "import_definitions" if n == 1 && !Path::new(&self.operands[0]).exists() => Err(
                Invalid::bad_argument(&format!("File {} does not exist", self.operands[0])),
            ),
            _ => Ok(()),
        }
    }

    /// Prints an argument validation error with the verb's usage.
    fn invalid(&mut self, e: Invalid) -> i32 {
        let msg = format!(
            "Error (argument validation): {}\nArguments given:\n\t{}\n{}",
            e.detail,
            self.raw.join(" "),
            self.base_usage()
        );
        self.errln(&msg);
        e.code
    }

    fn help(&mut self) -> i32 {
        match self.operands.first() {
            None if self.p.flag("list_commands") => {
                let text = commands_description();
                self.outln(&text);
                exit::OK
            }
            None => {
                let text = all_usage(self.program);
                self.outln(&text);
                exit::OK
            }
            Some(name) => {
                match verbs::find(name) {
                    Some(v) => {
                        let text = command_usage(self.program, v);
                        self.out(&text);
                        exit::OK
                    }
                    None => {
                        let msg = match verbs::suggest(name) {
                            Some(s) => {
                                format!("Error:\n\nCommand '{name}' not found. \nDid you mean '{s}'? \n")
                            }
                            None => format!("Error:\n\nCommand '{name}' not found."),
                        };
                        self.errln(&msg);
                        exit::USAGE
                    }
                }
            }
        }
    }

    fn version(&mut self) -> i32 {
        let version = env!("CARGO_PKG_VERSION");
        let line = if self.json() {
            format!(
                "{{\"node\":{},\"result\":\"ok\",\"value\":{{\"version\":{}}}}}",
                json_str(&self.node),
                json_str(version)
            )
        } else {
            version.to_string()
        };
        self.outln(&line);
        exit::OK
    }

    /// A verb the broker carries out.
    fn remote(&mut self, socket: &Path) -> i32 {
        let timeout = self.timeout_ms();
        let deadline = Instant::now() + Duration::from_millis(timeout);
        self.banner_pending = true;
        if self.verb.banner_first {
            self.flush_banner();
        }
        let connected = if self.verb.name == "await_startup" {
            // Keep trying until the broker is up or time runs out.
            loop {
                match client::connect(socket, deadline) {
                    Err(client::CallError::Down(_)) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    other => break other,
                }
            }
        } else {
            client::connect(socket, deadline)
        };
        let stream = match connected {
            Ok(s) => s,
            Err(client::CallError::Down(e)) => return self.node_down(socket, &e),
            Err(_) => return self.timed_out(false),
        };
        let req = match self.request() {
            Ok(r) => r,
            Err(code) => return code,
        };
        if self.p.flag("dry_run") {
            self.flush_banner();
            return exit::OK;
        }
        // A password prompt may have waited on the operator: the verb's
        // own time starts now.
        let deadline = Instant::now() + Duration::from_millis(timeout);
        match client::call(stream, &req, deadline) {
            Ok(Reply::Error { code, message }) => self.broker_error(code, &message),
            Ok(reply) => {
                self.flush_banner();
                self.success(reply)
            }
            Err(client::CallError::Down(e)) => {
                self.flush_banner();
                self.node_down(socket, &e)
            }
            Err(client::CallError::Timeout) => {
                self.flush_banner();
                self.timed_out(true)
            }
            Err(client::CallError::BadReply(e)) => {
                self.flush_banner();
                self.errln(&format!("Error:\n{{:bad_reply, {}}}", json_str(&e)));
                exit::SOFTWARE
            }
        }
    }

    /// The request for the verb; may prompt for a password or read a
    /// definitions file, printing the info line first.
    fn request(&mut self) -> Result<Request, i32> {
        let v = self.verb.name;
        let mut req = Request {
            verb: v.to_string(),
            vhost: self.p.str("vhost").map(str::to_string),
            args: self.operands.clone(),
            ..Request::default()
        };
        if !self.verb.info_keys.is_empty() {
            req.args = info_items(&self.operands);
        }
        // The verb's own switches travel as options; `unit` and `format`
        // only shape the output.
        for (name, kind) in self.verb.switches {
            let val = match (kind, self.p.opts.get(*name)) {
                (Kind::Bool, Some(Opt::Bool(true))) => Value::Bool(true),
                (Kind::Int, Some(Opt::Int(i))) => Value::from(*i),
                (Kind::Str, Some(Opt::Str(s))) if !matches!(*name, "unit" | "format") => {
                    Value::from(s.as_str())
                }
                _ => continue,
            };
            req.options.insert(name.to_string(), val);
        }
        if v == "await_startup" {
            req.options
                .insert("timeout_ms".to_string(), Value::from(self.timeout_ms()));
        }
        if matches!(v, "add_user" | "change_password" | "authenticate_user")
            && self.operands.len() == 1
        {
            let password = self.password()?;
            req.args.push(password);
        }
        if v == "import_definitions" {
            let defs = self.read_definitions()?;
            req.options.insert("definitions".to_string(), defs);
        }
        Ok(req)
    }

    /// A password from the input, as rabbitmqctl prompts for it.
    fn password(&mut self) -> Result<String, i32> {
        self.flush_banner();
        if !self.quiet() {
            self.outln("Password: ");
        }
        let mut line = String::new();
        let _ = self.io.out.flush();
        let read = self.io.input.read_line(&mut line).unwrap_or(0);
        let pw = line.trim();
        if read == 0 || pw.is_empty() {
            let code = if self.verb.name == "add_user" {
                exit::DATAERR
            } else {
                exit::SOFTWARE
            };
            self.errln("Error:\nPassword is not provided via argument or stdin");
            return Err(code);
        }
        Ok(pw.to_string())
    }

    /// Reads and parses the definitions to import, with rabbitmqctl's
    /// messages for each failure (all after the info line).
    fn read_definitions(&mut self) -> Result<Value, i32> {
        self.flush_banner();
        let text = match self.operands.first().cloned() {
            None => {
                let mut buf = String::new();
                let _ = self.io.input.read_to_string(&mut buf);
                buf
            }
            Some(path) => match std::fs::read(&path) {
                Ok(bytes) if bytes.is_empty() => {
                    return Err(self.fail(exit::DATAERR, &format!("File {path} is zero-sized")))
                }
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(e) => {
                    let msg = file_error(&e, &path, "read from");
                    return Err(self.fail(exit::DATAERR, &msg));
                }
            },
        };
        let value: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                let detail = json_error(&text, &e);
                let msg = format!("Failed to deserialise input (format: JSON) (error: {detail})");
                return Err(self.fail(exit::DATAERR, &msg));
            }
        };
        if !value.is_object() {
            let msg = format!("{{:badmap, {}}}\n", format::elixir_inspect(&value));
            return Err(self.fail(exit::SOFTWARE, &msg));
        }
        Ok(value)
    }

    /// Prints `Error:` and a message; returns the code.
    fn fail(&mut self, code: i32, message: &str) -> i32 {
        self.errln(&format!("Error:\n{message}"));
        code
    }

    /// rabbitmqctl's node-down report, for the socket instead of epmd.
    fn node_down(&mut self, socket: &Path, e: &io::Error) -> i32 {
        if self.verb.name == "ping" {
            let msg = format!(
                "Failed to connect and authenticate to {} in {} ms",
                self.node,
                self.timeout_ms()
            );
            return self.fail(exit::UNAVAILABLE, &msg);
        }
        let msg = node_down_report(&self.node, socket, e, self.env);
        self.errln(&msg);
        exit::UNAVAILABLE
    }

    /// rabbitmqctl's timeout error. `running`: the verb itself timed out,
    /// not the check that the node is up.
    fn timed_out(&mut self, running: bool) -> i32 {
        let ms = self.timeout_ms();
        if self.verb.name == "ping" {
            let msg = format!(
                "Failed to connect and authenticate to {} in {ms} ms",
                self.node
            );
            return self.fail(exit::UNAVAILABLE, &msg);
        }
        let secs = erl_float(ms as f64 / 1000.0);
        let used = match (running, self.verb.output) {
            (true, _) if self.verb.name == "list_queues" => format!(
                "{secs}. Some queue(s) are unresponsive, use list_unresponsive_queues command."
            ),
            (true, Output::List { streamed: true }) => secs,
            _ => ms.to_string(),
        };
        let msg = format!(
            "Error: operation {} on node {} timed out. Timeout value used: {used}",
            self.verb.name, self.node
        );
        self.errln(&msg);
        exit::TEMPFAIL
    }
}

/// What `add_user` prints once done; `{}` is the program name.
const ADD_USER_DONE: &str = "Done. Don't forget to grant the user permissions to some virtual hosts! See '{} help set_permissions' to learn more.";

/// What `import_definitions` prints once the broker accepted the file.
const IMPORT_STARTED: &str =
    "Successfully started definition import. This process is asynchronous and can take some time.\n";

/// rabbitmqctl prints `Virtual host '...' does not exist` without the
/// `Error:` line (its `no_such_vhost` error).
fn is_bare_vhost_error(message: &str) -> bool {
    message.starts_with("Virtual host '") && message.ends_with("' does not exist")
}

/// rabbitmqctl's words for a file that cannot be read or written.
fn file_error(e: &io::Error, path: &str, verb: &str) -> String {
    match e.raw_os_error() {
        Some(libc::ENOENT) => format!("Parent directory or file {path} does not exist"),
        Some(libc::ENOTDIR) => format!("Parent directory of file {path} is not a directory"),
        Some(libc::ENOSPC) => format!("No space left on device hosting {path}"),
        Some(libc::EACCES) => {
            format!("No permissions to {verb} file {path} or its parent directory")
        }
        Some(libc::EISDIR) => format!("Path {path} is a directory"),
        _ => format!("Could not {verb} file {path}: {e}"),
    }
}

/// A JSON syntax error in the terms of rabbitmqctl's JSON decoder: the
/// end of input, or the unexpected text from where parsing stopped.
fn json_error(text: &str, e: &serde_json::Error) -> String {
    if e.is_eof() || text.trim().is_empty() {
        return ":unexpected_end_of_buffer".to_string();
    }
    let line_start: usize = text
        .split_inclusive('\n')
        .take(e.line().saturating_sub(1))
        .map(str::len)
        .sum();
    let mut at = (line_start + e.column().saturating_sub(1)).min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    // serde stops inside a word (`nul`, `tru`); the token starts before.
    while at > 0 && text.as_bytes()[at - 1].is_ascii_alphanumeric() {
        at -= 1;
    }
    format!("{{:unexpected_token, {}}}", json_str(text[at..].trim_end()))
}

/// Erlang's printing of a node name atom: quoted unless plain.
fn atom(s: &str) -> String {
    let plain = s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '@');
    if plain {
        s.to_string()
    } else {
        format!("'{s}'")
    }
}

/// What rabbitmqctl prints when it cannot reach a node; the diagnostics
/// describe the control socket where rabbitmqctl describes epmd.
fn node_down_report(node: &str, socket: &Path, e: &io::Error, env: &Env) -> String {
    let socket = socket.display();
    let (problem, suggestion) = match e.raw_os_error() {
        Some(libc::ENOENT) => (
            format!("control socket {socket} does not exist (enoent)"),
            "start the node",
        ),
        Some(libc::ECONNREFUSED) => (
            format!("control socket {socket} refused the connection (econnrefused)"),
            "start the node",
        ),
        Some(libc::EACCES) | Some(libc::EPERM) => (
            format!("no permission to connect to control socket {socket} (eacces)"),
            "run the CLI as the user the node runs as",
        ),
        _ => (
            format!("unable to connect to control socket {socket}: {e}"),
            "check that the node is running",
        ),
    };
    let home = env.home.as_deref().unwrap_or("(unknown)");
    let me = atom(&format!(
        "warren-ctl-{}@{}",
        std::process::id(),
        env.hostname
    ));
    format!(
        "Error: unable to perform an operation on node '{node}'. Please see diagnostics information and suggestions below.

Most common reasons for this are:

 * Target node is unreachable (e.g. due to hostname resolution, TCP connection or firewall issues)
 * CLI tool fails to authenticate with the server (e.g. due to CLI tool's Erlang cookie not matching that of the server)
 * Target node is not running

In addition to the diagnostics info below:

 * See the CLI, clustering and networking guides on https://rabbitmq.com/documentation.html to learn more
 * Consult server logs on node {node}
 * If target node is configured to use long node names, don't forget to use --longnames with CLI tools

DIAGNOSTICS
===========

attempted to contact: [{}]

{node}:
  * {problem}
  * suggestion: {suggestion}

Current node details:
 * node name: {me}
 * effective user's home directory: {home}
 * control socket: {socket}
",
        atom(node)
    )
}

/// `\n<bold>Usage</bold>\n\n<program> [...] <verb usage>`.
fn base_usage(program: &str, verb: &Verb) -> String {
    let timeout = if verb.timeout_switch {
        " [--timeout <timeout>]"
    } else {
        ""
    };
    format!(
        "\n{}\n\n{program} [--node <node>] [--longnames] [--quiet] {}{timeout}",
        status::bright("Usage"),
        verb.usage
    )
}

/// The verbs by section, as `help` lists them.
fn commands_description() -> String {
    let pad = verbs::VERBS.iter().map(|v| v.name.len()).max().unwrap_or(0);
    let mut s = String::new();
    for section in verbs::SECTIONS {
        let mut in_section: Vec<&Verb> = verbs::VERBS
            .iter()
            .filter(|v| v.section == *section)
            .collect();
        if in_section.is_empty() {
            continue;
        }
        in_section.sort_by_key(|v| v.name);
        s.push_str(&format!("\n{}:\n\n", status::bright(section)));
        for v in in_section {
            s.push_str(&format!("   {:<pad$}  {}\n", v.name, v.about));
        }
    }
    s.push('\n');
    s
}

/// The tool's usage and every verb.
fn all_usage(program: &str) -> String {
    format!(
        "\n{}\n\n{program} [--node <node>] [--timeout <timeout>] [--longnames] [--quiet] <command> [<command options>]\n\nAvailable commands:\n{}Use '{program} help <command>' to learn more about a specific command",
        status::bright("Usage"),
        commands_description()
    )
}

/// One verb's help.
fn command_usage(program: &str, verb: &Verb) -> String {
    let mut parts = vec![base_usage(program, verb), format!("{}.\n", verb.about)];
    if !verb.info_keys.is_empty() {
        let mut keys = verb.info_keys.to_vec();
        keys.sort_unstable();
        parts.push(format!(
            "{}\n<column>\n\tmust be one of {}; default: {}\n",
            status::bright("Arguments and Options"),
            keys.join(", "),
            verbs::default_keys(verb.name).join(", ")
        ));
    }
    parts.push(format!(
        "{}\n
-n, --node <node>     the node: a name for messages, or its data directory or socket
    --data-dir <dir>  the broker's data directory, where its control socket is
-t, --timeout <n>     seconds to wait for the broker
-q, --quiet           no informational lines
-s, --silent          no informational lines and no table header row
-p, --vhost <vhost>   the virtual host, for commands scoped to one
    --formatter <f>   json, table, csv or json_stream, where the command supports it
-?, --help            this help",
        status::bright("General Options")
    ));
    parts.join("\n\n") + "\n"
}

#[cfg(test)]
mod tests;
