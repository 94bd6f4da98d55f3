//! The runner's side of fail counts (`failures`, the pure part): counts
//! the failed acquires, takes the node out and back in, answers `reset`.

use super::failures::Limit;
use super::machine::{Command, Event};
use super::runner::{Reply, Task};
use crate::clock::now_ms;
use std::time::Instant;

impl Task {
    fn failure_limit(&self) -> Option<Limit> {
        self.r.spec.failures.map(|f| Limit {
            max: f.max,
            window: f.window,
            timeout: f.timeout,
        })
    }

    /// The acquire steps failed (not cancelled by a stop): one more for
    /// the count; the one too many takes the node out.
    pub(super) fn count_failure(&mut self) {
        let Some(limit) = self.failure_limit() else {
            return;
        };
        if self.failures.failed(limit, Instant::now()).is_none() {
            return;
        }
        tracing::error!(
            "acquire steps failed {} times within {} (max_failures): not competing for {} (failure_timeout); `dlm-electd reset {}` competes again now",
            limit.max,
            humantime::format_duration(limit.window),
            humantime::format_duration(limit.timeout),
            self.r.spec.name
        );
        self.m.handle(Event::FailedOut(true));
    }

    /// A timer while out: Some(the machine's command) once the timeout is
    /// over and the node competes again.
    pub(super) fn failure_timeout_over(&mut self) -> Option<Command> {
        if self.failures.out_until().is_none() || self.failures.out(Instant::now()) {
            return None;
        }
        tracing::info!("failure_timeout over: competing again");
        Some(self.m.handle(Event::FailedOut(false)))
    }

    /// An admin's `reset`: the counts cleared; out, the node competes
    /// again at once.
    pub(super) fn on_reset(&mut self, reply: Reply) -> Command {
        let was_out = self.failures.reset();
        let _ = reply.send(Ok(()));
        if !was_out {
            return Command::Keep;
        }
        tracing::info!("fail count reset by request: competing again");
        self.m.handle(Event::FailedOut(false))
    }

    /// A reload took `max_failures` away: nothing keeps the node out.
    pub(super) fn failures_off(&mut self) -> Command {
        if self.failure_limit().is_some() || !self.failures.reset() {
            return Command::Keep;
        }
        tracing::info!("reload: max_failures removed, competing again");
        self.m.handle(Event::FailedOut(false))
    }

    /// For status: failures within the window, and while out when it
    /// ends (Unix time in ms).
    pub(super) fn failure_status(&mut self) -> (u32, Option<u64>) {
        let Some(limit) = self.failure_limit() else {
            return (0, None);
        };
        let now = Instant::now();
        let until = self
            .failures
            .out_until()
            .map(|t| crate::clock::after_ms(now_ms(), t.saturating_duration_since(now)));
        (self.failures.recent(limit, now) as u32, until)
    }
}
