//! The daemon's side of the keeper: starts the process, hands it each lock
//! won (as the `file` backend's [`FdGuard`]), watches it, and closes the
//! conversation at shutdown.

use super::protocol::{Ack, Msg, WireError, round_trip};
use crate::config::{ActionSpec, ResourceSpec};
use crate::lock::BoxError;
use crate::lock::file::FdGuard;
use nix::sys::socket::{
    AddressFamily, Shutdown, SockFlag, SockType, setsockopt, shutdown, socketpair, sockopt,
};
use nix::sys::time::TimeVal;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The hidden subcommand that runs the keeper.
pub const SUBCOMMAND: &str = "keep-locks";
/// How long the daemon waits for one answer before it gives the keeper up.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a call to the keeper, or its start, failed. `Refused` is the keeper's
/// own answer; `Broken` and `Unusable` mean the conversation is over.
#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    /// The keeper answered no (its words).
    #[error("{0}")]
    Refused(String),
    /// A call failed on the wire: no later call is made (a late answer
    /// would be taken for the next call's).
    #[error("lock keeper (pid {pid}) is unusable: {why}")]
    Unusable { pid: u32, why: WireError },
    /// The conversation was over before this call: why it ended.
    #[error("{0}")]
    Broken(String),
    #[error("no resource registered for lock {0:?}")]
    Unregistered(String),
    /// `hold`: the keeper has no copy of the fd.
    #[error("the lock keeper did not take it: {0}")]
    NotTaken(Box<KeeperError>),
    #[error("cannot find our own executable: {0}")]
    Exe(std::io::Error),
    #[error("socketpair: {0}")]
    Socketpair(nix::errno::Errno),
    #[error("cannot start {exe} {SUBCOMMAND}: {why}")]
    Spawn { exe: String, why: std::io::Error },
    #[error("setsockopt: {0}")]
    Setsockopt(nix::errno::Errno),
    #[error("lock keeper handshake: {0}")]
    Handshake(String),
    #[error("lock keeper (pid {pid}) did not answer: {why}")]
    NoAnswer { pid: u32, why: Box<KeeperError> },
}

/// What the keeper must know of the resource behind a lock.
#[derive(Clone)]
struct Guarded {
    resource: String,
    actions: Vec<ActionSpec>,
    record: Option<PathBuf>,
}

/// A connection to the keeper. Calls block (they run on the blocking pool
/// with the lock calls) and are serialised.
pub struct Keeper {
    pid: u32,
    conn: Mutex<Conn>,
    /// lock name → its resource, registered before the resource's runner
    /// starts.
    resources: Mutex<HashMap<String, Guarded>>,
}

struct Conn {
    sock: OwnedFd,
    /// Set once the conversation is lost (keeper dead, timed out, closed):
    /// every later call fails with it.
    broken: Option<String>,
}

