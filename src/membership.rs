//! Whether this node may have been declared dead by the cluster while it
//! did not run: a VM paused by its hypervisor, a host stalled in the
//! kernel. o2cb declares a node dead when its disk heartbeat stops for the
//! dead threshold, recovers its locks for the others, and expects it to
//! have fenced itself; a node that resumes before its own heartbeat write
//! timeout fires (a race, docs/dlmfs.md §1.9) still holds its locks in its
//! own view, beside the new master. So the daemon watches for it itself:
//!
//! - **a gap in its own running**: a thread that ticks every `TICK`
//!   (CLOCK_BOOTTIME) and sees a tick come late by at least `Judge::after`,
//!   the shortest freeze after which the other nodes may have declared
//!   this one dead (from o2cb's dead threshold in configfs);
//! - **the node, not only the daemon**: during that gap, did this node's
//!   heartbeat kernel threads run (times scheduled, from
//!   `/proc/PID/schedstat`)? A daemon frozen alone (SIGSTOP) leaves them
//!   running, and the node heartbeated: nobody declared it dead, and it
//!   stays master. A frozen node's threads did not run.
//!
//! In doubt the watcher reports why, once, and for good: the daemon's
//! runners give mastership up at once and do not compete, and a marker in
//! the runtime dir (tmpfs: gone at reboot) keeps a restarted daemon out
//! too, until the node reboots. The judgement is pure (`Judge`); the
//! thread and /proc, configfs reads are at the bottom.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// o2hb writes the heartbeat every 2 s (O2HB_REGION_TIMEOUT_MS).
pub const HB_INTERVAL: Duration = Duration::from_millis(2000);
/// How often the watcher looks at the clock: a resumed master notices
/// within this (plus the release steps).
pub const TICK: Duration = Duration::from_millis(200);
/// The marker of a node in doubt, in the runtime dir.
pub const MARKER: &str = "membership-in-doubt";

/// CLOCK_BOOTTIME (ms) of the watcher's last tick judged fine; 0 while no
/// watcher runs. A tick that came late is judged before this moves on, so
/// "judged lately" means no freeze can be pending judgement.
static JUDGED_MS: AtomicU64 = AtomicU64::new(0);

/// Whether the watcher (if one runs) has judged a tick within the last two
/// ticks. Right after a freeze it has not: actions of our own (a VIP
/// refresh, a lock attempt, acquire steps) wait for it rather than racing
/// the verdict.
pub fn judged_lately() -> bool {
    let last = JUDGED_MS.load(Ordering::Acquire);
    last == 0 || (boottime().as_millis() as u64) <= last + 2 * TICK.as_millis() as u64
}

/// Waits (at most `limit`) until `judged_lately`; false if it never was:
/// in doubt (the watcher stopped judging) or the watcher is stuck.
pub async fn judged(limit: Duration) -> bool {
    let end = tokio::time::Instant::now() + limit;
    while !judged_lately() {
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(TICK / 10).await;
    }
    true
}

/// The pure judgement of one late tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judge {
    /// The shortest gap after which other nodes may have declared us dead.
    pub after: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Too short for anyone to declare us dead.
    Fine,
    /// Long enough, but the node's heartbeat ran meanwhile (this often):
    /// only the daemon stood still (SIGSTOP, starved), the node heartbeated.
    DaemonOnly(u64),
    /// The node itself may have stood still that long: in doubt (why).
    Doubt(String),
}

impl Judge {
    /// o2hb declares a node dead once its heartbeat block is unchanged for
    /// `dead_threshold` reads, 2 s apart; a node frozen right after a write
    /// is seen unchanged from its next-but-one slot on, so the shortest
    /// freeze that can get it declared dead is (threshold − 1) × 2 s. Half
    /// a heartbeat less, for our own tick's lateness and clock skew.
    pub fn from_dead_threshold(threshold: u32) -> Judge {
        let full = HB_INTERVAL * threshold.saturating_sub(1);
        Judge {
            after: full
                .saturating_sub(HB_INTERVAL / 2)
                .max(Duration::from_secs(1)),
        }
    }

