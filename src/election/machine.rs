//! The election state machine of one resource: pure, no clock, no I/O.
//!
//! The runner feeds it events (a lock attempt's outcome, actions finished, a
//! timer, an admin request) and carries out the one command it returns.
//! Exactly one operation is outstanding at any time, so at most one lock
//! call per resource is in flight.
//!
//! Rules it encodes (see DESIGN.md):
//! - the lock is given up only after our side effects are undone: if release
//!   actions fail we keep the lock and retry them, so another node never
//!   takes over while ours still stand;
//! - at startup the first attempt decides: won → run acquire actions (they
//!   are idempotent, this resumes after a crash); lost → run release actions
//!   once to clear what a crashed instance may have left;
//! - a failed acquire backs off (2× poll, doubling, capped) so another node
//!   gets its turn.

use crate::lock::LockError;
use serde::Serialize;
use std::time::Duration;

pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What status reports for a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Standby,
    Acquiring,
    Master,
    Releasing,
    Backoff,
    Stalled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Standby => "standby",
            Status::Acquiring => "acquiring",
            Status::Master => "master",
            Status::Releasing => "releasing",
            Status::Backoff => "backoff",
            Status::Stalled => "stalled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The runner has started: make the first attempt.
    Start,
    /// The wait asked for by `Command::Sleep` is over.
    Timer,
    Locked,
    Busy,
    LockFailed(LockError),
    /// The outstanding lock or unlock call ran past `op_timeout`; it is
    /// still running and its outcome will follow as a normal event.
    Stalled,
    ActionsOk,
    /// `clean`: every side effect was undone (an acquire that failed and
    /// rolled back fully). Not clean: some may remain.
    ActionsFailed {
        msg: String,
        clean: bool,
    },
    Unlocked(Result<(), String>),
    Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    TryLock,
    RunAcquire,
    RunRelease,
    Unlock,
    /// Wait, then send `Event::Timer`. `jitter`: add up to 10% so that
    /// nodes started together do not poll in lockstep.
    Sleep {
        wait: Duration,
        jitter: bool,
    },
    /// Nothing to do until an admin request or shutdown (master).
    Hold,
    /// The outstanding operation goes on; nothing new to start.
    Keep,
    Exit,
}

/// Where to go once the lock is given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    HoldOff(Duration),
    Backoff,
    Exit,
}

/// Why we are waiting for the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Idle {
    Standby,
    /// After a failure of ours: status `backoff`, growing waits.
    Backoff,
    /// The cluster is not up yet: status `standby`, growing waits.
    NotReady,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Waiting(Idle),
    Locking {
        from: Idle,
        stalled: bool,
    },
    /// Release actions without the lock: clearing what a crashed instance
    /// left, before standing by.
    Reconciling(Idle),
    Acquiring,
    Master,
    Releasing(Then),
    /// Release actions failed; we still hold the lock and retry them.
    ReleaseRetry(Then),
    Unlocking {
        then: Then,
        stalled: bool,
    },
    Stopped,
}

#[derive(Debug, Clone)]
pub struct Machine {
    poll: Duration,
    phase: Phase,
    /// The current backoff; zero when the last acquire went well.
    backoff: Duration,
    /// Release actions must run before we stand by (startup, or a failed
    /// earlier attempt to clear leftovers).
    reconcile: bool,
    shutting_down: bool,
    /// Reached a defined state since startup (master, or standing by).
    settled: bool,
    last_error: Option<String>,
}

impl Machine {
    pub fn new(poll: Duration) -> Self {
        Machine {
            poll,
            phase: Phase::Waiting(Idle::Standby),
            backoff: Duration::ZERO,
            reconcile: true,
            shutting_down: false,
            settled: false,
            last_error: None,
        }
    }

