//! `export_definitions` and `import_definitions`: the broker's users,
//! vhosts, permissions and durable topology in RabbitMQ's JSON, so a file
//! moves between the two brokers (users keep their passwords: the hashes
//! are RabbitMQ's formats).
use serde_json::{json, Value};
use std::rc::Rc;

use super::definitions_json::{
    self as dj, json_to_table, table_to_json, BindingDef, Definitions, ExchangeDef, PermissionDef,
    QueueDef, Tags, UserDef, VhostDef,
};
use super::ops;
use super::proto::{exit, Reply};
use crate::access::PermissionSpec;
use crate::routing::{Binding, Destination, ExchangeKind};
use crate::shard::{Admin, AdminOp, Shard};
use crate::topology::admin::AdminError;
use crate::topology::policy::{self, PolicyKind, PolicySpec};
use crate::topology::{ExchangeMeta, Topology};

/// The RabbitMQ release whose definitions format this is.
const FORMAT_VERSION: &str = "3.10.8";

/// The broker's definitions, as RabbitMQ exports them.
pub fn export(shard: &Shard) -> Value {
    let defs = shard.with_topology(build);
    serde_json::to_value(&defs).unwrap_or_else(|_| json!({}))
}

/// One vhost's definitions, as RabbitMQ exports them for
/// `GET /api/definitions/{vhost}`: its queues, exchanges and bindings,
/// without their `vhost` keys (an import puts them into the vhost it is
/// given), and no users, vhosts or permissions.
pub fn export_vhost(shard: &Shard, vhost: &str) -> Value {
    let all = export(shard);
    let mut out = serde_json::Map::new();
    for k in [
        "rabbit_version",
        "rabbitmq_version",
        "product_name",
        "product_version",
    ] {
        if let Some(v) = all.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    out.insert("parameters".into(), json!([]));
    // As RabbitMQ's: a vhost's policies keep their `vhost` key.
    let policies: Vec<Value> = all["policies"]
        .as_array()
        .map(|a| a.iter().filter(|p| p["vhost"] == vhost).cloned().collect())
        .unwrap_or_default();
    out.insert("policies".into(), Value::Array(policies));
    for list in ["queues", "exchanges", "bindings"] {
        let items: Vec<Value> = all[list]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|i| i["vhost"] == vhost)
                    .map(|i| {
                        let mut i = i.clone();
                        if let Some(o) = i.as_object_mut() {
                            o.remove("vhost");
                        }
                        i
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.insert(list.into(), Value::Array(items));
    }
    Value::Object(out)
}

fn build(t: &Topology) -> Definitions {
    let mut d = Definitions {
        rabbit_version: Some(FORMAT_VERSION.into()),
        rabbitmq_version: Some(FORMAT_VERSION.into()),
        product_name: Some("Warren".into()),
        product_version: Some(env!("CARGO_PKG_VERSION").into()),
        ..Definitions::default()
    };
    for u in t.access.users() {
        d.users
            .push(UserDef::new(&u.name, &u.hash, Tags(u.tags.clone())));
    }
    for v in t.vhost_names() {
        d.vhosts.push(VhostDef {
            description: None,
            limits: Some(json!([])),
            metadata: Some(json!({ "description": "", "tags": [] })),
            name: v.to_string(),
            tags: None,
        });
    }
    for (user, vhost, p) in t.access.all_permissions() {
        d.permissions.push(PermissionDef {
            configure: p.spec.configure.clone(),
            read: p.spec.read.clone(),
            user: user.to_string(),
            vhost: vhost.to_string(),
            write: p.spec.write.clone(),
        });
    }
    // User policies only: RabbitMQ 3.10 exports no operator policies.
    for vname in t.vhost_names() {
        let Some(v) = t.vhost(&vname) else { continue };
        for p in policy::sorted(v.policies.values()) {
            d.policies.push(p.to_json(&vname));
        }
    }
    let defaults = crate::topology::VHost::predeclared();
    for vname in t.vhost_names() {
        let Some(v) = t.vhost(&vname) else { continue };
        // As RabbitMQ's export: every queue but exclusive ones, every
        // exchange but the predeclared ones.
        let mut queues: Vec<_> = v
            .queues
            .values()
            .filter(|q| q.exclusive.is_none())
            .collect();
        queues.sort_by(|a, b| a.name.cmp(&b.name));
        for q in queues {
            d.queues.push(QueueDef {
                arguments: table_to_json(&q.arguments),
                auto_delete: q.auto_delete,
                durable: q.durable,
                name: q.name.to_string(),
                queue_type: Some(q.queue_type().into()),
                vhost: Some(vname.to_string()),
            });
        }
        let mut exchanges: Vec<_> = v
            .exchanges
            .values()
            .filter(|e| !defaults.exchanges.contains_key(&e.name))
            .collect();
        exchanges.sort_by(|a, b| a.name.cmp(&b.name));
        for e in exchanges {
            d.exchanges.push(ExchangeDef {
                arguments: table_to_json(&e.arguments),
                auto_delete: e.auto_delete,
                durable: e.durable,
                internal: e.internal,
                name: e.name.to_string(),
                exchange_type: e.kind.as_str().to_string(),
                vhost: Some(vname.to_string()),
            });
        }
        let exported_queue = |q: &str| v.queues.get(q).is_some_and(|m| m.exclusive.is_none());
        let mut bindings: Vec<_> = v
            .routing
            .bindings()
            .filter(|b| match &b.destination {
                Destination::Queue(q) => exported_queue(q),
                Destination::Exchange(_) => true,
            })
            .collect();
        bindings.sort_by(|a, b| {
            (&a.source, dest_name(a), &a.routing_key).cmp(&(
                &b.source,
                dest_name(b),
                &b.routing_key,
            ))
        });
        for b in bindings {
            let (destination_type, destination) = match &b.destination {
                Destination::Queue(q) => ("queue", q.to_string()),
                Destination::Exchange(x) => ("exchange", x.to_string()),
            };
            d.bindings.push(BindingDef {
                arguments: table_to_json(&b.arguments),
                destination,
                destination_type: destination_type.into(),
                routing_key: b.routing_key.to_string(),
                source: b.source.to_string(),
                vhost: Some(vname.to_string()),
            });
        }
    }
    d
}

fn dest_name(b: &Binding) -> &str {
    match &b.destination {
        Destination::Queue(q) => q,
        Destination::Exchange(x) => x,
    }
}

fn data_error(message: String) -> Reply {
    Reply::Error {
        code: exit::DATAERR,
        message,
    }
}

/// Imports a definitions document, in RabbitMQ's order: users, vhosts,
/// permissions, policies, exchanges, queues, bindings. Users that exist get the
/// file's password and tags; objects that exist must be equivalent. An
/// object that cannot be imported (a queue argument Warren refuses...) is
/// reported, and the rest still imported.
pub async fn import(shard: &Rc<Shard>, doc: &Value) -> Result<Reply, Reply> {
    let text = doc.to_string();
    let defs = dj::parse(&text).map_err(data_error)?;
    apply(shard, &defs).await.map_err(data_error)?;
    Ok(Reply::Done)
}

async fn admin(shard: &Rc<Shard>, op: AdminOp) -> Result<(), String> {
    match shard.leader(Admin(op)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("{e:?}")),
        Err(e) => Err(e.text),
    }
}

/// Applies `defs` to the running broker (also used by `load_definitions`
/// at boot): everything that can be, then the failures, one per line.
pub async fn apply(shard: &Rc<Shard>, defs: &Definitions) -> Result<(), String> {
    let mut failures = Vec::new();
    apply_each(shard, defs, &mut failures).await;
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

async fn apply_each(shard: &Rc<Shard>, defs: &Definitions, failures: &mut Vec<String>) {
    let version = defs.version();
    for (what, n) in [
        ("parameters", defs.parameters.len()),
        ("global parameters", defs.global_parameters.len()),
        ("topic permissions", defs.topic_permissions.len()),
    ] {
        if n > 0 {
            tracing::warn!("definitions import: {n} {what} skipped (not supported by Warren yet)");
        }
    }
    for u in &defs.users {
        let hash = match u.credentials(version) {
            Ok(h) => h,
            Err(e) => {
                failures.push(format!("user '{}': {e}", u.name));
                continue;
            }
        };
        let exists = shard.with_topology(|t| t.access.user(&u.name).is_some());
        let name = u.name.clone();
        let tags = u.tags.0.clone();
        let done = if exists {
            let op = AdminOp::ChangePassword {
                name: name.clone(),
                hash,
            };
            match admin(shard, op).await {
                Ok(()) => admin(shard, AdminOp::SetTags { name, tags }).await,
                e => e,
            }
        } else {
            admin(shard, AdminOp::AddUser { name, hash, tags }).await
        };
        if let Err(e) = done {
            failures.push(format!("user '{}': {e}", u.name));
        }
    }
    for v in &defs.vhosts {
        if !shard.vhost_exists(&v.name) {
            if let Err(e) = admin(shard, AdminOp::AddVhost(v.name.clone())).await {
                failures.push(format!("vhost '{}': {e}", v.name));
            }
        }
    }
    for p in &defs.permissions {
        let op = AdminOp::SetPermissions {
            user: p.user.clone(),
            vhost: p.vhost.clone(),
            spec: PermissionSpec {
                configure: p.configure.clone(),
                write: p.write.clone(),
                read: p.read.clone(),
            },
        };
        if let Err(e) = admin(shard, op).await {
            failures.push(format!(
                "permissions of '{}' in vhost '{}': {e}",
                p.user, p.vhost
            ));
        }
    }
    for p in &defs.policies {
        let name = p["name"].as_str().unwrap_or_default().to_string();
        let vhost = p["vhost"].as_str().unwrap_or("/").to_string();
        let op = AdminOp::SetPolicy {
            vhost: vhost.clone(),
            kind: PolicyKind::User,
            name: name.clone(),
            spec: PolicySpec {
                pattern: p["pattern"].clone(),
                definition: p["definition"].clone(),
                priority: p.get("priority").cloned(),
                apply_to: p.get("apply-to").cloned(),
            },
        };
        let done = match shard.leader(Admin(op)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(AdminError::PolicyInvalid(m))) => Err(m.trim_end().to_string()),
            Ok(Err(e)) => Err(format!("{e:?}")),
            Err(e) => Err(e.text),
        };
        if let Err(e) = done {
            failures.push(format!("policy '{name}' in vhost '{vhost}': {e}"));
        }
    }
    let vhost_of = |v: &Option<String>| v.clone().unwrap_or_else(|| "/".into());
    for x in &defs.exchanges {
        let Some(kind) = ExchangeKind::parse(&x.exchange_type) else {
            failures.push(format!(
                "exchange '{}': unknown type '{}'",
                x.name, x.exchange_type
            ));
            continue;
        };
        let arguments = match json_to_table(&x.arguments) {
            Ok(a) => a,
            Err(e) => {
                failures.push(format!("exchange '{}': {e}", x.name));
                continue;
            }
        };
        let meta = ExchangeMeta {
            name: x.name.as_str().into(),
            kind,
            durable: x.durable,
            auto_delete: x.auto_delete,
            internal: x.internal,
            arguments,
        };
        if let Err(e) = ops::declare_exchange(shard, &vhost_of(&x.vhost), meta).await {
            failures.push(format!("exchange '{}': {}", x.name, e.text));
        }
    }
    for q in &defs.queues {
        let arguments = match json_to_table(&q.arguments) {
            // The type may be given beside the arguments only.
            Ok(mut a) if q.queue_type.as_deref() == Some("quorum") => {
                if a.get("x-queue-type").is_none() {
                    a.insert("x-queue-type", "quorum".into());
                }
                a
            }
            Ok(a) => a,
            Err(e) => {
                failures.push(format!("queue '{}': {e}", q.name));
                continue;
            }
        };
        let vhost = vhost_of(&q.vhost);
        let declared =
            ops::declare_queue(shard, &vhost, &q.name, q.durable, q.auto_delete, arguments);
        if let Err(e) = declared.await {
            failures.push(format!("queue '{}': {}", q.name, e.text));
        }
    }
    for b in &defs.bindings {
        let destination = match b.destination_type.as_str() {
            "queue" => Destination::Queue(b.destination.as_str().into()),
            "exchange" => Destination::Exchange(b.destination.as_str().into()),
            other => {
                failures.push(format!("binding: unknown destination type '{other}'"));
                continue;
            }
        };
        let arguments = match json_to_table(&b.arguments) {
            Ok(a) => a,
            Err(e) => {
                failures.push(format!("binding of '{}': {e}", b.source));
                continue;
            }
        };
        let binding = Binding {
            source: b.source.as_str().into(),
            destination,
            routing_key: b.routing_key.as_str().into(),
            arguments,
        };
        if let Err(e) = ops::bind(shard, &vhost_of(&b.vhost), binding).await {
            failures.push(format!(
                "binding of '{}' to '{}': {}",
                b.source, b.destination, e.text
            ));
        }
    }
}

/// `load_definitions`: imports a definitions file at boot.
pub async fn load_file(shard: &Rc<Shard>, path: &std::path::Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let defs = dj::parse(&text)?;
    apply(shard, &defs).await
}
