//! The lock keeper of the `file` backend: a small process that holds a copy
//! of every lock fd the daemon won, so that a daemon killed with SIGKILL does
//! not let another node take over while our side effects (a VIP, a service)
//! still stand. dlmfs gives this by itself (the node keeps a dead holder's
//! lock cached until `cleanup` unlinks it); an OFD lock is dropped by the
//! kernel with its last fd, so here a second holder of the fd stands in.
//!
//! How: OFD locks belong to the open file description. The daemon sends the
//! keeper a duplicate of the lock fd (SCM_RIGHTS over a private
//! `SOCK_SEQPACKET` socketpair) and waits for its ack before the lock counts
//! as won. The lock then lives as long as either process keeps its fd, and
//! `F_OFD_SETLK F_UNLCK` by the daemon drops it for both. On a normal release
//! the daemon unlocks, then tells the keeper to close its copy (`drop`).
//!
//! When the socket reaches EOF (the daemon exited or died), the keeper runs
//! the release actions of every resource it still holds, retrying with
//! backoff until they succeed, and only then closes that fd: another node can
//! take over once our side effects are gone. Holding nothing, it exits at
//! once (the clean shutdown path).
//!
//! Protocol: one JSON object per packet, daemon → keeper:
//! `{"op":"hello"}`, `{"op":"hold","resource":R,"actions":[...]}` (with the
//! fd attached), `{"op":"drop","resource":R}`; keeper → daemon:
//! `{"ok":true}` or `{"ok":false,"error":"..."}`.

