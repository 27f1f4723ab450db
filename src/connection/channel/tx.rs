//! The tx class: a transactional channel keeps its publishes and
//! settlements until tx.commit, and commit-ok waits until every queue has
//! the messages (as for publisher confirms).
use super::publish::TxPublish;
use super::{Conn, MethodResult};
use crate::codec::*;
use crate::error::AmqpError;
use crate::queue::Settle;

/// Publisher confirms or transactions: a channel is in at most one mode.
pub(crate) enum Mode {
    Plain,
    /// Publish progress lives in the handle's `PublishTracker`, where
    /// acceptances from other shards land.
    Confirm,
    Tx {
        publishes: Vec<TxPublish>,
        settles: Vec<TxSettle>,
    },
}

/// An ack, nack or reject held until commit.
pub(crate) struct TxSettle {
    pub tag: u64,
    pub multiple: bool,
    pub how: Settle,
}

impl Conn {
    pub(super) fn tx_select(&mut self, number: u16) -> MethodResult {
        let ch = self.channels.get_mut(&number).expect("channel checked");
        match ch.mode {
            Mode::Confirm => {
                return Err(AmqpError::precondition(
                    "cannot switch from confirm to tx mode",
                ))
            }
            Mode::Plain => {
                ch.mode = Mode::Tx {
                    publishes: Vec::new(),
                    settles: Vec::new(),
                };
                self.track_publishes(number, false);
            }
            Mode::Tx { .. } => {}
        }
        self.handle
            .send_method(number, &Method::TxSelectOk(TxSelectOk {}));
        Ok(())
    }

    pub(super) async fn tx_commit(&mut self, number: u16) -> MethodResult {
        let ch = self.channels.get_mut(&number).expect("channel checked");
        let Mode::Tx { publishes, settles } = &mut ch.mode else {
            return Err(AmqpError::precondition("channel is not transactional"));
        };
        let publishes = std::mem::take(publishes);
        let settles = std::mem::take(settles);
        for p in publishes {
            self.route_publish(number, p)?;
        }
        for s in settles {
            self.apply_settle(number, s.tag, s.multiple, s.how)?;
        }
        // commit-ok means every queue has the messages.
        self.shard.schedule_pump();
        loop {
            let accepted = self.handle.accepted.wait();
            if self.handle.publishes_settled(number) {
                break;
            }
            accepted.await;
        }
        if self.handle.take_refusals(number) {
            // Not every message is stored: the commit must not say so.
            return Err(AmqpError::internal(
                "tx.commit failed: a queue could not store a message (see the broker's log)",
            ));
        }
        self.handle
            .send_method(number, &Method::TxCommitOk(TxCommitOk {}));
        Ok(())
    }

    pub(super) fn tx_rollback(&mut self, number: u16) -> MethodResult {
        let ch = self.channels.get_mut(&number).expect("channel checked");
        let Mode::Tx { publishes, settles } = &mut ch.mode else {
            return Err(AmqpError::precondition("channel is not transactional"));
        };
        publishes.clear();
        settles.clear();
        self.handle
            .send_method(number, &Method::TxRollbackOk(TxRollbackOk {}));
        Ok(())
    }
}
