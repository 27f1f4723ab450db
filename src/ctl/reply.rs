//! The broker's reply laid out as rabbitmqctl lays it out: tables (text,
//! JSON, CSV), documents, messages, and errors with their exit codes.
use super::*;

impl Ctx<'_, '_> {
    /// The broker's `Error` reply, printed as rabbitmqctl prints it.
    pub(super) fn broker_error(&mut self, code: i32, message: &str) -> i32 {
        if code == exit::USAGE && message.starts_with("this command requires") {
            // An execution-environment check: no info line, the usage.
            let msg = format!(
                "Error: {message}\nArguments given:\n\t{}\n{}",
                self.raw.join(" "),
                self.base_usage()
            );
            self.errln(&msg);
            return code;
        }
        self.flush_banner();
        let v = self.verb.name;
        let user = self.operand(0).to_string();
        if self.json() {
            let special = match (v, code) {
                ("add_user", exit::SOFTWARE) => Some(format!("User {user} already exists")),
                ("delete_user" | "change_password" | "set_user_tags", exit::NOUSER) => {
                    Some(format!("User {user} does not exists"))
                }
                _ => None,
            };
            if let Some(m) = special {
                let line = format!(
                    "{{\"message\":{},\"node\":{},\"result\":\"error\"}}",
                    json_str(&m),
                    json_str(&self.node)
                );
                self.errln(&line);
                return exit::UNAVAILABLE;
            }
            if v == "check_local_alarms" {
                let local: Vec<String> = message.lines().map(json_str).collect();
                let line = format!(
                    "{{\"local\":[{}],\"message\":{},\"result\":\"error\"}}",
                    local.join(","),
                    json_str(&format!("Node {} reported local alarms", self.node))
                );
                self.errln(&line);
                return code;
            }
        }
        if v == "check_local_alarms" && self.silent() {
            return code;
        }
        if is_bare_vhost_error(message) {
            self.errln(message);
        } else {
            self.fail(code, message);
        }
        code
    }

