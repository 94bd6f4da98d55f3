//! The hook process groups running right now, kept as one file per group in
//! `<runtime_dir>/hooks/<pgid>`, so that whoever outlives a killed daemon
//! (its lock keeper, or `cleanup` when both died) can kill them before it
//! runs release steps: an acquire hook of a dead daemon must never finish
//! after its release ran.
//!
//! The file is created by the hook's own process, between fork and exec
//! (after it became a group leader), which then execs only if its parent
//! still lives: so no hook runs untracked whenever the daemon dies; the daemon then writes the leader's start time into it, to
//! tell the group from a later one that reuses the number, and removes the
//! file once the hook's process is gone (and its group killed, if it timed
//! out or was cancelled). A file is a runtime-dir file like the applied
//! records: on tmpfs, gone at reboot along with the processes.
//!
//! Why files rather than messages to the keeper: they cost no round trip on
//! every hook (health checks run every poll), they also serve `cleanup`
//! after daemon and keeper were killed together, and the keeper's own
//! release hooks are tracked the same way.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where this process tracks its hooks; unset (nothing tracked) in tests of
/// pure logic and in commands that run no hook.
static DIR: OnceLock<PathBuf> = OnceLock::new();

/// How long the killer waits for a killed group to be gone.
const GONE_WITHIN: Duration = Duration::from_secs(10);

pub fn dir_in(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join("hooks")
}

/// The hooks' directory could not be created.
#[derive(Debug, thiserror::Error)]
#[error("cannot create {}: {source}", dir.display())]
pub struct TrackError {
    pub dir: PathBuf,
    pub source: std::io::Error,
}

/// Tracks the hooks this process starts from now on in `dir` (created 0700).
pub fn track_in(dir: PathBuf) -> Result<(), TrackError> {
    if let Err(source) = std::fs::DirBuilder::new().recursive(true).create(&dir) {
        return Err(TrackError { dir, source });
    }
    let _ = DIR.set(dir);
    Ok(())
}

/// What a forked hook needs to register itself without allocating: the
/// directory as a C string with a trailing '/'.
pub struct Tracker {
    prefix: Vec<u8>,
    /// This process: the forked hook's parent while we live.
    parent: i32,
}

