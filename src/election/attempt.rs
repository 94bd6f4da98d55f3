//! One try at the lock made off the runtime, as the polling schedule
//! (`poller`) runs it for a standby's wait (`wait`): the attempt itself,
//! what the wait reports, and the try's progress (`Call`), from which a
//! runner sees a try stuck in the kernel as stalled.
//!
//! Its own file because both sides use it: the schedule makes tries and
//! notes their progress, the waiter hands tries over and judges stalls;
//! neither needs the other for these types.

use crate::lock::{HeldLock, LockError, TryLock};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What a standby's wait ends with: the lock won, None (only after a
/// cancel, which never lets a result through), or why it failed.
pub type Outcome = Result<Option<Box<dyn HeldLock>>, LockError>;

/// One polling try's progress, shared by the thread and the runner.
#[derive(Default)]
pub(super) struct Call(AtomicU64);

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
    pub(super) fn begin(&self) {
        self.0.store(micros_since_epoch(), Ordering::SeqCst);
    }

    /// The try returned; true when the runner had judged it stalled.
    pub(super) fn end(&self) -> bool {
        self.0.swap(IDLE, Ordering::SeqCst) == STALLED
    }

    /// The runner's look: true when the try running now started more than
    /// `after` ago; it is then marked stalled, once.
    pub(super) fn judge(&self, after: Duration) -> bool {
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

/// The tick on which runners look for stalled tries: a twentieth of
/// `op_timeout` (25 ms to 5 s; a stall shows at most 5 % late), on a grid
/// common to the whole daemon so that all resources look at once.
pub(super) fn next_look(op_timeout: Duration) -> tokio::time::Instant {
    let period = (op_timeout / 20).clamp(Duration::from_millis(25), Duration::from_secs(5));
    let n = EPOCH.elapsed().as_nanos() / period.as_nanos() + 1;
    let at = *EPOCH + Duration::from_nanos((n * period.as_nanos()) as u64);
    tokio::time::Instant::from_std(at)
}
