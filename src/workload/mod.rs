//! Workload locks: a lock that guards a start decided elsewhere (a VM, a
//! job) instead of electing a node. `dlm-electd run-locked NAME -- PROGRAM`
//! is the cluster-wide flock(1).
//!
//! A workload lock NAME is two locks, always taken in this order:
//! 1. a node-local `flock` on `RUNTIME_DIR/workload/NAME.lock`: dlmfs locks
//!    are per node (a second local open of a held lock succeeds), so
//!    exclusion between processes of one node must come from here;
//! 2. the cluster lock `@NAME` in the configured backend and domain (dlmfs:
//!    `/dlm/DOMAIN/@NAME`; file: `DIR/@NAME.lock`). The `@` prefix is
//!    reserved: election lock names may not start with it (config
//!    validation), so the two never collide.
//!
//! Both fds are handed to the program (every other fd stays CLOEXEC): a
//! `run-locked` killed with SIGKILL cannot free the lock while its program
//! still runs. On `file` the OFD lock lives while any copy of the fd is
//! open; on dlmfs the node keeps the lock while a local process holds the
//! fd, and keeps it *cached* after the last close until someone unlinks the
//! file. `run-locked` unlinks after the program ended; after a kill,
//! [`drop_stale`] (`cleanup`) or `unlock NAME` unlinks the cached locks
//! that no local process holds. They take the name's local flock before the
//! unlink, so they never race a local trylock of the same lock (that race
//! hangs the kernel: docs/dlmfs.md §1.4) and never touch a lock a running
//! program holds. `run-locked` does not sweep other names at its start:
//! holding another name's flock for the sweep would make a concurrent
//! `run-locked` of that name see "busy" that is not.
//!
//! Every cluster lock call runs on a thread of its own under `op_timeout`:
//! a dlmfs open may sleep in the kernel while the DLM recovers a dead node.

pub mod held;

use crate::config::{Backend, Config, LockConfig};
use crate::exit;
use crate::lock::LockError;
use crate::lock::dlmfs::{self, DlmfsBackend};
use crate::lock::file::FileBackend;
use crate::lock::twin;
use nix::errno::Errno;
use std::ffi::OsString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub use crate::lock::WORKLOAD_PREFIX as PREFIX;
/// dlmfs lock names are at most 31 bytes, one of them the prefix.
pub const MAX_NAME: usize = 30;
/// The longest `--wait`: a start that waits longer for another node is
/// stuck, and should fail where someone sees it.
pub const MAX_WAIT: Duration = Duration::from_secs(3600);
/// Under the runtime dir: the node-local flocks.
const LOCAL_DIR: &str = "workload";

/// Why `name` cannot name a workload lock, or None. Portable on purpose
/// (a VM or unit name maps onto it; both backends and file names take it).
pub fn name_problem(name: &str) -> Option<String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+');
    if name.is_empty() || name.len() > MAX_NAME {
        Some(format!(
            "a workload lock name has 1 to {MAX_NAME} bytes, {name:?} has {}",
            name.len()
        ))
    } else if let Some(c) = name.chars().find(|c| !ok_char(*c)) {
        Some(format!(
            "{c:?} is not allowed in a workload lock name (use letters, digits, '_', '-', '.', '+')"
        ))
    } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        Some("a workload lock name starts with a letter or digit".into())
    } else {
        None
    }
}

/// The cluster lock's name in the backend.
pub(crate) fn cluster_name(name: &str) -> String {
    format!("{PREFIX}{name}")
}

pub(super) fn local_path(runtime_dir: &Path, name: &str) -> PathBuf {
    runtime_dir.join(LOCAL_DIR).join(format!("{name}.lock"))
}