    /// Prints a successful reply.
    pub(super) fn success(&mut self, reply: Reply) -> i32 {
        if let Output::List { streamed } = self.verb.output {
            return match reply {
                Reply::Table { columns, rows } => self.table(&columns, &rows, streamed),
                other => self.unexpected(&other),
            };
        }
        let node = self.node.clone();
        let doc = match &reply {
            Reply::Document(d) => Some(d),
            _ => None,
        };
        let msg: Option<String> = match self.verb.name {
            "add_user" => {
                if self.json() {
                    let m = json_str(ADD_USER_DONE.replace("{}", self.program).as_str());
                    let line = format!(
                        "{{\"message\":{m},\"node\":{},\"status\":\"ok\"}}",
                        json_str(&node)
                    );
                    self.outln(&line);
                    return exit::OK;
                }
                (!self.quiet()).then(|| ADD_USER_DONE.replace("{}", self.program))
            }
            "authenticate_user" => Some("Success".to_string()),
            "delete_queue" => {
                let n = doc
                    .and_then(|d| d.get("messages"))
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| "0".to_string());
                Some(format!(
                    "Queue was successfully deleted with {n} ready messages"
                ))
            }
            "close_all_connections" => {
                if let Some(n) = doc.and_then(|d| d.get("closed")) {
                    let m = format!("Closed {n} connections");
                    if self.json() {
                        let line = format!(
                            "{{\"node\":{},\"result\":\"ok\",\"value\":{}}}",
                            json_str(&node),
                            json_str(&m)
                        );
                        self.outln(&line);
                        return exit::OK;
                    }
                    Some(m)
                } else {
                    None
                }
            }
            "status" => {
                let Some(d) = doc else {
                    return self.unexpected(&reply);
                };
                let text = if self.json() {
                    d.to_string()
                } else {
                    let unit = self.p.str("unit").unwrap_or("gb").to_string();
                    status::render(d, &node, &unit)
                };
                self.outln(&text);
                return exit::OK;
            }
            "export_definitions" => {
                let Some(d) = doc else {
                    return self.unexpected(&reply);
                };
                return self.export(d);
            }
            "import_definitions" => {
                if self.json() {
                    let line = format!("{{\"node\":{},\"result\":\"ok\"}}", json_str(&node));
                    self.out(&line);
                } else if !self.quiet() {
                    self.out(IMPORT_STARTED);
                }
                return exit::OK;
            }
            "ping" => Some("Ping succeeded".to_string()),
            "check_running" => Some(format!(
                "RabbitMQ on node {node} is fully booted and running"
            )),
            "check_local_alarms" => {
                if self.json() {
                    self.outln("{\"result\":\"ok\"}");
                    return exit::OK;
                }
                (!self.silent()).then(|| format!("Node {node} reported no local alarms"))
            }
            "check_port_connectivity" => {
                let listeners: Vec<Value> = doc
                    .and_then(|d| d.get("listeners"))
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if self.json() {
                    let maps: Vec<Value> = listeners
                        .iter()
                        .map(|l| status::listener_json(l, &node))
                        .collect();
                    let line = format!(
                        "{{\"listeners\":{},\"node\":{},\"result\":\"ok\"}}",
                        Value::from(maps),
                        json_str(&node)
                    );
                    self.outln(&line);
                    return exit::OK;
                }
                let mut ports: Vec<u64> = listeners
                    .iter()
                    .filter_map(|l| status::listener(l).1.parse().ok())
                    .collect();
                ports.sort_unstable();
                let ports: Vec<String> = ports.iter().map(u64::to_string).collect();
                Some(format!(
                    "Successfully connected to ports {} on node {node}.",
                    ports.join(", ")
                ))
            }
            _ => {
                if self.json() {
                    let line = format!("{{\"node\":{},\"result\":\"ok\"}}", json_str(&node));
                    self.outln(&line);
                }
                return exit::OK;
            }
        };
        if let Some(m) = msg {
            if self.json() {
                self.outln(&format!("{{\"message\":{}}}", json_str(&m)));
            } else {
                self.outln(&m);
            }
        }
        exit::OK
    }

    /// `export_definitions`: the document to stdout, or to a file.
    pub(super) fn export(&mut self, doc: &Value) -> i32 {
        let body = doc.to_string();
        let path = self.operand(0).to_string();
        if path == "-" {
            self.out(&body);
            return exit::OK;
        }
        let _ = std::fs::remove_file(&path);
        match std::fs::write(&path, body) {
            Ok(()) => exit::OK,
            Err(e) => {
                let msg = file_error(&e, &path, "write to");
                self.fail(exit::DATAERR, &msg)
            }
        }
    }

    pub(super) fn unexpected(&mut self, reply: &Reply) -> i32 {
        let kind = match reply {
            Reply::Table { .. } => "table",
            Reply::Done => "done",
            Reply::Document(_) => "document",
            Reply::Error { .. } => "error",
        };
        self.fail(exit::SOFTWARE, &format!("{{:unexpected_reply, :{kind}}}"))
    }

    /// A list reply in the formatter in effect.
    pub(super) fn table(&mut self, columns: &[String], rows: &[Vec<Value>], streamed: bool) -> i32 {
        let cell = |c: usize, row: &[Value]| {
            let v = row.get(c).unwrap_or(&Value::Null);
            format::cell(&columns[c], v)
        };
        if rows.is_empty() {
            let text = match (streamed, self.formatter) {
                (true, Fmt::Json) => "[\n]\n",
                (true, _) => "",
                (false, Fmt::Csv) => "\r\n\r\n\n",
                (false, Fmt::Json | Fmt::JsonStream) => "[]\n",
                (false, _) => "\n",
            };
            self.out(text);
            return exit::OK;
        }
        let mut text = String::new();
        match self.formatter {
            Fmt::Json | Fmt::JsonStream => {
                let stream = self.formatter == Fmt::JsonStream;
                if !stream {
                    text.push_str("[\n");
                }
                for (i, row) in rows.iter().enumerate() {
                    if i > 0 && !stream {
                        text.push(',');
                    }
                    text.push_str(&json_row(columns, row));
                    text.push('\n');
                }
                if !stream {
                    text.push_str("]\n");
                }
            }
            Fmt::Csv => {
                let header: Vec<String> = columns.iter().map(|c| csv_field(c)).collect();
                text.push_str(&header.join(","));
                text.push('\n');
                for row in rows {
                    let fields: Vec<String> = (0..columns.len())
                        .map(|c| csv_field(&cell(c, row)))
                        .collect();
                    text.push_str(&fields.join(","));
                    text.push('\n');
                }
            }
            Fmt::Table | Fmt::Unsupported => {
                if !self.silent() && self.p.flag_or_true("table_headers") {
                    text.push_str(&columns.join("\t"));
                    text.push('\n');
                }
                let pad = self.p.flag("pad_to_header");
                for row in rows {
                    let fields: Vec<String> = (0..columns.len())
                        .map(|c| {
                            let s = cell(c, row);
                            let width = columns[c].chars().count();
                            let len = s.chars().count();
                            if pad && len < width {
                                format!("{s}{}", " ".repeat(width - len))
                            } else {
                                s
                            }
                        })
                        .collect();
                    text.push_str(&fields.join("\t"));
                    text.push('\n');
                }
            }
        }
        self.out(&text);
        exit::OK
    }
}
