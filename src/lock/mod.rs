//! Lock backends: one exclusive lock per election resource.
//!
//! Every method here may block (dlmfs calls can sleep in the kernel while the
//! DLM recovers a dead node), so callers run them on the blocking pool under
//! a deadline, never on the async runtime.

pub mod bell;
pub mod dlm;
pub mod dlmfs;
pub mod file;
pub mod filesystem;
pub mod fsdlm;
pub mod holder;
pub mod interrupt;
pub mod lvb;
pub mod open;
pub mod proc_locks;
pub mod twin;

pub use interrupt::WaitStop;

/// Cluster lock names of workloads (`run-locked`, `lock`) start with this;
/// election locks may not, so the two never share a lock.
pub const WORKLOAD_PREFIX: char = '@';
use std::fmt;
use std::sync::Arc;

/// Which lock manager the election runs on (`[lock] backend`). Defined
/// here, not in `config`, because the lock layer picks its code by it and
/// must not import the config (config imports lock's names and checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    File,
    Dlmfs,
    /// The kernel's fs/dlm (corosync, dlm_controld): `fsdlm`.
    Dlm,
}

/// As written in the config, for users (never `File`/`Dlmfs`/`Dlm`).
impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::File => "file",
            Backend::Dlmfs => "dlmfs",
            Backend::Dlm => "dlm",
        })
    }
}

/// How a standby learns that the lock is free: `wait` in the kernel for
/// the holder to let go (`file` only), or `poll` every `poll_interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Standby {
    Wait,
    Poll,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    /// The cluster (or lock directory) is not usable yet; retry later.
    #[error("cluster not ready: {0}")]
    NotReady(String),
    /// Anything else: a bad name, permissions, an I/O error.
    #[error("{0}")]
    Failed(String),
}

/// What a guard or a lock check reports: the implementer's own error type,
/// boxed, since the lock layer only shows it (a keeper's `KeeperError`, the
/// fd store's `FdStoreError`, `twin::TwinError`) and the layer below must
/// not name the types of the layers above.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// FNV-1a, 64 bits: names of the DLM locks made from other names (a lock's
/// doorbell, a node's records) and torn-read checks; not security. Pinned:
/// every node, whatever its build, must make the same names.
pub fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Called, from a thread of the backend's, when a polling standby's next
/// try had better be now ([`LockBackend::watch_release`]).
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// See [`HeldLock::still_held`].
pub type StillHeld = Arc<dyn Fn() -> Result<(), BoxError> + Send + Sync>;

/// The outcome of one non-blocking attempt.
pub enum TryLock {
    Acquired(Box<dyn HeldLock>),
    Busy,
}

pub trait LockBackend: Send + Sync {
    /// One non-blocking attempt to take `lock` exclusively.
    fn try_lock(&self, lock: &str) -> Result<TryLock, LockError>;

    /// Drops lock state this node may still keep for `lock` although no local
    /// process holds it (dlmfs caches a dead holder's lock on the node).
    /// For `cleanup` after a crash; harmless when there is nothing to drop.
    fn clear_stale(&self, lock: &str) -> Result<(), LockError>;

    /// Takes candidate lock `lock` (preferred nodes; docs/ARCHITECTURE.md):
    /// held by this process alone, never by a lock keeper, so it goes with
    /// the process. None: not now (a probe holds it for a moment; retry).
    fn take_candidate(&self, lock: &str) -> Result<Option<Box<dyn HeldLock>>, LockError>;

    /// Whether some node holds candidate lock `lock` now. Leaves nothing
    /// behind that could keep its owner from taking it later.
    fn candidate_held(&self, lock: &str) -> Result<bool, LockError>;

    /// Whether some process, on this node or another, holds election lock
    /// `lock` now: a drained node's `drain --wait` asks it to see a master
    /// elsewhere. Must leave nothing behind that could keep a contender
    /// out for longer than a moment. By default the candidate probe (the
    /// dlm backend's NOQUEUE PR request, unlocked at once: a contender's
    /// try at that instant finds it busy and wins at its next poll); `file`
    /// asks F_OFD_GETLK. None: the backend cannot be asked (dlmfs: its
    /// probe would stay cached and keep the others out).
    fn held(&self, lock: &str) -> Result<Option<bool>, LockError> {
        self.candidate_held(lock).map(Some)
    }

    /// Locks that carry a value, for the node records of `status
    /// --cluster` (`lock::lvb`). None: the backend has none (`file` keeps
    /// its records as files).
    fn value_locks(&self) -> Result<Option<Box<dyn ValueLocks>>, LockError> {
        Ok(None)
    }

    /// Lets go of what the backend joined for its locks (the daemon's way
    /// out, the end of `cleanup`): the dlm backend's lockspace, which would
    /// otherwise stay (and keep dlm.service from stopping). `all_released`:
    /// the caller released every lock it took and kept none on purpose (a
    /// failed release keeps its lock for `cleanup`), so nothing of ours in
    /// the lockspace is worth keeping it for. Nothing for the others.
    fn leave(&self, _all_released: bool) {}

