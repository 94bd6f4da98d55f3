//! `dlm-electd lock NAME` / `unlock NAME`: a workload lock held for
//! integrations whose hooks exit at once (a libvirt qemu hook on
//! `prepare`/`release`, a unit's `ExecStartPre=`/`ExecStopPost=`).
//!
//! Who holds the fds: a small detached *holder* process per lock
//! (`dlm-electd hold-workload-lock NAME`, own session), not the daemon. A
//! VM's lock must outlive `systemctl restart dlm-electd`, a package upgrade
//! and `systemctl kill -s KILL dlm-electd`: the holder is not in the
//! daemon's cgroup, and the daemon need not run at all. The holder ignores
//! SIGTERM, SIGINT and SIGHUP (a unit stop signals every process of the
//! unit: the lock must stay until the unit's `ExecStopPost=unlock`), asks
//! the OOM killer to spare it, and only waits. `unlock` SIGKILLs it, then
//! drops the cluster lock (dlmfs: unlink) under the name's local flock.
//!
//! `lock` records who asked and since when in `RUNTIME_DIR/workload/
//! NAME.held` (JSON) for `status`; the record is informative, the local
//! flock held by the holder is what counts.

use super::error::WorkloadError;
use super::local::{bounded, try_local};
use super::names::{LOCAL_DIR, cluster_name, local_path, record_path};
use super::take::{Attempt, Held, take};
use super::watch::look;
use crate::config::{Backend, Config};
use crate::exit;
use serde::{Deserialize, Serialize};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The hidden subcommand the holder runs.
pub const HOLDER_CMD: &str = "hold-workload-lock";

/// Tells the holder which inherited fds are its lock (`lock` sets it): a
/// holder started by hand has none and refuses, rather than wait forever
/// holding nothing.
const FDS_ENV: &str = "DLM_ELECTD_HOLDER_FDS";
/// `file` backend: the lock dir and poll interval (ms), for the holder's
/// watch over the lock file's names (`watch`).
const DIR_ENV: &str = "DLM_ELECTD_HOLDER_LOCK_DIR";
const EVERY_ENV: &str = "DLM_ELECTD_HOLDER_EVERY_MS";

/// `--by` is shown in `status`: one line, printable, bounded.
const MAX_BY: usize = 200;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldRecord {
    pub name: String,
    /// The holder process.
    pub pid: i32,
    /// Who asked: `--by`, else the calling process and user.
    pub by: String,
    pub since_ms: u64,
    /// Whether the holder still runs (filled in when listed).
    #[serde(default)]
    pub holder_alive: bool,
}

