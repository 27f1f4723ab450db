//! A queue's consumers and the choice of who gets the next message, as
//! RabbitMQ 3.10's classic queues make it (`rabbit_queue_consumers`):
//!
//! - **Consumer priorities** (`x-priority` on basic.consume, default 0,
//!   negatives allowed): the consumers form a priority queue, highest
//!   first, in the order they came within a priority. A message goes to the
//!   first one with capacity (prefetch and transport credit), which then
//!   moves to the back of its priority: round-robin among equals. One found
//!   without capacity is *blocked*: out of the rotation, so lower
//!   priorities get messages only while every higher one is blocked; when
//!   it has capacity again it rejoins at the back of its priority.
//! - **Single active consumer** (`x-single-active-consumer` on the queue):
//!   only the active consumer gets messages, the others wait. The first
//!   consumer becomes active; a later one, whatever its priority, does not
//!   take over. When the active one goes (cancelled, or its channel
//!   closed), the first waiting one in priority order (highest priority,
//!   then the oldest) becomes active. Exclusive consumers are refused.
//!   After a basic.cancel the successor gets messages from the queue's
//!   next dispatch (a publish, a settlement, credit, a closed channel),
//!   not at once: RabbitMQ 3.10 does not run its queue on a cancel, so a
//!   client that cancels and then closes the channel (pika does both) has
//!   the requeued messages delivered first, in their order.
use std::collections::VecDeque;

use super::{ConsumeError, ConsumerSpec, TRANSPORT_WINDOW};
use crate::codec::{FieldTable, FieldValue};
use crate::ids::{ChannelRef, ConsumerId};

/// A consumer with what it holds.
#[derive(Debug)]
pub(super) struct Consumer {
    pub(super) spec: ConsumerSpec,
    /// Deliveries not yet acked (acking consumers only).
    pub(super) unacked: u32,
    /// Deliveries not yet written to the consumer's socket.
    pub(super) unsent: u32,
    /// Its `x-priority`.
    priority: i64,
    /// Found without capacity: out of the rotation until it has some again
    /// (RabbitMQ's blocked consumers).
    blocked: bool,
}

impl Consumer {
    fn has_capacity(&self) -> bool {
        self.unsent < TRANSPORT_WINDOW
            && (self.spec.no_ack || self.spec.prefetch == 0 || self.unacked < self.spec.prefetch)
    }
}

/// What a listing says of a consumer (RabbitMQ's `active` and
/// `activity_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerActivity {
    /// A queue without single active consumer: every consumer is active.
    Up,
    /// The single active consumer.
    SingleActive,
    /// Waiting to become the single active consumer.
    Waiting,
}

impl ConsumerActivity {
    /// RabbitMQ's `active`.
    pub fn is_active(self) -> bool {
        self != ConsumerActivity::Waiting
    }

    /// RabbitMQ's `activity_status`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsumerActivity::Up => "up",
            ConsumerActivity::SingleActive => "single_active",
            ConsumerActivity::Waiting => "waiting",
        }
    }
}

/// A consumer's priority: `x-priority` as any integer type (RabbitMQ
/// reads the 64-bit `L` as signed too), 0 without one.
fn priority_of(args: &FieldTable) -> i64 {
    match args.get("x-priority") {
        Some(FieldValue::U64(v)) => *v as i64,
        Some(v) => v.as_i64().unwrap_or(0),
        None => 0,
    }
}

