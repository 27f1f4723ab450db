//! The API's routes: each path and method to its handler, after the
//! caller is authenticated. Users, vhosts, permissions, the node, health
//! checks and definitions are here; queues, exchanges, bindings,
//! connections, channels and consumers in `objects.rs`.
use serde_json::{json, Value};
use std::rc::Rc;

use super::auth::{authenticate, require_vhost, visible_vhosts, Caller};
use super::lists;
use super::objects::{self as obj, BindingFilter, ChannelFilter};
use super::request::{field_str, ApiError, ApiRequest, ApiResponse, ApiResult, Method};
use crate::access::{PasswordHash, PermissionSpec};
use crate::mgmt::control::Context;
use crate::mgmt::definitions_json::{PermissionDef, Tags, UserDef};
use crate::mgmt::listings::all_connections;
use crate::mgmt::proto::Reply;
use crate::mgmt::stats::Sampler;
use crate::shard::{Admin, AdminOp, Shard};
use crate::topology::admin::AdminError;
use crate::topology::policy::{self, PolicyKind, PolicySpec};

/// The RabbitMQ release whose management API this is.
pub const API_VERSION: &str = "3.10.8";

/// Routes one request; `?columns=` applies to single objects too.
pub async fn route(
    shard: &Rc<Shard>,
    ctx: &Context,
    stats: &Sampler,
    req: ApiRequest,
) -> ApiResult {
    let mut r = dispatch(shard, ctx, stats, &req).await?;
    // A paged list is an object too, but `lists` projected its items.
    if let (Some(Value::Object(_)), None) = (&r.body, req.query("page")) {
        if let Some(body) = r.body.take() {
            r.body = Some(lists::project_columns(&req, body));
        }
    }
    Ok(r)
}

