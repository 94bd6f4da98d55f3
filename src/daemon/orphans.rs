//! At start and in `cleanup`: what a previous run left. Lock fds systemd
//! kept for us are adopted or let go; applied records of resources no
//! longer configured (orphans) are undone; lock state the node keeps for
//! them is dropped.

use crate::config::Config;
use crate::fdstore::{FdStore, Stored};
use crate::instance::{Instance, Record};
use crate::lock::LockBackend;
use crate::lock::file::{Adopted, FileBackend, ofd_setlk};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// At startup: resume with the lock fds systemd kept for us, and undo what
/// a previous run applied for resources no longer configured.
///
/// A stored lock of a configured resource goes to the backend, whose first
/// `try_lock` of it resumes as master (acquire steps are idempotent). The
/// others are let go (unlocked, closed, removed from the store) only once
/// every orphan record was undone; if one could not be, they stay held (in
/// the store too) and are returned, to be kept until exit: the next start
/// or `cleanup` retries.
pub(super) async fn adopt(
    stored: Vec<Stored>,
    fb: Option<&FileBackend>,
    instance: &Instance,
    cfg: &Config,
    backend: &Arc<dyn LockBackend>,
) -> Vec<Adopted> {
    for Stored { name, fd } in stored {
        let refused = match fb {
            Some(fb) if name.starts_with("lock.") => match fb.adopt(fd, name.clone()) {
                Ok(()) => continue,
                Err((_fd, why)) => why,
            },
            Some(_) => "not a lock fd of ours".to_string(),
            None => format!("the {} backend stores no fds", cfg.lock.backend),
        };
        tracing::warn!("dropping {name:?} from systemd's fd store: {refused}");
        if let Err(e) = FdStore::remove(&name) {
            tracing::warn!("{e}");
        }
    }
    let configured: Vec<&str> = cfg.resources.iter().map(|r| r.name.as_str()).collect();
    let mut all_undone = true;
    for (name, record) in instance.orphans(&configured) {
        let span = tracing::info_span!("resource", resource = %name);
        all_undone &= undo_orphan(&name, &record, Some(backend), cfg)
            .instrument(span)
            .await;
    }
    let locks: Vec<&str> = cfg.resources.iter().map(|r| r.lock.as_str()).collect();
    let unconfigured = fb.map(|fb| fb.unconfigured(&locks)).unwrap_or_default();
    if !all_undone {
        for a in &unconfigured {
            tracing::error!(
                "keeping {} (stored lock of a resource no longer configured) until what it stood for is undone: the next start or `dlm-electd cleanup` retries",
                a.name
            );
        }
        return unconfigured;
    }
    for a in unconfigured {
        tracing::info!(
            "letting go of {}: a stored lock of a resource no longer configured, nothing of it left applied",
            a.name
        );
        let _ = ofd_setlk(&a.file, false);
        if let Err(e) = FdStore::remove(&a.name) {
            tracing::warn!("{e}");
        }
    }
    Vec::new()
}

/// Undoes what an orphan record (a resource no longer configured) says was
/// applied, then drops lock state the node keeps for it. False if
/// something is left.
pub(super) async fn undo_orphan(
    name: &str,
    record: &Record,
    backend: Option<&Arc<dyn LockBackend>>,
    cfg: &Config,
) -> bool {
    let applied = match record.read() {
        Ok(a) => a,
        Err(e) => {
            // Not a failure that should hold locks hostage: an older
            // version's record names nothing we could undo.
            tracing::warn!(
                "resource no longer configured, and its applied record cannot be undone: {e}; check by hand and remove the record"
            );
            return true;
        }
    };
    tracing::info!(
        "resource no longer configured, but a previous run applied it ({}): undoing that",
        record.path().display()
    );
    let ctx = crate::action::Ctx {
        resource: name.to_string(),
        node: cfg.node.clone(),
    };
    if let Err(e) = crate::action::release_all(&applied.actions, &ctx).await {
        tracing::error!("release actions failed: {e}");
        return false;
    }
    record.clear();
    let Some(backend) = backend else {
        return true;
    };
    let ok = drop_stale(backend, &applied.lock, cfg.daemon.op_timeout).await;
    if ok {
        tracing::info!("undone: release steps run, lock state dropped");
    }
    ok
}

/// `clear_stale` on the blocking pool under `limit`.
pub(super) async fn drop_stale(
    backend: &Arc<dyn LockBackend>,
    lock: &str,
    limit: Duration,
) -> bool {
    let (b, l) = (backend.clone(), lock.to_string());
    let call = tokio::task::spawn_blocking(move || b.clear_stale(&l));
    match tokio::time::timeout(limit, call).await {
        // The backend cannot tell whether there was anything to drop: the
        // callers say what they did, once per resource.
        Ok(Ok(Ok(()))) => {
            tracing::debug!("no lock state left for {lock}");
            true
        }
        Ok(Ok(Err(e))) => {
            tracing::error!("{e}");
            false
        }
        _ => {
            tracing::error!("dropping the lock did not finish within {limit:?}");
            false
        }
    }
}
