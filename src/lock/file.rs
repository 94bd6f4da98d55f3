//! `file` backend: an OFD write lock (`F_OFD_SETLK`) on `DIR/LOCK.lock`.
//!
//! OFD locks belong to the open file description, not the process, so they
//! behave the same from any thread and are dropped by the kernel when the
//! last fd closes: the process dying releases the lock at once. They work
//! between processes on one host and between hosts on a cluster filesystem
//! with POSIX locks. Lock files are never unlinked by us: unlinking a lock
//! file would let a newcomer lock a fresh inode while the holder keeps the
//! old one.
//!
//! In the daemon the backend has [`FdGuard`]s (the lock keeper, and under
//! systemd the service's fd store): every lock won is handed to each before
//! it counts as won, so a killed daemon keeps its locks until our side
//! effects are undone. See `crate::keeper` and `crate::fdstore`. Locks a
//! previous run left in the fd store come back as *adopted* fds: the next
//! `try_lock` of that lock file resumes with one instead of a new lock.
//!
//! Deleting a held lock file (an admin's `rm -rf`, systemd-tmpfiles aging
//! /tmp) must not let a newcomer lock a fresh inode while we keep the old
//! one: every lock inode has a hidden second name, and a fresh one is made
//! only when both are gone and `/proc/locks` lists no holder (`twin`).
//! [`HeldLock::still_held`] puts a deleted name back and reports the lock
//! lost once both are gone.

use super::twin::{self, Names};
use super::{BoxError, HeldLock, LockBackend, LockError, Standby, StillHeld, TryLock, WaitStop};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, fcntl};
use std::collections::HashMap;
use std::fs::{DirBuilder, File, OpenOptions};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Whoever keeps a held lock's fd open past our own death (the lock
/// keeper), so the lock outlives a killed daemon until its side effects are
/// undone.
pub trait FdGuard: Send + Sync {
    /// Takes a copy of `fd`, the lock just won on `lock` (the range from
    /// `start` to EOF: see `twin::lock_at`); Ok once held.
    fn hold(&self, lock: &str, fd: BorrowedFd<'_>, start: i64) -> Result<(), BoxError>;
    /// `lock` was given up (unlocked): close the copy.
    fn release(&self, lock: &str) -> Result<(), BoxError>;
}

pub struct FileBackend {
    dir: PathBuf,
    guards: Vec<Arc<dyn FdGuard>>,
    standby: Standby,
    /// Lock fds a previous run of this service left held (systemd's fd
    /// store), by the (device, inode) of the file they lock.
    adopted: Mutex<HashMap<(u64, u64), Adopted>>,
    /// The lock dir, symlinks resolved (for `twin`'s range start).
    canonical: std::sync::OnceLock<PathBuf>,
    /// The statfs type of the filesystem the lock dir was judged on at
    /// start (`super::filesystem`); None: not checked (tests, `cleanup`).
    judged: Option<u32>,
    /// This node's name, for the holder record a new master leaves in the
    /// lock file (`super::holder`).
    node: String,
    /// Per lock, the inode its last try found busy, kept open so that the
    /// next try is one lock call (`twin::try_keeping_busy`).
    busy: Mutex<HashMap<String, File>>,
}

/// A lock fd kept for us by systemd across a restart.
pub struct Adopted {
    pub file: File,
    /// Its name in the store.
    pub name: String,
}

impl FileBackend {
    /// Without guards: a lock lives exactly as long as our fd (`cleanup`,
    /// tests).
    pub fn new(dir: PathBuf, standby: Standby) -> Self {
        Self::with_guards(dir, standby, Vec::new())
    }

    /// Every lock won is handed to each of `guards`, in order, before
    /// `try_lock` or `wait_lock` reports it.
    pub fn with_guards(dir: PathBuf, standby: Standby, guards: Vec<Arc<dyn FdGuard>>) -> Self {
        FileBackend {
            dir,
            guards,
            standby,
            adopted: Mutex::new(HashMap::new()),
            canonical: std::sync::OnceLock::new(),
            judged: None,
            node: String::new(),
            busy: Mutex::new(HashMap::new()),
        }
    }

    /// Names `node` in the holder records its wins leave (`super::holder`).
    pub fn as_node(mut self, node: &str) -> Self {
        self.node = node.to_string();
        self
    }