async fn dispatch(
    shard: &Rc<Shard>,
    ctx: &Context,
    stats: &Sampler,
    req: &ApiRequest,
) -> ApiResult {
    let caller = authenticate(shard, req)?;
    let segs: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let m = req.method;
    use Method::{Delete, Get, Post, Put};
    let get = matches!(m, Get | Method::Head);
    match (segs.as_slice(), m) {
        (["overview"], _) if get => overview(shard, ctx, stats, &caller, req).await,
        (["whoami"], _) if get => Ok(ApiResponse::ok(
            json!({ "name": caller.name, "tags": caller.tags }),
        )),
        (["cluster-name"], _) if get => Ok(ApiResponse::ok(json!({ "name": ctx.node }))),
        (["extensions"], _) if get => Ok(ApiResponse::ok(json!([]))),
        (["nodes"], _) if get => {
            caller.require_monitor()?;
            lists::reply(req, vec![node(ctx)], &[])
        }
        (["nodes", n], _) if get => {
            caller.require_monitor()?;
            if *n != ctx.node {
                return Err(ApiError::NotFound);
            }
            Ok(ApiResponse::ok(node(ctx)))
        }
        // users, vhosts, permissions
        (["vhosts"], _) if get => list_vhosts(shard, stats, &caller, req).await,
        (["vhosts", v], _) if get => {
            caller.require_admin()?;
            if !shard.vhost_exists(v) {
                return Err(ApiError::NotFound);
            }
            Ok(ApiResponse::ok(vhost_json(shard, stats, v).await))
        }
        (["vhosts", v], Put) => {
            caller.require_admin()?;
            // Vhost metadata is not stored yet: refused, not dropped.
            let body = req.json()?;
            let given = |k: &str| match body.get(k) {
                None | Some(Value::Null) => false,
                Some(Value::String(s)) => !s.is_empty(),
                Some(Value::Array(a)) => !a.is_empty(),
                Some(_) => true,
            };
            if given("description") || given("tags") {
                return Err(ApiError::NotImplemented(
                    "vhost descriptions and tags are not supported by Warren yet".into(),
                ));
            }
            let existed = shard.vhost_exists(v);
            admin(shard, AdminOp::AddVhost(v.to_string())).await?;
            Ok(ApiResponse::created(!existed))
        }
        (["vhosts", v], Delete) => {
            caller.require_admin()?;
            if !shard.vhost_exists(v) {
                return Err(ApiError::NotFound);
            }
            admin(shard, AdminOp::DeleteVhost(v.to_string())).await?;
            Ok(ApiResponse::no_content())
        }
        (["vhosts", v, "permissions"], _) if get => {
            caller.require_admin()?;
            if !shard.vhost_exists(v) {
                return Err(ApiError::NotFound);
            }
            lists::reply(req, permissions(shard, |_, vh| vh == *v), &[])
        }
        (["vhosts", v, "connections"], _) if get => {
            obj::list_connections(shard, ctx, stats, &caller, req, Some(v)).await
        }
        (["vhosts", v, "channels"], _) if get => {
            obj::list_channels(shard, ctx, &caller, req, ChannelFilter::Vhost(v)).await
        }
        (["users"], _) if get => {
            caller.require_admin()?;
            let users = shard.with_topology(|t| {
                t.access
                    .users()
                    .into_iter()
                    .map(|u| user_json(&u.name, &u.hash, &u.tags))
                    .collect()
            });
            lists::reply(req, users, &["name"])
        }
        (["users", u], _) if get => {
            caller.require_admin()?;
            shard
                .with_topology(|t| {
                    t.access
                        .user(u)
                        .map(|u| user_json(&u.name, &u.hash, &u.tags))
                })
                .map(ApiResponse::ok)
                .ok_or(ApiError::NotFound)
        }
        (["users", u], Put) => {
            caller.require_admin()?;
            put_user(shard, req, u).await
        }
        (["users", u], Delete) => {
            caller.require_admin()?;
            if shard.with_topology(|t| t.access.user(u).is_none()) {
                return Err(ApiError::NotFound);
            }
            admin(shard, AdminOp::DeleteUser(u.to_string())).await?;
            Ok(ApiResponse::no_content())
        }
        (["users", u, "permissions"], _) if get => {
            caller.require_admin()?;
            if shard.with_topology(|t| t.access.user(u).is_none()) {
                return Err(ApiError::NotFound);
            }
            lists::reply(req, permissions(shard, |user, _| user == *u), &[])
        }
        (["permissions"], _) if get => {
            caller.require_admin()?;
            lists::reply(req, permissions(shard, |_, _| true), &[])
        }
        (["permissions", v, u], _) if get => {
            caller.require_admin()?;
            permissions(shard, |user, vh| user == *u && vh == *v)
                .into_iter()
                .next()
                .map(ApiResponse::ok)
                .ok_or(ApiError::NotFound)
        }
        (["permissions", v, u], Put) => {
            caller.require_admin()?;
            put_permissions(shard, req, v, u).await
        }
        (["permissions", v, u], Delete) => {
            caller.require_admin()?;
            if permissions(shard, |user, vh| user == *u && vh == *v).is_empty() {
                return Err(ApiError::NotFound);
            }
            let op = AdminOp::ClearPermissions {
                user: u.to_string(),
                vhost: v.to_string(),
            };
            admin(shard, op).await?;
            Ok(ApiResponse::no_content())
        }
        // queues
        (["queues"], _) if get => obj::list_queues(shard, ctx, stats, &caller, req, None).await,
        (["queues", v], _) if get => {
            obj::list_queues(shard, ctx, stats, &caller, req, Some(v)).await
        }
        (["queues", v, q], _) if get => obj::get_queue(shard, ctx, stats, &caller, v, q).await,
        (["queues", v, q], Put) => obj::put_queue(shard, &caller, req, v, q).await,
        (["queues", v, q], Delete) => obj::delete_queue(shard, &caller, req, v, q).await,
        (["queues", v, q, "contents"], Delete) => obj::purge_queue(shard, &caller, v, q).await,
        (["queues", v, q, "get"], Post) => obj::get_messages(shard, &caller, req, v, q).await,
        (["queues", v, q, "bindings"], _) if get => {
            obj::list_bindings(shard, &caller, req, Some(v), BindingFilter::Queue(q)).await
        }
        // exchanges
        (["exchanges"], _) if get => obj::list_exchanges(shard, stats, &caller, req, None).await,
        (["exchanges", v], _) if get => {
            obj::list_exchanges(shard, stats, &caller, req, Some(v)).await
        }
        (["exchanges", v, x], _) if get => obj::get_exchange(shard, stats, &caller, v, x),
        (["exchanges", v, x], Put) => obj::put_exchange(shard, &caller, req, v, x).await,
        (["exchanges", v, x], Delete) => obj::delete_exchange(shard, &caller, req, v, x).await,
        (["exchanges", v, x, "publish"], Post) => obj::publish(shard, &caller, req, v, x),
        (["exchanges", v, x, "bindings", "source"], _) if get => {
            obj::list_bindings(shard, &caller, req, Some(v), BindingFilter::Source(x)).await
        }
        (["exchanges", v, x, "bindings", "destination"], _) if get => {
            obj::list_bindings(shard, &caller, req, Some(v), BindingFilter::Destination(x)).await
        }
        // bindings
        (["bindings"], _) if get => {
            obj::list_bindings(shard, &caller, req, None, BindingFilter::All).await
        }
        (["bindings", v], _) if get => {
            obj::list_bindings(shard, &caller, req, Some(v), BindingFilter::All).await
        }
        (["bindings", v, "e", s, k @ ("q" | "e"), d], _) if get => {
            obj::list_bindings(
                shard,
                &caller,
                req,
                Some(v),
                BindingFilter::Between(s, k, d),
            )
            .await
        }
        (["bindings", v, "e", s, k @ ("q" | "e"), d], Post) => {
            obj::create_binding(shard, &caller, req, v, (s, k, d)).await
        }
        (["bindings", v, "e", s, k @ ("q" | "e"), d, p], _) if get || m == Delete => {
            obj::one_binding(shard, &caller, m == Delete, v, (s, k, d, p)).await
        }
        // connections, channels, consumers
        (["connections"], _) if get => {
            obj::list_connections(shard, ctx, stats, &caller, req, None).await
        }
        (["connections", n], _) if get => obj::get_connection(shard, ctx, stats, &caller, n).await,
        (["connections", n], Delete) => obj::close_connection(shard, &caller, req, n).await,
        (["connections", n, "channels"], _) if get => {
            obj::list_channels(shard, ctx, &caller, req, ChannelFilter::Connection(n)).await
        }
        (["channels"], _) if get => {
            obj::list_channels(shard, ctx, &caller, req, ChannelFilter::All).await
        }
        (["channels", n], _) if get => {
            obj::list_channels(shard, ctx, &caller, req, ChannelFilter::One(n)).await
        }
        (["consumers"], _) if get => obj::list_consumers(shard, ctx, &caller, req, None).await,
        (["consumers", v], _) if get => {
            obj::list_consumers(shard, ctx, &caller, req, Some(v)).await
        }
        // definitions
        (["definitions"], _) if get => {
            caller.require_admin()?;
            Ok(ApiResponse::ok(http_export(
                crate::mgmt::definitions::export(shard),
            )))
        }
        (["definitions", v], _) if get => {
            caller.require_admin()?;
            if !shard.vhost_exists(v) {
                return Err(ApiError::NotFound);
            }
            Ok(ApiResponse::ok(http_export(
                crate::mgmt::definitions::export_vhost(shard, v),
            )))
        }
        (["definitions"], Post) => {
            caller.require_admin()?;
            import(shard, req, None).await
        }
        (["definitions", v], Post) => {
            caller.require_admin()?;
            if !shard.vhost_exists(v) {
                return Err(ApiError::NotFound);
            }
            import(shard, req, Some(v)).await
        }
        // health
        (["aliveness-test", v], _) if get => aliveness(shard, &caller, v).await,
        (["health", "checks", "alarms" | "local-alarms"], _) if get => alarms(ctx),
        (["health", "checks", "virtual-hosts"], _) if get => {
            Ok(ApiResponse::ok(json!({ "status": "ok" })))
        }
        (["health", "checks", "port-listener", p], _) if get => port_listener(ctx, p),
        (["health", "checks", "protocol-listener", p], _) if get => protocol_listener(ctx, p),
        (["health", "checks", "node-is-quorum-critical" | "node-is-mirror-sync-critical"], _)
            if get =>
        {
            Ok(ApiResponse::ok(json!({ "status": "ok" })))
        }
        // policies and operator policies
        ([kind @ ("policies" | "operator-policies")], _) if get => {
            let items = policies_json(shard, &visible_vhosts(shard, &caller), kind);
            lists::reply(req, items, &["priority"])
        }
        ([kind @ ("policies" | "operator-policies"), v], _) if get => {
            require_vhost(shard, &caller, v)?;
            lists::reply(
                req,
                policies_json(shard, &[v.to_string()], kind),
                &["priority"],
            )
        }
        ([kind @ ("policies" | "operator-policies"), v, name], _)
            if get || matches!(m, Put | Delete) =>
        {
            policy_object(shard, &caller, req, kind, v, name).await
        }
        _ => match allowed(&segs) {
            Some(allow) => Err(ApiError::MethodNotAllowed(allow)),
            None => Err(ApiError::NotFound),
        },
    }
}

