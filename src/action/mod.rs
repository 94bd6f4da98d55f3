//! Actions: what a resource does on becoming master and undoes on giving
//! mastership up. Becoming master runs them in order; giving up runs their
//! inverses in reverse order. Every action is idempotent and bounded by its
//! own timeout.

pub mod announce;
pub mod exec;
pub mod vip;

use crate::config::ActionSpec;
use std::time::Duration;

/// Which half of an action to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Acquire,
    Release,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Acquire => "acquire",
            Step::Release => "release",
        }
    }
}

/// Who runs the action, for logs and the hooks' environment.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub resource: String,
    pub node: String,
}

pub async fn run(action: &ActionSpec, step: Step, ctx: &Ctx) -> Result<(), String> {
    match action {
        ActionSpec::Exec(e) => exec::run(e, step, ctx).await,
        ActionSpec::Vip(v) => vip::run(v, step, ctx).await,
    }
}

/// A failed acquire: why, and whether the rollback undid everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcquireFailed {
    pub msg: String,
    pub clean: bool,
}

/// Runs the acquire half of every action in order. When action k fails,
/// actions k-1..1 are reverted in reverse order (the contract; each
/// action is expected to leave nothing behind when its own acquire fails).
pub async fn acquire_all(actions: &[ActionSpec], ctx: &Ctx) -> Result<(), AcquireFailed> {
    for (k, action) in actions.iter().enumerate() {
        if let Err(e) = run(action, Step::Acquire, ctx).await {
            let msg = format!("action {} ({action}) failed: {e}", k + 1);
            tracing::error!(resource = %ctx.resource, "{msg}; rolling back");
            let clean = revert(&actions[..k], ctx).await.is_ok();
            return Err(AcquireFailed { msg, clean });
        }
    }
    Ok(())
}

/// Runs the release half of every action in reverse order. A failure does
/// not stop the others: undo as much as possible, then report.
pub async fn release_all(actions: &[ActionSpec], ctx: &Ctx) -> Result<(), String> {
    revert(actions, ctx).await
}

async fn revert(actions: &[ActionSpec], ctx: &Ctx) -> Result<(), String> {
    let mut errors = Vec::new();
    for (k, action) in actions.iter().enumerate().rev() {
        if let Err(e) = run(action, Step::Release, ctx).await {
            tracing::error!(resource = %ctx.resource, "release of action {} ({action}) failed: {e}", k + 1);
            errors.push(format!("action {} ({action}): {e}", k + 1));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// What runs for as long as we are master: periodic re-announcements of
/// VIPs that ask for it. Never returns.
pub async fn while_master(actions: Vec<ActionSpec>, ctx: Ctx) {
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
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tick.tick().await;
        for v in &vips {
            if let Err(e) = vip::announce(v).await {
                tracing::warn!(resource = %ctx.resource, "re-announcing {}: {e}", v.address);
            }
        }
    }
}
