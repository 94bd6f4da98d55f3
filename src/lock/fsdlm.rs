//! `dlm` backend: the kernel's generic DLM (fs/dlm, corosync and
//! dlm_controld) through the device binding in `lock::dlm`. See docs/dlm.md.
//!
//! What shapes this file:
//! - one open of the lockspace device per lock attempt: locks belong to the
//!   open file (the kernel's `dlm_user_proc`), and its results are read
//!   from it, so an fd per lock means nobody else's result ever comes back
//!   to us and a close touches one lock only;
//! - an election lock is taken **PERSISTENT**: when its holder dies without
//!   unlocking (SIGKILL, a crash) the kernel keeps it granted as an orphan,
//!   so no other node takes over while what the dead daemon applied (a VIP)
//!   may still be up. `cleanup` adopts the orphan and unlocks it after the
//!   release steps, and a restarted daemon adopts it and resumes as master,
//!   as a dlmfs lock cached on its node would be;
//! - candidate locks (`prefer`) are not persistent: they go with the
//!   process, as they must;
//! - every write can sleep while the lockspace recovers from a node's death
//!   (until that node is fenced): callers run these on the blocking pool
//!   under a deadline, and results are awaited under one too.

use super::dlm::{Ask, Control, DlmError, Event, Flags, Lockspace, Mode, Paths, Status};
use super::{HeldLock, LockBackend, LockError, Standby, TryLock, WaitStop};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// In the runtime dir while a daemon (or `cleanup`) has joined its
/// lockspace: found by the next one, it says that a create was left by a
/// process that died joined, which only a remove gives back.
pub const MARKER: &str = "dlm-lockspace-joined";

/// How long a result is awaited after its write returned. The write
/// itself is where recovery makes a call sleep; a result comes at once
/// after it on a healthy cluster (2-68 ms measured across two VMs).
const ANSWER: Duration = Duration::from_secs(30);

pub struct FsDlmBackend {
    lockspace: String,
    paths: Paths,
    /// Our create of the lockspace, kept for the life of the backend (the
    /// per-lock opens need no create of their own). Joined at the first
    /// lock call: the cluster may come up after the daemon.
    joined: Mutex<Option<Lockspace>>,
    /// See [`MARKER`]; None: not kept (tests, tools).
    marker: Option<PathBuf>,
    /// `Wait`: a standby queues its request in the DLM and is granted the
    /// lock the instant the master unlocks (`wait_lock`).
    standby: Standby,
}

impl FsDlmBackend {
    pub fn new(lockspace: &str, standby: Standby) -> FsDlmBackend {
        FsDlmBackend {
            lockspace: lockspace.to_string(),
            paths: Paths::default(),
            joined: Mutex::new(None),
            marker: None,
            standby,
        }
    }

    /// Keeps [`MARKER`] at `path` while joined, and gives back the create
    /// a killed predecessor left (the kernel counts creates, not
    /// processes: each one not removed keeps the lockspace, and
    /// dlm.service from stopping, until reboot).
    pub fn with_marker(mut self, path: PathBuf) -> FsDlmBackend {
        self.marker = Some(path);
        self
    }

    /// Just joined: the marker's bookkeeping (see [`Self::with_marker`]).
    /// The marker is removed before a create is given back, never after,
    /// so a crash between leaks a create rather than takes another's.
    fn joined_now(&self, ls: &Lockspace) {
        let Some(marker) = &self.marker else { return };
        if marker.exists() {
            match Control::open(&self.paths).and_then(|c| c.remove_lockspace(ls.minor(), false)) {
                Ok(()) => tracing::info!(
                    "gave back the create of lockspace {} that a killed dlm-electd left",
                    self.lockspace
                ),
                Err(e) => tracing::warn!(
                    "cannot give back the create of lockspace {} a killed dlm-electd left: {e}",
                    self.lockspace
                ),
            }
        }
        if let Err(e) = std::fs::write(marker, format!("{}\n", self.lockspace)) {
            tracing::warn!("cannot write {}: {e}", marker.display());
        }
    }