/// The methods a path has (`None`: no such resource), for 405's `Allow`.
fn allowed(segs: &[&str]) -> Option<&'static str> {
    const READ: &str = "HEAD, GET, OPTIONS";
    const OBJECT: &str = "HEAD, GET, PUT, DELETE, OPTIONS";
    Some(match segs {
        ["definitions"] | ["definitions", _] => "HEAD, GET, POST, OPTIONS",
        ["overview" | "whoami" | "cluster-name" | "extensions" | "nodes" | "vhosts" | "users"
        | "permissions" | "queues" | "exchanges" | "bindings" | "connections" | "channels"
        | "consumers"]
        | ["queues" | "exchanges" | "bindings" | "consumers", _] => READ,
        ["vhosts" | "users", _] | ["permissions" | "queues" | "exchanges", _, _] => OBJECT,
        ["connections", _] => "HEAD, GET, DELETE, OPTIONS",
        ["policies" | "operator-policies"] | ["policies" | "operator-policies", _] => READ,
        ["policies" | "operator-policies", _, _] => OBJECT,
        ["queues", _, _, "get"] | ["exchanges", _, _, "publish"] => "POST, OPTIONS",
        ["queues", _, _, "contents"] => "DELETE, OPTIONS",
        ["bindings", _, "e", _, _, _] => "HEAD, GET, POST, OPTIONS",
        ["bindings", _, "e", _, _, _, _] => "HEAD, GET, DELETE, OPTIONS",
        _ => return None,
    })
}

