//! The allocator's share of the daemon's resident memory (issue #11: a
//! master's RSS at 100 resources).
//!
//! Measured (heaptrack, 100 resources with one `vip` each): the takeover
//! burst peaks at about 12 MB of heap, 7 MB of it the 64 KiB read buffers
//! of the per-call rtnetlink connections (netlink-proto's fixed
//! `INITIAL_READER_CAPACITY`), while only 1.6 MB stays in use afterwards.
//! glibc keeps what was freed in the middle of its heaps, so the daemon
//! stayed at the burst's size for good. Two remedies, both glibc-only:
//!
//! - [`configure`]: at most 2 arenas (one per thread that allocates, up to
//!   8 per core, would each keep memory for the life of the daemon), and
//!   allocations of 64 KiB and more straight from mmap, so the netlink
//!   buffers go back to the kernel on free instead of fragmenting the heap
//!   (the price: a status board copy that large, at thousands of
//!   resources, is mmapped too; about 1 s more system time over the start
//!   of 4,000 resources, benches/NOTES.md);
//! - [`after_burst`]: a burst of actions ends with one `malloc_trim(0)`,
//!   which hands the free pages inside the heaps back. On a thread of its
//!   own, once no action ran for [`QUIET`]: no timer while nothing happens,
//!   and a burst of 1,000 takeovers costs one trim, not 1,000.

#[cfg(target_env = "gnu")]
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

/// How long no action must have run before the heap is trimmed.
pub const QUIET: Duration = Duration::from_secs(1);

/// Allocations this large or larger are mmapped (and unmapped on free).
#[cfg(target_env = "gnu")]
const MMAP_THRESHOLD: libc::c_int = 64 * 1024;

/// Allocator settings; call first thing in `main`, before any thread runs.
pub fn configure() {
    // SAFETY: mallopt only sets allocator parameters; no thread runs yet.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        // Also fixes the threshold: glibc would otherwise raise it to the
        // largest block freed so far, and the buffers would land in the heap.
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// Something that allocates in bursts (an action step) just finished: trim
/// the heap once things are quiet. Cheap (a lock and a notify); never blocks.
pub fn after_burst() {
    #[cfg(target_env = "gnu")]
    trimmer().poke();
}

#[cfg(target_env = "gnu")]
struct Trimmer {
    /// The generation of the last poke; the thread trims once it stays put
    /// for QUIET.
    poked: Mutex<u64>,
    cv: Condvar,
}

#[cfg(target_env = "gnu")]
impl Trimmer {
    fn poke(&self) {
        let mut g = self.poked.lock().unwrap_or_else(|e| e.into_inner());
        *g += 1;
        self.cv.notify_one();
    }

    fn run(&self) {
        let mut trimmed = 0;
        let mut g = self.poked.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            // Idle: sleep until the next burst, with no timer.
            while *g == trimmed {
                g = self.cv.wait(g).unwrap_or_else(|e| e.into_inner());
            }
            // A burst: wait until it has been quiet for QUIET.
            loop {
                let seen = *g;
                g = self
                    .cv
                    .wait_timeout_while(g, QUIET, |now| *now == seen)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                if *g == seen {
                    break;
                }
            }
            trimmed = *g;
            drop(g);
            // SAFETY: malloc_trim only returns free pages to the kernel.
            unsafe {
                libc::malloc_trim(0);
            }
            g = self.poked.lock().unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(target_env = "gnu")]
fn trimmer() -> &'static Trimmer {
    static T: OnceLock<&'static Trimmer> = OnceLock::new();
    T.get_or_init(|| {
        let t: &'static Trimmer = Box::leak(Box::new(Trimmer {
            poked: Mutex::new(0),
            cv: Condvar::new(),
        }));
        // A small stack: the loop and malloc_trim need little. If the
        // thread cannot start, memory is only not trimmed.
        let _ = std::thread::Builder::new()
            .name("heap-trim".into())
            .stack_size(64 * 1024)
            .spawn(|| t.run());
        t
    })
}
