//! Users, vhosts and permissions: who may do what.
//!
//! [`Access`] is part of every shard's topology replica (the leader decides
//! each change, every shard applies it), so a login and every permission
//! check run on the connection's own shard, against local state.
//! RabbitMQ's rules: a user has a password hash and tags; per vhost it has
//! three regular expressions (configure, write, read), unanchored, matched
//! against a resource's name; no entry means no access to the vhost.
#![warn(missing_docs)]

pub mod cert;
pub mod password;
pub mod permissions;

use ahash::AHashMap;
use std::sync::Arc;

pub use password::{HashAlgorithm, PasswordHash};
pub use permissions::{Permission, PermissionKind, PermissionSpec};

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The login name.
    pub name: String,
    /// Its password hash ([`PasswordHash::none`]: no password login).
    pub hash: PasswordHash,
    /// Tags as set (`administrator`, `monitoring`, `policymaker`,
    /// `management`, `impersonator`, or anything else), in order.
    pub tags: Vec<String>,
}

impl User {
    /// Whether the user has tag `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

/// One change to users or permissions (vhosts are topology changes).
#[derive(Debug, Clone)]
pub enum AccessChange {
    /// A user was added, or its password or tags changed.
    UserPut(User),
    /// A user was deleted, with its permissions.
    UserRemoved(String),
    /// A user's permissions in a vhost were set.
    PermissionSet {
        /// The user.
        user: String,
        /// The vhost.
        vhost: String,
        /// The three expressions.
        spec: PermissionSpec,
    },
    /// A user's permissions in a vhost were cleared.
    PermissionCleared {
        /// The user.
        user: String,
        /// The vhost.
        vhost: String,
    },
}

/// Why a login failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginError {
    /// No such user, wrong password, or a user without one.
    Refused,
    /// The user may only log in over loopback, and the peer is remote.
    LoopbackOnly,
}

/// The users and their permissions, as one shard's replica holds them.
#[derive(Debug, Default, Clone)]
pub struct Access {
    users: AHashMap<String, User>,
    /// By user, then vhost. Compiled once when applied; shared with the
    /// connections that cache them.
    permissions: AHashMap<String, AHashMap<String, Arc<Permission>>>,
}

impl Access {
    /// A user by name.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// Every user, sorted by name.
    pub fn users(&self) -> Vec<&User> {
        let mut v: Vec<&User> = self.users.values().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// `user`'s permissions in `vhost`, if any.
    pub fn permission(&self, user: &str, vhost: &str) -> Option<&Arc<Permission>> {
        self.permissions.get(user).and_then(|m| m.get(vhost))
    }

    /// Every (user, vhost, permission), sorted by user then vhost.
    pub fn all_permissions(&self) -> Vec<(&str, &str, &Arc<Permission>)> {
        let mut v: Vec<(&str, &str, &Arc<Permission>)> = self
            .permissions
            .iter()
            .flat_map(|(u, m)| m.iter().map(move |(vh, p)| (u.as_str(), vh.as_str(), p)))
            .collect();
        v.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        v
    }

    /// Checks a password login. `loopback_only`: whether this user may
    /// only log in from a loopback address (RabbitMQ's `loopback_users`);
    /// `remote`: whether the peer is not on loopback.
    pub fn login(
        &self,
        user: &str,
        password: &str,
        loopback_only: bool,
        remote: bool,
    ) -> Result<&User, LoginError> {
        let u = self.users.get(user).ok_or(LoginError::Refused)?;
        if u.hash.is_none() || !u.hash.verify(password) {
            return Err(LoginError::Refused);
        }
        if loopback_only && remote {
            return Err(LoginError::LoopbackOnly);
        }
        Ok(u)
    }

    /// Checks a login by certificate (EXTERNAL): the user must exist; no
    /// password is asked. The loopback rule applies as to a password login.
    pub fn login_external(
        &self,
        user: &str,
        loopback_only: bool,
        remote: bool,
    ) -> Result<&User, LoginError> {
        let u = self.users.get(user).ok_or(LoginError::Refused)?;
        if loopback_only && remote {
            return Err(LoginError::LoopbackOnly);
        }
        Ok(u)
    }

    /// Applies a change the leader decided. A permission whose expressions
    /// do not compile was refused by the leader, so never arrives here; if
    /// one did (a hand-edited log), it grants nothing.
    pub fn apply(&mut self, change: &AccessChange) {
        match change {
            AccessChange::UserPut(u) => {
                self.users.insert(u.name.clone(), u.clone());
            }
            AccessChange::UserRemoved(name) => {
                self.users.remove(name);
                self.permissions.remove(name);
            }
            AccessChange::PermissionSet { user, vhost, spec } => {
                let p = Permission::compile(spec).unwrap_or_else(|_| Permission::nothing());
                self.permissions
                    .entry(user.clone())
                    .or_default()
                    .insert(vhost.clone(), Arc::new(p));
            }
            AccessChange::PermissionCleared { user, vhost } => {
                if let Some(m) = self.permissions.get_mut(user) {
                    m.remove(vhost);
                    if m.is_empty() {
                        self.permissions.remove(user);
                    }
                }
            }
        }
    }

    /// A vhost was deleted: nobody has permissions in it any more.
    pub fn vhost_removed(&mut self, vhost: &str) {
        self.permissions.retain(|_, m| {
            m.remove(vhost);
            !m.is_empty()
        });
    }
}
