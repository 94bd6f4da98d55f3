//! Drives one resource: carries out the machine's commands (lock calls on
//! the blocking pool under a deadline, actions, timers) and answers requests
//! from the supervisor. The select loop never blocks, so a runner answers a
//! ping even while its lock call is stuck in the kernel.
//!
//! The supervisor runs each runner inside a tracing span that carries the
//! resource's name, so log lines from here and from its actions are tagged
//! once, there.
//!
//! The parts: the one outstanding operation as a future (`op`), the
//! master's watch (`hold`), the lock attempts and action steps handed off
//! (`jobs`), the candidacy task and the probes of better candidates
//! (`candidacy`), the health check's task (`checker`), a reload applied in
//! place (`reload`). Here: the loop, with one handler for each thing it
//! waits for.

use super::alerts::Alerts;
use super::candidacy::{better, candidacy};
use super::checker::{CheckResult, Checker, next_result};
use super::deferral::Deferral;
use super::failures::Failures;
use super::hold::{Pending, Preempt, hold};
use super::machine::{Command, Event, Machine, RequestError};
use super::op::{Done, Op, retire};
use super::status::{Board, ResourceStatus};
use super::wait::{NoWaiter, Waiter};
use crate::action::{self, Ctx};
use crate::clock::now_ms;
use crate::config::ResourceSpec;
use crate::instance::Record;
use crate::lock::{HeldLock, LockBackend};
use crate::metrics::{LockCall, Metrics};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until};
use tracing::Instrument;

/// The answer to an admin's request: text, as the client is shown it (the
/// machine's `RequestError` rendered).
pub type Reply = oneshot::Sender<Result<(), String>>;

pub enum Request {
    /// Planned switchover: release and stay out for `hold_off`. Answered
    /// once the lock is given up, or at the first failed release attempt.
    Release {
        hold_off: Duration,
        reply: Reply,
    },
    /// End a hold-off early.
    Resume(Reply),
    /// Clear the fail count; out for it, compete again now.
    Reset(Reply),
    /// A reload changed only settings that apply in place (intervals,
    /// timeouts): no release, no new lock.
    Update {
        spec: Arc<ResourceSpec>,
        op_timeout: Duration,
    },
    Ping(oneshot::Sender<()>),
    Shutdown,
}

pub struct Runner {
    /// The resource's settings. Its `poll_interval` seeds the machine,
    /// which owns the interval from then on (a reload sets it there).
    pub spec: Arc<ResourceSpec>,
    pub node: String,
    pub backend: Arc<dyn LockBackend>,
    pub op_timeout: Duration,
    pub board: Board,
    /// Bumped on every status change.
    pub changed: watch::Sender<()>,
    /// This instance's record that the resource's acquire steps ran.
    pub record: Record,
    /// Observed here: state changes, lock-call and action-run durations,
    /// stalls.
    pub metrics: Arc<Metrics>,
    /// With `prefer`: how long we have deferred to more preferred
    /// candidates, and which we judged stuck (see `deferral`).
    pub deferral: Arc<Mutex<Deferral>>,
    /// Whether this node's cluster membership is in doubt (see
    /// `membership`): followed for the machine.
    pub membership: crate::membership::Doubt,
    /// The carrier of the network links (`links`), for VIPs that track
    /// their interface; None: no tracking (none configured, or the watch
    /// could not start).
    pub links: Option<crate::links::Links>,
    /// The node's drain (`drain`): followed for the machine.
    pub drain: watch::Receiver<Option<crate::drain::Drain>>,
}

/// The interfaces whose carrier `spec` follows: its VIPs' with
/// `track_link` (the default).
fn tracked(spec: &ResourceSpec) -> Vec<String> {
    spec.actions
        .iter()
        .filter_map(|a| match a {
            crate::config::ActionSpec::Vip(v) if v.track_link => Some(v.interface.clone()),
            _ => None,
        })
        .collect()
}

/// The next carrier change, never without a link watch.
async fn link_change(links: &mut Option<crate::links::Links>) {
    match links {
        Some(l) => l.changed().await,
        None => std::future::pending().await,
    }
}

fn jittered(wait: Duration, jitter: bool) -> Duration {
    if !jitter || wait.is_zero() {
        return wait;
    }
    let max = (wait.as_micros() / 10).max(1) as u64;
    wait.saturating_add(Duration::from_micros(rand::random_range(0..max)))
}

