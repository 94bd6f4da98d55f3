//! The one outstanding operation of a runner (a sleep, a lock or unlock
//! call, action steps, the master's watch, a standby's wait) as one future
//! to select on, and what it finished with.

use super::attempt::Outcome;
use super::machine::Event;
use super::wait::Waiter;
use crate::lock::{HeldLock, LockError, TryLock};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Sleep;

pub(super) type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The one outstanding operation.
pub(super) enum Op {
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
pub(super) enum Done {
    Event(Event),
    Won(Box<dyn HeldLock>),
}

impl Op {
    pub(super) async fn next(&mut self) -> Done {
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
pub(super) async fn retire(op: Op, op_timeout: Duration) {
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
