//! A standby's wait for the lock, off the async runtime, in one of two
//! ways:
//!
//! - **in the kernel** (`LockBackend::wait_lock`, the `file` backend's
//!   `F_OFD_SETLKW`), on a thread of its own: it wins the instant the
//!   master unlocks and costs no CPU while it waits;
//! - **by polling** (dlmfs, `standby = "poll"`, or deferring to preferred
//!   nodes), on the daemon's shared schedule (`poller`): tries again and
//!   again, and speaks to the runner only when something happened (won,
//!   failed). Where a timer on the runtime handed each try to the blocking
//!   pool and back (three wake-ups a try; benches/NOTES.md has the
//!   profile), tries due together now share one wake-up.
//!
//! The runner treats a running wait as the standby's sleep: the machine
//! asked to wait and try again; the wait ends when trying would succeed.
//! It is one outstanding lock call per resource like any other, never runs
//! on the async runtime, and is cancelled (for shutdown or whatever else
//! replaces it) within a bound: a lock won after the cancel is given up at
//! once, so nothing is held by nobody's will.
//!
//! A polling try that is stuck in the kernel (the DLM recovering a dead
//! node) must still show as stalled after `op_timeout`. Its thread cannot
//! say so while it is stuck, so it notes when each try started
//! ([`Call`]), and the runner looks at that on a coarse tick shared by all
//! resources (one wake-up of the runtime per tick, not one per try).

use super::attempt::{Attempt, Call, Outcome, next_look};
use super::poller;
use crate::lock::{HeldLock, LockBackend, LockError, WaitStop};
use std::os::unix::thread::JoinHandleExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::oneshot;

pub struct Waiter {
    done: oneshot::Receiver<Outcome>,
    how: How,
}

enum How {
    /// In the kernel, on a thread of its own.
    Kernel {
        stop: Arc<WaitStop>,
        /// Kept (never detached) so the thread id stays valid for `stop`.
        thread: Option<std::thread::JoinHandle<()>>,
    },
    /// On the shared polling schedule (`poller`).
    Poll {
        ticket: poller::Ticket,
        /// The try in progress, and after how long it counts as stalled.
        call: Arc<Call>,
        op_timeout: Duration,
        /// The lock's doorbell, watched while this polls (dlmfs:
        /// `LockBackend::watch_release`).
        _bell: Option<Box<dyn Send>>,
    },
}

/// How often a cancel re-sends its interrupt: one that lands before the
/// thread enters the blocking call is lost.
const KICK_EVERY: Duration = Duration::from_millis(20);

/// At most this many waiting threads per daemon; resources beyond poll.
/// A thread costs little (about 10 KiB resident) but each takes a pid, and
/// the default pid_max is 32768 for the whole machine.
pub const MAX_WAITERS: usize = 1024;
static WAITERS: AtomicUsize = AtomicUsize::new(0);

/// Why no waiter was started.
pub enum NoWaiter {
    /// `MAX_WAITERS` are waiting already: poll, quietly.
    Full,
    Failed(LockError),
}

impl Waiter {
    /// Waits in the kernel for `lock`, on a thread of its own.
    pub fn start(backend: Arc<dyn LockBackend>, lock: String) -> Result<Waiter, NoWaiter> {
        if WAITERS.fetch_add(1, Ordering::SeqCst) >= MAX_WAITERS {
            WAITERS.fetch_sub(1, Ordering::SeqCst);
            return Err(NoWaiter::Full);
        }
        let stop = Arc::new(WaitStop::new());
        let (tx, done) = oneshot::channel();
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("lock-wait".into())
            // It only sits in one system call (and the keeper hand-over).
            .stack_size(256 * 1024)
            .spawn(move || {
                let r = backend.wait_lock(&lock, &s);
                if let Err(Ok(Some(h))) = tx.send(r) {
                    // The runner is gone: give the lock up again.
                    let _ = h.release();
                }
                WAITERS.fetch_sub(1, Ordering::SeqCst);
            })
            .map_err(|e| {
                WAITERS.fetch_sub(1, Ordering::SeqCst);
                NoWaiter::Failed(LockError::Failed(format!(
                    "cannot start a thread to wait for the lock: {e}"
                )))
            })?;
        Ok(Waiter {
            done,
            how: How::Kernel {
                stop,
                thread: Some(thread),
            },
        })
    }

    /// Polls on the daemon's shared schedule (`poller`): `attempt` after
    /// `first`, then every `every` plus up to a tenth, until one does not
    /// find the lock busy; at once whenever `backend` says `lock` was let
    /// go (`LockBackend::watch_release`). A try that runs past `op_timeout`
    /// is reported by [`Waiter::stall_watch`].
    pub fn poll(
        attempt: Attempt,
        (first, every, op_timeout): (Duration, Duration, Duration),
        (backend, lock): (&dyn LockBackend, &str),
    ) -> Result<Waiter, NoWaiter> {
        let call = Arc::new(Call::default());
        let (tx, done) = oneshot::channel();
        let ticket = poller::add(attempt, first, every, call.clone(), tx)
            .map_err(|e| NoWaiter::Failed(LockError::Failed(e.to_string())))?;
        let _bell = backend.watch_release(lock, ticket.waker());
        Ok(Waiter {
            done,
            how: How::Poll {
                ticket,
                call,
                op_timeout,
                _bell,
            },
        })
    }

