//! Drives one resource: carries out the machine's commands (lock calls on
//! the blocking pool under a deadline, actions, timers) and answers requests
//! from the supervisor. The select loop never blocks, so a runner answers a
//! ping even while its lock call is stuck in the kernel.
//!
//! The supervisor runs each runner inside a tracing span that carries the
//! resource's name, so log lines from here and from its actions are tagged
//! once, there.

use super::machine::{Command, Event, Machine};
use super::status::{Board, ResourceStatus, now_ms};
use super::wait::{self, NoWaiter, Waiter};
use crate::action::{self, Cancel, Ctx};
use crate::config::ResourceSpec;
use crate::instance::Record;
use crate::lock::{HeldLock, LockBackend, LockError, StillHeld, TryLock};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep, sleep, sleep_until};

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
    /// A standby waiting in the kernel for the lock (see `wait`).
    Wait(Waiter),
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
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(e) => Err(format!("unlock call died: {e}")),
                }))
            }
            Op::Actions { run, .. } | Op::Master(run) => {
                let ev = run.as_mut().await;
                *self = Op::Idle;
                Done::Event(ev)
            }
            Op::Wait(w) => {
                let r = w.finished().await;
                *self = Op::Ready(Some(waited(r)));
                // The standby's sleep is over: the machine asks to try,
                // and that try is what the wait found.
                Done::Event(Event::Timer)
            }
            Op::Ready(d) => {
                let d = d.take().unwrap_or(Done::Event(Event::Busy));
                *self = Op::Idle;
                d
            }
        }
    }
}

fn waited(r: wait::Outcome) -> Done {
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
        Op::Wait(w) => w.cancel(op_timeout).await,
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
    wait + Duration::from_micros(rand::random_range(0..max))
}

/// While master: re-announce VIPs that ask for it, and check at every poll
/// that the lock still excludes others (on the daemon's one lock-check
/// thread: see `check`). Returns only when it does not.
async fn hold(
    actions: Vec<crate::config::ActionSpec>,
    check: Option<StillHeld>,
    every: Duration,
) -> Event {
    let refresh = action::while_master(actions);
    tokio::pin!(refresh);
    let Some(check) = check else {
        refresh.await;
        unreachable!("while_master never returns");
    };
    let mut watch = super::check::watch(check, every);
    tokio::select! {
        () = &mut refresh => unreachable!("while_master never returns"),
        why = watch.lost() => Event::LockLost(why),
    }
}

