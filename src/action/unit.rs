//! `unit` actions: start a systemd unit on acquire, stop it on release,
//! each waiting for systemd's job to finish and judging its result, under
//! the action's timeout. Both are idempotent: starting an active unit and
//! stopping an inactive one succeed.
//!
//! A standby must not run the unit either (it may have been started at
//! boot, or by hand): `stop_if_active` is what the startup reconcile runs
//! for unit actions, with or without an applied record (see `action::reconcile`).

use super::step::Step;
use crate::config::UnitSpec;
use crate::systemd::{Job, Manager};
use std::time::Duration;
use tokio::time::{Instant, timeout_at};

/// Why a unit step failed.
#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    /// systemd's job (or reaching systemd) outlasted the action's timeout.
    #[error("{unit} did not finish within the action's timeout ({limit:?})")]
    Timeout { unit: String, limit: Duration },
    /// systemd could not be reached, or refused or failed the job (its
    /// `JobRemoved` result, as `systemd` words it).
    #[error("{0}")]
    Systemd(String),
    /// A failed start whose stop afterwards failed as well.
    #[error("{start}; stopping it afterwards failed too, it may still be starting: {stop}")]
    StopAfterStart {
        start: Box<UnitError>,
        stop: Box<UnitError>,
    },
}

pub async fn run(spec: &UnitSpec, step: Step) -> Result<(), UnitError> {
    match step {
        Step::Acquire => start(spec).await,
        Step::Release => {
            let deadline = Instant::now() + spec.timeout;
            let m = by(deadline, spec, Manager::connect()).await?;
            by(deadline, spec, m.run_job(Job::Stop, &spec.unit)).await
        }
    }
}

/// Runs `f` until `deadline`, the end of the action's timeout.
async fn by<T, E: std::fmt::Display>(
    deadline: Instant,
    spec: &UnitSpec,
    f: impl Future<Output = Result<T, E>>,
) -> Result<T, UnitError> {
    match timeout_at(deadline, f).await {
        Ok(done) => done.map_err(|e| UnitError::Systemd(e.to_string())),
        Err(_) => Err(UnitError::Timeout {
            unit: spec.unit.clone(),
            limit: spec.timeout,
        }),
    }
}

/// A failed start leaves nothing behind, like any action's failed acquire:
/// a start job still running past our timeout would bring the unit up on a
/// node that gave mastership up, and so would a failed unit with
/// `Restart=` that systemd restarts later. So once a start was asked for,
/// a failure stops the unit (within a timeout of its own).
async fn start(spec: &UnitSpec) -> Result<(), UnitError> {
    let deadline = Instant::now() + spec.timeout;
    // Without a bus nothing was queued: nothing to undo.
    let m = by(deadline, spec, Manager::connect()).await?;
    let Err(e) = by(deadline, spec, m.run_job(Job::Start, &spec.unit)).await else {
        return Ok(());
    };
    let deadline = Instant::now() + spec.timeout;
    match by(deadline, spec, m.run_job(Job::Stop, &spec.unit)).await {
        Ok(()) => Err(e),
        Err(e2) => Err(UnitError::StopAfterStart {
            start: Box::new(e),
            stop: Box::new(e2),
        }),
    }
}

/// A node that is not master stops the unit if it runs: the unit may have
/// been enabled (started at boot on every node) or started by hand, and two
/// copies defeat the election.
pub async fn stop_if_active(spec: &UnitSpec) -> Result<(), UnitError> {
    let deadline = Instant::now() + spec.timeout;
    by(deadline, spec, async {
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