/// The held locks recorded under `runtime_dir`, by name.
pub fn list(runtime_dir: &Path) -> Vec<HeldRecord> {
    let mut out: Vec<HeldRecord> = std::fs::read_dir(runtime_dir.join(LOCAL_DIR))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "held"))
        .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
        .map(|mut r: HeldRecord| {
            r.holder_alive = is_holder(r.pid, &r.name);
            r
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Whether `pid` exists and is not a zombie. Only a zombie has surely
/// closed its fds (the kernel closes them before the process turns zombie;
/// its cmdline reads empty earlier, once its memory is gone).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| Some(s[s.rfind(')')? + 2..].starts_with(|c| c != 'Z')))
        .unwrap_or(false)
}

/// Whether `pid` is a live holder of `name` (not a reused pid).
fn is_holder(pid: i32, name: &str) -> bool {
    let alive = running(pid);
    let args: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    alive && args.iter().any(|a| a == HOLDER_CMD) && args.last().is_some_and(|a| a == name)
}

pub(crate) fn caller() -> String {
    let ppid = nix::unistd::getppid();
    let comm = std::fs::read_to_string(format!("/proc/{ppid}/comm")).unwrap_or_default();
    format!(
        "pid {ppid} ({}), uid {}",
        comm.trim(),
        nix::unistd::getuid()
    )
}

/// `dlm-electd lock`: the exit code.
pub fn lock(cfg: &Config, name: &str, wait: Option<Duration>, by: Option<String>) -> i32 {
    let say = |m: &str| eprintln!("dlm-electd: lock {name}: {m}");
    let held = match take(cfg, name, wait) {
        Ok(Attempt::Held(h)) => h,
        Ok(Attempt::Busy) => {
            let here = list(&cfg.daemon.runtime_dir)
                .into_iter()
                .find(|r| r.name == name && r.holder_alive);
            say(&match (here, wait) {
                (Some(r), _) => format!(
                    "busy: already held on this node (holder pid {}, asked by {})",
                    r.pid, r.by
                ),
                (None, Some(w)) => {
                    format!("busy (still held after {})", humantime::format_duration(w))
                }
                (None, None) => "busy: held on this or another node".into(),
            });
            return exit::BUSY;
        }
        Err(e) => {
            say(&e.to_string());
            return exit::FAILURE;
        }
    };
    let child = match holder_command(cfg, name, &held).spawn() {
        Ok(c) => c,
        Err(e) => {
            say(&format!("cannot start the holder process: {e}"));
            if let Err(e) = held.release(cfg.daemon.op_timeout) {
                say(&e.to_string());
            }
            return exit::FAILURE;
        }
    };
    // An OOM kill of the holder would free a running VM's lock (`file`).
    // Lowering the score needs CAP_SYS_RESOURCE: say so when it fails.
    if let Err(e) = std::fs::write(format!("/proc/{}/oom_score_adj", child.id()), "-1000") {
        say(&format!(
            "warning: cannot protect the holder from the OOM killer (oom_score_adj): {e}"
        ));
    }
    let rec = HeldRecord {
        name: name.to_string(),
        pid: child.id() as i32,
        by: one_line(&by.unwrap_or_else(caller)),
        since_ms: crate::clock::now_ms(),
        holder_alive: true,
    };
    let path = record_path(&cfg.daemon.runtime_dir, name);
    if let Err(e) =
        crate::instance::write_whole(&path, &serde_json::to_vec(&rec).unwrap_or_default())
    {
        // The lock is held all the same; `status` just cannot show it.
        say(&format!("cannot write {}: {e}", path.display()));
    }
    // Our copies close; the holder's keep the lock. (Dropping `held`
    // without release neither unlocks nor unlinks.)
    drop(held);
    println!("{name}: locked (holder pid {})", rec.pid);
    exit::OK
}

/// The holder of `name` as `lock` starts it: our own binary, in a session
/// of its own, ignoring the stop signals, with only the lock's fds kept
/// open past exec.
fn holder_command(cfg: &Config, name: &str, held: &Held) -> Command {
    let fds = held.fds();
    // Where to stop marking inherited fds close-on-exec if close_range(2)
    // is missing (Linux < 5.11): the soft fd limit, within reason.
    let fd_limit = {
        let mut r = libc::rlimit {
            rlim_cur: 1024,
            rlim_max: 1024,
        };
        // SAFETY: a valid resource and a pointer to an rlimit we own.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
        r.rlim_cur.min(65536) as i32
    };
    // /proc/self/exe: our own binary even if an upgrade replaced the file.
    let mut cmd = Command::new("/proc/self/exe");
    let fd_list: Vec<String> = fds.iter().map(|fd| fd.to_string()).collect();
    cmd.arg0("dlm-electd")
        .args([HOLDER_CMD, name])
        .env(FDS_ENV, fd_list.join(","))
        .env_remove(DIR_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if held.names().is_some() {
        cmd.env(DIR_ENV, &cfg.lock.dir)
            .env(EVERY_ENV, cfg.daemon.poll_interval.as_millis().to_string());
    }
    // SAFETY: between fork and exec only setsid(2), signal(2) and
    // fcntl(2), all async-signal-safe, on fds that stay open in the parent.
    unsafe {
        cmd.pre_exec(move || {
            // Own session: no terminal hang-up, no job-control signals.
            libc::setsid();
            // Ignored from before exec on (SIG_IGN survives exec): a unit
            // stop's SIGTERM right after `lock` returned must not find the
            // holder still starting up with the default action.
            for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGPIPE] {
                libc::signal(sig, libc::SIG_IGN);
            }
            // The holder lives on for hours: none of the caller's fds may
            // go with it (a caller waiting for EOF on a pipe it passed
            // down would wait for good). Every fd from 3 up is closed at
            // exec, but the two lock fds, cleared below.
            const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
            if libc::syscall(
                libc::SYS_close_range,
                3,
                libc::c_uint::MAX,
                CLOSE_RANGE_CLOEXEC,
            ) != 0
            {
                for fd in 3..fd_limit {
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                }
            }
            for fd in fds {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd
}

/// `text` as one printable line of at most `MAX_BY` characters: control
/// characters (newlines, escape sequences) become `\u{..}`, so what
/// `--by` says cannot forge or colour rows of `status`.
fn one_line(text: &str) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == MAX_BY {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// Records of holders that are gone (killed, OOM): on the `file` backend
/// their lock went with them, so the record only misleads `status`.
/// Returns the names forgotten. (dlmfs: `drop_stale` removes a record when
/// it drops the lock the node kept cached.)
pub fn forget_dead(runtime_dir: &Path) -> Vec<String> {
    list(runtime_dir)
        .into_iter()
        .filter(|r| !r.holder_alive)
        .filter(|r| std::fs::remove_file(record_path(runtime_dir, &r.name)).is_ok())
        .map(|r| r.name)
        .collect()
}

/// `dlm-electd unlock`: the exit code. Ends this node's holder of NAME and
/// drops the lock; a lock not held on this node is no error (so a unit's
/// `ExecStopPost=` after a start refused as busy succeeds and touches
/// nothing of the other node's).
pub fn unlock(cfg: &Config, name: &str) -> i32 {
    let say = |m: &str| eprintln!("dlm-electd: unlock {name}: {m}");
    let path = record_path(&cfg.daemon.runtime_dir, name);
    let rec: Option<HeldRecord> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    if rec.is_none()
        && cfg.lock.backend != Backend::Dlmfs
        && !local_path(&cfg.daemon.runtime_dir, name).exists()
    {
        // Never taken on this node, and the `file` backend keeps nothing
        // cached: nothing to do, nothing to create.
        println!("{name}: not held on this node by `lock`; nothing to do");
        return exit::OK;
    }
    // What this call did, for the last line: an operator reads "unlocked"
    // as "free now", so it is said only when a holder of ours was ended.
    let mut ended = None;
    if let Some(r) = &rec
        && is_holder(r.pid, name)
    {
        ended = Some(r.pid);
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(r.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let start = Instant::now();
        while running(r.pid) {
            if start.elapsed() > Duration::from_secs(10) {
                say(&format!("holder pid {} did not die within 10s", r.pid));
                return exit::FAILURE;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // The holder is gone (its fds closed by the kernel): drop what the
    // node keeps, under the local flock.
    let local = match try_local(&cfg.daemon.runtime_dir, name) {
        Ok(Some(l)) => l,
        Ok(None) => {
            say(
                "held on this node by another process (a run-locked program?), not by `lock`: left alone",
            );
            return exit::FAILURE;
        }
        Err(e) => {
            say(&e.to_string());
            return exit::FAILURE;
        }
    };
    let r = drop_cached(cfg, name);
    drop(local);
    let _ = std::fs::remove_file(&path);
    let dlmfs = cfg.lock.backend == Backend::Dlmfs;
    match r {
        Ok(gave_back) => {
            match (ended, &rec) {
                (Some(pid), _) => println!("{name}: unlocked (its holder, pid {pid}, ended)"),
                (None, Some(r)) => println!(
                    "{name}: its holder (pid {}) had already ended; record removed{}",
                    r.pid,
                    if dlmfs {
                        ", the lock this node kept dropped"
                    } else {
                        ""
                    }
                ),
                (None, None) if gave_back => println!(
                    "{name}: not held on this node by `lock`; gave back the lockspace create a killed taker left"
                ),
                (None, None) if dlmfs => println!(
                    "{name}: not held on this node by `lock`; dropped the lock this node kept cached, if any"
                ),
                (None, None) => {
                    println!("{name}: not held on this node by `lock`; nothing to do")
                }
            }
            exit::OK
        }
        Err(e) => {
            say(&e.to_string());
            exit::FAILURE
        }
    }
}

/// dlmfs: unlinks `@NAME`, dropping the lock this node keeps cached. dlm:
/// gives back the lockspace create the holder left (`workload::dlm`). The
/// caller holds the name's local flock (no local trylock can race it).
/// True if a dlm create was owed and given back.
fn drop_cached(cfg: &Config, name: &str) -> Result<bool, WorkloadError> {
    match cfg.lock.backend {
        Backend::File => return Ok(false),
        Backend::Dlm => {
            return super::dlm::drop_owed(&cfg.daemon.runtime_dir, name, cfg.daemon.op_timeout);
        }
        Backend::Dlmfs => {}
    }
    if let Some(m) =
        crate::lock::dlmfs::cluster_stack_problem(Path::new(crate::lock::dlmfs::SYSFS_ROOT))
    {
        return Err(WorkloadError::Stack(m));
    }
    let path = cfg
        .lock
        .mount
        .join(&cfg.lock.domain)
        .join(cluster_name(name));
    bounded(cfg.daemon.op_timeout, "unlinking the lock", move || {
        Ok(crate::lock::dlmfs::unlink(&path)?)
    })
    .map(|()| false)
}

/// The holder process: keeps the inherited lock fds open until SIGKILLed.
pub fn hold_forever() -> i32 {
    use nix::sys::signal::{SigHandler, Signal, signal};
    let fds: Vec<i32> = std::env::var(FDS_ENV)
        .unwrap_or_default()
        .split(',')
        .filter_map(|f| f.parse().ok())
        .collect();
    // SAFETY: F_GETFD only asks whether the fd number is open.
    let open = |fd: i32| unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1;
    if fds.is_empty() || !fds.iter().all(|&fd| fd > 2 && open(fd)) {
        eprintln!(
            "dlm-electd {HOLDER_CMD}: no lock fds inherited; this command is started by `dlm-electd lock` only"
        );
        return exit::USAGE;
    }
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGPIPE,
    ] {
        // SAFETY: SIG_IGN installs no handler code.
        let _ = unsafe { signal(s, SigHandler::SigIgn) };
    }
    // file backend: watch the lock file's names like `run-locked` does,
    // and say what we see in syslog (stderr is /dev/null). On this thread:
    // with a second one, `unlock` could see the killed holder a zombie (the
    // main thread gone) while the other thread still held the fds.
    let watch = std::env::var_os(DIR_ENV)
        .zip(fds.last().copied())
        .map(|(dir, fd)| {
            let every = std::env::var(EVERY_ENV)
                .ok()
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis)
                .unwrap_or(Duration::from_secs(1));
            let name = std::env::args().next_back().unwrap_or_default();
            let names = crate::lock::twin::Names::new(Path::new(&dir), &cluster_name(&name));
            // SAFETY: the fd is ours (inherited, checked open above) and lives
            // as long as this process; ManuallyDrop never closes it.
            let file = std::mem::ManuallyDrop::new(unsafe {
                <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd)
            });
            (names, file, every, name)
        });
    loop {
        match &watch {
            Some((names, file, every, name)) => {
                std::thread::sleep(*every);
                look(names, file, &|m| syslog(name, m));
            }
            None => {
                nix::unistd::pause();
            }
        }
    }
}

/// One line to syslog (the journal under systemd), as the holder of `name`.
fn syslog(name: &str, m: &str) {
    let Ok(line) = std::ffi::CString::new(format!("workload lock {name}: {m}")) else {
        return;
    };
    // SAFETY: static ident and format strings, a valid C string argument.
    unsafe {
        libc::openlog(c"dlm-electd".as_ptr(), libc::LOG_PID, libc::LOG_DAEMON);
        libc::syslog(libc::LOG_ERR, c"%s".as_ptr(), line.as_ptr());
    }
}