impl Keeper {
    pub(super) fn over(sock: OwnedFd, pid: u32) -> Keeper {
        Keeper {
            pid,
            conn: Mutex::new(Conn { sock, broken: None }),
            resources: Mutex::new(HashMap::new()),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Tells the keeper side which resource (release actions, applied
    /// record) `spec.lock` belongs to. Called before its runner starts, and
    /// again when a reload changes the resource in place.
    pub fn register(&self, spec: &ResourceSpec, record: Option<PathBuf>) {
        self.resources.lock().unwrap().insert(
            spec.lock.clone(),
            Guarded {
                resource: spec.name.clone(),
                actions: spec.actions.clone(),
                record,
            },
        );
    }

    pub fn unregister(&self, lock: &str) {
        self.resources.lock().unwrap().remove(lock);
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

    pub(super) fn call(&self, msg: &Msg, fd: Option<RawFd>) -> Result<(), KeeperError> {
        let mut c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = &c.broken {
            return Err(KeeperError::Broken(b.clone()));
        }
        match round_trip(&c.sock, msg, fd) {
            Ok(Ack { ok: true, .. }) => Ok(()),
            Ok(Ack { error, .. }) => Err(KeeperError::Refused(
                error.unwrap_or_else(|| "refused".into()),
            )),
            Err(e) => {
                // An answer may still come late and would be taken for the
                // next call's: never talk to this keeper again.
                let e = KeeperError::Unusable {
                    pid: self.pid,
                    why: e,
                };
                c.broken = Some(e.to_string());
                Err(e)
            }
        }
    }

    fn resource_of(&self, lock: &str) -> Result<Guarded, KeeperError> {
        self.resources
            .lock()
            .unwrap()
            .get(lock)
            .cloned()
            .ok_or_else(|| KeeperError::Unregistered(lock.to_string()))
    }
}

impl FdGuard for Keeper {
    fn hold(&self, lock: &str, fd: BorrowedFd<'_>, start: i64) -> Result<(), BoxError> {
        let g = self.resource_of(lock)?;
        self.call(
            &Msg::Hold {
                resource: g.resource,
                actions: g.actions,
                record: g.record,
                start: Some(start),
            },
            Some(fd.as_raw_fd()),
        )
        .map_err(|e| KeeperError::NotTaken(Box::new(e)).into())
    }

    fn release(&self, lock: &str) -> Result<(), BoxError> {
        let g = self.resource_of(lock)?;
        self.call(
            &Msg::Drop {
                resource: g.resource,
            },
            None,
        )
        .map_err(Into::into)
    }
}

fn timeval(d: Duration) -> libc::timeval {
    libc::timeval {
        tv_sec: d.as_secs() as libc::time_t,
        tv_usec: d.subsec_micros() as libc::suseconds_t,
    }
}

/// The running keeper process, as the daemon sees it.
pub struct KeeperHandle {
    pub keeper: Arc<Keeper>,
    /// Set before we close the keeper on purpose, so its exit is not
    /// reported as a failure.
    closing: Arc<AtomicBool>,
    exited: JoinHandle<Option<std::process::ExitStatus>>,
    /// Becomes true when the keeper exits while the daemon runs.
    died: watch::Receiver<bool>,
}

impl KeeperHandle {
    /// Starts `dlm-electd keep-locks` in its own session (a terminal's
    /// Ctrl-C or a kill of the daemon's process group does not reach it),
    /// checks that it answers, and watches it: if it exits while the daemon
    /// runs, no new lock is taken (it could not be protected) and that is
    /// logged.
    pub async fn start(node: &str, hooks: PathBuf) -> Result<KeeperHandle, KeeperError> {
        let exe = std::env::current_exe().map_err(KeeperError::Exe)?;
        // CLOEXEC on both ends: only the keeper, by the pre_exec below, gets
        // its end; hooks never inherit either (a hook's leftover background
        // process would otherwise hide the daemon's death from the keeper).
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(KeeperError::Socketpair)?;
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
        let mut child = cmd.spawn().map_err(|e| KeeperError::Spawn {
            exe: exe.display().to_string(),
            why: e,
        })?;
        drop(theirs);
        let pid = child.id().unwrap_or(0);
        let limit = TimeVal::from(timeval(CALL_TIMEOUT));
        setsockopt(&ours, sockopt::ReceiveTimeout, &limit)
            .and_then(|()| setsockopt(&ours, sockopt::SendTimeout, &limit))
            .map_err(KeeperError::Setsockopt)?;
        let keeper = Keeper::over(ours, pid);
        let (keeper, hello) = tokio::task::spawn_blocking(move || {
            let r = keeper.call(&Msg::Hello { hooks: Some(hooks) }, None);
            (keeper, r)
        })
        .await
        .map_err(|e| KeeperError::Handshake(e.to_string()))?;
        if let Err(e) = hello {
            let _ = child.start_kill();
            return Err(KeeperError::NoAnswer {
                pid,
                why: Box::new(e),
            });
        }
        let keeper = Arc::new(keeper);
        tracing::debug!("lock keeper running as pid {pid}");
        let closing = Arc::new(AtomicBool::new(false));
        let (died_tx, died) = watch::channel(false);
        let exited = {
            let (keeper, closing) = (keeper.clone(), closing.clone());
            tokio::spawn(async move {
                let st = child.wait().await.ok();
                if !closing.load(Ordering::SeqCst) {
                    let how = st.map_or("?".into(), |s| s.to_string());
                    let why = format!(
                        "lock keeper (pid {pid}) exited ({how}); no lock is taken without it: releasing everything and exiting, to be started again with a new one"
                    );
                    tracing::error!("{why}");
                    keeper.set_broken(why);
                    let _ = died_tx.send(true);
                }
                st
            })
        };
        Ok(KeeperHandle {
            keeper,
            closing,
            exited,
            died,
        })
    }

    /// Resolves if the keeper exits while the daemon runs: locks won from
    /// then on could not be protected, so the daemon stops in order
    /// (releasing everything) and exits 1 for its service manager to start
    /// it again with a new keeper.
    pub async fn died(&mut self) {
        if self.died.wait_for(|d| *d).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// After every runner stopped: the keeper sees EOF. Holding nothing (a
    /// clean shutdown), it exits at once and we wait for that; holding
    /// locks we could not release, it goes on retrying their release
    /// actions after we exit, and lets each lock go once they succeed.
    pub async fn stop(mut self, left_held: bool) {
        self.closing.store(true, Ordering::SeqCst);
        self.keeper.close();
        let wait = if left_held {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(5)
        };
        let pid = self.keeper.pid();
        match tokio::time::timeout(wait, &mut self.exited).await {
            Ok(Ok(Some(st))) if st.success() => tracing::debug!("lock keeper exited"),
            Ok(Ok(Some(st))) => tracing::warn!("lock keeper (pid {pid}) {st}"),
            Ok(_) => tracing::warn!("lock keeper (pid {pid}): exit status unknown"),
            Err(_) => tracing::warn!(
                "lock keeper (pid {pid}) keeps the unreleased locks and retries their release actions"
            ),
        }
    }
}