    /// `gap`: how long the watcher did not run; `hb_runs`: how often the
    /// heartbeat threads were scheduled meanwhile (the busiest one), None
    /// if they could not be read.
    pub fn judge(&self, gap: Duration, hb_runs: Option<u64>) -> Verdict {
        if gap < self.after {
            return Verdict::Fine;
        }
        let secs = gap.as_secs_f64();
        // A running heartbeat thread is scheduled at least twice a
        // heartbeat (woken from its sleep, woken by the write's
        // completion): 2 × (gap / interval), less one heartbeat for where
        // the gap starts and ends. A frozen node's thread ran only in the
        // moment since the resume: one heartbeat's worth, a few times
        // (measured 0 to 3 on the cluster tier). At least 6, so a burst at
        // the resume never passes for a node that ran.
        let beats = gap.as_millis() as u64 / HB_INTERVAL.as_millis() as u64;
        let ran = (2 * beats).saturating_sub(2).max(6);
        match hb_runs {
            Some(r) if r >= ran => Verdict::DaemonOnly(r),
            Some(r) => Verdict::Doubt(format!(
                "this node did not run for {secs:.1}s (its heartbeat thread ran {r} times in that time, a running one at least {ran}), past the {:.1}s after which the cluster may declare it dead and give its locks to others",
                self.after.as_secs_f64()
            )),
            None => Verdict::Doubt(format!(
                "this daemon did not run for {secs:.1}s, past the {:.1}s after which the cluster may declare the node dead, and the heartbeat threads cannot be read to tell whether the node ran",
                self.after.as_secs_f64()
            )),
        }
    }
}

/// The watch the runners follow: None while membership is sound, Some(why)
/// once in doubt (for good: the sender is then dropped).
pub type Doubt = watch::Receiver<Option<String>>;

/// A watch that never reports doubt: the `file` backend, whose OFD locks
/// stay with the holding process whether it runs or not, so nobody can
/// have taken them from a frozen one.
pub fn never() -> Doubt {
    watch::channel(None).1
}

/// The doubt a daemon recorded in `runtime_dir`, if any.
pub fn recorded(runtime_dir: &Path) -> Option<String> {
    let marker = runtime_dir.join(MARKER);
    std::fs::read_to_string(&marker).ok().map(|why| {
        format!(
            "{} (recorded in {}; it goes at reboot)",
            why.trim(),
            marker.display()
        )
    })
}

/// For the dlmfs backend: the doubt recorded by an earlier run (the
/// marker in `runtime_dir`), then a watcher thread that reports a new one.
/// `sys`: sysfs root (configfs is under it); `proc`: procfs root. `first`
/// runs on the watcher thread the moment it is in doubt, before anyone is
/// told: what must not wait for the runners (the daemon drops its VIPs).
pub fn watch(
    runtime_dir: &Path,
    sys: &Path,
    proc_root: &Path,
    first: impl FnOnce() + Send + 'static,
) -> Doubt {
    let marker = runtime_dir.join(MARKER);
    let earlier = recorded(runtime_dir);
    let (tx, rx) = watch::channel(earlier.clone());
    if earlier.is_some() {
        // Nothing more to watch for: in doubt until the node reboots.
        return rx;
    }
    let judge = Judge::from_dead_threshold(dead_threshold(sys).unwrap_or(31));
    // The first reading is taken here, before we return: a freeze that
    // begins right after (a `run-locked` program just started) is a gap
    // from it, not the thread's start time after the resume.
    let start = Watch {
        hb: HbThreads::find(proc_root),
        last: boottime(),
    };
    let (sys, proc_root) = (sys.to_path_buf(), proc_root.to_path_buf());
    let spawned = std::thread::Builder::new()
        .name("membership".into())
        .spawn(move || watcher(judge, start, sys, proc_root, marker, tx, first));
    if let Err(e) = spawned {
        tracing::error!("cannot start the membership watcher thread: {e}");
    }
    rx
}

