//! A reload that changed only settings that apply in place
//! (`Request::Update`: intervals, timeouts, the health check, preference):
//! the running runner takes them over without releasing anything.

use super::checker::Checker;
use super::machine::{Command, Event};
use super::op::{Op, retire};
use super::runner::Task;
use crate::action::Ctx;
use crate::config::ResourceSpec;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::sleep;

impl Task {
    /// A reload with settings that apply in place: the poll interval (to
    /// the machine, and a polling wait's next try), `op_timeout`, the
    /// health check, preference.
    pub(super) async fn on_update(
        &mut self,
        spec: Arc<ResourceSpec>,
        op_timeout: Duration,
    ) -> Command {
        if *spec != *self.r.spec || op_timeout != self.r.op_timeout {
            tracing::info!("reload: new intervals and timeouts apply in place");
        }
        self.m.set_poll(spec.poll_interval);
        let mut cmd = Command::Keep;
        if spec.check != self.r.spec.check {
            cmd = self.reload_check(&spec).await;
        }
        let failures_off = spec.failures.is_none() && self.r.spec.failures.is_some();
        let new_prefer = spec.prefer != self.r.spec.prefer;
        let new_preempt = new_prefer
            || spec.preempt != self.r.spec.preempt
            || spec.preempt_delay != self.r.spec.preempt_delay;
        self.r.spec = spec;
        if new_prefer {
            // Our place (so our candidate lock) may have
            // changed: give the old one up first.
            tracing::info!("reload: preference changed");
            drop(std::mem::replace(&mut self.want, watch::channel(false).0));
            if let Some(t) = self.candidate.take() {
                let _ = tokio::time::timeout(self.r.op_timeout, t).await;
            }
            (self.want, self.candidate) = self.r.candidacy(self.m.poll());
        }
        if let Op::Wait(w) = &self.op {
            w.set_every(self.m.poll());
        }
        if (new_prefer || op_timeout != self.r.op_timeout) && matches!(self.op, Op::Wait(_)) {
            // The waiting thread has the old preference
            // and timeout: a fresh one takes over after
            // the next try.
            retire(std::mem::replace(&mut self.op, Op::Idle), self.r.op_timeout).await;
            self.op = Op::Sleep(Box::pin(sleep(self.m.poll())));
        }
        self.r.op_timeout = op_timeout;
        if failures_off && cmd == Command::Keep {
            cmd = self.failures_off();
        }
        if cmd == Command::Keep {
            // A VIP's track_link or interface may have changed.
            cmd = self.on_links();
        }
        if new_preempt && self.m.is_master() && cmd == Command::Keep {
            // Watch with the new preference from now on.
            self.op = self.start(Command::Hold, true);
        }
        cmd
    }

    /// A reload changed the health check: restart it, or drop it.
    async fn reload_check(&mut self, spec: &ResourceSpec) -> Command {
        // Without a check so far the node was
        // eligible: a check added by a reload keeps
        // that verdict until fall failures.
        let mut verdict = Some(true);
        if let Some(old) = self.checker.take() {
            verdict = old.health.eligible();
            old.stop().await;
        }
        match &spec.check {
            Some(c) => {
                tracing::info!("reload: health check changed, restarting it");
                self.m.set_health_hold_off(c.hold_off);
                let mut new = Checker::start(
                    c,
                    Ctx {
                        resource: spec.name.clone(),
                        node: self.r.node.clone(),
                    },
                );
                new.health = new.health.carried_over(verdict);
                self.checker = Some(new);
                Command::Keep
            }
            None => {
                tracing::info!("reload: health check removed, eligible");
                self.m.handle(Event::Eligible(true))
            }
        }
    }
}
