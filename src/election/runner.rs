//! Drives one resource: carries out the machine's commands (lock calls on
//! the blocking pool under a deadline, actions, timers) and answers requests
//! from the supervisor. The select loop never blocks, so a runner answers a
//! ping even while its lock call is stuck in the kernel.

use super::machine::{Command, Event, Machine, Status};
use crate::action::{self, Ctx};
use crate::config::ResourceSpec;
use crate::lock::{HeldLock, LockBackend, LockError, TryLock};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep, sleep, sleep_until};

/// What status shows for one resource.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ResourceStatus {
    pub name: String,
    pub state: Status,
    pub since_ms: u64,
    pub last_error: Option<String>,
    /// Reached a defined state since start (for READY=1); not shown.
    #[serde(skip)]
    pub settled: bool,
}

/// Every runner's status, read by the control socket and sd_notify.
pub type Board = Arc<Mutex<Vec<ResourceStatus>>>;

pub enum Request {
    Release {
        hold_off: Duration,
        reply: oneshot::Sender<Result<(), String>>,
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
    Actions(BoxFut<Event>),
    Master(BoxFut<()>),
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
            Op::Actions(f) => {
                let ev = f.as_mut().await;
                *self = Op::Idle;
                Done::Event(ev)
            }
            Op::Master(f) => {
                f.as_mut().await;
                std::future::pending().await
            }
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

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn jittered(wait: Duration, jitter: bool) -> Duration {
    if !jitter || wait.is_zero() {
        return wait;
    }
    let max = (wait.as_micros() / 10).max(1) as u64;
    wait + Duration::from_micros(rand::random_range(0..max))
}

impl Runner {
    fn publish(&self, m: &Machine, last: &mut Option<ResourceStatus>) {
        let (state, err) = (m.status(), m.last_error().map(str::to_string));
        let mut st = match last {
            Some(l) if l.state == state && l.last_error == err && l.settled == m.settled() => {
                return;
            }
            Some(l) if l.state == state => l.clone(),
            _ => ResourceStatus {
                name: self.spec.name.clone(),
                state,
                since_ms: now_ms(),
                last_error: None,
                settled: false,
            },
        };
        if last.as_ref().is_none_or(|l| l.state != state) {
            tracing::info!(resource = %self.spec.name, state = state.as_str(), "state {}", state.as_str());
        }
        if err.is_some() && last.as_ref().is_none_or(|l| l.last_error != err) {
            tracing::warn!(resource = %self.spec.name, state = state.as_str(), "{}", err.as_deref().unwrap_or(""));
        }
        st.last_error = err;
        st.settled = m.settled();
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
                None => Op::Actions(Box::pin(async { Event::Unlocked(Ok(())) })),
            },
            Command::RunAcquire => {
                let spec = self.spec.clone();
                Op::Actions(Box::pin(async move {
                    match action::acquire_all(&spec.actions, &ctx).await {
                        Ok(()) => Event::ActionsOk,
                        Err(f) => Event::ActionsFailed {
                            msg: f.msg,
                            clean: f.clean,
                        },
                    }
                }))
            }
            Command::RunRelease => {
                let spec = self.spec.clone();
                Op::Actions(Box::pin(async move {
                    match action::release_all(&spec.actions, &ctx).await {
                        Ok(()) => Event::ActionsOk,
                        Err(msg) => Event::ActionsFailed { msg, clean: false },
                    }
                }))
            }
            Command::Sleep { wait, jitter } => Op::Sleep(Box::pin(sleep_until(
                Instant::now() + jittered(wait, jitter),
            ))),
            Command::Hold => Op::Master(Box::pin(action::while_master(
                self.spec.actions.clone(),
                ctx,
            ))),
            Command::Keep | Command::Exit => unreachable!("not an operation"),
        }
    }

    /// Runs until shutdown has released everything (or the request channel
    /// closes, which is a shutdown too).
    pub async fn run(self, mut requests: mpsc::Receiver<Request>) {
        let mut m = Machine::new(self.spec.poll_interval);
        let mut held: Option<Box<dyn HeldLock>> = None;
        let mut op = Op::Idle;
        let mut last = None;
        let mut waiters: Vec<oneshot::Sender<Result<(), String>>> = Vec::new();
        let mut cmd = m.handle(Event::Start);
        loop {
            match cmd {
                Command::Exit => break,
                Command::Keep => {}
                c => op = self.start(c, &mut held),
            }
            self.publish(&m, &mut last);
            if !waiters.is_empty()
                && !matches!(
                    m.status(),
                    Status::Master | Status::Releasing | Status::Stalled
                )
            {
                let r = match m.status() {
                    Status::Standby => Ok(()),
                    _ => Err(m
                        .last_error()
                        .unwrap_or("release did not complete")
                        .to_string()),
                };
                waiters.drain(..).for_each(|w| drop(w.send(r.clone())));
            }
            let done = tokio::select! {
                d = op.next() => d,
                req = requests.recv() => match req {
                    Some(Request::Ping(reply)) => {
                        let _ = reply.send(());
                        cmd = Command::Keep;
                        continue;
                    }
                    Some(Request::Release { hold_off, reply }) => {
                        match m.request_release(hold_off) {
                            Ok(c) => {
                                tracing::info!(resource = %self.spec.name, "release requested, holding off for {hold_off:?}");
                                waiters.push(reply);
                                cmd = c;
                            }
                            Err(e) => {
                                let _ = reply.send(Err(e));
                                cmd = Command::Keep;
                            }
                        }
                        continue;
                    }
                    Some(Request::Shutdown) | None => Done::Event(Event::Shutdown),
                },
            };
            let ev = match done {
                Done::Won(h) => {
                    if let Some(p) = h.previous_holder() {
                        tracing::info!(resource = %self.spec.name, "lock won: {p}");
                    }
                    held = Some(h);
                    Event::Locked
                }
                Done::Event(Event::Stalled) => {
                    tracing::warn!(
                        resource = %self.spec.name,
                        "lock call has not returned within op_timeout ({:?}); still waiting for it (the DLM may be recovering a dead node)",
                        self.op_timeout
                    );
                    Event::Stalled
                }
                Done::Event(ev) => ev,
            };
            cmd = m.handle(ev);
        }
        self.publish(&m, &mut last);
        for w in waiters {
            let _ = w.send(Err("daemon is shutting down".into()));
        }
        // A lock still held here (release actions failed on the way out)
        // is deliberately kept until the process exits: see Machine.
        if let Some(h) = held {
            std::mem::forget(h);
        }
    }
}
