//! `file` backend: an OFD write lock (`F_OFD_SETLK`) on `DIR/LOCK.lock`.
//!
//! OFD locks belong to the open file description, not the process, so they
//! behave the same from any thread and are dropped by the kernel when the
//! last fd closes: the process dying releases the lock at once. They work
//! between processes on one host and between hosts on a cluster filesystem
//! with POSIX locks. Lock files are never unlinked: unlinking a lock file
//! lets a newcomer lock a fresh inode while the holder keeps the old one.
//!
//! In the daemon the backend has a [`Keeper`]: every lock won is handed to
//! it (with its resource's release actions) before it counts as won, so a
//! daemon killed with SIGKILL keeps its locks until the keeper has run the
//! release actions. See `keeper.rs`.

use super::keeper::Keeper;
use super::{HeldLock, LockBackend, LockError, TryLock};
use crate::config::{ActionSpec, ResourceSpec};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, fcntl};
use std::collections::HashMap;
use std::fs::{DirBuilder, File, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub struct FileBackend {
    dir: PathBuf,
    keeper: Option<Arc<Keeper>>,
    /// lock name → (resource, its actions), for the keeper.
    resources: Mutex<HashMap<String, (String, Vec<ActionSpec>)>>,
}

impl FileBackend {
    /// Without a keeper: a lock lives exactly as long as our fd (`cleanup`,
    /// tests).
    pub fn new(dir: PathBuf) -> Self {
        FileBackend {
            dir,
            keeper: None,
            resources: Mutex::new(HashMap::new()),
        }
    }

    /// Every lock won is handed to `keeper` before `try_lock` reports it;
    /// `register` must name the resource of each lock first.
    pub fn with_keeper(dir: PathBuf, keeper: Arc<Keeper>) -> Self {
        FileBackend {
            keeper: Some(keeper),
            ..FileBackend::new(dir)
        }
    }

    /// Tells the backend which resource (and release actions) `spec.lock`
    /// belongs to, for the keeper. Called before the resource's runner starts.
    pub fn register(&self, spec: &ResourceSpec) {
        self.resources
            .lock()
            .unwrap()
            .insert(spec.lock.clone(), (spec.name.clone(), spec.actions.clone()));
    }

    pub fn unregister(&self, lock: &str) {
        self.resources.lock().unwrap().remove(lock);
    }

    pub fn path(&self, lock: &str) -> PathBuf {
        self.dir.join(format!("{lock}.lock"))
    }
}

fn whole_file(kind: libc::c_short) -> libc::flock {
    // SAFETY-free: a plain C struct; zero means "from offset 0 to EOF and
    // beyond", and l_pid must be 0 for OFD locks.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl
}

fn open_lock_file(dir: &Path, path: &Path) -> Result<File, LockError> {
    if !dir.is_dir() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                LockError::Failed(format!(
                    "cannot create lock directory {}: {e}",
                    dir.display()
                ))
            })?;
    }
    // std opens with O_CLOEXEC: hook processes must never inherit a lock.
    // O_NOFOLLOW: a symlink planted here must not make us open (read-write,
    // as root) and lock whatever it points to. O_NONBLOCK: opening a fifo
    // or device must not hang or act; we refuse those just below.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            let why = if e.raw_os_error() == Some(libc::ELOOP) {
                "it is a symbolic link".to_string()
            } else {
                e.to_string()
            };
            LockError::Failed(format!("cannot open lock file {}: {why}", path.display()))
        })?;
    match file.metadata() {
        Ok(md) if md.is_file() => Ok(file),
        Ok(md) => {
            use std::os::unix::fs::FileTypeExt;
            let t = md.file_type();
            // (Directories and sockets fail to open read-write already.)
            let kind = if t.is_fifo() { "a fifo" } else { "a device" };
            Err(LockError::Failed(format!(
                "lock file {} is {kind}, not a regular file",
                path.display()
            )))
        }
        Err(e) => Err(LockError::Failed(format!(
            "cannot stat lock file {}: {e}",
            path.display()
        ))),
    }
}