use crate::action::{self, Ctx};
use crate::config::ActionSpec;
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, Shutdown, SockFlag, SockType,
    recvmsg, sendmsg, setsockopt, shutdown, socketpair, sockopt,
};
use nix::sys::time::TimeVal;
use serde::{Deserialize, Serialize};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The hidden subcommand that runs the keeper.
pub const SUBCOMMAND: &str = "keep-locks";
/// How long the daemon waits for one answer before it gives the keeper up.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest message; a resource's actions are far smaller.
const MAX_MSG: usize = 256 * 1024;
/// Release retries after the daemon died: 1 s, 2 s, 4 s, ... capped.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Msg {
    Hello,
    Hold {
        resource: String,
        actions: Vec<ActionSpec>,
    },
    Drop {
        resource: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Ack {
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The daemon's side: a connection to its keeper. Calls block (they run on
/// the blocking pool with the lock calls) and are serialised.
pub struct Keeper {
    pid: u32,
    conn: Mutex<Conn>,
}

struct Conn {
    sock: OwnedFd,
    /// Set once the conversation is lost (keeper dead, timed out, closed):
    /// every later call fails with it.
    broken: Option<String>,
}

/// The keeper process, for the daemon to wait on at shutdown.
pub struct KeeperProcess {
    child: tokio::process::Child,
}

impl Keeper {
    /// Starts `dlm-electd keep-locks` in its own session (a terminal's
    /// Ctrl-C or a kill of the daemon's process group does not reach it)
    /// and checks that it answers.
    pub async fn spawn(node: &str) -> Result<(Keeper, KeeperProcess), String> {
        let exe =
            std::env::current_exe().map_err(|e| format!("cannot find our own executable: {e}"))?;
        // CLOEXEC on both ends: only the keeper, by the pre_exec below, gets
        // its end; hooks never inherit either (a hook's leftover background
        // process would otherwise hide the daemon's death from the keeper).
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| format!("socketpair: {e}"))?;
        let raw = theirs.as_raw_fd();
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.arg(SUBCOMMAND)
            .arg("--fd")
            .arg(raw.to_string())
            .arg("--node")
            .arg(node)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID");
        // SAFETY: only async-signal-safe libc calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let flags = libc::fcntl(raw, libc::F_GETFD);
                if flags < 0 || libc::fcntl(raw, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {} {SUBCOMMAND}: {e}", exe.display()))?;
        drop(theirs);
        let pid = child.id().unwrap_or(0);
        for opt in [
            setsockopt(
                &ours,
                sockopt::ReceiveTimeout,
                &TimeVal::from(timeval(CALL_TIMEOUT)),
            ),
            setsockopt(
                &ours,
                sockopt::SendTimeout,
                &TimeVal::from(timeval(CALL_TIMEOUT)),
            ),
        ] {
            opt.map_err(|e| format!("setsockopt: {e}"))?;
        }
        let keeper = Keeper {
            pid,
            conn: Mutex::new(Conn {
                sock: ours,
                broken: None,
            }),
        };
        let (keeper, hello) = tokio::task::spawn_blocking(move || {
            let r = keeper.call(&Msg::Hello, None);
            (keeper, r)
        })
        .await
        .map_err(|e| format!("lock keeper handshake: {e}"))?;
        hello.map_err(|e| format!("lock keeper (pid {pid}) did not answer: {e}"))?;
        Ok((keeper, KeeperProcess { child }))
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Hands a duplicate of `fd` (a lock we just won) to the keeper with the
    /// release actions to run should we die; returns once it has it.
    pub fn hold(
        &self,
        resource: &str,
        fd: BorrowedFd<'_>,
        actions: &[ActionSpec],
    ) -> Result<(), String> {
        self.call(
            &Msg::Hold {
                resource: resource.to_string(),
                actions: actions.to_vec(),
            },
            Some(fd.as_raw_fd()),
        )
    }

    /// Tells the keeper to close its copy of `resource`'s lock.
    pub fn drop_lock(&self, resource: &str) -> Result<(), String> {
        self.call(
            &Msg::Drop {
                resource: resource.to_string(),
            },
            None,
        )
    }

    /// Marks the keeper unusable (it died): later calls fail with `why`.
    pub fn set_broken(&self, why: String) {
        let mut c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        c.broken.get_or_insert(why);
    }

    /// Ends the conversation: the keeper sees EOF, as if we had exited, even
    /// while fds of ours (a lock kept on purpose) stay open.
    pub fn close(&self) {
        let mut c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let _ = shutdown(c.sock.as_raw_fd(), Shutdown::Both);
        c.broken
            .get_or_insert_with(|| "the daemon is shutting down".into());
    }

    fn call(&self, msg: &Msg, fd: Option<RawFd>) -> Result<(), String> {
        let mut c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = &c.broken {
            return Err(b.clone());
        }
        match round_trip(&c.sock, msg, fd) {
            Ok(Ack { ok: true, .. }) => Ok(()),
            Ok(Ack { error, .. }) => Err(error.unwrap_or_else(|| "refused".into())),
            Err(e) => {
                // An answer may still come late and would be taken for the
                // next call's: never talk to this keeper again.
                let why = format!("lock keeper (pid {}) is unusable: {e}", self.pid);
                c.broken = Some(why.clone());
                Err(why)
            }
        }
    }
}

impl KeeperProcess {
    /// Watches the keeper: if it exits while the daemon runs, `keeper` is
    /// marked broken (no lock is taken unprotected from then on) and that is
    /// logged. Resolves with the exit status.
    pub fn watch(
        mut self,
        keeper: std::sync::Arc<Keeper>,
        closing: std::sync::Arc<AtomicBool>,
    ) -> tokio::task::JoinHandle<Option<std::process::ExitStatus>> {
        tokio::spawn(async move {
            let st = self.child.wait().await.ok();
            if !closing.load(Ordering::SeqCst) {
                let how = st.map_or("?".into(), |s| s.to_string());
                let why = format!(
                    "lock keeper (pid {}) exited ({how}); locks held now stay protected only while the daemon lives, and no new lock is taken: restart dlm-electd",
                    keeper.pid
                );
                tracing::error!("{why}");
                keeper.set_broken(why);
            }
            st
        })
    }
}

fn timeval(d: Duration) -> libc::timeval {
    libc::timeval {
        tv_sec: d.as_secs() as libc::time_t,
        tv_usec: d.subsec_micros() as libc::suseconds_t,
    }
}

fn send(sock: &OwnedFd, body: &[u8], fd: Option<RawFd>) -> Result<(), String> {
    let fds = fd.map(|f| [f]);
    let cmsgs: Vec<ControlMessage> = fds.iter().map(|f| ControlMessage::ScmRights(f)).collect();
    loop {
        match sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(body)],
            &cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Err("send timed out".into()),
            Err(e) => return Err(format!("send: {e}")),
        }
    }
}

/// One received packet: its bytes and the fds that came with it.
type Packet = (Vec<u8>, Vec<OwnedFd>);

/// The next packet; `None` at EOF.
fn recv(sock: &OwnedFd) -> Result<Option<Packet>, String> {
    let mut buf = vec![0u8; MAX_MSG];
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let r = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        );
        let msg = match r {
            Ok(m) => m,
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Err("no answer within the timeout".into()),
            Err(Errno::ECONNRESET) => return Ok(None),
            Err(e) => return Err(format!("receive: {e}")),
        };
        let mut fds = Vec::new();
        if let Ok(it) = msg.cmsgs() {
            for c in it {
                if let ControlMessageOwned::ScmRights(v) = c {
                    // SAFETY: SCM_RIGHTS installed these fds in our table
                    // just now; nobody else owns them.
                    fds.extend(v.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
                }
            }
        }
        let (n, flags) = (msg.bytes, msg.flags);
        if flags.intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC) {
            return Err("message truncated".into());
        }
        if n == 0 && fds.is_empty() {
            return Ok(None);
        }
        buf.truncate(n);
        return Ok(Some((buf, fds)));
    }
}

