//! The event-driven standby: instead of trying the lock every poll
//! interval, a standby waits for it in the kernel on a thread of its own
//! (`LockBackend::wait_lock`, the `file` backend's `F_OFD_SETLKW`), so it
//! wins the instant the master unlocks and costs no CPU while it waits.
//!
//! The runner treats a running wait as the standby's sleep: the machine
//! asked to wait and try again; the wait ends when trying would succeed.
//! It is one outstanding lock call per resource like any other, never runs
//! on the async runtime, and is cancelled (for shutdown or whatever else
//! replaces it) by interrupting the thread, within a bound: a lock won
//! after the cancel is given up at once by the thread itself, so nothing
//! is held by nobody's will.

use crate::lock::{HeldLock, LockBackend, LockError, WaitStop};
use std::os::unix::thread::JoinHandleExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::oneshot;

pub type Outcome = Result<Option<Box<dyn HeldLock>>, LockError>;

pub struct Waiter {
    stop: Arc<WaitStop>,
    done: oneshot::Receiver<Outcome>,
    /// Kept (never detached) so the thread id stays valid for `stop`.
    thread: Option<std::thread::JoinHandle<()>>,
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
            stop,
            done,
            thread: Some(thread),
        })
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
        let thread = self.thread.take().expect("cancelled once");
        let deadline = tokio::time::Instant::now() + within;
        loop {
            self.stop.stop(thread.as_pthread_t());
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
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.stop.stop(t.as_pthread_t());
        }
    }
}
