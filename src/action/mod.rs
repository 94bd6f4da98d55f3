//! Actions: what a resource does on becoming master and undoes on giving
//! mastership up. Becoming master runs them in order; giving up runs their
//! inverses in reverse order. Every action is idempotent and bounded by its
//! own timeout.

pub mod announce;
mod error;
pub mod exec;
pub mod hooks;
mod step;
pub mod unit;
pub mod vip;

pub use error::{AcquireFailed, ActionError, Kind, ReleaseFailed, StepFailed};
pub use step::{Cancel, Ctx, Step};

use crate::config::ActionSpec;
use std::time::Duration;

/// Runs one half of one action. `cancel` stops a running hook (its group
/// is terminated as on timeout).
pub async fn run(
    action: &ActionSpec,
    step: Step,
    ctx: &Ctx,
    cancel: Cancel,
) -> Result<(), ActionError> {
    let done = match action {
        ActionSpec::Exec(e) => exec::run(e, step, ctx, cancel).await.map_err(Into::into),
        ActionSpec::Vip(v) => vip::run(v, step).await.map_err(Into::into),
        ActionSpec::Unit(u) => unit::run(u, step).await.map_err(Into::into),
    };
    // A takeover of many resources allocates (netlink buffers) and frees
    // it all at once: give it back when the burst is over.
    crate::memory::after_burst();
    done
}

/// How an action is named in messages: the program of the step that ran.
fn describe(action: &ActionSpec, step: Step) -> String {
    match action {
        ActionSpec::Exec(e) => {
            let argv = match step {
                Step::Acquire => &e.acquire,
                Step::Release => &e.release,
            };
            format!("exec {}", argv.as_ref().map_or("-", |a| a[0].as_str()))
        }
        other => other.to_string(),
    }
}

/// Runs the acquire half of every action in order. When action k fails,
/// times out or is cancelled (shutdown), actions k..1 are reverted in
/// reverse order: step k itself may have half-applied before it failed or
/// was interrupted, and release steps are idempotent.
pub async fn acquire_all(
    actions: &[ActionSpec],
    ctx: &Ctx,
    cancel: Cancel,
) -> Result<(), AcquireFailed> {
    for (k, action) in actions.iter().enumerate() {
        // A cancelled step (exec) stops its hook and fails; the others are
        // bounded by their own timeouts. Later steps do not start.
        let r = if cancel.is_cancelled() {
            Err(ActionError::Cancelled)
        } else {
            run(action, Step::Acquire, ctx, cancel.clone()).await
        };
        if let Err(error) = r {
            let failed = StepFailed {
                step: k + 1,
                what: describe(action, Step::Acquire),
                error,
            };
            tracing::info!("rolling back actions {}..1", k + 1);
            let clean = revert(&actions[..=k], ctx).await.is_ok();
            return Err(AcquireFailed { failed, clean });
        }
    }
    Ok(())
}

/// Runs the release half of every action in reverse order, and stops at
/// the first that fails: what comes before it stays applied, so the node
/// keeps a consistent prefix (its VIP stays with its still-running service)
/// while it holds the lock and retries; the retry runs them all again
/// (release steps are idempotent).
pub async fn release_all(actions: &[ActionSpec], ctx: &Ctx) -> Result<(), ReleaseFailed> {
    revert(actions, ctx).await.map_err(ReleaseFailed::Step)
}

/// Whether a node that finds the lock busy has something to check even
/// without an applied record: a unit action (see `reconcile`).
pub fn checks_on_standby(actions: &[ActionSpec]) -> bool {
    actions.iter().any(|a| matches!(a, ActionSpec::Unit(_)))
}

/// The startup reconcile of a node that found the lock busy. With this
/// instance's applied record (`ours`), every release step runs: a crashed
/// predecessor of ours may have left any of them applied. Without it, VIPs
/// and hooks may be another instance's on this host, so only unit actions
/// run, as `unit::stop_if_active`: a systemd unit is per host, so one that
/// runs here is never another instance's master (two resources managing one
/// unit are refused by the config check), and it may have been started at
/// boot or by hand, without any record.
pub async fn reconcile(actions: &[ActionSpec], ctx: &Ctx, ours: bool) -> Result<(), ReleaseFailed> {
    if ours {
        return release_all(actions, ctx).await;
    }
    let mut errors = Vec::new();
    for (k, action) in actions.iter().enumerate().rev() {
        if let ActionSpec::Unit(u) = action
            && let Err(e) = unit::stop_if_active(u).await
        {
            tracing::error!("stopping {action} on a standby failed: {e}");
            errors.push(StepFailed {
                step: k + 1,
                what: action.to_string(),
                error: e.into(),
            });
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ReleaseFailed::Standby(errors))
    }
}

async fn revert(actions: &[ActionSpec], ctx: &Ctx) -> Result<(), StepFailed> {
    for (k, action) in actions.iter().enumerate().rev() {
        if let Err(error) = run(action, Step::Release, ctx, Cancel::never()).await {
            let what = describe(action, Step::Release);
            tracing::error!(
                "release of action {} ({what}) failed: {error}; actions {k}..1 stay applied",
                k + 1
            );
            return Err(StepFailed {
                step: k + 1,
                what,
                error,
            });
        }
    }
    Ok(())
}

/// What runs for as long as we are master: periodic re-announcements of
/// VIPs that ask for it. Never returns.
pub async fn while_master(actions: Vec<ActionSpec>) {
    let vips: Vec<_> = actions
        .into_iter()
        .filter_map(|a| match a {
            ActionSpec::Vip(v) if !v.refresh.is_zero() => Some(v),
            _ => None,
        })
        .collect();
    if vips.is_empty() {
        return std::future::pending().await;
    }
    let every = vips
        .iter()
        .map(|v| v.refresh)
        .min()
        .unwrap_or(Duration::MAX);
    let mut tick = tokio::time::interval_at(crate::clock::from_now(every), every);
    loop {
        tick.tick().await;
        // Right after a freeze, not before the node's membership was
        // judged (dlmfs): a node in doubt announces nothing more.
        // Boxed, here and below: this loop lives as long as mastership, one
        // per resource, and only these rare steps' states are large.
        if !Box::pin(crate::membership::judged(crate::membership::TICK * 5)).await {
            continue;
        }
        for v in &vips {
            if let Err(e) = Box::pin(vip::announce(v)).await {
                tracing::warn!("re-announcing {}: {e}", v.address);
            }
        }
        crate::memory::after_burst();
    }
}

#[cfg(test)]
mod refresh_tests {
    use super::*;
    use crate::config::VipSpec;

    /// A refresh too long for the clock used to panic the runner the
    /// moment it became master (issue #19, item 3); now its first
    /// re-announce is merely never due.
    #[tokio::test]
    async fn a_refresh_past_the_clock_waits_instead_of_panicking() {
        let vip = VipSpec {
            address: "198.51.100.1".parse().unwrap(),
            prefix_len: 32,
            interface: "eth0".into(),
            announce_count: 0,
            announce_interval: Duration::from_millis(200),
            refresh: humantime::parse_duration("300000000000years").unwrap(),
            timeout: Duration::from_secs(10),
            track_link: true,
        };
        // It computed its first deadline (and panicked) at its first poll.
        let r = tokio::time::timeout(
            Duration::from_millis(1),
            while_master(vec![ActionSpec::Vip(vip)]),
        )
        .await;
        assert!(r.is_err(), "while_master never returns");
    }
}
