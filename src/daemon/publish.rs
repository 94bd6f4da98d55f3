//! The node's record for `status --cluster` (`cluster`): written at start
//! and after every change of the status board or the drain, a burst of
//! changes (a takeover of 1,000 resources) coalesced into one write per
//! `COALESCE`. `file` writes it beside its locks, dlmfs and dlm in lock
//! value blocks (`cluster::store`); both are blocking calls, on the
//! blocking pool. Also the reader a `cluster` request of the control
//! socket runs on dlmfs and dlm.

use crate::cluster::{file, store};
use crate::config::{Backend, Config};
use crate::control::{ClusterReader, StatusReport};
use crate::drain::Drain;
use crate::election::Board;
use crate::lock::{LockBackend, LockError};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::watch;

/// At most one record write per this much time.
pub const COALESCE: Duration = Duration::from_millis(200);

/// How often the node checks it is on the roster (`cluster::store`): it
/// can be lost, and a record nobody finds is no record.
pub const RECHECK: Duration = Duration::from_secs(30);

/// How long before a publisher that could not start (the cluster not up
/// yet) tries again.
const RETRY: Duration = Duration::from_secs(5);

/// What the record says besides the board.
pub struct Node {
    pub name: String,
    pub locks: Option<String>,
}

/// Where the records go.
enum Records {
    File(file::Publisher),
    Values(store::Publisher),
}

impl Records {
    fn write(&self, report: StatusReport) -> Result<(), String> {
        match self {
            Records::File(p) => p.write(report).map_err(|e| e.to_string()),
            Records::Values(p) => p.write(report),
        }
    }

    /// Puts the node back on a lost roster (lock values only).
    fn recheck(&self) -> Result<(), String> {
        match self {
            Records::File(_) => Ok(()),
            Records::Values(p) => p.enrol(),
        }
    }
}

/// The publisher in lock values, once it runs: the way out closes it
/// before the backend leaves its lockspace (fs/dlm: a lockspace with our
/// locks in it would not be left plainly).
#[derive(Clone, Default)]
pub struct Published(Arc<OnceLock<Arc<Records>>>);

impl Published {
    /// Lets go of the presence lock and the value locks (blocking).
    pub fn close(&self) {
        if let Some(r) = self.0.get()
            && let Records::Values(p) = &**r
        {
            p.close();
        }
    }
}

/// What a publisher follows: the daemon's status board and drain.
pub(super) struct Follow {
    pub board: Board,
    pub changed: watch::Receiver<()>,
    pub drain: watch::Receiver<Option<Drain>>,
}

/// Starts publishing the node of `cfg`. `locks`: how far its locks reach.
pub(super) fn start(
    cfg: &Config,
    backend: &Arc<dyn LockBackend>,
    follow: Follow,
    locks: Option<String>,
) -> Published {
    let published = Published::default();
    let node = Node {
        name: cfg.node.clone(),
        locks,
    };
    let open: Open = match cfg.lock.backend {
        Backend::File => {
            let (dir, name) = (cfg.lock.dir.clone(), cfg.node.clone());
            Arc::new(move || {
                file::Publisher::start(&dir, &name)
                    .map(Records::File)
                    .map_err(Opening::Refused)
            })
        }
        Backend::Dlmfs | Backend::Dlm => {
            let (backend, name) = (backend.clone(), cfg.node.clone());
            Arc::new(move || open_values(&*backend, &name))
        }
    };
    tokio::spawn(publish(open, published.clone(), node, follow));
    published
}

/// Starts the publisher (blocking); tried again while not ready.
type Open = Arc<dyn Fn() -> Result<Records, Opening> + Send + Sync>;

/// Why a publisher did not start.
enum Opening {
    /// Not yet: the cluster is not up.
    NotReady(String),
    /// For good (said once).
    Refused(String),
}

fn open_values(backend: &dyn LockBackend, node: &str) -> Result<Records, Opening> {
    let values = match backend.value_locks() {
        Ok(Some(v)) => v,
        Ok(None) => return Err(Opening::Refused("the backend has no lock values".into())),
        Err(LockError::NotReady(e)) => return Err(Opening::NotReady(e)),
        Err(e) => return Err(Opening::NotReady(e.to_string())),
    };
    store::Publisher::start(values, node)
        .map(Records::Values)
        .map_err(Opening::Refused)
}

/// Runs for the daemon's life (aborted with its runtime).
async fn publish(open: Open, published: Published, node: Node, follow: Follow) {
    let Follow {
        board,
        mut changed,
        mut drain,
    } = follow;
    let p = loop {
        let o = open.clone();
        match tokio::task::spawn_blocking(move || o()).await {
            Ok(Ok(p)) => break Arc::new(p),
            Ok(Err(Opening::Refused(why))) => {
                tracing::warn!("status --cluster will not show this node: {why}");
                return;
            }
            Ok(Err(Opening::NotReady(why))) => {
                tracing::debug!("the node's record waits for the cluster: {why}");
                tokio::time::sleep(RETRY).await;
            }
            Err(_) => return,
        }
    };
    let _ = published.0.set(p.clone());
    let mut failing = false;
    loop {
        changed.borrow_and_update();
        let report = StatusReport {
            node: node.name.clone(),
            now_ms: crate::clock::now_ms(),
            resources: board.snapshot(),
            locks: node.locks.clone(),
            drain: drain.borrow_and_update().clone(),
        };
        let w = p.clone();
        match tokio::task::spawn_blocking(move || w.write(report)).await {
            Ok(Ok(())) if failing => {
                failing = false;
                tracing::info!("the node's record for status --cluster is written again");
            }
            Ok(Ok(())) => {}
            // Said once until it works again: the election goes on, only
            // the other nodes' view of this one goes stale.
            Ok(Err(e)) if !failing => {
                failing = true;
                tracing::warn!("cannot write the node's record for status --cluster: {e}");
            }
            Ok(Err(_)) | Err(_) => {}
        }
        // Nothing changed for RECHECK: only the roster is looked at (a
        // rewrite would move every chunk, the record holding its time).
        loop {
            tokio::select! {
                r = changed.changed() => if r.is_err() { return } else { break },
                Ok(()) = drain.changed() => break,
                () = tokio::time::sleep(RECHECK) => {
                    let r = p.clone();
                    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || r.recheck()).await {
                        tracing::debug!("the roster's recheck failed: {e}");
                    }
                }
            }
        }
        tokio::time::sleep(COALESCE).await;
    }
}

/// The reader for `cluster` requests, on dlmfs and dlm: every node's
/// record, and whether each of this daemon's resources' locks is held.
pub(super) fn reader(
    cfg: &Config,
    backend: &Arc<dyn LockBackend>,
    board: &Board,
) -> Option<ClusterReader> {
    if cfg.lock.backend == Backend::File {
        return None;
    }
    let (backend, me, board) = (backend.clone(), cfg.node.clone(), board.clone());
    // The names the config knows: every `prefer` list (`[cluster] nodes`
    // is resolved into them).
    let mut known: Vec<String> = cfg
        .resources
        .iter()
        .flat_map(|r| r.prefer.clone())
        .collect();
    known.sort();
    known.dedup();
    Some(Arc::new(move || {
        let locks = board.snapshot().into_iter().map(|r| r.lock).collect();
        let a = store::answer(&*backend, &me, &known, locks)?;
        serde_json::to_value(a).map_err(|e| e.to_string())
    }))
}