impl Runner {
    /// Runs until shutdown has released everything (or the request channel
    /// closes, which is a shutdown too); returns the final status, which
    /// says whether the lock is still held.
    ///
    /// The resource is on the status board when this returns, before the
    /// future first runs: with more than one runtime worker the control
    /// socket may answer `status` before every runner got a turn, and it
    /// must list every resource (seen on the VM tier: an empty list).
    pub fn run(
        self,
        requests: mpsc::Receiver<Request>,
    ) -> impl Future<Output = ResourceStatus> + Send + 'static {
        let (mut task, cmd) = Task::new(self);
        task.publish();
        // Boxed: an async fn's arguments are kept twice in its future
        // (as given, and as its locals), and the task is most of it.
        Box::new(task).drive(cmd, requests)
    }

    /// Listed in `prefer`: a task that holds our candidate lock while the
    /// sender says so (we would take mastership), so that less preferred
    /// nodes defer to us; it retries every `poll`. Dropping the sender
    /// gives it up.
    pub(super) fn candidacy(
        &self,
        poll: Duration,
    ) -> (watch::Sender<bool>, Option<JoinHandle<()>>) {
        let (want, want_rx) = watch::channel(false);
        let task = self.spec.rank(&self.node).map(|i| {
            tokio::spawn(
                candidacy(
                    self.backend.clone(),
                    self.spec.candidate_lock(i),
                    want_rx,
                    poll,
                    self.op_timeout,
                )
                .in_current_span(),
            )
        });
        (want, task)
    }

    pub(super) fn ctx(&self) -> Ctx {
        Ctx {
            resource: self.spec.name.clone(),
            node: self.node.clone(),
        }
    }
}

/// A runner at work: its settings, the machine, and what the loop keeps
/// from one turn to the next.
pub(super) struct Task {
    pub(super) r: Runner,
    pub(super) m: Machine,
    /// The health check's task, with a check.
    pub(super) checker: Option<Checker>,
    /// Tells the candidacy task whether to hold our candidate lock.
    pub(super) want: watch::Sender<bool>,
    pub(super) candidate: Option<JoinHandle<()>>,
    held: Option<Box<dyn HeldLock>>,
    pub(super) op: Op,
    last: Option<ResourceStatus>,
    /// Admin release requests waiting for their outcome.
    waiters: Vec<Reply>,
    /// When the running hold-off ends (for status).
    hold_off_until: Option<u64>,
    /// The first lock attempt never defers to a preferred node: it
    /// decides crash recovery (a dlmfs lock cached on this node by our
    /// killed predecessor is ours to resume or release, and deferring
    /// would leave it cached, blocking everyone). With `preempt` a won
    /// lock is handed over properly at the next poll.
    attempted: bool,
    /// A lock call ran past op_timeout and has not returned yet.
    stalled: bool,
    /// Recent failed acquires (fail counts, with `max_failures`).
    pub(super) failures: Failures,
    /// The `[[notify]]` programs' queue.
    alerts: Alerts,
    /// Why a tracked link is down, as last told to the machine.
    link_down: Option<String>,
    /// A handover the master's watch delays (`preempt_delay`), for status.
    handover: watch::Receiver<Pending>,
}

impl Task {
    /// The runner at its start, and the machine's first command.
    fn new(mut r: Runner) -> (Task, Command) {
        // Unit actions are checked by a standby even without a record.
        let reconcile = r.record.exists() || action::checks_on_standby(&r.spec.actions);
        let mut m = Machine::new(r.spec.poll_interval, reconcile);
        // The check starts with the resource; until its first result the
        // node does not compete (see Machine::with_check).
        let checker = r.spec.check.as_ref().map(|c| Checker::start(c, r.ctx()));
        if let Some(c) = &r.spec.check {
            m = m.with_check(c.hold_off);
        }
        let (want, candidate) = r.candidacy(m.poll());
        let ctx = r.ctx();
        // In doubt already (an earlier run recorded it): never master.
        let doubt = r.membership.borrow_and_update().clone();
        if doubt.is_some() {
            m.handle(Event::Membership(doubt));
        }
        // A tracked link down already: not competing from the start.
        let link_down = r.links.as_ref().and_then(|l| l.down(&tracked(&r.spec)));
        if link_down.is_some() {
            m.handle(Event::LinkDown(link_down.clone()));
        }
        // Drained already (a drain outlives restarts): not competing.
        if r.drain.borrow_and_update().is_some() {
            m.handle(Event::Drained(true));
        }
        let cmd = m.handle(Event::Start);
        let task = Task {
            r,
            m,
            checker,
            want,
            candidate,
            held: None,
            op: Op::Idle,
            last: None,
            waiters: Vec::new(),
            hold_off_until: None,
            attempted: false,
            stalled: false,
            failures: Failures::default(),
            alerts: Alerts::new(ctx),
            link_down,
            handover: watch::channel(None).1,
        };
        (task, cmd)
    }

