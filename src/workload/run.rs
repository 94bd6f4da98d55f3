//! `dlm-electd run-locked NAME -- PROGRAM`: the program runs with both
//! lock fds inherited, signals forwarded, the `file` lock's names watched
//! and (dlmfs) a doubt about this node's membership told to it.

use super::take::{Attempt, Held, take};
use super::watch::watch;
use crate::config::{Backend, Config};
use crate::exit;
use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The program of `run-locked` cannot run: refused before any lock is
/// taken, with an exit code of its own (`exit_code`), as a shell would.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{}: no such program", .0.display())]
    NotFound(PathBuf),
    #[error("{} is not executable", .0.display())]
    NotExecutable(PathBuf),
}

impl ResolveError {
    pub fn exit_code(&self) -> i32 {
        match self {
            ResolveError::NotFound(_) => exit::NOT_FOUND,
            ResolveError::NotExecutable(_) => exit::CANNOT_RUN,
        }
    }
}

/// Running the program (with the lock held) failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot handle signals: {0}")]
    Signals(#[source] std::io::Error),
    #[error("cannot run {}: {source}", program.display())]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("waiting for the program: {0}")]
    Wait(#[source] std::io::Error),
}

/// The program to run, resolved as execvp would, so a missing one is
/// refused before any lock is taken.
fn resolve(program: &OsString) -> Result<PathBuf, ResolveError> {
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
        Some(c) => ResolveError::NotExecutable(c),
        None => ResolveError::NotFound(p.to_path_buf()),
    })
}

/// `dlm-electd run-locked`: returns the exit code.
pub fn run_locked(cfg: &Config, name: &str, wait: Option<Duration>, argv: &[OsString]) -> i32 {
    let say = |m: &str| eprintln!("dlm-electd: run-locked {name}: {m}");
    let program = match resolve(&argv[0]) {
        Ok(p) => p,
        Err(e) => {
            say(&e.to_string());
            return e.exit_code();
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
        say(&e.to_string());
    }
    match status {
        Ok(code) => code,
        Err(e) => {
            say(&e.to_string());
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
) -> Result<i32, RunError> {
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
        .map_err(RunError::Signals)?;
    let handle = signals.handle();
    // Watching from before the program starts: a freeze right after its
    // start must count from here (see `tell_on_doubt`).
    let doubt = (cfg.lock.backend == Backend::Dlmfs).then(|| {
        crate::membership::watch(
            &cfg.daemon.runtime_dir,
            Path::new(crate::lock::dlmfs::SYSFS_ROOT),
            Path::new("/proc"),
            // Nothing to drop first: the program is told on the doubt.
            || {},
        )
    });
    let mut child = cmd.spawn().map_err(|source| RunError::Spawn {
        program: program.to_path_buf(),
        source,
    })?;
    let watching = held.names().cloned().and_then(|n| {
        let file = held.cluster_file().try_clone().ok()?;
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
    let status = status.map_err(RunError::Wait)?;
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
    fn missing_or_unrunnable_programs_are_refused_before_locking() {
        assert_eq!(
            resolve(&"/nonexistent/prog".into())
                .unwrap_err()
                .exit_code(),
            exit::NOT_FOUND
        );
        assert_eq!(
            resolve(&"no-such-prog-xyz".into()).unwrap_err().to_string(),
            "no-such-prog-xyz: no such program"
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("noexec");
        std::fs::write(&f, "#!/bin/sh\n").unwrap();
        let e = resolve(&f.clone().into_os_string()).unwrap_err();
        assert_eq!(e.exit_code(), exit::CANNOT_RUN);
        assert!(e.to_string().contains("not executable"), "{e}");
        assert!(resolve(&"sh".into()).is_ok());
    }
}
