//! The keeper process (`dlm-electd keep-locks`): holds the copies of the
//! daemon's lock fds, and when the daemon is gone runs the release actions
//! of what it still holds before it lets each lock go.

use super::protocol::{Ack, Msg, recv, send};
use crate::action::{self, Ctx};
use crate::config::ActionSpec;
use crate::lock::twin::lock_at;
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tracing::Instrument;

/// Release retries after the daemon died: 1 s, 2 s, 4 s, ... capped.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// What the keeper holds for one resource.
struct Held {
    resource: String,
    fd: OwnedFd,
    actions: Vec<ActionSpec>,
    record: Option<PathBuf>,
    /// The lock's range start (`lock::twin`).
    start: i64,
}

/// `dlm-electd keep-locks --fd N --node NAME`: the keeper process.
pub fn main(fd: RawFd, node: String) -> i32 {
    // Refuse anything but the socket the daemon handed us.
    // SAFETY: only fstat'ed while borrowed; a bad fd number gives EBADF.
    let is_socket = nix::sys::stat::fstat(unsafe { BorrowedFd::borrow_raw(fd) })
        .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFSOCK);
    if fd < 3 || !is_socket {
        eprintln!(
            "dlm-electd {}: fd {fd} is not a socket; this command is started by `dlm-electd run` only",
            super::SUBCOMMAND
        );
        return 2;
    }
    // SAFETY: the daemon passed us this fd for us alone.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let _ = fcntl(&sock, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    // The keeper's life is bound to the daemon's, through the socket: a
    // SIGTERM sent to the whole service (systemd's control-group kill, or a
    // daemon killed alone followed by a stop of its unit) must not make it
    // drop locks before their release actions ran. Signals are caught, not
    // ignored, so that hooks started from here get default dispositions.
    let seen = std::sync::Arc::new(AtomicBool::new(false));
    for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        let _ = signal_hook::flag::register(s, seen.clone());
    }
    tracing::info!(node = %node, "lock keeper: started (pid {})", std::process::id());
    serve(sock, &node)
}

/// The keeper's loop on `sock`; returns the exit code.
pub fn serve(sock: OwnedFd, node: &str) -> i32 {
    // By resource: a hold or drop is a hash lookup
    // (at 10,000 resources a scan per message made a takeover quadratic).
    let mut held: indexmap::IndexMap<String, Held> = indexmap::IndexMap::new();
    let mut hooks: Option<PathBuf> = None;
    loop {
        let (bytes, mut fds) = match recv(&sock) {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(e) => {
                tracing::error!("lock keeper: {e}; treating it as the daemon's exit");
                break;
            }
        };
        let ack = match serde_json::from_slice::<Msg>(&bytes) {
            Ok(Msg::Hello { hooks: dir }) => match dir {
                Some(d) => action::hooks::track_in(d.clone())
                    .map(|()| hooks = Some(d))
                    .map_err(|e| e.to_string()),
                None => Ok(()),
            },
            Ok(Msg::Hold {
                resource,
                actions,
                record,
                start,
            }) => match (fds.pop(), fds.is_empty()) {
                (Some(fd), true) => {
                    tracing::debug!(resource = %resource, "lock keeper: holding");
                    // A stale copy (a drop that never came) is replaced.
                    held.swap_remove(&resource);
                    held.insert(
                        resource.clone(),
                        Held {
                            resource,
                            fd,
                            actions,
                            record,
                            start: start.unwrap_or(0),
                        },
                    );
                    Ok(())
                }
                _ => Err("hold needs exactly one fd".to_string()),
            },
            Ok(Msg::Drop { resource }) => {
                tracing::debug!(resource = %resource, "lock keeper: dropping");
                held.swap_remove(&resource);
                Ok(())
            }
            Err(e) => Err(format!("bad message: {e}")),
        };
        drop(fds);
        if let Err(e) = &ack {
            tracing::error!("lock keeper: {e}");
        }
        let body = serde_json::to_vec(&Ack::from(ack)).unwrap_or_default();
        if let Err(e) = send(&sock, &body, None) {
            tracing::error!("lock keeper: answering the daemon: {e}; treating it as its exit");
            break;
        }
    }
    drop(sock);
    // First the hooks the daemon left running (it was killed, or they
    // ignored its SIGTERM): an acquire step must not land after, or while,
    // its release steps run. Blocking, bounded, before any release.
    if let Some(dir) = &hooks {
        let n = action::hooks::kill_all(dir);
        if n > 0 {
            tracing::warn!("lock keeper: killed {n} hook process group(s) the daemon left running");
        }
    }
    if held.is_empty() {
        tracing::debug!("lock keeper: the daemon is gone and nothing is held; exiting");
        return 0;
    }
    let names: Vec<&str> = held.keys().map(String::as_str).collect();
    tracing::warn!(
        "lock keeper: the daemon is gone while master of {}; running their release actions before letting the locks go",
        names.join(", ")
    );
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            // Exiting would drop the locks with our side effects in place:
            // the one thing we are here to prevent. Hold them instead until
            // someone looks (or `cleanup` runs after a kill).
            tracing::error!("lock keeper: cannot start a runtime ({e}); keeping the locks");
            loop {
                std::thread::park();
            }
        }
    };
    let all_ok = rt.block_on(futures::future::join_all(held.into_values().map(|h| {
        let span = tracing::info_span!("resource", resource = %h.resource);
        release_one(h, node).instrument(span)
    })));
    if all_ok.into_iter().all(|ok| ok) {
        0
    } else {
        1
    }
}