    /// The loop: carry out a command, show where that leaves us, and take
    /// the next event from whichever comes first.
    async fn drive(
        mut self: Box<Self>,
        mut cmd: Command,
        mut requests: mpsc::Receiver<Request>,
    ) -> ResourceStatus {
        // The steps' futures are boxed when they run: this loop's future
        // lives as long as the resource (1,000s of them), and holding their
        // states inline made it 4.6 KiB (a test keeps it small).
        while cmd != Command::Exit {
            Box::pin(self.carry_out(cmd)).await;
            self.answer_release();
            self.publish();
            let wants = self.m.wants_candidacy();
            self.want
                .send_if_modified(|w| std::mem::replace(w, wants) != *w);
            cmd = Box::pin(self.next_event(&mut requests)).await;
        }
        Box::pin((*self).finish()).await
    }

    /// The next event, from whichever source comes first, as the machine's
    /// command. Boxed by the loop (see there): the sources' futures are
    /// most of its state.
    async fn next_event(&mut self, requests: &mut mpsc::Receiver<Request>) -> Command {
        tokio::select! {
            // First: a master in doubt gives up before anything else
            // it would do (a VIP refresh, an announcement).
            biased;
            Ok(()) = self.r.membership.changed() => self.on_membership(),
            () = link_change(&mut self.r.links) => self.on_links(),
            Ok(()) = self.r.drain.changed() => {
                let on = self.r.drain.borrow_and_update().is_some();
                self.m.handle(Event::Drained(on))
            }
            d = self.op.next() => self.on_done(d),
            Some(r) = next_result(&mut self.checker) => self.on_check(r),
            req = requests.recv() => Box::pin(self.on_request(req)).await,
            // Only to show it.
            Ok(()) = self.handover.changed() => Command::Keep,
        }
    }

    /// Starts what the machine asked for, or lets the running operation go
    /// on.
    async fn carry_out(&mut self, cmd: Command) {
        match cmd {
            Command::Exit | Command::Keep => {}
            Command::Cancel => {
                if let Op::Actions {
                    cancel: Some(c), ..
                } = &self.op
                {
                    tracing::info!("stopping: cancelling the running acquire steps");
                    let _ = c.send(true);
                }
            }
            Command::Sleep { wait, .. } if self.m.holding_off() => {
                self.hold_off_until = Some(crate::clock::after_ms(now_ms(), wait));
                self.replace_op(cmd, true).await;
            }
            // A standby waits for the lock on a thread of its own: in
            // the kernel where the backend can and no more preferred
            // node is to be deferred to (a wait would win past them),
            // else polling there. The first attempt is the runner's own.
            Command::Sleep { wait, jitter } if self.m.may_wait_for_lock() && self.attempted => {
                self.hold_off_until = None;
                if !matches!(self.op, Op::Wait(_)) {
                    self.wait_for_lock(cmd, jittered(wait, jitter)).await;
                }
            }
            // The try a finished wait stands for: its outcome, no call.
            Command::TryLock if matches!(self.op, Op::Ready(_) | Op::Stuck { .. }) => {
                self.hold_off_until = None
            }
            c => {
                self.hold_off_until = None;
                self.replace_op(c, self.attempted).await;
                self.attempted |= c == Command::TryLock;
            }
        }
    }

    /// Ends the running operation (a standby's wait within op_timeout, see
    /// `retire`) and starts `cmd`'s.
    async fn replace_op(&mut self, cmd: Command, defer: bool) {
        retire(std::mem::replace(&mut self.op, Op::Idle), self.r.op_timeout).await;
        self.op = self.start(cmd, defer);
    }

