//! Taking a workload lock: the node-local lock first (`local`), then one
//! attempt at the cluster lock on a thread of its own under `op_timeout`
//! (`local::bounded`), polled until won or the wait is over ([`take`]), or
//! on dlm waiting in the DLM's queue (`dlm`); [`Held`] gives both up.

use super::error::WorkloadError;
use super::local::{bounded, try_local};
use super::names::cluster_name;
use crate::config::{Backend, Config, LockConfig};
use crate::lock::LockError;
use crate::lock::dlmfs::{self, DlmfsBackend};
use crate::lock::file::FileBackend;
use crate::lock::twin;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

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
    /// dlm: the lockspace create the lock needed, given back on release.
    owed: Option<Box<super::dlm::Owed>>,
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
                    owed: None,
                }))
        }
        // `try_take` hands dlm to `workload::dlm::take`, which waits in the
        // DLM's queue instead.
        Backend::Dlm => unreachable!("dlm workload locks are taken by workload::dlm::take"),
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
            let epoch = crate::lock::holder::parse(&buf[..n]).1 + 1;
            // All 64 bytes: a short write keeps the old tail.
            if let Err(e) = file.write_at(&crate::lock::holder::record(node, epoch), 0) {
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
                owed: None,
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
    /// still keeps every local trylock of the name away, or (dlm) give the
    /// lockspace create back. Err if a process that inherited the lock
    /// still holds it (dlmfs: unlink EBUSY; dlm: the name's local lock
    /// still held; the lock stays until it exits and a `cleanup` or
    /// `run-locked` runs).
    pub fn release(self, op_timeout: Duration) -> Result<(), WorkloadError> {
        let Held {
            name,
            local,
            cluster,
        } = self;

        drop(cluster.file);
        if let Some(owed) = cluster.owed {
            return release_dlm(name, local, *owed, op_timeout);
        }
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

/// dlm: the create given back once our copy of the lock's fd is closed. A
/// plain give-back only counts down, or frees a lockspace with nothing
/// left in it here; refused (the last create, locks still in it here:
/// other nodes' it masters, or ours in a copy the program's children
/// kept), it is forced only once the name's local lock, which those
/// children share, is free again.
fn release_dlm(
    name: String,
    local: File,
    owed: super::dlm::Owed,
    op_timeout: Duration,
) -> Result<(), WorkloadError> {
    let stays = |e| WorkloadError::StaysHeld {
        name: name.clone(),
        source: Box::new(e),
    };
    if owed.give_back(op_timeout, false).map_err(stays)? == super::dlm::Back::Given {
        return Ok(());
    }
    drop(local);
    let again = try_local(&owed.runtime_dir, &name).map_err(stays)?;
    match again {
        Some(_local) => owed.give_back(op_timeout, true).map(drop).map_err(stays),
        None => Err(stays(WorkloadError::Local(
            "a process that inherited the lock still holds it".into(),
        ))),
    }
}

pub enum Attempt {
    Held(Held),
    Busy,
}

/// One attempt at both locks, local first. `queue` (dlm only): how long
/// the cluster request may wait in the DLM's queue (None: not at all).
fn try_take(cfg: &Config, name: &str, queue: Option<Duration>) -> Result<Attempt, WorkloadError> {
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
    let cluster = if cfg.lock.backend == Backend::Dlm {
        let (rt, t) = (&cfg.daemon.runtime_dir, cfg.daemon.op_timeout);
        super::dlm::take(&cfg.lock, rt, name, queue, t)?.map(|(file, owed)| Cluster {
            file,
            dlmfs_path: None,
            epoch: None,
            names: None,
            owed: Some(Box::new(owed)),
        })
    } else {
        let (lock, node, n) = (cfg.lock.clone(), cfg.node.clone(), name.to_string());
        bounded(cfg.daemon.op_timeout, "the lock call", move || {
            Ok(try_cluster(&lock, &node, &n))
        })??
    };
    Ok(match cluster {
        Some(cluster) => Attempt::Held(Held {
            name: name.to_string(),
            local,
            cluster,
        }),
        None => Attempt::Busy,
    })
}

/// Tries until the lock is won or `wait` (none: one attempt) is over.
/// dlmfs and file: polling every `poll_interval`, never a blocking lock
/// call (a blocking dlmfs open sleeps uninterruptibly). dlm: the request
/// waits in the DLM's queue, granted the instant the holder lets go
/// (`workload::dlm`); only a local holder of the name is polled for. The
/// default signal dispositions apply meanwhile, so Ctrl-C or SIGTERM end
/// the wait (a closed fd's queued request is cancelled by the kernel). A
/// cluster that is not ready (not up yet, or changing membership: a node
/// just died) is retried like a busy lock while the wait lasts.
pub fn take(cfg: &Config, name: &str, wait: Option<Duration>) -> Result<Attempt, WorkloadError> {
    let deadline = Instant::now() + wait.unwrap_or(Duration::ZERO);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let queue = (cfg.lock.backend == Backend::Dlm && !left.is_zero()).then_some(left);
        let retry = match try_take(cfg, name, queue) {
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