/// The watcher's readings: the heartbeat threads' run counts, and when it
/// last looked.
struct Watch {
    hb: HbThreads,
    last: Duration,
}

fn watcher(
    mut judge: Judge,
    start: Watch,
    sys: PathBuf,
    proc_root: PathBuf,
    marker: PathBuf,
    tx: watch::Sender<Option<String>>,
    first: impl FnOnce(),
) {
    let Watch { mut hb, mut last } = start;
    let mut ticks = 0u64;
    loop {
        std::thread::sleep(TICK);
        let now = boottime();
        let runs = hb.runs();
        let gap = now.saturating_sub(last).saturating_sub(TICK);
        last = now;
        let verdict = judge.judge(gap, runs);
        // In doubt JUDGED_MS stays where it was, so nothing of ours that
        // waits for a verdict goes ahead.
        if !matches!(verdict, Verdict::Doubt(_)) {
            JUDGED_MS.store((now.as_millis() as u64).max(1), Ordering::Release);
        }
        match verdict {
            Verdict::Fine => {}
            Verdict::DaemonOnly(runs) => tracing::warn!(
                "this daemon did not run for {:.1}s, but the node's heartbeat did ({runs} runs): the node was not declared dead, mastership stands",
                gap.as_secs_f64()
            ),
            Verdict::Doubt(why) => {
                tracing::error!(
                    "{why}: giving mastership up and not competing until the node reboots"
                );
                let unix = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                let text = format!("{why} (at Unix time {unix}s)");
                if let Err(e) = write_marker(&marker, &text) {
                    tracing::error!("cannot record the doubt in {}: {e}", marker.display());
                }
                first();
                let _ = tx.send(Some(why));
                return;
            }
        }
        ticks += 1;
        // The cluster may come up after the daemon, and heartbeat threads
        // come and go with regions: look again every 10 s.
        if ticks.is_multiple_of(50) {
            hb = HbThreads::find(&proc_root);
            if let Some(t) = dead_threshold(&sys).map(Judge::from_dead_threshold)
                && t != judge
            {
                tracing::debug!("o2cb's dead threshold: in doubt after {:?}", t.after);
                judge = t;
            }
        }
    }
}

fn write_marker(marker: &Path, text: &str) -> std::io::Result<()> {
    let tmp = marker.with_extension("tmp");
    std::fs::write(&tmp, format!("{text}\n"))?;
    std::fs::rename(&tmp, marker)
}

/// CLOCK_BOOTTIME: like the monotonic clock, but it also counts a host
/// suspend, which stops us as surely as a freeze.
fn boottime() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a pointer to a timespec we own.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// o2cb's dead threshold, from configfs
/// (`/sys/kernel/config/cluster/CLUSTER/heartbeat/dead_threshold`).
pub fn dead_threshold(sys: &Path) -> Option<u32> {
    let clusters = sys.join("kernel/config/cluster");
    std::fs::read_dir(clusters).ok()?.flatten().find_map(|c| {
        std::fs::read_to_string(c.path().join("heartbeat/dead_threshold"))
            .ok()?
            .trim()
            .parse()
            .ok()
    })
}

/// The o2hb kernel threads (one per heartbeat region, named `o2hb-REGION`)
/// and how often each was scheduled when last read.
struct HbThreads {
    threads: Vec<(PathBuf, u64)>,
}

impl HbThreads {
    fn find(proc_root: &Path) -> HbThreads {
        let mut threads = Vec::new();
        for e in std::fs::read_dir(proc_root).into_iter().flatten().flatten() {
            let name = e.file_name();
            if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            if comm.starts_with("o2hb-") {
                let stat = e.path().join("schedstat");
                let runs = read_runs(&stat).unwrap_or(0);
                threads.push((stat, runs));
            }
        }
        HbThreads { threads }
    }

