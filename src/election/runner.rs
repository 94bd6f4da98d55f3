//! Drives one resource: carries out the machine's commands (lock calls on
//! the blocking pool under a deadline, actions, timers) and answers requests
//! from the supervisor. The select loop never blocks, so a runner answers a
//! ping even while its lock call is stuck in the kernel.
//!
//! The supervisor runs each runner inside a tracing span that carries the
//! resource's name, so log lines from here and from its actions are tagged
//! once, there.

use super::attempt::{Attempt, Outcome};
use super::deferral::{Before, Deferral, Won};
use super::health::Health;
use super::machine::{Command, Event, Machine, RequestError};
use super::status::{Board, ResourceStatus};
use super::wait::{NoWaiter, Waiter};
use crate::action::{self, Cancel, Ctx};
use crate::clock::now_ms;
use crate::config::{CheckSpec, ResourceSpec};
use crate::instance::{Applied, Record};
use crate::lock::{HeldLock, LockBackend, LockError, StillHeld, TryLock};
use crate::metrics::{LockCall, Metrics, Run};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Sleep, sleep, sleep_until};
use tracing::Instrument;

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
}

type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The one outstanding operation.
enum Op {
    Idle,
    Sleep(Pin<Box<Sleep>>),
    Lock {
        call: JoinHandle<Result<TryLock, LockError>>,
        deadline: Option<Pin<Box<Sleep>>>,
    },
    Unlock {
        call: JoinHandle<Result<(), LockError>>,
        deadline: Option<Pin<Box<Sleep>>>,
    },
    /// Acquire or release steps; `cancel` stops acquire steps.
    Actions {
        run: BoxFut<Event>,
        cancel: Option<watch::Sender<bool>>,
    },
    /// Master: ends only when the lock is found lost.
    Master(BoxFut<Event>),
    /// A standby waiting for the lock on a thread of its own, in the
    /// kernel or polling (see `wait`).
    Wait(Waiter),
    /// A polling wait whose try ran past `op_timeout`: the machine was told
    /// that it tried; reports `Stalled` once, then how the try ended.
    Stuck {
        waiter: Waiter,
        reported: bool,
    },
    /// Already finished: what a wait found, handed to the next `TryLock`.
    Ready(Option<Done>),
}

/// What finished.
enum Done {
    Event(Event),
    Won(Box<dyn HeldLock>),
}

impl Op {
    async fn next(&mut self) -> Done {
        match self {
            Op::Idle => std::future::pending().await,
            Op::Sleep(s) => {
                s.as_mut().await;
                *self = Op::Idle;
                Done::Event(Event::Timer)
            }
            Op::Lock { call, deadline } => {
                let Some(r) = bounded(call, deadline).await else {
                    return Done::Event(Event::Stalled);
                };
                *self = Op::Idle;
                match r {
                    Ok(Ok(TryLock::Acquired(h))) => Done::Won(h),
                    Ok(Ok(TryLock::Busy)) => Done::Event(Event::Busy),
                    Ok(Err(e)) => Done::Event(Event::LockFailed(e)),
                    Err(e) => Done::Event(Event::LockFailed(LockError::Failed(format!(
                        "lock call died: {e}"
                    )))),
                }
            }
            Op::Unlock { call, deadline } => {
                let Some(r) = bounded(call, deadline).await else {
                    return Done::Event(Event::Stalled);
                };
                *self = Op::Idle;
                Done::Event(Event::Unlocked(match r {
                    Ok(r) => r,
                    Err(e) => Err(LockError::Failed(format!("unlock call died: {e}"))),
                }))
            }
            Op::Actions { run, .. } | Op::Master(run) => {
                let ev = run.as_mut().await;
                *self = Op::Idle;
                Done::Event(ev)
            }
            Op::Wait(w) => {
                let stall = w.stall_watch();
                tokio::select! {
                    r = w.finished() => *self = Op::Ready(Some(waited(r))),
                    () = stall => {
                        let Op::Wait(waiter) = std::mem::replace(self, Op::Idle) else {
                            unreachable!("matched above")
                        };
                        *self = Op::Stuck { waiter, reported: false };
                    }
                }
                // The standby's sleep is over: the machine asks to try,
                // and that try is what the wait found (or is still making).
                Done::Event(Event::Timer)
            }
            Op::Stuck { waiter, reported } => {
                if !*reported {
                    *reported = true;
                    return Done::Event(Event::Stalled);
                }
                let r = waiter.finished().await;
                *self = Op::Idle;
                waited(r)
            }
            Op::Ready(d) => {
                let d = d.take().unwrap_or(Done::Event(Event::Busy));
                *self = Op::Idle;
                d
            }
        }
    }
}