    /// A fresh open of the lockspace's device (joining it first if needed).
    fn open(&self) -> Result<Lockspace, LockError> {
        let mut joined = self.joined.lock().unwrap_or_else(|p| p.into_inner());
        if joined.is_none() {
            let ls = Lockspace::join(&self.lockspace, &self.paths).map_err(not_ready)?;
            self.joined_now(&ls);
            *joined = Some(ls);
        }
        let ls = joined.as_ref().expect("joined above");
        ls.open_again(&self.paths).map_err(failed)
    }

    /// One NOQUEUE request of `mode` on `lock` through a fresh open:
    /// Some(held) if granted, None if busy.
    fn request(&self, lock: &str, mode: Mode, flags: Flags) -> Result<Option<DlmLock>, LockError> {
        let ls = self.open()?;
        let ask = ask(mode, Flags::NOQUEUE | flags);
        let lkid = ls.request(&ask, lock.as_bytes()).map_err(failed)?;
        match answer(&ls, lkid, lock)? {
            Status::Granted => Ok(Some(DlmLock {
                ls: Some(ls),
                lkid,
                lock: lock.to_string(),
            })),
            Status::Busy => Ok(None),
            other => Err(LockError::Failed(format!(
                "lock request on {}/{lock} ended {other:?}",
                self.lockspace
            ))),
        }
    }

    /// Takes over an orphan of `lock` (EX, PERSISTENT) left on this node by
    /// a holder that died: Some(held) if there was one.
    fn adopt(&self, lock: &str) -> Result<Option<DlmLock>, LockError> {
        let ls = self.open()?;
        let ask = ask(Mode::Ex, Flags::PERSISTENT);
        match ls.adopt(&ask, lock.as_bytes()) {
            Ok(Some(lkid)) => Ok(Some(DlmLock {
                ls: Some(ls),
                lkid,
                lock: lock.to_string(),
            })),
            Ok(None) => Ok(None),
            // Orphans of this name, none granted EX: a killed standby's
            // queued PERSISTENT request, which the kernel cancels and keeps
            // on its orphan list ungranted (mode IV) until a purge or the
            // lockspace's end (`orphan_proc_lock`; `dlm_user_adopt_orphan`
            // answers EAGAIN for another mode). It holds nothing and blocks
            // nobody, so there is nothing of ours to adopt. Seen on the
            // corosync VMs: every restart's adopt failed with EAGAIN.
            Err(DlmError::Sys {
                errno: nix::errno::Errno::EAGAIN,
                ..
            }) => Ok(None),
            Err(e) => Err(failed(e)),
        }
    }
}

impl LockBackend for FsDlmBackend {
    fn try_lock(&self, lock: &str) -> Result<TryLock, LockError> {
        // Ours already if an earlier daemon here died holding it.
        if let Some(held) = self.adopt(lock)? {
            tracing::info!(
                "adopted lock {lock}: a daemon on this node died holding it, so it stayed ours"
            );
            return Ok(TryLock::Acquired(Box::new(held)));
        }
        Ok(match self.request(lock, Mode::Ex, Flags::PERSISTENT)? {
            Some(held) => TryLock::Acquired(Box::new(held)),
            None => TryLock::Busy,
        })
    }

    fn clear_stale(&self, lock: &str) -> Result<(), LockError> {
        match self.adopt(lock)? {
            Some(orphan) => Box::new(orphan).release(),
            None => Ok(()),
        }
    }

    fn take_candidate(&self, lock: &str) -> Result<Option<Box<dyn HeldLock>>, LockError> {
        // No PERSISTENT: a candidate lock goes with its process.
        Ok(self
            .request(lock, Mode::Ex, Flags::NONE)?
            .map(|h| Box::new(h) as Box<dyn HeldLock>))
    }

