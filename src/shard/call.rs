//! Typed requests from one shard to another (or to itself): each request
//! type names its reply type, so a caller gets exactly what it asked for
//! or an error, never a union of replies to pick from.
//!
//! A call travels as [`ShardMsg::Call`] with the request boxed behind
//! [`AnyCall`]; the target runs it as a task and sends the reply back as
//! [`ShardMsg::Reply`]. Both legs go through [`Shard::send`], so a call to
//! this shard takes the same path without the mailbox. Calls are the
//! control path (declares, consume, get): the boxes are fine there.
use futures_lite::future::BoxedLocal;
use std::any::Any;
use std::rc::Rc;

use super::{Shard, ShardMsg};
use crate::error::{AmqpError, AmqpResult};
use crate::ids::ShardId;
use crate::runtime::sync::oneshot;

/// A request another shard runs on its own state.
pub trait Call: Send + 'static {
    /// What the caller gets back.
    type Output: Send + 'static;
    /// Runs the request on the target shard.
    fn run(self, shard: Rc<Shard>) -> BoxedLocal<AmqpResult<Self::Output>>;
}

/// A reply on its way back: the `AmqpResult<C::Output>` of the call's type.
pub(super) type AnyReply = Box<dyn Any + Send>;

/// A [`Call`] with its type erased, for the mailbox.
pub trait AnyCall: Send {
    /// Runs the call and boxes its result.
    fn run_any(self: Box<Self>, shard: Rc<Shard>) -> BoxedLocal<AnyReply>;
}

impl<C: Call> AnyCall for C {
    fn run_any(self: Box<Self>, shard: Rc<Shard>) -> BoxedLocal<AnyReply> {
        Box::pin(async move { Box::new((*self).run(shard).await) as AnyReply })
    }
}

impl Shard {
    /// Runs `op` on shard `to` and waits for its result. A shard that goes
    /// away without answering, or does not answer within the call timeout
    /// (RabbitMQ's `channel_operation_timeout`), gives 541: a stuck shard
    /// never hangs its callers. A late answer is dropped.
    pub async fn call<C: Call>(self: &Rc<Self>, to: ShardId, op: C) -> AmqpResult<C::Output> {
        let call = self.next_call.get();
        self.next_call.set(call + 1);
        let (tx, rx) = oneshot();
        self.pending_calls.borrow_mut().insert(call, tx);
        self.send(
            to,
            ShardMsg::Call {
                from: self.id,
                call,
                op: Box::new(op),
            },
        );
        self.schedule_pump();
        let limit = self.options.call_timeout;
        let reply = match crate::runtime::timeout(limit, rx).await {
            Some(Some(reply)) => reply,
            Some(None) => return Err(AmqpError::internal(format!("shard {to} did not answer"))),
            None => {
                self.pending_calls.borrow_mut().remove(&call);
                tracing::error!("shard {to} did not answer a call within {limit:?}");
                return Err(AmqpError::internal(format!(
                    "shard {to} did not answer within {limit:?}"
                )));
            }
        };
        match reply.downcast::<AmqpResult<C::Output>>() {
            Ok(result) => *result,
            // Unreachable: the reply was made by this call's own type.
            Err(_) => Err(AmqpError::internal("a shard answered with the wrong type")),
        }
    }

    /// Runs `op` on the leader, shard 0.
    pub async fn leader<C: Call>(self: &Rc<Self>, op: C) -> AmqpResult<C::Output> {
        self.call(ShardId::LEADER, op).await
    }

    /// Runs a call that arrived, as its own task, and answers `from`.
    pub(super) fn serve_call(self: &Rc<Self>, from: ShardId, call: u64, op: Box<dyn AnyCall>) {
        if self.options.stall_calls {
            // Failpoint: a shard that cannot answer (tests only).
            return;
        }
        let this = self.clone();
        crate::runtime::spawn(async move {
            let reply = op.run_any(this.clone()).await;
            this.send(from, ShardMsg::Reply { call, reply });
            this.schedule_pump();
        });
    }

    /// A reply to one of this shard's calls.
    pub(super) fn complete_call(&self, call: u64, reply: AnyReply) {
        let waiting = self.pending_calls.borrow_mut().remove(&call);
        if let Some(tx) = waiting {
            tx.send(reply);
        }
    }
}
