//! A dlmfs lock's doorbell: how a polling standby learns at once that the
//! master let go, instead of at its next try (docs/dlmfs.md, "The doorbell").
//!
//! dlmfs tells a *holder* that another node queued a conflicting request
//! (`poll()` on its fd turns readable with the BAST), but a standby must not
//! queue for the election lock itself: a blocking dlmfs open sleeps
//! unkillably until it is granted. So each election lock has a second lock,
//! its bell ([`name`]):
//!
//! - every polling standby holds the bell at PR (shared, one trylock) with
//!   its fd watched by one thread per daemon ([`watch`]);
//! - a master that let go of the election lock (closed *and* unlinked it)
//!   then rings: a blocking EX open of the bell ([`ring`]), the one kind
//!   of request that sends its PR holders a BAST. Each standby's watcher
//!   sees the fd readable, closes it (so its node can downconvert, which is
//!   what grants the ring) and asks for a try of the election lock now;
//!   the ringer closes and unlinks the bell, a real unlock, so that the
//!   standbys' PR trylocks get it again about a second later.
//!
//! The bell is a hint and nothing more: the election lock alone decides
//! who is master, and the standbys' polls go on as before, so a lost or
//! late ring costs one poll interval, never safety. The ringer is the only
//! part that waits in the kernel, on a thread of its own that nothing waits
//! for: it is granted once every holding node has closed its bell, which a
//! live daemon does within a moment, a dead node's recovery does for it, and
//! a hung daemon's watchdog kill does by closing its fds.

use super::Wake;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::PollTimeout;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::stat::Mode;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// A standby that heard the bell (or could not take it) opens it again
/// after this: by then its node has long downconverted (an open while the
/// BAST is pending would sleep until it has) and the ringer has unlinked.
const REOPEN_AFTER: Duration = Duration::from_secs(1);
/// The epoll event that means "look at the watches again".
const KICK: u64 = u64::MAX;
/// Ringing threads at most. A ring takes a moment (one DLM request, the
/// standbys' downconverts), so a daemon that stops with thousands of
/// resources rings them all through these few, queued; a ring stuck until
/// the DLM recovers a dead node holds up only its own thread.
const MAX_RINGERS: usize = 8;

/// The bell of election lock `lock`: a name of its own in the domain, under
/// the `@~` prefix no election or workload lock can have, short enough for
/// dlmfs whatever the lock's length (`fnv`: the same on every node and
/// every build).
pub fn name(lock: &str) -> String {
    format!("@~b{:016x}", super::fnv(lock.as_bytes()))
}

struct Watch {
    path: PathBuf,
    lock: String,
    wake: Wake,
    /// The bell at PR, registered with the epoll; None until (re)opened.
    file: Option<File>,
    open_at: Instant,
}

#[derive(Default)]
struct State {
    next: u64,
    watches: HashMap<u64, Watch>,
}

struct Shared {
    state: Mutex<State>,
    rings: Mutex<Rings>,
    epoll: Epoll,
    kick: EventFd,
}

#[derive(Default)]
struct Rings {
    /// Election locks whose bell this daemon is ringing or about to: not
    /// watched here meanwhile (a local PR open would wait for the ring and
    /// then keep the ringer's unlink out).
    ringing: HashSet<String>,
    /// Bells to ring (path, election lock), in order.
    queue: VecDeque<(PathBuf, String)>,
    /// Ringing threads alive.
    ringers: usize,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The daemon's one watcher, started with the first watch. None: no epoll
/// or thread could be had; standbys then only poll (said once).
fn shared() -> Option<&'static Arc<Shared>> {
    static SHARED: OnceLock<Option<Arc<Shared>>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            let start = || -> std::io::Result<Arc<Shared>> {
                let sh = Arc::new(Shared {
                    state: Mutex::default(),
                    rings: Mutex::default(),
                    epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
                    kick: EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?,
                });
                sh.epoll
                    .add(&sh.kick, EpollEvent::new(EpollFlags::EPOLLIN, KICK))?;
                let s = sh.clone();
                std::thread::Builder::new()
                    .name("lock-bells".into())
                    .stack_size(256 * 1024)
                    .spawn(move || listen(&s))?;
                Ok(sh)
            };
            start()
                .inspect_err(|e| {
                    tracing::warn!("cannot watch the dlmfs doorbells ({e}); standbys only poll")
                })
                .ok()
        })
        .as_ref()
}