/// The HTTP API's export differs from rabbitmqctl's: its queues carry no
/// `type`, its exchanges always say `internal`.
fn http_export(mut doc: Value) -> Value {
    if let Some(Value::Array(qs)) = doc.get_mut("queues") {
        for q in qs.iter_mut().filter_map(Value::as_object_mut) {
            q.remove("type");
        }
    }
    if let Some(Value::Array(xs)) = doc.get_mut("exchanges") {
        for x in xs.iter_mut().filter_map(Value::as_object_mut) {
            x.entry("internal").or_insert(json!(false));
        }
    }
    doc
}

async fn admin(shard: &Rc<Shard>, op: AdminOp) -> Result<(), ApiError> {
    match shard.leader(Admin(op)).await {
        Ok(Ok(())) | Ok(Err(AdminError::VhostExists(_))) => Ok(()),
        Ok(Err(AdminError::NoSuchUser(_) | AdminError::NoSuchVhost(_))) => Err(ApiError::NotFound),
        Ok(Err(AdminError::Invalid(m) | AdminError::PolicyInvalid(m))) => {
            Err(ApiError::BadRequest(m))
        }
        Ok(Err(AdminError::NoSuchPolicy(_))) => Err(ApiError::NotFound),
        Ok(Err(e)) => Err(ApiError::BadRequest(format!("{e:?}"))),
        Err(e) => Err(ApiError::Internal(e.text)),
    }
}

fn policy_kind(segment: &str) -> PolicyKind {
    if segment == "policies" {
        PolicyKind::User
    } else {
        PolicyKind::Operator
    }
}

/// The policies of `vhosts` (RabbitMQ's JSON), of the kind the path names.
fn policies_json(shard: &Shard, vhosts: &[String], segment: &str) -> Vec<Value> {
    let kind = policy_kind(segment);
    shard.with_topology(|t| {
        vhosts
            .iter()
            .filter_map(|v| t.vhost(v).map(|vh| (v, vh)))
            .flat_map(|(v, vh)| {
                policy::sorted(vh.policies_of(kind).values())
                    .into_iter()
                    .map(|p| p.to_json(v))
                    .collect::<Vec<_>>()
            })
            .collect()
    })
}