    pub fn status(&self) -> Status {
        match self.phase {
            Phase::Waiting(Idle::Backoff) | Phase::Reconciling(Idle::Backoff) => Status::Backoff,
            Phase::Waiting(_) | Phase::Reconciling(_) | Phase::Stopped => Status::Standby,
            Phase::Locking { stalled: true, .. } | Phase::Unlocking { stalled: true, .. } => {
                Status::Stalled
            }
            Phase::Locking {
                from: Idle::Backoff,
                ..
            } => Status::Backoff,
            Phase::Locking { .. } => Status::Standby,
            Phase::Acquiring => Status::Acquiring,
            Phase::Master => Status::Master,
            Phase::Releasing(_) | Phase::ReleaseRetry(_) | Phase::Unlocking { .. } => {
                Status::Releasing
            }
        }
    }

    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// True once the resource reached a defined state after startup (for
    /// READY=1): master, or standing by with leftovers cleared.
    pub fn settled(&self) -> bool {
        self.settled
    }

    pub fn is_master(&self) -> bool {
        self.phase == Phase::Master
    }

    fn next_backoff(&mut self) -> Duration {
        self.backoff = if self.backoff.is_zero() {
            self.poll * 2
        } else {
            self.backoff * 2
        };
        self.backoff = self.backoff.min(MAX_BACKOFF.max(self.poll));
        self.backoff
    }

    fn wait(&mut self, idle: Idle) -> Command {
        self.settled = true;
        self.phase = Phase::Waiting(idle);
        match idle {
            Idle::Standby => Command::Sleep {
                wait: self.poll,
                jitter: true,
            },
            Idle::Backoff | Idle::NotReady => Command::Sleep {
                wait: self.next_backoff(),
                jitter: true,
            },
        }
    }

    fn after_unlock(&mut self, then: Then) -> Command {
        match then {
            Then::Exit => {
                self.phase = Phase::Stopped;
                Command::Exit
            }
            Then::Backoff => self.wait(Idle::Backoff),
            Then::HoldOff(d) => {
                self.phase = Phase::Waiting(Idle::Standby);
                Command::Sleep {
                    wait: d,
                    jitter: false,
                }
            }
        }
    }

    fn release(&mut self, then: Then) -> Command {
        self.phase = Phase::Releasing(then);
        Command::RunRelease
    }

    /// An admin asks the master to step down and stay out for `hold_off`.
    pub fn request_release(&mut self, hold_off: Duration) -> Result<Command, String> {
        match self.phase {
            Phase::Master => Ok(self.release(Then::HoldOff(hold_off))),
            _ => Err(format!("not master (state {})", self.status().as_str())),
        }
    }

