//! `status` laid out as rabbitmqctl 3.10 lays it out: bold section
//! titles, `Label: value` lines, sizes in the `--unit` (default gb).
//! Sections and lines Warren has no data for are left out.
use super::format::erl_float;
use serde_json::Value;

/// The units `--unit` accepts.
pub const UNITS: &[&str] = &[
    "bytes",
    "kb",
    "kilobytes",
    "mb",
    "megabytes",
    "gb",
    "gigabytes",
    "tb",
    "terabytes",
];

/// A section title, bold as rabbitmqctl prints it (always, tty or not).
pub fn bright(s: &str) -> String {
    format!("\x1b[1m{s}\x1b[0m")
}

/// Bytes in `unit`, rounded to 4 decimals as rabbitmqctl does.
pub fn convert(bytes: f64, unit: &str) -> String {
    let div = match unit.to_ascii_lowercase().as_str() {
        "kb" | "kilobytes" => 1e3,
        "mb" | "megabytes" => 1e6,
        "gb" | "gigabytes" => 1e9,
        "tb" | "terabytes" => 1e12,
        _ => return format!("{}", bytes as u64),
    };
    erl_float(((bytes / div) * 1e4).round() / 1e4)
}

/// A listener's purpose, as rabbitmqctl labels its protocol.
fn purpose(protocol: &str) -> &str {
    match protocol {
        "amqp" => "AMQP 0-9-1 and AMQP 1.0",
        "amqp/ssl" => "AMQP 0-9-1 and AMQP 1.0 over TLS",
        "clustering" => "inter-node and CLI tool communication",
        "http" => "HTTP API",
        "https" => "HTTP API over TLS (HTTPS)",
        other => other,
    }
}

/// IPv6 addresses in brackets, as rabbitmqctl shows `[::]`.
fn interface(s: &str) -> String {
    if s.contains(':') && !s.starts_with('[') {
        format!("[{s}]")
    } else {
        s.to_string()
    }
}

/// A listener as `(interface, port, protocol)`.
pub fn listener(l: &Value) -> (String, String, String) {
    let text = |k: &str| match l.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    };
    (
        interface(&text("interface")),
        text("port"),
        text("protocol"),
    )
}

/// A listener line of `status`.
pub fn listener_line(l: &Value) -> String {
    let (iface, port, proto) = listener(l);
    format!(
        "Interface: {iface}, port: {port}, protocol: {proto}, purpose: {}",
        purpose(&proto)
    )
}

/// The JSON map rabbitmqctl prints for a listener.
pub fn listener_json(l: &Value, node: &str) -> Value {
    let (iface, port, proto) = listener(l);
    serde_json::json!({
        "interface": iface,
        "node": node,
        "port": port.parse::<u64>().map(Value::from).unwrap_or(Value::String(port)),
        "protocol": proto,
        "purpose": purpose(&proto),
    })
}

/// An alarm line, as rabbitmqctl words it.
pub fn alarm_line(alarm: &str, node: &str) -> String {
    match alarm {
        "memory" => format!("Memory alarm on node {node}"),
        "disk" => format!("Free disk space alarm on node {node}"),
        "file_descriptor_limit" => format!("File descriptor limit alarm on node {node}"),
        other => format!("{other} alarm on node {node}"),
    }
}