    fn leave(&self, all_released: bool) {
        let joined = self.joined.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(ls) = joined else { return };
        if !all_released {
            // An orphan of ours may stay: our create stays with it, and the
            // marker that tells `cleanup` and the next start to adopt it and
            // give the create back. A plain remove would only count down
            // while another create is held (a workload lock's, another
            // instance's), leaving the orphan with no marker to find it by,
            // and letting the last other user's forced leave free it.
            tracing::warn!(
                "lockspace {}: not left, a lock of ours may be held in it (for `cleanup`)",
                self.lockspace
            );
            if let Some(marker) = &self.marker {
                let _ = std::fs::write(marker, format!("{}\n", self.lockspace));
            }
            return;
        }
        if let Some(marker) = &self.marker {
            let _ = std::fs::remove_file(marker);
        }
        // From user space a remove is plain or FORCEFREE (fs/dlm/user.c). A
        // plain one is refused (EBUSY) while the lockspace holds any lock
        // on this node, another node's too: the copy kept here of a lock
        // whose resource this node masters, such as the one the standby
        // was just granted (seen on the lab: the lockspace stayed after a
        // master's stop). So: plain first, forced when refused (nothing of
        // ours is left), as lvmlockd and gfs2 leave. The other nodes' locks
        // are rebuilt on a new master by their recovery.
        let left = ls.leave_else_force(&self.paths, true);
        if let Ok(true) = left {
            tracing::info!(
                "lockspace {}: left with FORCEFREE (none of our locks was left in it; other nodes' locks that this node mastered are rebuilt by their recovery)",
                self.lockspace
            );
        }
        if let Err(e) = left {
            // EBUSY: we were its last user and a lock is still held here
            // (an orphan for `cleanup`); the lockspace and our create stay,
            // so the marker does too.
            tracing::warn!("cannot leave lockspace {}: {e}", self.lockspace);
            if let Some(marker) = &self.marker {
                let _ = std::fs::write(marker, format!("{}\n", self.lockspace));
            }
        }
    }

    fn can_wait(&self) -> bool {
        self.standby == Standby::Wait
    }

    /// A queued EX request (PERSISTENT, like `try_lock`'s), granted when
    /// the holder unlocks, or when its node has died and been fenced.
    /// `stop` interrupts the poll (its signal: EINTR); the request is then
    /// cancelled, and a grant that beat the cancel is unlocked unused. A
    /// waiter killed meanwhile leaves nothing: the kernel cancels a queued
    /// request of a closed file (`orphan_proc_lock`).
    fn wait_lock(
        &self,
        lock: &str,
        stop: &WaitStop,
    ) -> Result<Option<Box<dyn HeldLock>>, LockError> {
        if let Some(held) = self.adopt(lock)? {
            return Ok(Some(Box::new(held)));
        }
        let ls = self.open()?;
        let ask = ask(Mode::Ex, Flags::PERSISTENT);
        let lkid = ls.request(&ask, lock.as_bytes()).map_err(failed)?;
        let held = |ls| DlmLock {
            ls: Some(ls),
            lkid,
            lock: lock.to_string(),
        };
        loop {
            if stop.is_stopped() {
                ls.cancel(lkid).map_err(failed)?;
                return match answer(&ls, lkid, lock)? {
                    // Granted before the cancel: nobody wants it now.
                    Status::Granted => Box::new(held(ls)).release().map(|()| None),
                    _ => Ok(None),
                };
            }
            match ls.read_event().map_err(failed)? {
                Some(Event::Completion {
                    lkid: l, status, ..
                }) if l == lkid => {
                    return match status {
                        Status::Granted => Ok(Some(Box::new(held(ls)))),
                        other => Err(LockError::Failed(format!(
                            "queued lock request on {}/{lock} ended {other:?}",
                            self.lockspace
                        ))),
                    };
                }
                Some(_) => continue,
                // Until a result, or `stop`'s signal (EINTR: false).
                None => {
                    ls.wait_readable(None).map_err(failed)?;
                }
            }
        }
    }

    /// Through an open of its own (so its locks go with it, and never
    /// to a keeper).
    fn value_locks(&self) -> Result<Option<Box<dyn super::ValueLocks>>, LockError> {
        let ls = self.open()?;
        Ok(Some(Box::new(super::lvb::FsDlmValues::new(
            ls,
            ANSWER,
            corosync_nodes,
        ))))
    }

    fn candidate_held(&self, lock: &str) -> Result<bool, LockError> {
        // A PR probe, unlocked at once: unlike dlmfs nothing stays cached.
        match self.request(lock, Mode::Pr, Flags::NONE)? {
            Some(probe) => Box::new(probe).release().map(|()| false),
            None => Ok(true),
        }
    }
}

