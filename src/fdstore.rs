//! systemd's file descriptor store for the `file` backend's lock fds.
//!
//! `systemctl kill -s KILL` (or a watchdog kill) takes the daemon and its
//! lock keeper down together: both are in the service's cgroup. The kernel
//! would drop the OFD locks with their last fds, and another node could
//! take over while our VIP still stands, before `ExecStopPost=dlm-electd
//! cleanup` removed it. So every lock fd won is also handed to systemd
//! (`FDSTORE=1`, with `FileDescriptorStoreMax=` in the unit) before the lock
//! counts as won, and taken back (`FDSTOREREMOVE=1`) when it is given up.
//! systemd keeps the store across an automatic restart and closes it when
//! the unit is fully stopped, after `ExecStopPost=` ran (systemd.service(5),
//! FileDescriptorStoreMax=; so on systemd 252, Debian 12, and later). A
//! restart gets the fds back (`LISTEN_FDS`) and resumes as master.
//!
//! Only the main process may store fds (`NotifyAccess=main`); the calls
//! here run on the blocking pool with the lock call, under its deadline.
//! Outside systemd (no `NOTIFY_SOCKET`) there is no store and this guard is
//! not used.

use crate::lock::BoxError;
use crate::lock::file::{FdGuard, store_name};
use sd_notify::NotifyState;
use std::collections::HashMap;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Mutex;

/// Why the fd store did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum FdStoreError {
    #[error("cannot remove {name} from systemd's fd store: {source}")]
    Remove {
        name: String,
        source: std::io::Error,
    },
    #[error("cannot stat the lock fd: {0}")]
    Stat(nix::errno::Errno),
}

/// The service's fd store, as a guard of lock fds.
#[derive(Default)]
pub struct FdStore {
    /// lock → the name its fd is stored under.
    names: Mutex<HashMap<String, String>>,
}

impl FdStore {
    /// The store, when we run under systemd (which has one for us): a
    /// `NOTIFY_SOCKET` that takes a message. A variable inherited by a
    /// daemon started by hand from a shell or script may point nowhere;
    /// then there is no store and the keeper alone protects the locks, as
    /// outside systemd (said once here, not a reason never to be master).
    pub fn if_available() -> Option<FdStore> {
        let socket = std::env::var_os("NOTIFY_SOCKET")?;
        match sd_notify::notify(&[NotifyState::Custom("X_DLM_ELECTD=fdstore-probe")]) {
            Ok(()) => Some(FdStore::default()),
            Err(e) => {
                tracing::warn!(
                    "NOTIFY_SOCKET={} takes no message ({e}): not under systemd, so no fd store; the lock keeper alone keeps the locks of a killed daemon",
                    socket.to_string_lossy()
                );
                None
            }
        }
    }

    /// systemd 254 and later say how many fds the store takes ($FDSTORE);
    /// a warning if fewer than `needed` (systemd would drop the rest, and
    /// with them the protection). Older ones do not say: nothing to check.
    pub fn check_room(needed: usize) {
        let Some(max) = std::env::var("FDSTORE")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
        else {
            return;
        };
        if max < needed {
            tracing::warn!(
                "the unit's fd store takes {max} fds but {needed} resources may hold a lock: raise FileDescriptorStoreMax= (a kill of the whole service would let the others' locks go before cleanup)"
            );
        }
    }

    /// Drops `name`'s fd from the store (FDSTOREREMOVE=1).
    pub fn remove(name: &str) -> Result<(), FdStoreError> {
        sd_notify::notify(&[NotifyState::FdStoreRemove, NotifyState::FdName(name)]).map_err(
            |source| FdStoreError::Remove {
                name: name.to_string(),
                source,
            },
        )
    }
}

impl FdGuard for FdStore {
    fn hold(&self, lock: &str, fd: BorrowedFd<'_>, _start: i64) -> Result<(), BoxError> {
        let ino = nix::sys::stat::fstat(fd)
            .map_err(FdStoreError::Stat)?
            .st_ino;
        let name = store_name(lock, ino);
        // FDPOLL=0: a lock file has nothing to poll (systemd drops stored
        // fds that report POLLHUP). Storing the same open file again (a
        // resumed lock) is a no-op for systemd.
        let sent = sd_notify::notify_with_fds(
            &[
                NotifyState::FdStore,
                NotifyState::FdName(&name),
                NotifyState::Custom("FDPOLL=0"),
            ],
            &[fd],
        );
        // A store that stopped taking fds (the socket went away) costs
        // the protection against a kill of daemon and keeper together, not
        // mastership: the keeper still holds a copy. Said, never fatal.
        match sent {
            Ok(()) => {
                self.names.lock().unwrap().insert(lock.to_string(), name);
            }
            Err(e) => tracing::error!(
                "systemd's fd store did not take the fd of lock {lock} ({e}): the lock keeper alone keeps it if this daemon is killed"
            ),
        }
        Ok(())
    }

    fn release(&self, lock: &str) -> Result<(), BoxError> {
        match self.names.lock().unwrap().remove(lock) {
            Some(name) => Ok(FdStore::remove(&name)?),
            None => Ok(()),
        }
    }
}

/// A lock fd the previous run of this service stored.
pub struct Stored {
    pub name: String,
    pub fd: OwnedFd,
}

/// The fds systemd passed us from the store (`LISTEN_FDS`, for this pid
/// only), marked close-on-exec so no child inherits them. Call before any
/// child is started.
pub fn take_stored() -> Vec<Stored> {
    match sd_notify::listen_fds_with_names() {
        Ok(fds) => fds
            .map(|(fd, name)| Stored {
                name,
                // SAFETY: systemd passed these fds to this process for it
                // to own; nothing else in the process knows them.
                fd: unsafe { OwnedFd::from_raw_fd(fd) },
            })
            .collect(),
        Err(e) => {
            tracing::warn!("ignoring the fds systemd passed: {e}");
            Vec::new()
        }
    }
}
