//! `run` end to end against a fake broker on a temporary Unix socket that
//! answers canned replies and records the requests.
use super::*;
use crate::mgmt::proto::SOCKET_NAME;
use serde_json::json;
use std::io::{BufReader, Cursor};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A fresh temporary data directory.
fn temp_dir() -> PathBuf {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("warren-ctl-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A fake broker answering one connection per reply; `None` holds the
/// connection without answering.
struct Fake {
    dir: PathBuf,
    requests: mpsc::Receiver<Request>,
}

impl Fake {
    fn start(replies: Vec<Option<Reply>>) -> Fake {
        let dir = temp_dir();
        let listener = UnixListener::bind(dir.join(SOCKET_NAME)).unwrap();
        Fake::serve(dir, listener, replies)
    }

    fn serve(dir: PathBuf, listener: UnixListener, replies: Vec<Option<Reply>>) -> Fake {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for reply in replies {
                let Ok((stream, _)) = listener.accept() else {
                    return;
                };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    continue;
                }
                let _ = tx.send(serde_json::from_str::<Request>(&line).unwrap());
                match reply {
                    Some(r) => {
                        let mut out = serde_json::to_string(&r).unwrap();
                        out.push('\n');
                        let _ = (&stream).write_all(out.as_bytes());
                    }
                    // Hold on until the client gives up.
                    None => {
                        let _ = reader.read_line(&mut line);
                    }
                }
            }
        });
        Fake { dir, requests: rx }
    }

    fn request(&self) -> Request {
        self.requests
            .recv_timeout(Duration::from_secs(5))
            .expect("the client sent no request")
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn test_env() -> Env {
    Env {
        config_file: PathBuf::from("/nonexistent/warren.conf"),
        data_dir: None,
        hostname: "box".to_string(),
        home: Some("/home/op".to_string()),
    }
}

struct Ran {
    code: i32,
    out: String,
    err: String,
}

/// Runs `rabbitmqctl <args>` with `stdin` as input.
fn ctl_with_input(args: &[&str], stdin: &str) -> Ran {
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut input = Cursor::new(stdin.as_bytes().to_vec());
    let code = run(
        "rabbitmqctl",
        &args,
        &test_env(),
        &mut Io {
            out: &mut out,
            err: &mut err,
            input: &mut input,
        },
    );
    Ran {
        code,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
    }
}

fn ctl(args: &[&str]) -> Ran {
    ctl_with_input(args, "")
}

/// Runs `rabbitmqctl <args> --data-dir <fake>`.
fn ctl_at(fake: &Fake, args: &[&str]) -> Ran {
    let dir = fake.dir.to_str().unwrap().to_string();
    let mut all: Vec<&str> = args.to_vec();
    all.push("--data-dir");
    all.push(&dir);
    ctl(&all)
}

fn table(columns: &[&str], rows: Vec<Vec<Value>>) -> Reply {
    Reply::Table {
        columns: columns.iter().map(|c| c.to_string()).collect(),
        rows,
    }
}

fn users() -> Reply {
    table(
        &["user", "tags"],
        vec![
            vec![json!("guest"), json!(["administrator"])],
            vec![json!("ops"), json!(["administrator", "monitoring"])],
            vec![json!("app"), json!([])],
        ],
    )
}

#[test]
fn list_users_as_a_table() {
    let fake = Fake::start(vec![Some(users())]);
    let r = ctl_at(&fake, &["list_users"]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "Listing users ...\nuser\ttags\nguest\t[administrator]\nops\t[administrator, monitoring]\napp\t[]\n"
    );
    assert_eq!(r.err, "");
    let req = fake.request();
    assert_eq!(req.verb, "list_users");
    assert_eq!(req.vhost, None);
    assert!(req.args.is_empty());
}

#[test]
fn quiet_silent_and_no_headers() {
    let fake = Fake::start(vec![Some(users()), Some(users()), Some(users())]);
    let q = ctl_at(&fake, &["-q", "list_users"]);
    assert_eq!(
        q.out,
        "user\ttags\nguest\t[administrator]\nops\t[administrator, monitoring]\napp\t[]\n"
    );
    let s = ctl_at(&fake, &["list_users", "-s"]);
    assert_eq!(
        s.out,
        "guest\t[administrator]\nops\t[administrator, monitoring]\napp\t[]\n"
    );
    let n = ctl_at(&fake, &["list_users", "--no-table-headers"]);
    assert_eq!(
        n.out,
        "Listing users ...\nguest\t[administrator]\nops\t[administrator, monitoring]\napp\t[]\n"
    );
}

#[test]
fn list_queues_json_with_flags_after_the_verb() {
    let reply = table(
        &["name", "arguments"],
        vec![
            vec![json!("q1"), json!({"x-max-length": 10})],
            vec![json!("q2"), json!({})],
        ],
    );
    let fake = Fake::start(vec![Some(reply)]);
    let r = ctl_at(
        &fake,
        &[
            "list_queues",
            "name,arguments",
            "-p",
            "v1",
            "--formatter",
            "json",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "[\n{\"name\":\"q1\",\"arguments\":[[\"x-max-length\",\"long\",10]]}\n,{\"name\":\"q2\",\"arguments\":[]}\n]\n"
    );
    let req = fake.request();
    assert_eq!(req.verb, "list_queues");
    assert_eq!(req.vhost.as_deref(), Some("v1"));
    assert_eq!(req.args, vec!["name", "arguments"]);
}

#[test]
fn list_queues_table_banner_and_amqp_arguments() {
    let reply = table(
        &["name", "messages", "arguments"],
        vec![vec![
            json!("q1"),
            json!(3),
            json!({"x-max-length": 10, "x-queue-mode": "lazy"}),
        ]],
    );
    let fake = Fake::start(vec![Some(reply)]);
    let r = ctl_at(
        &fake,
        &["list_queues", "name", "messages", "arguments", "-t", "5"],
    );
    assert_eq!(
        r.out,
        "Timeout: 5.0 seconds ...\nListing queues for vhost / ...\nname\tmessages\targuments\n\
         q1\t3\t[{\"x-max-length\",10},{\"x-queue-mode\",\"lazy\"}]\n"
    );
}

#[test]
fn empty_lists_differ_between_streamed_and_plain() {
    let empty = || Some(table(&["name"], vec![]));
    let fake = Fake::start(vec![empty(), empty(), empty(), empty()]);
    assert_eq!(
        ctl_at(&fake, &["list_exchanges"]).out,
        "Listing exchanges for vhost / ...\n"
    );
    assert_eq!(
        ctl_at(&fake, &["list_exchanges", "--formatter", "json"]).out,
        "[\n]\n"
    );
    assert_eq!(
        ctl_at(&fake, &["list_permissions", "-p", "v"]).out,
        "Listing permissions for vhost \"v\" ...\n\n"
    );
    assert_eq!(
        ctl_at(&fake, &["list_permissions", "--formatter=json"]).out,
        "[]\n"
    );
}

#[test]
fn csv_and_padding() {
    let reply = || {
        Some(table(
            &["name", "messages"],
            vec![vec![json!("q\"1"), json!(2)]],
        ))
    };
    let fake = Fake::start(vec![reply(), reply()]);
    let csv = ctl_at(&fake, &["list_queues", "--formatter", "csv"]);
    assert_eq!(csv.out, "\"name\",\"messages\"\n\"q\"\"1\",\"2\"\n");
    let pad = ctl_at(&fake, &["list_queues", "-q", "--pad-to-header"]);
    assert_eq!(pad.out, "name\tmessages\nq\"1 \t2       \n");
}

#[test]
fn user_errors_print_error_and_the_code() {
    let fake = Fake::start(vec![
        Some(Reply::Error {
            code: exit::SOFTWARE,
            message: "User \"x\" already exists".to_string(),
        }),
        Some(Reply::Error {
            code: exit::SOFTWARE,
            message: "User \"x\" already exists".to_string(),
        }),
        Some(Reply::Error {
            code: exit::NOUSER,
            message: "User \"y\" does not exist".to_string(),
        }),
    ]);
    let r = ctl_at(&fake, &["add_user", "x", "pw"]);
    assert_eq!(r.code, 70);
    assert_eq!(r.out, "Adding user \"x\" ...\n");
    assert_eq!(r.err, "Error:\nUser \"x\" already exists\n");
    assert_eq!(fake.request().args, vec!["x", "pw"]);

    let j = ctl_at(&fake, &["add_user", "x", "pw", "--formatter", "json"]);
    assert_eq!(j.code, 69);
    assert_eq!(j.out, "");
    assert_eq!(
        j.err,
        "{\"message\":\"User x already exists\",\"node\":\"warren@box\",\"result\":\"error\"}\n"
    );

    let d = ctl_at(&fake, &["delete_user", "y"]);
    assert_eq!(d.code, 67);
    assert_eq!(d.err, "Error:\nUser \"y\" does not exist\n");
}

#[test]
fn add_user_done_and_quiet() {
    let fake = Fake::start(vec![
        Some(Reply::Done),
        Some(Reply::Done),
        Some(Reply::Done),
    ]);
    let r = ctl_at(&fake, &["add_user", "x", "pw"]);
    assert_eq!(
        r.out,
        "Adding user \"x\" ...\nDone. Don't forget to grant the user permissions to some virtual hosts! See 'rabbitmqctl help set_permissions' to learn more.\n"
    );
    assert_eq!(ctl_at(&fake, &["add_user", "x", "pw", "-q"]).out, "");
    let j = ctl_at(&fake, &["delete_user", "x", "--formatter", "json"]);
    assert_eq!(j.out, "{\"node\":\"warren@box\",\"result\":\"ok\"}\n");
}

#[test]
fn password_from_input() {
    let fake = Fake::start(vec![Some(Reply::Done)]);
    let dir = fake.dir.to_str().unwrap().to_string();
    let r = ctl_with_input(&["change_password", "x", "--data-dir", &dir], "s3cret\n");
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.out, "Changing password for user \"x\" ...\nPassword: \n");
    assert_eq!(fake.request().args, vec!["x", "s3cret"]);

    let fake = Fake::start(vec![None]);
    let dir = fake.dir.to_str().unwrap().to_string();
    let r = ctl_with_input(&["add_user", "x", "--data-dir", &dir], "");
    assert_eq!(r.code, 65);
    assert_eq!(
        r.err,
        "Error:\nPassword is not provided via argument or stdin\n"
    );
}

#[test]
fn missing_vhost_is_printed_bare() {
    let fake = Fake::start(vec![Some(Reply::Error {
        code: exit::DATAERR,
        message: "Virtual host 'nope' does not exist".to_string(),
    })]);
    let r = ctl_at(&fake, &["delete_vhost", "nope"]);
    assert_eq!(r.code, 65);
    assert_eq!(r.out, "Deleting vhost \"nope\" ...\n");
    assert_eq!(r.err, "Virtual host 'nope' does not exist\n");
}

#[test]
fn environment_errors_skip_the_info_line_and_show_usage() {
    let fake = Fake::start(vec![Some(Reply::Error {
        code: exit::USAGE,
        message: "this command requires the 'rabbit' app to be stopped on the target node. Stop it with 'rabbitmqctl stop_app'.".to_string(),
    })]);
    let dir = fake.dir.to_str().unwrap().to_string();
    let r = ctl(&["reset", "--data-dir", &dir]);
    assert_eq!(r.code, 64);
    assert_eq!(r.out, "");
    assert_eq!(
        r.err,
        format!(
            "Error: this command requires the 'rabbit' app to be stopped on the target node. Stop it with 'rabbitmqctl stop_app'.\n\
             Arguments given:\n\treset --data-dir {dir}\n\n\x1b[1mUsage\x1b[0m\n\n\
             rabbitmqctl [--node <node>] [--longnames] [--quiet] reset\n"
        )
    );
}

#[test]
fn delete_queue_sends_flags_and_reports_messages() {
    let fake = Fake::start(vec![
        Some(Reply::Document(json!({"messages": 3}))),
        Some(Reply::Document(json!({"messages": 0}))),
    ]);
    let r = ctl_at(&fake, &["delete_queue", "q", "--if-empty", "-u", "-p", "v"]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "Deleting queue 'q' on vhost 'v' if queue is empty and if queue is unused ...\n\
         Queue was successfully deleted with 3 ready messages\n"
    );
    let req = fake.request();
    assert_eq!(req.args, vec!["q"]);
    assert_eq!(req.options.get("if_empty"), Some(&json!(true)));
    assert_eq!(req.options.get("if_unused"), Some(&json!(true)));
    let j = ctl_at(&fake, &["delete_queue", "q", "--formatter", "json"]);
    assert_eq!(
        j.out,
        "{\"message\":\"Queue was successfully deleted with 0 ready messages\"}\n"
    );
    assert!(fake.request().options.is_empty());
}

#[test]
fn purge_prints_nothing_after_the_info_line() {
    let fake = Fake::start(vec![Some(Reply::Document(json!({"messages": 5})))]);
    let r = ctl_at(&fake, &["purge_queue", "q"]);
    assert_eq!(r.out, "Purging queue 'q' in vhost '/' ...\n");
    assert_eq!(r.code, 0);
}

#[test]
fn close_all_connections_options_and_count() {
    let fake = Fake::start(vec![Some(Reply::Document(json!({"closed": 2})))]);
    let r = ctl_at(
        &fake,
        &[
            "close_all_connections",
            "bye",
            "--limit",
            "2",
            "--per-connection-delay",
            "10",
        ],
    );
    assert_eq!(
        r.out,
        "Closing 2 connections in vhost /, reason: bye...\nClosed 2 connections\n"
    );
    let req = fake.request();
    assert_eq!(req.options.get("limit"), Some(&json!(2)));
    assert_eq!(req.options.get("per_connection_delay"), Some(&json!(10)));
    assert_eq!(req.args, vec!["bye"]);
}

#[test]
fn node_down_report() {
    let dir = temp_dir();
    let d = dir.to_str().unwrap();
    let r = ctl(&["list_users", "--data-dir", d]);
    assert_eq!(r.code, 69);
    assert_eq!(r.out, "");
    assert!(r.err.starts_with(
        "Error: unable to perform an operation on node 'warren@box'. Please see diagnostics information and suggestions below.\n\nMost common reasons for this are:\n"
    ), "{}", r.err);
    assert!(r
        .err
        .contains(" * Consult server logs on node warren@box\n"));
    assert!(r.err.contains("attempted to contact: [warren@box]\n"));
    assert!(r.err.contains("does not exist (enoent)"));
    assert!(r.err.ends_with("\n\n"));

    // Verbs that announce themselves first still do.
    let s = ctl(&["stop_app", "--data-dir", d]);
    assert_eq!(
        s.out,
        "Stopping rabbit application on node warren@box ...\n"
    );
    assert_eq!(s.code, 69);

    let p = ctl(&["ping", "--data-dir", d, "-n", "rabbit@elsewhere"]);
    assert_eq!(p.code, 69);
    assert_eq!(
        p.out,
        "Will ping rabbit@elsewhere. This only checks if the OS process is running and registered with epmd. Timeout: 60000 ms.\n"
    );
    assert_eq!(
        p.err,
        "Error:\nFailed to connect and authenticate to rabbit@elsewhere in 60000 ms\n"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_broker_that_does_not_answer_times_out() {
    let fake = Fake::start(vec![None, None]);
    let r = ctl_at(&fake, &["list_users", "-t", "1"]);
    assert_eq!(r.code, 75);
    assert_eq!(r.out, "Listing users ...\n");
    assert_eq!(
        r.err,
        "Error: operation list_users on node warren@box timed out. Timeout value used: 1000\n"
    );
    let q = ctl_at(&fake, &["list_queues", "-t", "1", "-q"]);
    assert_eq!(q.code, 75);
    assert_eq!(
        q.err,
        "Error: operation list_queues on node warren@box timed out. Timeout value used: 1.0. Some queue(s) are unresponsive, use list_unresponsive_queues command.\n"
    );
}

#[test]
fn zero_timeout_fails_before_the_info_line() {
    let fake = Fake::start(vec![]);
    let r = ctl_at(&fake, &["add_user", "x", "y", "-t", "0"]);
    assert_eq!(r.code, 75);
    assert_eq!(r.out, "");
    assert_eq!(
        r.err,
        "Error: operation add_user on node warren@box timed out. Timeout value used: 0\n"
    );
}

#[test]
fn usage_errors() {
    let r = ctl(&["add_user"]);
    assert_eq!(r.code, 64);
    assert_eq!(
        r.err,
        "Error (argument validation): not enough arguments.\nArguments given:\n\tadd_user\n\n\x1b[1mUsage\x1b[0m\n\nrabbitmqctl [--node <node>] [--longnames] [--quiet] add_user <username> <password>\n"
    );
    let r = ctl(&["list_users", "extra"]);
    assert_eq!(r.code, 64);
    assert!(r
        .err
        .starts_with("Error (argument validation): too many arguments.\n"));
    assert!(r
        .err
        .ends_with("list_users [--no-table-headers] [--timeout <timeout>]\n"));

    let r = ctl(&["list_vhosts", "nosuchkey", "name", "bogus"]);
    assert_eq!(r.code, 64);
    assert!(r.err.starts_with(
        "Error (argument validation): Info key(s) bogus,nosuchkey are not supported\n"
    ));

    let r = ctl(&["list_users", "--bogus", "-t", "abc"]);
    assert_eq!(r.code, 64);
    assert!(r.err.starts_with(
        "Error (argument validation): Invalid options for this command:\n--bogus : \n-t : abc\nArguments given:\n\tlist_users --bogus -t abc\n"
    ));

    let r = ctl(&["delete_user", "x", "--no-table-headers"]);
    assert_eq!(r.code, 64, "table switches need the table formatter");

    let r = ctl(&["delete_queue", ""]);
    assert_eq!(r.code, 65);
    assert!(r.err.starts_with(
        "Error (argument validation): Bad argument: queue name cannot be an empty string\n"
    ));

    let r = ctl(&["status", "--unit", "foo"]);
    assert_eq!(r.code, 64);
    assert!(r.err.starts_with(
        "Error (argument validation): \"unit 'foo' is not supported. Please use one of: bytes, mb, gb\"\n"
    ));
}

#[test]
fn unknown_verbs() {
    let r = ctl(&["list_queuez"]);
    assert_eq!(r.code, 64);
    assert_eq!(
        r.err,
        "\nCommand 'list_queuez' not found. \nDid you mean 'list_queues'? \n\n"
    );
    let r = ctl(&["nosuchverbatall"]);
    assert_eq!(r.code, 64);
    assert!(r
        .err
        .starts_with("\nCommand 'nosuchverbatall' not found. \n\n\x1b[1mUsage\x1b[0m\n"));
    let r = ctl(&[]);
    assert_eq!(r.code, 64);
    assert!(r.err.contains("Available commands:"));
    assert_eq!(r.out, "");
}

#[test]
fn help_and_version_are_local() {
    let r = ctl(&["help"]);
    assert_eq!(r.code, 0);
    assert!(r.out.contains("   list_queues  "));
    assert!(r
        .out
        .ends_with("Use 'rabbitmqctl help <command>' to learn more about a specific command\n"));
    let r = ctl(&["help", "delete_queue"]);
    assert_eq!(r.code, 0);
    assert!(r.out.starts_with("\n\x1b[1mUsage\x1b[0m\n\nrabbitmqctl [--node <node>] [--longnames] [--quiet] delete_queue <queue_name>"));
    let r = ctl(&["purge_queue", "--help"]);
    assert_eq!(r.code, 0);
    assert!(r.out.contains("purge_queue <queue> [--timeout <timeout>]"));
    let r = ctl(&["help", "nosuch"]);
    assert_eq!(
        (r.code, r.err.as_str()),
        (64, "Error:\n\nCommand 'nosuch' not found.\n")
    );
    let r = ctl(&["help", "list_queuez"]);
    assert_eq!(
        r.err,
        "Error:\n\nCommand 'list_queuez' not found. \nDid you mean 'list_queues'? \n\n"
    );
    let v = ctl(&["--version"]);
    assert_eq!(v.out, format!("{}\n", env!("CARGO_PKG_VERSION")));
    let j = ctl(&["version", "--formatter", "json"]);
    assert_eq!(
        j.out,
        format!(
            "{{\"node\":\"warren@box\",\"result\":\"ok\",\"value\":{{\"version\":\"{}\"}}}}\n",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[test]
fn import_definitions_reads_and_checks_the_file() {
    let fake = Fake::start(vec![Some(Reply::Done)]);
    let file = fake.dir.join("defs.json");
    std::fs::write(&file, r#"{"users": [], "vhosts": [{"name": "/"}]}"#).unwrap();
    let f = file.to_str().unwrap();
    let r = ctl_at(&fake, &["import_definitions", f]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        format!("Importing definitions in JSON from a file at \"{f}\" ...\nSuccessfully started definition import. This process is asynchronous and can take some time.\n")
    );
    let req = fake.request();
    assert_eq!(
        req.options.get("definitions"),
        Some(&json!({"users": [], "vhosts": [{"name": "/"}]}))
    );
    assert!(req.args.is_empty() || req.args == vec![f.to_string()]);

    let bad = fake.dir.join("bad.json");
    let expect = |content: &str, code: i32, err: &str| {
        std::fs::write(&bad, content).unwrap();
        let fake2 = Fake::start(vec![None]);
        let r = ctl_at(&fake2, &["import_definitions", bad.to_str().unwrap()]);
        assert_eq!(r.code, code, "{content:?}: {}", r.err);
        assert_eq!(r.err, err, "{content:?}");
    };
    expect("not json\n", 65, "Error:\nFailed to deserialise input (format: JSON) (error: {:unexpected_token, \"not json\"})\n");
    expect("{\"a\": xyz, \"b\": 1}\n", 65, "Error:\nFailed to deserialise input (format: JSON) (error: {:unexpected_token, \"xyz, \\\"b\\\": 1}\"})\n");
    expect(
        "{\"a\":",
        65,
        "Error:\nFailed to deserialise input (format: JSON) (error: :unexpected_end_of_buffer)\n",
    );
    expect(
        "",
        65,
        &format!("Error:\nFile {} is zero-sized\n", bad.display()),
    );
    expect("[1,2]", 70, "Error:\n{:badmap, [1, 2]}\n\n");

    let missing = fake.dir.join("missing.json");
    let r = ctl(&["import_definitions", missing.to_str().unwrap()]);
    assert_eq!(r.code, 65);
    assert!(r.err.starts_with(&format!(
        "Error (argument validation): Bad argument: File {} does not exist\n",
        missing.display()
    )));
}

#[test]
fn export_definitions_to_stdout_and_file() {
    let doc = json!({"users": [{"name": "guest"}], "vhosts": []});
    let fake = Fake::start(vec![
        Some(Reply::Document(doc.clone())),
        Some(Reply::Document(doc.clone())),
    ]);
    let r = ctl_at(&fake, &["export_definitions", "-"]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.out, r#"{"users":[{"name":"guest"}],"vhosts":[]}"#);
    let file = fake.dir.join("out.json");
    let f = file.to_str().unwrap();
    let r = ctl_at(&fake, &["export_definitions", f]);
    assert_eq!(
        r.out,
        format!("Exporting definitions in JSON to a file at \"{f}\" ...\n")
    );
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(written, doc);

    let r = ctl(&["export_definitions", "/nonexistent-dir/x.json"]);
    assert_eq!(r.code, 65);
    assert!(r.err.starts_with(
        "Error (argument validation): Bad argument: Directory /nonexistent-dir does not exist\n"
    ));
}

#[test]
fn status_report_and_json() {
    let doc = json!({"node": "warren@box", "version": "0.1.0", "pid": 7, "uptime_s": 3,
        "alarms": ["disk"], "listeners": [{"interface": "::", "port": 5672, "protocol": "amqp"}],
        "connections": 1, "queues": 2});
    let fake = Fake::start(vec![
        Some(Reply::Document(doc.clone())),
        Some(Reply::Document(doc.clone())),
    ]);
    let r = ctl_at(&fake, &["status"]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(
        r.out
            .starts_with("Status of node warren@box ...\n\x1b[1mRuntime\x1b[0m\n\nOS PID: 7\n"),
        "{}",
        r.out
    );
    assert!(r
        .out
        .contains("\x1b[1mAlarms\x1b[0m\n\nFree disk space alarm on node warren@box\n"));
    assert!(r.out.ends_with(
        "Interface: [::], port: 5672, protocol: amqp, purpose: AMQP 0-9-1 and AMQP 1.0\n"
    ));
    let j = ctl_at(&fake, &["status", "--formatter", "json"]);
    let printed: Value = serde_json::from_str(j.out.trim_end()).unwrap();
    assert_eq!(printed, doc);
    assert_eq!(j.out.lines().count(), 1);
}

#[test]
fn health_checks() {
    let fake = Fake::start(vec![
        Some(Reply::Done),
        Some(Reply::Error {
            code: exit::UNAVAILABLE,
            message: "Memory alarm on node warren@box".to_string(),
        }),
        Some(Reply::Error {
            code: exit::UNAVAILABLE,
            message: "Memory alarm on node warren@box".to_string(),
        }),
        Some(Reply::Document(json!({"listeners": [
            {"interface": "::", "port": 25672, "protocol": "clustering"},
            {"interface": "::", "port": 5672, "protocol": "amqp"}]}))),
        Some(Reply::Done),
    ]);
    let r = ctl_at(&fake, &["check_local_alarms"]);
    assert_eq!(r.out, "Asking node warren@box to report any local resource alarms ...\nNode warren@box reported no local alarms\n");
    let r = ctl_at(&fake, &["check_local_alarms", "-q"]);
    assert_eq!(
        (r.code, r.err.as_str()),
        (69, "Error:\nMemory alarm on node warren@box\n")
    );
    let r = ctl_at(&fake, &["check_local_alarms", "--formatter", "json"]);
    assert_eq!(
        (r.code, r.err.as_str()),
        (69, "{\"local\":[\"Memory alarm on node warren@box\"],\"message\":\"Node warren@box reported local alarms\",\"result\":\"error\"}\n")
    );
    let r = ctl_at(&fake, &["check_port_connectivity", "-q"]);
    assert_eq!(
        r.out,
        "Successfully connected to ports 5672, 25672 on node warren@box.\n"
    );
    let r = ctl_at(&fake, &["check_running"]);
    assert_eq!(
        r.out,
        "Checking if RabbitMQ is running on node warren@box ...\nRabbitMQ on node warren@box is fully booted and running\n"
    );
}

#[test]
fn await_startup_waits_for_the_socket() {
    let dir = temp_dir();
    let sock = dir.join(SOCKET_NAME);
    let d = dir.clone();
    let late = thread::spawn(move || {
        thread::sleep(Duration::from_millis(300));
        let listener = UnixListener::bind(&sock).unwrap();
        Fake::serve(d, listener, vec![Some(Reply::Done)])
    });
    let r = ctl(&[
        "await_startup",
        "--data-dir",
        dir.to_str().unwrap(),
        "-t",
        "5",
    ]);
    let fake = late.join().unwrap();
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.out, "");
    let req = fake.request();
    assert_eq!(req.verb, "await_startup");
    assert!(req.options.contains_key("timeout_ms"));
}

#[test]
fn node_given_as_a_path() {
    let fake = Fake::start(vec![Some(users()), Some(Reply::Done)]);
    let sock = fake.dir.join(SOCKET_NAME);
    let r = ctl(&["-n", fake.dir.to_str().unwrap(), "list_users", "-s"]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(r.out.starts_with("guest\t"));
    let r = ctl(&["stop", "-n", sock.to_str().unwrap()]);
    assert_eq!(r.out, "Stopping and halting node warren@box ...\n");
}

#[test]
fn verb_switches_travel_as_options() {
    let fake = Fake::start(vec![Some(Reply::Done), Some(table(&["name"], vec![]))]);
    let r = ctl_at(
        &fake,
        &[
            "add_vhost",
            "v",
            "-d",
            "test vhost",
            "--default-queue-type",
            "classic",
        ],
    );
    assert_eq!(r.out, "Adding vhost \"v\" ...\n");
    let req = fake.request();
    assert_eq!(req.args, vec!["v"]);
    assert_eq!(req.options.get("description"), Some(&json!("test vhost")));
    assert_eq!(
        req.options.get("default_queue_type"),
        Some(&json!("classic"))
    );
    assert!(!req.options.contains_key("tags"));

    let r = ctl_at(&fake, &["list_queues", "--online", "name", "name", "-q"]);
    assert_eq!(r.out, "");
    let req = fake.request();
    assert_eq!(req.args, vec!["name"], "info items are de-duplicated");
    assert_eq!(req.options.get("online"), Some(&json!(true)));
    assert!(!req.options.contains_key("offline"));
}