/// Step 1: the node-local lock; None if a local process holds it.
///
/// An OFD lock on `RUNTIME_DIR/workload/NAME.lock` taken like a `file`
/// cluster lock (`lock::twin`: a hidden twin name, a /proc/locks scan
/// before a fresh inode), so deleting the file or the whole runtime dir
/// under a running program never lets a second local process in. That
/// matters on dlmfs, where the cluster lock cannot tell two processes of
/// one node apart. The scan is exact here: the lock is node-local by
/// design. Plus a `flock` on the same fd, as versions before took it, so
/// a program started by one of those still excludes us during an upgrade.
fn try_local(runtime_dir: &Path, name: &str) -> Result<Option<File>, String> {
    let names = twin::Names::new(&runtime_dir.join(LOCAL_DIR), name);
    let Some(f) = twin::acquire(&names, None)? else {
        return Ok(None);
    };
    // Raw flock(2), not nix's Flock: that one unlocks explicitly on drop,
    // which would free the lock for the program that inherited the fd too.
    // SAFETY: flock on an fd we own; no memory is involved.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(Some(f));
    }
    // Closing `f` drops the OFD lock too (our only fd of it).
    match Errno::last() {
        Errno::EWOULDBLOCK => Ok(None),
        e => Err(format!(
            "cannot flock {}: {e}",
            local_path(runtime_dir, name).display()
        )),
    }
}

/// Runs `f` on a thread of its own and waits at most `limit`: a dlmfs call
/// may sleep in the kernel (DLM recovery) and cannot be cancelled. A call
/// that finishes after we gave up drops its result: a lock won that late is
/// closed (dlmfs: left cached on the node for [`drop_stale`]).
fn bounded<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("lock-call".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    rx.recv_timeout(limit)
        .map_err(|_| format!("{what} did not finish within {limit:?} (op_timeout); is the DLM recovering a dead node?"))?
}

/// The cluster lock, held.
struct Cluster {
    file: File,
    /// dlmfs: the lock file, unlinked on release (close alone leaves it
    /// cached on the node).
    dlmfs_path: Option<PathBuf>,
    /// dlmfs: the term read from the lock value block, plus one.
    epoch: Option<u64>,
    /// file: the lock file's two names, for the holder's watch.
    names: Option<twin::Names>,
}

/// Step 2: one non-blocking attempt on the cluster lock; None if busy.
/// Blocking: call through [`bounded`].
fn try_cluster(lock: &LockConfig, node: &str, name: &str) -> Result<Option<Cluster>, LockError> {
    let cname = cluster_name(name);
    match lock.backend {
        Backend::File => {
            // The election's protocol (`lock::twin`): a deleted lock file
            // leads every contender to the holder's inode, or (both names
            // gone) the holder is listed in /proc/locks.
            let names = FileBackend::new(lock.dir.clone(), lock.standby).names(&cname);
            Ok(twin::acquire(&names, None)
                .map_err(LockError::Failed)?
                .map(|file| Cluster {
                    file,
                    dlmfs_path: None,
                    epoch: None,
                    names: Some(names),
                }))
        }
        Backend::Dlmfs => {
            let be = DlmfsBackend::new(lock.mount.clone(), lock.domain.clone(), node);
            let path = be.join_unclaimed()?.join(&cname);
            // The daemon's trylock, on the workload's name.
            let file = match dlmfs::trylock_open(&path) {
                Ok(Some(file)) => file,
                Ok(None) => return Ok(None),
                Err(e) => {
                    return Err(LockError::Failed(format!(
                        "cannot open {}: {e}",
                        path.display()
                    )));
                }
            };
            let mut buf = [0u8; dlmfs::LVB_LEN];
            let n = file.read_at(&mut buf, 0).unwrap_or(0);
            let epoch = dlmfs::parse_lvb(&buf[..n]).1 + 1;
            // All 64 bytes: a short write keeps the old tail.
            if let Err(e) = file.write_at(&dlmfs::lvb_record(node, epoch), 0) {
                tracing::warn!(
                    "cannot write the lock value block of {}: {e}",
                    path.display()
                );
            }
            Ok(Some(Cluster {
                file,
                dlmfs_path: Some(path),
                epoch: Some(epoch),
                names: None,
            }))
        }
    }
}

/// Both locks of a workload name.
pub struct Held {
    name: String,
    local: File,
    cluster: Cluster,
}