/// `GET`, `PUT`, `DELETE /api/policies/{vhost}/{name}` (and operator
/// policies): policymakers in their vhosts and administrators change
/// policies; only administrators operator policies.
async fn policy_object(
    shard: &Rc<Shard>,
    caller: &Caller,
    req: &ApiRequest,
    segment: &str,
    vhost: &str,
    name: &str,
) -> ApiResult {
    let kind = policy_kind(segment);
    match kind {
        PolicyKind::Operator => caller.require_admin()?,
        PolicyKind::User => {
            let policymaker = caller.tags.iter().any(|t| t == "policymaker");
            if !caller.administrator()
                && !(policymaker
                    && (!shard.vhost_exists(vhost)
                        || super::auth::vhost_access(shard, caller, vhost)))
            {
                return Err(ApiError::NotYours);
            }
        }
    }
    let existing = shard.with_topology(|t| {
        t.vhost(vhost)
            .and_then(|v| v.policies_of(kind).get(name))
            .map(|p| p.to_json(vhost))
    });
    match req.method {
        Method::Put => {
            if !shard.vhost_exists(vhost) {
                return Err(ApiError::NotFoundBecause("vhost_not_found".into()));
            }
            let body = req.json()?;
            super::request::require_keys(&body, &["pattern", "definition"])?;
            let spec = PolicySpec {
                pattern: body["pattern"].clone(),
                definition: body["definition"].clone(),
                priority: body.get("priority").cloned(),
                apply_to: body.get("apply-to").cloned(),
            };
            let op = AdminOp::SetPolicy {
                vhost: vhost.to_string(),
                kind,
                name: name.to_string(),
                spec,
            };
            match admin(shard, op).await {
                // RabbitMQ escapes a policy's reason for HTML (not an
                // operator policy's).
                Err(ApiError::BadRequest(m)) if kind == PolicyKind::User => {
                    Err(ApiError::BadRequest(
                        m.replace('&', "&amp;")
                            .replace('<', "&lt;")
                            .replace('>', "&gt;"),
                    ))
                }
                Err(e) => Err(e),
                Ok(()) => Ok(ApiResponse::created(existing.is_none())),
            }
        }
        Method::Delete => {
            if existing.is_none() {
                return Err(ApiError::NotFound);
            }
            let op = AdminOp::ClearPolicy {
                vhost: vhost.to_string(),
                kind,
                name: name.to_string(),
            };
            admin(shard, op).await?;
            Ok(ApiResponse::no_content())
        }
        _ => existing.map(ApiResponse::ok).ok_or(ApiError::NotFound),
    }
}

fn user_json(name: &str, hash: &PasswordHash, tags: &[String]) -> Value {
    serde_json::to_value(UserDef::new(name, hash, Tags(tags.to_vec()))).unwrap_or(Value::Null)
}

/// `PUT /api/users/{name}`: `password` or `password_hash` (with
/// `hashing_algorithm`), and `tags` as a list or a comma-separated string.
async fn put_user(shard: &Rc<Shard>, req: &ApiRequest, name: &str) -> ApiResult {
    let mut body = req.json()?;
    body.insert("name".into(), json!(name));
    if !body.contains_key("tags") {
        body.insert("tags".into(), json!(""));
    }
    if body.contains_key("password") && body.contains_key("password_hash") {
        return Err(ApiError::BadRequest(
            "both_password_and_password_hash_are_provided".into(),
        ));
    }
    let exists = shard.with_topology(|t| t.access.user(name).is_some());
    if exists && !req.json()?.contains_key("tags") {
        return Err(ApiError::BadRequest("tags_not_present".into()));
    }
    if !body.contains_key("password") && !body.contains_key("password_hash") {
        // As RabbitMQ: a user made without a password gets a random one,
        // so it cannot log in until one is set.
        let random: [u8; 16] = rand::random();
        let secret: String = random.iter().map(|b| format!("{b:02x}")).collect();
        body.insert("password".into(), json!(secret));
    }
    let def: UserDef = serde_json::from_value(Value::Object(body))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let hash = def
        .credentials(Some(API_VERSION))
        .map_err(ApiError::BadRequest)?;
    let tags = def.tags.0;
    if exists {
        let op = AdminOp::ChangePassword {
            name: name.into(),
            hash,
        };
        admin(shard, op).await?;
        admin(
            shard,
            AdminOp::SetTags {
                name: name.into(),
                tags,
            },
        )
        .await?;
    } else {
        admin(
            shard,
            AdminOp::AddUser {
                name: name.into(),
                hash,
                tags,
            },
        )
        .await?;
    }
    Ok(ApiResponse::created(!exists))
}

fn permissions(shard: &Shard, keep: impl Fn(&str, &str) -> bool) -> Vec<Value> {
    shard.with_topology(|t| {
        t.access
            .all_permissions()
            .into_iter()
            .filter(|(u, v, _)| keep(u, v))
            .map(|(u, v, p)| {
                serde_json::to_value(PermissionDef {
                    user: u.into(),
                    vhost: v.into(),
                    configure: p.spec.configure.clone(),
                    write: p.spec.write.clone(),
                    read: p.spec.read.clone(),
                })
                .unwrap_or(Value::Null)
            })
            .collect()
    })
}

