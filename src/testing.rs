//! Helpers for the unit tests.

use std::time::{Duration, Instant};

/// Polls `f` until it returns `Some`, for at most 5 s.
///
/// For "free once released" checks: another test thread forking a child
/// (any `Command::spawn` in the same test binary) gives that child a copy
/// of every open fd until its `exec` closes the close-on-exec ones, and an
/// OFD lock or flock lives as long as any copy of its fd. So a lock we
/// just closed can stay held for the few milliseconds of someone else's
/// fork. A daemon meets the same window and simply retries at its next
/// poll; a test waits it out instead of failing.
pub(crate) fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "not within 5 s: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}