/// basic.consume's arguments as RabbitMQ 3.10 checks them for a classic
/// queue (`rabbit_amqqueue:check_consume_arguments`): `x-priority` an
/// integer, `x-cancel-on-ha-failover` a bool, then no argument of another
/// queue type (`x-stream-offset`). The error is the text of its 406.
pub fn check_consume_arguments(args: &FieldTable, queue: &str, vhost: &str) -> Result<(), String> {
    let invalid = |key: &str, why: String| {
        format!("invalid arg '{key}' for queue '{queue}' in vhost '{vhost}': {why}")
    };
    if let Some(v) = args.get("x-priority") {
        if !matches!(v, FieldValue::U64(_)) && v.as_i64().is_none() {
            let why = format!(
                "\"expected integer, got {}\"",
                crate::routing::headers::type_name(v)
            );
            return Err(invalid("x-priority", why));
        }
    }
    if let Some(v) = args.get("x-cancel-on-ha-failover") {
        if !matches!(v, FieldValue::Bool(_)) {
            let why = format!(
                "{{unacceptable_type,{}}}",
                crate::routing::headers::type_name(v)
            );
            return Err(invalid("x-cancel-on-ha-failover", why));
        }
    }
    match args.get("x-stream-offset") {
        Some(_) => Err(format!(
            "invalid arg 'x-stream-offset' for queue '{queue}' in vhost '{vhost}' of queue type \
             rabbit_classic_queue"
        )),
        None => Ok(()),
    }
}

/// The consumers of one queue, highest priority first, each priority in
/// round-robin order.
#[derive(Debug, Default)]
pub(super) struct Consumers {
    list: VecDeque<Consumer>,
    /// How many in `list` are blocked.
    blocked: usize,
    /// The queue's `x-single-active-consumer`.
    single_active: bool,
    /// The single active consumer, when `single_active`.
    active: Option<ConsumerId>,
}

impl Consumers {
    /// Turns single active consumer on or off (once, as the queue is made).
    pub(super) fn set_single_active(&mut self, on: bool) {
        self.single_active = on;
        self.active = if on {
            self.list.front().map(|c| c.spec.id)
        } else {
            None
        };
    }