/// Stops its watch when dropped: the bell's fd is closed (never blocks).
pub struct Guard {
    id: u64,
    shared: &'static Arc<Shared>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let w = locked(&self.shared.state).watches.remove(&self.id);
        if let Some(f) = w.and_then(|w| w.file) {
            let _ = self.shared.epoll.delete(&f);
        }
    }
}

/// Calls `wake` when the bell of election lock `lock` in domain directory
/// `dir` rings, until the guard is dropped. Never blocks: the watcher
/// thread opens the bell.
pub fn watch(dir: &Path, lock: &str, wake: Wake) -> Option<Guard> {
    let shared = shared()?;
    let mut st = locked(&shared.state);
    let id = st.next;
    st.next += 1;
    st.watches.insert(
        id,
        Watch {
            path: dir.join(name(lock)),
            lock: lock.to_string(),
            wake,
            file: None,
            open_at: Instant::now(),
        },
    );
    drop(st);
    let _ = shared.kick.write(1);
    Some(Guard { id, shared })
}

/// One PR trylock of a bell. None: busy (being rung, or torn down).
fn open_shared(path: &Path) -> Result<Option<File>, Errno> {
    let flags = OFlag::O_RDONLY | OFlag::O_CREAT | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    match nix::fcntl::open(path, flags, Mode::from_bits_truncate(0o600)) {
        Ok(fd) => Ok(Some(File::from(fd))),
        Err(Errno::ETXTBSY | Errno::EAGAIN) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The watcher thread: opens the bells that are due (outside the lock: an
/// open can stall while the DLM recovers), waits for one to ring or the
/// next to fall due, closes the rung ones and wakes their standbys.
fn listen(sh: &Shared) {
    let mut events = [EpollEvent::empty(); 64];
    loop {
        let now = Instant::now();
        let due: Vec<(u64, PathBuf, String)> = locked(&sh.state)
            .watches
            .iter()
            .filter(|(_, w)| w.file.is_none() && w.open_at <= now)
            .map(|(id, w)| (*id, w.path.clone(), w.lock.clone()))
            .collect();
        for (id, path, lock) in due {
            let r = if locked(&sh.rings).ringing.contains(&lock) {
                Ok(None)
            } else {
                open_shared(&path)
            };
            let mut st = locked(&sh.state);
            // A watch dropped meanwhile: the file closes here.
            let Some(w) = st.watches.get_mut(&id) else {
                continue;
            };
            match r {
                Ok(Some(f))
                    if sh
                        .epoll
                        .add(&f, EpollEvent::new(EpollFlags::EPOLLIN, id))
                        .is_ok() =>
                {
                    w.file = Some(f)
                }
                Ok(_) => w.open_at = Instant::now() + REOPEN_AFTER,
                Err(e) => {
                    tracing::debug!(lock = %w.lock, "cannot open the lock's doorbell: {e}");
                    w.open_at = Instant::now() + REOPEN_AFTER;
                }
            }
        }
        let next = locked(&sh.state)
            .watches
            .values()
            .filter(|w| w.file.is_none())
            .map(|w| w.open_at)
            .min();
        let timeout = match next {
            None => PollTimeout::NONE,
            Some(t) => {
                let ms = t.saturating_duration_since(Instant::now()).as_millis() + 1;
                PollTimeout::from(u16::try_from(ms).unwrap_or(u16::MAX))
            }
        };
        let n = match sh.epoll.wait(&mut events, timeout) {
            Ok(n) => n,
            Err(Errno::EINTR) => 0,
            Err(e) => {
                tracing::warn!("the dlmfs doorbells' epoll failed ({e}); standbys only poll");
                return;
            }
        };
        let mut rung = Vec::new();
        let mut st = locked(&sh.state);
        for ev in &events[..n] {
            if ev.data() == KICK {
                let _ = sh.kick.read();
                continue;
            }
            let Some(w) = st.watches.get_mut(&ev.data()) else {
                continue;
            };
            if let Some(f) = w.file.take() {
                // Closed at once: the ring is granted only when every
                // holder has let go.
                let _ = sh.epoll.delete(&f);
                w.open_at = Instant::now() + REOPEN_AFTER;
                rung.push(w.wake.clone());
            }
        }
        drop(st);
        for wake in rung {
            wake();
        }
    }
}

/// Rings the bell of election lock `lock` in domain directory `dir`, which
/// this node has just released (closed and unlinked), on a ringing thread
/// that nobody waits for (see the module's comment for its bound). At most
/// one ring per lock at a time; a ring that does not happen is a poll
/// interval lost, nothing more.
pub fn ring(dir: &Path, lock: &str) {
    let Some(sh) = shared() else { return };
    let mut rings = locked(&sh.rings);
    if !rings.ringing.insert(lock.to_string()) {
        return;
    }
    rings
        .queue
        .push_back((dir.join(name(lock)), lock.to_string()));
    if rings.ringers >= MAX_RINGERS {
        return;
    }
    let s = sh.clone();
    let spawned = std::thread::Builder::new()
        .name("lock-bell".into())
        .stack_size(128 * 1024)
        .spawn(move || ringer(&s));
    match spawned {
        Ok(_) => rings.ringers += 1,
        // Queued for a ringer alive, if any; else lost with the queue.
        Err(_) if rings.ringers == 0 => {
            rings.queue.clear();
            rings.ringing.clear();
        }
        Err(_) => {}
    }
}

/// A ringing thread: rings queued bells until there are none.
fn ringer(sh: &Shared) {
    loop {
        let (path, lock) = {
            let mut rings = locked(&sh.rings);
            let Some(next) = rings.queue.pop_front() else {
                rings.ringers -= 1;
                return;
            };
            next
        };
        // Blocking: a queued EX request is what sends the standbys' PR
        // holds a BAST.
        let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_CLOEXEC;
        match nix::fcntl::open(&path, flags, Mode::from_bits_truncate(0o600)) {
            Ok(fd) => {
                drop(fd);
                // The EX would stay cached here and refuse every standby's
                // PR trylock: unlink is the real unlock.
                if let Err(e) = nix::unistd::unlink(&path) {
                    tracing::debug!(lock, "cannot unlink the lock's doorbell: {e}");
                }
            }
            Err(e) => tracing::debug!(lock, "cannot ring the lock's doorbell: {e}"),
        }
        locked(&sh.rings).ringing.remove(&lock);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bell_is_a_short_reserved_name_the_same_everywhere() {
        // Pinned: every node, whatever its build, must ring the same bell.
        assert_eq!(name("web"), "@~b5ea0e11948721ef1");
        let long = "x".repeat(31);
        assert_eq!(name(&long).len(), 19);
        assert!(name(&long).starts_with("@~"));
        assert_ne!(name("web"), name("db"));
    }

    /// Off dlmfs a ring's open is granted at once, which leaves the pool
    /// to test: every ring queued is rung (its bell made and unlinked) on
    /// at most MAX_RINGERS threads, which end when the queue is empty.
    #[test]
    fn many_rings_are_queued_on_a_few_threads_and_all_rung() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..200 {
            ring(dir.path(), &format!("pool-test-{i}"));
        }
        let sh = shared().expect("a watcher");
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let rings = locked(&sh.rings);
            assert!(rings.ringers <= MAX_RINGERS, "{} ringers", rings.ringers);
            let left = rings
                .ringing
                .iter()
                .filter(|l| l.starts_with("pool-test-"))
                .count();
            if left == 0 {
                break;
            }
            drop(rings);
            assert!(Instant::now() < end, "{left} rings never rung");
            std::thread::sleep(Duration::from_millis(5));
        }
        let bells: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(bells.is_empty(), "bells left: {bells:?}");
    }
}
