//! Why a workload lock call failed, typed, so a caller can tell a call the
//! DLM did not answer in time from a refusal or an error; the texts are the
//! ones `run-locked`, `lock`, `unlock` and `cleanup` print (tests match them).

use crate::lock::LockError;
use nix::errno::Errno;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// A lock call outlasted `op_timeout`; it may still finish on its
    /// thread (a lock won that late is closed).
    #[error(
        "{what} did not finish within {limit:?} (op_timeout); is the DLM recovering a dead node?"
    )]
    Timeout { what: &'static str, limit: Duration },
    #[error("cannot start a thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The node-local lock could not be taken (`lock::twin`'s words).
    #[error("{0}")]
    Local(String),
    #[error("cannot flock {}: {errno}", path.display())]
    Flock { path: PathBuf, errno: Errno },
    /// The cluster lock: not ready (retried while a wait lasts), or failed.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// dlmfs: this node may have been declared dead while frozen.
    #[error("this node's cluster membership is in doubt ({0}): no lock is taken until it reboots")]
    InDoubt(String),
    /// dlmfs: no call is made on a cluster stack we refuse.
    #[error("{0}")]
    Stack(String),
    /// Giving the lock up failed: it stays held on this node.
    #[error("{source}: workload lock {name} stays held on this node")]
    StaysHeld {
        name: String,
        source: Box<WorkloadError>,
    },
    #[error("cannot list {}: {source}", dir.display())]
    List {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot unlink {}: {errno}", path.display())]
    Unlink { path: PathBuf, errno: Errno },
}