    /// Takes locks only while the lock dir is on a filesystem of type
    /// `f_type`, the one the lock dir was judged on at start: a filesystem
    /// mounted over it since (say the shared OCFS2 volume, mounted later
    /// on each node) was never judged, so no lock is taken there. One
    /// statfs of the lock dir per lock call.
    pub fn judged_on(mut self, f_type: u32) -> Self {
        self.judged = Some(f_type);
        self
    }

    /// Err if the lock dir is no longer on the judged filesystem. A dir
    /// not made yet is made on the one it was judged by (its nearest
    /// existing ancestor's, checked at start).
    fn on_judged_filesystem(&self) -> Result<(), LockError> {
        let Some(want) = self.judged else {
            return Ok(());
        };
        let got = match nix::sys::statfs::statfs(&self.dir) {
            Ok(s) => s.filesystem_type().0 as u32,
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => {
                return Err(LockError::Failed(format!(
                    "cannot statfs {}: {e}",
                    self.dir.display()
                )));
            }
        };
        if got != want {
            return Err(LockError::Failed(format!(
                "{} is on another filesystem (statfs type {got:#x}) than the lock dir was judged on at start ({want:#x}): something was mounted over it; restart to have it judged (docs/lock-backends.md)",
                self.dir.display()
            )));
        }
        Ok(())
    }

    pub fn path(&self, lock: &str) -> PathBuf {
        self.dir.join(format!("{lock}.lock"))
    }

    /// The lock's two names and range (see `twin`).
    pub fn names(&self, lock: &str) -> Names {
        // Resolved once the dir exists (it stays the same path after an
        // `rm -rf` and re-creation); before, at every call.
        let canonical = match self.canonical.get() {
            Some(c) => c.clone(),
            None if self.dir.is_dir() => self
                .canonical
                .get_or_init(|| twin::canonical(&self.dir))
                .clone(),
            None => twin::canonical(&self.dir),
        };
        Names::in_canonical(&self.dir, &canonical, lock)
    }

    /// Takes `fd`, a lock fd a previous run of ours still held (stored
    /// under `name`), to resume with when `try_lock` is asked for the file
    /// it locks. Err (with the fd back): it is not a lock file.
    pub fn adopt(&self, fd: OwnedFd, name: String) -> Result<(), (OwnedFd, String)> {
        let file = File::from(fd);
        match file.metadata() {
            Ok(md) if md.is_file() => {
                self.adopted
                    .lock()
                    .unwrap()
                    .insert((md.dev(), md.ino()), Adopted { file, name });
                Ok(())
            }
            Ok(_) => Err((file.into(), "not a regular file".into())),
            Err(e) => Err((file.into(), format!("cannot stat it: {e}"))),
        }
    }

    /// Takes out the adopted fds that lock none of `locks`' files as they
    /// are now (a resource left the config, or its lock file was
    /// replaced): they are no configured resource's to resume.
    pub fn unconfigured(&self, locks: &[&str]) -> Vec<Adopted> {
        let keep: Vec<(u64, u64)> = locks
            .iter()
            .map(|l| self.names(l))
            .flat_map(|n| [n.twin().to_path_buf(), n.main().to_path_buf()])
            .filter_map(|p| std::fs::symlink_metadata(p).ok())
            .map(|md| (md.dev(), md.ino()))
            .collect();
        let mut adopted = self.adopted.lock().unwrap();
        let gone: Vec<(u64, u64)> = adopted
            .keys()
            .filter(|k| !keep.contains(k))
            .copied()
            .collect();
        gone.iter().filter_map(|k| adopted.remove(k)).collect()
    }

