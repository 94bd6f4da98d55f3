//! `file` backend: an OFD write lock (`F_OFD_SETLK`) on `DIR/LOCK.lock`.
//!
//! OFD locks belong to the open file description, not the process, so they
//! behave the same from any thread and are dropped by the kernel when the
//! last fd closes: the process dying releases the lock at once. They work
//! between processes on one host and between hosts on a cluster filesystem
//! with POSIX locks. Lock files are never unlinked: unlinking a lock file
//! lets a newcomer lock a fresh inode while the holder keeps the old one.
//!
//! In the daemon the backend has an [`FdGuard`] (the lock keeper): every
//! lock won is handed to it before it counts as won, so a daemon killed with
//! SIGKILL keeps its locks until the guard has undone our side effects. See
//! `crate::keeper`.
//!
//! Deleting a held lock file (an admin's `rm -rf`, systemd-tmpfiles aging
//! /tmp) would let a newcomer lock a fresh inode while we keep the old one:
//! [`HeldLock::still_held`] compares the held fd's inode with the path's.

use super::{HeldLock, LockBackend, LockError, StillHeld, TryLock, WaitStop};
use crate::config::Standby;
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, fcntl};
use std::fs::{DirBuilder, File, OpenOptions};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Whoever keeps a held lock's fd open past our own death (the lock
/// keeper), so the lock outlives a killed daemon until its side effects are
/// undone.
pub trait FdGuard: Send + Sync {
    /// Takes a copy of `fd`, the lock just won on `lock`; Ok once held.
    fn hold(&self, lock: &str, fd: BorrowedFd<'_>) -> Result<(), String>;
    /// `lock` was given up (unlocked): close the copy.
    fn release(&self, lock: &str) -> Result<(), String>;
}

pub struct FileBackend {
    dir: PathBuf,
    guard: Option<Arc<dyn FdGuard>>,
    standby: Standby,
}

impl FileBackend {
    /// Without a guard: a lock lives exactly as long as our fd (`cleanup`,
    /// tests).
    pub fn new(dir: PathBuf, standby: Standby) -> Self {
        FileBackend {
            dir,
            guard: None,
            standby,
        }
    }

    /// Every lock won is handed to `guard` before `try_lock` reports it.
    pub fn with_guard(dir: PathBuf, standby: Standby, guard: Arc<dyn FdGuard>) -> Self {
        FileBackend {
            dir,
            guard: Some(guard),
            standby,
        }
    }

