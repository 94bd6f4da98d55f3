//! `unit` actions: start a systemd unit on acquire, stop it on release,
//! each waiting for systemd's job to finish and judging its result, under
//! the action's timeout. Both are idempotent: starting an active unit and
//! stopping an inactive one succeed.
//!
//! A standby must not run the unit either (it may have been started at
//! boot, or by hand): `stop_if_active` is what the startup reconcile runs
//! for unit actions, with or without an applied record (see `super::reconcile`).

use super::Step;
use crate::config::UnitSpec;
use crate::systemd::{Job, Manager};
use tokio::time::timeout;

pub async fn run(spec: &UnitSpec, step: Step) -> Result<(), String> {
    match step {
        Step::Acquire => start(spec).await,
        Step::Release => bounded(spec, stop(&spec.unit)).await,
    }
}

/// Runs `f` under the action's timeout.
async fn bounded(
    spec: &UnitSpec,
    f: impl Future<Output = Result<(), String>>,
) -> Result<(), String> {
    timeout(spec.timeout, f).await.unwrap_or_else(|_| {
        Err(format!(
            "{} did not finish within the action's timeout ({:?})",
            spec.unit, spec.timeout
        ))
    })
}

async fn stop(unit: &str) -> Result<(), String> {
    Manager::connect().await?.run_job(Job::Stop, unit).await
}

/// A failed start leaves nothing behind, like any action's failed acquire:
/// a start job still running past our timeout would bring the unit up on a
/// node that gave mastership up, and so would a failed unit with
/// `Restart=` that systemd restarts later. So the unit is stopped (under a
/// timeout of its own), whatever made the start fail.
async fn start(spec: &UnitSpec) -> Result<(), String> {
    let started = bounded(spec, async {
        Manager::connect()
            .await?
            .run_job(Job::Start, &spec.unit)
            .await
    })
    .await;
    let Err(e) = started else { return Ok(()) };
    match bounded(spec, stop(&spec.unit)).await {
        Ok(()) => Err(e),
        Err(e2) => Err(format!(
            "{e}; stopping it afterwards failed too, it may still be starting: {e2}"
        )),
    }
}

/// A node that is not master stops the unit if it runs: the unit may have
/// been enabled (started at boot on every node) or started by hand, and two
/// copies defeat the election.
pub async fn stop_if_active(spec: &UnitSpec) -> Result<(), String> {
    bounded(spec, async {
        let m = Manager::connect().await?;
        let state = m.active_state(&spec.unit).await?;
        if matches!(state.as_str(), "inactive" | "failed") {
            tracing::debug!("unit {} is {state}: nothing to stop on a standby", spec.unit);
            return Ok(());
        }
        tracing::warn!(
            "unit {} is {state} on a node that is not master (enabled, or started by hand?): stopping it",
            spec.unit
        );
        m.run_job(Job::Stop, &spec.unit).await
    })
    .await
}
