//! Workload locks on the `dlm` backend (fs/dlm). The cluster lock `@NAME`
//! is one EX lock in the configured lockspace, taken through an open of the
//! lockspace device of its own and **not** PERSISTENT: it lives while any
//! copy of that fd is open (the program's, a `lock` holder's) and the
//! kernel unlocks it when the last one closes. So a killed `run-locked`
//! cannot free it while its program runs, and the program's end frees it
//! for a waiter on another node at once.
//!
//! The open needs the lockspace joined on this node, and joins are counted
//! creates that belong to no process (docs/dlm.md): each taker makes its
//! own and owes it back. It records the debt in
//! `RUNTIME_DIR/workload/NAME.dlm-joined` (the lockspace's name) *after*
//! the create, so a kill between leaks a create rather than later gives
//! back someone else's, and gives it back once the lock is closed,
//! removing the record first. A record a killed taker left is given back
//! by whoever next holds NAME's local lock: the next taker of NAME,
//! `unlock NAME`, `cleanup`.
//!
//! A give-back that is the lockspace's last create and is refused because
//! locks are still in it on this node (other nodes' locks this node
//! masters) forces the leave. No election lock can be among them: a daemon
//! that leaves an orphan keeps its create with it (`lock::fsdlm`), and every
//! other local holder of a lock holds a create of its own.
//!
//! `--wait` queues the request in the DLM, so it is granted the instant the
//! holder's fd closes; the wait's end cancels it. The writes can sleep
//! while the DLM recovers a dead node: each runs under `op_timeout`.

use super::error::WorkloadError;
use super::local::{bounded, try_local};
use super::names::{JOINED_EXT, LOCAL_DIR, cluster_name, joined_path};
use crate::config::LockConfig;
use crate::lock::LockError;
use crate::lock::dlm::{Ask, Control, DlmError, Flags, Lockspace, Mode, Paths, Status};
use crate::lock::fsdlm::{Fencing, fencing, not_ready};
use nix::errno::Errno;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The create a held lock owes back (see the module doc).
pub(super) struct Owed {
    pub(super) runtime_dir: PathBuf,
    name: String,
}

/// What a give-back did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Back {
    /// Given back (or gone with the lockspace).
    Given,
    /// Refused: ours is the last create and locks are still in the
    /// lockspace on this node; still owed, the record kept.
    Busy,
}

impl Owed {
    /// Gives the create back; call once our copy of the lock's fd is
    /// closed. `force`: only where no copy of it can be open anywhere (the
    /// caller holds the name's local lock that the fd's holders share): a
    /// forced leave waits, unkillable, until every fd of the lockspace's
    /// device is closed.
    pub(super) fn give_back(
        &self,
        op_timeout: Duration,
        force: bool,
    ) -> Result<Back, WorkloadError> {
        let (dir, name) = (self.runtime_dir.clone(), self.name.clone());
        bounded(op_timeout, "leaving the lockspace", move || {
            Ok(give_back(&dir, &name, force)?.unwrap_or(Back::Given))
        })
    }
}

/// Refuses workload locks where dlm_controld does not fence, as `run`
/// refuses the daemon: a partition would give two holders (docs/dlm.md).
/// Judged once per command: a `--wait` tries again and again, and neither
/// `dlm_tool dump_config` nor its warning is worth repeating each time.
fn check_fencing(lock: &LockConfig) -> Result<(), WorkloadError> {
    static PASSED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    if PASSED.get().is_some() {
        return Ok(());
    }
    match Fencing::judge(fencing(), lock.allow_unfenced) {
        Fencing::On => {
            let _ = PASSED.set(());
            Ok(())
        }
        f @ (Fencing::OffAllowed | Fencing::UnknownAllowed(_)) => {
            eprintln!("dlm-electd: warning: fencing {}", f.describe());
            let _ = PASSED.set(());
            Ok(())
        }
        Fencing::Off => Err(WorkloadError::Stack(
            "refused: dlm_controld runs with enable_fencing=0, and without fencing a network partition gives two holders (set lock.allow_unfenced = true to run anyway)".into(),
        )),
        Fencing::Unknown(why) => Err(WorkloadError::Stack(format!(
            "refused: cannot tell whether dlm_controld fences failed nodes ({why}); lock.allow_unfenced = true runs anyway"
        ))),
    }
}