    pub fn handle(&mut self, ev: Event) -> Command {
        use Phase as P;
        if ev == Event::Shutdown {
            return self.shutdown();
        }
        match (self.phase, ev) {
            (P::Waiting(from), Event::Start | Event::Timer) => {
                self.phase = P::Locking {
                    from,
                    stalled: false,
                };
                Command::TryLock
            }
            (P::Locking { .. }, Event::Stalled) => {
                if let P::Locking { from, .. } = self.phase {
                    self.phase = P::Locking {
                        from,
                        stalled: true,
                    };
                }
                Command::Keep
            }
            (P::Locking { .. }, Event::Locked) => {
                self.reconcile = false;
                if self.shutting_down {
                    // Run release actions even so: at startup a crashed
                    // instance may have left ours in place.
                    return self.release(Then::Exit);
                }
                self.phase = P::Acquiring;
                Command::RunAcquire
            }
            (P::Locking { .. }, Event::Busy) => {
                self.last_error = None;
                self.lost(Idle::Standby)
            }
            (P::Locking { .. }, Event::LockFailed(e)) => {
                let idle = match e {
                    // Waiting for the cluster is normal life: stand by.
                    LockError::NotReady(_) => Idle::NotReady,
                    LockError::Failed(_) => Idle::Backoff,
                };
                self.last_error = Some(e.to_string());
                self.lost(idle)
            }
            (P::Reconciling(idle), Event::ActionsOk) => self.wait_or_exit(idle),
            (P::Reconciling(idle), Event::ActionsFailed { msg, .. }) => {
                // Retried before the next attempt that finds the lock busy.
                self.reconcile = true;
                self.last_error = Some(format!("clearing leftovers failed: {msg}"));
                self.wait_or_exit(idle)
            }
            (P::Acquiring, Event::ActionsOk) if self.shutting_down => self.release(Then::Exit),
            (P::Acquiring, Event::ActionsOk) => {
                self.backoff = Duration::ZERO;
                self.last_error = None;
                self.settled = true;
                self.phase = P::Master;
                Command::Hold
            }
            (P::Acquiring, Event::ActionsFailed { msg, clean }) => {
                self.last_error = Some(msg);
                let then = if self.shutting_down {
                    Then::Exit
                } else {
                    Then::Backoff
                };
                if clean {
                    self.phase = P::Unlocking {
                        then,
                        stalled: false,
                    };
                    Command::Unlock
                } else {
                    self.release(then)
                }
            }
            (P::Releasing(then), Event::ActionsOk) => {
                self.phase = P::Unlocking {
                    then,
                    stalled: false,
                };
                Command::Unlock
            }
            (P::Releasing(then), Event::ActionsFailed { msg, .. }) => {
                self.last_error = Some(format!(
                    "release failed, keeping the lock until it succeeds: {msg}"
                ));
                if then == Then::Exit {
                    // Exiting: the lock goes with us, the leftovers are for
                    // `cleanup` (ExecStopPost) to retry.
                    self.phase = P::Stopped;
                    return Command::Exit;
                }
                self.phase = P::ReleaseRetry(then);
                Command::Sleep {
                    wait: self.next_backoff(),
                    jitter: false,
                }
            }
            (P::ReleaseRetry(then), Event::Timer) => self.release(then),
            (P::Unlocking { then, .. }, Event::Stalled) => {
                self.phase = P::Unlocking {
                    then,
                    stalled: true,
                };
                Command::Keep
            }
            (P::Unlocking { then, .. }, Event::Unlocked(r)) => {
                if let Err(e) = r {
                    self.last_error = Some(e);
                }
                self.after_unlock(then)
            }
            // Anything else is an event that does not belong to the current
            // operation (a late timer): ignore it, keep going.
            _ => Command::Keep,
        }
    }

    fn wait_or_exit(&mut self, idle: Idle) -> Command {
        if self.shutting_down {
            self.phase = Phase::Stopped;
            return Command::Exit;
        }
        self.wait(idle)
    }

    /// The attempt did not make us master.
    fn lost(&mut self, idle: Idle) -> Command {
        if self.reconcile && !self.shutting_down {
            self.reconcile = false;
            self.phase = Phase::Reconciling(idle);
            return Command::RunRelease;
        }
        self.wait_or_exit(idle)
    }

