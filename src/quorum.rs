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
//! How it reads quorum, without linking libquorum (its IPC is libqb's, which
//! the static binary does not carry): corosync's own change notifications,
//! through `corosync-quorumtool -m` kept running on a pseudo-terminal
//! ([`Monitor`]; on a pipe it block-buffers what it prints, so nothing
//! would arrive), each `Quorate:` line it prints an answer; and
//! `corosync-quorumtool -s` at start, when the monitor (re)starts, and every
//! [`RECHECK`] as a net (a change between the monitor's start and its
//! tracking, a corosync that hangs without exiting). Where the monitor
//! cannot run or keeps ending at once (no pseudo-terminal, corosync not up
//! yet), `-s` every [`EVERY`] for a minute at a time, then the monitor is
//! tried again: measured on the corosync VMs, that poll's fork and exec a
//! second cost each node about 10 % of a TCG vCPU. Corosync itself
//! only notices a lost partition after its token timeout and consensus
//! (about 7 s at its defaults); the monitor hears of it the moment corosync
//! decides. The judgement is pure (`Judge`).

use crate::membership::Doubt;
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::os::fd::{AsFd, OwnedFd};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often the watch asks corosync when no monitor runs.
pub const EVERY: Duration = Duration::from_secs(1);

/// How often the watch asks corosync beside a running monitor.
pub const RECHECK: Duration = Duration::from_secs(30);

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

/// Where the watch's answers come from.
pub trait Source: Send + 'static {
    /// One answer, asked now.
    fn ask(&mut self) -> Result<bool, String>;
    /// Waits up to `within` for news: Some(answer) when told of one, None
    /// when the time is up (the watch then [`asks`](Self::ask)).
    fn next(&mut self, within: Duration) -> Option<Result<bool, String>>;
    /// How long to wait for news before asking again.
    fn recheck(&self) -> Duration;
}