/// The `status` report, without the info line.
pub fn render(doc: &Value, node: &str, unit: &str) -> String {
    // Keys are JSON pointers into the document, which has the shape of
    // `rabbitmqctl status --formatter json` (`/memory/total/rss`...).
    let text = |k: &str| match doc.pointer(k) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) if n.is_f64() => Some(erl_float(n.as_f64().unwrap_or(0.0))),
        Some(Value::Null) | None => None,
        Some(v) => Some(v.to_string()),
    };
    let size = |k: &str| {
        doc.pointer(k)
            .and_then(Value::as_f64)
            .map(|b| convert(b, unit))
    };
    let list = |k: &str| -> Option<Vec<String>> {
        doc.get(k)?.as_array().map(|xs| {
            xs.iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| x.to_string())
                })
                .collect()
        })
    };
    let mut sections: Vec<Vec<String>> = Vec::new();
    let mut section = |title: &str, lines: Vec<String>| {
        if !lines.is_empty() {
            let mut s = vec![format!("{}\n", bright(title))];
            s.extend(lines);
            sections.push(s);
        }
    };

    let mut runtime = Vec::new();
    let mut line = |label: &str, v: Option<String>| {
        if let Some(v) = v {
            runtime.push(format!("{label}: {v}"));
        }
    };
    line("OS PID", text("/pid"));
    line("OS", Some(os_name()));
    line("Uptime (seconds)", text("/uptime"));
    line("Product name", Some("Warren".to_string()));
    line("Product version", text("/product_version"));
    line("Node name", Some(node.to_string()));
    line("Shards", text("/shards"));
    section("Runtime", runtime);

    if let Some(plugins) = list("plugins") {
        let mut lines = vec!["Enabled plugins:\n".to_string()];
        lines.extend(plugins.iter().map(|p| format!(" * {p}")));
        section("Plugins", lines);
    }
    section(
        "Data directory",
        text("/data_directory")
            .map(|d| vec![format!("Node data directory: {d}")])
            .unwrap_or_default(),
    );
    for (key, title) in [
        ("config_files", "Config files"),
        ("log_files", "Log file(s)"),
    ] {
        if let Some(files) = list(key) {
            section(title, files.iter().map(|f| format!(" * {f}")).collect());
        }
    }
    let alarms = list("alarms").unwrap_or_default();
    section(
        "Alarms",
        if alarms.is_empty() {
            vec!["(none)".to_string()]
        } else {
            alarms.iter().map(|a| alarm_line(a, node)).collect()
        },
    );

    let mut memory = Vec::new();
    if let Some(used) = size("/memory/total/rss") {
        memory.push(format!("Total memory used: {used} {unit}"));
        memory.push(format!(
            "Calculation strategy: {}",
            text("/vm_memory_calculation_strategy").unwrap_or_else(|| "rss".to_string())
        ));
    }
    if let Some(limit) = size("/vm_memory_high_watermark_limit") {
        // rabbitmqctl 3.10: "0.4 of available memory", or an absolute
        // setting in the report's unit ("0.5369 gb").
        let setting = text("/vm_memory_high_watermark_setting/relative")
            .map(|w| format!("{w} of available memory"))
            .or_else(|| {
                size("/vm_memory_high_watermark_setting/absolute").map(|b| format!("{b} {unit}"))
            })
            .unwrap_or_else(|| "(unknown)".to_string());
        memory.push(format!(
            "Memory high watermark setting: {setting}, computed to: {limit} {unit}"
        ));
    }
    section("Memory", memory);

    if let (Some(used), Some(total)) = (
        text("/file_descriptors/total_used"),
        text("/file_descriptors/total_limit"),
    ) {
        section(
            "File Descriptors",
            vec![format!("Total: {used}, limit: {total}")],
        );
    }
    let mut disk = Vec::new();
    if let Some(limit) = size("/disk_free_limit") {
        disk.push(format!("Low free disk space watermark: {limit} {unit}"));
    }
    if let Some(free) = size("/disk_free") {
        disk.push(format!("Free disk space: {free} {unit}"));
    }
    section("Free Disk Space", disk);

    let mut totals = Vec::new();
    for (key, label) in [
        ("/totals/connection_count", "Connection count"),
        ("/totals/queue_count", "Queue count"),
        ("/totals/virtual_host_count", "Virtual host count"),
    ] {
        if let Some(v) = text(key) {
            totals.push(format!("{label}: {v}"));
        }
    }
    section("Totals", totals);

    let listeners: Vec<String> = doc
        .get("listeners")
        .and_then(Value::as_array)
        .map(|ls| ls.iter().map(listener_line).collect())
        .unwrap_or_default();
    section(
        "Listeners",
        if listeners.is_empty() {
            vec!["(none)".to_string()]
        } else {
            listeners
        },
    );

    sections
        .iter()
        .map(|s| s.join("\n"))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The OS as rabbitmqctl names it ("Linux").
