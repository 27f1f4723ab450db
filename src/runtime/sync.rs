//! Single-threaded async primitives for use inside one shard.
//!
//! Everything here is `!Send` on purpose: it never crosses an executor, so
//! it needs no atomics or locks.
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Wakes every task waiting on it. A waiter resolves once `notify` has
/// been called after it was created (a generation count, so several waiters
/// all see one notification, and a notification between checking a
/// condition and polling the wait is not lost).
#[derive(Default)]
pub struct Event {
    generation: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl Event {
    /// Wakes every current waiter; later waits wait for the next notify.
    pub fn notify(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// A future that resolves at the next [`Event::notify`].
    pub fn wait(&self) -> EventWait<'_> {
        EventWait {
            event: self,
            seen: self.generation.get(),
        }
    }
}

/// A wait on an [`Event`], made by [`Event::wait`].
pub struct EventWait<'a> {
    event: &'a Event,
    seen: u64,
}

impl Future for EventWait<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.event.generation.get() != self.seen {
            Poll::Ready(())
        } else {
            let mut waiters = self.event.waiters.borrow_mut();
            if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                waiters.push(cx.waker().clone());
            }
            Poll::Pending
        }
    }
}

struct OneshotState<T> {
    value: Option<T>,
    waker: Option<Waker>,
    sender_gone: bool,
}

/// The sending half of a [`oneshot`]; dropping it unsent ends the wait.
pub struct OneshotSender<T>(Rc<RefCell<OneshotState<T>>>);
/// The receiving half of a [`oneshot`]: a future of the value.
pub struct OneshotReceiver<T>(Rc<RefCell<OneshotState<T>>>);

/// A single value handed from one task of this shard to another.
pub fn oneshot<T>() -> (OneshotSender<T>, OneshotReceiver<T>) {
    let s = Rc::new(RefCell::new(OneshotState {
        value: None,
        waker: None,
        sender_gone: false,
    }));
    (OneshotSender(s.clone()), OneshotReceiver(s))
}

impl<T> OneshotSender<T> {
    /// Hands the value over and wakes the receiver.
    pub fn send(self, v: T) {
        let waker = {
            let mut s = self.0.borrow_mut();
            s.value = Some(v);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Drop for OneshotSender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut s = self.0.borrow_mut();
            s.sender_gone = true;
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Future for OneshotReceiver<T> {
    /// `None` when the sender was dropped without sending.
    type Output = Option<T>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut s = self.0.borrow_mut();
        if let Some(v) = s.value.take() {
            Poll::Ready(Some(v))
        } else if s.sender_gone {
            Poll::Ready(None)
        } else {
            s.waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

/// Lets one task at a time through a section that awaits (the leader's
/// topology decisions), in the order they asked.
#[derive(Default)]
pub struct Serial {
    /// Tickets handed out and the one being served.
    next_ticket: Cell<u64>,
    serving: Cell<u64>,
    turn: Event,
}

/// The turn taken by [`Serial::enter`]; dropping it lets the next one in.
pub struct SerialTurn<'a>(&'a Serial);

impl Serial {
    /// Waits for every earlier caller to leave, then holds the section.
    pub async fn enter(&self) -> SerialTurn<'_> {
        let ticket = self.next_ticket.get();
        self.next_ticket.set(ticket + 1);
        loop {
            let turn = self.turn.wait();
            if self.serving.get() == ticket {
                return SerialTurn(self);
            }
            turn.await;
        }
    }
}

impl Drop for SerialTurn<'_> {
    fn drop(&mut self) {
        self.0.serving.set(self.0.serving.get() + 1);
        self.0.turn.notify();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future;

    #[test]
    fn every_waiter_sees_one_notification() {
        let ev = Event::default();
        let (mut a, mut b) = (Box::pin(ev.wait()), Box::pin(ev.wait()));
        assert!(future::block_on(future::poll_once(&mut a)).is_none());
        assert!(future::block_on(future::poll_once(&mut b)).is_none());
        ev.notify();
        assert!(future::block_on(future::poll_once(&mut a)).is_some());
        assert!(future::block_on(future::poll_once(&mut b)).is_some());
        // A wait created after the notification waits for the next one.
        let mut c = Box::pin(ev.wait());
        assert!(future::block_on(future::poll_once(&mut c)).is_none());
    }

    #[test]
    fn serial_admits_one_at_a_time_in_order() {
        let s = Serial::default();
        let mut first = Box::pin(s.enter());
        let turn1 = future::block_on(future::poll_once(&mut first)).expect("free at first");
        let mut second = Box::pin(s.enter());
        let mut third = Box::pin(s.enter());
        assert!(future::block_on(future::poll_once(&mut second)).is_none());
        assert!(future::block_on(future::poll_once(&mut third)).is_none());
        drop(turn1);
        assert!(
            future::block_on(future::poll_once(&mut third)).is_none(),
            "the third waits for the second"
        );
        let turn2 = future::block_on(future::poll_once(&mut second)).expect("second's turn");
        drop(turn2);
        assert!(future::block_on(future::poll_once(&mut third)).is_some());
    }

    #[test]
    fn oneshot_reports_a_dropped_sender() {
        let (tx, rx) = oneshot::<u32>();
        drop(tx);
        assert_eq!(future::block_on(rx), None);
        let (tx, rx) = oneshot::<u32>();
        tx.send(7);
        assert_eq!(future::block_on(rx), Some(7));
    }
}