/// Joins the lockspace and records the create (settling one a killed
/// taker of `name` left: ours stands for it from now on).
fn join(lock: &LockConfig, runtime_dir: &Path, name: &str) -> Result<Lockspace, WorkloadError> {
    let ls = Lockspace::join(&lock.lockspace, &Paths::default())
        .map_err(|e| WorkloadError::Lock(not_ready(e)))?;
    let record = joined_path(runtime_dir, name);
    if record.exists() {
        // Two creates owed for one name now: one goes back at once (ours
        // keeps the lockspace, so this only counts down).
        give_back(runtime_dir, name, false)?;
    }
    if let Err(e) = std::fs::create_dir_all(runtime_dir.join(LOCAL_DIR))
        .and_then(|()| std::fs::write(&record, format!("{}\n", lock.lockspace)))
    {
        // Give ours back rather than leave it unrecorded.
        let minor = ls.minor();
        drop(ls);
        let _ = Control::open(&Paths::default()).and_then(|c| c.remove_lockspace(minor, false));
        return Err(WorkloadError::Local(format!(
            "cannot write {}: {e}",
            record.display()
        )));
    }
    Ok(ls)
}

/// Takes `name`'s cluster lock: one NOQUEUE attempt (`wait` None), or a
/// request queued in the DLM for up to `wait`. The lock's fd and the
/// create it owes, or None if busy (nothing left owed then). The caller
/// holds `name`'s local lock.
pub(super) fn take(
    lock: &LockConfig,
    runtime_dir: &Path,
    name: &str,
    wait: Option<Duration>,
    op_timeout: Duration,
) -> Result<Option<(File, Owed)>, WorkloadError> {
    check_fencing(lock)?;
    let (l, dir, n) = (lock.clone(), runtime_dir.to_path_buf(), name.to_string());
    let ls = bounded(op_timeout, "joining the lockspace", move || {
        join(&l, &dir, &n)
    })?;
    let owed = Owed {
        runtime_dir: runtime_dir.to_path_buf(),
        name: name.to_string(),
    };
    let ask = Ask {
        mode: Mode::Ex,
        flags: if wait.is_some() {
            Flags::NONE
        } else {
            Flags::NOQUEUE
        },
        tag: 0,
        bast: false,
    };
    let resource = cluster_name(name);
    let asked = bounded(op_timeout, "the lock request", move || {
        let lkid = ls.request(&ask, resource.as_bytes()).map_err(failed)?;
        Ok((ls, lkid))
    });
    let (ls, lkid) = match asked {
        Ok(x) => x,
        Err(e) => {
            // Not forced: the request's thread may still hold the fd.
            let _ = owed.give_back(op_timeout, false);
            return Err(e);
        }
    };
    let got = outcome(&ls, lkid, wait, op_timeout, || {
        eprintln!(
            "dlm-electd: {name}: held elsewhere; waiting in the DLM's queue for up to {}",
            humantime::format_duration(wait.unwrap_or_default())
        )
    });
    match got {
        Ok(true) => Ok(Some((File::from(ls.into_fd()), owed))),
        // Our only fd of it, never handed out: closed, nothing of ours is
        // left, so a forced leave waits for nobody.
        Ok(false) => {
            drop(ls);
            owed.give_back(op_timeout, true)?;
            Ok(None)
        }
        Err(e) => {
            // Closing the fd cancels or unlocks whatever is left of it.
            drop(ls);
            let _ = owed.give_back(op_timeout, true);
            Err(e)
        }
    }
}

/// A queued request not granted this soon is said to wait (once).
const SAY_QUEUED: Duration = Duration::from_millis(300);

/// Whether request `lkid` is granted: a NOQUEUE one (`wait` None) answers
/// within `op_timeout`; a queued one that is not granted within `wait` is
/// cancelled (a grant that beat the cancel is unlocked unused).
fn outcome(
    ls: &Lockspace,
    lkid: u32,
    wait: Option<Duration>,
    op_timeout: Duration,
    say_queued: impl FnOnce(),
) -> Result<bool, WorkloadError> {
    let within = wait.unwrap_or(op_timeout);
    let start = Instant::now();
    let mut first = ls
        .completion(lkid, within.min(SAY_QUEUED))
        .map_err(failed)?;
    if first.is_none() && within > SAY_QUEUED {
        if wait.is_some() {
            say_queued();
        }
        first = ls
            .completion(lkid, within.saturating_sub(start.elapsed()))
            .map_err(failed)?;
    }
    match first {
        Some(Status::Granted) => return Ok(true),
        Some(Status::Busy) => return Ok(false),
        Some(other) => return Err(ended(other)),
        None => {}
    }
    ls.cancel(lkid).map_err(failed)?;
    match ls.completion(lkid, op_timeout).map_err(failed)? {
        Some(Status::Cancelled) => Ok(false),
        Some(Status::Granted) => {
            ls.unlock(lkid, Flags::NONE, None).map_err(failed)?;
            Ok(false)
        }
        Some(other) => Err(ended(other)),
        None => Err(WorkloadError::Timeout {
            what: "cancelling the queued request",
            limit: op_timeout,
        }),
    }
}