    /// A standby's `Sleep`, as a wait that ends when the lock is free:
    /// first try after `first`.
    async fn wait_for_lock(&mut self, cmd: Command, first: Duration) {
        retire(std::mem::replace(&mut self.op, Op::Idle), self.r.op_timeout).await;
        let r = &self.r;
        let in_kernel = r.backend.can_wait() && better(&r.spec, &r.node).is_empty();
        let w = if in_kernel {
            tracing::debug!("waiting for lock {}", r.spec.lock);
            Waiter::start(r.backend.clone(), r.spec.lock.clone())
        } else {
            let poll = self.m.poll();
            Waiter::poll(
                r.attempt(true, poll),
                (first, poll, r.op_timeout),
                (&*r.backend, &r.spec.lock),
            )
        };
        self.op = match w {
            Ok(w) => Op::Wait(w),
            // No thread: poll from here.
            Err(NoWaiter::Full) => self.start(cmd, true),
            Err(NoWaiter::Failed(e)) => {
                tracing::warn!("{e}; polling from the runtime instead");
                self.start(cmd, true)
            }
        };
    }

    /// Answers the waiting release requests once the machine knows how
    /// the release went.
    fn answer_release(&mut self) {
        if let Some(r) = self.m.take_reply() {
            let r = r.map_err(|e| e.to_string());
            self.waiters.drain(..).for_each(|w| drop(w.send(r.clone())));
        }
    }

    /// The membership watch moved: in doubt, or sound again.
    fn on_membership(&mut self) -> Command {
        let doubt = self.r.membership.borrow_and_update().clone();
        self.m.handle(Event::Membership(doubt))
    }

    /// A link's carrier changed: the machine hears of it when that
    /// changes whether one of this resource's tracked links is down.
    pub(super) fn on_links(&mut self) -> Command {
        let why = self
            .r
            .links
            .as_ref()
            .and_then(|l| l.down(&tracked(&self.r.spec)));
        if why == self.link_down {
            return Command::Keep;
        }
        // Down is logged once, with the status's last error (publish).
        if why.is_none() {
            tracing::info!(
                "no tracked link is down any more (carrier back, or not tracked): competing"
            );
        }
        self.link_down = why.clone();
        self.m.handle(Event::LinkDown(why))
    }

    /// A health check ran: the machine hears of it when the verdict
    /// changed.
    fn on_check(&mut self, r: CheckResult) -> Command {
        self.r.metrics.check_result(&self.r.spec.name, r.is_ok());
        match self.checker.as_mut().and_then(|c| c.record(r)) {
            Some(e) => self.m.handle(Event::Eligible(e)),
            None => Command::Keep,
        }
    }

    /// The outstanding operation finished (or stalled).
    fn on_done(&mut self, done: Done) -> Command {
        // The op after a stall is the stalled call returning.
        let now_stalled = matches!(done, Done::Event(Event::Stalled));
        if now_stalled || self.stalled {
            self.r.metrics.stalled(&self.r.spec.name, now_stalled);
        }
        self.stalled = now_stalled;
        let ev = match done {
            Done::Won(h) => {
                if let Some(p) = h.previous_holder() {
                    tracing::info!("lock won: {p}");
                }
                self.held = Some(h);
                Event::Locked
            }
            Done::Event(Event::Stalled) => {
                tracing::warn!(
                    "lock call has not returned within op_timeout ({:?}); still waiting for it (the DLM may be recovering a dead node)",
                    self.r.op_timeout
                );
                Event::Stalled
            }
            Done::Event(Event::Outranked(n)) => {
                tracing::info!(
                    "more preferred node {n} is a candidate (preempt): handing mastership over"
                );
                Event::Outranked(n)
            }
            Done::Event(Event::LockLost(why)) => {
                tracing::error!("{why}: giving mastership up and competing again");
                Event::LockLost(why)
            }
            Done::Event(Event::Busy) => {
                tracing::debug!("lock {} is busy", self.r.spec.lock);
                Event::Busy
            }
            Done::Event(Event::Timer) => match self.failure_timeout_over() {
                Some(cmd) => return cmd,
                None => Event::Timer,
            },
            Done::Event(ev) => ev,
        };
        let counted = matches!(ev, Event::ActionsFailed { .. }) && self.m.in_acquire_steps();
        let cmd = self.m.handle(ev);
        if counted {
            self.count_failure();
        }
        cmd
    }