fn round_trip(sock: &OwnedFd, msg: &Msg, fd: Option<RawFd>) -> Result<Ack, String> {
    let body = serde_json::to_vec(msg).map_err(|e| e.to_string())?;
    send(sock, &body, fd)?;
    match recv(sock)? {
        None => Err("it is gone (EOF)".into()),
        Some((bytes, _)) => serde_json::from_slice(&bytes).map_err(|e| format!("bad answer: {e}")),
    }
}

/// What the keeper holds for one resource.
struct Held {
    resource: String,
    fd: OwnedFd,
    actions: Vec<ActionSpec>,
}

/// `dlm-electd keep-locks --fd N --node NAME`: the keeper process.
pub fn main(fd: RawFd, node: String) -> i32 {
    // Refuse anything but the socket the daemon handed us.
    let is_socket = nix::sys::stat::fstat(unsafe { BorrowedFd::borrow_raw(fd) })
        .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFSOCK);
    if fd < 3 || !is_socket {
        eprintln!(
            "dlm-electd {SUBCOMMAND}: fd {fd} is not a socket; this command is started by `dlm-electd run` only"
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
    let mut held: Vec<Held> = Vec::new();
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
            Ok(Msg::Hello) => Ok(()),
            Ok(Msg::Hold { resource, actions }) => match (fds.pop(), fds.is_empty()) {
                (Some(fd), true) => {
                    tracing::debug!(resource = %resource, "lock keeper: holding");
                    // A stale copy (a drop that never came) is replaced.
                    held.retain(|h| h.resource != resource);
                    held.push(Held {
                        resource,
                        fd,
                        actions,
                    });
                    Ok(())
                }
                _ => Err("hold needs exactly one fd".to_string()),
            },
            Ok(Msg::Drop { resource }) => {
                tracing::debug!(resource = %resource, "lock keeper: dropping");
                held.retain(|h| h.resource != resource);
                Ok(())
            }
            Err(e) => Err(format!("bad message: {e}")),
        };
        drop(fds);
        let ack = match ack {
            Ok(()) => Ack {
                ok: true,
                error: None,
            },
            Err(e) => {
                tracing::error!("lock keeper: {e}");
                Ack {
                    ok: false,
                    error: Some(e),
                }
            }
        };
        let body = serde_json::to_vec(&ack).unwrap_or_default();
        if let Err(e) = send(&sock, &body, None) {
            tracing::error!("lock keeper: answering the daemon: {e}; treating it as its exit");
            break;
        }
    }
    drop(sock);
    if held.is_empty() {
        tracing::debug!("lock keeper: the daemon is gone and nothing is held; exiting");
        return 0;
    }
    let names: Vec<&str> = held.iter().map(|h| h.resource.as_str()).collect();
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
    let all_ok = rt.block_on(futures::future::join_all(
        held.into_iter().map(|h| release_one(h, node)),
    ));
    if all_ok.into_iter().all(|ok| ok) {
        0
    } else {
        1
    }
}

/// Runs `h`'s release actions until they succeed, then closes the lock fd.
/// Returns false if it gave up (the lock file is gone: holding it excludes
/// nobody any more).
async fn release_one(h: Held, node: &str) -> bool {
    let Held {
        resource,
        fd,
        actions,
    } = h;
    // If the daemon had already unlocked (it does so only once the release
    // actions succeeded, or after a clean rollback) and another node took
    // the lock, there is nothing of ours left to undo.
    let lock = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    if let Err(Errno::EAGAIN | Errno::EACCES) = fcntl(&fd, FcntlArg::F_OFD_SETLK(&lock)) {
        tracing::info!(resource = %resource, "lock keeper: the lock had already been given up; nothing to undo");
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
                if lock_file_gone(fd.as_fd()) {
                    tracing::error!(resource = %resource, "lock keeper: release failed ({e}) and the lock file was removed, so the lock excludes nobody any more: giving up; `dlm-electd cleanup` retries");
                    return false;
                }
                tracing::error!(resource = %resource, "lock keeper: release failed, keeping the lock and retrying in {wait:?}: {e}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RETRY_MAX);
            }
        }
    }
    drop(fd);
    tracing::info!(resource = %resource, "lock keeper: released; lock given up");
    true
}

