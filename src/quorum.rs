//! The `dlm` backend's quorum watch: a master whose node is in a partition
//! that lost quorum gives mastership up at once, without waiting to be
//! fenced, and no node out of quorum competes.
//!
//! On a corosync cluster the quorate side fences the others before the DLM
//! gives their locks away, so a master cut off from quorum still holds its
//! lock, and keeps its VIP up, until the fence lands (seconds, or forever
//! if the fence fails). Its VIP is useless there and clashes with the one
//! the quorate side brings up after the fence; and should fencing ever be
//! missing, releasing here is what keeps one master. So the runners
//! follow this watch as they follow a frozen node's doubt (`membership`):
//! Some(why) while the node is not quorate, None once it is again.
//!
//! How it reads quorum: `corosync-quorumtool -s` every `EVERY` (exit 0
//! quorate, 2 not; `lock::fsdlm::quorate`), on a thread of its own. A
//! poll, not corosync's quorum tracking: tracking needs libquorum's IPC
//! (libqb), which the static binary does not link, and `corosync-quorumtool
//! -m` prints into a block-buffered pipe. Corosync itself only notices a
//! lost partition after its token timeout and consensus (about 7 s at its
//! defaults), so a second more is a small share of it; one run costs a
//! fork and a few ms of CPU. The judgement is pure (`Judge`).

use crate::membership::Doubt;
use std::time::Duration;
use tokio::sync::watch;

/// How often the watch asks corosync.
pub const EVERY: Duration = Duration::from_secs(1);

/// How many failed asks in a row make a node that was quorate doubt it:
/// one failure can be corosync busy with a membership change; a second,
/// a second later, is a corosync that does not answer, on a node the
/// cluster is about to fence.
pub const FAILURES: u32 = 2;

/// What the watch makes of each answer.
#[derive(Debug, Default)]
pub struct Judge {
    /// Failed asks in a row.
    failures: u32,
    /// Whether an answer was ever had: before, a failure is doubt at once
    /// (a node that cannot tell at start does not compete).
    answered: bool,
    /// The verdict: why the node is in doubt, or None.
    doubt: Option<String>,
}

impl Judge {
    /// One answer of `lock::fsdlm::quorate`; the verdict after it.
    pub fn seen(&mut self, r: Result<bool, String>) -> &Option<String> {
        match r {
            Ok(q) => {
                self.failures = 0;
                self.answered = true;
                self.doubt = (!q).then(|| {
                    "this node's corosync partition is not quorate (corosync-quorumtool -s)".into()
                });
            }
            Err(e) => {
                self.failures += 1;
                if !self.answered || self.failures >= FAILURES {
                    self.doubt = Some(format!("cannot tell whether this node is quorate: {e}"));
                }
            }
        }
        &self.doubt
    }
}

/// Starts the watch: the first answer is had before this returns, so the
/// runners start with it; then a thread asks every `every`.
pub fn watch(read: impl Fn() -> Result<bool, String> + Send + 'static, every: Duration) -> Doubt {
    let mut judge = Judge::default();
    let first = judge.seen(read()).clone();
    if let Some(why) = &first {
        tracing::warn!("{why}: not master and not competing until it is");
    }
    let (tx, rx) = watch::channel(first);
    let spawned = std::thread::Builder::new()
        .name("quorum-watch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                let now = judge.seen(read()).clone();
                tx.send_if_modified(|d| {
                    if *d == now {
                        return false;
                    }
                    match &now {
                        Some(why) => tracing::warn!(
                            "{why}: giving mastership up and not competing until it is quorate"
                        ),
                        None => tracing::info!("this node is quorate again: competing"),
                    }
                    *d = now.clone();
                    true
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        // Without the watch a node that loses quorum keeps its masters
        // until fenced: the cluster's fencing still keeps one master.
        tracing::error!("cannot start the quorum watch ({e}); quorum loss is left to fencing");
    }
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_quorate_is_doubt_at_once_and_a_lone_failure_is_not() {
        let mut j = Judge::default();
        assert_eq!(*j.seen(Ok(true)), None);
        assert!(j.seen(Ok(false)).as_ref().unwrap().contains("not quorate"));
        assert_eq!(*j.seen(Ok(true)), None);
        // corosync busy once: still sound; twice in a row: doubt.
        assert_eq!(*j.seen(Err("timeout".into())), None);
        assert_eq!(*j.seen(Ok(true)), None, "a success resets the count");
        assert_eq!(*j.seen(Err("timeout".into())), None);
        let d = j.seen(Err("no corosync".into())).clone().unwrap();
        assert!(
            d.contains("cannot tell") && d.contains("no corosync"),
            "{d}"
        );
        assert_eq!(*j.seen(Ok(true)), None);
    }

    #[test]
    fn a_node_that_cannot_tell_at_start_does_not_compete() {
        let mut j = Judge::default();
        assert!(j.seen(Err("not running".into())).is_some());
    }

    #[test]
    fn the_watch_follows_the_answers() {
        use std::sync::{Arc, Mutex};
        let answer = Arc::new(Mutex::new(Ok(true)));
        let a = answer.clone();
        let mut rx = watch(move || a.lock().unwrap().clone(), Duration::from_millis(5));
        assert_eq!(*rx.borrow_and_update(), None, "quorate at start");
        *answer.lock().unwrap() = Ok(false);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), rx.changed())
                .await
                .unwrap()
                .unwrap();
        });
        assert!(rx.borrow_and_update().is_some());
        *answer.lock().unwrap() = Ok(true);
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), rx.changed())
                .await
                .unwrap()
                .unwrap();
        });
        assert_eq!(*rx.borrow(), None);
    }
}