/// Runs `h`'s release actions until they succeed, then closes the lock fd.
/// Returns true once released.
async fn release_one(h: Held, node: &str) -> bool {
    let Held {
        resource,
        fd,
        actions,
        record,
        start,
    } = h;
    // If the daemon had already unlocked (it does so only once the release
    // actions succeeded, or after a clean rollback) and another node took
    // the lock, there is nothing of ours left to undo.
    // At the lock's own start: a whole-file lock would merge with ours and
    // hide it from the /proc/locks scan (`lock::twin`).
    if let Err(Errno::EAGAIN | Errno::EACCES) = lock_at(&fd, start) {
        // The daemon clears its record before it unlocks.
        tracing::info!("lock keeper: the lock had already been given up; nothing to undo");
        return true;
    }
    let ctx = Ctx {
        resource: resource.clone(),
        node: node.to_string(),
    };
    let mut wait = RETRY_FIRST;
    loop {
        match action::release_all(&actions, &ctx).await {
            Ok(()) => break,
            Err(e) => {
                // Even with both names of the lock file deleted the lock
                // keeps this host's contenders out (they look it up in
                // /proc/locks: `lock::twin`), so it is kept like any.
                if lock_file_gone(fd.as_fd()) {
                    tracing::error!(
                        "lock keeper: the lock file was deleted; the lock still keeps this host's contenders out, but not other hosts' on a cluster filesystem"
                    );
                }
                tracing::error!(
                    "lock keeper: release failed, keeping the lock and retrying in {wait:?}: {e}"
                );
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RETRY_MAX);
            }
        }
    }
    // Undone: a restart of the daemon must not undo it again (by then the
    // resource may be another instance's on this host).
    if let Some(r) = record {
        crate::instance::Record::at(r).clear();
    }
    drop(fd);
    tracing::info!("lock keeper: released; lock given up");
    true
}

/// The lock file was unlinked (nobody can compete for this inode again).
fn lock_file_gone(fd: BorrowedFd<'_>) -> bool {
    nix::sys::stat::fstat(fd).is_ok_and(|st| st.st_nlink == 0)
}

#[cfg(test)]
mod tests {
    use super::super::client::Keeper;
    use super::*;
    use crate::config::{ExecSpec, ResourceSpec};
    use crate::lock::file::{FdGuard, ofd_setlk};
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    use std::fs::{File, OpenOptions};
    use std::path::Path;

    fn open(path: &Path) -> File {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .unwrap()
    }

    fn locked(path: &Path) -> File {
        let f = open(path);
        ofd_setlk(&f, true).unwrap();
        f
    }

    fn try_lock(path: &Path) -> bool {
        ofd_setlk(open(path), true).is_ok()
    }

    /// A keeper client talking to `serve` on a thread.
    fn pair(
        release: Vec<String>,
        record: Option<PathBuf>,
    ) -> (Keeper, std::thread::JoinHandle<i32>) {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let keeper = Keeper::over(a, 0);
        let spec = ResourceSpec {
            name: "r".into(),
            lock: "r".into(),
            poll_interval: Duration::from_secs(1),
            actions: vec![ActionSpec::Exec(ExecSpec {
                acquire: None,
                release: Some(release),
                timeout: Duration::from_secs(10),
                env: Default::default(),
            })],
            check: None,
            prefer: Vec::new(),
            preempt: false,
            preempt_delay: Duration::ZERO,
            failures: None,
            notify: Vec::new(),
        };
        keeper.register(&spec, record);
        (keeper, std::thread::spawn(move || serve(b, "n1")))
    }

    #[test]
    fn held_lock_outlives_the_daemon_fd_until_release_actions_ran() {
        let dir = tempfile::tempdir().unwrap();
        let (lock, log) = (dir.path().join("r.lock"), dir.path().join("log"));
        let record = dir.path().join("applied-r");
        std::fs::write(&record, "").unwrap();
        let hook = format!(
            "echo \"$DLM_ELECTD_NODE $DLM_ELECTD_EVENT $DLM_ELECTD_RESOURCE\" >> {}",
            log.display()
        );
        let (keeper, t) = pair(
            vec!["/bin/sh".into(), "-c".into(), hook],
            Some(record.clone()),
        );
        keeper.call(&Msg::Hello { hooks: None }, None).unwrap();
        let f = locked(&lock);
        keeper.hold("r", f.as_fd(), 0).unwrap();
        drop(f);
        assert!(!try_lock(&lock), "the keeper's copy keeps the lock");
        keeper.close();
        assert_eq!(t.join().unwrap(), 0);
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "n1 release r\n");
        assert!(try_lock(&lock), "given up after the release actions");
        assert!(
            !record.exists(),
            "the applied record is cleared once undone"
        );
    }

    #[test]
    fn unlock_by_the_daemon_releases_for_both_and_drop_runs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("r.lock");
        let (keeper, t) = pair(vec!["/bin/false".into()], None);
        let f = locked(&lock);
        keeper.hold("r", f.as_fd(), 0).unwrap();
        ofd_setlk(&f, false).unwrap();
        assert!(try_lock(&lock), "F_UNLCK on our fd frees the keeper's too");
        FdGuard::release(&keeper, "r").unwrap();
        let hold_without_fd = Msg::Hold {
            resource: "x".into(),
            actions: vec![],
            record: None,
            start: None,
        };
        // The keeper's own no (Refused), not a broken conversation.
        assert!(matches!(
            keeper.call(&hold_without_fd, None),
            Err(super::super::client::KeeperError::Refused(_))
        ));
        keeper.close();
        // Nothing held: it exits at once without running the failing hook.
        assert_eq!(t.join().unwrap(), 0);
        assert!(FdGuard::release(&keeper, "r").is_err(), "closed");
    }
}