/// Starts the watch: the first answer is had before this returns, so the
/// runners start with it; then a thread follows `source`.
pub fn watch(mut source: impl Source) -> Doubt {
    let mut judge = Judge::default();
    let first = judge.seen(source.ask()).clone();
    if let Some(why) = &first {
        tracing::warn!("{why}: not master and not competing until it is");
    }
    let (tx, rx) = watch::channel(first);
    let spawned = std::thread::Builder::new()
        .name("quorum-watch".into())
        .spawn(move || {
            loop {
                let within = source.recheck();
                let answer = source.next(within).unwrap_or_else(|| source.ask());
                let now = judge.seen(answer).clone();
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

/// Corosync, through `corosync-quorumtool`: `-s` to ask, `-m` on a
/// pseudo-terminal for news.
#[derive(Default)]
pub struct Corosync {
    monitor: Option<Monitor>,
    /// The monitor could not run: polled until then, when it is tried
    /// again (corosync may have been down at the daemon's start).
    poll_until: Option<Instant>,
    /// Whether polling instead was said (once, not at every retry).
    said: bool,
    /// When the last monitor started: one that ends at once is restarted
    /// no sooner than [`EVERY`] after.
    started: Option<Instant>,
    /// Monitors in a row that ended within [`SHORT_LIVED`] of their start
    /// (corosync not running, or without quorum configured: `-m` prints
    /// the status and exits); at [`GIVE_UP_AFTER`] the watch polls for
    /// [`RETRY_AFTER`].
    short_lived: u32,
}

const SHORT_LIVED: Duration = Duration::from_secs(10);
const GIVE_UP_AFTER: u32 = 3;
const RETRY_AFTER: Duration = Duration::from_secs(60);

impl Corosync {
    /// Polls for [`RETRY_AFTER`] instead of following the monitor.
    fn poll_for_now(&mut self, why: &str) {
        if !self.said {
            self.said = true;
            tracing::warn!(
                "cannot follow corosync's quorum changes ({why}): asking every {EVERY:?} instead, and trying again every {RETRY_AFTER:?}"
            );
        }
        self.poll_until = Some(Instant::now() + RETRY_AFTER);
    }
}

impl Source for Corosync {
    fn ask(&mut self) -> Result<bool, String> {
        crate::lock::fsdlm::quorate()
    }

    fn next(&mut self, within: Duration) -> Option<Result<bool, String>> {
        if self.poll_until.is_some_and(|t| Instant::now() < t) {
            std::thread::sleep(within);
            return None;
        }
        let Some(m) = &mut self.monitor else {
            if let Some(t) = self.started {
                std::thread::sleep(EVERY.saturating_sub(t.elapsed()));
            }
            self.started = Some(Instant::now());
            match Monitor::start("corosync-quorumtool", &["-m", "-i"]) {
                Ok(m) => self.monitor = Some(m),
                Err(why) => self.poll_for_now(&why),
            }
            // Asked at once: a change before the monitor tracks is missed
            // by it.
            return None;
        };
        match m.next(within) {
            Ok(Some(quorate)) => Some(Ok(quorate)),
            Ok(None) => None,
            Err(why) => {
                self.monitor = None;
                let short = self.started.is_some_and(|t| t.elapsed() < SHORT_LIVED);
                self.short_lived = if short { self.short_lived + 1 } else { 0 };
                if self.short_lived >= GIVE_UP_AFTER {
                    self.short_lived = 0;
                    self.poll_for_now(&format!(
                        "{why}, {GIVE_UP_AFTER} times in a row within {SHORT_LIVED:?} of its start"
                    ));
                }
                Some(Err(why))
            }
        }
    }

    fn recheck(&self) -> Duration {
        if self.monitor.is_some() {
            RECHECK
        } else {
            EVERY
        }
    }
}

/// A program (`corosync-quorumtool -m -i`) with its stdout on a
/// pseudo-terminal, so that its stdio is line-buffered. Killed when
/// dropped, and by the kernel if the daemon dies first
/// (`PR_SET_PDEATHSIG`).
struct Monitor {
    child: std::process::Child,
    pty: OwnedFd,
    /// What was read and not yet a whole line.
    partial: Vec<u8>,
}

impl Monitor {
    fn start(prog: &str, args: &[&str]) -> Result<Monitor, String> {
        use std::os::unix::process::CommandExt;
        let pty = nix::pty::openpty(None, None).map_err(|e| format!("no pseudo-terminal: {e}"))?;
        for fd in [&pty.master, &pty.slave] {
            // Hooks and the keeper never inherit either end.
            fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
                .map_err(|e| format!("cannot set FD_CLOEXEC on a pseudo-terminal: {e}"))?;
        }
        let mut cmd = std::process::Command::new(prog);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(pty.slave))
            .stderr(Stdio::null());
        // SAFETY: only an async-signal-safe call between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| format!("cannot run {prog}: {e}"))?;
        // `cmd` held the slave; dropped, the child's copy is the only one
        // left, so its exit reads as EIO here.
        drop(cmd);
        Ok(Monitor {
            child,
            pty: pty.master,
            partial: Vec::new(),
        })
    }

    /// The next `Quorate:` line within `within`: Ok(None) if none came,
    /// Err once the monitor ended.
    fn next(&mut self, within: Duration) -> Result<Option<bool>, String> {
        let end = Instant::now() + within;
        loop {
            while let Some(nl) = self.partial.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.partial.drain(..=nl).collect();
                if let Some(q) = crate::lock::fsdlm::quorate_line(&String::from_utf8_lossy(&line)) {
                    return Ok(Some(q));
                }
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let mut fds = [PollFd::new(self.pty.as_fd(), PollFlags::POLLIN)];
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) | Err(Errno::EINTR) => continue,
                Ok(_) => {}
                Err(e) => return Err(format!("cannot poll the quorum monitor: {e}")),
            }
            let mut buf = [0u8; 1024];
            match nix::unistd::read(&self.pty, &mut buf) {
                Ok(n) if n > 0 => self.partial.extend_from_slice(&buf[..n]),
                Err(Errno::EINTR) | Err(Errno::EAGAIN) => {}
                // EOF, or EIO once the child's end is closed: it ended.
                _ => return Err(self.ended()),
            }
        }
    }

    fn ended(&mut self) -> String {
        let _ = self.child.kill();
        match self.child.wait() {
            Ok(s) => format!("the quorum monitor (corosync-quorumtool -m) ended ({s})"),
            Err(e) => format!("the quorum monitor ended (cannot wait for it: {e})"),
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

    /// Answers asked from `asked`, news from a channel.
    struct Fake {
        asked: std::sync::Arc<std::sync::Mutex<Result<bool, String>>>,
        news: std::sync::mpsc::Receiver<Result<bool, String>>,
    }

    impl Source for Fake {
        fn ask(&mut self) -> Result<bool, String> {
            self.asked.lock().unwrap().clone()
        }
        fn next(&mut self, within: Duration) -> Option<Result<bool, String>> {
            self.news.recv_timeout(within).ok()
        }
        fn recheck(&self) -> Duration {
            Duration::from_millis(20)
        }
    }

    fn changed(rx: &mut Doubt) -> Option<String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), rx.changed())
                .await
                .expect("the watch did not change within 5 s")
                .unwrap();
        });
        rx.borrow_and_update().clone()
    }

    #[test]
    fn the_watch_follows_news_and_asks_again_when_none_comes() {
        use std::sync::{Arc, Mutex};
        let asked = Arc::new(Mutex::new(Ok(true)));
        let (tell, news) = std::sync::mpsc::channel();
        let mut rx = watch(Fake {
            asked: asked.clone(),
            news,
        });
        assert_eq!(*rx.borrow_and_update(), None, "quorate at start");
        tell.send(Ok(false)).unwrap();
        assert!(changed(&mut rx).unwrap().contains("not quorate"));
        tell.send(Ok(true)).unwrap();
        assert_eq!(changed(&mut rx), None);
        // No news: the recheck's ask finds it.
        *asked.lock().unwrap() = Ok(false);
        assert!(changed(&mut rx).unwrap().contains("not quorate"));
    }

    #[test]
    fn the_monitor_reads_each_line_as_printed_through_stdio_buffering() {
        // python3's print() block-buffers into a pipe and line-buffers
        // into a terminal, as corosync-quorumtool's printf does.
        let script = "import time\nprint('Quorum information')\nprint('Quorate:          No')\ntime.sleep(0.3)\nprint('Quorate:          Yes')\ntime.sleep(30)";
        let mut m = Monitor::start("python3", &["-c", script]).unwrap();
        let t = Instant::now();
        assert_eq!(m.next(Duration::from_secs(10)), Ok(Some(false)));
        assert_eq!(m.next(Duration::from_secs(10)), Ok(Some(true)));
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "lines came as printed"
        );
        assert_eq!(m.next(Duration::from_millis(50)), Ok(None), "no news");
    }

    #[test]
    fn the_monitor_says_when_it_ended() {
        let mut m = Monitor::start("sh", &["-c", "echo 'Quorate: Yes'; exit 3"]).unwrap();
        assert_eq!(m.next(Duration::from_secs(10)), Ok(Some(true)));
        let e = m.next(Duration::from_secs(10)).unwrap_err();
        assert!(e.contains("ended") && e.contains('3'), "{e}");
    }
}
