//! A standby's wait for the lock, on a thread of its own, in one of two
//! ways:
//!
//! - **in the kernel** (`LockBackend::wait_lock`, the `file` backend's
//!   `F_OFD_SETLKW`): it wins the instant the master unlocks and costs no
//!   CPU while it waits;
//! - **by polling** (dlmfs, or `standby = "poll"`): the thread sleeps its
//!   poll interval and tries, again and again, and speaks to the runner
//!   only when something happened (won, failed). One wake-up per attempt,
//!   where a timer on the runtime handing each try to the blocking pool
//!   and back cost three (benches/NOTES.md has the profile).
//!
//! The runner treats a running wait as the standby's sleep: the machine
//! asked to wait and try again; the wait ends when trying would succeed.
//! It is one outstanding lock call per resource like any other, never runs
//! on the async runtime, and is cancelled (for shutdown or whatever else
//! replaces it) by interrupting the thread, within a bound: a lock won
//! after the cancel is given up at once by the thread itself, so nothing
//! is held by nobody's will.
//!
//! A polling try that is stuck in the kernel (the DLM recovering a dead
//! node) must still show as stalled after `op_timeout`. The thread cannot
//! say so while it is stuck, so it notes when each try started
//! ([`Call`]), and the runner looks at that on a coarse tick shared by all
//! resources (one wake-up of the runtime per tick, not one per try).

use crate::lock::{HeldLock, LockBackend, LockError, TryLock, WaitStop};
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

pub type Outcome = Result<Option<Box<dyn HeldLock>>, LockError>;

pub struct Waiter {
    stop: Arc<WaitStop>,
    done: oneshot::Receiver<Outcome>,
    /// Kept (never detached) so the thread id stays valid for `stop`.
    thread: Option<std::thread::JoinHandle<()>>,
    /// Polling: the try in progress, and after how long it counts as
    /// stalled. None for a wait in the kernel, which may take forever.
    call: Option<(Arc<Call>, Duration)>,
    /// Polling: the interval between tries, in microseconds (a reload may
    /// change it).
    every: Arc<AtomicU64>,
}

/// One polling try's progress, shared by the thread and the runner.
#[derive(Default)]
struct Call(AtomicU64);

/// `Call` holds: no try running, or when the running one started
/// (microseconds since `EPOCH`, plus one), or that the runner has judged it
/// stalled, and then the thread reports whatever it returns.
const IDLE: u64 = 0;
const STALLED: u64 = u64::MAX;
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn micros_since_epoch() -> u64 {
    EPOCH.elapsed().as_micros() as u64 + 1
}

impl Call {
    fn begin(&self) {
        self.0.store(micros_since_epoch(), Ordering::SeqCst);
    }

    /// The try returned; true when the runner had judged it stalled.
    fn end(&self) -> bool {
        self.0.swap(IDLE, Ordering::SeqCst) == STALLED
    }