    pub fn path(&self, lock: &str) -> PathBuf {
        self.dir.join(format!("{lock}.lock"))
    }
}

/// One non-blocking OFD lock call on the whole file: take the write lock
/// (`true`) or unlock.
pub fn ofd_setlk(fd: impl AsFd, lock: bool) -> nix::Result<()> {
    let kind = if lock { libc::F_WRLCK } else { libc::F_UNLCK };
    fcntl(
        fd.as_fd(),
        FcntlArg::F_OFD_SETLK(&whole_file(kind as libc::c_short)),
    )
    .map(|_| ())
}

fn whole_file(kind: libc::c_short) -> libc::flock {
    // SAFETY: a plain C struct for which all-zero is valid; zero means
    // "from offset 0 to EOF and beyond", and l_pid must be 0 for OFD locks.
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

/// Whether `path` still names the file `file` has open: a lock on a file
/// deleted or replaced since it was opened excludes nobody.
fn names(path: &Path, file: &File) -> bool {
    match (std::fs::symlink_metadata(path), file.metadata()) {
        (Ok(now), Ok(held)) => now.dev() == held.dev() && now.ino() == held.ino(),
        _ => false,
    }
}

impl FileBackend {
    /// The write lock on `file` is ours: hand it to the guard, then report
    /// it held.
    fn won(&self, lock: &str, path: PathBuf, file: File) -> Result<Box<dyn HeldLock>, LockError> {
        if let Some(g) = &self.guard
            && let Err(e) = g.hold(lock, file.as_fd())
        {
            // Never master without protection.
            let _ = ofd_setlk(&file, false);
            return Err(LockError::Failed(format!(
                "won {} but the lock keeper did not take it, so giving it up: {e}",
                path.display()
            )));
        }
        Ok(Box::new(FileLock {
            file: Some(file),
            path,
            lock: lock.to_string(),
            guard: self.guard.clone(),
        }))
    }
}

impl LockBackend for FileBackend {
    fn try_lock(&self, lock: &str) -> Result<TryLock, LockError> {
        let path = self.path(lock);
        let file = open_lock_file(&self.dir, &path)?;
        match ofd_setlk(&file, true) {
            Ok(()) => self.won(lock, path, file).map(TryLock::Acquired),
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

    fn can_wait(&self) -> bool {
        self.standby == Standby::Wait
    }

    fn wait_lock(
        &self,
        lock: &str,
        stop: &WaitStop,
    ) -> Result<Option<Box<dyn HeldLock>>, LockError> {
        let path = self.path(lock);
        loop {
            let file = open_lock_file(&self.dir, &path)?;
            loop {
                if stop.is_stopped() {
                    return Ok(None);
                }
                // Sleeps until the holder unlocks (or its last fd closes:
                // a dead master and keeper). EINTR: see WaitStop.
                match fcntl(
                    file.as_fd(),
                    FcntlArg::F_OFD_SETLKW(&whole_file(libc::F_WRLCK as libc::c_short)),
                ) {
                    Ok(_) => break,
                    Err(Errno::EINTR) => continue,
                    Err(e) => {
                        return Err(LockError::Failed(format!(
                            "cannot wait for {}: {e}",
                            path.display()
                        )));
                    }
                }
            }
            if stop.is_stopped() {
                // Won after being told to stop: nobody wants it.
                let _ = ofd_setlk(&file, false);
                return Ok(None);
            }
            // The file may have been deleted or replaced while we waited on
            // it (the master saw that and let go): wait on the new one.
            if !names(&path, &file) {
                let _ = ofd_setlk(&file, false);
                continue;
            }
            return self.won(lock, path, file).map(Some);
        }
    }
}

pub struct FileLock {
    /// None once released.
    file: Option<File>,
    path: PathBuf,
    lock: String,
    /// Holds a copy of the fd.
    guard: Option<Arc<dyn FdGuard>>,
}

impl FileLock {
    /// Unlocks (for the guard's copy too: same open file description),
    /// then has the guard close its copy.
    fn give_up(&mut self) -> Result<(), LockError> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        // Unlocking first makes the release explicit even though the fd
        // was duplicated (to the keeper).
        let r = ofd_setlk(&file, false)
            .map_err(|e| LockError::Failed(format!("cannot unlock {}: {e}", self.path.display())));
        if let Some(g) = self.guard.take()
            && let Err(e) = g.release(&self.lock)
        {
            // After F_UNLCK the keeper's copy holds no lock any more; if the
            // keeper is gone its copy is closed already.
            tracing::warn!(
                "telling the lock keeper to drop {}: {e}",
                self.path.display()
            );
        }
        r
    }
}

impl HeldLock for FileLock {
    fn still_held(&self) -> Option<StillHeld> {
        let held = self.file.as_ref()?.metadata().ok()?;
        let (dev, ino, path) = (held.dev(), held.ino(), self.path.clone());
        Some(Arc::new(move || match std::fs::symlink_metadata(&path) {
            Ok(now) if now.dev() == dev && now.ino() == ino => Ok(()),
            Ok(_) => Err(format!(
                "lock file {} was replaced, so our lock no longer excludes anyone",
                path.display()
            )),
            Err(e) => Err(format!(
                "lock file {} is gone ({e}), so our lock no longer excludes anyone",
                path.display()
            )),
        }))
    }

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