fn os_name() -> String {
    let os = std::env::consts::OS;
    let mut c = os.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_round_to_four_decimals() {
        assert_eq!(convert(124_500_000.0, "gb"), "0.1245");
        assert_eq!(convert(50_000_000.0, "gb"), "0.05");
        assert_eq!(convert(0.0, "gb"), "0.0");
        assert_eq!(convert(70_749_712_345.0, "GB"), "70.7497");
        assert_eq!(convert(1234.0, "bytes"), "1234");
        assert_eq!(convert(1500.0, "kb"), "1.5");
    }

    #[test]
    fn full_report() {
        let doc = json!({
            "node": "warren@box", "product_version": "0.1.0", "pid": 4242, "uptime": 454,
            "shards": 4, "data_directory": "/var/lib/warren",
            "memory": {"total": {"rss": 124_500_000u64}, "strategy": "rss"},
            "vm_memory_high_watermark_limit": 10_110_600_000u64,
            "vm_memory_high_watermark_setting": {"relative": 0.4}, "alarms": [],
            "listeners": [{"interface": "::", "port": 5672, "protocol": "amqp"}],
            "disk_free": 70_749_700_000u64, "disk_free_limit": 50_000_000u64,
            "file_descriptors": {"total_used": 8, "total_limit": 927},
            "totals": {"connection_count": 2, "queue_count": 5}
        });
        let want = [
            "\x1b[1mRuntime\x1b[0m\n",
            "OS PID: 4242",
            &format!("OS: {}", os_name()),
            "Uptime (seconds): 454",
            "Product name: Warren",
            "Product version: 0.1.0",
            "Node name: warren@box",
            "Shards: 4",
            "",
            "\x1b[1mData directory\x1b[0m\n",
            "Node data directory: /var/lib/warren",
            "",
            "\x1b[1mAlarms\x1b[0m\n",
            "(none)",
            "",
            "\x1b[1mMemory\x1b[0m\n",
            "Total memory used: 0.1245 gb",
            "Calculation strategy: rss",
            "Memory high watermark setting: 0.4 of available memory, computed to: 10.1106 gb",
            "",
            "\x1b[1mFile Descriptors\x1b[0m\n",
            "Total: 8, limit: 927",
            "",
            "\x1b[1mFree Disk Space\x1b[0m\n",
            "Low free disk space watermark: 0.05 gb",
            "Free disk space: 70.7497 gb",
            "",
            "\x1b[1mTotals\x1b[0m\n",
            "Connection count: 2",
            "Queue count: 5",
            "",
            "\x1b[1mListeners\x1b[0m\n",
            "Interface: [::], port: 5672, protocol: amqp, purpose: AMQP 0-9-1 and AMQP 1.0",
        ]
        .join("\n");
        assert_eq!(render(&doc, "warren@box", "gb"), want);
    }

    #[test]
    fn alarms_and_units() {
        let doc = json!({"alarms": ["memory", "disk"], "memory": {"total": {"rss": 2_000_000u64}}});
        let out = render(&doc, "warren@box", "mb");
        assert!(out
            .contains("Memory alarm on node warren@box\nFree disk space alarm on node warren@box"));
        assert!(out.contains("Total memory used: 2.0 mb"));
        assert!(out.contains("Listeners\x1b[0m\n\n(none)"));
        assert!(!out.contains("File Descriptors"));
    }

    #[test]
    fn absolute_watermark_in_the_unit() {
        // As rabbitmqctl 3.10.8 shows `set_vm_memory_high_watermark
        // absolute 536870912`.
        let doc = json!({
            "memory": {"total": {"rss": 124_500_000u64}},
            "vm_memory_high_watermark_limit": 536_870_912u64,
            "vm_memory_high_watermark_setting": {"absolute": 536_870_912u64}
        });
        assert!(render(&doc, "warren@box", "gb")
            .contains("Memory high watermark setting: 0.5369 gb, computed to: 0.5369 gb\n"));
        assert!(render(&doc, "warren@box", "mb")
            .contains("Memory high watermark setting: 536.8709 mb, computed to: 536.8709 mb\n"));
    }
}
