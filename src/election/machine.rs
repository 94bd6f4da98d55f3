//! The election state machine of one resource: pure, no clock, no I/O.
//!
//! The runner feeds it events (a lock attempt's outcome, actions finished, a
//! timer, an admin request) and carries out the one command it returns.
//! Exactly one operation is outstanding at any time, so at most one lock
//! call per resource is in flight.
//!
//! Rules it encodes (see docs/ARCHITECTURE.md):
//! - the lock is given up only after our side effects are undone: if release
//!   actions fail we keep the lock and retry them, so another node never
//!   takes over while ours still stand;
//! - at startup the first attempt decides: won → run acquire actions (they
//!   are idempotent, this resumes after a crash); lost → if this instance's
//!   applied record says it may have left something (`leftovers`), run the
//!   release actions once to clear it;
//! - a failed acquire backs off (2× poll, doubling, capped) so another node
//!   gets its turn;
//! - a master whose lock stopped excluding others (`LockLost`) undoes its
//!   side effects and competes again;
//! - an admin's release request is answered as soon as its outcome is known:
//!   success once the lock is given up, failure at the first failed release
//!   attempt (the retries go on);
//! - with a health check, eligibility (`Event::Eligible`) is an input: an
//!   ineligible node never runs acquire steps nor tries the lock (but for
//!   the first attempt at startup, which decides crash recovery), and a
//!   master that becomes ineligible releases and holds off like after an
//!   admin's release, so a flapping check moves mastership at most once
//!   per hold-off.

use crate::lock::LockError;
use crate::state::Status;
use std::time::Duration;

pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

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
    Unlocked(Result<(), LockError>),
    /// While master: the lock no longer excludes other nodes (its file was
    /// deleted); why.
    LockLost(String),
    /// The health check's verdict changed (see `election::health`): this
    /// node may (true) or may not (false) be master.
    Eligible(bool),
    /// While master with `preempt`: a more preferred node (named) is a
    /// candidate; hand over to it.
    Outranked(String),
    /// Whether this node's cluster membership is in doubt (Some: why; see
    /// `membership`): it may have been declared dead and its locks given
    /// to others while it did not run. In doubt, a master gives mastership
    /// up at once and nobody competes; None again: compete as before.
    Membership(Option<String>),
    /// Link tracking (`links`): an interface of the resource's VIPs has
    /// no carrier (Some: why), or all have again (None). Like a membership
    /// in doubt: a master gives mastership up at once, nobody competes.
    LinkDown(Option<String>),
    /// Fail counts (`election::failures`): this node failed the acquire
    /// steps too often and stays out (true), or may compete again (false:
    /// the timeout is over, or an admin's `reset`, which competes at once).
    FailedOut(bool),
    /// The node is drained (true: `dlm-electd drain`) or not any more
    /// (false: `undrain`). Drained, a master releases like for a link
    /// down and nobody competes; undrained, a standby competes at once.
    Drained(bool),
    Shutdown,
}

/// Why an admin's request failed, or its release did: the text the client
/// is shown (and, for a failed release or unlock, the status's last error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("not master (state {})", .0.as_str())]
    NotMaster(Status),
    #[error("not holding off (state {})", .0.as_str())]
    NotHoldingOff(Status),
    #[error(
        "not holding off but out for its fail count (state failed): `dlm-electd reset` lets it compete again"
    )]
    FailedOut,
    #[error("daemon is shutting down")]
    ShuttingDown,
    /// Release steps failed (why); the lock is kept and they are retried.
    #[error("release failed, keeping the lock until it succeeds: {0}")]
    ReleaseFailed(String),
    /// The steps were undone but giving the lock up failed.
    #[error("{0}")]
    Unlock(LockError),
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
    /// Master: watch the lock and keep announcing until an admin request,
    /// a lost lock or shutdown.
    Hold,
    /// Cancel the running acquire steps (shutdown): they roll back and end
    /// with `ActionsFailed`.
    Cancel,
    /// The outstanding operation goes on; nothing new to start.
    Keep,
    Exit,
}

/// What keeps a node out besides its health (see `kept_out`).
#[derive(Debug, Clone, Copy)]
enum Out {
    Membership,
    Link,
}

/// Where to go once the lock is given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    HoldOff(Duration),
    Backoff,
    /// Stand by (a lock won while ineligible is given back).
    Standby,
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
    /// An admin asked us to stay out for a while: status `standby`.
    HoldOff,
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
    Acquiring {
        cancelled: bool,
    },
    Master,
    Releasing(Then),
    /// Release actions failed; we still hold the lock and retry them.
    ReleaseRetry(Then),
    Unlocking {
        then: Then,
        stalled: bool,
    },
    /// Final. `held`: we exit still holding the lock, because release
    /// actions failed (our side effects may stand) or a call was stuck.
    Stopped {
        held: bool,
    },
}

#[derive(Debug, Clone)]
pub struct Machine {
    poll: Duration,
    phase: Phase,
    /// The current backoff; zero when the last acquire went well.
    backoff: Duration,
    /// Release actions must run before we stand by (our applied record
    /// exists at startup, or an earlier attempt to clear leftovers failed).
    reconcile: bool,
    shutting_down: bool,
    /// Reached a defined state since startup (master, or standing by).
    settled: bool,
    last_error: Option<String>,
    /// Release actions failed and none succeeded since: some of our side
    /// effects may stand, so the lock must not be given up without a
    /// successful release first (even after a clean acquire rollback).
    dirty: bool,
    /// An admin's release request waits for its outcome.
    release_waiting: bool,
    /// That outcome, once known, for the runner to take.
    reply: Option<Result<(), RequestError>>,
    /// May this node be master? None: a health check is configured and has
    /// no result yet. Always `Some(true)` without a check.
    eligible: Option<bool>,
    /// How long a master that became ineligible stays out.
    health_hold_off: Duration,
    /// Why this node's cluster membership is in doubt (see
    /// `Event::Membership`); while set it is not eligible, whatever its
    /// health says.
    suspect: Option<String>,
    /// The first lock attempt (which decides crash recovery) was made.
    attempted: bool,
    /// Out of the competition after too many failed acquires (see
    /// `Event::FailedOut`).
    failed_out: bool,
    /// Why a tracked link is down (see `Event::LinkDown`).
    link_down: Option<String>,
    /// The node is drained (see `Event::Drained`).
    drained: bool,
}

impl Machine {
    /// `leftovers`: this instance's applied record says an earlier run may
    /// have left side effects, to be undone if the lock is found busy.
    pub fn new(poll: Duration, leftovers: bool) -> Self {
        Machine {
            poll,
            phase: Phase::Waiting(Idle::Standby),
            backoff: Duration::ZERO,
            reconcile: leftovers,
            shutting_down: false,
            settled: false,
            last_error: None,
            dirty: false,
            release_waiting: false,
            reply: None,
            eligible: Some(true),
            health_hold_off: Duration::ZERO,
            suspect: None,
            attempted: false,
            failed_out: false,
            link_down: None,
            drained: false,
        }
    }

