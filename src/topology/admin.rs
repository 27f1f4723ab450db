//! The operator's changes (users, vhosts, permissions) as pure decisions
//! on the leader's replica, with the failures rabbitmqctl reports. Like
//! [`super::decide`], each says what to broadcast; the leader does it.
use super::{Topology, TopologyChange};
use crate::access::{AccessChange, PasswordHash, Permission, PermissionSpec, User};
use crate::codec::ShortStr;
use crate::config::AccessConfig;
use crate::topology::policy::{self, PolicyKind, PolicySpec};
use crate::topology::QueueMeta;

/// Why an operator's change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminError {
    /// `add_user` of a user that exists.
    UserExists(String),
    /// A user that does not exist.
    NoSuchUser(String),
    /// `add_vhost` of a vhost that exists.
    VhostExists(String),
    /// A vhost that does not exist.
    NoSuchVhost(String),
    /// Bad input (an invalid regular expression, an empty name...).
    Invalid(String),
    /// `reset` while AMQP is being served (it needs `stop_app` first).
    AppRunning,
    /// The broker could not do it (a failed write): the text says why.
    Failed(String),
    /// A policy RabbitMQ's validation refuses: its whole text
    /// (`Validation failed\n\n...`).
    PolicyInvalid(String),
    /// clear_policy of a policy that does not exist.
    NoSuchPolicy(String),
}

fn user_change(u: User) -> TopologyChange {
    TopologyChange::Access(AccessChange::UserPut(u))
}

fn existing_user(topo: &Topology, name: &str) -> Result<User, AdminError> {
    topo.access
        .user(name)
        .cloned()
        .ok_or_else(|| AdminError::NoSuchUser(name.to_string()))
}

fn check_vhost(topo: &Topology, vhost: &str) -> Result<(), AdminError> {
    match topo.vhost(vhost) {
        Some(_) => Ok(()),
        None => Err(AdminError::NoSuchVhost(vhost.to_string())),
    }
}

/// add_user: a new user with `hash` and `tags` (`add_user` has none; a
/// definitions import sets them at once).
pub fn add_user(
    topo: &Topology,
    name: &str,
    hash: PasswordHash,
    tags: Vec<String>,
) -> Result<TopologyChange, AdminError> {
    if name.is_empty() {
        return Err(AdminError::Invalid("user name cannot be empty".into()));
    }
    if topo.access.user(name).is_some() {
        return Err(AdminError::UserExists(name.to_string()));
    }
    Ok(user_change(User {
        name: name.to_string(),
        hash,
        tags: distinct(tags),
    }))
}

/// Tags in order, each once.
fn distinct(tags: Vec<String>) -> Vec<String> {
    let mut seen = Vec::new();
    for t in tags {
        if !seen.contains(&t) {
            seen.push(t);
        }
    }
    seen
}

/// change_password (and clear_password with [`PasswordHash::none`]).
pub fn change_password(
    topo: &Topology,
    name: &str,
    hash: PasswordHash,
) -> Result<TopologyChange, AdminError> {
    let mut u = existing_user(topo, name)?;
    u.hash = hash;
    Ok(user_change(u))
}

/// set_user_tags: replaces the tags (none clears them).
pub fn set_tags(
    topo: &Topology,
    name: &str,
    tags: Vec<String>,
) -> Result<TopologyChange, AdminError> {
    let mut u = existing_user(topo, name)?;
    u.tags = distinct(tags);
    Ok(user_change(u))
}

/// delete_user, with its permissions.
pub fn delete_user(topo: &Topology, name: &str) -> Result<TopologyChange, AdminError> {
    existing_user(topo, name)?;
    Ok(TopologyChange::Access(AccessChange::UserRemoved(
        name.to_string(),
    )))
}

/// add_vhost.
pub fn add_vhost(topo: &Topology, name: &str) -> Result<TopologyChange, AdminError> {
    if name.is_empty() {
        return Err(AdminError::Invalid("vhost name cannot be empty".into()));
    }
    if name.len() > 255 {
        return Err(AdminError::Invalid(
            "vhost name is longer than 255 bytes".into(),
        ));
    }
    if topo.vhost(name).is_some() {
        return Err(AdminError::VhostExists(name.to_string()));
    }
    Ok(TopologyChange::VhostAdded(ShortStr::from(name)))
}

/// delete_vhost: the queues to delete from their owners first, then the
/// change that removes the rest.
pub fn delete_vhost(
    topo: &Topology,
    name: &str,
) -> Result<(Vec<QueueMeta>, TopologyChange), AdminError> {
    let v = topo
        .vhost(name)
        .ok_or_else(|| AdminError::NoSuchVhost(name.to_string()))?;
    let mut queues: Vec<QueueMeta> = v.queues.values().cloned().collect();
    queues.sort_by_key(|q| q.id);
    Ok((queues, TopologyChange::VhostRemoved(ShortStr::from(name))))
}