fn waited(r: Outcome) -> Done {
    match r {
        Ok(Some(h)) => Done::Won(h),
        // Only after a cancel, which never lets the result through.
        Ok(None) => Done::Event(Event::Busy),
        Err(e) => Done::Event(Event::LockFailed(e)),
    }
}

/// Ends a standby's wait that a new operation replaces (shutdown, or any
/// command other than the try it stands for), within `op_timeout`. A lock
/// it won meanwhile is given up: nobody asked for it.
async fn retire(op: Op, op_timeout: Duration) {
    let won = match op {
        Op::Wait(w) | Op::Stuck { waiter: w, .. } => w.cancel(op_timeout).await,
        Op::Ready(Some(Done::Won(h))) => Some(h),
        _ => None,
    };
    if let Some(h) = won {
        match tokio::time::timeout(op_timeout, tokio::task::spawn_blocking(move || h.release()))
            .await
        {
            Ok(Ok(Ok(()))) => {}
            r => tracing::warn!("giving up a lock the cancelled wait had won: {r:?}"),
        }
    }
}

/// Awaits a blocking-pool call under its deadline. None: the deadline
/// passed (reported once; the deadline is then cleared and the next await
/// waits for the call itself, however long it takes).
async fn bounded<T>(
    call: &mut JoinHandle<T>,
    deadline: &mut Option<Pin<Box<Sleep>>>,
) -> Option<Result<T, tokio::task::JoinError>> {
    match deadline {
        Some(d) => tokio::select! {
            r = call => Some(r),
            () = d.as_mut() => {
                *deadline = None;
                None
            }
        },
        None => Some(call.await),
    }
}

fn jittered(wait: Duration, jitter: bool) -> Duration {
    if !jitter || wait.is_zero() {
        return wait;
    }
    let max = (wait.as_micros() / 10).max(1) as u64;
    wait.saturating_add(Duration::from_micros(rand::random_range(0..max)))
}

/// With `preempt`: the backend and the candidate locks of the nodes more
/// preferred than this one, probed at every poll while master, and the
/// deferral state that says which of them are stuck.
type Preempt = (
    Arc<dyn LockBackend>,
    Vec<(String, String)>,
    Arc<Mutex<Deferral>>,
);

/// While master: re-announce VIPs that ask for it, check at every poll
/// that the lock still excludes others (on the daemon's one lock-check
/// thread: see `check`), and with `preempt` that no more preferred node is
/// a candidate. Returns only when one of those fails.
async fn hold(
    actions: Vec<crate::config::ActionSpec>,
    check: Option<StillHeld>,
    preempt: Option<Preempt>,
    every: Duration,
    op_timeout: Duration,
) -> Event {
    let refresh = action::while_master(actions);
    tokio::pin!(refresh);
    let lost = async move {
        match check {
            Some(c) => super::check::watch(c, every).lost().await,
            None => std::future::pending().await,
        }
    };
    let outranked = async move {
        let Some((backend, better, deferral)) = preempt else {
            return std::future::pending().await;
        };
        let mut tick = tokio::time::interval_at(crate::clock::from_now(every), every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (b, better, d) = (backend.clone(), better.clone(), deferral.clone());
            let probe = tokio::task::spawn_blocking(move || outranked_by(&*b, &better, &d));
            // A probe stuck in the kernel is retried next time; it never
            // decides on its own.
            if let Ok(Ok(Some(n))) = tokio::time::timeout(op_timeout, probe).await {
                return n;
            }
        }
    };
    tokio::select! {
        () = &mut refresh => unreachable!("while_master never returns"),
        why = lost => Event::LockLost(why),
        n = outranked => Event::Outranked(n),
    }
}