    pub(super) fn len(&self) -> usize {
        self.list.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub(super) fn specs(&self) -> impl Iterator<Item = &ConsumerSpec> {
        self.list.iter().map(|c| &c.spec)
    }

    pub(super) fn contains(&self, id: ConsumerId) -> bool {
        self.list.iter().any(|c| c.spec.id == id)
    }

    pub(super) fn get_mut(&mut self, id: ConsumerId) -> Option<&mut Consumer> {
        self.list.iter_mut().find(|c| c.spec.id == id)
    }

    /// The single active consumer (none when the queue has it off).
    pub(super) fn single_active(&self) -> Option<&ConsumerSpec> {
        let id = self.active?;
        self.list.iter().find(|c| c.spec.id == id).map(|c| &c.spec)
    }

    /// What a listing says of consumer `id`.
    pub(super) fn activity(&self, id: ConsumerId) -> ConsumerActivity {
        match (self.single_active, self.active) {
            (false, _) => ConsumerActivity::Up,
            (true, Some(a)) if a == id => ConsumerActivity::SingleActive,
            (true, _) => ConsumerActivity::Waiting,
        }
    }

    /// Where a consumer of priority `p` joins: after every consumer of
    /// priority `p` or higher.
    fn group_end(&self, p: i64) -> usize {
        self.list.partition_point(|c| c.priority >= p)
    }

    /// Moves the consumer at `pos` to the back of its priority; returns
    /// its new place.
    fn move_to_back(&mut self, pos: usize) -> usize {
        if pos == 0 && self.list.back().map(|c| c.priority) == Some(self.list[0].priority) {
            // One priority (the usual case): a rotation.
            self.list.rotate_left(1);
            return self.list.len() - 1;
        }
        let c = self.list.remove(pos).expect("in range");
        let at = self.group_end(c.priority);
        self.list.insert(at, c);
        at
    }

    /// Adds a consumer, last of its priority. Fails if an exclusive
    /// consumer holds the queue, if this one is exclusive and others
    /// consume, or if it is exclusive and the queue has a single active
    /// consumer. The first consumer of a single-active-consumer queue
    /// becomes the active one.
    pub(super) fn add(&mut self, spec: ConsumerSpec) -> Result<(), ConsumeError> {
        if self.single_active {
            if spec.exclusive {
                return Err(ConsumeError::ExclusiveInUse);
            }
        } else {
            let exclusive_held = self.list.iter().any(|c| c.spec.exclusive);
            if exclusive_held || (spec.exclusive && !self.list.is_empty()) {
                return Err(ConsumeError::ExclusiveInUse);
            }
        }
        if self.single_active && self.active.is_none() {
            self.active = Some(spec.id);
        }
        let priority = priority_of(&spec.arguments);
        let at = self.group_end(priority);
        self.list.insert(
            at,
            Consumer {
                spec,
                unacked: 0,
                unsent: 0,
                priority,
                blocked: false,
            },
        );
        Ok(())
    }

    fn remove_at(&mut self, pos: usize) -> Option<ConsumerSpec> {
        let c = self.list.remove(pos)?;
        self.blocked -= c.blocked as usize;
        Some(c.spec)
    }

    /// After the active consumer went: the first one left (highest
    /// priority, oldest) takes over.
    fn hand_over(&mut self, removed: &[ConsumerSpec]) {
        if self
            .active
            .is_some_and(|a| removed.iter().any(|s| s.id == a))
        {
            self.active = self.list.front().map(|c| c.spec.id);
        }
    }

    pub(super) fn remove(&mut self, id: ConsumerId) -> Option<ConsumerSpec> {
        let pos = self.list.iter().position(|c| c.spec.id == id)?;
        let spec = self.remove_at(pos)?;
        self.hand_over(std::slice::from_ref(&spec));
        Some(spec)
    }

    /// Removes the consumers of channel `ch`.
    pub(super) fn remove_channel(&mut self, ch: ChannelRef) -> Vec<ConsumerSpec> {
        let mut removed = Vec::new();
        while let Some(pos) = self.list.iter().position(|c| c.spec.channel == ch) {
            removed.extend(self.remove_at(pos));
        }
        self.hand_over(&removed);
        removed
    }

    pub(super) fn drain(&mut self) -> Vec<ConsumerSpec> {
        self.blocked = 0;
        self.active = None;
        self.list.drain(..).map(|c| c.spec).collect()
    }

    /// Blocked consumers that have capacity again rejoin, each at the back
    /// of its priority.
    fn unblock(&mut self) {
        let mut pos = 0;
        let mut seen = 0;
        let blocked = self.blocked;
        while seen < blocked && pos < self.list.len() {
            let c = &mut self.list[pos];
            if !c.blocked {
                pos += 1;
                continue;
            }
            seen += 1;
            if !c.has_capacity() {
                pos += 1;
                continue;
            }
            c.blocked = false;
            self.blocked -= 1;
            // What followed it moves up into `pos` (or it stays there,
            // unblocked now, and is passed over next).
            self.move_to_back(pos);
        }
    }

    /// The consumer that gets the next message, by its place for
    /// [`at`](Self::at): with single active consumer the active one if it
    /// has capacity; else the first unblocked one with capacity in
    /// priority order, which then moves to the back of its priority (those
    /// found without capacity on the way are blocked).
    pub(super) fn pick(&mut self) -> Option<usize> {
        if self.single_active {
            let id = self.active?;
            let pos = self.list.iter().position(|c| c.spec.id == id)?;
            return self.list[pos].has_capacity().then_some(pos);
        }
        if self.blocked > 0 {
            self.unblock();
        }
        if self.list.len() == 1 {
            // One consumer (the usual case): no rotation to keep.
            return self.list[0].has_capacity().then_some(0);
        }
        let mut pos = 0;
        while pos < self.list.len() {
            let c = &mut self.list[pos];
            if !c.blocked {
                if c.has_capacity() {
                    return Some(self.move_to_back(pos));
                }
                c.blocked = true;
                self.blocked += 1;
            }
            pos += 1;
        }
        None
    }

    /// The consumer [`pick`](Self::pick) chose.
    pub(super) fn at(&mut self, idx: usize) -> &mut Consumer {
        &mut self.list[idx]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::ShortStr;
    use crate::ids::{ConnId, ShardId};

    fn ch(n: u16) -> ChannelRef {
        ChannelRef {
            shard: ShardId(0),
            conn: ConnId(1),
            channel: n,
            epoch: 0,
        }
    }

    /// Consumer `id` on channel `channel` with prefetch 1 and `x-priority`
    /// `priority` (none when `None`).
    fn spec(id: u64, channel: u16, priority: Option<FieldValue>) -> ConsumerSpec {
        let mut arguments = FieldTable::new();
        if let Some(p) = priority {
            arguments.insert("x-priority", p);
        }
        ConsumerSpec {
            arguments,
            id: ConsumerId(id),
            channel: ch(channel),
            tag: ShortStr::from(format!("c{id}")),
            no_ack: false,
            exclusive: false,
            prefetch: 1,
        }
    }

    fn prio(id: u64, p: i32) -> ConsumerSpec {
        spec(id, id as u16, Some(FieldValue::I32(p)))
    }

    /// Picks one consumer and gives it a delivery (as dispatch does).
    fn deliver(cs: &mut Consumers) -> Option<u64> {
        let idx = cs.pick()?;
        let c = cs.at(idx);
        c.unacked += 1;
        Some(c.spec.id.0)
    }

    fn ack(cs: &mut Consumers, id: u64) {
        cs.get_mut(ConsumerId(id)).unwrap().unacked -= 1;
    }

    fn unlimited(mut s: ConsumerSpec) -> ConsumerSpec {
        s.prefetch = 0;
        s
    }

    #[test]
    fn highest_priority_first_round_robin_among_equals() {
        let mut cs = Consumers::default();
        cs.add(unlimited(prio(1, 0))).unwrap();
        cs.add(unlimited(prio(2, 5))).unwrap();
        cs.add(unlimited(prio(3, 5))).unwrap();
        cs.add(unlimited(prio(4, -2))).unwrap();
        let got: Vec<_> = (0..5).map(|_| deliver(&mut cs).unwrap()).collect();
        assert_eq!(got, vec![2, 3, 2, 3, 2]);
    }

    #[test]
    fn equal_priorities_round_robin_in_order_of_arrival() {
        let mut cs = Consumers::default();
        for id in 1..=3 {
            cs.add(unlimited(spec(id, 1, None))).unwrap();
        }
        let got: Vec<_> = (0..6).map(|_| deliver(&mut cs).unwrap()).collect();
        assert_eq!(got, vec![1, 2, 3, 1, 2, 3]);
    }

    #[test]
    fn lower_priorities_get_messages_only_while_higher_are_blocked() {
        let mut cs = Consumers::default();
        cs.add(prio(1, 0)).unwrap();
        cs.add(prio(2, 10)).unwrap();
        cs.add(prio(3, 10)).unwrap();
        cs.add(prio(4, -5)).unwrap();
        // Prefetch 1 each: both 10s, then 0, then -5, then nobody.
        let got: Vec<_> = std::iter::from_fn(|| deliver(&mut cs)).collect();
        assert_eq!(got, vec![2, 3, 1, 4]);
        // An ack frees the priority-10 consumer: it is first again.
        ack(&mut cs, 1);
        ack(&mut cs, 3);
        assert_eq!(deliver(&mut cs), Some(3));
        assert_eq!(deliver(&mut cs), Some(1));
        assert_eq!(deliver(&mut cs), None);
    }

    #[test]
    fn an_unblocked_consumer_rejoins_at_the_back_of_its_priority() {
        let mut cs = Consumers::default();
        cs.add(prio(1, 0)).unwrap();
        cs.add(unlimited(prio(2, 0))).unwrap();
        cs.add(unlimited(prio(3, 0))).unwrap();
        assert_eq!(deliver(&mut cs), Some(1));
        // 1 is full: it is passed over (blocked) while 2 and 3 take turns.
        let got: Vec<_> = (0..3).map(|_| deliver(&mut cs).unwrap()).collect();
        assert_eq!(got, vec![2, 3, 2]);
        // Freed, 1 comes back after 2 (the back of the rotation then),
        // not at the place it had.
        ack(&mut cs, 1);
        let got: Vec<_> = (0..3).map(|_| deliver(&mut cs).unwrap()).collect();
        assert_eq!(got, vec![3, 2, 1]);
    }

    #[test]
    fn any_integer_type_is_a_priority() {
        let mut cs = Consumers::default();
        cs.add(unlimited(spec(1, 1, Some(FieldValue::I8(1)))))
            .unwrap();
        cs.add(unlimited(spec(2, 1, Some(FieldValue::I64(1 << 40)))))
            .unwrap();
        cs.add(unlimited(spec(3, 1, Some(FieldValue::U16(3)))))
            .unwrap();
        assert_eq!(deliver(&mut cs), Some(2));
        assert_eq!(deliver(&mut cs), Some(2));
    }

    #[test]
    fn consume_arguments_are_checked_as_rabbitmq_does() {
        let check = |key: &str, v: FieldValue| {
            let mut t = FieldTable::new();
            t.insert(key, v);
            check_consume_arguments(&t, "q", "/")
        };
        for ok in [
            FieldValue::I8(-1),
            FieldValue::U8(1),
            FieldValue::I16(1),
            FieldValue::U16(1),
            FieldValue::I32(-7),
            FieldValue::U32(1),
            FieldValue::I64(i64::MIN),
            FieldValue::U64(u64::MAX),
        ] {
            assert_eq!(check("x-priority", ok), Ok(()));
        }
        for (bad, ty) in [
            (FieldValue::LongStr("x".into()), "longstr"),
            (FieldValue::Bool(true), "bool"),
            (FieldValue::F64(1.5), "double"),
            (FieldValue::Timestamp(1), "timestamp"),
        ] {
            let want = format!(
                "invalid arg 'x-priority' for queue 'q' in vhost '/': \"expected integer, got {ty}\""
            );
            assert_eq!(check("x-priority", bad), Err(want));
        }
        assert_eq!(
            check("x-cancel-on-ha-failover", FieldValue::Bool(true)),
            Ok(())
        );
        assert_eq!(
            check("x-cancel-on-ha-failover", FieldValue::LongStr("x".into())),
            Err(
                "invalid arg 'x-cancel-on-ha-failover' for queue 'q' in vhost '/': \
                 {unacceptable_type,longstr}"
                    .into()
            )
        );
        assert_eq!(
            check("x-stream-offset", FieldValue::LongStr("first".into())),
            Err(
                "invalid arg 'x-stream-offset' for queue 'q' in vhost '/' of queue type \
                 rabbit_classic_queue"
                    .into()
            )
        );
        assert_eq!(check("x-other", FieldValue::I32(1)), Ok(()));
        assert_eq!(
            check_consume_arguments(&FieldTable::new(), "q", "/"),
            Ok(())
        );
    }

    fn sac() -> Consumers {
        let mut cs = Consumers::default();
        cs.set_single_active(true);
        cs
    }

    #[test]
    fn single_active_consumer_only_the_first_gets_messages() {
        let mut cs = sac();
        cs.add(unlimited(prio(1, 0))).unwrap();
        // A later one does not take over, whatever its priority.
        cs.add(unlimited(prio(2, 9))).unwrap();
        let got: Vec<_> = (0..3).map(|_| deliver(&mut cs).unwrap()).collect();
        assert_eq!(got, vec![1, 1, 1]);
        assert_eq!(cs.activity(ConsumerId(1)), ConsumerActivity::SingleActive);
        assert_eq!(cs.activity(ConsumerId(2)), ConsumerActivity::Waiting);
        assert_eq!(cs.single_active().unwrap().id, ConsumerId(1));
    }

    #[test]
    fn single_active_consumer_blocked_means_nobody() {
        let mut cs = sac();
        cs.add(prio(1, 0)).unwrap();
        cs.add(prio(2, 0)).unwrap();
        assert_eq!(deliver(&mut cs), Some(1));
        assert_eq!(deliver(&mut cs), None);
        ack(&mut cs, 1);
        assert_eq!(deliver(&mut cs), Some(1));
    }

    #[test]
    fn single_active_consumer_hands_over_on_cancel_by_priority_then_age() {
        let mut cs = sac();
        cs.add(unlimited(prio(1, 0))).unwrap(); // A, active
        cs.add(unlimited(prio(2, 0))).unwrap(); // B
        cs.add(unlimited(prio(3, 5))).unwrap(); // C
        cs.add(unlimited(prio(4, 5))).unwrap(); // D
        cs.add(unlimited(prio(5, -1))).unwrap(); // E
        let mut order = Vec::new();
        for _ in 0..5 {
            let got = deliver(&mut cs).unwrap();
            order.push(got);
            cs.remove(ConsumerId(got));
        }
        // RabbitMQ 3.10: C, D (priority 5, oldest first), B, E.
        assert_eq!(order, vec![1, 3, 4, 2, 5]);
        assert_eq!(deliver(&mut cs), None);
        assert!(cs.single_active().is_none());
        // A new consumer on the empty queue becomes active.
        cs.add(unlimited(prio(6, 0))).unwrap();
        assert_eq!(deliver(&mut cs), Some(6));
    }

    #[test]
    fn single_active_consumer_cancelling_a_waiting_one_changes_nothing() {
        let mut cs = sac();
        cs.add(unlimited(prio(1, 0))).unwrap();
        cs.add(unlimited(prio(2, 0))).unwrap();
        cs.add(unlimited(prio(3, 0))).unwrap();
        cs.remove(ConsumerId(2));
        assert_eq!(deliver(&mut cs), Some(1));
        cs.remove(ConsumerId(1));
        assert_eq!(deliver(&mut cs), Some(3));
    }

    #[test]
    fn single_active_consumer_hands_over_when_its_channel_goes() {
        let mut cs = sac();
        cs.add(unlimited(spec(1, 1, None))).unwrap();
        cs.add(unlimited(spec(2, 1, None))).unwrap();
        cs.add(unlimited(spec(3, 2, None))).unwrap();
        cs.add(unlimited(spec(4, 3, None))).unwrap();
        assert_eq!(deliver(&mut cs), Some(1));
        let gone = cs.remove_channel(ch(1));
        assert_eq!(gone.len(), 2);
        assert_eq!(cs.activity(ConsumerId(3)), ConsumerActivity::SingleActive);
        assert_eq!(deliver(&mut cs), Some(3));
        // A waiting consumer's channel going changes nothing.
        cs.remove_channel(ch(3));
        assert_eq!(deliver(&mut cs), Some(3));
        cs.remove_channel(ch(2));
        assert_eq!(deliver(&mut cs), None);
        assert!(cs.is_empty());
    }

    #[test]
    fn single_active_consumer_refuses_exclusive_consumers() {
        let mut cs = sac();
        let mut ex = spec(1, 1, None);
        ex.exclusive = true;
        assert_eq!(cs.add(ex), Err(ConsumeError::ExclusiveInUse));
        assert!(cs.is_empty());
        cs.add(spec(2, 1, None)).unwrap();
        assert_eq!(cs.activity(ConsumerId(2)), ConsumerActivity::SingleActive);
    }

    #[test]
    fn without_single_active_consumer_all_are_up() {
        let mut cs = Consumers::default();
        cs.add(spec(1, 1, None)).unwrap();
        assert_eq!(cs.activity(ConsumerId(1)), ConsumerActivity::Up);
        assert!(cs.single_active().is_none());
        assert!(ConsumerActivity::Up.is_active());
        assert!(!ConsumerActivity::Waiting.is_active());
        assert_eq!(ConsumerActivity::SingleActive.as_str(), "single_active");
    }
}