/// A granted lock and the open file it belongs to.
struct DlmLock {
    /// None once released.
    ls: Option<Lockspace>,
    lkid: u32,
    lock: String,
}

impl HeldLock for DlmLock {
    fn release(mut self: Box<Self>) -> Result<(), LockError> {
        let Some(ls) = self.ls.take() else {
            return Ok(());
        };
        ls.unlock(self.lkid, Flags::NONE, None).map_err(failed)?;
        match answer(&ls, self.lkid, &self.lock)? {
            Status::Unlocked => Ok(()),
            other => Err(LockError::Failed(format!(
                "unlock of {} ended {other:?}",
                self.lock
            ))),
        }
    }
}

impl Drop for DlmLock {
    /// Dropped unreleased by a live daemon (an error path): unlocked, not
    /// left as an orphan that only `cleanup` would free. Not waited for.
    fn drop(&mut self) {
        if let Some(ls) = self.ls.take()
            && let Err(e) = ls.unlock(self.lkid, Flags::NONE, None)
        {
            tracing::warn!("cannot unlock {} on drop: {e}", self.lock);
        }
    }
}

/// A request of ours: no tag (one lock per open, so results need none),
/// no blocking ASTs.
fn ask(mode: Mode, flags: Flags) -> Ask {
    Ask::plain(mode, flags)
}

/// The completion of `lkid`, waiting at most [`ANSWER`].
fn answer(ls: &Lockspace, lkid: u32, lock: &str) -> Result<Status, LockError> {
    ls.completion(lkid, ANSWER).map_err(failed)?.ok_or_else(|| {
        LockError::Failed(format!(
            "no answer from the DLM about {lock} within {ANSWER:?}"
        ))
    })
}

fn failed(e: DlmError) -> LockError {
    LockError::Failed(e.to_string())
}

/// Joining fails this way while the cluster is coming up: retried later
/// (the election), or said as "not ready" (workload locks).
pub(crate) fn not_ready(e: DlmError) -> LockError {
    match e {
        DlmError::NotLoaded(_) | DlmError::NoDaemon(_) => LockError::NotReady(e.to_string()),
        e => LockError::Failed(e.to_string()),
    }
}

/// What `check-config` says of the lockspace, read from /proc/misc
/// without joining it (a join is a membership change on every node).
pub fn lockspace_state(name: &str) -> String {
    use super::dlm::device::{CONTROL_NAME, DEVICE_PREFIX, misc_minor};
    let misc = std::fs::read_to_string(Paths::default().proc_misc).unwrap_or_default();
    if misc_minor(&misc, CONTROL_NAME).is_none() {
        return format!(
            "{name}: the kernel's DLM is not loaded here (no {CONTROL_NAME} in /proc/misc): start dlm.service"
        );
    }
    match misc_minor(&misc, &format!("{DEVICE_PREFIX}{name}")) {
        Some(_) => format!("{name} is joined on this node"),
        None => format!(
            "{name} is not joined on this node; the kernel's DLM is loaded, and `run` joins it at its first lock call"
        ),
    }
}

/// Whether dlm_controld fences failed nodes before the DLM recovers their
/// locks, from `dlm_tool dump_config` (its running settings, command line
/// and dlm.conf together). Without fencing a partition gives two holders
/// (measured: docs/dlm.md), so the daemon refuses to run unless told.
pub fn fencing() -> Result<bool, String> {
    let out = bounded_output("dlm_tool", &["dump_config"], Duration::from_secs(5))?;
    fencing_in(&out).ok_or_else(|| {
        "`dlm_tool dump_config` printed no enable_fencing setting (is dlm_controld running?)".into()
    })
}

/// What the dlm backend makes of dlm_controld's fencing and
/// `lock.allow_unfenced`: one verdict for the daemon's start (which runs or
/// refuses by it) and `check-config` (which says what `run` would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fencing {
    /// dlm_controld fences failed nodes.
    On,
    /// It does not, and `allow_unfenced` lets the daemon run anyway.
    OffAllowed,
    /// It cannot be told (why), and `allow_unfenced` lets the daemon run.
    UnknownAllowed(String),
    /// It does not: the daemon refuses to start (exit 78).
    Off,
    /// It cannot be told (why): the daemon fails to start.
    Unknown(String),
}

