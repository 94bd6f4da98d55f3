//! What a runner hands off the runtime: a lock attempt (with the deferral
//! to more preferred nodes), run on the blocking pool or a polling thread,
//! and the acquire and release steps, run as the runner's operation; each
//! timed for the metrics.

use super::attempt::Attempt;
use super::candidacy::{better, outranked_by};
use super::deferral::{Before, Won, window};
use super::machine::Event;
use super::op::{BoxFut, Op};
use super::runner::Runner;
use crate::action::{self, Cancel};
use crate::instance::Applied;
use crate::lock::TryLock;
use crate::metrics::Run;
use std::future::Future;
use std::time::Duration;

impl Runner {
    /// Acquire or release steps, timed for the metrics.
    pub(super) fn timed(
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
    /// candidate locks (not at the first attempt, see `Task`); `poll`: the
    /// machine's poll interval, which sizes the deferral window.
    pub(super) fn attempt(&self, defer: bool, poll: Duration) -> Attempt {
        let (backend, lock) = (self.backend.clone(), self.spec.lock.clone());
        let better = if defer {
            better(&self.spec, &self.node)
        } else {
            Vec::new()
        };
        let span = tracing::Span::current();
        let timed = self.metrics.try_lock_calls(&self.spec.name);
        let deferral = self.deferral.clone();
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
                                window(poll)
                            );
                            Ok(TryLock::Acquired(h))
                        }
                    },
                },
            }
        })
    }

    /// The acquire steps, after the applied record; cancellable.
    pub(super) fn acquire_steps(&self) -> Op {
        let (spec, record, ctx) = (self.spec.clone(), self.record.clone(), self.ctx());
        let (cancel, token) = Cancel::new();
        Op::Actions {
            run: self.timed(Run::acquire, async move {
                // A lock won across a freeze: no step before the
                // node's membership was judged (dlmfs; see
                // `membership`). In doubt the runner is told too.
                if !crate::membership::judged(crate::membership::TICK * 5).await {
                    return Event::ActionsFailed {
                        msg:
                            "this node's membership was not judged sound after a gap in its running"
                                .into(),
                        clean: true,
                    };
                }
                // Written before the first step: from here on a
                // crash may leave something for a restart to undo.
                let applied = Applied {
                    lock: spec.lock.clone(),
                    actions: spec.actions.clone(),
                };
                if let Err(e) = record.mark(&applied) {
                    return Event::ActionsFailed {
                        msg: e.to_string(),
                        clean: true,
                    };
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

    /// The release steps, or without the lock (`reconcile`) the startup
    /// reconcile's (see `action::reconcile`).
    pub(super) fn release_steps(&self, reconcile: bool) -> Op {
        let (spec, record, ctx) = (self.spec.clone(), self.record.clone(), self.ctx());
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
}