    /// The runner's look: true when the try running now started more than
    /// `after` ago; it is then marked stalled, once.
    fn judge(&self, after: Duration) -> bool {
        let started = self.0.load(Ordering::SeqCst);
        if started == IDLE || started == STALLED {
            return false;
        }
        let late = micros_since_epoch().saturating_sub(started) > after.as_micros() as u64;
        late && self
            .0
            .compare_exchange(started, STALLED, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }
}

/// One non-blocking attempt, as the runner would make it (with the
/// deferral to preferred nodes): called on the polling thread.
pub type Attempt = Box<dyn FnMut() -> Result<TryLock, LockError> + Send>;

/// Sleeps `d` on this thread unless stopped first; true when stopped.
/// `Waiter::cancel` unparks the thread (and its signal ends the park too).
fn nap(d: Duration, stop: &WaitStop) -> bool {
    let until = Instant::now() + d;
    loop {
        if stop.is_stopped() {
            return true;
        }
        let now = Instant::now();
        if now >= until {
            return false;
        }
        std::thread::park_timeout(until - now);
    }
}

/// The tick on which runners look for stalled tries: a twentieth of
/// `op_timeout` (25 ms to 5 s; a stall shows at most 5 % late), on a grid
/// common to the whole daemon so that all resources look at once.
fn next_look(op_timeout: Duration) -> tokio::time::Instant {
    let period = (op_timeout / 20).clamp(Duration::from_millis(25), Duration::from_secs(5));
    let n = EPOCH.elapsed().as_nanos() / period.as_nanos() + 1;
    let at = *EPOCH + Duration::from_nanos((n * period.as_nanos()) as u64);
    tokio::time::Instant::from_std(at)
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
    /// Waits in the kernel for `lock`.
    pub fn start(backend: Arc<dyn LockBackend>, lock: String) -> Result<Waiter, NoWaiter> {
        Self::spawn("lock-wait", None, move |stop, _, _| {
            backend.wait_lock(&lock, stop)
        })
    }

    /// Polls: `attempt` after `first`, then every `every` plus up to a
    /// tenth (so that nodes do not try in step), until one does not find
    /// the lock busy. A try that runs past `op_timeout` is reported by
    /// [`Waiter::stalled`].
    pub fn poll(
        mut attempt: Attempt,
        first: Duration,
        every: Duration,
        op_timeout: Duration,
    ) -> Result<Waiter, NoWaiter> {
        Self::spawn("lock-poll", Some(op_timeout), move |stop, call, every| {
            let mut wait = first;
            loop {
                if nap(wait, stop) {
                    return Ok(None);
                }
                call.begin();
                let r = attempt();
                let stalled = call.end();
                match r {
                    // Judged stalled: the runner waits for this answer.
                    Ok(TryLock::Busy) if stalled => return Ok(None),
                    Ok(TryLock::Busy) => {}
                    Ok(TryLock::Acquired(h)) => return Ok(Some(h)),
                    Err(e) => return Err(e),
                }
                let every = Duration::from_micros(every.load(Ordering::Relaxed));
                let jitter = (every.as_micros() / 10).max(1) as u64;
                wait = every + Duration::from_micros(rand::random_range(0..jitter));
            }
        })
        .inspect(|w| w.set_every(every))
    }

    /// Starts `body` on a thread of its own, counted in `MAX_WAITERS`.
    fn spawn(
        name: &str,
        stall_after: Option<Duration>,
        body: impl FnOnce(&WaitStop, &Call, &AtomicU64) -> Outcome + Send + 'static,
    ) -> Result<Waiter, NoWaiter> {
        if WAITERS.fetch_add(1, Ordering::SeqCst) >= MAX_WAITERS {
            WAITERS.fetch_sub(1, Ordering::SeqCst);
            return Err(NoWaiter::Full);
        }
        let stop = Arc::new(WaitStop::new());
        let call = Arc::new(Call::default());
        let every = Arc::new(AtomicU64::new(0));
        let (tx, done) = oneshot::channel();
        let (s, c, e) = (stop.clone(), call.clone(), every.clone());
        let thread = std::thread::Builder::new()
            .name(name.into())
            // It only sits in one system call at a time (and the keeper
            // hand-over).
            .stack_size(256 * 1024)
            .spawn(move || {
                let r = body(&s, &c, &e);
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
            call: stall_after.map(|d| (call, d)),
            every,
        })
    }

    /// A reload changed the poll interval: from the next try on.
    pub fn set_every(&self, every: Duration) {
        self.every
            .store(every.as_micros().max(1) as u64, Ordering::Relaxed);
    }

    /// Ready once a polling try has run past `op_timeout`; then the thread
    /// reports how that try ends, even busy. Never, for a wait in the
    /// kernel. Cancel safe.
    pub fn stall_watch(&self) -> impl Future<Output = ()> + Send + 'static {
        let call = self.call.clone();
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
        let thread = self.thread.take().expect("cancelled once");
        let deadline = tokio::time::Instant::now() + within;
        loop {
            self.stop.stop(thread.as_pthread_t());
            thread.thread().unpark();
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
            t.thread().unpark();
        }
    }
}

#[cfg(test)]
mod tests {
    //! The polling thread's protocol with the runner, on a stand-in try
    //! (the real lock calls are covered by tests/standby_wait.rs and the
    //! cluster tier's stalled-by-recovery scenario).
    use super::*;
    use std::sync::mpsc;

    struct Held;
    impl HeldLock for Held {
        fn release(self: Box<Self>) -> Result<(), LockError> {
            Ok(())
        }
    }

    const MS: Duration = Duration::from_millis(1);

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
        let mut w = Waiter::poll(attempt, MS, 5 * MS, Duration::from_secs(60))
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
        let mut w = Waiter::poll(attempt, MS, 5 * MS, 100 * MS).ok().unwrap();
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
    async fn cancel_ends_a_sleeping_poller_at_once() {
        let attempt: Attempt = Box::new(|| Ok(TryLock::Busy));
        let w = Waiter::poll(
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
