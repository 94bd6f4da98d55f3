//! The node's record for `status --cluster` (`cluster`): written at start
//! and after every change of the status board or the drain, a burst of
//! changes (a takeover of 1,000 resources) coalesced into one write per
//! `COALESCE`. Writes are blocking file I/O: on the blocking pool.

use crate::cluster::file::Publisher;
use crate::control::StatusReport;
use crate::drain::Drain;
use crate::election::Board;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// At most one record write per this much time.
pub const COALESCE: Duration = Duration::from_millis(200);

/// What the record says besides the board.
pub struct Node {
    pub name: String,
    pub locks: Option<String>,
}

/// Starts publishing `sup`'s node: beside the file backend's locks (the
/// other backends' records are not built yet). `locks`: how far they reach.
pub(super) fn start(sup: &super::supervisor::Supervisor, locks: Option<String>) {
    if sup.cfg.lock.backend != crate::config::Backend::File {
        return;
    }
    match Publisher::start(&sup.cfg.lock.dir, &sup.cfg.node) {
        Ok(p) => {
            let node = Node {
                name: sup.cfg.node.clone(),
                locks,
            };
            tokio::spawn(publish(
                p,
                node,
                sup.board.clone(),
                sup.changed.subscribe(),
                sup.drain.watch.subscribe(),
            ));
        }
        Err(why) => tracing::warn!("status --cluster will not show this node: {why}"),
    }
}

/// Runs for the daemon's life (aborted with its runtime).
async fn publish(
    p: Publisher,
    node: Node,
    board: Board,
    mut changed: watch::Receiver<()>,
    mut drain: watch::Receiver<Option<Drain>>,
) {
    let p = Arc::new(p);
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
        tokio::select! {
            r = changed.changed() => if r.is_err() { return },
            Ok(()) = drain.changed() => {}
        }
        tokio::time::sleep(COALESCE).await;
    }
}