    /// How often the busiest thread was scheduled since the last call.
    /// None without heartbeat threads, or if one cannot be read (the
    /// watcher looks for them again every 10 s, not at every tick: no
    /// walk over /proc five times a second while the cluster is down).
    fn runs(&mut self) -> Option<u64> {
        if self.threads.is_empty() {
            return None;
        }
        let mut most = 0;
        for (stat, last) in &mut self.threads {
            let now = read_runs(stat)?;
            most = most.max(now.saturating_sub(*last));
            *last = now;
        }
        Some(most)
    }
}

/// The third field of /proc/PID/schedstat: times scheduled on a CPU.
fn read_runs(stat: &Path) -> Option<u64> {
    std::fs::read_to_string(stat)
        .ok()?
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_shortest_dangerous_freeze_follows_the_dead_threshold() {
        // The cluster tier's 5: declared dead after about 8-10 s.
        assert_eq!(Judge::from_dead_threshold(5).after, S(7));
        // o2cb's default 31: about 60 s.
        assert_eq!(Judge::from_dead_threshold(31).after, S(59));
        assert_eq!(Judge::from_dead_threshold(1).after, S(1));
    }

    #[test]
    fn a_frozen_node_is_in_doubt_a_frozen_daemon_is_not() {
        let j = Judge::from_dead_threshold(5);
        // Short gaps: nothing, whatever the heartbeat did.
        assert_eq!(j.judge(S(6), Some(0)), Verdict::Fine);
        assert_eq!(j.judge(Duration::from_millis(300), None), Verdict::Fine);
        // The VM was frozen: its heartbeat thread ran once or twice, at
        // the resume.
        for runs in [0, 1, 2, 3, 4, 5] {
            assert!(matches!(j.judge(S(18), Some(runs)), Verdict::Doubt(_)));
        }
        assert!(matches!(j.judge(S(8), Some(3)), Verdict::Doubt(_)));
        // Only the daemon: the heartbeat ran about twice every 2 s.
        assert_eq!(j.judge(S(18), Some(18)), Verdict::DaemonOnly(18));
        assert_eq!(j.judge(S(8), Some(8)), Verdict::DaemonOnly(8));
        assert_eq!(j.judge(S(7), Some(6)), Verdict::DaemonOnly(6));
        // A burst at the resume is no heartbeat over the gap.
        assert!(matches!(j.judge(S(13), Some(5)), Verdict::Doubt(_)));
        assert!(matches!(j.judge(S(18), Some(15)), Verdict::Doubt(_)));
        // Unknown: in doubt.
        let Verdict::Doubt(why) = j.judge(S(18), None) else {
            panic!("unknown heartbeat must be doubt")
        };
        assert!(why.contains("18.0s"), "{why}");
    }

    #[test]
    fn reads_the_threshold_and_the_heartbeat_threads_from_stand_ins() {
        let dir = tempfile::tempdir().unwrap();
        let sys = dir.path().join("sys");
        let hb = sys.join("kernel/config/cluster/lab/heartbeat");
        std::fs::create_dir_all(&hb).unwrap();
        std::fs::write(hb.join("dead_threshold"), "5\n").unwrap();
        assert_eq!(dead_threshold(&sys), Some(5));
        assert_eq!(dead_threshold(dir.path()), None);

        let proc_root = dir.path().join("proc");
        for (pid, comm, stat) in [
            ("12", "o2hb-4A1B2C3D\n", "10 20 100\n"),
            ("13", "kworker/0:1\n", "1 2 3\n"),
        ] {
            let p = proc_root.join(pid);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("comm"), comm).unwrap();
            std::fs::write(p.join("schedstat"), stat).unwrap();
        }
        std::fs::create_dir_all(proc_root.join("self")).unwrap();
        let mut t = HbThreads::find(&proc_root);
        assert_eq!(t.threads.len(), 1);
        assert_eq!(t.runs(), Some(0));
        std::fs::write(proc_root.join("12/schedstat"), "11 22 109\n").unwrap();
        assert_eq!(t.runs(), Some(9));
        assert_eq!(HbThreads::find(dir.path()).runs(), None);
    }
}
