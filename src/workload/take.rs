//! Taking a workload lock: the node-local lock first, then one attempt at
//! the cluster lock on a thread of its own under `op_timeout` ([`bounded`]),
//! polled until won or the wait is over ([`take`]); [`Held`] gives both up.

use super::error::WorkloadError;
use super::names::{LOCAL_DIR, cluster_name, local_path};
use crate::config::{Backend, Config, LockConfig};
use crate::lock::LockError;
use crate::lock::dlmfs::{self, DlmfsBackend};
use crate::lock::file::FileBackend;
use crate::lock::twin;
use nix::errno::Errno;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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

/// The cluster lock, held.
struct Cluster {
    file: File,
    /// dlmfs: the lock file, unlinked on release (close alone leaves it
    /// cached on the node).
    dlmfs_path: Option<PathBuf>,
    /// dlmfs: the term read from the lock value block, plus one.
    epoch: Option<u64>,
    /// file: the lock file's two names, for the holder's watch.
    names: Option<twin::Names>,
}

/// Step 2: one non-blocking attempt on the cluster lock; None if busy.
/// Blocking: call through [`bounded`].
fn try_cluster(lock: &LockConfig, node: &str, name: &str) -> Result<Option<Cluster>, LockError> {
    let cname = cluster_name(name);
    match lock.backend {
        Backend::File => {
            // The election's protocol (`lock::twin`): a deleted lock file
            // leads every contender to the holder's inode, or (both names
            // gone) the holder is listed in /proc/locks.
            let names = FileBackend::new(lock.dir.clone(), lock.standby).names(&cname);
            Ok(twin::acquire(&names, None)
                .map_err(LockError::from)?
                .map(|file| Cluster {
                    file,
                    dlmfs_path: None,
                    epoch: None,
                    names: Some(names),
                }))
        }
        // Its lock is no file: the holder, epoch and watch below need
        // their own dlm code first.
        Backend::Dlm => Err(LockError::Failed(
            "workload locks (run-locked, lock) are not built for the dlm backend yet (issue #22)"
                .into(),
        )),
        Backend::Dlmfs => {
            let be = DlmfsBackend::new(lock.mount.clone(), lock.domain.clone(), node);
            let path = be.join_unclaimed()?.join(&cname);
            // The daemon's trylock, on the workload's name.
            let file = match dlmfs::trylock_open(&path) {
                Ok(Some(file)) => file,
                Ok(None) => return Ok(None),
                Err(e) => {
                    return Err(LockError::Failed(format!(
                        "cannot open {}: {e}",
                        path.display()
                    )));
                }
            };
            let mut buf = [0u8; dlmfs::LVB_LEN];
            let n = file.read_at(&mut buf, 0).unwrap_or(0);
            let epoch = dlmfs::parse_lvb(&buf[..n]).1 + 1;
            // All 64 bytes: a short write keeps the old tail.
            if let Err(e) = file.write_at(&dlmfs::lvb_record(node, epoch), 0) {
                tracing::warn!(
                    "cannot write the lock value block of {}: {e}",
                    path.display()
                );
            }
            Ok(Some(Cluster {
                file,
                dlmfs_path: Some(path),
                epoch: Some(epoch),
                names: None,
            }))
        }
    }
}

/// Both locks of a workload name.
pub struct Held {
    name: String,
    local: File,
    cluster: Cluster,
}

impl Held {
    /// The epoch the program gets (dlmfs only).
    pub fn epoch(&self) -> Option<u64> {
        self.cluster.epoch
    }

    /// file: the cluster lock's names (for `watch`).
    pub fn names(&self) -> Option<&twin::Names> {
        self.cluster.names.as_ref()
    }

    /// The cluster lock's fd (for a holder's [`watch`](super::watch::watch)).
    pub(super) fn cluster_file(&self) -> &File {
        &self.cluster.file
    }

    /// The fds a program inherits so the lock lives as long as it does.
    pub fn fds(&self) -> [i32; 2] {
        [self.local.as_raw_fd(), self.cluster.file.as_raw_fd()]
    }

    /// Gives both up: close, then (dlmfs) unlink while the local flock
    /// still keeps every local trylock of the name away. Err if a process
    /// that inherited the lock still holds it (dlmfs: unlink EBUSY; the
    /// lock stays until it exits and a `cleanup` or `run-locked` runs).
    pub fn release(self, op_timeout: Duration) -> Result<(), WorkloadError> {
        let Held {
            name,
            local,
            cluster,
        } = self;

        drop(cluster.file);
        let r = match cluster.dlmfs_path {
            Some(path) => bounded(op_timeout, "unlinking the lock", move || {
                Ok(dlmfs::unlink(&path)?)
            })
            .map_err(|e| WorkloadError::StaysHeld {
                name,
                source: Box::new(e),
            }),
            None => Ok(()),
        };
        drop(local);
        r
    }
}

pub enum Attempt {
    Held(Held),
    Busy,
}

/// One attempt at both locks, local first.
pub fn try_take(cfg: &Config, name: &str) -> Result<Attempt, WorkloadError> {
    // dlmfs: a node that may have been declared dead while frozen holds
    // nothing new (see `membership`); the daemon recorded the doubt.
    if cfg.lock.backend == Backend::Dlmfs
        && let Some(why) = crate::membership::recorded(&cfg.daemon.runtime_dir)
    {
        return Err(WorkloadError::InDoubt(why));
    }
    let Some(local) = try_local(&cfg.daemon.runtime_dir, name)? else {
        return Ok(Attempt::Busy);
    };
    let (lock, node, n) = (cfg.lock.clone(), cfg.node.clone(), name.to_string());
    match bounded(cfg.daemon.op_timeout, "the lock call", move || {
        Ok(try_cluster(&lock, &node, &n))
    })?? {
        Some(cluster) => Ok(Attempt::Held(Held {
            name: name.to_string(),
            local,
            cluster,
        })),
        None => Ok(Attempt::Busy),
    }
}

/// Tries until the lock is won or `wait` (none: one attempt) is over.
/// Polling every `poll_interval`, never a blocking lock call: a blocking
/// dlmfs open sleeps uninterruptibly. The default signal dispositions apply
/// meanwhile, so Ctrl-C or SIGTERM end the wait. A cluster that is not
/// ready (not up yet, or changing membership: a node just died) is retried
/// like a busy lock while the wait lasts.
pub fn take(cfg: &Config, name: &str, wait: Option<Duration>) -> Result<Attempt, WorkloadError> {
    let deadline = Instant::now() + wait.unwrap_or(Duration::ZERO);
    loop {
        let retry = match try_take(cfg, name) {
            Ok(Attempt::Busy) => Ok(()),
            Err(e @ WorkloadError::Lock(LockError::NotReady(_))) => Err(e),
            done => return done,
        };
        if Instant::now() >= deadline {
            return retry.map(|()| Attempt::Busy);
        }
        if let Err(e) = retry {
            tracing::info!("{e}; retrying");
        }
        let left = deadline.saturating_duration_since(Instant::now());
        std::thread::sleep(cfg.daemon.poll_interval.min(left));
    }
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
