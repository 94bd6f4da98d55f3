//! A master's one operation: it holds the lock (no lock call needed) and
//! watches, until something says it must give mastership up.

use super::candidacy::outranked_by;
use super::deferral::Deferral;
use super::machine::Event;
use crate::action;
use crate::config::ActionSpec;
use crate::lock::{LockBackend, StillHeld};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// With `preempt`: the backend and the candidate locks of the nodes more
/// preferred than this one, probed at every poll while master, and the
/// deferral state that says which of them are stuck.
pub(super) type Preempt = (
    Arc<dyn LockBackend>,
    Vec<(String, String)>,
    Arc<Mutex<Deferral>>,
);

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