    /// A reload changed the poll interval: from the next try on.
    pub fn set_every(&self, every: Duration) {
        if let How::Poll { ticket, .. } = &self.how {
            ticket.set_every(every);
        }
    }

    /// Ready once a polling try has run past `op_timeout`; then the
    /// schedule reports how that try ends, even busy. Never, for a wait in
    /// the kernel. Cancel safe.
    pub fn stall_watch(&self) -> impl Future<Output = ()> + Send + 'static {
        let call = match &self.how {
            How::Poll {
                call, op_timeout, ..
            } => Some((call.clone(), *op_timeout)),
            How::Kernel { .. } => None,
        };
        async move {
            let Some((call, after)) = call else {
                return std::future::pending().await;
            };
            loop {
                tokio::time::sleep_until(next_look(after)).await;
                if call.judge(after) {
                    return;
                }
            }
        }
    }

    /// The outcome: the lock won, or why waiting failed. Cancel safe.
    pub async fn finished(&mut self) -> Outcome {
        match (&mut self.done).await {
            Ok(r) => r,
            Err(_) => Err(LockError::Failed("the lock wait thread died".into())),
        }
    }

    /// Stops the wait, within `within`. Returns a lock that was won before
    /// the stop took effect, for the caller to release; None otherwise.
    /// Past `within` (a thread stuck in a filesystem that ignores signals)
    /// the thread is left behind; it gives up whatever it wins later.
    pub async fn cancel(mut self, within: Duration) -> Option<Box<dyn HeldLock>> {
        let thread = match &mut self.how {
            How::Poll { ticket, .. } => {
                if !ticket.cancel() {
                    return None;
                }
                // Its try is running: whatever it wins is ours to give up.
                return match tokio::time::timeout(within, &mut self.done).await {
                    Ok(r) => r.ok().and_then(|r| r.ok().flatten()),
                    Err(_) => {
                        tracing::warn!(
                            "the lock try did not return within {within:?}; leaving it behind (it gives up whatever it wins)"
                        );
                        None
                    }
                };
            }
            How::Kernel { thread, .. } => thread.take().expect("cancelled once"),
        };
        let How::Kernel { stop, .. } = &self.how else {
            unreachable!("matched above")
        };
        let deadline = tokio::time::Instant::now() + within;
        loop {
            stop.stop(thread.as_pthread_t());
            match tokio::time::timeout(KICK_EVERY, &mut self.done).await {
                Ok(r) => {
                    // It has answered: joining takes no time.
                    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
                    return r.ok().and_then(|r| r.ok().flatten());
                }
                Err(_) if tokio::time::Instant::now() >= deadline => {
                    tracing::warn!(
                        "the lock wait did not stop within {within:?}; leaving it behind (it gives up whatever it wins)"
                    );
                    return None;
                }
                Err(_) => {}
            }
        }
    }
}

impl Drop for Waiter {
    /// Dropped without `cancel` (a runner that panicked): stop the thread
    /// anyway; it releases whatever it wins.
    /// (A polling ticket takes itself off the schedule when dropped.)
    fn drop(&mut self) {
        if let How::Kernel {
            stop,
            thread: Some(t),
        } = &mut self.how
        {
            stop.stop(t.as_pthread_t());
        }
    }
}

#[cfg(test)]
mod tests {
    //! The polling thread's protocol with the runner, on a stand-in try
    //! (the real lock calls are covered by tests/standby_wait.rs and the
    //! cluster tier's stalled-by-recovery scenario).
    use super::*;
    use crate::lock::TryLock;
    use std::sync::atomic::AtomicU64;
    use std::sync::mpsc;
    use std::time::Instant;

    struct Held;
    impl HeldLock for Held {
        fn release(self: Box<Self>) -> Result<(), LockError> {
            Ok(())
        }
    }

    const MS: Duration = Duration::from_millis(1);

    /// A backend with a doorbell the test rings by hand (`bell`); the
    /// tries are the test's own attempts, so nothing else is called.
    #[derive(Default)]
    struct Bell(std::sync::Mutex<Option<crate::lock::Wake>>);
    impl LockBackend for Bell {
        fn try_lock(&self, _: &str) -> Result<TryLock, LockError> {
            unreachable!()
        }
        fn clear_stale(&self, _: &str) -> Result<(), LockError> {
            unreachable!()
        }
        fn take_candidate(&self, _: &str) -> Result<Option<Box<dyn HeldLock>>, LockError> {
            unreachable!()
        }
        fn candidate_held(&self, _: &str) -> Result<bool, LockError> {
            unreachable!()
        }
        fn watch_release(&self, _: &str, wake: crate::lock::Wake) -> Option<Box<dyn Send>> {
            *self.0.lock().unwrap() = Some(wake);
            None
        }
    }

