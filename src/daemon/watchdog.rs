//! When to feed systemd's watchdog: every `WatchdogSec/2`, a round of pings
//! to every runner, fed only if each one's loop answered.
//!
//! A round runs as a task of its own, so the supervisor's loop goes on
//! answering signals and admin requests while it waits. A runner is given
//! half the feeding period to answer: it answers
//! between two events of its loop, so what this catches is a loop that is
//! stuck (a deadlock, a blocking call on the runtime), not one that is
//! slow. A lock call stuck in the kernel does not hold its runner up (it is
//! on another thread), and slow is normal when 1,000 resources start at
//! once on one slow CPU: on the corosync VMs (one TCG vCPU) runners took
//! more than a second to answer for minutes on end while every resource
//! settled, and the former one-second bound starved the watchdog until
//! systemd killed a daemon that was working. The worst gap between feeds
//! is the period plus that half period, 3/4 of `WatchdogSec`.

use crate::election::runner::Request;
use crate::notify;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Interval, MissedTickBehavior};

pub(super) struct Watchdog {
    /// None: systemd watches nothing; no rounds.
    period: Option<Duration>,
    /// How long a runner has to answer a round's ping: half the period.
    within: Duration,
    timer: Interval,
    round: Option<JoinHandle<bool>>,
}

/// What [`Watchdog::next`] found.
pub(super) enum Beat {
    /// A round is due: [`Watchdog::start`] it with every runner's sender.
    Due,
    /// A round ended: fed if every runner answered (said when not).
    Ended,
}

impl Watchdog {
    pub(super) fn new() -> Watchdog {
        let period = notify::watchdog_period();
        let mut timer = tokio::time::interval(period.unwrap_or(Duration::from_secs(3600)));
        // Ticks missed while the loop was busy elsewhere (a reload) are
        // skipped, not run in a burst: a burst of WATCHDOG=1 can fill the
        // notify socket's queue, and sending then blocks the whole loop.
        timer.set_missed_tick_behavior(MissedTickBehavior::Skip);
        Watchdog {
            period,
            within: period.unwrap_or_default() / 2,
            timer,
            round: None,
        }
    }

    /// The next beat: a round due, or the running one ended. Cancel safe.
    pub(super) async fn next(&mut self) -> Beat {
        if self.period.is_none() {
            return std::future::pending().await;
        }
        match &mut self.round {
            Some(round) => {
                let all = round.await.unwrap_or(false);
                self.round = None;
                if all {
                    notify::watchdog();
                } else {
                    tracing::error!(
                        "a resource runner did not answer within {:?}; not feeding the watchdog",
                        self.within
                    );
                }
                Beat::Ended
            }
            None => {
                self.timer.tick().await;
                Beat::Due
            }
        }
    }

    /// Pings every runner in `runners`, as a task.
    pub(super) fn start(&mut self, runners: Vec<mpsc::Sender<Request>>) {
        self.round = Some(tokio::spawn(all_answer(runners, self.within)));
    }
}

/// True when every runner answers a ping within `within`.
async fn all_answer(runners: Vec<mpsc::Sender<Request>>, within: Duration) -> bool {
    let pings = runners.into_iter().map(|tx| async move {
        let (reply, rx) = oneshot::channel();
        tokio::time::timeout(within, async {
            tx.send(Request::Ping(reply)).await.is_ok() && rx.await.is_ok()
        })
        .await
        .unwrap_or(false)
    });
    futures::future::join_all(pings)
        .await
        .into_iter()
        .all(|ok| ok)
}
