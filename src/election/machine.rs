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