    /// The adopted fd for the file now named by `names`, if any, still
    /// locked, with both names put back.
    fn resume(&self, names: &Names) -> Option<File> {
        // Nothing adopted (every try but those right after a restart): no
        // stat needed.
        if self.adopted.lock().unwrap().is_empty() {
            return None;
        }
        let file = [names.twin(), names.main()].into_iter().find_map(|p| {
            let md = std::fs::symlink_metadata(p).ok()?;
            self.adopted
                .lock()
                .unwrap()
                .remove(&(md.dev(), md.ino()))
                .map(|a| a.file)
        })?;
        // Locking again what our own open file description holds succeeds
        // (at this lock's start: see `twin`); failing, it was not held
        // after all.
        if let Err(e) = twin::lock_at(&file, names.start()) {
            tracing::warn!(
                "the stored fd of {} does not hold its lock ({e}); locking anew",
                names.main().display()
            );
            return None;
        }
        twin::trim_below(&file, names.start());
        match names.keep(&file) {
            Ok(fixed) => {
                if let Some(m) = fixed {
                    tracing::warn!("{m}");
                }
                Some(file)
            }
            Err(e) => {
                tracing::warn!("not resuming the stored lock: {e}");
                None
            }
        }
    }
}

/// The name a lock fd gets in systemd's fd store (`FDNAME=`): readable, and
/// unique per lock file by its inode (names are 1 to 255 printable ASCII
/// characters without ':'; the lock's name is shown with anything else as
/// '_', and cut). Matching at adoption goes by inode, never by this name.
pub fn store_name(lock: &str, ino: u64) -> String {
    let shown: String = lock
        .chars()
        .take(200)
        .map(|c| {
            if c.is_ascii_graphic() && c != ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("lock.{shown}.{ino}")
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

/// Whether some open file description holds a lock on the file at
/// `path` (F_OFD_GETLK, which takes nothing); None if there is no file.
/// Never creates, never follows a symlink.
pub fn ofd_held(path: &Path) -> std::io::Result<Option<bool>> {
    let f = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut probe = whole_file(libc::F_WRLCK as libc::c_short);
    fcntl(f.as_fd(), FcntlArg::F_OFD_GETLK(&mut probe))?;
    Ok(Some(probe.l_type != libc::F_UNLCK as libc::c_short))
}

fn whole_file(kind: libc::c_short) -> libc::flock {
    // SAFETY: a plain C struct for which all-zero is valid; zero means
    // "from offset 0 to EOF and beyond", and l_pid must be 0 for OFD locks.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl
}

pub(crate) fn open_lock_file(dir: &Path, path: &Path) -> Result<File, LockError> {
    match open_regular(path) {
        // The directory is there (the usual case, a system call saved).
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) && !dir.is_dir() => {}
        r => return r.map_err(|e| open_failed(path, e)),
    }
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
    open_regular(path).map_err(|e| open_failed(path, e))
}

/// Opens (creating) the lock file at `path`, refusing anything but a
/// regular file.
fn open_regular(path: &Path) -> std::io::Result<File> {
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
        .open(path)?;
    let md = file.metadata()?;
    if md.is_file() {
        return Ok(file);
    }
    use std::os::unix::fs::FileTypeExt;
    let t = md.file_type();
    // (Directories and sockets fail to open read-write already.)
    let kind = if t.is_fifo() { "a fifo" } else { "a device" };
    Err(std::io::Error::other(format!(
        "it is {kind}, not a regular file"
    )))
}

fn open_failed(path: &Path, e: std::io::Error) -> LockError {
    let why = if e.raw_os_error() == Some(libc::ELOOP) {
        "it is a symbolic link".to_string()
    } else {
        e.to_string()
    };
    LockError::Failed(format!("cannot open lock file {}: {why}", path.display()))
}

impl FileBackend {
    /// A lock just won: hand it to every guard (keeper, fd store) before
    /// it counts as won; one refusing means giving it up again.
    /// `resumed`: our previous run's lock, whose holder record is ours.
    fn won(
        &self,
        lock: &str,
        names: Names,
        file: File,
        resumed: bool,
    ) -> Result<Box<dyn HeldLock>, LockError> {
        let path = names.main().to_path_buf();
        for (i, g) in self.guards.iter().enumerate() {
            if let Err(e) = g.hold(lock, file.as_fd(), names.start()) {
                // Never master without protection.
                let _ = ofd_setlk(&file, false);
                for g in &self.guards[..i] {
                    let _ = g.release(lock);
                }
                return Err(LockError::Failed(format!(
                    "won {} but {e}, so giving it up",
                    path.display()
                )));
            }
        }
        let (previous, epoch) = holder_epoch(&file, &self.node, resumed);
        Ok(Box::new(FileLock {
            file: Some(file),
            path,
            names: Some(names),
            lock: lock.to_string(),
            guards: self.guards.clone(),
            previous: Some(previous),
            epoch: Some(epoch),
        }))
    }
}

/// The holder record in a lock file we just won (`super::holder`): a
/// fresh win reads the last one and writes ours, one epoch on; a resumed
/// lock keeps the record our previous run wrote. Unwritable (a read-only
/// lock dir): the lock still counts, the epoch only informs.
fn holder_epoch(file: &File, node: &str, resumed: bool) -> (Option<String>, u64) {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; super::holder::LEN];
    let n = file.read_at(&mut buf, 0).unwrap_or(0);
    let (previous, epoch) = super::holder::parse(&buf[..n]);
    if resumed && epoch > 0 {
        return (previous, epoch);
    }
    if let Err(e) = file.write_at(&super::holder::record(node, epoch + 1), 0) {
        tracing::warn!(error = %e, "cannot write the holder record in the lock file");
    }
    (previous, epoch + 1)
}

impl LockBackend for FileBackend {
    fn try_lock(&self, lock: &str) -> Result<TryLock, LockError> {
        let names = self.names(lock);
        if let Some(file) = self.resume(&names) {
            tracing::info!(
                "{} was still locked by the previous run of this service (systemd's fd store kept it): resuming as its holder",
                names.main().display()
            );
            return self.won(lock, names, file, true).map(TryLock::Acquired);
        }
        self.on_judged_filesystem()?;
        let mut busy = self.busy.lock().unwrap().remove(lock);
        let got = twin::try_keeping_busy(&names, &mut busy)?;
        if let Some(file) = busy {
            self.busy.lock().unwrap().insert(lock.to_string(), file);
        }
        match got {
            Some(file) => self.won(lock, names, file, false).map(TryLock::Acquired),
            None => Ok(TryLock::Busy),
        }
    }

    fn clear_stale(&self, _lock: &str) -> Result<(), LockError> {
        // The kernel drops OFD locks with their last fd: nothing can be stale.
        Ok(())
    }

    fn take_candidate(&self, lock: &str) -> Result<Option<Box<dyn HeldLock>>, LockError> {
        self.on_judged_filesystem()?;
        let path = self.path(lock);
        let file = open_lock_file(&self.dir, &path)?;
        match ofd_setlk(&file, true) {
            // No guard: the keeper must not keep a dead daemon a candidate.
            Ok(()) => Ok(Some(Box::new(FileLock {
                file: Some(file),
                path,
                names: None,
                lock: lock.to_string(),
                guards: Vec::new(),
                previous: None,
                epoch: None,
            }))),
            Err(Errno::EAGAIN) | Err(Errno::EACCES) => Ok(None),
            Err(e) => Err(LockError::Failed(format!(
                "cannot lock {}: {e}",
                path.display()
            ))),
        }
    }

    /// A read lock, dropped at once with its fd: it conflicts with the
    /// owner's write lock and leaves nothing behind.
    fn candidate_held(&self, lock: &str) -> Result<bool, LockError> {
        self.on_judged_filesystem()?;
        let path = self.path(lock);
        let file = open_lock_file(&self.dir, &path)?;
        let probe = whole_file(libc::F_RDLCK as libc::c_short);
        match fcntl(file.as_fd(), FcntlArg::F_OFD_SETLK(&probe)) {
            Ok(_) => Ok(false),
            Err(Errno::EAGAIN) | Err(Errno::EACCES) => Ok(true),
            Err(e) => Err(LockError::Failed(format!(
                "cannot test {}: {e}",
                path.display()
            ))),
        }
    }

    /// F_OFD_GETLK on the lock's inode, found by either name and never
    /// created (a name made here would be a fresh inode: `twin`, rule 3):
    /// it asks without locking anything.
    fn held(&self, lock: &str) -> Result<Option<bool>, LockError> {
        self.on_judged_filesystem()?;
        let names = self.names(lock);
        for p in [names.twin(), names.main()] {
            match ofd_held(p) {
                Ok(Some(h)) => return Ok(Some(h)),
                Ok(None) => continue,
                Err(e) => return Err(open_failed(p, e)),
            }
        }
        Ok(Some(false))
    }

    fn can_wait(&self) -> bool {
        self.standby == Standby::Wait
    }

    fn forget(&self, lock: &str) {
        self.busy.lock().unwrap().remove(lock);
    }

    fn wait_lock(
        &self,
        lock: &str,
        stop: &WaitStop,
    ) -> Result<Option<Box<dyn HeldLock>>, LockError> {
        let names = self.names(lock);
        let stopped = || stop.is_stopped();
        loop {
            self.on_judged_filesystem()?;
            // Sleeps in the kernel until the holder unlocks (or its last fd
            // closes: a dead master and keeper); a won lock whose names
            // moved meanwhile (the master saw its file deleted and let go)
            // is given up inside, and the wait goes on at the new inode.
            match twin::acquire(&names, Some(&stopped))? {
                Some(file) if stop.is_stopped() => {
                    // Won after being told to stop: nobody wants it.
                    let _ = ofd_setlk(&file, false);
                    return Ok(None);
                }
                Some(file) => return self.won(lock, names, file, false).map(Some),
                None if stop.is_stopped() => return Ok(None),
                // Busy without a file to wait on: both names are gone and
                // the old holder (listed in /proc/locks) is still releasing.
                None => {
                    for _ in 0..5 {
                        if stop.is_stopped() {
                            return Ok(None);
                        }
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                }
            }
        }
    }
}

pub struct FileLock {
    /// None once released.
    file: Option<File>,
    path: PathBuf,
    /// The lock's two names (election and workload locks; None for a
    /// candidate lock, which only steers: see `take_candidate`).
    names: Option<Names>,
    lock: String,
    /// Each holds a copy of the fd.
    guards: Vec<Arc<dyn FdGuard>>,
    /// The holder record found on winning (Some(None): none), and our
    /// epoch; None for a candidate lock.
    previous: Option<Option<String>>,
    epoch: Option<u64>,
}

impl FileLock {
    /// Unlocks (for the guards' copies too: same open file description),
    /// then has each guard close its copy.
    fn give_up(&mut self) -> Result<(), LockError> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        // Unlocking first makes the release explicit even though the fd
        // was duplicated (to the keeper).
        let r = ofd_setlk(&file, false)
            .map_err(|e| LockError::Failed(format!("cannot unlock {}: {e}", self.path.display())));
        for g in std::mem::take(&mut self.guards) {
            if let Err(e) = g.release(&self.lock) {
                // After F_UNLCK a guard's copy holds no lock any more; if
                // the keeper is gone its copy is closed already.
                tracing::warn!("dropping {}: {e}", self.path.display());
            }
        }
        r
    }
}

impl HeldLock for FileLock {
    fn previous_holder(&self) -> Option<String> {
        let epoch = self.epoch?;
        Some(match self.previous.as_ref()? {
            Some(p) => format!("previous holder {p}, now epoch {epoch}"),
            None => format!("no previous holder recorded (a new lock file), now epoch {epoch}"),
        })
    }

    fn epoch(&self) -> Option<u64> {
        self.epoch
    }

    fn still_held(&self) -> Option<StillHeld> {
        let names = self.names.clone()?;
        // A duplicate of the fd (same open file description): after our
        // release it holds no lock, it only keeps the check's inode.
        let file = self.file.as_ref()?.try_clone().ok()?;
        Some(Arc::new(move || match names.keep(&file) {
            Ok(None) => Ok(()),
            Ok(Some(fixed)) => {
                tracing::warn!("{fixed}");
                Ok(())
            }
            Err(e) => Err(e.into()),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn busy(path: &Path) -> bool {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        ofd_setlk(&f, true).is_err()
    }

    #[test]
    fn each_new_holder_numbers_its_mastership_one_on_from_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let on = |n: &str| FileBackend::new(dir.path().to_path_buf(), Standby::Poll).as_node(n);
        let (a, b) = (on("a"), on("b"));
        let TryLock::Acquired(h) = a.try_lock("web").unwrap() else {
            panic!("free")
        };
        assert_eq!(h.epoch(), Some(1));
        assert!(h.previous_holder().unwrap().contains("no previous holder"));
        assert!(matches!(b.try_lock("web").unwrap(), TryLock::Busy));
        h.release().unwrap();
        let TryLock::Acquired(h) = b.try_lock("web").unwrap() else {
            panic!("released")
        };
        assert_eq!(h.epoch(), Some(2));
        assert_eq!(
            h.previous_holder().as_deref(),
            Some("previous holder a, now epoch 2")
        );
        // The record sits below the lock's range (`twin`): nothing else
        // is in the file.
        let text = std::fs::read(dir.path().join("web.lock")).unwrap();
        assert_eq!(super::super::holder::parse(&text), (Some("b".into()), 2));
        // A candidate lock has no epoch.
        let c = a.take_candidate("web.c1").unwrap().unwrap();
        assert_eq!(c.epoch(), None);
        // a, busy now, keeps b's inode open for its next try until told
        // to forget the lock.
        assert!(matches!(a.try_lock("web").unwrap(), TryLock::Busy));
        assert!(a.busy.lock().unwrap().contains_key("web"));
        a.forget("web");
        assert!(a.busy.lock().unwrap().is_empty());
    }

    #[test]
    fn store_names_are_valid_fdnames_and_unique_per_inode() {
        assert_eq!(store_name("web", 12), "lock.web.12");
        let odd = store_name("a:b c\u{e9}", 7);
        assert_eq!(odd, "lock.a_b_c_.7");
        let long = store_name(&"x".repeat(250), u64::MAX);
        assert!(long.len() <= 255, "{}", long.len());
        assert_ne!(store_name("a:b", 1), store_name("a_b", 2));
    }

    #[test]
    fn an_adopted_fd_resumes_its_lock_and_the_others_are_unconfigured() {
        let dir = tempfile::tempdir().unwrap();
        let backend = FileBackend::new(dir.path().to_path_buf(), Standby::Poll);
        // What a previous run left in the store: locked fds.
        let stored = |lock: &str| {
            let path = backend.path(lock);
            let f = open_lock_file(dir.path(), &path).unwrap();
            ofd_setlk(&f, true).unwrap();
            (OwnedFd::from(f), path)
        };
        let (web_fd, web_path) = stored("web");
        let (old_fd, old_path) = stored("old");
        backend.adopt(web_fd, "lock.web.1".into()).unwrap();
        backend.adopt(old_fd, "lock.old.2".into()).unwrap();

        let gone = backend.unconfigured(&["web"]);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].name, "lock.old.2");
        let TryLock::Acquired(resumed) = backend.try_lock("web").unwrap() else {
            panic!("the adopted fd must resume, not find its own lock busy")
        };
        assert!(busy(&web_path));
        // The whole-file lock it was stored with now shows from this
        // lock's start (what the /proc/locks scan looks for).
        let start = backend.names("web").start();
        assert!(crate::lock::proc_locks::other_holder(start, 0).unwrap());
        resumed.release().unwrap();
        crate::testing::eventually("released", || {
            (!crate::lock::proc_locks::other_holder(start, 0).unwrap() && !busy(&web_path))
                .then_some(())
        });
        assert!(busy(&old_path), "held until let go");
        drop(gone);
        crate::testing::eventually("unconfigured lock let go", || {
            (!busy(&old_path)).then_some(())
        });
    }

    #[test]
    fn held_asks_without_creating_or_locking() {
        let dir = tempfile::tempdir().unwrap();
        let b = FileBackend::new(dir.path().to_path_buf(), Standby::Poll);
        let held = |b: &FileBackend| b.held("web").unwrap().expect("file answers");
        assert!(!held(&b), "no file: nobody holds it");
        assert!(!b.path("web").exists(), "and none was made");
        let TryLock::Acquired(h) = b.try_lock("web").unwrap() else {
            panic!("free lock busy")
        };
        assert!(held(&b));
        std::fs::remove_file(b.path("web")).unwrap();
        assert!(held(&b), "found by its twin name");
        h.release().unwrap();
        crate::testing::eventually("not held once released", || (!held(&b)).then_some(()));
        let TryLock::Acquired(again) = b.try_lock("web").unwrap() else {
            panic!("a probe kept the lock")
        };
        again.release().unwrap();
    }

    /// A lock file on another filesystem than the one judged at start (a
    /// mount over the lock dir since) is never locked.
    #[test]
    fn locks_only_on_the_filesystem_judged_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let here = crate::lock::filesystem::probe(dir.path()).unwrap().f_type;
        let other = crate::lock::filesystem::magic::OCFS2;
        assert_ne!(here, other, "the test dir must not be on OCFS2");
        let moved = FileBackend::new(dir.path().to_path_buf(), Standby::Poll).judged_on(other);
        for r in [
            moved.try_lock("web").map(|_| ()),
            moved.take_candidate("web.c0").map(|_| ()),
            moved.candidate_held("web.c0").map(|_| ()),
        ] {
            match r {
                Err(LockError::Failed(e)) => {
                    assert!(
                        e.contains("than the lock dir was judged on at start"),
                        "{e}"
                    )
                }
                _ => panic!("locked on another filesystem"),
            }
        }
        assert!(!moved.path("web").exists(), "nothing created there");
        let same = FileBackend::new(dir.path().to_path_buf(), Standby::Poll).judged_on(here);
        let TryLock::Acquired(held) = same.try_lock("web").unwrap() else {
            panic!("free lock busy")
        };
        held.release().unwrap();
    }
}
