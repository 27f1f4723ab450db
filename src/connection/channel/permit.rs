//! Permission checks, as RabbitMQ's channel makes them: each operation
//! needs configure, write or read on a named queue or exchange (the
//! default exchange is checked as `amq.default`). A check that passed is
//! remembered by the channel (RabbitMQ keeps the last 12), so a publisher
//! pays one name comparison per message; as in RabbitMQ, a permission
//! changed meanwhile applies to what the channel has not used yet, and to
//! everything once the channel has been idle for a second or two (RabbitMQ
//! drops the cache when a channel process hibernates).
use smallvec::SmallVec;

use super::Conn;
use crate::access::PermissionKind;
use crate::codec::ShortStr;
use crate::error::AmqpError;
use crate::shard::Shard;

/// What a permission applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resource {
    Queue,
    Exchange,
}

impl Resource {
    fn as_str(self) -> &'static str {
        match self {
            Resource::Queue => "queue",
            Resource::Exchange => "exchange",
        }
    }
}

/// RabbitMQ's permission cache size per channel.
const CACHE_SIZE: usize = 12;

/// Checks that passed on one channel, most recent first.
#[derive(Debug, Default)]
pub(crate) struct PermitCache {
    passed: SmallVec<[(PermissionKind, Resource, ShortStr); 2]>,
    /// The shard's second (`Shard::seconds`) of the last check.
    used_at: u32,
}

impl PermitCache {
    /// Forgets everything after a second or more without checks (two
    /// ticks of a once-a-second clock: between 1 and 2 s idle).
    fn age(&mut self, now: u32) {
        if now.wrapping_sub(self.used_at) >= 2 {
            self.passed.clear();
        }
        self.used_at = now;
    }

    fn hit(&mut self, kind: PermissionKind, res: Resource, name: &str) -> bool {
        match self
            .passed
            .iter()
            .position(|(k, r, n)| *k == kind && *r == res && n == name)
        {
            Some(0) => true,
            Some(i) => {
                let e = self.passed.remove(i);
                self.passed.insert(0, e);
                true
            }
            None => false,
        }
    }

    fn remember(&mut self, kind: PermissionKind, res: Resource, name: ShortStr) {
        self.passed.truncate(CACHE_SIZE - 1);
        self.passed.insert(0, (kind, res, name));
    }
}

impl Conn {
    /// Whether this connection's user has `kind` on `res` `name` in its
    /// vhost; 403 on the channel otherwise.
    pub(super) fn permit(
        &mut self,
        number: u16,
        kind: PermissionKind,
        res: Resource,
        name: &ShortStr,
    ) -> Result<(), AmqpError> {
        let mut scratch = PermitCache::default();
        let cache = match self.channels.get_mut(&number) {
            Some(ch) => &mut ch.permits,
            None => &mut scratch,
        };
        check(&self.shard, &self.user, &self.vhost, cache, kind, res, name)
    }
}

/// The check itself, on a channel's cache (the publish path has the
/// channel in hand already).
pub(super) fn check(
    shard: &Shard,
    user: &str,
    vhost: &str,
    cache: &mut PermitCache,
    kind: PermissionKind,
    res: Resource,
    name: &ShortStr,
) -> Result<(), AmqpError> {
    // The hot path (a publisher's cached exchange) compares names and
    // clones nothing.
    let default_exchange = name.is_empty() && res == Resource::Exchange;
    let shown: &str = if default_exchange {
        "amq.default"
    } else {
        name
    };
    cache.age(shard.seconds());
    if cache.hit(kind, res, shown) {
        return Ok(());
    }
    if !shard.permits(user, vhost, kind, shown) {
        return Err(AmqpError::access_refused(format!(
            "access to {} '{shown}' in vhost '{vhost}' refused for user '{user}'",
            res.as_str(),
        )));
    }
    let name = if default_exchange {
        ShortStr::from_static("amq.default")
    } else {
        name.clone()
    };
    cache.remember(kind, res, name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_keeps_the_most_recent_twelve() {
        let mut c = PermitCache::default();
        let w = PermissionKind::Write;
        for i in 0..13 {
            c.remember(w, Resource::Exchange, format!("x{i}").into());
        }
        assert!(!c.hit(w, Resource::Exchange, "x0"), "the oldest went");
        assert!(c.hit(w, Resource::Exchange, "x1"));
        assert!(!c.hit(w, Resource::Queue, "x1"), "kinds of resource differ");
        assert!(!c.hit(PermissionKind::Read, Resource::Exchange, "x1"));
        assert_eq!(c.passed[0].2, "x1", "a hit moves to the front");
        c.age(c.used_at.wrapping_add(1));
        assert!(c.hit(w, Resource::Exchange, "x1"), "kept while busy");
        c.age(c.used_at.wrapping_add(2));
        assert!(!c.hit(w, Resource::Exchange, "x1"), "dropped after idling");
    }
}
