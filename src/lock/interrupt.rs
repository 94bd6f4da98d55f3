//! Stopping a thread that sleeps in a blocking lock call (`F_OFD_SETLKW`).
//!
//! Such a call ends only when the lock is granted or a signal arrives, so
//! [`WaitStop::stop`] raises a flag and sends the waiting thread a signal
//! whose handler does nothing, installed without `SA_RESTART`: the call
//! returns `EINTR`, the thread sees the flag and gives up. A signal that
//! lands just before the thread enters the call is lost, so whoever stops
//! it kicks again until the thread has answered (see `election::wait`).

use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

/// A real-time signal nothing else in the daemon uses (glibc keeps the
/// first two for itself and counts from after them).
fn wake_signal() -> libc::c_int {
    libc::SIGRTMIN() + 5
}

extern "C" fn on_wake(_: libc::c_int) {}

fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: sigaction with a handler that does nothing (async-signal
        // safe); no SA_RESTART, so blocking calls return EINTR.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_wake as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = 0;
            libc::sigaction(wake_signal(), &sa, std::ptr::null_mut());
        }
    });
}

#[derive(Default)]
pub struct WaitStop {
    stopped: AtomicBool,
}

impl WaitStop {
    pub fn new() -> Self {
        install();
        WaitStop::default()
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Raises the flag and interrupts `thread`'s blocking call, if any. The
    /// thread must not have been joined or detached yet (its handle kept).
    pub fn stop(&self, thread: libc::pthread_t) {
        self.stopped.store(true, Ordering::SeqCst);
        // SAFETY: `thread` is alive or exited but not joined (the caller
        // keeps its JoinHandle), so the id is valid.
        unsafe {
            libc::pthread_kill(thread, wake_signal());
        }
    }
}
