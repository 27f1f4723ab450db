//! Who is asking: HTTP Basic credentials checked against Warren's users,
//! and RabbitMQ's tag rules for what each user may see and change.
use base64::Engine;

use super::request::{refused, ApiError, ApiRequest};
use crate::access::LoginError;
use crate::shard::Shard;

/// A logged-in user of the API.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub tags: Vec<String>,
}

impl Caller {
    fn tagged(&self, any: &[&str]) -> bool {
        self.tags.iter().any(|t| any.contains(&t.as_str()))
    }

    /// May use the management API at all.
    pub fn management(&self) -> bool {
        self.tagged(&["management", "policymaker", "monitoring", "administrator"])
    }

    /// Sees every vhost, connection and channel, and the node.
    pub fn monitoring(&self) -> bool {
        self.tagged(&["monitoring", "administrator"])
    }

    /// Manages users, vhosts, permissions and definitions.
    pub fn administrator(&self) -> bool {
        self.tagged(&["administrator"])
    }

    /// Fails unless the caller is an administrator.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.administrator() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(refused::NOT_ADMIN))
        }
    }

    /// Fails unless the caller is a monitor (or administrator).
    pub fn require_monitor(&self) -> Result<(), ApiError> {
        if self.monitoring() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(refused::NOT_MONITOR))
        }
    }
}

/// Whether `caller` may reach `vhost`'s objects: administrators reach
/// every vhost; others need a permission entry in it (any), as RabbitMQ's
/// management plugin checks.
pub fn vhost_access(shard: &Shard, caller: &Caller, vhost: &str) -> bool {
    caller.administrator()
        || shard.with_topology(|t| t.access.permission(&caller.name, vhost).is_some())
}

/// Fails unless the vhost exists (404) and the caller may reach it (401).
pub fn require_vhost(shard: &Shard, caller: &Caller, vhost: &str) -> Result<(), ApiError> {
    if !shard.vhost_exists(vhost) {
        return Err(ApiError::NotFound);
    }
    if vhost_access(shard, caller, vhost) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(refused::NOT_VHOST))
    }
}

/// The vhosts `caller` may reach, in name order.
pub fn visible_vhosts(shard: &Shard, caller: &Caller) -> Vec<String> {
    shard.with_topology(|t| {
        t.vhost_names()
            .into_iter()
            .map(|v| v.to_string())
            .filter(|v| caller.administrator() || t.access.permission(&caller.name, v).is_some())
            .collect()
    })
}

/// Checks the request's credentials: a user with a management tag passes.
pub fn authenticate(shard: &Shard, req: &ApiRequest) -> Result<Caller, ApiError> {
    let Some(header) = req.authorization.as_deref() else {
        return Err(ApiError::NoCredentials);
    };
    let (user, pass) = basic_credentials(header).ok_or(ApiError::NoCredentials)?;
    let remote = req
        .peer
        .is_some_and(|p| !p.ip().to_canonical().is_loopback());
    let result = shard.with_topology(|t| {
        let loopback_only = shard.options().access.loopback_users.contains(&user);
        t.access
            .login(&user, &pass, loopback_only, remote)
            .map(|u| u.tags.clone())
    });
    let tags = match result {
        Ok(tags) => tags,
        Err(LoginError::Refused) => return Err(ApiError::LoginFailed("Login failed".into())),
        Err(LoginError::LoopbackOnly) => {
            return Err(ApiError::LoginFailed(
                "User can only log in via localhost".into(),
            ))
        }
    };
    let caller = Caller { name: user, tags };
    if caller.management() {
        Ok(caller)
    } else {
        Err(ApiError::Forbidden(refused::NOT_MANAGEMENT))
    }
}

/// `Basic base64(user:password)`.
fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_decoded() {
        // "guest:gu:est" — the password may hold a colon.
        assert_eq!(
            basic_credentials("Basic Z3Vlc3Q6Z3U6ZXN0"),
            Some(("guest".into(), "gu:est".into()))
        );
        assert_eq!(basic_credentials("Bearer abc"), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
    }

    #[test]
    fn tags_decide_the_level() {
        let c = |t: &[&str]| Caller {
            name: "u".into(),
            tags: t.iter().map(|s| s.to_string()).collect(),
        };
        assert!(!c(&[]).management());
        assert!(!c(&["impersonator"]).management());
        assert!(c(&["policymaker"]).management());
        assert!(!c(&["management"]).monitoring());
        assert!(c(&["monitoring"]).monitoring());
        assert!(c(&["administrator"]).monitoring());
        assert!(c(&["monitoring"]).require_admin().is_err());
        assert!(c(&["administrator"]).require_admin().is_ok());
    }
}