impl FileBackend {
    /// Gives `keeper` its copy of the lock just won on `file`; on failure
    /// the lock is given up again: never master without protection.
    fn hand_to_keeper(
        &self,
        keeper: &Arc<Keeper>,
        lock: &str,
        file: &File,
        path: &Path,
    ) -> Result<(Arc<Keeper>, String), LockError> {
        let registered = self.resources.lock().unwrap().get(lock).cloned();
        let result = match registered {
            None => Err(format!("no resource registered for lock {lock:?}")),
            Some((resource, actions)) => keeper
                .hold(&resource, file.as_fd(), &actions)
                .map(|()| resource),
        };
        match result {
            Ok(resource) => Ok((keeper.clone(), resource)),
            Err(e) => {
                let _ = unlock(file);
                Err(LockError::Failed(format!(
                    "won {} but the lock keeper did not take it, so giving it up: {e}",
                    path.display()
                )))
            }
        }
    }
}

fn unlock(file: &File) -> nix::Result<()> {
    fcntl(
        file,
        FcntlArg::F_OFD_SETLK(&whole_file(libc::F_UNLCK as libc::c_short)),
    )
    .map(|_| ())
}

impl LockBackend for FileBackend {
    fn try_lock(&self, lock: &str) -> Result<TryLock, LockError> {
        let path = self.path(lock);
        let file = open_lock_file(&self.dir, &path)?;
        match fcntl(
            &file,
            FcntlArg::F_OFD_SETLK(&whole_file(libc::F_WRLCK as libc::c_short)),
        ) {
            Ok(_) => {
                let kept = match &self.keeper {
                    None => None,
                    Some(k) => Some(self.hand_to_keeper(k, lock, &file, &path)?),
                };
                Ok(TryLock::Acquired(Box::new(FileLock {
                    file: Some(file),
                    path,
                    kept,
                })))
            }
            Err(Errno::EAGAIN) | Err(Errno::EACCES) => Ok(TryLock::Busy),
            Err(e) => Err(LockError::Failed(format!(
                "cannot lock {}: {e}",
                path.display()
            ))),
        }
    }

    fn clear_stale(&self, _lock: &str) -> Result<(), LockError> {
        // The kernel drops OFD locks with their last fd: nothing can be stale.
        Ok(())
    }
}

pub struct FileLock {
    /// None once released.
    file: Option<File>,
    path: PathBuf,
    /// The keeper holding a copy of the fd, and our resource's name there.
    kept: Option<(Arc<Keeper>, String)>,
}

impl FileLock {
    pub fn file(&self) -> &File {
        self.file.as_ref().expect("not released")
    }

    /// Unlocks (for the keeper's copy too: same open file description),
    /// then has the keeper close its copy.
    fn give_up(&mut self) -> Result<(), LockError> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        // Unlocking first makes the release explicit even though the fd
        // was duplicated (to the keeper).
        let r = unlock(&file)
            .map_err(|e| LockError::Failed(format!("cannot unlock {}: {e}", self.path.display())));
        if let Some((keeper, resource)) = self.kept.take()
            && let Err(e) = keeper.drop_lock(&resource)
        {
            // After F_UNLCK the keeper's copy holds no lock any more; if the
            // keeper is gone its copy is closed already.
            tracing::warn!(resource = %resource, "telling the lock keeper to drop {}: {e}", self.path.display());
        }
        r
    }
}

impl HeldLock for FileLock {
    fn release(mut self: Box<Self>) -> Result<(), LockError> {
        self.give_up()
    }
}

impl Drop for FileLock {
    /// Dropped without `release`: give it up as far as we can, as closing
    /// the fd alone did before the keeper held a copy.
    fn drop(&mut self) {
        let _ = self.give_up();
    }
}