    fn polled(
        attempt: Attempt,
        first: Duration,
        every: Duration,
        op: Duration,
    ) -> Result<Waiter, NoWaiter> {
        Waiter::poll(attempt, (first, every, op), (&Bell::default(), "l"))
    }

    #[tokio::test]
    async fn a_doorbell_makes_the_next_try_now_not_at_its_time() {
        let tries = Arc::new(AtomicU64::new(0));
        let t = tries.clone();
        let (tried, mut first) = tokio::sync::mpsc::unbounded_channel();
        let attempt: Attempt = Box::new(move || {
            let _ = tried.send(());
            Ok(if t.fetch_add(1, Ordering::SeqCst) < 1 {
                TryLock::Busy
            } else {
                TryLock::Acquired(Box::new(Held))
            })
        });
        let bell = Bell::default();
        let hour = Duration::from_secs(3600);
        let mut w = Waiter::poll(attempt, (MS, hour, hour), (&bell, "l"))
            .ok()
            .unwrap();
        // The first try (busy) is made; the next would be an hour later.
        let made = tokio::time::timeout(Duration::from_secs(10), first.recv()).await;
        assert!(matches!(made, Ok(Some(()))), "no first try");
        let wake = bell.0.lock().unwrap().clone().expect("the bell is watched");
        wake();
        let r = tokio::time::timeout(Duration::from_secs(10), w.finished()).await;
        assert!(matches!(r, Ok(Ok(Some(_)))), "won at the ring");
        assert_eq!(tries.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn polls_until_the_lock_is_free_and_reports_only_then() {
        let tries = Arc::new(AtomicU64::new(0));
        let t = tries.clone();
        let attempt: Attempt = Box::new(move || {
            Ok(if t.fetch_add(1, Ordering::SeqCst) < 4 {
                TryLock::Busy
            } else {
                TryLock::Acquired(Box::new(Held))
            })
        });
        let mut w = polled(attempt, MS, 5 * MS, Duration::from_secs(60))
            .ok()
            .unwrap();
        let r = tokio::time::timeout(Duration::from_secs(10), w.finished()).await;
        assert!(matches!(r, Ok(Ok(Some(_)))), "won after four busy tries");
        assert_eq!(tries.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn a_try_past_op_timeout_is_seen_stalled_and_its_end_reported_even_busy() {
        let (go, gate) = mpsc::channel::<()>();
        let attempt: Attempt = Box::new(move || {
            // Stuck in the "kernel" until the test lets it return.
            let _ = gate.recv();
            Ok(TryLock::Busy)
        });
        let mut w = polled(attempt, MS, 5 * MS, 100 * MS).ok().unwrap();
        let stall = w.stall_watch();
        tokio::select! {
            () = stall => {}
            r = w.finished() => panic!("finished before stalling: {:?}", r.is_ok()),
            () = tokio::time::sleep(Duration::from_secs(10)) => panic!("never seen stalled"),
        }
        go.send(()).unwrap();
        let r = tokio::time::timeout(Duration::from_secs(10), w.finished()).await;
        assert!(
            matches!(r, Ok(Ok(None))),
            "the stalled try's busy end is reported"
        );
    }

    #[tokio::test]
    async fn a_stuck_try_holds_up_no_other_resource() {
        let (go, gate) = mpsc::channel::<()>();
        let stuck: Attempt = Box::new(move || {
            let _ = gate.recv();
            Ok(TryLock::Busy)
        });
        let a = polled(stuck, MS, 5 * MS, Duration::from_secs(60))
            .ok()
            .unwrap();
        let tries = Arc::new(AtomicU64::new(0));
        let t = tries.clone();
        let other: Attempt = Box::new(move || {
            Ok(if t.fetch_add(1, Ordering::SeqCst) < 20 {
                TryLock::Busy
            } else {
                TryLock::Acquired(Box::new(Held))
            })
        });
        let mut b = polled(other, 20 * MS, 5 * MS, Duration::from_secs(60))
            .ok()
            .unwrap();
        let r = tokio::time::timeout(Duration::from_secs(20), b.finished()).await;
        assert!(
            matches!(r, Ok(Ok(Some(_)))),
            "won while the other try is stuck"
        );
        go.send(()).unwrap();
        assert!(a.cancel(Duration::from_secs(10)).await.is_none());
    }

    #[tokio::test]
    async fn cancel_ends_a_sleeping_poller_at_once() {
        let attempt: Attempt = Box::new(|| Ok(TryLock::Busy));
        let w = polled(
            attempt,
            Duration::from_secs(3600),
            Duration::from_secs(3600),
            Duration::from_secs(60),
        )
        .ok()
        .unwrap();
        let t = Instant::now();
        assert!(w.cancel(Duration::from_secs(10)).await.is_none());
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "took {:?}",
            t.elapsed()
        );
    }
}