    /// With a health check: not eligible before its first result; a master
    /// that becomes ineligible stays out for `hold_off`.
    pub fn with_check(mut self, hold_off: Duration) -> Self {
        self.eligible = None;
        self.health_hold_off = hold_off;
        self
    }

    /// A reload changed the check's `hold_off`: the next give-up uses it.
    pub fn set_health_hold_off(&mut self, hold_off: Duration) {
        self.health_hold_off = hold_off;
    }

    pub fn status(&self) -> Status {
        match self.phase {
            // The admin's own word first: it outlasts the other reasons.
            Phase::Waiting(_) if self.drained => Status::Drained,
            // Out for its fail count: what an admin must look at.
            Phase::Waiting(_) if self.failed_out => Status::Failed,
            Phase::Waiting(Idle::Backoff) | Phase::Reconciling(Idle::Backoff) => Status::Backoff,
            Phase::Stopped { held: true } => Status::Releasing,
            Phase::Waiting(_) | Phase::Reconciling(_) | Phase::Stopped { .. } => Status::Standby,
            Phase::Locking { stalled: true, .. } | Phase::Unlocking { stalled: true, .. } => {
                Status::Stalled
            }
            Phase::Locking {
                from: Idle::Backoff,
                ..
            } => Status::Backoff,
            Phase::Locking { .. } => Status::Standby,
            Phase::Acquiring { .. } => Status::Acquiring,
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

    /// Whether this node should hold its candidate lock (preferred nodes):
    /// it would take mastership now, i.e. it is eligible and not holding
    /// off, backing off after a failure of its own, or stopping. A node that
    /// will not take the lock must not make others defer to it.
    pub fn wants_candidacy(&self) -> bool {
        self.competes()
            && !self.shutting_down
            && !self.holding_off()
            && !matches!(self.phase, Phase::Stopped { .. })
            && self.status() != Status::Backoff
    }

    /// Waiting out an admin's hold-off.
    pub fn holding_off(&self) -> bool {
        self.phase == Phase::Waiting(Idle::HoldOff)
    }

    /// Standing by after finding the lock busy, eligible (not holding off, not
    /// backing off): the wait before the next attempt may end as soon as
    /// the lock is free, and the runner may wait for that in the kernel.
    pub fn may_wait_for_lock(&self) -> bool {
        self.phase == Phase::Waiting(Idle::Standby) && self.competes()
    }

    /// Eligible (health), not in doubt about its membership, not out for
    /// its fail count, not drained.
    fn competes(&self) -> bool {
        self.eligible == Some(true) && !self.failed_out && !self.kept_aside()
    }

    /// Something besides health and fail counts keeps this node from being
    /// master: membership in doubt, a tracked link down, a drain. A master
    /// gives up at once for these, without a hold-off.
    fn kept_aside(&self) -> bool {
        self.suspect.is_some() || self.link_down.is_some() || self.drained
    }

    /// In the acquire steps, not cancelled by a shutdown: a failure now is
    /// one for the fail count.
    pub fn in_acquire_steps(&self) -> bool {
        self.phase == Phase::Acquiring { cancelled: false } && !self.shutting_down
    }

    /// Exited still holding the lock (release failed or a call was stuck).
    pub fn stopped_holding(&self) -> bool {
        self.phase == Phase::Stopped { held: true }
    }

    /// The poll interval: the runner's one source for it (waits, the
    /// master's checks, the candidacy task), kept here because a reload
    /// changes it in place (`set_poll`).
    pub fn poll(&self) -> Duration {
        self.poll
    }

    /// A reload changed the poll interval: the next wait uses it.
    pub fn set_poll(&mut self, poll: Duration) {
        self.poll = poll;
    }

    /// The outcome of an admin's release request, once known.
    pub fn take_reply(&mut self) -> Option<Result<(), RequestError>> {
        self.reply.take()
    }

    fn answer(&mut self, r: Result<(), RequestError>) {
        if std::mem::take(&mut self.release_waiting) {
            self.reply = Some(r);
        }
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
            Idle::Standby | Idle::HoldOff => Command::Sleep {
                wait: self.poll,
                jitter: true,
            },
            Idle::Backoff | Idle::NotReady => Command::Sleep {
                wait: self.next_backoff(),
                jitter: true,
            },
        }
    }

    fn stop(&mut self, held: bool) -> Command {
        self.phase = Phase::Stopped { held };
        self.answer(Err(RequestError::ShuttingDown));
        Command::Exit
    }

    fn after_unlock(&mut self, then: Then) -> Command {
        match then {
            Then::Exit => self.stop(false),
            Then::Backoff => self.wait(Idle::Backoff),
            Then::Standby => self.wait(Idle::Standby),
            Then::HoldOff(d) => {
                self.phase = Phase::Waiting(Idle::HoldOff);
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
    /// The outcome follows through `take_reply`.
    pub fn request_release(&mut self, hold_off: Duration) -> Result<Command, RequestError> {
        match self.phase {
            Phase::Master => {
                self.release_waiting = true;
                Ok(self.release(Then::HoldOff(hold_off)))
            }
            _ => Err(RequestError::NotMaster(self.status())),
        }
    }

    /// An admin ends a hold-off early: compete at once.
    pub fn resume(&mut self) -> Result<Command, RequestError> {
        match self.phase {
            Phase::Waiting(Idle::HoldOff) => Ok(self.handle(Event::Timer)),
            _ if self.status() == Status::Failed => Err(RequestError::FailedOut),
            _ => Err(RequestError::NotHoldingOff(self.status())),
        }
    }

    pub fn handle(&mut self, ev: Event) -> Command {
        use Phase as P;
        if let P::Stopped { .. } = self.phase {
            return Command::Exit;
        }
        if ev == Event::Shutdown {
            return self.shutdown();
        }
        if let Event::Eligible(e) = ev {
            return self.eligibility(e);
        }
        if let Event::Membership(why) = ev {
            return self.kept_out(Out::Membership, why);
        }
        if let Event::FailedOut(out) = ev {
            return self.failed_out(out);
        }
        if let Event::LinkDown(why) = ev {
            return self.kept_out(Out::Link, why);
        }
        if let Event::Drained(on) = ev {
            return self.drain(on);
        }
        // One handler per phase. Anything a handler does not match is an
        // event that does not belong to the current operation (a late
        // timer): ignore it, keep going.
        match self.phase {
            P::Waiting(from) => self.waiting(from, ev),
            P::Locking { from, .. } => self.locking(from, ev),
            P::Reconciling(idle) => self.reconciling(idle, ev),
            P::Acquiring { .. } => self.acquiring(ev),
            P::Master => self.mastering(ev),
            P::Releasing(then) => self.releasing(then, ev),
            P::ReleaseRetry(then) => match ev {
                Event::Timer => self.release(then),
                _ => Command::Keep,
            },
            P::Unlocking { then, .. } => self.unlocking(then, ev),
            P::Stopped { .. } => Command::Exit,
        }
    }

    /// Waiting for the next attempt.
    fn waiting(&mut self, from: Idle, ev: Event) -> Command {
        match ev {
            // The first attempt waits for the check's first result.
            Event::Start if self.eligible.is_none() => Command::Keep,
            // Ineligible after the first attempt: stay out, keep waiting.
            Event::Timer if self.attempted && !self.competes() => self.wait(Idle::Standby),
            Event::Start | Event::Timer => {
                // A hold-off is over: compete like any standby.
                let from = if from == Idle::HoldOff {
                    Idle::Standby
                } else {
                    from
                };
                self.attempt(from)
            }
            _ => Command::Keep,
        }
    }

    /// A lock call is out.
    fn locking(&mut self, from: Idle, ev: Event) -> Command {
        match ev {
            // Shutting down, a call that turns out stuck is not waited for
            // (as when the stall was known before the shutdown).
            Event::Stalled if self.shutting_down => self.stop(false),
            Event::Stalled => {
                self.phase = Phase::Locking {
                    from,
                    stalled: true,
                };
                Command::Keep
            }
            Event::Locked => self.locked(),
            Event::Busy => {
                self.last_error = None;
                self.lost(Idle::Standby)
            }
            Event::LockFailed(e) => {
                let idle = match e {
                    // Waiting for the cluster is normal life: stand by.
                    LockError::NotReady(_) => Idle::NotReady,
                    LockError::Failed(_) => Idle::Backoff,
                };
                self.last_error = Some(e.to_string());
                self.lost(idle)
            }
            _ => Command::Keep,
        }
    }

    /// The lock call won.
    fn locked(&mut self) -> Command {
        let leftovers = std::mem::take(&mut self.reconcile) || self.dirty;
        if self.shutting_down {
            // Run release actions even so: at startup a crashed
            // instance may have left ours in place.
            return self.release(Then::Exit);
        }
        if !self.competes() {
            // Won the first attempt (or lost eligibility during
            // the call): give the lock back without acquiring,
            // clearing what a crashed instance of ours may have
            // left first (we hold the lock, so nobody else is
            // master while that runs).
            if leftovers {
                return self.release(Then::Standby);
            }
            self.phase = Phase::Unlocking {
                then: Then::Standby,
                stalled: false,
            };
            return Command::Unlock;
        }
        self.phase = Phase::Acquiring { cancelled: false };
        Command::RunAcquire
    }

    /// Release steps without the lock (leftovers of a crashed instance).
    fn reconciling(&mut self, idle: Idle, ev: Event) -> Command {
        match ev {
            Event::ActionsOk => {
                self.dirty = false;
                self.wait_or_exit(idle)
            }
            Event::ActionsFailed { msg, .. } => {
                // Retried before the next attempt that finds the lock busy,
                // with growing waits: a hook that keeps failing must not be
                // run at every poll.
                self.reconcile = true;
                self.dirty = true;
                self.last_error = Some(format!("clearing leftovers failed: {msg}"));
                self.wait_or_exit(Idle::Backoff)
            }
            _ => Command::Keep,
        }
    }

    /// Acquire steps run.
    fn acquiring(&mut self, ev: Event) -> Command {
        match ev {
            Event::ActionsOk if self.shutting_down => self.release(Then::Exit),
            Event::ActionsOk if self.kept_aside() => self.release(Then::Standby),
            Event::ActionsOk if self.eligible == Some(false) => self.give_up_for_health(),
            Event::ActionsOk => {
                self.backoff = Duration::ZERO;
                self.last_error = None;
                self.settled = true;
                self.phase = Phase::Master;
                Command::Hold
            }
            Event::ActionsFailed { msg, clean } => {
                let then = if self.shutting_down {
                    Then::Exit
                } else if self.kept_aside() {
                    // Cancelled because membership is in doubt, a link
                    // went down or the node was drained: the reason is
                    // already shown (last error, state).
                    Then::Standby
                } else {
                    self.last_error = Some(msg);
                    Then::Backoff
                };
                if clean && !self.dirty {
                    self.phase = Phase::Unlocking {
                        then,
                        stalled: false,
                    };
                    Command::Unlock
                } else {
                    self.release(then)
                }
            }
            _ => Command::Keep,
        }
    }

    /// Master, holding.
    fn mastering(&mut self, ev: Event) -> Command {
        match ev {
            Event::Outranked(_) => self.release(Then::Standby),
            Event::LockLost(why) => {
                self.last_error = Some(format!("mastership lost: {why}"));
                self.release(Then::Backoff)
            }
            _ => Command::Keep,
        }
    }

    /// Release steps run, the lock still held.
    fn releasing(&mut self, then: Then, ev: Event) -> Command {
        match ev {
            Event::ActionsOk => {
                if self.dirty {
                    // A retry went through: the failure status showed is
                    // over (else a standby would still say "keeping the
                    // lock until it succeeds").
                    self.last_error = None;
                }
                self.dirty = false;
                self.phase = Phase::Unlocking {
                    then,
                    stalled: false,
                };
                Command::Unlock
            }
            Event::ActionsFailed { msg, .. } => {
                let err = RequestError::ReleaseFailed(msg);
                self.last_error = Some(err.to_string());
                self.dirty = true;
                if then == Then::Exit {
                    // Exiting: the lock goes with us, the leftovers are for
                    // the lock keeper or `cleanup` (ExecStopPost) to retry.
                    return self.stop(true);
                }
                self.answer(Err(err));
                self.phase = Phase::ReleaseRetry(then);
                Command::Sleep {
                    wait: self.next_backoff(),
                    jitter: false,
                }
            }
            _ => Command::Keep,
        }
    }

    /// The unlock call is out.
    fn unlocking(&mut self, then: Then, ev: Event) -> Command {
        match ev {
            Event::Stalled if self.shutting_down => self.stop(true),
            Event::Stalled => {
                self.phase = Phase::Unlocking {
                    then,
                    stalled: true,
                };
                Command::Keep
            }
            Event::Unlocked(r) => {
                match r {
                    Ok(()) => self.answer(Ok(())),
                    Err(e) => {
                        self.last_error = Some(e.to_string());
                        self.answer(Err(RequestError::Unlock(e)));
                    }
                }
                self.after_unlock(then)
            }
            _ => Command::Keep,
        }
    }

    fn attempt(&mut self, from: Idle) -> Command {
        self.attempted = true;
        self.phase = Phase::Locking {
            from,
            stalled: false,
        };
        Command::TryLock
    }

    fn give_up_for_health(&mut self) -> Command {
        self.last_error = Some(format!(
            "health check failing: gave mastership up, holding off for {}",
            humantime::format_duration(self.health_hold_off)
        ));
        self.release(Then::HoldOff(self.health_hold_off))
    }

    /// The health check's verdict changed.
    fn eligibility(&mut self, e: bool) -> Command {
        let first = self.eligible.is_none();
        self.eligible = Some(e);
        match self.phase {
            // The first result: make the first attempt (eligible or not:
            // it decides crash recovery; see the `Locked` arm).
            Phase::Waiting(from) if first && !self.attempted && !self.shutting_down => {
                self.attempt(from)
            }
            Phase::Master if !e => self.give_up_for_health(),
            // Anywhere else the verdict applies at the next decision: the
            // next timer (compete or not), a won lock, finished acquire
            // steps. A running release or unlock goes on.
            _ => Command::Keep,
        }
    }

    /// Membership in doubt or a tracked link down (Some: why): not master
    /// and not competing until it is over (None: compete at the next
    /// timer).
    fn kept_out(&mut self, what: Out, why: Option<String>) -> Command {
        let (slot, until) = match what {
            Out::Membership => (&mut self.suspect, "until the node's membership is sound"),
            Out::Link => (&mut self.link_down, "until the link is back"),
        };
        let Some(why) = why else {
            if slot.take().is_some() {
                self.last_error = None;
            }
            return Command::Keep;
        };
        let first = slot.replace(why.clone()).is_none();
        self.last_error = Some(format!("{why}: not master and not competing {until}"));
        if !first || self.shutting_down {
            return Command::Keep;
        }
        self.step_aside()
    }

    /// Drained (an admin's `drain`), or not any more. Unlike the other
    /// reasons to stand aside it is no error: the state (`drained`) says
    /// it, the last error is left alone.
    fn drain(&mut self, on: bool) -> Command {
        let was = std::mem::replace(&mut self.drained, on);
        if was == on || self.shutting_down {
            return Command::Keep;
        }
        if on {
            return self.step_aside();
        }
        match self.phase {
            // Undrained: compete now, unless a hold-off runs (its own
            // timer ends it, as for a fail count's end).
            Phase::Waiting(from) if from != Idle::HoldOff => self.waiting(from, Event::Timer),
            _ => Command::Keep,
        }
    }

    /// Something now keeps this node from being master (membership in
    /// doubt, a tracked link down, a drain).
    fn step_aside(&mut self) -> Command {
        use Phase as P;
        match self.phase {
            // A standby that may be waiting in the kernel for the lock
            // stops: a new plain wait replaces that one, so the node does
            // not win a lock it must give straight back (which would hold
            // up the node that should take it). Not before the first
            // attempt, which the runner's start makes.
            P::Waiting(Idle::Standby) if self.attempted => self.wait(Idle::Standby),
            // Before any other action of ours: no VIP refresh, no
            // announcement, no further acquire step.
            P::Master => self.release(Then::Standby),
            P::Acquiring { cancelled: false } => {
                self.phase = P::Acquiring { cancelled: true };
                Command::Cancel
            }
            // A won lock is given back (see the `Locked` arm), timers do
            // not try the lock; a running release or unlock goes on.
            _ => Command::Keep,
        }
    }

    /// Fail counts: out (the failed acquire that tripped it has rolled
    /// back, or is rolling back: nothing to stop), or back in, at once
    /// when waiting.
    fn failed_out(&mut self, out: bool) -> Command {
        let was = std::mem::replace(&mut self.failed_out, out);
        if !out {
            // Back in: the next failure backs off from the start again.
            self.backoff = Duration::ZERO;
        }
        match self.phase {
            // Back in: compete now, unless a hold-off (an admin's, or a
            // health give-up's) is running: its own timer ends it. Ending
            // it here lost a health hold-off (found by `invariants_hold`).
            Phase::Waiting(from) if was && !out && !self.shutting_down && from != Idle::HoldOff => {
                self.waiting(from, Event::Timer)
            }
            _ => Command::Keep,
        }
    }

    fn wait_or_exit(&mut self, idle: Idle) -> Command {
        if self.shutting_down {
            return self.stop(false);
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
            P::Waiting(_) | P::Stopped { .. } => self.stop(false),
            // A call stuck in the kernel may not return for a long time;
            // do not hold up shutdown for it (cleanup handles what it
            // leaves). A stuck unlock may leave the lock held.
            P::Locking { stalled: true, .. } => self.stop(false),
            P::Unlocking { stalled: true, .. } => self.stop(true),
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
            // Stopping must not wait for a long acquire step: cancel it;
            // it rolls back and its outcome leads to exit.
            P::Acquiring { cancelled: false } => {
                self.phase = P::Acquiring { cancelled: true };
                Command::Cancel
            }
            // Let the running step finish; its outcome leads to exit.
            P::Acquiring { cancelled: true } | P::Locking { .. } | P::Reconciling(_) => {
                Command::Keep
            }
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
        let mut m = Machine::new(POLL, false);
        assert_eq!(m.handle(Event::Start), Command::TryLock);
        assert_eq!(m.handle(Event::Locked), Command::RunAcquire);
        assert_eq!(m.status(), Status::Acquiring);
        assert_eq!(m.handle(Event::ActionsOk), Command::Hold);
        assert!(m.is_master() && m.settled());
        m
    }

    /// A machine that went through startup and lost.
    fn standby() -> Machine {
        let mut m = Machine::new(POLL, true);
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
    fn out_for_the_fail_count_it_does_not_compete_until_back_in() {
        let mut m = standby();
        m.handle(Event::Timer);
        m.handle(Event::Locked);
        assert!(m.in_acquire_steps());
        assert_eq!(m.handle(failed(true)), Command::Unlock);
        // The runner counts the failure: one too many.
        assert_eq!(m.handle(Event::FailedOut(true)), Command::Keep);
        assert_eq!(m.handle(Event::Unlocked(Ok(()))), sleep(POLL * 2));
        assert_eq!(m.status(), Status::Failed);
        assert!(!m.wants_candidacy(), "no candidate lock while out");
        for _ in 0..3 {
            assert_eq!(m.handle(Event::Timer), sleep(POLL), "no lock attempt");
            assert_eq!(m.status(), Status::Failed);
        }
        // The timeout over, or an admin's reset: at once.
        assert_eq!(m.handle(Event::FailedOut(false)), Command::TryLock);
        assert_eq!(m.handle(Event::Locked), Command::RunAcquire);
        assert_eq!(m.handle(Event::ActionsOk), Command::Hold);
        // Back in while not waiting: nothing to start.
        assert_eq!(m.handle(Event::FailedOut(false)), Command::Keep);
    }

    #[test]
    fn a_master_whose_link_goes_down_releases_and_competes_once_it_is_back() {
        let mut m = master();
        let down = || Event::LinkDown(Some("eth0 has no carrier".into()));
        assert_eq!(m.handle(down()), Command::RunRelease);
        assert_eq!(m.handle(down()), Command::Keep, "once");
        assert_eq!(m.handle(Event::ActionsOk), Command::Unlock);
        assert_eq!(m.handle(Event::Unlocked(Ok(()))), sleep(POLL));
        assert!(!m.wants_candidacy());
        assert_eq!(m.handle(Event::Timer), sleep(POLL), "no attempt");
        assert!(m.last_error().unwrap().contains("until the link is back"));
        assert_eq!(m.handle(Event::LinkDown(None)), Command::Keep);
        assert_eq!(m.last_error(), None);
        assert_eq!(m.handle(Event::Timer), Command::TryLock);
    }

    #[test]
    fn a_drained_master_releases_and_competes_again_only_when_undrained() {
        let mut m = master();
        assert_eq!(m.handle(Event::Drained(true)), Command::RunRelease);
        assert_eq!(m.handle(Event::Drained(true)), Command::Keep, "once");
        assert_eq!(m.handle(Event::ActionsOk), Command::Unlock);
        assert_eq!(m.handle(Event::Unlocked(Ok(()))), sleep(POLL));
        assert_eq!(m.status(), Status::Drained);
        assert_eq!(m.last_error(), None, "a drain is no error");
        assert!(!m.wants_candidacy() && !m.may_wait_for_lock());
        assert_eq!(m.handle(Event::Timer), sleep(POLL), "no attempt");
        assert!(m.request_release(HOLD).is_err());
        assert_eq!(m.handle(Event::Drained(false)), Command::TryLock, "at once");
        assert_eq!(m.handle(Event::Locked), Command::RunAcquire);
    }

    #[test]
    fn a_drained_standby_stops_waiting_and_gives_a_won_lock_back() {
        let mut m = standby();
        assert!(m.may_wait_for_lock());
        // The runner replaces its wait in the kernel with a plain one.
        assert_eq!(m.handle(Event::Drained(true)), sleep(POLL));
        assert_eq!(m.status(), Status::Drained);
        // Drained during a lock call that then wins: given straight back.
        let mut m = standby();
        assert_eq!(m.handle(Event::Timer), Command::TryLock);
        assert_eq!(m.handle(Event::Drained(true)), Command::Keep);
        assert_eq!(m.handle(Event::Locked), Command::Unlock);
        // During acquire steps: cancelled, then standing by, drained.
        let mut m = standby();
        m.handle(Event::Timer);
        m.handle(Event::Locked);
        assert_eq!(m.handle(Event::Drained(true)), Command::Cancel);
        assert_eq!(m.handle(failed(true)), Command::Unlock);
        assert_eq!(m.last_error(), None);
        assert_eq!(m.handle(Event::Unlocked(Ok(()))), sleep(POLL));
        assert_eq!(m.status(), Status::Drained);
    }

    #[test]
    fn undraining_during_a_hold_off_leaves_the_hold_off_running() {
        let mut m = master();
        m.request_release(HOLD).unwrap();
        m.handle(Event::ActionsOk);
        m.handle(Event::Unlocked(Ok(())));
        assert_eq!(m.handle(Event::Drained(true)), Command::Keep);
        assert_eq!(m.status(), Status::Drained);
        assert_eq!(m.handle(Event::Drained(false)), Command::Keep);
        assert!(m.holding_off());
        assert_eq!(m.handle(Event::Timer), Command::TryLock);
    }

    #[test]
    fn a_failure_while_stopping_is_not_counted() {
        let mut m = standby();
        m.handle(Event::Timer);
        m.handle(Event::Locked);
        assert_eq!(m.handle(Event::Shutdown), Command::Cancel);
        assert!(!m.in_acquire_steps(), "cancelled steps fail by design");
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
        assert!(m.stopped_holding());
        assert_eq!(
            m.status(),
            Status::Releasing,
            "not standby: the lock is held"
        );
        assert!(m.last_error().unwrap().contains("boom"));
        assert_eq!(m.handle(Event::Timer), Command::Exit, "exit is final");
    }

    #[test]
    fn shutdown_during_acquire_cancels_it_then_unlocks() {
        let mut m = Machine::new(POLL, true);
        m.handle(Event::Start);
        m.handle(Event::Locked);
        assert_eq!(m.handle(Event::Shutdown), Command::Cancel);
        assert_eq!(m.handle(Event::Shutdown), Command::Keep, "cancelled once");
        assert_eq!(m.handle(failed(true)), Command::Unlock, "rolled back");
        assert_eq!(m.handle(Event::Unlocked(Ok(()))), Command::Exit);
        assert_eq!(m.status(), Status::Standby);
    }

    #[test]
    fn acquire_that_finished_before_the_cancel_is_released() {
        let mut m = Machine::new(POLL, true);
        m.handle(Event::Start);
        m.handle(Event::Locked);
        assert_eq!(m.handle(Event::Shutdown), Command::Cancel);
        assert_eq!(m.handle(Event::ActionsOk), Command::RunRelease);
        assert_eq!(m.handle(Event::ActionsOk), Command::Unlock);
        assert_eq!(m.handle(Event::Unlocked(Ok(()))), Command::Exit);
    }

    #[test]
    fn lock_won_while_shutting_down_is_released_with_actions() {
        let mut m = Machine::new(POLL, true);
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
        let mut m = Machine::new(POLL, true);
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
        let mut m = Machine::new(POLL, true);
        m.handle(Event::Start);
        m.handle(Event::Busy);
        assert_eq!(m.handle(failed(false)), sleep(POLL * 2), "backs off");
        assert_eq!(m.status(), Status::Backoff);
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

    #[test]
    fn no_leftovers_no_reconcile() {
        let mut m = Machine::new(POLL, false);
        m.handle(Event::Start);
        assert_eq!(
            m.handle(Event::Busy),
            sleep(POLL),
            "nothing of ours to undo: another instance's resources are left alone"
        );
        assert!(m.settled());
    }

    #[test]
    fn release_request_is_answered_at_the_first_failure_and_retries_go_on() {
        let mut m = master();
        m.request_release(Duration::from_secs(5)).unwrap();
        assert_eq!(m.take_reply(), None);
        m.handle(failed(false));
        let r = m.take_reply().expect("answered at once");
        assert!(r.unwrap_err().to_string().contains("boom"));
        assert_eq!(m.status(), Status::Releasing);
        assert!(m.last_error().unwrap().contains("keeping the lock"));
        assert_eq!(m.handle(Event::Timer), Command::RunRelease);
        m.handle(Event::ActionsOk);
        assert_eq!(m.last_error(), None, "the retry succeeded");
        m.handle(Event::Unlocked(Ok(())));
        assert_eq!(m.take_reply(), None, "answered once");
    }

    #[test]
    fn release_request_succeeds_once_unlocked() {
        let mut m = master();
        m.request_release(Duration::from_secs(5)).unwrap();
        m.handle(Event::ActionsOk);
        assert_eq!(m.take_reply(), None, "not before the unlock");
        m.handle(Event::Unlocked(Ok(())));
        assert_eq!(m.take_reply(), Some(Ok(())));
        assert!(m.holding_off());
    }

    #[test]
    fn shutdown_answers_a_waiting_release_request() {
        let mut m = master();
        m.request_release(Duration::from_secs(5)).unwrap();
        m.handle(Event::Shutdown);
        m.handle(failed(false));
        assert!(m.take_reply().unwrap().is_err());
    }

    #[test]
    fn a_master_in_doubt_of_its_membership_releases_at_once_and_stays_out() {
        let mut m = master();
        let why = Some("not running for 18s".to_string());
        assert_eq!(
            m.handle(Event::Membership(why.clone())),
            Command::RunRelease
        );
        assert!(!m.wants_candidacy());
        assert!(m.last_error().unwrap().contains("not running for 18s"));
        // A second report changes nothing.
        assert_eq!(m.handle(Event::Membership(why)), Command::Keep);
        assert_eq!(m.handle(Event::ActionsOk), Command::Unlock);
        assert_eq!(m.handle(Event::Unlocked(Ok(()))), sleep(POLL));
        assert_eq!(m.status(), Status::Standby);
        assert!(!m.may_wait_for_lock());
        // Timers do not try the lock while in doubt.
        for _ in 0..3 {
            assert_eq!(m.handle(Event::Timer), sleep(POLL));
        }
        assert_eq!(m.handle(Event::Membership(None)), Command::Keep);
        assert_eq!(m.last_error(), None);
        assert!(m.wants_candidacy());
        assert_eq!(m.handle(Event::Timer), Command::TryLock);
    }

    #[test]
    fn doubt_cancels_running_acquire_steps_and_gives_a_won_lock_back() {
        let mut m = Machine::new(POLL, false);
        m.handle(Event::Start);
        assert_eq!(m.handle(Event::Locked), Command::RunAcquire);
        let why = Some("frozen".to_string());
        assert_eq!(m.handle(Event::Membership(why.clone())), Command::Cancel);
        assert_eq!(m.handle(failed(true)), Command::Unlock);
        assert_eq!(m.handle(Event::Unlocked(Ok(()))), sleep(POLL));
        assert!(m.last_error().unwrap().contains("frozen"));
        // A lock call that was running when doubt arose: won, given back
        // without acquire steps.
        let mut m = standby();
        assert_eq!(m.handle(Event::Timer), Command::TryLock);
        assert_eq!(m.handle(Event::Membership(why)), Command::Keep);
        assert_eq!(m.handle(Event::Locked), Command::Unlock);
        assert_eq!(m.handle(Event::Unlocked(Ok(()))), sleep(POLL));
        assert_eq!(m.handle(Event::Timer), sleep(POLL));
    }

    #[test]
    fn hold_off_can_be_ended_early() {
        let mut m = master();
        m.request_release(Duration::from_secs(3600)).unwrap();
        m.handle(Event::ActionsOk);
        m.handle(Event::Unlocked(Ok(())));
        assert_eq!(m.status(), Status::Standby);
        assert!(m.holding_off());
        assert_eq!(m.resume(), Ok(Command::TryLock));
        assert!(!m.holding_off());
        assert!(m.resume().is_err(), "only while holding off");
        assert_eq!(m.handle(Event::Locked), Command::RunAcquire);
    }

    #[test]
    fn a_fail_count_ending_during_a_hold_off_does_not_end_it() {
        let mut m = master();
        m.request_release(Duration::from_secs(3600)).unwrap();
        m.handle(Event::ActionsOk);
        m.handle(Event::Unlocked(Ok(())));
        assert!(m.holding_off());
        assert_eq!(m.handle(Event::FailedOut(true)), Command::Keep);
        assert_eq!(m.handle(Event::FailedOut(false)), Command::Keep);
        assert!(m.holding_off(), "the hold-off's own timer ends it");
    }

    #[test]
    fn lost_lock_releases_and_competes_again() {
        let mut m = master();
        assert_eq!(
            m.handle(Event::LockLost("lock file gone".into())),
            Command::RunRelease
        );
        assert_eq!(m.status(), Status::Releasing);
        assert!(m.last_error().unwrap().contains("lock file gone"));
        assert_eq!(m.handle(Event::ActionsOk), Command::Unlock);
        assert_eq!(m.handle(Event::Unlocked(Ok(()))), sleep(POLL * 2));
        assert_eq!(m.handle(Event::Timer), Command::TryLock, "competes again");
    }

    #[test]
    fn stuck_unlock_at_shutdown_reports_the_lock_held() {
        let mut m = master();
        m.handle(Event::Shutdown);
        m.handle(Event::ActionsOk);
        m.handle(Event::Stalled);
        assert_eq!(m.handle(Event::Shutdown), Command::Exit);
        assert!(m.stopped_holding());
    }

    const HOLD: Duration = Duration::from_secs(30);

    /// A machine with a health check, started, that got its first result
    /// `ok` and made its first attempt.
    fn checked(leftovers: bool, ok: bool) -> Machine {
        let mut m = Machine::new(POLL, leftovers).with_check(HOLD);
        assert_eq!(m.handle(Event::Start), Command::Keep, "waits for a result");
        assert!(!m.settled());
        assert_eq!(m.handle(Event::Eligible(ok)), Command::TryLock);
        m
    }

    #[test]
    fn a_healthy_node_competes_after_its_first_result() {
        let mut m = checked(false, true);
        assert_eq!(m.handle(Event::Locked), Command::RunAcquire);
        assert_eq!(m.handle(Event::ActionsOk), Command::Hold);
        assert!(m.is_master());
    }

    #[test]
    fn an_unhealthy_node_gives_a_won_lock_back_without_acquiring() {
        let mut m = checked(false, false);
        assert_eq!(m.handle(Event::Locked), Command::Unlock);
        assert_eq!(m.handle(Event::Unlocked(Ok(()))), sleep(POLL));
        assert!(m.settled());
        // Ineligible: timers do not try the lock.
        assert_eq!(m.handle(Event::Timer), sleep(POLL));
        assert_eq!(m.handle(Event::Timer), sleep(POLL));
        assert_eq!(m.handle(Event::Eligible(true)), Command::Keep);
        assert_eq!(m.handle(Event::Timer), Command::TryLock, "competes again");
    }

    #[test]
    fn an_unhealthy_node_with_leftovers_clears_them_before_giving_the_lock_back() {
        let mut m = checked(true, false);
        assert_eq!(m.handle(Event::Locked), Command::RunRelease);
        assert_eq!(m.handle(Event::ActionsOk), Command::Unlock);
        assert_eq!(m.handle(Event::Unlocked(Ok(()))), sleep(POLL));
        // Lost instead: the usual reconcile.
        let mut m = checked(true, false);
        assert_eq!(m.handle(Event::Busy), Command::RunRelease);
    }

    #[test]
    fn a_master_that_becomes_unhealthy_releases_and_holds_off() {
        let mut m = checked(false, true);
        m.handle(Event::Locked);
        m.handle(Event::ActionsOk);
        assert_eq!(m.handle(Event::Eligible(false)), Command::RunRelease);
        assert!(m.last_error().unwrap().contains("health check failing"));
        assert_eq!(m.handle(Event::ActionsOk), Command::Unlock);
        assert_eq!(
            m.handle(Event::Unlocked(Ok(()))),
            Command::Sleep {
                wait: HOLD,
                jitter: false
            }
        );
        assert!(m.holding_off());
        // Healthy again during the hold-off: still out until it ends.
        assert_eq!(m.handle(Event::Eligible(true)), Command::Keep);
        assert!(m.holding_off());
        assert_eq!(m.handle(Event::Timer), Command::TryLock);
    }

    #[test]
    fn a_hold_off_that_ends_while_unhealthy_stands_by() {
        let mut m = checked(false, true);
        m.handle(Event::Locked);
        m.handle(Event::ActionsOk);
        m.handle(Event::Eligible(false));
        m.handle(Event::ActionsOk);
        m.handle(Event::Unlocked(Ok(())));
        assert_eq!(m.handle(Event::Timer), sleep(POLL));
        assert!(!m.holding_off());
        assert_eq!(m.status(), Status::Standby);
    }

    #[test]
    fn unhealthy_during_acquire_releases_once_it_finished() {
        let mut m = checked(false, true);
        m.handle(Event::Locked);
        assert_eq!(m.handle(Event::Eligible(false)), Command::Keep);
        assert_eq!(m.handle(Event::ActionsOk), Command::RunRelease);
        m.handle(Event::ActionsOk);
        m.handle(Event::Unlocked(Ok(())));
        assert!(m.holding_off());
    }

    #[test]
    fn unhealthy_during_the_lock_call_does_not_acquire() {
        let mut m = checked(false, true);
        m.handle(Event::Eligible(false));
        assert_eq!(m.handle(Event::Locked), Command::Unlock);
    }

    #[test]
    fn shutdown_before_the_first_result_exits() {
        let mut m = Machine::new(POLL, true).with_check(HOLD);
        m.handle(Event::Start);
        assert_eq!(m.handle(Event::Shutdown), Command::Exit);
        assert_eq!(m.handle(Event::Eligible(true)), Command::Exit);
    }

    #[test]
    fn an_outranked_master_hands_over_and_stands_by() {
        let mut m = master();
        assert!(m.wants_candidacy());
        assert_eq!(m.handle(Event::Outranked("a".into())), Command::RunRelease);
        assert_eq!(m.handle(Event::ActionsOk), Command::Unlock);
        assert_eq!(m.handle(Event::Unlocked(Ok(()))), sleep(POLL));
        assert!(!m.holding_off() && m.last_error().is_none());
        assert!(m.wants_candidacy(), "still a candidate for when a leaves");
        assert_eq!(m.handle(Event::Timer), Command::TryLock);
    }

    #[test]
    fn candidacy_only_while_ready_to_take_mastership() {
        let mut m = checked(false, true);
        assert!(m.wants_candidacy());
        m.handle(Event::Eligible(false));
        assert!(!m.wants_candidacy(), "unhealthy");
        let mut m = master();
        m.request_release(HOLD).unwrap();
        m.handle(Event::ActionsOk);
        m.handle(Event::Unlocked(Ok(())));
        assert!(!m.wants_candidacy(), "holding off");
        let mut m = standby();
        m.handle(Event::Timer);
        m.handle(Event::LockFailed(LockError::Failed("x".into())));
        assert!(!m.wants_candidacy(), "backing off");
        let mut m = standby();
        m.handle(Event::Shutdown);
        assert!(!m.wants_candidacy(), "stopped");
    }

    #[test]
    fn a_reload_changes_the_poll_interval_in_place() {
        let mut m = standby();
        m.set_poll(POLL * 3);
        m.handle(Event::Timer);
        assert_eq!(m.handle(Event::Busy), sleep(POLL * 3));
    }
}

/// Property tests over random event sequences: a driver plays the runner,
/// answering each outstanding operation with a random outcome and mixing in
/// admin requests, shutdowns and stray events.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// The operation the runner would be carrying out.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Op {
        None,
        Lock,
        Acquire,
        Release,
        Unlock,
        Sleep,
        Hold,
    }

    /// Operations that must complete (or be cancelled) before another
    /// starts: at most one lock call or action run per resource.
    fn blocking(op: Op) -> bool {
        matches!(op, Op::Lock | Op::Acquire | Op::Release | Op::Unlock)
    }

    /// The health hold-off in these runs: a value no other wait has.
    const HEALTH_HOLD: Duration = Duration::from_secs(777);

    struct Run {
        m: Machine,
        op: Op,
        /// The last eligibility sent (None: no result yet).
        eligible: Option<bool>,
        /// A master gave up for health; its hold-off has not ended.
        health_out: bool,
        /// The hold-off sleep of that give-up is outstanding.
        hold_sleep: bool,
        /// Release actions failed and no later release succeeded.
        release_failed: bool,
        shutdown_sent: bool,
        exited: bool,
        log: Vec<String>,
        /// The machine has a health check (Eligible events are sent).
        checked: bool,
        /// Out for its fail count (the last FailedOut sent).
        failed_out: bool,
        /// A tracked link is down (the last LinkDown sent).
        link_down: bool,
        /// Drained (the last Drained sent).
        drained: bool,
        /// Membership in doubt (the last Membership sent).
        suspect: bool,
        /// A TryLock was asked for (the first attempt may be made kept
        /// aside: it decides crash recovery).
        attempted: bool,
    }

    impl Run {
        /// Drained, a tracked link down or membership in doubt.
        fn aside(&self) -> bool {
            self.drained || self.link_down || self.suspect
        }

        fn apply(&mut self, cmd: Command) {
            self.log.push(format!("  -> {cmd:?}"));
            if self.exited {
                assert_eq!(cmd, Command::Exit, "Exit is final\n{}", self.log.join("\n"));
                return;
            }
            let next = match cmd {
                Command::Keep => return,
                Command::Cancel => {
                    assert_eq!(self.op, Op::Acquire, "only acquire steps are cancelled");
                    return;
                }
                Command::Exit => {
                    self.exited = true;
                    assert!(self.shutdown_sent, "exit only after a shutdown");
                    Op::None
                }
                Command::TryLock => {
                    assert!(
                        !self.health_out,
                        "TryLock within the hold-off of a health give-up\n{}",
                        self.log.join("\n")
                    );
                    assert!(
                        !(self.attempted && self.aside()),
                        "TryLock while drained, link down or in doubt\n{}",
                        self.log.join("\n")
                    );
                    self.attempted = true;
                    Op::Lock
                }
                Command::RunAcquire => {
                    assert_eq!(
                        self.eligible,
                        Some(true),
                        "acquire while not eligible\n{}",
                        self.log.join("\n")
                    );
                    assert!(
                        !self.failed_out,
                        "acquire while out for the fail count\n{}",
                        self.log.join("\n")
                    );
                    assert!(
                        !self.link_down,
                        "acquire while a tracked link is down\n{}",
                        self.log.join("\n")
                    );
                    assert!(
                        !self.aside(),
                        "acquire while drained, link down or in doubt\n{}",
                        self.log.join("\n")
                    );
                    Op::Acquire
                }
                Command::RunRelease => Op::Release,
                Command::Unlock => {
                    assert!(
                        !self.release_failed,
                        "Unlock after failed release actions\n{}",
                        self.log.join("\n")
                    );
                    Op::Unlock
                }
                Command::Sleep { wait, .. } => {
                    self.hold_sleep = self.health_out && wait == HEALTH_HOLD;
                    Op::Sleep
                }
                Command::Hold => {
                    assert!(
                        !self.aside(),
                        "master while drained, link down or in doubt\n{}",
                        self.log.join("\n")
                    );
                    Op::Hold
                }
            };
            // A new operation while a blocking one is outstanding would mean
            // two at once; Exit may abandon a stalled call (documented).
            if cmd != Command::Exit {
                assert!(
                    !blocking(self.op),
                    "{cmd:?} while {:?} is outstanding\n{}",
                    self.op,
                    self.log.join("\n")
                );
            }
            self.op = next;
        }

        fn event(&mut self, ev: Event) {
            self.log.push(format!("{ev:?}"));
            match (&ev, self.op) {
                (Event::ActionsOk, Op::Release) => self.release_failed = false,
                (Event::ActionsFailed { .. }, Op::Release) => self.release_failed = true,
                _ => {}
            }
            if ev == Event::Shutdown {
                self.shutdown_sent = true;
            }
            if let Event::FailedOut(out) = ev {
                self.failed_out = out;
            }
            if let Event::LinkDown(why) = &ev {
                self.link_down = why.is_some();
            }
            let was_aside = self.aside();
            if let Event::Drained(on) = ev {
                self.drained = on;
            }
            if let Event::Membership(why) = &ev {
                self.suspect = why.is_some();
            }
            let set_aside = !was_aside && self.aside();
            if let Event::Eligible(e) = ev {
                self.eligible = Some(e);
                if !e && self.op == Op::Hold {
                    self.health_out = true;
                }
            }
            if ev == Event::Timer && self.op == Op::Sleep && self.hold_sleep {
                self.health_out = false;
                self.hold_sleep = false;
            }
            let was_master = self.op == Op::Hold;
            // The outstanding operation completes with this event.
            let completes = !matches!(
                ev,
                Event::Shutdown
                    | Event::Stalled
                    | Event::LockLost(_)
                    | Event::Eligible(_)
                    | Event::Outranked(_)
                    | Event::FailedOut(_)
                    | Event::LinkDown(_)
                    | Event::Drained(_)
                    | Event::Membership(_)
            );
            let before = self.op;
            if completes && before != Op::Hold {
                self.op = Op::None;
            }
            let unhealthy = matches!(ev, Event::Eligible(false));
            let cmd = self.m.handle(ev);
            if cmd == Command::Keep && completes && before != Op::Hold {
                // Ignored (a stray event): the operation is still running.
                self.op = before;
            }
            if was_master && unhealthy && !self.exited {
                assert_eq!(cmd, Command::RunRelease, "an unhealthy master releases");
                self.op = Op::None; // the runner drops the Hold future
            }
            if was_master && set_aside && !self.exited {
                assert_eq!(
                    cmd,
                    Command::RunRelease,
                    "a master drained, link down or in doubt releases at once\n{}",
                    self.log.join("\n")
                );
                self.op = Op::None; // as for health
            }
            if (before == Op::Sleep || before == Op::None) && cmd == Command::TryLock {
                self.op = Op::None; // a first attempt replaces nothing running
            }
            self.apply(cmd);
        }

        /// A plausible outcome of the outstanding operation, picked by `c`.
        fn outcome(&self, c: u8) -> Option<Event> {
            let failed = |clean| Event::ActionsFailed {
                msg: "x".into(),
                clean,
            };
            Some(match (self.op, c % 4) {
                (Op::Lock, 0) => Event::Locked,
                (Op::Lock, 1) => Event::Busy,
                (Op::Lock, 2) => Event::LockFailed(LockError::Failed("x".into())),
                (Op::Lock, _) => Event::Stalled,
                (Op::Acquire, 0 | 1) => Event::ActionsOk,
                (Op::Acquire, c) => failed(c == 2),
                (Op::Release, 0 | 1) => Event::ActionsOk,
                (Op::Release, _) => failed(false),
                (Op::Unlock, 3) => Event::Stalled,
                (Op::Unlock, c) => Event::Unlocked(if c == 2 {
                    Err(LockError::Failed("x".into()))
                } else {
                    Ok(())
                }),
                (Op::Sleep, _) => Event::Timer,
                (Op::Hold, 0) => Event::LockLost("x".into()),
                (Op::Hold, 1) => Event::Outranked("x".into()),
                (Op::Hold, _) | (Op::None, _) => return None,
            })
        }

        fn step(&mut self, c: u8) {
            match c / 4 % 8 {
                // Mostly: the operation completes.
                0..=4 => {
                    if let Some(ev) = self.outcome(c) {
                        self.event(ev);
                    }
                }
                5 => {
                    self.log.push("release request".into());
                    if let Ok(cmd) = self.m.request_release(Duration::from_secs(1)) {
                        // The runner drops the Hold future.
                        self.op = Op::None;
                        self.apply(cmd);
                    }
                }
                6 => {
                    self.log.push("resume".into());
                    if let Ok(cmd) = self.m.resume() {
                        self.op = Op::None; // the hold-off sleep is dropped
                        self.health_out = false;
                        self.apply(cmd);
                    }
                }
                // The 32 bytes that come here spread over the 12 kinds
                // (c / 32 and c % 4 vary among them; c % 6 alone left
                // some kinds never drawn).
                _ => self.event(match (c / 32 + c % 4 * 8) % 12 {
                    0 => Event::Timer,
                    1 => Event::Busy,
                    2 if self.checked => Event::Eligible(true),
                    3 if self.checked => Event::Eligible(false),
                    4 => Event::FailedOut(true),
                    5 => Event::FailedOut(false),
                    6 => Event::LinkDown(Some("eth9 has no carrier".into())),
                    7 => Event::LinkDown(None),
                    8 => Event::Drained(true),
                    9 => Event::Drained(false),
                    10 => Event::Membership(Some("frozen".into())),
                    11 => Event::Membership(None),
                    _ => Event::Timer,
                }),
            }
        }
    }

    fn start(leftovers: bool, checked: bool) -> Run {
        let mut m = Machine::new(Duration::from_secs(1), leftovers);
        if checked {
            m = m.with_check(HEALTH_HOLD);
        }
        let mut r = Run {
            m,
            op: Op::None,
            eligible: if checked { None } else { Some(true) },
            health_out: false,
            hold_sleep: false,
            checked,
            release_failed: false,
            shutdown_sent: false,
            exited: false,
            log: Vec::new(),
            failed_out: false,
            link_down: false,
            drained: false,
            suspect: false,
            attempted: false,
        };
        r.event(Event::Start);
        r
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// At most one operation outstanding; never Unlock after failed
        /// release actions until a later success; Exit is final.
        #[test]
        /// With a check also: never acquire steps while not eligible; an
        /// unhealthy master releases at once; no lock attempt within the
        /// hold-off after a health give-up (unless resumed).
        #[test]
        fn invariants_hold(leftovers: bool, checked: bool, choices in proptest::collection::vec(any::<u8>(), 0..120)) {
            let mut r = start(leftovers, checked);
            for c in choices {
                r.step(c);
            }
        }

        /// A shutdown always ends in Exit, whatever the outstanding
        /// operations then do (bounded: each retry path ends).
        #[test]
        fn shutdown_always_ends_in_exit(
            leftovers: bool,
            checked: bool,
            before in proptest::collection::vec(any::<u8>(), 0..60),
            after in proptest::collection::vec(any::<u8>(), 40..41),
        ) {
            let mut r = start(leftovers, checked);
            for c in before {
                r.step(c);
            }
            r.event(Event::Shutdown);
            for c in after {
                if r.exited {
                    break;
                }
                // After the shutdown only outcomes of the running operation
                // arrive (the runner stops asking).
                match r.outcome(c) {
                    Some(ev) => r.event(ev),
                    None => r.event(Event::Shutdown),
                }
            }
            prop_assert!(r.exited, "no Exit after shutdown:\n{}", r.log.join("\n"));
        }
    }
}