/// Gives back the create `name`'s record says is owed, removing the record
/// first (written again if the give-back is refused). None: no record,
/// nothing owed. `force`: see [`Owed::give_back`].
fn give_back(runtime_dir: &Path, name: &str, force: bool) -> Result<Option<Back>, WorkloadError> {
    let record = joined_path(runtime_dir, name);
    let lockspace = match std::fs::read_to_string(&record) {
        Ok(s) => s.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(WorkloadError::Local(format!(
                "cannot read {}: {e}",
                record.display()
            )));
        }
    };
    std::fs::remove_file(&record)
        .map_err(|e| WorkloadError::Local(format!("cannot remove {}: {e}", record.display())))?;
    let paths = Paths::default();
    // Gone from this node: our create went with it (a forced leave).
    let Some(minor) = crate::lock::dlm::lockspace_minor(&paths, &lockspace).map_err(failed)? else {
        return Ok(Some(Back::Given));
    };
    let control = Control::open(&paths).map_err(failed)?;
    match control.remove_lockspace(minor, false) {
        Ok(()) => Ok(Some(Back::Given)),
        Err(DlmError::Sys {
            errno: Errno::EBUSY,
            ..
        }) if force => control
            .remove_lockspace(minor, true)
            .map(|()| Some(Back::Given))
            .map_err(failed),
        Err(DlmError::Sys {
            errno: Errno::EBUSY,
            ..
        }) => {
            std::fs::write(&record, format!("{lockspace}\n")).map_err(|e| {
                WorkloadError::Local(format!("cannot write {}: {e}", record.display()))
            })?;
            Ok(Some(Back::Busy))
        }
        Err(e) => Err(failed(e)),
    }
}

/// Gives back the create a holder of `name` that is gone left; true if one
/// was owed. The caller holds `name`'s local lock, so no copy of the lock's
/// fd is open and the leave may be forced.
pub(super) fn drop_owed(
    runtime_dir: &Path,
    name: &str,
    op_timeout: Duration,
) -> Result<bool, WorkloadError> {
    let (dir, n) = (runtime_dir.to_path_buf(), name.to_string());
    bounded(op_timeout, "leaving the lockspace", move || {
        Ok(give_back(&dir, &n, true)?.is_some())
    })
}

/// `cleanup`: gives back every create a taker that is gone left owed, each
/// under its name's local lock (a name whose local lock is held is in use,
/// left alone). Returns the names settled.
pub(super) fn drop_stale(
    runtime_dir: &Path,
    op_timeout: Duration,
) -> Result<Vec<String>, WorkloadError> {
    let dir = runtime_dir.join(LOCAL_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(source) => return Err(WorkloadError::List { dir, source }),
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            (p.extension()? == JOINED_EXT).then(|| p.file_stem()?.to_str().map(String::from))?
        })
        .collect();
    names.sort();
    let mut settled = vec![];
    for name in names {
        let Some(_local) = try_local(runtime_dir, &name)? else {
            continue;
        };
        if drop_owed(runtime_dir, &name, op_timeout)? {
            settled.push(name);
        }
    }
    Ok(settled)
}

fn failed(e: DlmError) -> WorkloadError {
    WorkloadError::Lock(LockError::Failed(e.to_string()))
}

fn ended(status: Status) -> WorkloadError {
    WorkloadError::Lock(LockError::Failed(format!(
        "the lock request ended {status:?}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(dir: &Path, name: &str, lockspace: &str) -> PathBuf {
        let p = joined_path(dir, name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("{lockspace}\n")).unwrap();
        p
    }

    #[test]
    fn a_debt_to_a_lockspace_gone_from_the_node_is_settled_without_a_call() {
        // No DLM here: /proc/misc lists no lockspace of that name, so the
        // create went with it; the record is all that is left.
        let dir = tempfile::tempdir().unwrap();
        let p = record(dir.path(), "job", "no-such-lockspace");
        let t = Duration::from_secs(5);
        assert_eq!(drop_stale(dir.path(), t).unwrap(), vec!["job".to_string()]);
        assert!(!p.exists());
        assert!(drop_stale(dir.path(), t).unwrap().is_empty());
        assert!(
            !drop_owed(dir.path(), "job", t).unwrap(),
            "nothing owed now"
        );
    }

    #[test]
    fn a_debt_whose_name_is_held_here_is_left_alone() {
        // A running program (or its killed run-locked's) holds the name's
        // local lock: its lock, and so the create, are still in use.
        let dir = tempfile::tempdir().unwrap();
        let _held = try_local(dir.path(), "job").unwrap().expect("free");
        let p = record(dir.path(), "job", "no-such-lockspace");
        assert!(
            drop_stale(dir.path(), Duration::from_secs(5))
                .unwrap()
                .is_empty()
        );
        assert!(p.exists());
    }
}