impl Held {
    /// The epoch the program gets (dlmfs only).
    pub fn epoch(&self) -> Option<u64> {
        self.cluster.epoch
    }

    /// file: the cluster lock's names (for [`watch`]).
    pub fn names(&self) -> Option<&twin::Names> {
        self.cluster.names.as_ref()
    }

    /// The fds a program inherits so the lock lives as long as it does.
    pub fn fds(&self) -> [i32; 2] {
        [self.local.as_raw_fd(), self.cluster.file.as_raw_fd()]
    }

    /// Gives both up: close, then (dlmfs) unlink while the local flock
    /// still keeps every local trylock of the name away. Err if a process
    /// that inherited the lock still holds it (dlmfs: unlink EBUSY; the
    /// lock stays until it exits and a `cleanup` or `run-locked` runs).
    pub fn release(self, op_timeout: Duration) -> Result<(), String> {
        let Held {
            name,
            local,
            cluster,
        } = self;

        drop(cluster.file);
        let r = match cluster.dlmfs_path {
            Some(path) => bounded(op_timeout, "unlinking the lock", move || {
                dlmfs::unlink(&path).map_err(|e| e.to_string())
            })
            .map_err(|e| format!("{e}: workload lock {name} stays held on this node")),
            None => Ok(()),
        };
        drop(local);
        r
    }
}

pub enum Attempt {
    Held(Held),
    Busy,
}

/// A holder's watch over its `file` lock's names (`run-locked` while the
/// program runs, `lock`'s holder process): every `every` it puts a deleted
/// name back (`twin::Names::keep`) and says so through `say`; once both
/// names are gone it says so, loudly, at every look: the lock still keeps
/// this host's contenders out, not other hosts' on a cluster filesystem.
pub struct Watch {
    stop: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    thread: std::thread::JoinHandle<()>,
}

pub fn watch(
    names: twin::Names,
    file: File,
    every: Duration,
    say: impl Fn(&str) + Send + 'static,
) -> Watch {
    let stop = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let s = stop.clone();
    let thread = std::thread::spawn(move || {
        let (flag, cv) = &*s;
        let mut stopped = flag.lock().unwrap();
        loop {
            stopped = cv.wait_timeout(stopped, every).unwrap().0;
            if *stopped {
                return;
            }
            look(&names, &file, &say);
        }
    });
    Watch { stop, thread }
}

/// One look of a [`watch`].
pub fn look(names: &twin::Names, file: &File, say: &dyn Fn(&str)) {
    match names.keep(file) {
        Ok(None) => {}
        Ok(Some(fixed)) => say(&fixed),
        Err(e) => say(&format!(
            "ERROR: {e}; contenders on this host still find the lock busy (listed in /proc/locks)"
        )),
    }
}

impl Watch {
    pub fn stop(self) {
        *self.stop.0.lock().unwrap() = true;
        self.stop.1.notify_all();
        let _ = self.thread.join();
    }
}

/// One attempt at both locks, local first.
pub fn try_take(cfg: &Config, name: &str) -> Result<Attempt, LockError> {
    // dlmfs: a node that may have been declared dead while frozen holds
    // nothing new (see `membership`); the daemon recorded the doubt.
    if cfg.lock.backend == Backend::Dlmfs
        && let Some(why) = crate::membership::recorded(&cfg.daemon.runtime_dir)
    {
        return Err(LockError::Failed(format!(
            "this node's cluster membership is in doubt ({why}): no lock is taken until it reboots"
        )));
    }
    let Some(local) = try_local(&cfg.daemon.runtime_dir, name).map_err(LockError::Failed)? else {
        return Ok(Attempt::Busy);
    };
    let (lock, node, n) = (cfg.lock.clone(), cfg.node.clone(), name.to_string());
    match bounded(cfg.daemon.op_timeout, "the lock call", move || {
        Ok(try_cluster(&lock, &node, &n))
    })
    .map_err(LockError::Failed)??
    {
        Some(cluster) => Ok(Attempt::Held(Held {
            name: name.to_string(),
            local,
            cluster,
        })),
        None => Ok(Attempt::Busy),
    }
}

