//! The operator's changes (`warren ctl`, definitions import), on the
//! leader like every topology change: decided by
//! [`crate::topology::admin`], written to the definitions log and synced,
//! applied on every shard, and only then reported done.
use futures_lite::future::BoxedLocal;
use std::rc::Rc;

use super::queues::DeleteOwned;
use super::{Call, Shard};
use crate::access::{PasswordHash, PermissionSpec};
use crate::error::{AmqpError, AmqpResult};
use crate::ids::ShardId;
use crate::topology::admin::{self, AdminError};
use crate::topology::policy::{PolicyKind, PolicySpec};
use crate::topology::TopologyChange;

/// One change an operator asks for.
#[derive(Debug, Clone)]
pub enum AdminOp {
    /// add_user.
    AddUser {
        /// Name.
        name: String,
        /// Its password's hash (or none).
        hash: PasswordHash,
        /// Tags (definitions import sets them at once).
        tags: Vec<String>,
    },
    /// change_password / clear_password.
    ChangePassword {
        /// Name.
        name: String,
        /// The new hash.
        hash: PasswordHash,
    },
    /// set_user_tags.
    SetTags {
        /// Name.
        name: String,
        /// The tags.
        tags: Vec<String>,
    },
    /// delete_user.
    DeleteUser(String),
    /// add_vhost.
    AddVhost(String),
    /// delete_vhost: its queues, messages, exchanges, bindings and
    /// permissions go, and its connections are closed.
    DeleteVhost(String),
    /// set_permissions.
    SetPermissions {
        /// User.
        user: String,
        /// Vhost.
        vhost: String,
        /// The expressions.
        spec: PermissionSpec,
    },
    /// clear_permissions.
    ClearPermissions {
        /// User.
        user: String,
        /// Vhost.
        vhost: String,
    },
    /// set_policy / set_operator_policy.
    SetPolicy {
        /// Vhost.
        vhost: String,
        /// User or operator policy.
        kind: PolicyKind,
        /// Name.
        name: String,
        /// Pattern, definition, priority, apply-to, as given.
        spec: PolicySpec,
    },
    /// clear_policy / clear_operator_policy.
    ClearPolicy {
        /// Vhost.
        vhost: String,
        /// User or operator policy.
        kind: PolicyKind,
        /// Name.
        name: String,
    },
    /// reset: back to a fresh broker (only while the app is stopped).
    Reset,
}

/// An [`AdminOp`] for the leader.
pub struct Admin(pub AdminOp);

fn failed(e: AmqpError) -> AdminError {
    AdminError::Failed(e.text)
}

impl Call for Admin {
    type Output = Result<(), AdminError>;
    fn run(self, shard: Rc<Shard>) -> BoxedLocal<AmqpResult<Result<(), AdminError>>> {
        Box::pin(async move {
            debug_assert_eq!(
                shard.id,
                ShardId::LEADER,
                "topology decisions are shard 0's"
            );
            let _turn = shard.leader.serial.enter().await;
            Ok(shard.admin(self.0).await)
        })
    }
}

impl Shard {
    async fn admin(self: &Rc<Self>, op: AdminOp) -> Result<(), AdminError> {
        let decided = {
            let topo = self.topology.borrow();
            match op {
                AdminOp::AddUser { name, hash, tags } => {
                    vec![admin::add_user(&topo, &name, hash, tags)?]
                }
                AdminOp::ChangePassword { name, hash } => {
                    vec![admin::change_password(&topo, &name, hash)?]
                }
                AdminOp::SetTags { name, tags } => vec![admin::set_tags(&topo, &name, tags)?],
                AdminOp::DeleteUser(name) => vec![admin::delete_user(&topo, &name)?],
                AdminOp::AddVhost(name) => vec![admin::add_vhost(&topo, &name)?],
                AdminOp::SetPermissions { user, vhost, spec } => {
                    vec![admin::set_permissions(&topo, &user, &vhost, spec)?]
                }
                AdminOp::ClearPermissions { user, vhost } => {
                    admin::clear_permissions(&topo, &user, &vhost)?
                        .into_iter()
                        .collect()
                }
                AdminOp::SetPolicy {
                    vhost,
                    kind,
                    name,
                    spec,
                } => vec![admin::set_policy(&topo, &vhost, kind, &name, &spec)?],
                AdminOp::ClearPolicy { vhost, kind, name } => {
                    vec![admin::clear_policy(&topo, &vhost, kind, &name)?]
                }
                AdminOp::DeleteVhost(name) => {
                    drop(topo);
                    return self.delete_vhost(&name).await;
                }
                AdminOp::Reset => {
                    drop(topo);
                    return self.reset().await;
                }
            }
        };
        for change in decided {
            self.broadcast(change).await.map_err(failed)?;
        }
        Ok(())
    }

    /// Deletes the vhost's queues at their owners (with their messages),
    /// then the vhost everywhere; each shard closes its connections in it.
    async fn delete_vhost(self: &Rc<Self>, name: &str) -> Result<(), AdminError> {
        let (queues, removal) = admin::delete_vhost(&self.topology.borrow(), name)?;
        for meta in queues {
            let delete = DeleteOwned {
                queue: meta.id,
                if_unused: false,
                if_empty: false,
                only_if_idle: false,
                only_if_expired: false,
            };
            // Gone from its owner either way; the vhost's removal takes
            // it out of every replica.
            let _ = self.call(meta.owner_shard, delete).await;
        }
        self.broadcast(removal).await.map_err(failed)
    }

    /// Every vhost (with its contents) and every user goes; the defaults
    /// come back as on a fresh broker.
    async fn reset(self: &Rc<Self>) -> Result<(), AdminError> {
        if self.app_running() {
            return Err(AdminError::AppRunning);
        }
        let vhosts = self.topology.borrow().vhost_names();
        for v in vhosts {
            self.delete_vhost(&v).await?;
        }
        let users: Vec<String> = self
            .topology
            .borrow()
            .access
            .users()
            .iter()
            .map(|u| u.name.clone())
            .collect();
        for u in users {
            self.broadcast(TopologyChange::Access(
                crate::access::AccessChange::UserRemoved(u),
            ))
            .await
            .map_err(failed)?;
        }
        let seed = admin::seed(&self.topology.borrow(), &self.options.access);
        for c in seed {
            self.broadcast(c).await.map_err(failed)?;
        }
        Ok(())
    }
}
