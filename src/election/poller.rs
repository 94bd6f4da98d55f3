//! The polling standbys' shared schedule: one thread makes every due try
//! of the whole daemon in turn, waking once per slot of the schedule rather
//! than once per try. A try costs its system calls (a few microseconds on
//! `file`); the wake-up, which is most of the cost on a virtual machine
//! (benches/NOTES.md), is shared by all the tries of its slot.
//!
//! The schedule's threads size themselves to the work. Usually one thread
//! is enough: it sleeps until the next slot, makes the due tries and sleeps
//! again. But a try can get stuck in the kernel (dlmfs while the DLM
//! recovers a dead node), and dlmfs tries of locks mastered elsewhere are
//! network round trips that one thread would make one after another. So a
//! monitor looks every half of the shortest poll interval (100 ms to 1 s:
//! twice a second at the default) whether tries are overdue by more than
//! that, and starts threads for them (up to 16 a look, `MAX_THREADS` in
//! all); a thread that finds nothing due while another waits for the next
//! slot ends. A stuck try thus delays the others by about one poll interval
//! at most; after a node's death the backlog is worked off in parallel, as
//! the blocking pool did; each resource has at most one try running, so at
//! most one thread per resource is ever stuck.
//!
//! Tries are put on a grid of a twentieth of their interval (5 ms to
//! 250 ms; the grid starts when the daemon did, so nodes differ), so that
//! tries falling due close together share a wake-up. At the default 1 s
//! poll a try is at most 50 ms later than its interval and jitter say.

use super::attempt::{Attempt, Call, Outcome};
use crate::lock::TryLock;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The monitor looks every half of the shortest poll interval, within
/// these bounds, and starts threads for tries overdue by more than that.
const LOOK_MIN: Duration = Duration::from_millis(100);
const LOOK_MAX: Duration = Duration::from_secs(1);
/// Threads started at one look, and in all (the blocking pool it replaces
/// had 512).
const MAX_START: usize = 16;
const MAX_THREADS: usize = 256;

/// One polling standby on the schedule.
struct Entry {
    /// None while its try runs.
    attempt: Option<Attempt>,
    every: Duration,
    /// Its place in `State::due` while waiting.
    due: Option<Instant>,
    call: Arc<Call>,
    done: oneshot::Sender<Outcome>,
    /// Cancelled while its try ran: report whatever the try found.
    cancelled: bool,
    /// Woken ([`Ticket::waker`]) while its try ran: that try may have come
    /// too early, so the next one is due at once.
    woken: bool,
}

#[derive(Default)]
struct State {
    next_id: u64,
    entries: HashMap<u64, Entry>,
    due: BTreeSet<(Instant, u64)>,
    /// Schedule threads alive (making a try, or waiting).
    threads: usize,
    /// One of them waits for the next slot; others with nothing to do end.
    timekeeper: bool,
    monitor_started: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the timekeeper: an earlier try, or the first entry.
    wake: Condvar,
    /// Wakes the monitor: the first entry after none.
    watch: Condvar,
}

static SHARED: LazyLock<Shared> = LazyLock::new(|| Shared {
    state: Mutex::new(State::default()),
    wake: Condvar::new(),
    watch: Condvar::new(),
});
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn lock() -> MutexGuard<'static, State> {
    SHARED.state.lock().unwrap_or_else(|e| e.into_inner())
}

/// `t` rounded up to the grid of `every`.
fn slot(t: Instant, every: Duration) -> Instant {
    let g = (every / 20).clamp(Duration::from_millis(5), Duration::from_millis(250));
    let since = t.saturating_duration_since(*EPOCH).as_nanos();
    let n = since.div_ceil(g.as_nanos());
    *EPOCH + Duration::from_nanos((n * g.as_nanos()) as u64)
}

/// `every` plus up to a tenth, so that nodes do not try in step.
fn jittered(every: Duration) -> Duration {
    let max = (every.as_micros() / 10).max(1) as u64;
    every + Duration::from_micros(rand::random_range(0..max))
}

/// A standby's place on the schedule, removed when dropped.
pub struct Ticket(u64);

/// Puts `attempt` on the schedule: first after `first`, then every
/// `every` plus jitter, until a try does not find the lock busy, or is
/// judged stalled through `call` (then its end is reported, even busy).
pub fn add(
    attempt: Attempt,
    first: Duration,
    every: Duration,
    call: Arc<Call>,
    done: oneshot::Sender<Outcome>,
) -> Result<Ticket, NoThread> {
    let mut st = lock();
    if !st.monitor_started {
        start_thread("lock-poll-watch", watch)?;
        st.monitor_started = true;
    }
    if st.threads == 0 {
        start_thread("lock-poll", run)?;
        st.threads += 1;
    }
    let id = st.next_id;
    st.next_id += 1;
    let at = slot(Instant::now() + first, every);
    st.entries.insert(
        id,
        Entry {
            attempt: Some(attempt),
            every,
            due: Some(at),
            call,
            done,
            cancelled: false,
            woken: false,
        },
    );
    let earliest = st.due.first().is_none_or(|&(t, _)| at < t);
    st.due.insert((at, id));
    if earliest {
        SHARED.wake.notify_all();
    }
    if st.entries.len() == 1 {
        SHARED.watch.notify_all();
    }
    Ok(Ticket(id))
}

