//! Single-threaded async primitives for use inside one shard.
//!
//! Everything here is `!Send` on purpose: it never crosses an executor, so
//! it needs no atomics or locks.
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Wakes every task waiting on it. A notification with no waiter is kept
/// (as a flag) so a wakeup between "check" and "wait" is never lost.
#[derive(Default)]
pub struct Event {
    set: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl Event {
    pub fn notify(&self) {
        self.set.set(true);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Resolves once `notify` has been called since the last resolution.
    pub fn wait(&self) -> EventWait<'_> {
        EventWait { event: self }
    }
}

pub struct EventWait<'a> {
    event: &'a Event,
}

impl Future for EventWait<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.event.set.replace(false) {
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

pub struct OneshotSender<T>(Rc<RefCell<OneshotState<T>>>);
pub struct OneshotReceiver<T>(Rc<RefCell<OneshotState<T>>>);

pub fn oneshot<T>() -> (OneshotSender<T>, OneshotReceiver<T>) {
    let s = Rc::new(RefCell::new(OneshotState {
        value: None,
        waker: None,
        sender_gone: false,
    }));
    (OneshotSender(s.clone()), OneshotReceiver(s))
}

impl<T> OneshotSender<T> {
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
