//! The node-local half of a workload lock ([`try_local`]), and
//! [`bounded`], which every cluster lock call of the backends runs under:
//! what `take` and `dlm` both build on.

use super::error::WorkloadError;
use super::names::{LOCAL_DIR, local_path};
use crate::lock::twin;
use nix::errno::Errno;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

/// Step 1: the node-local lock; None if a local process holds it.
///
/// An OFD lock on `RUNTIME_DIR/workload/NAME.lock` taken like a `file`
/// cluster lock (`lock::twin`: a hidden twin name, a /proc/locks scan
/// before a fresh inode), so deleting the file or the whole runtime dir
/// under a running program never lets a second local process in. That
/// matters on dlmfs, where the cluster lock cannot tell two processes of
/// one node apart. The scan is exact here: the lock is node-local by
/// design. Plus a `flock` on the same fd, as versions before took it, so
/// a program started by one of those still excludes us during an upgrade.
pub(super) fn try_local(runtime_dir: &Path, name: &str) -> Result<Option<File>, WorkloadError> {
    let names = twin::Names::new(&runtime_dir.join(LOCAL_DIR), name);
    let Some(f) = twin::acquire(&names, None).map_err(|e| WorkloadError::Local(e.to_string()))?
    else {
        return Ok(None);
    };
    // Raw flock(2), not nix's Flock: that one unlocks explicitly on drop,
    // which would free the lock for the program that inherited the fd too.
    // SAFETY: flock on an fd we own; no memory is involved.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(Some(f));
    }
    // Closing `f` drops the OFD lock too (our only fd of it).
    match Errno::last() {
        Errno::EWOULDBLOCK => Ok(None),
        errno => Err(WorkloadError::Flock {
            path: local_path(runtime_dir, name),
            errno,
        }),
    }
}

/// Runs `f` on a thread of its own and waits at most `limit`: a dlmfs call
/// may sleep in the kernel (DLM recovery) and cannot be cancelled. A call
/// that finishes after we gave up drops its result: a lock won that late is
/// closed (dlmfs: left cached on the node for `drop_stale`).
pub(super) fn bounded<T: Send + 'static>(
    limit: Duration,
    what: &'static str,
    f: impl FnOnce() -> Result<T, WorkloadError> + Send + 'static,
) -> Result<T, WorkloadError> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("lock-call".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(WorkloadError::Thread)?;
    rx.recv_timeout(limit)
        .map_err(|_| WorkloadError::Timeout { what, limit })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_lock_excludes_a_second_taker_until_closed() {
        let dir = tempfile::tempdir().unwrap();
        let first = try_local(dir.path(), "vm1").unwrap().expect("free");
        assert!(try_local(dir.path(), "vm1").unwrap().is_none());
        assert!(try_local(dir.path(), "vm2").unwrap().is_some());
        drop(first);
        crate::testing::eventually("vm1 free once closed", || {
            try_local(dir.path(), "vm1").unwrap()
        });
    }

    #[test]
    fn bounded_gives_up_on_a_call_that_does_not_return() {
        let e = bounded(Duration::from_millis(50), "the lock call", || {
            std::thread::sleep(Duration::from_secs(5));
            Ok(())
        })
        .unwrap_err();
        assert!(matches!(e, WorkloadError::Timeout { .. }), "{e}");
        assert!(e.to_string().contains("did not finish within 50ms"), "{e}");
        assert_eq!(bounded(Duration::from_secs(5), "x", || Ok(7)).unwrap(), 7);
    }
}
