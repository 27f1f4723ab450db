//! Counters of what the broker did, kept where the work happens and summed
//! only when someone asks.
//!
//! A leaf like `ids`: it imports nothing of the broker. Each shard holds
//! one [`ShardCounters`] (plain `Cell`s: a shard is one thread, so an
//! increment is a load and a store, no atomic, no lock); a queue keeps its
//! [`QueueCounters`] as plain fields of its own state; a connection keeps
//! [`ConnCounters`]; every vhost of a topology replica keeps an
//! [`ExchangeCounters`] per exchange. The management plane gathers each
//! shard's figures with one call per shard and adds them up
//! ([`ShardTotals::add`] and friends).
use std::cell::Cell;

/// One counter of one shard.
#[derive(Debug, Default, Clone)]
pub struct Counter(Cell<u64>);

impl Counter {
    /// Counts one.
    #[inline]
    pub fn inc(&self) {
        self.0.set(self.0.get().wrapping_add(1));
    }

    /// Counts `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.set(self.0.get().wrapping_add(n));
    }

    /// The count so far.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// Defines a struct of [`Counter`]s and its plain snapshot with the same
/// fields, which adds up across shards.
macro_rules! counters {
    (
        $(#[$cm:meta])* $cells:ident,
        $(#[$pm:meta])* $plain:ident {
            $($(#[$fm:meta])* $f:ident,)*
        }
    ) => {
        $(#[$cm])*
        #[derive(Debug, Default, Clone)]
        pub struct $cells {
            $($(#[$fm])* pub $f: Counter,)*
        }

        $(#[$pm])*
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct $plain {
            $($(#[$fm])* pub $f: u64,)*
        }

        impl $cells {
            /// The counts now.
            pub fn snapshot(&self) -> $plain {
                $plain { $($f: self.$f.get(),)* }
            }
        }

        impl $plain {
            /// Adds `other`'s counts to these.
            pub fn add(&mut self, other: &$plain) {
                $(self.$f = self.$f.wrapping_add(other.$f);)*
            }
        }
    };
}

counters! {
    /// What one shard counts (RabbitMQ's global counters, and Warren's own).
    ShardCounters,
    /// A shard's (or the sum of every shard's) [`ShardCounters`].
    ShardTotals {
        /// AMQP connections accepted.
        connections_opened,
        /// AMQP connections ended.
        connections_closed,
        /// channel.open-ok sent.
        channels_opened,
        /// Channels closed (either side, or with their connection).
        channels_closed,
        /// queue.declare-ok sent (redeclares and passive ones too).
        queues_declared,
        /// Queues created on this shard (it owns them).
        queues_created,
        /// Owned queues deleted.
        queues_deleted,
        /// Messages published by clients of this shard.
        received,
        /// Of those, published on a channel in confirm mode.
        received_confirm,
        /// Published messages that reached at least one queue.
        routed,
        /// Unroutable, not mandatory: dropped.
        unroutable_dropped,
        /// Unroutable and mandatory: basic.return.
        unroutable_returned,
        /// Publishes confirmed with basic.ack to their publisher.
        confirmed,
        /// basic.get that found the queue empty.
        get_empty,
        /// Copies of a message routed to a queue this shard owns.
        routed_local,
        /// Copies of a message routed to a queue of another shard.
        routed_remote,
        /// Mesh batches this shard received from other shards.
        mesh_batches_received,
    }
}

/// One queue's counts, plain fields of the queue's own state.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueueCounters {
    /// Messages enqueued.
    pub publish: u64,
    /// Delivered to consumers that acknowledge.
    pub deliver: u64,
    /// Delivered to no-ack consumers.
    pub deliver_no_ack: u64,
    /// Taken by basic.get to be acknowledged.
    pub get: u64,
    /// Taken by basic.get with no-ack.
    pub get_no_ack: u64,
    /// Acknowledged.
    pub ack: u64,
    /// Delivered or got again after a requeue.
    pub redeliver: u64,
}

impl QueueCounters {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &QueueCounters) {
        self.publish += other.publish;
        self.deliver += other.deliver;
        self.deliver_no_ack += other.deliver_no_ack;
        self.get += other.get;
        self.get_no_ack += other.get_no_ack;
        self.ack += other.ack;
        self.redeliver += other.redeliver;
    }

    /// Everything handed out: RabbitMQ's `deliver_get`.
    pub fn deliver_get(&self) -> u64 {
        self.deliver + self.deliver_no_ack + self.get + self.get_no_ack
    }
}

counters! {
    /// One connection's counts, kept in the connection's own state.
    ConnCounters,
    /// A snapshot of [`ConnCounters`], reported in listings.
    ConnTotals {
        /// Bytes read from the socket.
        recv_oct,
        /// Reads from the socket that returned data.
        recv_cnt,
        /// Bytes written to the socket.
        send_oct,
        /// Writes to the socket.
        send_cnt,
        /// Messages published on the connection.
        published,
        /// Of those, confirmed with basic.ack.
        confirmed,
    }
}

counters! {
    /// One exchange's counts on one shard (where its publishers are).
    ExchangeCounters,
    /// A snapshot of [`ExchangeCounters`].
    ExchangeTotals {
        /// Messages published to the exchange.
        publish_in,
        /// Of those, messages that reached at least one queue.
        publish_out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_add_up() {
        let c = ShardCounters::default();
        c.received.inc();
        c.received.add(2);
        c.routed_remote.inc();
        let mut sum = c.snapshot();
        sum.add(&c.snapshot());
        assert_eq!(sum.received, 6);
        assert_eq!(sum.routed_remote, 2);
        assert_eq!(sum.confirmed, 0);
        let mut q = QueueCounters {
            deliver: 1,
            get_no_ack: 2,
            ..Default::default()
        };
        q.add(&q.clone());
        assert_eq!(q.deliver_get(), 6);
    }
}