/// `PUT /api/permissions/{vhost}/{user}`.
async fn put_permissions(
    shard: &Rc<Shard>,
    req: &ApiRequest,
    vhost: &str,
    user: &str,
) -> ApiResult {
    let body = req.json()?;
    super::request::require_keys(&body, &["configure", "write", "read"])?;
    if !shard.vhost_exists(vhost) || shard.with_topology(|t| t.access.user(user).is_none()) {
        return Err(ApiError::BadRequest("vhost_or_user_not_found".into()));
    }
    let field = |k: &str| -> Result<String, ApiError> {
        Ok(field_str(&body, k)?.unwrap_or("").to_string())
    };
    let spec = PermissionSpec {
        configure: field("configure")?,
        write: field("write")?,
        read: field("read")?,
    };
    let existed = !permissions(shard, |u, v| u == user && v == vhost).is_empty();
    let op = AdminOp::SetPermissions {
        user: user.into(),
        vhost: vhost.into(),
        spec,
    };
    admin(shard, op).await?;
    Ok(ApiResponse::created(!existed))
}

async fn vhost_json(shard: &Rc<Shard>, stats: &Sampler, vhost: &str) -> Value {
    let (ready, unacked) = match crate::mgmt::listings::queue_infos(shard, vhost).await {
        Ok(v) => v.iter().fold((0u64, 0u64), |(r, u), (_, i)| {
            let i = i.as_ref();
            (
                r + i.map_or(0, |i| i.ready as u64),
                u + i.map_or(0, |i| i.unacked as u64),
            )
        }),
        Err(_) => (0, 0),
    };
    let default = *shard.options().access.default_vhost == *vhost;
    let mut v = json!({
        "name": vhost,
        "description": if default { "Default virtual host" } else { "" },
        "tags": [],
        "metadata": { "description": if default { "Default virtual host" } else { "" }, "tags": [] },
        "default_queue_type": "undefined",
        "tracing": false,
        "cluster_state": { "warren": "running" },
        "messages": ready + unacked,
        "messages_ready": ready,
        "messages_unacknowledged": unacked,
    });
    if let Some(Value::Object(t)) = stats.vhost_totals(vhost) {
        for (k, val) in t {
            if k.ends_with("_details") || k.ends_with("_oct") {
                v[k] = val;
            }
        }
    }
    if let Some(m) = stats.vhost_message_stats(vhost) {
        v["message_stats"] = m;
    }
    v
}

/// `GET /api/vhosts`: those the caller may reach, all for monitors.
async fn list_vhosts(
    shard: &Rc<Shard>,
    stats: &Sampler,
    caller: &Caller,
    req: &ApiRequest,
) -> ApiResult {
    let names = if caller.monitoring() {
        shard.with_topology(|t| t.vhost_names().into_iter().map(|v| v.to_string()).collect())
    } else {
        visible_vhosts(shard, caller)
    };
    let mut items = Vec::new();
    for v in names {
        items.push(vhost_json(shard, stats, &v).await);
    }
    lists::reply(req, items, &["name"])
}

async fn import(shard: &Rc<Shard>, req: &ApiRequest, vhost: Option<&str>) -> ApiResult {
    let mut doc: Value = serde_json::from_slice(&req.body)
        .map_err(|_| ApiError::BadRequest("failed_to_parse_json".into()))?;
    // As RabbitMQ: objects in a vhost that neither exists nor is defined
    // in the document refuse the whole import.
    let defined: Vec<String> = doc
        .get("vhosts")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for list in ["policies", "queues", "exchanges", "bindings"] {
        for item in doc
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(v) = item.get("vhost").and_then(Value::as_str) else {
                continue;
            };
            if vhost.is_none() && !shard.vhost_exists(v) && !defined.iter().any(|d| d == v) {
                return Err(ApiError::BadRequestValue(json!(["no_such_vhost", v])));
            }
        }
    }
    if let Some(v) = vhost {
        // A vhost's definitions name no vhost: they land in this one.
        for list in ["policies", "queues", "exchanges", "bindings"] {
            if let Some(Value::Array(items)) = doc.get_mut(list) {
                for i in items.iter_mut().filter_map(Value::as_object_mut) {
                    i.insert("vhost".into(), json!(v));
                }
            }
        }
    }
    match crate::mgmt::definitions::import(shard, &doc).await {
        Ok(_) => Ok(ApiResponse::no_content()),
        Err(Reply::Error { message, .. }) => Err(ApiError::BadRequest(message)),
        Err(_) => Err(ApiError::BadRequest("import failed".into())),
    }
}

