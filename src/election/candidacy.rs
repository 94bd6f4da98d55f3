//! Preferred nodes, the runner's side (see docs/ARCHITECTURE.md,
//! "Preferred nodes: candidate locks"): the task that holds this node's
//! candidate lock while the machine says it would take mastership, and
//! the probes of the more preferred nodes' candidate locks. What the probes
//! mean for the next attempt is decided by the pure `deferral`.

use super::deferral::Deferral;
use crate::config::ResourceSpec;
use crate::lock::{HeldLock, LockBackend};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::sleep;

/// The candidate locks of the nodes more preferred than this one, with
/// their names: all listed nodes for a node not in `prefer`.
pub(super) fn better(spec: &ResourceSpec, node: &str) -> Vec<(String, String)> {
    let rank = spec.rank(node).unwrap_or(spec.prefer.len());
    spec.prefer[..rank]
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), spec.candidate_lock(i)))
        .collect()
}

/// The first of `better` whose node is a candidate now, skipping those
/// judged stuck (blocking: run on the blocking pool). A probe that fails
/// counts as "not a candidate": the lock call that follows meets the same
/// trouble and reports it. A stuck node seen not a candidate is stuck no
/// more.
pub(super) fn outranked_by(
    backend: &dyn LockBackend,
    better: &[(String, String)],
    deferral: &Mutex<Deferral>,
) -> Option<String> {
    candidates(backend, better, deferral, true).pop()
}

/// Every one of `better` whose node is a candidate now, in preference
/// order, stuck ones skipped (`first`: stop at the first). As
/// `outranked_by`.
pub(super) fn candidates(
    backend: &dyn LockBackend,
    better: &[(String, String)],
    deferral: &Mutex<Deferral>,
    first: bool,
) -> Vec<String> {
    let mut found = Vec::new();
    for (node, lock) in better {
        let held = backend.candidate_held(lock).unwrap_or(false);
        let mut d = deferral.lock().unwrap_or_else(|e| e.into_inner());
        if !held {
            if d.seen_free(node) {
                tracing::info!(
                    "more preferred node {node}'s candidate lock is free: no longer ignoring {node}"
                );
            }
        } else if !d.is_stuck(node) {
            found.push(node.clone());
            if first {
                break;
            }
        }
    }
    found
}

/// Awaits a candidate-lock call on the blocking pool, warning once if it
/// runs past `op_timeout` (the DLM recovering a dead node); it is still
/// waited for, since the lock it may take must not be lost.
async fn candidate_call<T>(call: JoinHandle<T>, op_timeout: Duration, lock: &str) -> Option<T> {
    tokio::pin!(call);
    let r = match tokio::time::timeout(op_timeout, &mut call).await {
        Ok(r) => r,
        Err(_) => {
            tracing::warn!(
                "candidate lock {lock}: call has not returned within op_timeout ({op_timeout:?}); still waiting"
            );
            call.await
        }
    };
    r.inspect_err(|e| tracing::warn!("candidate lock {lock}: call died: {e}"))
        .ok()
}

/// Holds this node's candidate lock while `want` says so, retrying every
/// `every` while it cannot (a probe holds it for a moment). Returns once
/// `want` is closed, with the lock given up.
pub(super) async fn candidacy(
    backend: Arc<dyn LockBackend>,
    lock: String,
    mut want: watch::Receiver<bool>,
    every: Duration,
    op_timeout: Duration,
) {
    let mut held: Option<Box<dyn HeldLock>> = None;
    loop {
        let wanted = *want.borrow_and_update();
        if wanted && held.is_none() {
            let (b, l) = (backend.clone(), lock.clone());
            let call = tokio::task::spawn_blocking(move || b.take_candidate(&l));
            match candidate_call(call, op_timeout, &lock).await {
                Some(Ok(Some(h))) => {
                    tracing::debug!("candidate lock {lock} taken");
                    held = Some(h);
                }
                Some(Ok(None)) | None => {}
                Some(Err(e)) => tracing::debug!("candidate lock {lock}: {e}"),
            }
        } else if !wanted && let Some(h) = held.take() {
            let call = tokio::task::spawn_blocking(move || h.release());
            match candidate_call(call, op_timeout, &lock).await {
                Some(Ok(())) => tracing::debug!("candidate lock {lock} given up"),
                Some(Err(e)) => tracing::warn!("giving candidate lock {lock} up: {e}"),
                None => {}
            }
        }
        let retry = wanted && held.is_none();
        tokio::select! {
            r = want.changed() => if r.is_err() {
                if let Some(h) = held.take() {
                    let _ = tokio::task::spawn_blocking(move || h.release()).await;
                }
                return;
            },
            () = sleep(every), if retry => {}
        }
    }
}
