//! Dead letters: what a queue dropped with a dead-letter exchange set
//! (rejected, expired, over its length or delivery limit) is rewritten as
//! RabbitMQ 3.10 does and published to that exchange from the queue's
//! shard, like any publish: the target queues may live on any shard.
use std::rc::Rc;
use std::sync::Arc;

use super::{PublishRef, Shard, ShardMsg};
use crate::codec::ShortStr;
use crate::ids::{ConnId, QueueRef};
use crate::queue::config::DeadLetterTo;
use crate::queue::dead_letter::{self, Death};
use crate::queue::{DeadLetter, Message};

/// A queue's dead letters, taken out of it for routing.
pub(super) struct DeadLetters {
    pub vhost: ShortStr,
    pub queue: ShortStr,
    pub to: DeadLetterTo,
    pub letters: Vec<DeadLetter>,
}

impl Shard {
    /// Routes dead letters. No publisher waits for them: they carry the
    /// operator's reference, whose refusals go nowhere.
    pub(super) fn route_dead_letters(self: &Rc<Self>, batch: DeadLetters) {
        let time = crate::runtime::unix_ms() / 1000;
        let from = PublishRef {
            ch: self.channel_ref(ConnId::OPERATOR, 0, 0),
            seq: None,
        };
        for d in batch.letters {
            let death = Death {
                reason: d.reason,
                queue: &batch.queue,
                exchange: &batch.to.exchange,
                routing_key: batch.to.routing_key.as_deref(),
                time,
            };
            let msg: Message = Arc::new(dead_letter::make(&d.msg, death));
            for t in self.dead_letter_targets(&batch.vhost, &msg, d.reason) {
                if t.owner == self.id {
                    let _ = self.enqueue(t.id, msg.clone(), None);
                } else {
                    let publish = ShardMsg::Publish {
                        queue: t.id,
                        msg: msg.clone(),
                        from,
                    };
                    self.mailbox.push(t.owner.index(), publish);
                }
            }
        }
        self.schedule_pump();
    }

    /// The queues a dead letter reaches, less those it would cycle
    /// through (RabbitMQ drops it there). A missing exchange reaches none.
    fn dead_letter_targets(
        &self,
        vhost: &str,
        msg: &Message,
        reason: crate::queue::DeathReason,
    ) -> smallvec::SmallVec<[QueueRef; 4]> {
        let mut targets = smallvec::SmallVec::new();
        let topo = self.topology.borrow();
        let Some(vh) = topo.vhost(vhost) else {
            return targets;
        };
        let mut names: Vec<ShortStr> = Vec::new();
        if msg.exchange.is_empty() {
            names.push(msg.routing_key.clone());
        } else {
            if !vh.exchanges.contains_key(&msg.exchange) {
                return targets;
            }
            let headers = crate::codec::BasicProperties::decode(&msg.raw_properties)
                .ok()
                .and_then(|p| p.headers);
            vh.routing.route(
                &msg.exchange,
                &msg.routing_key,
                headers.as_ref(),
                &mut names,
            );
        }
        for name in &names {
            if dead_letter::is_cycle(msg, reason, name) {
                tracing::warn!(queue = %name, vhost, "dead letter dropped: dead-letter queues cycle");
                continue;
            }
            if let Some(q) = vh.queues.get(name) {
                targets.push(q.queue_ref());
            }
        }
        targets
    }
}