    fn shutdown(&mut self) -> Command {
        use Phase as P;
        self.shutting_down = true;
        match self.phase {
            P::Waiting(_) | P::Stopped => {
                self.phase = P::Stopped;
                Command::Exit
            }
            // A call stuck in the kernel may not return for a long time;
            // do not hold up shutdown for it (cleanup handles what it leaves).
            P::Locking { stalled: true, .. } | P::Unlocking { stalled: true, .. } => {
                self.phase = P::Stopped;
                Command::Exit
            }
            P::Master => self.release(Then::Exit),
            P::ReleaseRetry(_) => self.release(Then::Exit),
            P::Releasing(_) => {
                self.phase = P::Releasing(Then::Exit);
                Command::Keep
            }
            P::Unlocking { stalled, .. } => {
                self.phase = P::Unlocking {
                    then: Then::Exit,
                    stalled,
                };
                Command::Keep
            }
            // Let the running step finish; its outcome leads to exit.
            P::Locking { .. } | P::Reconciling(_) | P::Acquiring => Command::Keep,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLL: Duration = Duration::from_secs(1);

    fn failed(clean: bool) -> Event {
        Event::ActionsFailed {
            msg: "boom".into(),
            clean,
        }
    }

    fn sleep(d: Duration) -> Command {
        Command::Sleep {
            wait: d,
            jitter: true,
        }
    }

    /// A machine that went through startup and won.
    fn master() -> Machine {
        let mut m = Machine::new(POLL);
        assert_eq!(m.handle(Event::Start), Command::TryLock);
        assert_eq!(m.handle(Event::Locked), Command::RunAcquire);
        assert_eq!(m.status(), Status::Acquiring);
        assert_eq!(m.handle(Event::ActionsOk), Command::Hold);
        assert!(m.is_master() && m.settled());
        m
    }

    /// A machine that went through startup and lost.
    fn standby() -> Machine {
        let mut m = Machine::new(POLL);
        m.handle(Event::Start);
        assert_eq!(
            m.handle(Event::Busy),
            Command::RunRelease,
            "startup clears leftovers"
        );
        assert!(!m.settled());
        assert_eq!(m.handle(Event::ActionsOk), sleep(POLL));
        assert!(m.settled());
        assert_eq!(m.status(), Status::Standby);
        m
    }

    #[test]
    fn standby_polls_without_rerunning_release() {
        let mut m = standby();
        assert_eq!(m.handle(Event::Timer), Command::TryLock);
        assert_eq!(m.status(), Status::Standby, "a poll is not a state change");
        assert_eq!(m.handle(Event::Busy), sleep(POLL));
    }

    #[test]
    fn failed_acquire_rolls_back_unlocks_and_backs_off_doubling() {
        let mut m = standby();
        let mut expect = POLL * 2;
        for _ in 0..8 {
            m.handle(Event::Timer);
            assert_eq!(m.handle(Event::Locked), Command::RunAcquire);
            assert_eq!(m.handle(failed(true)), Command::Unlock);
            assert_eq!(m.status(), Status::Releasing);
            assert_eq!(m.handle(Event::Unlocked(Ok(()))), sleep(expect));
            assert_eq!(m.status(), Status::Backoff);
            assert_eq!(m.last_error(), Some("boom"));
            expect = (expect * 2).min(MAX_BACKOFF);
        }
        // Winning resets the backoff.
        m.handle(Event::Timer);
        m.handle(Event::Locked);
        assert_eq!(m.handle(Event::ActionsOk), Command::Hold);
        assert_eq!(m.last_error(), None);
        assert_eq!(m.handle(Event::Shutdown), Command::RunRelease);
    }

    #[test]
    fn unclean_rollback_runs_every_release_before_unlocking() {
        let mut m = standby();
        m.handle(Event::Timer);
        m.handle(Event::Locked);
        assert_eq!(m.handle(failed(false)), Command::RunRelease);
        assert_eq!(m.handle(Event::ActionsOk), Command::Unlock);
    }

    #[test]
    fn lock_is_kept_until_release_actions_succeed() {
        let mut m = master();
        assert_eq!(
            m.request_release(Duration::from_secs(5)),
            Ok(Command::RunRelease)
        );
        assert_eq!(
            m.handle(failed(false)),
            Command::Sleep {
                wait: POLL * 2,
                jitter: false
            }
        );
        assert_eq!(m.status(), Status::Releasing);
        assert_eq!(
            m.handle(Event::Timer),
            Command::RunRelease,
            "retried, lock still held"
        );
        assert_eq!(m.handle(Event::ActionsOk), Command::Unlock);
        assert_eq!(
            m.handle(Event::Unlocked(Ok(()))),
            Command::Sleep {
                wait: Duration::from_secs(5),
                jitter: false
            }
        );
        assert_eq!(m.status(), Status::Standby);
    }

    #[test]
    fn release_request_only_on_master() {
        assert!(standby().request_release(POLL).is_err());
        let mut m = master();
        assert!(m.request_release(POLL).is_ok());
        assert!(m.request_release(POLL).is_err(), "already releasing");
    }

    #[test]
    fn shutdown_releases_master_then_exits() {
        let mut m = master();
        assert_eq!(m.handle(Event::Shutdown), Command::RunRelease);
        assert_eq!(m.handle(Event::ActionsOk), Command::Unlock);
        assert_eq!(m.handle(Event::Unlocked(Ok(()))), Command::Exit);
        assert_eq!(standby().handle(Event::Shutdown), Command::Exit);
    }

    #[test]
    fn shutdown_with_failing_release_exits_keeping_the_lock() {
        let mut m = master();
        m.handle(Event::Shutdown);
        assert_eq!(m.handle(failed(false)), Command::Exit);
    }

    #[test]
    fn shutdown_during_acquire_finishes_then_releases() {
        let mut m = Machine::new(POLL);
        m.handle(Event::Start);
        m.handle(Event::Locked);
        assert_eq!(m.handle(Event::Shutdown), Command::Keep);
        assert_eq!(m.handle(Event::ActionsOk), Command::RunRelease);
        assert_eq!(m.handle(Event::ActionsOk), Command::Unlock);
        assert_eq!(m.handle(Event::Unlocked(Ok(()))), Command::Exit);
    }

    #[test]
    fn lock_won_while_shutting_down_is_released_with_actions() {
        let mut m = Machine::new(POLL);
        m.handle(Event::Start);
        assert_eq!(m.handle(Event::Shutdown), Command::Keep);
        assert_eq!(m.handle(Event::Locked), Command::RunRelease);
        assert_eq!(m.handle(Event::ActionsOk), Command::Unlock);
    }

    #[test]
    fn stalled_lock_call_shows_and_does_not_block_shutdown() {
        let mut m = standby();
        m.handle(Event::Timer);
        assert_eq!(m.handle(Event::Stalled), Command::Keep);
        assert_eq!(m.status(), Status::Stalled);
        // The call returns late: business as usual.
        assert_eq!(m.handle(Event::Busy), sleep(POLL));
        m.handle(Event::Timer);
        m.handle(Event::Stalled);
        assert_eq!(m.handle(Event::Shutdown), Command::Exit);
    }

    #[test]
    fn late_lock_after_stall_makes_master() {
        let mut m = standby();
        m.handle(Event::Timer);
        m.handle(Event::Stalled);
        assert_eq!(m.handle(Event::Locked), Command::RunAcquire);
    }

    #[test]
    fn cluster_not_ready_is_standby_with_error_and_growing_waits() {
        let mut m = Machine::new(POLL);
        m.handle(Event::Start);
        let e = LockError::NotReady("no dlmfs".into());
        assert_eq!(m.handle(Event::LockFailed(e.clone())), Command::RunRelease);
        assert_eq!(m.handle(Event::ActionsOk), sleep(POLL * 2));
        assert_eq!(m.status(), Status::Standby);
        assert_eq!(m.last_error(), Some("cluster not ready: no dlmfs"));
        m.handle(Event::Timer);
        assert_eq!(m.handle(Event::LockFailed(e)), sleep(POLL * 4));
        m.handle(Event::Timer);
        assert_eq!(m.handle(Event::Locked), Command::RunAcquire);
    }

    #[test]
    fn lock_error_is_backoff() {
        let mut m = standby();
        m.handle(Event::Timer);
        assert_eq!(
            m.handle(Event::LockFailed(LockError::Failed("EACCES".into()))),
            sleep(POLL * 2)
        );
        assert_eq!(m.status(), Status::Backoff);
    }

    #[test]
    fn failed_startup_reconcile_is_retried_on_next_busy() {
        let mut m = Machine::new(POLL);
        m.handle(Event::Start);
        m.handle(Event::Busy);
        assert_eq!(m.handle(failed(false)), sleep(POLL));
        assert!(m.settled(), "READY must not wait for a broken hook");
        m.handle(Event::Timer);
        assert_eq!(m.handle(Event::Busy), Command::RunRelease);
        m.handle(Event::ActionsOk);
        m.handle(Event::Timer);
        assert_eq!(m.handle(Event::Busy), sleep(POLL));
    }

    #[test]
    fn stray_events_are_ignored() {
        let mut m = master();
        assert_eq!(m.handle(Event::Timer), Command::Keep);
        assert_eq!(m.handle(Event::Busy), Command::Keep);
        assert!(m.is_master());
    }
}