    /// A request from the supervisor; the channel closed is a shutdown.
    async fn on_request(&mut self, req: Option<Request>) -> Command {
        match req {
            Some(Request::Ping(reply)) => {
                let _ = reply.send(());
                Command::Keep
            }
            Some(Request::Release { hold_off, reply }) => self.on_release(hold_off, reply),
            Some(Request::Resume(reply)) => self.on_resume(reply),
            Some(Request::Reset(reply)) => self.on_reset(reply),
            Some(Request::Update { spec, op_timeout }) => self.on_update(spec, op_timeout).await,
            Some(Request::Shutdown) | None => self.m.handle(Event::Shutdown),
        }
    }

    /// An admin's release: answered once the lock is given up (or the
    /// release failed), or at once when refused.
    fn on_release(&mut self, hold_off: Duration, reply: Reply) -> Command {
        match self.m.request_release(hold_off) {
            Ok(c) => {
                tracing::info!(
                    "release requested, holding off for {}",
                    humantime::format_duration(hold_off)
                );
                self.waiters.push(reply);
                c
            }
            Err(e) => {
                let _ = reply.send(Err(e.to_string()));
                Command::Keep
            }
        }
    }

    /// An admin ends a hold-off early.
    fn on_resume(&mut self, reply: Reply) -> Command {
        match self.m.resume() {
            Ok(c) => {
                tracing::info!("hold-off ended early by request");
                let _ = reply.send(Ok(()));
                c
            }
            Err(e) => {
                let _ = reply.send(Err(e.to_string()));
                Command::Keep
            }
        }
    }

    /// After `Exit`: ends what still runs and returns the final status.
    async fn finish(mut self) -> ResourceStatus {
        retire(std::mem::replace(&mut self.op, Op::Idle), self.r.op_timeout).await;
        self.r.backend.forget(&self.r.spec.lock);
        self.answer_release();
        if let Some(c) = self.checker.take() {
            c.stop().await;
        }
        // Gives the candidate lock up (a call stuck in the kernel is left
        // behind: the process exit drops it).
        drop(std::mem::replace(&mut self.want, watch::channel(false).0));
        if let Some(t) = self.candidate.take() {
            let _ = tokio::time::timeout(self.r.op_timeout, t).await;
        }
        self.hold_off_until = None;
        self.publish();
        for w in self.waiters.drain(..) {
            let _ = w.send(Err(RequestError::ShuttingDown.to_string()));
        }
        // The last change's alert runs too (bounded: see alerts).
        self.alerts.finish().await;
        // A lock still held here (release actions failed on the way out)
        // is deliberately kept until the process exits: see Machine.
        if let Some(h) = self.held.take() {
            std::mem::forget(h);
        }
        self.last.take().expect("published at least once")
    }