impl Fencing {
    /// `seen`: what [`fencing`] read.
    pub fn judge(seen: Result<bool, String>, allow_unfenced: bool) -> Fencing {
        match (seen, allow_unfenced) {
            (Ok(true), _) => Fencing::On,
            (Ok(false), true) => Fencing::OffAllowed,
            (Ok(false), false) => Fencing::Off,
            (Err(why), true) => Fencing::UnknownAllowed(why),
            (Err(why), false) => Fencing::Unknown(why),
        }
    }

    /// Whether the daemon runs.
    pub fn runs(&self) -> bool {
        matches!(
            self,
            Fencing::On | Fencing::OffAllowed | Fencing::UnknownAllowed(_)
        )
    }

    /// One line for the journal and `check-config`.
    pub fn describe(&self) -> String {
        match self {
            Fencing::On => "dlm_controld fences failed nodes".into(),
            Fencing::OffAllowed => "OFF (enable_fencing=0), allowed by lock.allow_unfenced: a network partition can give two masters".into(),
            Fencing::UnknownAllowed(why) => {
                format!("cannot tell ({why}); lock.allow_unfenced is set, so it runs anyway")
            }
            Fencing::Off => "dlm_controld runs with enable_fencing=0: `run` refuses the dlm backend without fencing (or `lock.allow_unfenced = true`)".into(),
            Fencing::Unknown(why) => format!(
                "cannot tell ({why}): `run` fails until dlm_controld answers, or with lock.allow_unfenced = true"
            ),
        }
    }
}

/// `enable_fencing=N` of a dump_config listing; dlm 4.2 adds where the
/// value came from: `enable_fencing=0 (dlm.conf)`.
fn fencing_in(dump: &str) -> Option<bool> {
    dump.lines()
        .filter_map(|l| l.trim().strip_prefix("enable_fencing="))
        .filter_map(|v| v.split_whitespace().next())
        .map(|v| v != "0")
        .next()
}

/// Whether this node's corosync partition is quorate, from the
/// `Quorate: Yes|No` line of `corosync-quorumtool -s` (every version
/// prints it; its exit code meant the opposite before corosync 3.0.2, so
/// it is not used). `-i`: node addresses, not names, so no name lookup
/// runs inside the bound. Bounded: a corosync that does not answer is an
/// error, not a wait.
pub fn quorate() -> Result<bool, String> {
    let prog = "corosync-quorumtool";
    let (status, out, err) = bounded_run(prog, &["-s", "-i"], Duration::from_secs(5))?;
    quorate_in(&out).ok_or_else(|| {
        format!(
            "{prog} -s printed no Quorate: line ({status}): {}",
            err.trim()
        )
    })
}

/// The `name` of each node in corosync's nodelist, as `corosync-cmapctl
/// -b nodelist.node` prints them (`nodelist.node.0.name (str) = node1`),
/// bounded; none if it cannot be run.
fn corosync_nodes() -> Vec<String> {
    let out = bounded_output(
        "corosync-cmapctl",
        &["-b", "nodelist.node"],
        Duration::from_secs(5),
    )
    .unwrap_or_default();
    nodelist_names(&out)
}