/// Tries until the lock is won or `wait` (none: one attempt) is over.
/// Polling every `poll_interval`, never a blocking lock call: a blocking
/// dlmfs open sleeps uninterruptibly. The default signal dispositions apply
/// meanwhile, so Ctrl-C or SIGTERM end the wait. A cluster that is not
/// ready (not up yet, or changing membership: a node just died) is retried
/// like a busy lock while the wait lasts.
pub fn take(cfg: &Config, name: &str, wait: Option<Duration>) -> Result<Attempt, LockError> {
    let deadline = Instant::now() + wait.unwrap_or(Duration::ZERO);
    loop {
        let retry = match try_take(cfg, name) {
            Ok(Attempt::Busy) => Ok(()),
            Err(LockError::NotReady(m)) => Err(LockError::NotReady(m)),
            done => return done,
        };
        if Instant::now() >= deadline {
            return retry.map(|()| Attempt::Busy);
        }
        if let Err(e) = retry {
            tracing::info!("{e}; retrying");
        }
        let left = deadline.saturating_duration_since(Instant::now());
        std::thread::sleep(cfg.daemon.poll_interval.min(left));
    }
}

/// dlmfs: unlinks every workload lock this node keeps cached while no local
/// process holds it (a `run-locked` killed with SIGKILL whose program has
/// ended since). Each under the name's local flock: a name whose flock is
/// held is in use and left alone. Returns the names dropped. Nothing to do
/// on `file` (the kernel drops an OFD lock with its last fd).
pub fn drop_stale(cfg: &Config) -> Result<Vec<String>, String> {
    if cfg.lock.backend != Backend::Dlmfs {
        // The kernel dropped a dead holder's lock with its fds: only its
        // record is left to clear.
        return Ok(held::forget_dead(&cfg.daemon.runtime_dir));
    }
    // Like clear_stale: no dlmfs call at all on a refused stack.
    if let Some(m) = dlmfs::cluster_stack_problem(Path::new(dlmfs::SYSFS_ROOT)) {
        return Err(m);
    }
    let dir = cfg.lock.mount.join(&cfg.lock.domain);
    let runtime_dir = cfg.daemon.runtime_dir.clone();
    bounded(
        cfg.daemon.op_timeout,
        "dropping stale workload locks",
        move || {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
                Err(e) => return Err(format!("cannot list {}: {e}", dir.display())),
            };
            let mut dropped = vec![];
            for entry in entries.flatten() {
                let file_name = entry.file_name();
                let Some(name) = file_name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
                    continue;
                };
                if name_problem(name).is_some() {
                    continue;
                }
                let Some(_local) = try_local(&runtime_dir, name)? else {
                    continue; // a local run-locked or its program has it
                };
                match nix::unistd::unlink(&entry.path()) {
                    Ok(()) => {
                        // A `lock` holder that died (its flock is free) left this.
                        let _ = std::fs::remove_file(held::record_path(&runtime_dir, name));
                        dropped.push(name.to_string())
                    }
                    Err(Errno::ENOENT) | Err(Errno::EBUSY) => {}
                    Err(e) => return Err(format!("cannot unlink {}: {e}", entry.path().display())),
                }
            }
            Ok(dropped)
        },
    )
}

/// The program to run, resolved as execvp would, so a missing one is
/// refused before any lock is taken. Err: (exit code, message).
fn resolve(program: &OsString) -> Result<PathBuf, (i32, String)> {
    let p = Path::new(program);
    let candidates: Vec<PathBuf> = if p.as_os_str().as_encoded_bytes().contains(&b'/') {
        vec![p.to_path_buf()]
    } else {
        let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
        std::env::split_paths(&path).map(|d| d.join(p)).collect()
    };
    let mut found_unrunnable = None;
    for c in candidates {
        if c.is_file() {
            if nix::unistd::access(&c, nix::unistd::AccessFlags::X_OK).is_ok() {
                return Ok(c);
            }
            found_unrunnable.get_or_insert(c);
        }
    }
    Err(match found_unrunnable {
        Some(c) => (
            exit::CANNOT_RUN,
            format!("{} is not executable", c.display()),
        ),
        None => (exit::NOT_FOUND, format!("{}: no such program", p.display())),
    })
}

