//! What a failed action run tells its caller: which step failed, and how
//! (`ActionError`, one variant per action kind, each with its own typed
//! error), so a caller can tell a timeout from a refusal or a cancel
//! (`ActionError::kind`). The texts are the ones logged and shown by
//! `status`; tests match them.

use super::exec::ExecError;
use super::unit::UnitError;
use super::vip::VipError;

/// Why one half of one action failed.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    Vip(#[from] VipError),
    #[error(transparent)]
    Unit(#[from] UnitError),
    /// Not started: the daemon is stopping (later acquire steps after a
    /// cancel).
    #[error("cancelled: the daemon is stopping")]
    Cancelled,
}

/// How an action failed, across action kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// It outlasted its timeout (and was stopped).
    Timeout,
    /// The daemon is stopping: stopped, or never started.
    Cancelled,
    /// It declined to act on what it found: an address the node owns, a
    /// kernel without the address mark, a burst that cannot fit in its
    /// timeout, a VIP gone before its re-announcement.
    Refused,
    /// Anything else: a hook's failing exit, systemd's failed job, an
    /// error from the kernel.
    Failed,
}

impl ActionError {
    pub fn kind(&self) -> Kind {
        match self {
            ActionError::Exec(e) => match e {
                ExecError::Timeout { .. } => Kind::Timeout,
                ExecError::Cancelled { .. } => Kind::Cancelled,
                ExecError::Spawn { .. } | ExecError::Exit { .. } | ExecError::Wait { .. } => {
                    Kind::Failed
                }
            },
            ActionError::Vip(e) => vip_kind(e),
            ActionError::Unit(e) => unit_kind(e),
            ActionError::Cancelled => Kind::Cancelled,
        }
    }
}

fn vip_kind(e: &VipError) -> Kind {
    match e {
        VipError::Timeout { .. } => Kind::Timeout,
        VipError::BurstTooLong { .. }
        | VipError::Foreign { .. }
        | VipError::NoMark(_)
        | VipError::Gone { .. } => Kind::Refused,
        // What went wrong first decides; the removal after it is extra.
        VipError::RollbackFailed { error, .. } => vip_kind(error),
        VipError::NoInterface(_)
        | VipError::StillThere { .. }
        | VipError::Netlink { .. }
        | VipError::Announce(_) => Kind::Failed,
    }
}

fn unit_kind(e: &UnitError) -> Kind {
    match e {
        UnitError::Timeout { .. } => Kind::Timeout,
        UnitError::Systemd(_) => Kind::Failed,
        UnitError::StopAfterStart { start, .. } => unit_kind(start),
    }
}

/// Step `step` (1-based, in config order) failed; `what` names it as
/// messages do (`exec PROGRAM`, or the action itself).
#[derive(Debug, thiserror::Error)]
#[error("action {step} ({what}): {error}")]
pub struct StepFailed {
    pub step: usize,
    pub what: String,
    pub error: ActionError,
}

/// A failed acquire: the step that failed, and whether the rollback undid
/// everything.
#[derive(Debug, thiserror::Error)]
#[error("action {step} ({what}) failed: {error}", step = .failed.step, what = .failed.what, error = .failed.error)]
pub struct AcquireFailed {
    pub failed: StepFailed,
    pub clean: bool,
}

/// A failed release or reconcile.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseFailed {
    /// A release step failed: it and the steps before it stay applied.
    #[error(transparent)]
    Step(StepFailed),
    /// A standby's reconcile without a record: every unit it could not
    /// stop (the others were stopped).
    #[error("{}", joined(.0))]
    Standby(Vec<StepFailed>),
}

fn joined(steps: &[StepFailed]) -> String {
    steps
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn step(n: usize, error: ActionError) -> StepFailed {
        StepFailed {
            step: n,
            what: "exec /bin/x".into(),
            error,
        }
    }

    /// The texts the untyped errors had: logs, `status` and tests read them.
    #[test]
    fn texts_are_the_untyped_ones() {
        let timeout = ActionError::from(ExecError::Timeout {
            program: "/bin/x".into(),
            event: "acquire",
            limit: Duration::from_secs(2),
        });
        let failed = AcquireFailed {
            failed: step(2, timeout),
            clean: true,
        };
        assert_eq!(
            failed.to_string(),
            "action 2 (exec /bin/x) failed: /bin/x acquire timed out after 2s; its process group was killed"
        );
        let standby = ReleaseFailed::Standby(vec![
            step(3, ActionError::Cancelled),
            step(1, ActionError::Unit(UnitError::Systemd("no bus".into()))),
        ]);
        assert_eq!(
            standby.to_string(),
            "action 3 (exec /bin/x): cancelled: the daemon is stopping; action 1 (exec /bin/x): no bus"
        );
    }

    #[test]
    fn a_caller_tells_a_timeout_from_a_refusal_and_a_cancel() {
        let vip_timeout = VipError::Timeout {
            what: "removing",
            limit: Duration::from_secs(1),
        };
        let foreign = VipError::Foreign {
            address: "198.51.100.1".parse().unwrap(),
            prefix_len: 24,
            interface: "eth0".into(),
        };
        assert_eq!(ActionError::from(vip_timeout).kind(), Kind::Timeout);
        let rolled_back = VipError::RollbackFailed {
            error: Box::new(foreign),
            removal: Box::new(VipError::NoInterface("eth0".into())),
        };
        assert_eq!(ActionError::from(rolled_back).kind(), Kind::Refused);
        assert_eq!(ActionError::Cancelled.kind(), Kind::Cancelled);
        let unit = UnitError::Timeout {
            unit: "web.service".into(),
            limit: Duration::from_secs(5),
        };
        assert_eq!(ActionError::from(unit).kind(), Kind::Timeout);
    }
}