impl Ticket {
    /// Makes the entry's next try due now, from any thread (a lock's
    /// doorbell rang, `lock::bell`): the one after the running try if one
    /// runs; nothing once the entry is gone (ids are never reused).
    pub fn waker(&self) -> crate::lock::Wake {
        let id = self.0;
        std::sync::Arc::new(move || try_now(id))
    }

    /// From the next try on.
    pub fn set_every(&self, every: Duration) {
        if let Some(e) = lock().entries.get_mut(&self.0) {
            e.every = every;
        }
    }

    /// Takes the entry off the schedule. True when an outcome is on its
    /// way anyway: its try is running (the thread reports what it finds;
    /// a lock won is the canceller's to give up), or has just ended.
    pub fn cancel(&self) -> bool {
        let mut st = lock();
        let Some(e) = st.entries.get_mut(&self.0) else {
            return true;
        };
        if e.attempt.is_none() {
            e.cancelled = true;
            return true;
        }
        if let Some(at) = e.due {
            st.due.remove(&(at, self.0));
        }
        st.entries.remove(&self.0);
        false
    }
}

fn try_now(id: u64) {
    let mut st = lock();
    let now = Instant::now();
    let Some(e) = st.entries.get_mut(&id) else {
        return;
    };
    if e.attempt.is_none() {
        e.woken = true;
        return;
    }
    let Some(at) = e.due.filter(|&at| at > now) else {
        return;
    };
    e.due = Some(now);
    st.due.remove(&(at, id));
    st.due.insert((now, id));
    SHARED.wake.notify_all();
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// A schedule thread could not be started (out of pids or memory).
#[derive(Debug, thiserror::Error)]
#[error("cannot start a thread to poll the locks: {0}")]
pub struct NoThread(#[source] std::io::Error);

fn start_thread(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), NoThread> {
    std::thread::Builder::new()
        .name(name.into())
        // Lock calls and the keeper hand-over only.
        .stack_size(256 * 1024)
        .spawn(f)
        .map(drop)
        .map_err(NoThread)
}

/// A schedule thread: makes due tries; waits for the next slot if no other
/// thread does, else ends.
fn run() {
    let mut st = lock();
    loop {
        let now = Instant::now();
        let first = st.due.first().copied();
        let Some((_, id)) = first.filter(|&(at, _)| at <= now) else {
            if st.timekeeper {
                st.threads -= 1;
                return;
            }
            st.timekeeper = true;
            st = match first {
                None => SHARED.wake.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some((at, _)) => {
                    SHARED
                        .wake
                        .wait_timeout(st, at - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
            st.timekeeper = false;
            continue;
        };
        st.due.pop_first();
        let Some(e) = st.entries.get_mut(&id) else {
            continue;
        };
        e.due = None;
        let (Some(mut attempt), call) = (e.attempt.take(), e.call.clone()) else {
            continue;
        };
        drop(st);
        call.begin();
        let r = attempt();
        let stalled = call.end();
        st = lock();
        let Some(e) = st.entries.get_mut(&id) else {
            unreachable!("an entry whose try runs stays until the try ends")
        };
        match r {
            Ok(TryLock::Busy) if !stalled && !e.cancelled => {
                e.attempt = Some(attempt);
                let at = if std::mem::take(&mut e.woken) {
                    Instant::now()
                } else {
                    slot(Instant::now() + jittered(e.every), e.every)
                };
                e.due = Some(at);
                let earliest = st.due.first().is_none_or(|&(t, _)| at < t);
                st.due.insert((at, id));
                if earliest && st.timekeeper {
                    SHARED.wake.notify_all();
                }
            }
            r => {
                let e = st.entries.remove(&id).expect("looked up above");
                drop(st);
                let r = r.map(|t| match t {
                    TryLock::Acquired(h) => Some(h),
                    TryLock::Busy => None,
                });
                // Nobody to take a lock won: give it up again.
                if let Err(Ok(Some(h))) = e.done.send(r) {
                    let _ = h.release();
                }
                st = lock();
            }
        }
    }
}

/// The monitor: starts threads for tries overdue by more than its period
/// (half the shortest poll interval, see the module's comment). Sleeps while
/// nothing is scheduled.
fn watch() {
    let mut st = lock();
    loop {
        while st.entries.is_empty() {
            st = SHARED.watch.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        let shortest = st.entries.values().map(|e| e.every).min();
        let look = (shortest.unwrap_or(LOOK_MAX) / 2).clamp(LOOK_MIN, LOOK_MAX);
        let late = Instant::now() - look;
        let overdue = st.due.iter().take_while(|&&(at, _)| at < late).count();
        let start = overdue
            .min(MAX_START)
            .min(MAX_THREADS.saturating_sub(st.threads));
        if start > 0 {
            tracing::debug!(
                "{overdue} lock tries overdue by over {look:?} ({} schedule threads): starting {start} more",
                st.threads
            );
        }
        for _ in 0..start {
            match start_thread("lock-poll", run) {
                Ok(()) => st.threads += 1,
                Err(e) => {
                    tracing::warn!("{e}");
                    break;
                }
            }
        }
        drop(st);
        std::thread::sleep(look);
        st = lock();
    }
}
