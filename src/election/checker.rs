//! The health check's runs (`[resource.check]`), in a task of its own
//! beside the runner; the pure `health` turns their results into the
//! verdict the runner feeds to the machine (`Event::Eligible`).

use super::health::Health;
use crate::action::exec::ExecError;
use crate::action::{self, Cancel, Ctx};
use crate::config::CheckSpec;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

/// One health-check run's outcome: Err says why it failed.
pub(super) type CheckResult = Result<(), ExecError>;

/// The running health check: a task of its own, so a slow check never
/// holds up the runner (its answers to pings, its lock calls).
pub(super) struct Checker {
    results: mpsc::Receiver<CheckResult>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    pub(super) health: Health,
    /// Why the last run failed, for status.
    pub(super) error: Option<String>,
}

impl Checker {
    pub(super) fn start(spec: &CheckSpec, ctx: Ctx) -> Checker {
        let (tx, results) = mpsc::channel(1);
        let (stop, cancel) = Cancel::new();
        let task = tokio::spawn(check_loop(spec.clone(), ctx, tx, cancel).in_current_span());
        Checker {
            results,
            stop,
            task,
            health: Health::new(spec.fall, spec.rise),
            error: None,
        }
    }

    /// Stops the loop, killing a running check's process group, and waits
    /// for it (bounded: the kill takes at most exec's grace time).
    pub(super) async fn stop(self) {
        let _ = self.stop.send(true);
        let abort = self.task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }

    /// Records one run; returns the new eligibility when it changed.
    pub(super) fn record(&mut self, r: CheckResult) -> Option<bool> {
        let changed = self.health.record(r.is_ok());
        match (&r, changed) {
            (Ok(()), Some(_)) => tracing::info!(
                "health check passed {} time(s) in a row: eligible for mastership",
                self.health.passed_in_row()
            ),
            (Err(e), Some(_)) => {
                tracing::warn!("health check failing, not eligible for mastership: {e}")
            }
            (Err(e), None) if self.error.is_none() => tracing::warn!("health check failed: {e}"),
            (Err(e), None) => tracing::debug!("health check failed: {e}"),
            (Ok(()), None) => tracing::debug!("health check passed"),
        }
        self.error = r.err().map(|e| e.to_string());
        changed
    }
}

/// Runs the check every `interval` (start to start; a run that overruns
/// delays the next rather than overlapping it) until stopped.
async fn check_loop(
    spec: CheckSpec,
    ctx: Ctx,
    results: mpsc::Sender<CheckResult>,
    mut cancel: Cancel,
) {
    let mut tick = tokio::time::interval(spec.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = cancel.cancelled() => return,
        }
        let r = action::exec::run_argv(
            &spec.exec,
            &spec.env,
            spec.timeout,
            "check",
            &ctx,
            cancel.clone(),
        )
        .await;
        if cancel.is_cancelled() || results.send(r).await.is_err() {
            return;
        }
    }
}

/// The next check result; never, without a check.
pub(super) async fn next_result(checker: &mut Option<Checker>) -> Option<CheckResult> {
    match checker {
        Some(c) => c.results.recv().await,
        None => std::future::pending().await,
    }
}