fn nodelist_names(out: &str) -> Vec<String> {
    let mut names: Vec<String> = out
        .lines()
        .filter_map(|l| {
            let (key, value) = l.split_once(" = ")?;
            let (_, field) = key.strip_prefix("nodelist.node.")?.split_once('.')?;
            field.starts_with("name ").then(|| value.trim().to_string())
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The `Quorate:` line of `corosync-quorumtool -s`.
fn quorate_in(out: &str) -> Option<bool> {
    out.lines().find_map(quorate_line)
}

/// The answer in a `Quorate: Yes|No` line, as `corosync-quorumtool -s` and
/// `-m` print it (on a terminal, ending in CR LF).
pub fn quorate_line(line: &str) -> Option<bool> {
    line.trim()
        .strip_prefix("Quorate:")
        .map(|v| v.trim() == "Yes")
}

/// A command's stdout, killed if it runs past `limit`; an error unless it
/// exits 0.
fn bounded_output(prog: &str, args: &[&str], limit: Duration) -> Result<String, String> {
    let (status, out, err) = bounded_run(prog, args, limit)?;
    if !status.success() {
        return Err(format!(
            "{prog} {} failed ({status}): {}",
            args.join(" "),
            err.trim()
        ));
    }
    Ok(out)
}

/// A command's exit status, stdout and stderr, killed if it runs past
/// `limit`. For commands that print little (a pipe's worth).
fn bounded_run(
    prog: &str,
    args: &[&str],
    limit: Duration,
) -> Result<(std::process::ExitStatus, String, String), String> {
    use std::io::Read;
    let mut child = std::process::Command::new(prog)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {prog}: {e}"))?;
    let end = std::time::Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if std::time::Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{prog} {} did not finish within {limit:?}",
                    args.join(" ")
                ));
            }
            Err(e) => return Err(format!("cannot wait for {prog}: {e}")),
        }
    };
    let (mut out, mut err) = (String::new(), String::new());
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    Ok((status, out, err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_read_from_corosyncs_nodelist() {
        let out = "nodelist.node.0.name (str) = node1\nnodelist.node.0.nodeid (u32) = 1\n\
                   nodelist.node.0.ring0_addr (str) = 198.18.88.11\n\
                   nodelist.node.1.name (str) = node2\nnodelist.node.10.name (str) = b\n";
        assert_eq!(nodelist_names(out), ["b", "node1", "node2"]);
        assert!(nodelist_names("").is_empty());
    }

    #[test]
    fn quorum_is_read_from_the_quorate_line() {
        let out = "Quorum information\n------------------\nDate:             Mon Dec  7 03:00:00 2026\nQuorum provider:  corosync_votequorum\nNodes:            2\nNode ID:          1\nRing ID:          1.13\nQuorate:          Yes\n\nVotequorum information\n";
        assert_eq!(quorate_in(out), Some(true));
        assert_eq!(quorate_in(&out.replace("Yes", "No")), Some(false));
        assert_eq!(quorate_in("Cannot initialize QUORUM service\n"), None);
        assert_eq!(
            quorate_line("Quorate:          Yes\r\n"),
            Some(true),
            "as -m prints it on a terminal"
        );
    }

    #[test]
    fn the_fencing_verdict_runs_only_with_fencing_or_the_admins_word() {
        let no = || Err::<bool, String>("no dlm_controld".into());
        assert!(Fencing::judge(Ok(true), false).runs());
        assert!(Fencing::judge(Ok(false), true).runs());
        assert!(Fencing::judge(no(), true).runs());
        assert_eq!(Fencing::judge(Ok(false), false), Fencing::Off);
        assert!(!Fencing::judge(no(), false).runs());
        assert!(Fencing::Off.describe().contains("allow_unfenced"));
        assert!(
            Fencing::judge(no(), false)
                .describe()
                .contains("no dlm_controld")
        );
    }

    #[test]
    fn fencing_is_read_from_dump_config() {
        let dump = "daemon_debug=0\nforeground=0\nenable_fencing=1\nenable_quorum_fencing=1\n";
        assert_eq!(fencing_in(dump), Some(true));
        assert_eq!(fencing_in("enable_fencing=0\n"), Some(false));
        // dlm 4.2's dump_config, measured on the lab's Debian 12 VMs.
        let lab = "enable_fencing=0 (dlm.conf)\nenable_quorum_fencing=1\n";
        assert_eq!(fencing_in(lab), Some(false));
        assert_eq!(fencing_in("enable_fencing=1 (default)\n"), Some(true));
        assert_eq!(fencing_in("log_debug=0\n"), None);
        assert_eq!(fencing_in(""), None);
    }

    #[test]
    fn a_command_is_bounded() {
        let e = bounded_output("sleep", &["5"], Duration::from_millis(100)).unwrap_err();
        assert!(e.contains("did not finish"), "{e}");
        assert_eq!(
            bounded_output("echo", &["hi"], Duration::from_secs(5)).unwrap(),
            "hi\n"
        );
        assert!(bounded_output("/nonexistent/x", &[], Duration::from_secs(1)).is_err());
    }
}