/// set_permissions: the expressions must compile.
pub fn set_permissions(
    topo: &Topology,
    user: &str,
    vhost: &str,
    spec: PermissionSpec,
) -> Result<TopologyChange, AdminError> {
    existing_user(topo, user)?;
    check_vhost(topo, vhost)?;
    Permission::compile(&spec).map_err(AdminError::Invalid)?;
    Ok(TopologyChange::Access(AccessChange::PermissionSet {
        user: user.to_string(),
        vhost: vhost.to_string(),
        spec,
    }))
}

/// clear_permissions: `None` when there were none (nothing to change).
pub fn clear_permissions(
    topo: &Topology,
    user: &str,
    vhost: &str,
) -> Result<Option<TopologyChange>, AdminError> {
    existing_user(topo, user)?;
    check_vhost(topo, vhost)?;
    Ok(topo.access.permission(user, vhost).map(|_| {
        TopologyChange::Access(AccessChange::PermissionCleared {
            user: user.to_string(),
            vhost: vhost.to_string(),
        })
    }))
}

/// set_policy / set_operator_policy: validated as RabbitMQ does, in a
/// vhost that exists.
pub fn set_policy(
    topo: &Topology,
    vhost: &str,
    kind: PolicyKind,
    name: &str,
    spec: &PolicySpec,
) -> Result<TopologyChange, AdminError> {
    check_vhost(topo, vhost)?;
    let p = policy::validate(kind, name, spec).map_err(AdminError::PolicyInvalid)?;
    Ok(TopologyChange::PolicySet(
        ShortStr::from(vhost),
        Box::new(p),
    ))
}

/// clear_policy / clear_operator_policy.
pub fn clear_policy(
    topo: &Topology,
    vhost: &str,
    kind: PolicyKind,
    name: &str,
) -> Result<TopologyChange, AdminError> {
    let v = topo
        .vhost(vhost)
        .ok_or_else(|| AdminError::NoSuchVhost(vhost.to_string()))?;
    if !v.policies_of(kind).contains_key(name) {
        return Err(AdminError::NoSuchPolicy(name.to_string()));
    }
    Ok(TopologyChange::PolicyCleared(
        ShortStr::from(vhost),
        kind,
        name.to_string(),
    ))
}

/// What a fresh broker (or one just reset) gets: the default vhost, the
/// default user with its tags and permissions in it, as far as they are
/// missing from `topo`.
pub fn seed(topo: &Topology, cfg: &AccessConfig) -> Vec<TopologyChange> {
    let mut out = Vec::new();
    if topo.vhost(&cfg.default_vhost).is_none() {
        out.push(TopologyChange::VhostAdded(ShortStr::from(
            cfg.default_vhost.as_str(),
        )));
    }
    if topo.access.user(&cfg.default_user).is_none() {
        out.push(user_change(User {
            name: cfg.default_user.clone(),
            hash: PasswordHash::new(&cfg.default_pass),
            tags: cfg.default_user_tags.clone(),
        }));
        let [configure, write, read] = cfg.default_permissions.clone();
        out.push(TopologyChange::Access(AccessChange::PermissionSet {
            user: cfg.default_user.clone(),
            vhost: cfg.default_vhost.clone(),
            spec: PermissionSpec {
                configure,
                write,
                read,
            },
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> PermissionSpec {
        PermissionSpec {
            configure: s.into(),
            write: s.into(),
            read: s.into(),
        }
    }

    #[test]
    fn users_vhosts_permissions() {
        let mut t = Topology::new();
        for c in seed(&t, &AccessConfig::default()) {
            t.apply(&c);
        }
        assert!(seed(&t, &AccessConfig::default()).is_empty(), "seeded once");
        let guest = t.access.user("guest").unwrap();
        assert!(guest.hash.verify("guest") && guest.has_tag("administrator"));
        assert!(t.access.permission("guest", "/").is_some());

        let c = add_user(&t, "admin", PasswordHash::new("pw"), Vec::new()).unwrap();
        t.apply(&c);
        assert_eq!(
            add_user(&t, "admin", PasswordHash::new("x"), Vec::new()).err(),
            Some(AdminError::UserExists("admin".into()))
        );
        assert_eq!(
            set_permissions(&t, "admin", "nope", spec(".*")).err(),
            Some(AdminError::NoSuchVhost("nope".into()))
        );
        assert!(matches!(
            set_permissions(&t, "admin", "/", spec("(")),
            Err(AdminError::Invalid(_))
        ));
        t.apply(&add_vhost(&t, "v1").unwrap());
        assert_eq!(
            add_vhost(&t, "v1").err(),
            Some(AdminError::VhostExists("v1".into()))
        );
        t.apply(&set_permissions(&t, "admin", "v1", spec(".*")).unwrap());
        assert!(t.access.permission("admin", "v1").is_some());
        let (queues, removal) = delete_vhost(&t, "v1").unwrap();
        assert!(queues.is_empty());
        t.apply(&removal);
        assert!(t.vhost("v1").is_none());
        assert!(
            t.access.permission("admin", "v1").is_none(),
            "permissions go with the vhost"
        );
        assert!(matches!(clear_permissions(&t, "admin", "/"), Ok(None)));
        t.apply(&delete_user(&t, "admin").unwrap());
        assert_eq!(
            delete_user(&t, "admin").err(),
            Some(AdminError::NoSuchUser("admin".into()))
        );
    }
}
