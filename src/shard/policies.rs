//! Policies on the queues a shard owns: a queue's settings are its
//! arguments resolved with the policy and operator policy that apply to
//! it, recomputed for the vhost's queues whenever one changes.
use std::rc::Rc;

use super::Shard;
use crate::codec::ShortStr;
use crate::queue::config::{Overflow, PolicyLimits};
use crate::queue::QueueConfig;
use crate::topology::policy::{Policy, PolicyTarget};
use crate::topology::QueueMeta;

fn limits(p: Option<&Policy>) -> PolicyLimits {
    let Some(p) = p else {
        return PolicyLimits::default();
    };
    let d = &p.parsed;
    let ms = |v: Option<u64>| v.map(|v| v.min(u32::MAX as u64) as u32);
    PolicyLimits {
        message_ttl: ms(d.message_ttl),
        expires: ms(d.expires),
        max_length: d.max_length,
        max_length_bytes: d.max_length_bytes,
        overflow: d.overflow.as_deref().and_then(Overflow::parse),
        dead_letter_exchange: d.dead_letter_exchange.as_deref().map(ShortStr::from),
        dead_letter_routing_key: d.dead_letter_routing_key.as_deref().map(ShortStr::from),
        delivery_limit: d.delivery_limit,
    }
}

impl Shard {
    /// What queue `meta` of `vhost` is asked to do: its arguments resolved
    /// with its policies' settings.
    pub(super) fn queue_config(&self, vhost: &str, meta: &QueueMeta) -> QueueConfig {
        let topo = self.topology.borrow();
        let (user, operator) = topo.effective_policies(vhost, &meta.name, PolicyTarget::Queue);
        QueueConfig::resolve(&meta.arguments, &limits(user), &limits(operator))
    }

    /// A policy or operator policy of `vhost` was set or cleared (this
    /// shard's replica has it already): the owned queues of the vhost take
    /// their new settings at once (a new length limit drops or refuses
    /// from now on, a new TTL applies to messages published from now on).
    pub(super) fn policies_changed(self: &Rc<Self>, vhost: &ShortStr) {
        let mut queues = self.queues.borrow_mut();
        for oq in queues.values_mut().filter(|oq| oq.vhost == *vhost) {
            let config = self.queue_config(vhost, &oq.meta);
            if &config != oq.queue.config() {
                oq.queue.set_config(config);
                oq.used();
                oq.touch(&self.dirty);
                self.rearm(oq);
            }
        }
        drop(queues);
        self.schedule_pump();
    }
}