/// The candidate locks of the nodes more preferred than this one, with
/// their names: all listed nodes for a node not in `prefer`.
fn better(spec: &ResourceSpec, node: &str) -> Vec<(String, String)> {
    let rank = spec.rank(node).unwrap_or(spec.prefer.len());
    spec.prefer[..rank]
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), spec.candidate_lock(i)))
        .collect()
}

/// The first of `better` whose node is a candidate now, skipping those
/// judged stuck (blocking: run on the blocking pool). A probe that fails
/// counts as "not a candidate": the lock call that follows meets the same
/// trouble and reports it. A stuck node seen not a candidate is stuck no
/// more.
fn outranked_by(
    backend: &dyn LockBackend,
    better: &[(String, String)],
    deferral: &Mutex<Deferral>,
) -> Option<String> {
    for (node, lock) in better {
        let held = backend.candidate_held(lock).unwrap_or(false);
        let mut d = deferral.lock().unwrap_or_else(|e| e.into_inner());
        if !held {
            if d.seen_free(node) {
                tracing::info!(
                    "more preferred node {node}'s candidate lock is free: no longer ignoring {node}"
                );
            }
        } else if !d.is_stuck(node) {
            return Some(node.clone());
        }
    }
    None
}

/// Awaits a candidate-lock call on the blocking pool, warning once if it
/// runs past `op_timeout` (the DLM recovering a dead node); it is still
/// waited for, since the lock it may take must not be lost.
async fn candidate_call<T>(call: JoinHandle<T>, op_timeout: Duration, lock: &str) -> Option<T> {
    tokio::pin!(call);
    let r = match tokio::time::timeout(op_timeout, &mut call).await {
        Ok(r) => r,
        Err(_) => {
            tracing::warn!(
                "candidate lock {lock}: call has not returned within op_timeout ({op_timeout:?}); still waiting"
            );
            call.await
        }
    };
    r.inspect_err(|e| tracing::warn!("candidate lock {lock}: call died: {e}"))
        .ok()
}

/// Holds this node's candidate lock while `want` says so, retrying every
/// `every` while it cannot (a probe holds it for a moment). Returns once
/// `want` is closed, with the lock given up.
async fn candidacy(
    backend: Arc<dyn LockBackend>,
    lock: String,
    mut want: watch::Receiver<bool>,
    every: Duration,
    op_timeout: Duration,
) {
    let mut held: Option<Box<dyn HeldLock>> = None;
    loop {
        let wanted = *want.borrow_and_update();
        if wanted && held.is_none() {
            let (b, l) = (backend.clone(), lock.clone());
            let call = tokio::task::spawn_blocking(move || b.take_candidate(&l));
            match candidate_call(call, op_timeout, &lock).await {
                Some(Ok(Some(h))) => {
                    tracing::debug!("candidate lock {lock} taken");
                    held = Some(h);
                }
                Some(Ok(None)) | None => {}
                Some(Err(e)) => tracing::debug!("candidate lock {lock}: {e}"),
            }
        } else if !wanted && let Some(h) = held.take() {
            let call = tokio::task::spawn_blocking(move || h.release());
            match candidate_call(call, op_timeout, &lock).await {
                Some(Ok(())) => tracing::debug!("candidate lock {lock} given up"),
                Some(Err(e)) => tracing::warn!("giving candidate lock {lock} up: {e}"),
                None => {}
            }
        }
        let retry = wanted && held.is_none();
        tokio::select! {
            r = want.changed() => if r.is_err() {
                if let Some(h) = held.take() {
                    let _ = tokio::task::spawn_blocking(move || h.release()).await;
                }
                return;
            },
            () = sleep(every), if retry => {}
        }
    }
}

/// One health-check run's outcome: Err says why it failed.
type CheckResult = Result<(), String>;

/// The running health check: a task of its own, so a slow check never
/// holds up the runner (its answers to pings, its lock calls).
struct Checker {
    results: mpsc::Receiver<CheckResult>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    health: Health,
    /// Why the last run failed, for status.
    error: Option<String>,
}