/// The lock file was unlinked (nobody can compete for this inode again).
fn lock_file_gone(fd: BorrowedFd<'_>) -> bool {
    nix::sys::stat::fstat(fd).is_ok_and(|st| st.st_nlink == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ExecSpec;
    use std::fs::OpenOptions;

    fn locked(path: &std::path::Path) -> std::fs::File {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .unwrap();
        let fl = libc::flock {
            l_type: libc::F_WRLCK as libc::c_short,
            l_whence: libc::SEEK_SET as libc::c_short,
            l_start: 0,
            l_len: 0,
            l_pid: 0,
        };
        fcntl(&f, FcntlArg::F_OFD_SETLK(&fl)).unwrap();
        f
    }

    fn try_lock(path: &std::path::Path) -> bool {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let fl = libc::flock {
            l_type: libc::F_WRLCK as libc::c_short,
            l_whence: libc::SEEK_SET as libc::c_short,
            l_start: 0,
            l_len: 0,
            l_pid: 0,
        };
        fcntl(&f, FcntlArg::F_OFD_SETLK(&fl)).is_ok()
    }

    fn pair() -> (Keeper, OwnedFd) {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        (
            Keeper {
                pid: 0,
                conn: Mutex::new(Conn {
                    sock: a,
                    broken: None,
                }),
            },
            b,
        )
    }

    #[test]
    fn held_lock_outlives_the_daemon_fd_until_release_actions_ran() {
        let dir = tempfile::tempdir().unwrap();
        let (lock, log) = (dir.path().join("r.lock"), dir.path().join("log"));
        let (keeper, theirs) = pair();
        let t = std::thread::spawn(move || serve(theirs, "n1"));
        keeper.call(&Msg::Hello, None).unwrap();
        let f = locked(&lock);
        let actions = vec![ActionSpec::Exec(ExecSpec {
            acquire: None,
            release: Some(vec![
                "/bin/sh".into(),
                "-c".into(),
                format!(
                    "echo \"$DLM_ELECTD_NODE $DLM_ELECTD_EVENT $DLM_ELECTD_RESOURCE\" >> {}",
                    log.display()
                ),
            ]),
            timeout: Duration::from_secs(10),
        })];
        keeper.hold("r", f.as_fd(), &actions).unwrap();
        drop(f);
        assert!(!try_lock(&lock), "the keeper's copy keeps the lock");
        keeper.close();
        assert_eq!(t.join().unwrap(), 0);
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "n1 release r\n");
        assert!(try_lock(&lock), "given up after the release actions");
    }

    #[test]
    fn unlock_by_the_daemon_releases_for_both_and_drop_runs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("r.lock");
        let (keeper, theirs) = pair();
        let t = std::thread::spawn(move || serve(theirs, "n1"));
        let f = locked(&lock);
        let fail = vec![ActionSpec::Exec(ExecSpec {
            acquire: None,
            release: Some(vec!["/bin/false".into()]),
            timeout: Duration::from_secs(10),
        })];
        keeper.hold("r", f.as_fd(), &fail).unwrap();
        let unlock = libc::flock {
            l_type: libc::F_UNLCK as libc::c_short,
            l_whence: libc::SEEK_SET as libc::c_short,
            l_start: 0,
            l_len: 0,
            l_pid: 0,
        };
        fcntl(&f, FcntlArg::F_OFD_SETLK(&unlock)).unwrap();
        assert!(try_lock(&lock), "F_UNLCK on our fd frees the keeper's too");
        keeper.drop_lock("r").unwrap();
        assert!(
            keeper
                .call(
                    &Msg::Hold {
                        resource: "x".into(),
                        actions: vec![]
                    },
                    None
                )
                .is_err()
        );
        keeper.close();
        // Nothing held: it exits at once without running the failing hook.
        assert_eq!(t.join().unwrap(), 0);
        assert!(keeper.drop_lock("r").is_err(), "closed");
    }
}
