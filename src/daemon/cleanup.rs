//! `dlm-electd cleanup`: what a killed daemon left, undone.

use super::orphans::{drop_stale, undo_orphan};
use super::startup::Runtime;
use crate::action;
use crate::config::{Config, ResourceSpec};
use crate::control;
use crate::exit;
use crate::instance::Instance;
use crate::lock::{self, LockBackend};
use std::sync::Arc;
use tracing::Instrument;

/// `dlm-electd cleanup`: after a crash (ExecStopPost), run the release
/// actions of every resource this instance's applied records name, and
/// drop lock state this node still keeps. Refuses while a daemon holds the
/// runtime dir.
pub async fn cleanup(cfg: Config) -> i32 {
    let Runtime { instance, hooks } = match Runtime::take(&cfg) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("not cleaning up: {e}");
            return e.exit_code();
        }
    };
    // Hooks of a daemon (and keeper) killed together run on unwatched:
    // kill them before any release step, or an acquire could land after.
    let n = tokio::task::spawn_blocking(move || action::hooks::kill_all(&hooks))
        .await
        .unwrap_or(0);
    if n > 0 {
        tracing::warn!("killed {n} hook process group(s) a dead daemon left running");
    }
    let backend = lock::open::backend(&super::startup::lock_settings(&cfg));
    // The dlm backend in a sandbox that cannot join the lockspace (the
    // unit without its dlm drop-in; `load` warned, naming it): the release
    // steps run, the lock work is not tried. It would wait for a device
    // the private /dev lacks, then fail; no daemon ran there to lock.
    let locks = !crate::config::check::lockspace_out_of_reach(
        &cfg,
        crate::config::check::own_bounding_set(),
    ) && !left_lockspace(&cfg);
    let mut rc = exit::OK;
    for spec in &cfg.resources {
        let span = tracing::info_span!("resource", resource = %spec.name);
        if !clean_one(&instance, locks.then_some(&backend), spec, &cfg)
            .instrument(span)
            .await
        {
            rc = exit::FAILURE;
        }
    }
    let configured: Vec<&str> = cfg.resources.iter().map(|r| r.name.as_str()).collect();
    for (name, record) in instance.orphans(&configured) {
        let span = tracing::info_span!("resource", resource = %name);
        if !undo_orphan(&name, &record, locks.then_some(&backend), &cfg)
            .instrument(span)
            .await
        {
            rc = exit::FAILURE;
        }
    }
    // A killed daemon's presence lock for `status --cluster`, cached here
    // (dlmfs): the other nodes would see it as running until dropped.
    if locks && cfg.lock.backend == crate::config::Backend::Dlmfs {
        let (b, name) = (backend.clone(), crate::cluster::chunks::presence(&cfg.node));
        let op = cfg.daemon.op_timeout;
        let call = tokio::task::spawn_blocking(move || b.clear_stale(&name));
        match tokio::time::timeout(op, call).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!("cannot drop this node's presence lock: {e}"),
            Ok(Err(_)) | Err(_) => {
                tracing::warn!("dropping this node's presence lock did not finish")
            }
        }
    }
    // Workload locks a killed `run-locked` left cached on this node (dlmfs),
    // once their programs ended; one a local program still holds is kept.
    let c = cfg.clone();
    match tokio::task::spawn_blocking(move || crate::workload::drop_stale(&c)).await {
        Ok(Ok(names)) if names.is_empty() => {}
        Ok(Ok(names)) => {
            tracing::info!("workload locks whose holders are gone, dropped: {names:?}")
        }
        Ok(Err(e)) => {
            tracing::error!("cannot drop stale workload locks: {e}");
            rc = exit::FAILURE;
        }
        Err(e) => {
            tracing::error!("dropping stale workload locks: {e}");
            rc = exit::FAILURE;
        }
    }
    let _ = std::fs::remove_file(control::socket_path(&cfg.daemon.runtime_dir));
    if locks {
        let all_released = rc == exit::OK;
        let _ = tokio::task::spawn_blocking(move || backend.leave(all_released)).await;
    }
    rc
}

/// The dlm backend's daemon left its lockspace on its way out (its marker
/// is gone, `lock::fsdlm::MARKER`): no lock of ours is in the DLM, so
/// there is no lock work. Joining the lockspace only to find nothing
/// would wait, on a node that lost quorum, for a join that cannot finish
/// there: the corosync tier saw a clean stop's `cleanup` spend its whole
/// `op_timeout` (120 s) that way. A killed daemon leaves the marker, and a
/// leave refused because a lock stayed writes it back.
fn left_lockspace(cfg: &Config) -> bool {
    let left = cfg.lock.backend == crate::config::Backend::Dlm
        && !cfg.daemon.runtime_dir.join(lock::fsdlm::MARKER).exists();
    if left {
        tracing::debug!("dlm backend: no daemon here left its lockspace joined: no lock work");
    }
    left
}

/// `cleanup` of one resource; false if something is left.
/// `backend`: None where the lock work cannot be done (see `cleanup`).
async fn clean_one(
    instance: &Instance,
    backend: Option<&Arc<dyn LockBackend>>,
    spec: &ResourceSpec,
    cfg: &Config,
) -> bool {
    let record = instance.record(&spec.name);
    let applied = record.exists();
    if applied {
        let ctx = crate::action::Ctx {
            resource: spec.name.clone(),
            node: cfg.node.clone(),
        };
        // Undo first: the lock is dropped only once our side effects are
        // gone, so no other node takes over while they still stand.
        if let Err(e) = crate::action::release_all(&spec.actions, &ctx).await {
            tracing::error!("release actions failed, keeping the lock: {e}");
            return false;
        }
        record.clear();
    } else {
        tracing::debug!("no applied record: nothing of ours to undo");
    }
    let Some(backend) = backend else {
        return true;
    };
    let mut ok = drop_stale(backend, &spec.lock, cfg.daemon.op_timeout).await;
    // Our candidate lock too (preferred nodes): a dead daemon's stays cached
    // on a dlmfs node and would make less preferred nodes defer to it.
    if let Some(cand) = spec.rank(&cfg.node).map(|i| spec.candidate_lock(i)) {
        ok &= drop_stale(backend, &cand, cfg.daemon.op_timeout).await;
    }
    // One line per resource, and only for what was done.
    if ok && applied {
        tracing::info!("cleaned up: release steps run, lock state dropped");
    }
    ok
}
