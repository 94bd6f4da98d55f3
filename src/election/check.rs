//! The master's periodic check that its lock still excludes everyone else
//! (`HeldLock::still_held`: the `file` backend's lock path must still name
//! the inode it holds), for every master of the daemon on one thread.
//!
//! Why one thread: run on the blocking pool, each check cost a hand-off to
//! a pool thread and back, and kept hundreds of pool threads alive on a
//! master of many resources. Here checks that fall due within a tenth of
//! their interval of each other run together, so a master of 1,000
//! resources wakes a few times a second and the checks themselves are a
//! `stat` each. A check stuck on a cluster filesystem delays the others; a
//! check never decides on its own when it cannot run (as before), and no
//! lock call runs here.

use crate::lock::StillHeld;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

struct Entry {
    check: StillHeld,
    every: Duration,
    due: Instant,
    lost: Option<oneshot::Sender<String>>,
}

#[derive(Default)]
struct Entries {
    map: HashMap<u64, Entry>,
    /// When the thread will look again by itself; None: only when woken.
    /// A new entry due later needs no wake-up (thousands of masters
    /// starting at once would otherwise wake it thousands of times).
    wake_at: Option<Instant>,
}

#[derive(Default)]
struct Shared {
    entries: Mutex<Entries>,
    changed: Condvar,
    next: AtomicU64,
}

fn shared() -> &'static Arc<Shared> {
    static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();
    SHARED.get_or_init(|| {
        let s = Arc::new(Shared::default());
        let t = s.clone();
        std::thread::Builder::new()
            .name("lock-check".into())
            .spawn(move || run(&t))
            .expect("cannot start the lock-check thread");
        s
    })
}

/// A registered check; dropping it stops the checks.
pub struct Watch {
    id: u64,
    lost: oneshot::Receiver<String>,
}

/// Runs `check` every `every` (the first after `every`) until the Watch is
/// dropped or the check fails.
pub fn watch(check: StillHeld, every: Duration) -> Watch {
    let s = shared();
    let id = s.next.fetch_add(1, Ordering::Relaxed);
    let (tx, lost) = oneshot::channel();
    let due = Instant::now() + every;
    let mut entries = s.entries.lock().unwrap();
    entries.map.insert(
        id,
        Entry {
            check,
            every,
            due,
            lost: Some(tx),
        },
    );
    if entries.wake_at.is_none_or(|w| due < w) {
        s.changed.notify_one();
    }
    Watch { id, lost }
}

impl Watch {
    /// Why the lock no longer excludes others, once a check says so.
    pub async fn lost(&mut self) -> String {
        match (&mut self.lost).await {
            Ok(why) => why,
            Err(_) => std::future::pending().await,
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        shared().entries.lock().unwrap().map.remove(&self.id);
    }
}

fn run(s: &Shared) {
    let mut entries = s.entries.lock().unwrap();
    loop {
        let now = Instant::now();
        let Some(first) = entries.map.values().map(|e| e.due).min() else {
            entries.wake_at = None;
            entries = s.changed.wait(entries).unwrap();
            continue;
        };
        if first > now {
            entries.wake_at = Some(first);
            entries = s.changed.wait_timeout(entries, first - now).unwrap().0;
            continue;
        }
        // Awake: entries added meanwhile are seen on the next round.
        entries.wake_at = Some(now);
        // Everything due now or within a tenth of its interval: one wake-up.
        let batch: Vec<(u64, StillHeld)> = entries
            .map
            .iter_mut()
            .filter(|(_, e)| e.due <= now + e.every / 10)
            .map(|(id, e)| {
                e.due = now + e.every;
                (*id, e.check.clone())
            })
            .collect();
        drop(entries);
        let failed: Vec<(u64, String)> = batch
            .into_iter()
            .filter_map(|(id, check)| check().err().map(|why| (id, why.to_string())))
            .collect();
        entries = s.entries.lock().unwrap();
        for (id, why) in failed {
            if let Some(tx) = entries.map.remove(&id).and_then(|mut e| e.lost.take()) {
                let _ = tx.send(why);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn a_failing_check_is_reported_and_a_dropped_watch_is_not_run_again() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let mut failing = watch(
            Arc::new(move || {
                if c.fetch_add(1, Ordering::SeqCst) >= 2 {
                    Err("gone".into())
                } else {
                    Ok(())
                }
            }),
            Duration::from_millis(10),
        );
        let why = tokio::time::timeout(Duration::from_secs(30), failing.lost())
            .await
            .expect("reported");
        assert_eq!(why, "gone");
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let ok = watch(Arc::new(|| Ok(())), Duration::from_millis(10));
        let id = ok.id;
        drop(ok);
        assert!(!shared().entries.lock().unwrap().map.contains_key(&id));
    }
}
