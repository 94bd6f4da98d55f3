//! `file` backend: an OFD write lock (`F_OFD_SETLK`) on `DIR/LOCK.lock`.
//!
//! OFD locks belong to the open file description, not the process, so they
//! behave the same from any thread and are dropped by the kernel when the
//! last fd closes: the process dying releases the lock at once. They work
//! between processes on one host and between hosts on a cluster filesystem
//! with POSIX locks. Lock files are never unlinked: unlinking a lock file
//! lets a newcomer lock a fresh inode while the holder keeps the old one.

use super::{HeldLock, LockBackend, LockError, TryLock};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, fcntl};
use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub struct FileBackend {
    dir: PathBuf,
}

impl FileBackend {
    pub fn new(dir: PathBuf) -> Self {
        FileBackend { dir }
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
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| LockError::Failed(format!("cannot open lock file {}: {e}", path.display())))
}

impl LockBackend for FileBackend {
    fn try_lock(&self, lock: &str) -> Result<TryLock, LockError> {
        let path = self.path(lock);
        let file = open_lock_file(&self.dir, &path)?;
        match fcntl(
            &file,
            FcntlArg::F_OFD_SETLK(&whole_file(libc::F_WRLCK as libc::c_short)),
        ) {
            Ok(_) => Ok(TryLock::Acquired(Box::new(FileLock { file, path }))),
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
    file: File,
    path: PathBuf,
}

impl FileLock {
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl HeldLock for FileLock {
    fn release(self: Box<Self>) -> Result<(), LockError> {
        // Closing the fd drops the lock too; unlocking first makes the
        // release explicit even if the fd was duplicated somewhere.
        fcntl(
            &self.file,
            FcntlArg::F_OFD_SETLK(&whole_file(libc::F_UNLCK as libc::c_short)),
        )
        .map(|_| ())
        .map_err(|e| LockError::Failed(format!("cannot unlock {}: {e}", self.path.display())))
    }
}