async fn aliveness(shard: &Rc<Shard>, caller: &Caller, vhost: &str) -> ApiResult {
    require_vhost(shard, caller, vhost)?;
    // As RabbitMQ: declare a queue, publish to it, get it back.
    let q = "aliveness-test";
    let failed = |why: String| ApiError::Unavailable(json!({ "status": "failed", "reason": why }));
    crate::mgmt::ops::declare_queue(shard, vhost, q, false, false, Default::default())
        .await
        .map_err(|e| failed(e.text))?;
    let props = crate::codec::BasicProperties::default();
    crate::mgmt::ops::publish(
        shard,
        vhost,
        "",
        q,
        &props,
        bytes::Bytes::from_static(b"test_message"),
    )
    .map_err(|e| failed(e.text))?;
    let got = crate::mgmt::ops::get(shard, vhost, q, 1, crate::mgmt::ops::GetMode::Ack)
        .await
        .map_err(|e| failed(e.text))?;
    if got.is_empty() {
        return Err(failed("the test message did not come back".into()));
    }
    Ok(ApiResponse::ok(json!({ "status": "ok" })))
}

fn alarms(ctx: &Context) -> ApiResult {
    let a = crate::alarm::local();
    let mut set = Vec::new();
    if a.memory() {
        set.push(json!({ "node": ctx.node, "resource": "memory" }));
    }
    if a.disk() {
        set.push(json!({ "node": ctx.node, "resource": "disk" }));
    }
    if set.is_empty() {
        Ok(ApiResponse::ok(json!({ "status": "ok" })))
    } else {
        Err(ApiError::Unavailable(json!({
            "status": "failed",
            "reason": "resource alarm(s) in effect in the cluster",
            "alarms": set,
        })))
    }
}

/// The listeners, as overview and the listener checks see them.
fn listeners(ctx: &Context) -> Vec<(u16, &'static str, std::net::IpAddr)> {
    let mut v = vec![(ctx.amqp.port(), "amqp", ctx.amqp.ip())];
    if let Some(a) = ctx.amqps {
        v.push((a.port(), "amqp/ssl", a.ip()));
    }
    if let Some(a) = ctx.management {
        v.push((a.port(), "http", a.ip()));
    }
    if let Some(a) = ctx.prometheus {
        v.push((a.port(), "http/prometheus", a.ip()));
    }
    if let Some(a) = ctx.management_tls {
        v.push((a.port(), "https", a.ip()));
    }
    if let Some(a) = ctx.prometheus_tls {
        v.push((a.port(), "https/prometheus", a.ip()));
    }
    v
}

fn port_listener(ctx: &Context, port: &str) -> ApiResult {
    let p: u16 = port
        .parse()
        .map_err(|_| ApiError::BadRequest("Invalid port".into()))?;
    let all = listeners(ctx);
    if all.iter().any(|(lp, _, _)| *lp == p) {
        Ok(ApiResponse::ok(json!({ "status": "ok", "port": p })))
    } else {
        let ports: Vec<u16> = all.iter().map(|(p, _, _)| *p).collect();
        Err(ApiError::Unavailable(json!({
            "status": "failed",
            "reason": "No active listener",
            "missing": p,
            "ports": ports,
        })))
    }
}

fn protocol_listener(ctx: &Context, proto: &str) -> ApiResult {
    let all = listeners(ctx);
    let wanted = match proto {
        "amqp091" | "amqp0-9-1" | "amqp" => "amqp",
        "amqps" | "amqp/ssl" => "amqp/ssl",
        "http" | "management" => "http",
        "prometheus" | "http/prometheus" => "http/prometheus",
        other => other,
    };
    if all.iter().any(|(_, p, _)| *p == wanted) {
        Ok(ApiResponse::ok(
            json!({ "status": "ok", "protocol": wanted }),
        ))
    } else {
        let protocols: Vec<&str> = all.iter().map(|(_, p, _)| *p).collect();
        Err(ApiError::Unavailable(json!({
            "status": "failed",
            "reason": "No active listener",
            "missing": proto,
            "protocols": protocols,
        })))
    }
}

fn listeners_json(ctx: &Context) -> Value {
    Value::Array(
        listeners(ctx)
            .into_iter()
            .map(|(port, protocol, ip)| {
                json!({
                    "node": ctx.node,
                    "protocol": protocol,
                    "ip_address": ip.to_string(),
                    "port": port,
                })
            })
            .collect(),
    )
}