/// `dlm-electd run-locked`: returns the exit code.
pub fn run_locked(cfg: &Config, name: &str, wait: Option<Duration>, argv: &[OsString]) -> i32 {
    let say = |m: &str| eprintln!("dlm-electd: run-locked {name}: {m}");
    let program = match resolve(&argv[0]) {
        Ok(p) => p,
        Err((code, m)) => {
            say(&m);
            return code;
        }
    };
    let held = match take(cfg, name, wait) {
        Ok(Attempt::Held(h)) => h,
        Ok(Attempt::Busy) => {
            say(&match wait {
                Some(w) => format!("busy (still held after {})", humantime::format_duration(w)),
                None => "busy: held on this or another node".into(),
            });
            return exit::BUSY;
        }
        Err(e) => {
            say(&e.to_string());
            return exit::FAILURE;
        }
    };
    let status = run_program(cfg, name, &held, &program, argv);
    if let Err(e) = held.release(cfg.daemon.op_timeout) {
        say(&e);
    }
    match status {
        Ok(code) => code,
        Err(e) => {
            say(&e);
            exit::FAILURE
        }
    }
}

/// Runs the program with the lock fds inherited, forwarding SIGTERM,
/// SIGINT, SIGHUP and SIGQUIT to it; its exit code (128+N after signal N).
fn run_program(
    cfg: &Config,
    name: &str,
    held: &Held,
    program: &Path,
    argv: &[OsString],
) -> Result<i32, String> {
    let mut cmd = Command::new(program);
    cmd.arg0(&argv[0])
        .args(&argv[1..])
        .env("DLM_ELECTD_LOCK", name)
        .env("DLM_ELECTD_NODE", &cfg.node)
        .env("DLM_ELECTD_LOCK_FDS", {
            let [a, b] = held.fds();
            format!("{a} {b}")
        });
    match held.epoch() {
        Some(e) => cmd.env("DLM_ELECTD_EPOCH", e.to_string()),
        None => cmd.env_remove("DLM_ELECTD_EPOCH"),
    };
    let fds = held.fds();
    // SAFETY: between fork and exec only fcntl(2), which is async-signal-
    // safe, on fds that stay open in the parent.
    unsafe {
        cmd.pre_exec(move || {
            for fd in fds {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    // Caught from before the spawn on (the exec resets them to default in
    // the program): a SIGTERM right after the program started must reach
    // it, not kill us with the default action. Signals that arrive before
    // the forwarder runs wait in `signals`.
    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGQUIT])
        .map_err(|e| format!("cannot handle signals: {e}"))?;
    let handle = signals.handle();
    // Watching from before the program starts: a freeze right after its
    // start must count from here (see `tell_on_doubt`).
    let doubt = (cfg.lock.backend == Backend::Dlmfs).then(|| {
        crate::membership::watch(
            &cfg.daemon.runtime_dir,
            Path::new(crate::lock::dlmfs::SYSFS_ROOT),
            Path::new("/proc"),
        )
    });
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let watching = held.names().cloned().and_then(|n| {
        let file = held.cluster.file.try_clone().ok()?;
        let name = name.to_string();
        // Its duplicate fd is closed when it stops (before our release), so
        // it never keeps the lock past the program and its children.
        Some(watch(n, file, cfg.daemon.poll_interval, move |m| {
            eprintln!("dlm-electd: run-locked {name}: {m}")
        }))
    });
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let doubt = doubt.map(|d| tell_on_doubt(d, name, pid));
    let forwarder = std::thread::spawn(move || {
        for sig in signals.forever() {
            if let Ok(s) = nix::sys::signal::Signal::try_from(sig) {
                let _ = nix::sys::signal::kill(pid, s);
            }
        }
    });
    let status = child.wait();
    if let Some(w) = watching {
        w.stop();
    }
    if let Some((stop, t)) = doubt {
        stop.store(true, std::sync::atomic::Ordering::Release);
        let _ = t.join();
    }
    handle.close();
    let _ = forwarder.join();
    let status = status.map_err(|e| format!("waiting for the program: {e}"))?;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// dlmfs: a node that did not run past the cluster's dead time may have
/// been declared dead, and its workload lock given to another node
/// (docs/dlmfs.md §2.7). The program is then told with SIGTERM, at once,
/// so the copy on the frozen node stops. Returns the flag that ends the
/// watch and its thread.
fn tell_on_doubt(
    doubt: crate::membership::Doubt,
    name: &str,
    program: nix::unistd::Pid,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<()>,
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let (stopped, name) = (stop.clone(), name.to_string());
    let t = std::thread::spawn(move || {
        while !stopped.load(Ordering::Acquire) {
            if let Some(why) = doubt.borrow().clone() {
                eprintln!(
                    "dlm-electd: run-locked {name}: {why}: the cluster may have given lock {name} to another node; sending the program SIGTERM"
                );
                let _ = nix::sys::signal::kill(program, nix::sys::signal::Signal::SIGTERM);
                return;
            }
            std::thread::sleep(crate::membership::TICK / 2);
        }
    });
    (stop, t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_portable_and_fit_dlmfs_with_the_prefix() {
        assert_eq!(name_problem("vm-web01.example_2+x"), None);
        assert_eq!(name_problem(&"a".repeat(MAX_NAME)), None);
        assert!(
            name_problem(&"a".repeat(MAX_NAME + 1))
                .unwrap()
                .contains("1 to 30 bytes")
        );
        assert!(name_problem("").unwrap().contains("1 to 30 bytes"));
        assert!(name_problem("a/b").unwrap().contains("'/' is not allowed"));
        assert!(name_problem("$x").unwrap().contains("'$' is not allowed"));
        assert!(name_problem("a b").is_some());
        assert!(name_problem(".x").unwrap().contains("starts with a letter"));
        assert!(name_problem("-x").is_some());
        assert_eq!(cluster_name("vm1").len(), 4);
        assert!(cluster_name(&"a".repeat(MAX_NAME)).len() <= 31);
    }

    #[test]
    fn the_local_lock_excludes_a_second_taker_until_closed() {
        let dir = tempfile::tempdir().unwrap();
        let first = try_local(dir.path(), "vm1").unwrap().expect("free");
        assert!(try_local(dir.path(), "vm1").unwrap().is_none());
        assert!(try_local(dir.path(), "vm2").unwrap().is_some());
        drop(first);
        assert!(try_local(dir.path(), "vm1").unwrap().is_some());
    }

    #[test]
    fn bounded_gives_up_on_a_call_that_does_not_return() {
        let e = bounded(Duration::from_millis(50), "the lock call", || {
            std::thread::sleep(Duration::from_secs(5));
            Ok(())
        })
        .unwrap_err();
        assert!(e.contains("did not finish within 50ms"), "{e}");
        assert_eq!(bounded(Duration::from_secs(5), "x", || Ok(7)), Ok(7));
    }

    #[test]
    fn missing_or_unrunnable_programs_are_refused_before_locking() {
        assert_eq!(
            resolve(&"/nonexistent/prog".into()).unwrap_err().0,
            exit::NOT_FOUND
        );
        assert_eq!(
            resolve(&"no-such-prog-xyz".into()).unwrap_err().0,
            exit::NOT_FOUND
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("noexec");
        std::fs::write(&f, "#!/bin/sh\n").unwrap();
        let (code, m) = resolve(&f.clone().into_os_string()).unwrap_err();
        assert_eq!(code, exit::CANNOT_RUN);
        assert!(m.contains("not executable"), "{m}");
        assert!(resolve(&"sh".into()).is_ok());
    }
}