    /// Shows the machine's state on the board (and in the log and the
    /// metrics when it changed).
    fn publish(&mut self) {
        let (failures, failed_until) = self.failure_status();
        let (m, last) = (&self.m, &mut self.last);
        let hold_off_until = self.hold_off_until.filter(|_| m.holding_off());
        let handover = self.handover.borrow().clone().filter(|_| m.is_master());
        let checker = self.checker.as_ref();
        let (state, err) = (m.status(), m.last_error().map(str::to_string));
        let health = checker.map(|c| c.health.as_str().to_string());
        let health_error = checker.and_then(|c| c.error.clone());
        let epoch = self.held.as_ref().and_then(|h| h.epoch());
        let mut st = match last {
            Some(l)
                if l.state == state
                    && l.last_error == err
                    && l.settled == m.settled()
                    && l.hold_off_until_ms == hold_off_until
                    && l.health == health
                    && l.health_error == health_error
                    && l.failures == failures
                    && l.failed_until_ms == failed_until
                    && l.handover_to.as_ref() == handover.as_ref().map(|h| &h.0)
                    && l.handover_at_ms == handover.as_ref().map(|h| h.1)
                    && l.epoch == epoch =>
            {
                return;
            }
            Some(l) if l.state == state => l.clone(),
            _ => ResourceStatus {
                transitions: last.as_ref().map_or(0, |l| l.transitions + 1),
                ..ResourceStatus::new(&self.r.spec.name, &self.r.spec.lock, state, now_ms())
            },
        };
        let previous = last.as_ref().map(|l| l.state);
        let changed = previous != Some(state);
        if changed {
            tracing::info!(state = state.as_str(), "state {}", state.as_str());
            self.r
                .metrics
                .state(&st.name, state, st.since_ms as f64 / 1000.0);
        }
        if err.is_some() && last.as_ref().is_none_or(|l| l.last_error != err) {
            tracing::warn!(state = state.as_str(), "{}", err.as_deref().unwrap_or(""));
        }
        st.last_error = err;
        st.settled = m.settled();
        st.hold_off_until_ms = hold_off_until;
        st.health = health;
        st.health_error = health_error;
        st.failures = failures;
        st.failed_until_ms = failed_until;
        (st.handover_to, st.handover_at_ms) = handover.unzip();
        st.epoch = epoch;
        self.r.board.publish(st.clone());
        if changed {
            // Why: the last failure, else why the health check fails;
            // drained: the drain's reason. A drain while master shows as
            // `releasing`, so that one says it too.
            let drain = self.r.drain.borrow().as_ref().map(|d| d.describe());
            // Drained: the drain is the reason (a last error may be older).
            let first = drain
                .clone()
                .filter(|_| state == crate::state::Status::Drained);
            let reason = first
                .or_else(|| st.last_error.clone())
                .or_else(|| {
                    (st.health.as_deref() == Some("failing")).then(|| {
                        format!(
                            "health check failing: {}",
                            st.health_error.as_deref().unwrap_or("?")
                        )
                    })
                })
                .or(drain);
            self.alerts
                .changed(&self.r.spec.notify, previous, &st, reason.as_deref());
        }
        self.last = Some(st);
        self.r.changed.send_replace(());
    }

    /// The master's watch; `pending` shows a handover it delays.
    fn hold(&self, pending: watch::Sender<Pending>) -> Op {
        let r = &self.r;
        let preempt = r.spec.preempt.then(|| Preempt {
            backend: r.backend.clone(),
            better: better(&r.spec, &r.node),
            deferral: r.deferral.clone(),
            delay: r.spec.preempt_delay,
            pending,
        });
        Op::Master(Box::pin(hold(
            r.spec.actions.clone(),
            self.held.as_ref().and_then(|h| h.still_held()),
            preempt.filter(|p| !p.better.is_empty()),
            self.m.poll(),
            r.op_timeout,
        )))
    }

    /// The operation for `cmd`. `defer`: a lock attempt first probes the
    /// more preferred nodes' candidate locks (not at the first attempt, see
    /// `attempted`).
    pub(super) fn start(&mut self, cmd: Command, defer: bool) -> Op {
        let r = &self.r;
        let deadline = || Some(Box::pin(sleep(r.op_timeout)));
        match cmd {
            Command::TryLock => Op::Lock {
                call: tokio::task::spawn_blocking(r.attempt(defer, self.m.poll())),
                deadline: deadline(),
            },
            Command::Unlock => match self.held.take() {
                Some(h) => Op::Unlock {
                    call: tokio::task::spawn_blocking(r.metrics.time_lock_call(
                        &r.spec.name,
                        LockCall::unlock,
                        move || h.release(),
                    )),
                    deadline: deadline(),
                },
                None => Op::Actions {
                    run: Box::pin(async { Event::Unlocked(Ok(())) }),
                    cancel: None,
                },
            },
            Command::RunAcquire => r.acquire_steps(),
            // Releasing without the lock is the startup reconcile of a
            // node that found it busy: see action::reconcile.
            Command::RunRelease => r.release_steps(self.held.is_none()),
            Command::Sleep { wait, jitter } => {
                let wait = jittered(wait, jitter);
                tracing::debug!("next attempt in {wait:?}");
                Op::Sleep(Box::pin(sleep_until(crate::clock::from_now(wait))))
            }
            Command::Hold => {
                // A fresh channel per watch: nothing stale is shown.
                let (pending, shown) = watch::channel(None);
                self.handover = shown;
                self.hold(pending)
            }
            Command::Keep | Command::Cancel | Command::Exit => {
                unreachable!("not an operation")
            }
        }
    }
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
