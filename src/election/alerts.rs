//! Transition alerts (`[[notify]]`): the resource's notify programs, run
//! for each of its state changes, in order, on a task of their own.
//!
//! The election never waits for them: a change is queued without
//! blocking, and each program runs like an exec hook (own process group,
//! tracked for the keeper and `cleanup`, killed with its group at its
//! `timeout`). A hung alert program delays the next alert of its resource,
//! never a handover. The backlog is bounded: when it is full the *oldest*
//! waiting alert is dropped, never the newest, so the resource's current
//! state is always told; the drops are counted, logged, and told to the
//! next alert that runs (`DLM_ELECTD_DROPPED`). Each alert carries the
//! time of its change (`DLM_ELECTD_SINCE_MS`), since it may run late.

use super::status::ResourceStatus;
use crate::action::{Cancel, Ctx, exec};
use crate::config::NotifySpec;
use crate::state::Status;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

/// Alerts of one resource waiting to run; beyond this the oldest are
/// dropped. A resource changes state a few times per failover: 64 is
/// minutes of backlog with a slow webhook, not an ordinary burst.
pub const BACKLOG: usize = 64;
/// At the runner's end (stop, reload), what is queued gets this long to
/// run; then the running program's group is killed, the rest dropped.
const DRAIN: Duration = Duration::from_secs(5);

/// One state change, for the programs that want it.
struct Alert {
    specs: Vec<NotifySpec>,
    env: BTreeMap<String, String>,
}

/// The waiting alerts, shared by the runner (pushes) and the task (takes).
#[derive(Default)]
struct Queue {
    state: Mutex<Waiting>,
    ready: Notify,
}

#[derive(Default)]
struct Waiting {
    alerts: VecDeque<Alert>,
    /// Dropped since the last alert taken.
    dropped: u64,
    /// No more alerts will come (the runner ends).
    closed: bool,
}

/// A resource's alert queue and the task that runs it (started with the
/// first alert).
pub(super) struct Alerts {
    ctx: Ctx,
    queue: Option<(Arc<Queue>, JoinHandle<()>)>,
    stop: watch::Sender<bool>,
    cancel: Cancel,
}

impl Alerts {
    pub(super) fn new(ctx: Ctx) -> Alerts {
        let (stop, cancel) = Cancel::new();
        Alerts {
            ctx,
            queue: None,
            stop,
            cancel,
        }
    }

    /// The resource went from `previous` (None: its first state) to
    /// `now`'s state. Never waits.
    pub(super) fn changed(
        &mut self,
        specs: &[NotifySpec],
        previous: Option<Status>,
        now: &ResourceStatus,
        reason: Option<&str>,
    ) {
        let (state, seq, since_ms) = (now.state, now.transitions, now.since_ms);
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
            ("DLM_ELECTD_SINCE_MS".into(), since_ms.to_string()),
            (
                "DLM_ELECTD_EPOCH".into(),
                now.epoch.map(|e| e.to_string()).unwrap_or_default(),
            ),
        ]);
        let (ctx, cancel) = (self.ctx.clone(), self.cancel.clone());
        let (queue, _) = self.queue.get_or_insert_with(|| {
            let q = Arc::new(Queue::default());
            (
                q.clone(),
                tokio::spawn(deliver(q, ctx, cancel).in_current_span()),
            )
        });
        let mut w = queue.state.lock().unwrap();
        if w.alerts.len() >= BACKLOG {
            w.alerts.pop_front();
            w.dropped += 1;
            if w.dropped == 1 {
                tracing::warn!(
                    "notify: {BACKLOG} alerts are waiting for slow notify programs; dropping the oldest (the next to run says how many in DLM_ELECTD_DROPPED)"
                );
            }
        }
        w.alerts.push_back(Alert { specs: wanted, env });
        drop(w);
        queue.ready.notify_one();
    }

    /// The runner ends: the queued alerts (its last change included) get
    /// `DRAIN` to run, then the running program is stopped.
    pub(super) async fn finish(&mut self) {
        let Some((queue, mut task)) = self.queue.take() else {
            return;
        };
        queue.state.lock().unwrap().closed = true;
        queue.ready.notify_one();
        if tokio::time::timeout(DRAIN, &mut task).await.is_err() {
            tracing::warn!("notify: alerts still running {DRAIN:?} after the stop; stopping them");
            let _ = self.stop.send(true);
            let _ = task.await;
        }
    }
}

/// The next alert, with how many were dropped before it; None once closed
/// and empty.
async fn next(queue: &Queue) -> Option<(Alert, u64)> {
    loop {
        {
            let mut w = queue.state.lock().unwrap();
            if let Some(a) = w.alerts.pop_front() {
                return Some((a, std::mem::take(&mut w.dropped)));
            }
            if w.closed {
                return None;
            }
        }
        // A notify_one before this wait is kept as a permit: no lost wake-up.
        queue.ready.notified().await;
    }
}

/// Runs each queued alert's programs in order, until the queue closes or
/// the stop.
async fn deliver(queue: Arc<Queue>, ctx: Ctx, cancel: Cancel) {
    while let Some((a, dropped)) = next(&queue).await {
        for n in &a.specs {
            if cancel.is_cancelled() {
                return;
            }
            let mut env = n.env.clone();
            env.extend(a.env.clone());
            env.insert("DLM_ELECTD_DROPPED".into(), dropped.to_string());
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
