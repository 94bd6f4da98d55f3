//! A master's one operation: it holds the lock (no lock call needed) and
//! watches, until something says it must give mastership up.

use super::candidacy::candidates;
use super::deferral::Deferral;
use super::failback::{Failback, Verdict};
use super::machine::Event;
use crate::action;
use crate::clock::{after_ms, now_ms};
use crate::config::ActionSpec;
use crate::lock::{LockBackend, StillHeld};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// A handover waiting for `preempt_delay`, for status: to whom, and when
/// (Unix ms) if the node stays a candidate.
pub(super) type Pending = Option<(String, u64)>;

/// With `preempt`: the backend and the candidate locks of the nodes more
/// preferred than this one, probed at every poll while master, the
/// deferral state that says which of them are stuck, and `preempt_delay`.
pub(super) struct Preempt {
    pub backend: Arc<dyn LockBackend>,
    pub better: Vec<(String, String)>,
    pub deferral: Arc<Mutex<Deferral>>,
    pub delay: Duration,
    /// Where a running delay is shown (status).
    pub pending: watch::Sender<Pending>,
}

/// While master: re-announce VIPs that ask for it, check at every poll
/// that the lock still excludes others (on the daemon's one lock-check
/// thread: see `check`), and with `preempt` that no more preferred node is
/// a candidate. Returns only when one of those fails.
pub(super) async fn hold(
    actions: Vec<ActionSpec>,
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
        let Some(p) = preempt else {
            return std::future::pending().await;
        };
        // Boxed: only `preempt` masters carry its state.
        Box::pin(outranked(p, every, op_timeout)).await
    };
    tokio::select! {
        () = &mut refresh => unreachable!("while_master never returns"),
        why = lost => Event::LockLost(why),
        n = outranked => Event::Outranked(n),
    }
}

/// Probes the better nodes' candidate locks at every poll; returns the node
/// to hand over to once one has been a candidate at every probe for
/// `preempt_delay` (`failback`; at once without a delay).
async fn outranked(p: Preempt, every: Duration, op_timeout: Duration) -> String {
    let mut failback = Failback::new(p.delay);
    let mut tick = tokio::time::interval_at(crate::clock::from_now(every), every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (b, better, d) = (p.backend.clone(), p.better.clone(), p.deferral.clone());
        let probe = tokio::task::spawn_blocking(move || candidates(&*b, &better, &d, false));
        // A probe stuck in the kernel is retried next time; it never
        // decides on its own, and it is no sighting: with a delay, the
        // candidate was not seen at every probe.
        let found = match tokio::time::timeout(op_timeout, probe).await {
            Ok(Ok(n)) => n,
            _ => Vec::new(),
        };
        let was = failback.pending().map(|(n, _)| n.to_string());
        let verdict = failback.probed(std::time::Instant::now(), &found);
        let due = failback
            .pending()
            .map(|(n, _)| (n.to_string(), after_ms(now_ms(), p.delay)));
        // The due time is set when a delay starts and kept while it runs;
        // the runner hears only of a change (not at every poll).
        p.pending.send_if_modified(|shown| {
            let same = shown.as_ref().map(|s| &s.0) == due.as_ref().map(|d| &d.0);
            if !same {
                *shown = due;
            }
            !same
        });
        match verdict {
            Verdict::HandOver(n) => return n,
            Verdict::Started(nodes) => {
                for n in nodes {
                    tracing::info!(
                        "more preferred node {n} is a candidate: handing over after preempt_delay {} if it stays one",
                        humantime::format_duration(p.delay)
                    );
                }
            }
            Verdict::Stay => {
                if let Some(w) = was {
                    tracing::info!(
                        "more preferred node {w} is no longer a candidate: staying master (its preempt_delay starts over)"
                    );
                }
            }
            Verdict::Waiting => {}
        }
    }
}