fn node(ctx: &Context) -> Value {
    let (fd_used, fd_total) = crate::mgmt::status::file_descriptors();
    let alarms = crate::alarm::local();
    json!({
        "name": ctx.node,
        "type": "disc",
        "running": true,
        "being_drained": false,
        "uptime": ctx.started.elapsed().as_millis() as u64,
        "os_pid": std::process::id().to_string(),
        "mem_used": crate::mgmt::status::resident_memory(),
        "mem_limit": crate::alarm::memory_limit(),
        "mem_alarm": alarms.memory(),
        "mem_calculation_strategy": "rss",
        "disk_free": crate::mgmt::status::disk_free(&ctx.data_dir),
        "disk_free_limit": ctx.disk_free_limit,
        "disk_free_alarm": alarms.disk(),
        "fd_used": fd_used,
        "fd_total": fd_total,
        "sockets_used": fd_used,
        "sockets_total": fd_total,
        "proc_used": 0,
        "proc_total": 0,
        "processors": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "shards": ctx.shards,
        "partitions": [],
        "applications": [{ "name": "rabbit", "description": "Warren", "version": env!("CARGO_PKG_VERSION") }],
        "exchange_types": exchange_types(),
        "listeners": listeners_json(ctx),
    })
}

fn exchange_types() -> Value {
    json!([
        { "name": "direct", "description": "AMQP direct exchange, as per the AMQP specification", "enabled": true },
        { "name": "fanout", "description": "AMQP fanout exchange, as per the AMQP specification", "enabled": true },
        { "name": "headers", "description": "AMQP headers exchange, as per the AMQP specification", "enabled": true },
        { "name": "topic", "description": "AMQP topic exchange, as per the AMQP specification", "enabled": true },
    ])
}

/// `?X_age=600&X_incr=5`: the samples asked for.
fn age(req: &ApiRequest, prefix: &str) -> Option<(u64, u64)> {
    let n = |k: &str| {
        req.query(&format!("{prefix}_{k}"))
            .and_then(|v| v.parse().ok())
    };
    Some((n("age")?, n("incr")?))
}

async fn overview(
    shard: &Rc<Shard>,
    ctx: &Context,
    stats: &Sampler,
    caller: &Caller,
    req: &ApiRequest,
) -> ApiResult {
    // Monitors see the node's totals; other users their vhosts'.
    let vhosts = if caller.monitoring() {
        shard.with_topology(|t| t.vhost_names().into_iter().map(|v| v.to_string()).collect())
    } else {
        visible_vhosts(shard, caller)
    };
    let (mut queues, mut consumers, mut exchanges) = (0u64, 0u64, 0u64);
    let (mut ready, mut unacked) = (0u64, 0u64);
    for v in &vhosts {
        if let Ok(qs) = crate::mgmt::listings::queue_infos(shard, v).await {
            for (_, info) in &qs {
                queues += 1;
                if let Some(i) = info {
                    consumers += i.consumers.len() as u64;
                    ready += i.ready as u64;
                    unacked += i.unacked as u64;
                }
            }
        }
        exchanges += shard.with_topology(|t| t.vhost(v).map_or(0, |x| x.exchanges.len()) as u64);
    }
    let conns: Vec<_> = all_connections(shard)
        .await
        .into_iter()
        .filter(|c| !c.user.is_empty())
        .filter(|c| caller.monitoring() || c.user == caller.name)
        .collect();
    let channels: usize = conns.iter().map(|c| c.channels.len()).sum();
    // The sampled rates and history, with the lengths of now.
    let mut queue_totals = stats.queue_totals(age(req, "lengths"));
    queue_totals["messages"] = json!(ready + unacked);
    queue_totals["messages_ready"] = json!(ready);
    queue_totals["messages_unacknowledged"] = json!(unacked);
    Ok(ApiResponse::ok(json!({
        "management_version": API_VERSION,
        "rates_mode": "basic",
        "exchange_types": exchange_types(),
        "product_version": env!("CARGO_PKG_VERSION"),
        "product_name": "Warren",
        "rabbitmq_version": API_VERSION,
        "cluster_name": ctx.node,
        "erlang_version": "none",
        "erlang_full_version": "none (Warren is not an Erlang program)",
        "disable_stats": false,
        "enable_queue_totals": true,
        "message_stats": stats.overview_message_stats(age(req, "msg_rates")),
        "queue_totals": queue_totals,
        "object_totals": {
            "channels": channels,
            "connections": conns.len(),
            "consumers": consumers,
            "exchanges": exchanges,
            "queues": queues,
        },
        "statistics_db_event_queue": 0,
        "node": ctx.node,
        "listeners": listeners_json(ctx),
        "contexts": ctx.management.map(|a| vec![json!({
            "node": ctx.node,
            "description": "RabbitMQ Management",
            "path": "/",
            "port": a.port().to_string(),
        })]).unwrap_or_default(),
        "shards": ctx.shards,
    })))
}