impl Checker {
    fn start(spec: &CheckSpec, ctx: Ctx) -> Checker {
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
    async fn stop(self) {
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
    fn record(&mut self, r: CheckResult) -> Option<bool> {
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
        self.error = r.err();
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
        let r = action::exec::run_argv(&spec.exec, spec.timeout, "check", &ctx, cancel.clone())
            .await
            .map_err(|e| e.to_string());
        if cancel.is_cancelled() || results.send(r).await.is_err() {
            return;
        }
    }
}

/// The next check result; never, without a check.
async fn next_result(checker: &mut Option<Checker>) -> Option<CheckResult> {
    match checker {
        Some(c) => c.results.recv().await,
        None => std::future::pending().await,
    }
}

impl Runner {
    /// Listed in `prefer`: a task that holds our candidate lock while the
    /// sender says so (we would take mastership), so that less preferred
    /// nodes defer to us. Dropping the sender gives it up.
    fn candidacy(&self) -> (watch::Sender<bool>, Option<JoinHandle<()>>) {
        let (want, want_rx) = watch::channel(false);
        let task = self.spec.rank(&self.node).map(|i| {
            tokio::spawn(
                candidacy(
                    self.backend.clone(),
                    self.spec.candidate_lock(i),
                    want_rx,
                    self.spec.poll_interval,
                    self.op_timeout,
                )
                .in_current_span(),
            )
        });
        (want, task)
    }

    fn ctx(&self) -> Ctx {
        Ctx {
            resource: self.spec.name.clone(),
            node: self.node.clone(),
        }
    }

    fn publish(
        &self,
        m: &Machine,
        last: &mut Option<ResourceStatus>,
        hold_off_until: Option<u64>,
        checker: Option<&Checker>,
    ) {
        let (state, err) = (m.status(), m.last_error().map(str::to_string));
        let health = checker.map(|c| c.health.as_str().to_string());
        let health_error = checker.and_then(|c| c.error.clone());
        let mut st = match last {
            Some(l)
                if l.state == state
                    && l.last_error == err
                    && l.settled == m.settled()
                    && l.hold_off_until_ms == hold_off_until
                    && l.health == health
                    && l.health_error == health_error =>
            {
                return;
            }
            Some(l) if l.state == state => l.clone(),
            _ => ResourceStatus {
                name: self.spec.name.clone(),
                state,
                since_ms: now_ms(),
                last_error: None,
                hold_off_until_ms: None,
                health: None,
                health_error: None,
                transitions: last.as_ref().map_or(0, |l| l.transitions + 1),
                settled: false,
            },
        };
        if last.as_ref().is_none_or(|l| l.state != state) {
            tracing::info!(state = state.as_str(), "state {}", state.as_str());
            self.metrics
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
        self.board.publish(st.clone());
        *last = Some(st);
        self.changed.send_replace(());
    }

    /// Acquire or release steps, timed for the metrics.
    fn timed(
        &self,
        run: Run,
        steps: impl Future<Output = Event> + Send + 'static,
    ) -> BoxFut<Event> {
        let (metrics, name) = (self.metrics.clone(), self.spec.name.clone());
        Box::pin(async move {
            let ok = |ev: &Event| *ev == Event::ActionsOk;
            metrics.time_run(&name, run, steps, ok).await
        })
    }

    /// One non-blocking attempt at the lock, as a blocking call to run
    /// off the runtime (on the blocking pool, or again and again on a
    /// polling thread). `defer`: it first probes the more preferred nodes'
    /// candidate locks (not at the first attempt, see `run`).
    fn attempt(&self, defer: bool) -> Attempt {
        let (backend, lock) = (self.backend.clone(), self.spec.lock.clone());
        let better = if defer {
            better(&self.spec, &self.node)
        } else {
            Vec::new()
        };
        let span = tracing::Span::current();
        let timed = self.metrics.try_lock_calls(&self.spec.name);
        let (deferral, poll) = (self.deferral.clone(), self.spec.poll_interval);
        Box::new(move || {
            let _entered = span.enter();
            tracing::debug!("trying lock {lock}");
            let call = || {
                let t = std::time::Instant::now();
                let r = backend.try_lock(&lock);
                timed.observe(t.elapsed().as_secs_f64());
                r
            };
            // Right after a freeze, no attempt before the node's
            // membership was judged (dlmfs): a split DLM could grant a
            // lock the cluster gave to another node meanwhile.
            if !crate::membership::judged_lately() {
                tracing::debug!("not trying lock {lock}: membership not judged since a gap");
                return Ok(TryLock::Busy);
            }
            let candidate = outranked_by(&*backend, &better, &deferral);
            let now = std::time::Instant::now();
            let d = || deferral.lock().unwrap_or_else(|e| e.into_inner());
            let step = d().before(now, candidate.as_deref(), poll);
            let n = candidate.unwrap_or_default();
            match step {
                Before::Try => call(),
                // A more preferred candidate gets the lock.
                Before::Defer => {
                    tracing::debug!("deferring to more preferred node {n}");
                    Ok(TryLock::Busy)
                }
                Before::TryPastWindow => match call()? {
                    TryLock::Busy => {
                        d().busy(now);
                        Ok(TryLock::Busy)
                    }
                    TryLock::Acquired(h) => match d().won(now, &n, poll) {
                        Won::GiveBack => {
                            tracing::info!(
                                "lock {lock} is free although more preferred node {n} is a candidate: giving it straight back, unused, to leave it to {n}"
                            );
                            h.release()?;
                            Ok(TryLock::Busy)
                        }
                        Won::Keep => {
                            tracing::warn!(
                                "more preferred node {n} is a candidate but left the lock free for {:?}: taking mastership, and ignoring {n} until its candidate lock is free (a dlmfs daemon killed without `dlm-electd cleanup` leaves it cached)",
                                super::deferral::window(poll)
                            );
                            Ok(TryLock::Acquired(h))
                        }
                    },
                },
            }
        })
    }

    /// `defer`: a lock attempt first probes the more preferred nodes'
    /// candidate locks (not at the first attempt, see `run`).
    fn start(&self, cmd: Command, held: &mut Option<Box<dyn HeldLock>>, defer: bool) -> Op {
        let ctx = self.ctx();
        let deadline = || Some(Box::pin(sleep(self.op_timeout)));
        match cmd {
            Command::TryLock => {
                let attempt = self.attempt(defer);
                Op::Lock {
                    call: tokio::task::spawn_blocking(attempt),
                    deadline: deadline(),
                }
            }
            Command::Unlock => match held.take() {
                Some(h) => Op::Unlock {
                    call: tokio::task::spawn_blocking(self.metrics.time_lock_call(
                        &self.spec.name,
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
            Command::RunAcquire => {
                let (spec, record) = (self.spec.clone(), self.record.clone());
                let (cancel, token) = Cancel::new();
                Op::Actions {
                    run: self.timed(Run::acquire, async move {
                        // A lock won across a freeze: no step before the
                        // node's membership was judged (dlmfs; see
                        // `membership`). In doubt the runner is told too.
                        if !crate::membership::judged(crate::membership::TICK * 5).await {
                            return Event::ActionsFailed {
                                msg: "this node's membership was not judged sound after a gap in its running".into(),
                                clean: true,
                            };
                        }
                        // Written before the first step: from here on a
                        // crash may leave something for a restart to undo.
                        let applied = Applied {
                            lock: spec.lock.clone(),
                            actions: spec.actions.clone(),
                        };
                        if let Err(msg) = record.mark(&applied) {
                            return Event::ActionsFailed { msg, clean: true };
                        }
                        match action::acquire_all(&spec.actions, &ctx, token).await {
                            Ok(()) => Event::ActionsOk,
                            Err(f) => {
                                if f.clean {
                                    record.clear();
                                }
                                Event::ActionsFailed {
                                    msg: f.to_string(),
                                    clean: f.clean,
                                }
                            }
                        }
                    }),
                    cancel: Some(cancel),
                }
            }
            Command::RunRelease => {
                let (spec, record) = (self.spec.clone(), self.record.clone());
                // Releasing without the lock is the startup reconcile of a
                // node that found it busy: see action::reconcile.
                let reconcile = held.is_none();
                if reconcile && record.exists() {
                    tracing::info!(
                        "the lock is busy and an earlier run of this instance applied this resource ({}): undoing that",
                        record.path().display()
                    );
                }
                Op::Actions {
                    run: self.timed(Run::release, async move {
                        let done = if reconcile {
                            action::reconcile(&spec.actions, &ctx, record.exists()).await
                        } else {
                            action::release_all(&spec.actions, &ctx).await
                        };
                        match done {
                            Ok(()) => {
                                record.clear();
                                Event::ActionsOk
                            }
                            Err(e) => Event::ActionsFailed {
                                msg: e.to_string(),
                                clean: false,
                            },
                        }
                    }),
                    cancel: None,
                }
            }
            Command::Sleep { wait, jitter } => {
                let wait = jittered(wait, jitter);
                tracing::debug!("next attempt in {wait:?}");
                Op::Sleep(Box::pin(sleep_until(crate::clock::from_now(wait))))
            }
            Command::Hold => Op::Master(Box::pin(hold(
                self.spec.actions.clone(),
                held.as_ref().and_then(|h| h.still_held()),
                self.spec
                    .preempt
                    .then(|| {
                        (
                            self.backend.clone(),
                            better(&self.spec, &self.node),
                            self.deferral.clone(),
                        )
                    })
                    .filter(|(_, b, _)| !b.is_empty()),
                self.spec.poll_interval,
                self.op_timeout,
            ))),
            Command::Keep | Command::Cancel | Command::Exit => {
                unreachable!("not an operation")
            }
        }
    }

    /// Runs until shutdown has released everything (or the request channel
    /// closes, which is a shutdown too); returns the final status, which
    /// says whether the lock is still held.
    pub async fn run(mut self, mut requests: mpsc::Receiver<Request>) -> ResourceStatus {
        // Unit actions are checked by a standby even without a record.
        let reconcile = self.record.exists() || action::checks_on_standby(&self.spec.actions);
        let mut m = Machine::new(self.spec.poll_interval, reconcile);
        // The check starts with the resource; until its first result the
        // node does not compete (see Machine::with_check).
        let mut checker = self
            .spec
            .check
            .as_ref()
            .map(|c| Checker::start(c, self.ctx()));
        if let Some(c) = &self.spec.check {
            m = m.with_check(c.hold_off);
        }
        let (mut want, mut candidate) = self.candidacy();
        let mut held: Option<Box<dyn HeldLock>> = None;
        let mut op = Op::Idle;
        let mut last = None;
        let mut waiters: Vec<Reply> = Vec::new();
        // When the running hold-off ends (for status).
        let mut hold_off_until = None;
        // The first lock attempt never defers to a preferred node: it
        // decides crash recovery (a dlmfs lock cached on this node by our
        // killed predecessor is ours to resume or release, and deferring
        // would leave it cached, blocking everyone). With `preempt` a won
        // lock is handed over properly at the next poll.
        let mut attempted = false;
        // A lock call ran past op_timeout and has not returned yet.
        let mut stalled = false;
        // In doubt already (an earlier run recorded it): never master.
        let doubt = self.membership.borrow_and_update().clone();
        if doubt.is_some() {
            m.handle(Event::Membership(doubt));
        }
        let mut cmd = m.handle(Event::Start);
        loop {
            match cmd {
                Command::Exit => break,
                Command::Keep => {}
                Command::Cancel => {
                    if let Op::Actions {
                        cancel: Some(c), ..
                    } = &op
                    {
                        tracing::info!("stopping: cancelling the running acquire steps");
                        let _ = c.send(true);
                    }
                }
                Command::Sleep { wait, .. } if m.holding_off() => {
                    hold_off_until = Some(crate::clock::after_ms(now_ms(), wait));
                    retire(std::mem::replace(&mut op, Op::Idle), self.op_timeout).await;
                    op = self.start(cmd, &mut held, true);
                }
                // A standby waits for the lock on a thread of its own: in
                // the kernel where the backend can and no more preferred
                // node is to be deferred to (a wait would win past them),
                // else polling there. The first attempt is the runner's own.
                Command::Sleep { wait, jitter } if m.may_wait_for_lock() && attempted => {
                    hold_off_until = None;
                    if !matches!(op, Op::Wait(_)) {
                        retire(std::mem::replace(&mut op, Op::Idle), self.op_timeout).await;
                        let in_kernel =
                            self.backend.can_wait() && better(&self.spec, &self.node).is_empty();
                        let w = if in_kernel {
                            tracing::debug!("waiting for lock {}", self.spec.lock);
                            Waiter::start(self.backend.clone(), self.spec.lock.clone())
                        } else {
                            Waiter::poll(
                                self.attempt(true),
                                jittered(wait, jitter),
                                self.spec.poll_interval,
                                self.op_timeout,
                            )
                        };
                        op = match w {
                            Ok(w) => Op::Wait(w),
                            // No thread: poll from here.
                            Err(NoWaiter::Full) => self.start(cmd, &mut held, true),
                            Err(NoWaiter::Failed(e)) => {
                                tracing::warn!("{e}; polling from the runtime instead");
                                self.start(cmd, &mut held, true)
                            }
                        };
                    }
                }
                // The try a finished wait stands for: its outcome, no call.
                Command::TryLock if matches!(op, Op::Ready(_) | Op::Stuck { .. }) => {
                    hold_off_until = None
                }
                c => {
                    hold_off_until = None;
                    retire(std::mem::replace(&mut op, Op::Idle), self.op_timeout).await;
                    op = self.start(c, &mut held, attempted);
                    attempted |= c == Command::TryLock;
                }
            }
            if let Some(r) = m.take_reply() {
                waiters
                    .drain(..)
                    .for_each(|w| drop(w.send(r.clone().map_err(|e| e.to_string()))));
            }
            self.publish(
                &m,
                &mut last,
                hold_off_until.filter(|_| m.holding_off()),
                checker.as_ref(),
            );
            want.send_if_modified(|w| std::mem::replace(w, m.wants_candidacy()) != *w);
            let done = tokio::select! {
                // First: a master in doubt gives up before anything else
                // it would do (a VIP refresh, an announcement).
                biased;
                Ok(()) = self.membership.changed() => {
                    let doubt = self.membership.borrow_and_update().clone();
                    cmd = m.handle(Event::Membership(doubt));
                    continue;
                }
                d = op.next() => d,
                Some(r) = next_result(&mut checker) => {
                    self.metrics.check_result(&self.spec.name, r.is_ok());
                    let changed = checker.as_mut().and_then(|c| c.record(r));
                    cmd = match changed {
                        Some(e) => m.handle(Event::Eligible(e)),
                        None => Command::Keep,
                    };
                    continue;
                }
                req = requests.recv() => {
                    match req {
                        Some(Request::Ping(reply)) => {
                            let _ = reply.send(());
                            cmd = Command::Keep;
                        }
                        Some(Request::Release { hold_off, reply }) => {
                            cmd = match m.request_release(hold_off) {
                                Ok(c) => {
                                    tracing::info!("release requested, holding off for {}", humantime::format_duration(hold_off));
                                    waiters.push(reply);
                                    c
                                }
                                Err(e) => {
                                    let _ = reply.send(Err(e.to_string()));
                                    Command::Keep
                                }
                            };
                        }
                        Some(Request::Resume(reply)) => {
                            cmd = match m.resume() {
                                Ok(c) => {
                                    tracing::info!("hold-off ended early by request");
                                    let _ = reply.send(Ok(()));
                                    c
                                }
                                Err(e) => {
                                    let _ = reply.send(Err(e.to_string()));
                                    Command::Keep
                                }
                            };
                        }
                        Some(Request::Update { spec, op_timeout }) => {
                            if *spec != *self.spec || op_timeout != self.op_timeout {
                                tracing::info!("reload: new intervals and timeouts apply in place");
                            }
                            m.set_poll(spec.poll_interval);
                            let spec_poll = spec.poll_interval;
                            cmd = Command::Keep;
                            if spec.check != self.spec.check {
                                // Without a check so far the node was
                                // eligible: a check added by a reload keeps
                                // that verdict until fall failures.
                                let mut verdict = Some(true);
                                if let Some(old) = checker.take() {
                                    verdict = old.health.eligible();
                                    old.stop().await;
                                }
                                match &spec.check {
                                    Some(c) => {
                                        tracing::info!("reload: health check changed, restarting it");
                                        m.set_health_hold_off(c.hold_off);
                                        let mut new = Checker::start(c, Ctx {
                                            resource: spec.name.clone(),
                                            node: self.node.clone(),
                                        });
                                        new.health = new.health.carried_over(verdict);
                                        checker = Some(new);
                                    }
                                    None => {
                                        tracing::info!("reload: health check removed, eligible");
                                        cmd = m.handle(Event::Eligible(true));
                                    }
                                }
                            }
                            let new_prefer = spec.prefer != self.spec.prefer;
                            let new_preempt = new_prefer || spec.preempt != self.spec.preempt;
                            self.spec = spec;
                            if new_prefer {
                                // Our place (so our candidate lock) may have
                                // changed: give the old one up first.
                                tracing::info!("reload: preference changed");
                                drop(std::mem::replace(&mut want, watch::channel(false).0));
                                if let Some(t) = candidate.take() {
                                    let _ = tokio::time::timeout(self.op_timeout, t).await;
                                }
                                (want, candidate) = self.candidacy();
                            }
                            if let Op::Wait(w) = &op {
                                w.set_every(spec_poll);
                            }
                            if (new_prefer || op_timeout != self.op_timeout)
                                && matches!(op, Op::Wait(_))
                            {
                                // The waiting thread has the old preference
                                // and timeout: a fresh one takes over after
                                // the next try.
                                retire(std::mem::replace(&mut op, Op::Idle), self.op_timeout).await;
                                op = Op::Sleep(Box::pin(sleep(spec_poll)));
                            }
                            self.op_timeout = op_timeout;
                            if new_preempt && m.is_master() && cmd == Command::Keep {
                                // Watch with the new preference from now on.
                                op = self.start(Command::Hold, &mut held, true);
                            }
                        }
                        Some(Request::Shutdown) | None => cmd = m.handle(Event::Shutdown),
                    }
                    continue;
                }
            };
            // The op after a stall is the stalled call returning.
            let now_stalled = matches!(done, Done::Event(Event::Stalled));
            if now_stalled || stalled {
                self.metrics.stalled(&self.spec.name, now_stalled);
            }
            stalled = now_stalled;
            let ev = match done {
                Done::Won(h) => {
                    if let Some(p) = h.previous_holder() {
                        tracing::info!("lock won: {p}");
                    }
                    held = Some(h);
                    Event::Locked
                }
                Done::Event(Event::Stalled) => {
                    tracing::warn!(
                        "lock call has not returned within op_timeout ({:?}); still waiting for it (the DLM may be recovering a dead node)",
                        self.op_timeout
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
                    tracing::debug!("lock {} is busy", self.spec.lock);
                    Event::Busy
                }
                Done::Event(ev) => ev,
            };
            cmd = m.handle(ev);
        }
        retire(op, self.op_timeout).await;
        if let Some(r) = m.take_reply() {
            waiters
                .drain(..)
                .for_each(|w| drop(w.send(r.clone().map_err(|e| e.to_string()))));
        }
        if let Some(c) = checker.take() {
            c.stop().await;
        }
        // Gives the candidate lock up (a call stuck in the kernel is left
        // behind: the process exit drops it).
        drop(want);
        if let Some(t) = candidate {
            let _ = tokio::time::timeout(self.op_timeout, t).await;
        }
        self.publish(&m, &mut last, None, None);
        for w in waiters {
            let _ = w.send(Err(RequestError::ShuttingDown.to_string()));
        }
        // A lock still held here (release actions failed on the way out)
        // is deliberately kept until the process exits: see Machine.
        if let Some(h) = held {
            std::mem::forget(h);
        }
        last.expect("published at least once")
    }
}