impl Runner {
    fn publish(&self, m: &Machine, last: &mut Option<ResourceStatus>, hold_off_until: Option<u64>) {
        let (state, err) = (m.status(), m.last_error().map(str::to_string));
        let mut st = match last {
            Some(l)
                if l.state == state
                    && l.last_error == err
                    && l.settled == m.settled()
                    && l.hold_off_until_ms == hold_off_until =>
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
                settled: false,
            },
        };
        if last.as_ref().is_none_or(|l| l.state != state) {
            tracing::info!(state = state.as_str(), "state {}", state.as_str());
        }
        if err.is_some() && last.as_ref().is_none_or(|l| l.last_error != err) {
            tracing::warn!(state = state.as_str(), "{}", err.as_deref().unwrap_or(""));
        }
        st.last_error = err;
        st.settled = m.settled();
        st.hold_off_until_ms = hold_off_until;
        {
            let mut board = self.board.lock().unwrap();
            match board.iter_mut().find(|s| s.name == st.name) {
                Some(s) => *s = st.clone(),
                None => board.push(st.clone()),
            }
        }
        *last = Some(st);
        self.changed.send_replace(());
    }

    fn start(&self, cmd: Command, held: &mut Option<Box<dyn HeldLock>>) -> Op {
        let ctx = Ctx {
            resource: self.spec.name.clone(),
            node: self.node.clone(),
        };
        let deadline = || Some(Box::pin(sleep(self.op_timeout)));
        match cmd {
            Command::TryLock => {
                let (backend, lock) = (self.backend.clone(), self.spec.lock.clone());
                tracing::debug!("trying lock {lock}");
                Op::Lock {
                    call: tokio::task::spawn_blocking(move || backend.try_lock(&lock)),
                    deadline: deadline(),
                }
            }
            Command::Unlock => match held.take() {
                Some(h) => Op::Unlock {
                    call: tokio::task::spawn_blocking(move || h.release()),
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
                    run: Box::pin(async move {
                        // Written before the first step: from here on a
                        // crash may leave something for a restart to undo.
                        if let Err(msg) = record.mark() {
                            return Event::ActionsFailed { msg, clean: true };
                        }
                        match action::acquire_all(&spec.actions, &ctx, token).await {
                            Ok(()) => Event::ActionsOk,
                            Err(f) => {
                                if f.clean {
                                    record.clear();
                                }
                                Event::ActionsFailed {
                                    msg: f.msg,
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
                    run: Box::pin(async move {
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
                            Err(msg) => Event::ActionsFailed { msg, clean: false },
                        }
                    }),
                    cancel: None,
                }
            }
            Command::Sleep { wait, jitter } => {
                let wait = jittered(wait, jitter);
                tracing::debug!("next attempt in {wait:?}");
                Op::Sleep(Box::pin(sleep_until(Instant::now() + wait)))
            }
            Command::Hold => Op::Master(Box::pin(hold(
                self.spec.actions.clone(),
                held.as_ref().and_then(|h| h.still_held()),
                self.spec.poll_interval,
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
        let mut held: Option<Box<dyn HeldLock>> = None;
        let mut op = Op::Idle;
        let mut last = None;
        let mut waiters: Vec<Reply> = Vec::new();
        // When the running hold-off ends (for status).
        let mut hold_off_until = None;
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
                    hold_off_until = Some(now_ms() + wait.as_millis() as u64);
                    retire(std::mem::replace(&mut op, Op::Idle), self.op_timeout).await;
                    op = self.start(cmd, &mut held);
                }
                // A standby that can wait for the lock in the kernel does so
                // instead of sleeping and polling.
                Command::Sleep { .. } if m.may_wait_for_lock() && self.backend.can_wait() => {
                    hold_off_until = None;
                    if !matches!(op, Op::Wait(_)) {
                        retire(std::mem::replace(&mut op, Op::Idle), self.op_timeout).await;
                        tracing::debug!("waiting for lock {}", self.spec.lock);
                        op = match Waiter::start(self.backend.clone(), self.spec.lock.clone()) {
                            Ok(w) => Op::Wait(w),
                            // No thread: fall back to polling.
                            Err(NoWaiter::Full) => self.start(cmd, &mut held),
                            Err(NoWaiter::Failed(e)) => {
                                tracing::warn!("{e}; polling instead");
                                self.start(cmd, &mut held)
                            }
                        };
                    }
                }
                // The try a finished wait stands for: its outcome, no call.
                Command::TryLock if matches!(op, Op::Ready(_)) => hold_off_until = None,
                c => {
                    hold_off_until = None;
                    retire(std::mem::replace(&mut op, Op::Idle), self.op_timeout).await;
                    op = self.start(c, &mut held);
                }
            }
            if let Some(r) = m.take_reply() {
                waiters.drain(..).for_each(|w| drop(w.send(r.clone())));
            }
            self.publish(&m, &mut last, hold_off_until.filter(|_| m.holding_off()));
            let done = tokio::select! {
                d = op.next() => d,
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
                                    let _ = reply.send(Err(e));
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
                                    let _ = reply.send(Err(e));
                                    Command::Keep
                                }
                            };
                        }
                        Some(Request::Update { spec, op_timeout }) => {
                            if *spec != *self.spec || op_timeout != self.op_timeout {
                                tracing::info!("reload: new intervals and timeouts apply in place");
                            }
                            m.set_poll(spec.poll_interval);
                            self.spec = spec;
                            self.op_timeout = op_timeout;
                            cmd = Command::Keep;
                        }
                        Some(Request::Shutdown) | None => cmd = m.handle(Event::Shutdown),
                    }
                    continue;
                }
            };
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
            waiters.drain(..).for_each(|w| drop(w.send(r.clone())));
        }
        self.publish(&m, &mut last, None);
        for w in waiters {
            let _ = w.send(Err("daemon is shutting down".into()));
        }
        // A lock still held here (release actions failed on the way out)
        // is deliberately kept until the process exits: see Machine.
        if let Some(h) = held {
            std::mem::forget(h);
        }
        last.expect("published at least once")
    }
}