    /// Drops what the backend keeps between tries of `lock` (the `file`
    /// backend's busy inode, kept open): its resource's runner ended (a
    /// reload took it out, or the daemon stops). Never blocks.
    fn forget(&self, _lock: &str) {}

    /// Tells a polling standby of `lock` early that the holder let go,
    /// where the backend can (dlmfs: the lock's doorbell, `bell`): `wake`
    /// is called when a try is worth making now. A hint only, the tries
    /// decide; it stops when the returned guard is dropped. Never blocks.
    /// None: the backend has no such thing.
    fn watch_release(&self, _lock: &str, _wake: Wake) -> Option<Box<dyn Send>> {
        None
    }

    /// Whether [`LockBackend::wait_lock`] can wait for the holder to let go.
    fn can_wait(&self) -> bool {
        false
    }

    /// Takes `lock`, sleeping in the kernel until the holder lets go: the
    /// standby wins the instant the master unlocks and costs nothing while
    /// it waits. May block forever, so it runs on a thread of its own; it
    /// returns Ok(None) soon after `stop` was raised, never holding the lock
    /// then. Only where [`LockBackend::can_wait`].
    fn wait_lock(
        &self,
        _lock: &str,
        _stop: &WaitStop,
    ) -> Result<Option<Box<dyn HeldLock>>, LockError> {
        Err(LockError::Failed("this lock backend cannot wait".into()))
    }
}

/// A lock we hold. Dropping it without `release` also gives it up as far as
/// this process can (the fd is closed).
pub trait HeldLock: Send {
    /// What the previous holder left behind, when the backend can tell.
    fn previous_holder(&self) -> Option<String> {
        None
    }
    /// This mastership's number in the resource's transitions, from the
    /// record the holders leave in the lock (`holder`). None: the backend
    /// keeps none (fs/dlm), or a candidate lock.
    fn epoch(&self) -> Option<u64> {
        None
    }
    /// A check, run at every poll while master (on the blocking pool),
    /// that the lock still excludes everyone else without a new lock call:
    /// Err says why not (a `file` lock whose inode lost both its names; a
    /// single deleted name is put back by the check itself: `twin`).
    /// None: nothing to check (a held dlmfs lock file cannot be unlinked).
    fn still_held(&self) -> Option<StillHeld> {
        None
    }
    /// Gives the lock up so another node can take it.
    fn release(self: Box<Self>) -> Result<(), LockError>;
}

/// Locks that carry a value: the DLM's lock value block (LVB), on dlmfs
/// and fs/dlm (`lvb` has both); `status --cluster` keeps each node's
/// record in them (`cluster::store`).
pub trait ValueLocks: Send + Sync {
    /// Bytes in a value (dlmfs 64, fs/dlm 32).
    fn value_len(&self) -> usize;

    /// Makes `value` (at most [`Self::value_len`] bytes, zero-padded) the
    /// value of lock `name`, waiting for readers to let go. `shared`: other
    /// nodes write this lock too (see [`FsDlmValues`] for what it costs).
    fn write(&self, name: &str, value: &[u8], shared: bool) -> Result<(), LockError>;

    /// The value of lock `name`, waiting for a writer to let go. None: it
    /// has none (never written, or lost with its writer's node).
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, LockError>;

    /// Takes `name` EX until [`Self::let_go`] or [`Self::close`]. `wait`:
    /// queue for it (for a lock held only for moments); else one try,
    /// false when busy.
    fn hold(&self, name: &str, wait: bool) -> Result<bool, LockError>;

    /// Gives up a lock taken by [`Self::hold`].
    fn let_go(&self, name: &str);

    /// Whether some process holds `name` EX now (a lock others keep with
    /// [`Self::hold`]). Leaves nothing behind that would refuse its
    /// holder's next try.
    fn held(&self, name: &str) -> Result<bool, LockError>;

    /// [`Self::read`] of each of `names`, in order; a backend may run them
    /// at once.
    fn read_many(&self, names: &[String]) -> Vec<Result<Option<Vec<u8>>, LockError>> {
        names.iter().map(|n| self.read(n)).collect()
    }

    /// [`Self::held`] of each of `names`, in order; a backend may run them
    /// at once.
    fn held_many(&self, names: &[String]) -> Vec<Result<bool, LockError>> {
        names.iter().map(|n| self.held(n)).collect()
    }

    /// Lets go of everything this holds; what it wrote stays readable
    /// only as long as the lock manager keeps it (see each backend).
    fn close(&self);

    /// The node names the cluster stack is configured with (best effort,
    /// empty if it cannot tell): o2cb's configfs, corosync's nodelist.
    fn stack_nodes(&self) -> Vec<String>;
}