impl Tracker {
    /// `None` when this process tracks nothing.
    pub fn new() -> Option<Tracker> {
        let dir = DIR.get()?;
        // Made again if it is gone (an admin's rm -rf of the runtime dir
        // under a running daemon): a hook registers itself in it before
        // exec, so without it every step failed with ENOENT ("cannot run
        // /bin/true") and a master could never release its lock.
        use std::os::unix::fs::DirBuilderExt;
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir);
        let mut prefix = dir.as_os_str().as_bytes().to_vec();
        prefix.push(b'/');
        Some(Tracker {
            prefix,
            parent: nix::unistd::getpid().as_raw(),
        })
    }

    /// In the forked child, before exec: creates `<dir>/<own pid>`. Only
    /// async-signal-safe calls, no allocation.
    pub fn register_self(&self) -> std::io::Result<()> {
        let mut path = [0u8; 4096];
        let mut pid = [0u8; 12];
        let n = itoa(nix::unistd::getpid().as_raw() as u32, &mut pid);
        let len = self.prefix.len() + n;
        if len >= path.len() {
            return Err(std::io::Error::from_raw_os_error(libc::ENAMETOOLONG));
        }
        path[..self.prefix.len()].copy_from_slice(&self.prefix);
        path[self.prefix.len()..len].copy_from_slice(&pid[..n]);
        // No O_TRUNC: the daemon may have written the start time already.
        // SAFETY: path is NUL-terminated (zeroed past len).
        let fd = unsafe {
            libc::open(
                path.as_ptr().cast(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC,
                0o600,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd was just opened here and is closed once.
        unsafe { libc::close(fd) };
        // Killed between our fork and the file above, the daemon's keeper
        // may have looked already: then this hook must not run at all. If
        // the daemon dies after this check, the file was there first.
        if nix::unistd::getppid().as_raw() != self.parent {
            return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
        }
        Ok(())
    }

    fn file(&self, pgid: i32) -> PathBuf {
        let mut p = self.prefix.clone();
        p.extend_from_slice(pgid.to_string().as_bytes());
        PathBuf::from(std::ffi::OsStr::from_bytes(&p))
    }

    /// In the daemon, after spawn: the leader's start time, which tells
    /// this group from a later one with the same number.
    pub fn started(&self, pgid: i32) {
        if let Some(t) = start_time(pgid) {
            let _ = std::fs::write(self.file(pgid), t.to_string());
        }
    }

    /// The hook's process has been reaped (its group killed if it had to).
    pub fn ended(&self, pgid: i32) {
        let _ = std::fs::remove_file(self.file(pgid));
    }

    /// After a failed spawn (the exec failed after the child registered
    /// itself, under a pid we never learn): removes every file whose group
    /// has no process left at all, so a hook failing on every poll does
    /// not fill the runtime dir.
    pub fn sweep(&self) {
        let Some(dir) = DIR.get() else { return };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let live = groups();
        for e in entries.flatten() {
            let pgid = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok());
            if pgid.is_some_and(|g| !live.contains(&g)) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// The process groups that have a process (zombies included: a leader not
/// reaped yet still names its group).
fn groups() -> std::collections::HashSet<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Default::default();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(stat)
        .map(|(_, pgrp, _)| pgrp)
        .collect()
}

/// `v` in decimal at the start of `buf`; returns its length. By hand: the
/// forked child must not allocate (no `format!`).
fn itoa(v: u32, buf: &mut [u8; 12]) -> usize {
    let len = v.checked_ilog10().unwrap_or(0) as usize + 1;
    let mut rest = v;
    for d in buf[..len].iter_mut().rev() {
        *d = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    len
}

/// (state, pgrp, start time in clock ticks since boot) of `pid`.
fn stat(pid: i32) -> Option<(char, i32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may hold spaces and parentheses: the fields follow the last ')'.
    let f: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    Some((
        f.first()?.chars().next()?,
        f.get(2)?.parse().ok()?,
        f.get(19)?.parse().ok()?,
    ))
}

fn start_time(pid: i32) -> Option<u64> {
    stat(pid).map(|s| s.2)
}

/// Live (not zombie) processes in group `pgid`.
fn members(pgid: i32) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(stat)
        .filter(|&(state, pgrp, _)| pgrp == pgid && state != 'Z' && state != 'X')
        .count()
}

/// SIGKILLs every hook group tracked in `dir` and waits (bounded) until
/// none of their processes is left; returns how many groups it killed.
/// For the keeper once its daemon is gone and for `cleanup`: both then own
/// every hook of this instance, which nobody else will end.
pub fn kill_all(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut killed = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        let Some(pgid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let recorded: Option<u64> = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.trim().parse().ok());
        // While any process of group N lives, N cannot be given to a new
        // process; so only a live leader with another start time is a
        // stranger (the number was reused after our group was gone).
        let stranger = match (start_time(pgid), recorded) {
            (Some(now), Some(then)) => now != then,
            _ => false,
        };
        if !stranger && pgid > 1 && killpg(Pid::from_raw(pgid), Signal::SIGKILL).is_ok() {
            tracing::warn!("killed the process group {pgid} of a hook its daemon left running");
            killed.push(pgid);
        }
        let _ = std::fs::remove_file(&path);
    }
    let deadline = Instant::now() + GONE_WITHIN;
    for &pgid in &killed {
        // SIGKILL cannot be ignored, but the kernel takes its time with a
        // process in uninterruptible sleep; /proc offers no event for it.
        while members(pgid) > 0 {
            if Instant::now() >= deadline {
                tracing::error!(
                    "hook process group {pgid} still has processes {GONE_WITHIN:?} after SIGKILL"
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    killed.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn itoa_writes_decimal() {
        for (v, text) in [(0, "0"), (7, "7"), (10, "10"), (4194304, "4194304")] {
            let mut b = [0u8; 12];
            let n = itoa(v, &mut b);
            assert_eq!(&b[..n], text.as_bytes());
        }
        let mut b = [0u8; 12];
        assert_eq!(itoa(u32::MAX, &mut b), 10);
    }

    #[test]
    fn own_stat_is_parsed() {
        let me = std::process::id() as i32;
        let (state, pgrp, start) = stat(me).unwrap();
        assert!("RSD".contains(state), "{state}");
        assert_eq!(pgrp, nix::unistd::getpgrp().as_raw());
        assert!(start > 0);
    }
}
