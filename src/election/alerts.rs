//! Transition alerts (`[[notify]]`): the resource's notify programs, run
//! for each of its state changes, in order, on a task of their own.
//!
//! The election never waits for them: a change is queued without
//! blocking (a bounded backlog; what overflows is counted, logged, and
//! told to the next alert that runs as `DLM_ELECTD_DROPPED`), and each
//! program runs like an exec hook (own process group, tracked for the
//! keeper and `cleanup`, killed with its group at its `timeout`). A hung
//! alert program delays the next alert of its resource, never a handover.

use crate::action::{Cancel, Ctx, exec};
use crate::config::NotifySpec;
use crate::state::Status;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

/// Alerts of one resource waiting to run; beyond this they are dropped.
/// A resource changes state a few times per failover: 64 is minutes of
/// backlog with a slow webhook, not an ordinary burst.
pub const BACKLOG: usize = 64;
/// At the runner's end (stop, reload), what is queued gets this long to
/// run; then the running program's group is killed, the rest dropped.
const DRAIN: Duration = Duration::from_secs(5);

/// One state change, for the programs that want it.
struct Alert {
    specs: Vec<NotifySpec>,
    env: BTreeMap<String, String>,
}

/// A resource's alert queue and the task that runs it (started with the
/// first alert).
pub(super) struct Alerts {
    ctx: Ctx,
    queue: Option<(mpsc::Sender<Alert>, JoinHandle<()>)>,
    stop: watch::Sender<bool>,
    cancel: Cancel,
    /// Alerts dropped since the last one queued.
    dropped: u64,
}

impl Alerts {
    pub(super) fn new(ctx: Ctx) -> Alerts {
        let (stop, cancel) = Cancel::new();
        Alerts {
            ctx,
            queue: None,
            stop,
            cancel,
            dropped: 0,
        }
    }

    /// The resource went from `previous` (None: its first state) to
    /// `state`; `seq` counts its changes. Never waits.
    pub(super) fn changed(
        &mut self,
        specs: &[NotifySpec],
        previous: Option<Status>,
        state: Status,
        reason: Option<&str>,
        seq: u64,
    ) {
        let wanted: Vec<NotifySpec> = specs
            .iter()
            .filter(|n| n.states.as_ref().is_none_or(|s| s.contains(&state)))
            .cloned()
            .collect();
        if wanted.is_empty() {
            return;
        }
        let env = BTreeMap::from([
            ("DLM_ELECTD_STATE".into(), state.as_str().into()),
            (
                "DLM_ELECTD_PREVIOUS_STATE".into(),
                previous.map(Status::as_str).unwrap_or("").into(),
            ),
            ("DLM_ELECTD_REASON".into(), reason.unwrap_or("").into()),
            ("DLM_ELECTD_SEQ".into(), seq.to_string()),
            ("DLM_ELECTD_DROPPED".into(), self.dropped.to_string()),
        ]);
        let (ctx, cancel) = (self.ctx.clone(), self.cancel.clone());
        let (tx, _) = self.queue.get_or_insert_with(|| {
            let (tx, rx) = mpsc::channel(BACKLOG);
            (tx, tokio::spawn(deliver(rx, ctx, cancel).in_current_span()))
        });
        match tx.try_send(Alert { specs: wanted, env }) {
            Ok(()) => self.dropped = 0,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped += 1;
                if self.dropped == 1 {
                    tracing::warn!(
                        "notify: {BACKLOG} alerts are waiting for slow notify programs; dropping alerts until one ran (the next says how many in DLM_ELECTD_DROPPED)"
                    );
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// The runner ends: the queued alerts (its last change included) get
    /// `DRAIN` to run, then the running program is stopped.
    pub(super) async fn finish(&mut self) {
        let Some((tx, mut task)) = self.queue.take() else {
            return;
        };
        drop(tx);
        if tokio::time::timeout(DRAIN, &mut task).await.is_err() {
            tracing::warn!("notify: alerts still running {DRAIN:?} after the stop; stopping them");
            let _ = self.stop.send(true);
            let _ = task.await;
        }
    }
}

/// Runs each queued alert's programs in order, until the queue closes or
/// the stop.
async fn deliver(mut rx: mpsc::Receiver<Alert>, ctx: Ctx, cancel: Cancel) {
    while let Some(a) = rx.recv().await {
        for n in &a.specs {
            if cancel.is_cancelled() {
                return;
            }
            let mut env = n.env.clone();
            env.extend(a.env.clone());
            if let Err(e) =
                exec::run_argv(&n.exec, &env, n.timeout, "notify", &ctx, cancel.clone()).await
            {
                tracing::warn!(
                    "notify program for state {}: {e}",
                    a.env["DLM_ELECTD_STATE"]
                );
            }
        }
    }
}
