//! The two names of a `file` lock, so that deleting a lock file can never
//! give two holders of one lock.
//!
//! An OFD lock belongs to an inode, a name only leads to it. Unlinking
//! `DIR/LOCK.lock` under a holder used to let the next contender create a
//! fresh inode at the path and lock it while the holder kept the old one.
//! So every lock inode has two names in the lock dir: `LOCK.lock` (for
//! people and older tools) and a hidden *twin* `.LOCK.lock.twin`, hard
//! links of one inode. The rules:
//!
//! 1. **Contenders open the twin first** (then the main name), never with
//!    `O_CREAT`: while either name exists every contender meets the
//!    holder's inode, on one host or across a cluster filesystem.
//! 2. **A lock counts as won only when, after locking, both names name the
//!    locked inode** ([`Names::settle`]). A missing main name is put back
//!    from the twin (`link`: the same inode, so it can never let anyone
//!    in). Anything else that makes a name point at our inode (a fresh
//!    inode, a twin put back from the main name, a main name replaced by
//!    the twin's inode) is followed, while we hold the lock, by a scan of
//!    `/proc/locks` for another holder of this lock; one found (or the
//!    names moving on before the scan), we remove the names we made
//!    before unlocking and report busy (rule 3).
//! 3. **A fresh inode only when both names are gone**, made under a
//!    temporary name, locked before it is linked as the twin (`link` fails
//!    if a twin appeared meanwhile). Holders lock the byte range from
//!    [`Names::start`] to EOF, a start that encodes the lock dir and name,
//!    so a holder whose inode lost both names still shows in `/proc/locks`
//!    as a holder of *this* lock.
//!
//! Why it is safe (on one host): let P win inode X at tP and hold it, and
//! Q win Y != X at tQ > tP. Q saw the twin name Y, P saw it name X, so
//! the twin was linked to Y at some tl in (tP, tQ), by a process R holding
//! Y's lock (a creator or a restorer; rule 2). R scanned `/proc/locks`
//! after tl and before it unlocked Y, hence before tQ: P's lock was listed,
//! so R removed its names before unlocking, and Q could not have seen the
//! twin name Y ("listed" holds exactly for a table the kernel renders in
//! one read; see `proc_locks::other_holder` for longer ones). A holder restoring its own names (the master's per-poll
//! check) makes them name the inode it already holds, which was the only
//! held one: nothing to scan.
//!
//! What rests on one host: `/proc/locks` lists only the locks of this
//! kernel. On a cluster filesystem rules 1 and 2 hold between hosts (a
//! single deleted name is put back from the other, never re-created), but
//! a holder on another host whose inode lost *both* names is invisible to
//! the scan: there a contender creates a fresh inode, and the holder finds
//! out at its next check (a master at its next poll; a workload program's
//! `run-locked` or holder within a second).

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, fcntl};
use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Where lock ranges start: far beyond any data (a lock file holds at
/// most the 64-byte holder record, `super::holder`),
/// plus 56 bits of a hash of the lock dir and name.
const BASE: i64 = 1 << 60;

/// How often one attempt re-reads names that keep changing under it before
/// it calls the lock busy for now (the caller tries again later).
const ROUNDS: usize = 16;

/// One lock's names and range.
#[derive(Debug, Clone)]
pub struct Names {
    dir: PathBuf,
    main: PathBuf,
    twin: PathBuf,
    /// Temporary names of fresh inodes start with this.
    fresh: String,
    start: i64,
}

/// What locking an opened inode came to.
pub enum Settled {
    /// Both names name our inode: ours.
    Won,
    /// Another holder exists (or the names are not ours to fix): busy.
    Busy,
    /// The names moved while we looked: open again.
    Retry,
}

/// How a contender got an inode to lock.
pub enum Opened {
    /// An existing lock inode (by the twin or the main name).
    Existing(File),
    /// A fresh inode made and linked by us, already locked and checked.
    Created(File),
    /// Both names were gone and another holder of this lock exists.
    Busy,
    /// Another contender made the names meanwhile: open again.
    Raced,
}

fn id(md: &std::fs::Metadata) -> (u64, u64) {
    (md.dev(), md.ino())
}

fn lstat_id(path: &Path) -> std::io::Result<Option<(u64, u64)>> {
    match std::fs::symlink_metadata(path) {
        Ok(md) => Ok(Some(id(&md))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// `dir` with symlinks resolved, also when it (or an ancestor) is gone
/// (`rm -rf` of the lock dir): every process on the host then computes the
/// same range start for one lock, whichever way the dir was spelt.
pub fn canonical(dir: &Path) -> PathBuf {
    if let Ok(c) = std::fs::canonicalize(dir) {
        return c;
    }
    match (dir.parent(), dir.file_name()) {
        (Some(p), Some(n)) if !p.as_os_str().is_empty() => canonical(p).join(n),
        _ => dir.to_path_buf(),
    }
}

/// FNV-1a, 64 bits: stable across builds and versions (the range start is
/// shared by every process that locks the file; `config::spread` ranks
/// nodes by it, which every node must compute alike).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The lock range `[start, EOF)` for an OFD lock call.
fn range(kind: libc::c_short, start: i64) -> libc::flock {
    // SAFETY: a plain C struct for which all-zero is valid; l_len 0 means
    // "to EOF and beyond", and l_pid must be 0 for OFD locks.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start as libc::off_t;
    fl
}

/// One non-blocking OFD write lock call on `[start, EOF)`. Any two such
/// ranges overlap, so locks from different starts (and whole-file locks)
/// still exclude each other; the start only names the lock in
/// `/proc/locks`.
pub fn lock_at(fd: impl AsFd, start: i64) -> nix::Result<()> {
    fcntl(
        fd.as_fd(),
        FcntlArg::F_OFD_SETLK(&range(libc::F_WRLCK as libc::c_short, start)),
    )
    .map(|_| ())
}

/// The same, sleeping until the lock is free (EINTR passed on).
pub fn lock_at_wait(fd: impl AsFd, start: i64) -> nix::Result<()> {
    fcntl(
        fd.as_fd(),
        FcntlArg::F_OFD_SETLKW(&range(libc::F_WRLCK as libc::c_short, start)),
    )
    .map(|_| ())
}

/// Unlocks `[0, start)`, keeping `[start, EOF)`: a lock taken on the whole
/// file (by a version before the twin names, kept in systemd's fd store)
/// then shows with its start in /proc/locks, with no moment unlocked.
pub fn trim_below(fd: impl AsFd, start: i64) {
    let mut fl = range(libc::F_UNLCK as libc::c_short, 0);
    fl.l_len = start as libc::off_t;
    let _ = fcntl(fd.as_fd(), FcntlArg::F_OFD_SETLK(&fl));
}

/// Unlocks everything this open file description holds on the file.
fn unlock(fd: impl AsFd) {
    let _ = fcntl(
        fd.as_fd(),
        FcntlArg::F_OFD_SETLK(&range(libc::F_UNLCK as libc::c_short, 0)),
    );
}

/// Opens an existing lock file at `path` (never creating it), refusing
/// anything but a regular file.
fn open_existing(path: &Path) -> std::io::Result<File> {
    // O_NOFOLLOW: a planted symlink must not make us lock what it points
    // to. O_NONBLOCK: opening a fifo or device must not hang or act.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let md = file.metadata()?;
    if md.is_file() {
        return Ok(file);
    }
    use std::os::unix::fs::FileTypeExt;
    // (Directories and sockets fail to open read-write already.)
    let kind = if md.file_type().is_fifo() {
        "a fifo"
    } else {
        "a device"
    };
    Err(std::io::Error::other(format!(
        "it is {kind}, not a regular file"
    )))
}

/// Distinct temporary names within one process.
static FRESH: AtomicU64 = AtomicU64::new(0);

impl Names {
    pub fn new(dir: &Path, lock: &str) -> Names {
        Names::in_canonical(dir, &canonical(dir), lock)
    }

    /// `new` with `canonical`, the dir's canonical form, already known
    /// (a polling standby's tries need not resolve it each time).
    pub fn in_canonical(dir: &Path, canonical: &Path, lock: &str) -> Names {
        let mut key = canonical.as_os_str().as_encoded_bytes().to_vec();
        key.push(0);
        key.extend_from_slice(lock.as_bytes());
        let start = BASE + (fnv1a(&key) & ((1 << 56) - 1)) as i64;
        Names {
            dir: dir.to_path_buf(),
            main: dir.join(format!("{lock}.lock")),
            twin: dir.join(format!(".{lock}.lock.twin")),
            fresh: format!(".{lock}.lock.new."),
            start,
        }
    }

    pub fn main(&self) -> &Path {
        &self.main
    }

    pub fn twin(&self) -> &Path {
        &self.twin
    }

    /// Where this lock's range starts (see [`lock_at`]).
    pub fn start(&self) -> i64 {
        self.start
    }

    /// A contender's inode to lock: the twin's, else the main name's, else
    /// a fresh one when both are gone and no holder of this lock is listed.
    pub fn open(&self) -> Result<Opened, TwinError> {
        for path in [&self.twin, &self.main] {
            match open_existing(path) {
                Ok(f) => return Ok(Opened::Existing(f)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                    return Err(TwinError::Symlink(path.clone()));
                }
                Err(e) => {
                    return Err(TwinError::io("open lock file", path, e));
                }
            }
        }
        self.create()
    }

    /// Both names gone: a fresh inode, locked under a temporary name, then
    /// linked as the twin (EEXIST: someone was quicker) and the main name.
    fn create(&self) -> Result<Opened, TwinError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| TwinError::io("create lock directory", &self.dir, e))?;
        let tmp = self.dir.join(format!(
            "{}{}.{}",
            self.fresh,
            std::process::id(),
            FRESH.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(|e| TwinError::io("create lock file", &tmp, e))?;
        let r = self.place(&file, &tmp);
        let _ = std::fs::remove_file(&tmp);
        match r {
            Ok(Settled::Won) => Ok(Opened::Created(file)),
            Ok(Settled::Busy) => {
                unlock(&file);
                Ok(Opened::Busy)
            }
            Ok(Settled::Retry) => {
                unlock(&file);
                Ok(Opened::Raced)
            }
            Err(e) => {
                unlock(&file);
                Err(e)
            }
        }
    }

    /// Locks the fresh inode at `tmp` and links it under both names.
    fn place(&self, file: &File, tmp: &Path) -> Result<Settled, TwinError> {
        if let Err(e) = lock_at(file, self.start) {
            // Nobody else knows this inode yet: not a holder, an odd
            // filesystem.
            return Err(TwinError::Lock {
                path: tmp.to_path_buf(),
                source: e,
            });
        }
        match std::fs::hard_link(tmp, &self.twin) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(Settled::Retry),
            Err(e) => return Err(TwinError::io("link", &self.twin, e)),
        }
        // EEXIST: put right by `settle` (main is made to name the twin's).
        let _ = std::fs::hard_link(tmp, &self.main);
        self.settle_after(file, true)
    }

    /// After locking `file`: makes both names name its inode where that
    /// is safe, and says whether the lock is ours. Call only while holding
    /// the lock on `file`; on anything but Won the caller unlocks.
    pub fn settle(&self, file: &File) -> Result<Settled, TwinError> {
        self.settle_after(file, false)
    }

    /// `settle`; `linked`: we linked the twin to this inode already.
    fn settle_after(&self, file: &File, linked: bool) -> Result<Settled, TwinError> {
        let held = file.metadata().map_err(TwinError::Fd)?;
        let ours = id(&held);
        // Whether we made a name point at our inode in a way that needs
        // the /proc/locks scan (see the module comment, rule 2).
        let mut linked = linked;
        let r = self.settle_rounds(file, ours, &mut linked);
        // Names we made that were not scanned after (names moving under
        // us, an error): removed before we unlock, or the next contender
        // could win this inode without a scan.
        if linked && !matches!(r, Ok(Settled::Won)) {
            self.unname(ours);
        }
        r
    }

    fn settle_rounds(
        &self,
        file: &File,
        ours: (u64, u64),
        linked: &mut bool,
    ) -> Result<Settled, TwinError> {
        for _ in 0..ROUNDS {
            if file.metadata().map(|m| m.nlink()).unwrap_or(0) == 0 {
                return Ok(Settled::Retry);
            }
            let twin = lstat_id(&self.twin).map_err(|e| self.stat_failed(&self.twin, e))?;
            let main = lstat_id(&self.main).map_err(|e| self.stat_failed(&self.main, e))?;
            match (twin, main) {
                (Some(t), Some(m)) if t == ours && m == ours => {
                    if *linked
                        && super::proc_locks::other_holder(self.start, ours.1)
                            .map_err(TwinError::Scan)?
                    {
                        return Ok(Settled::Busy);
                    }
                    return Ok(Settled::Won);
                }
                // The main name deleted: put back from the twin, whose
                // inode it named (never a new one).
                (Some(t), None) if t == ours => self.link(&self.twin, &self.main)?,
                // The main name replaced (a `touch` after an `rm`, an old
                // version creating it): made to name the twin's inode.
                (Some(t), Some(_)) if t == ours => {
                    self.replace_main()?;
                    *linked = true;
                }
                // The twin deleted, the main name ours: put it back.
                (None, Some(m)) if m == ours => {
                    self.link(&self.main, &self.twin)?;
                    *linked = true;
                }
                // We opened a name that has moved on since.
                _ => return Ok(Settled::Retry),
            }
        }
        Ok(Settled::Retry)
    }

    fn stat_failed(&self, path: &Path, e: std::io::Error) -> TwinError {
        TwinError::io("stat", path, e)
    }

    /// `link(from, to)`; EEXIST and ENOENT are for the next look to judge.
    fn link(&self, from: &Path, to: &Path) -> Result<(), TwinError> {
        match std::fs::hard_link(from, to) {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::NotFound
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(TwinError::Link {
                to: to.to_path_buf(),
                from: from.to_path_buf(),
                source: e,
            }),
        }
    }

    /// Makes the main name name the twin's inode in one step (rename over
    /// it), so no contender sees it missing meanwhile.
    fn replace_main(&self) -> Result<(), TwinError> {
        let tmp = self.dir.join(format!(
            "{}{}.{}",
            self.fresh,
            std::process::id(),
            FRESH.fetch_add(1, Ordering::Relaxed)
        ));
        self.link(&self.twin, &tmp)?;
        let r = std::fs::rename(&tmp, &self.main);
        let _ = std::fs::remove_file(&tmp);
        r.map_err(|e| TwinError::io("put back", &self.main, e))
    }

    /// Removes the names that name `ours` (we made them, then found another
    /// holder): nobody may win this inode while that holder holds.
    fn unname(&self, ours: (u64, u64)) {
        for path in [&self.twin, &self.main] {
            if lstat_id(path).ok().flatten() == Some(ours) {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// A holder's look at its names (the master's per-poll check, a
    /// workload program's watcher): puts a deleted name back from the
    /// other one; Err when the inode has lost both names (or they name
    /// another inode), so the lock no longer excludes everyone.
    pub fn keep(&self, file: &File) -> Result<Option<String>, TwinError> {
        let held = file.metadata().map_err(TwinError::Fd)?;
        let ours = id(&held);
        let twin = lstat_id(&self.twin).ok().flatten();
        let main = lstat_id(&self.main).ok().flatten();
        let named = |p: &Path| format!("{}", p.display());
        match (twin, main) {
            (Some(t), Some(m)) if t == ours && m == ours => Ok(None),
            (Some(t), None) if t == ours => {
                self.link(&self.twin, &self.main)?;
                Ok(Some(format!(
                    "lock file {} was deleted: put back (a link to the held inode)",
                    named(&self.main)
                )))
            }
            (None, Some(m)) if m == ours => {
                // We are the holder: the name can only lead to our inode.
                self.link(&self.main, &self.twin)?;
                Ok(Some(format!(
                    "lock file {} was deleted: put back (a link to the held inode)",
                    named(&self.twin)
                )))
            }
            (Some(t), Some(_)) if t == ours => {
                self.replace_main()?;
                Ok(Some(format!(
                    "lock file {} was replaced: made to name the held inode again",
                    named(&self.main)
                )))
            }
            _ if held.nlink() == 0 || file.metadata().map(|m| m.nlink()).unwrap_or(0) == 0 => {
                Err(TwinError::Gone {
                    main: self.main.clone(),
                    twin: self.twin.clone(),
                })
            }
            _ => Err(TwinError::Moved {
                main: self.main.clone(),
                twin: self.twin.clone(),
            }),
        }
    }
}

/// Why a `file` lock could not be taken or kept, with the paths it is
/// about (shown to admins as the messages before: `cannot … PATH: why`).
#[derive(Debug, thiserror::Error)]
pub enum TwinError {
    #[error("cannot open lock file {}: it is a symbolic link", .0.display())]
    Symlink(PathBuf),
    /// A file system call on `path`: `what` says which ("open lock file",
    /// "create lock directory", "link", "stat", "put back", ...).
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot link {} to {}: {source}", to.display(), from.display())]
    Link {
        to: PathBuf,
        from: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot lock {}: {source}", path.display())]
    Lock { path: PathBuf, source: Errno },
    #[error("cannot wait for {}: {source}", path.display())]
    Wait { path: PathBuf, source: Errno },
    #[error("cannot stat the lock fd: {0}")]
    Fd(std::io::Error),
    /// The /proc/locks scan.
    #[error("{0}")]
    Scan(std::io::Error),
    #[error(
        "lock files {} and {} are both gone, so our lock no longer excludes other hosts",
        main.display(),
        twin.display()
    )]
    Gone { main: PathBuf, twin: PathBuf },
    #[error(
        "lock files {} and {} no longer name the inode we hold, so our lock no longer excludes anyone",
        main.display(),
        twin.display()
    )]
    Moved { main: PathBuf, twin: PathBuf },
}

impl TwinError {
    fn io(what: &'static str, path: &Path, source: std::io::Error) -> TwinError {
        TwinError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A lock call's failure, for the election and the workload commands.
impl From<TwinError> for super::LockError {
    fn from(e: TwinError) -> Self {
        super::LockError::Failed(e.to_string())
    }
}

/// One attempt (`wait`: sleeping in the kernel until the holder lets go)
/// at the lock named by `names`: Some(file) won, with both names naming
/// its inode; None busy (or, waiting, told to stop).
pub fn acquire(names: &Names, wait: Option<&dyn Fn() -> bool>) -> Result<Option<File>, TwinError> {
    acquire_keeping(names, wait, &mut None)
}

/// One non-blocking attempt for a polling standby, which keeps the inode
/// it found busy open in `busy` between tries: a try is then one lock
/// call on it instead of an open, a stat, a lock call and a close.
///
/// Busy on that inode means busy, whatever the names say by now: whoever
/// holds it is the only holder of this lock until it lets go (the proof
/// in the module comment: a newcomer's inode is never won while another
/// is held). Once it is free, the lock is taken on it and settled like
/// any other (both names must name it); an inode the names have left is
/// let go and the names are opened afresh.
pub fn try_keeping_busy(names: &Names, busy: &mut Option<File>) -> Result<Option<File>, TwinError> {
    if let Some(file) = busy.take() {
        let Some(file) = lock_or_keep(names, file, busy)? else {
            return Ok(None);
        };
        match settle_locked(names, file)? {
            (Settled::Won, won) => return Ok(won),
            (Settled::Busy, _) => return Ok(None),
            // The names moved on: open them afresh below.
            (Settled::Retry, _) => {}
        }
    }
    acquire_keeping(names, None, busy)
}

/// One non-blocking lock call on `file`: Some(file) locked; None busy,
/// `file` then kept open in `busy`.
fn lock_or_keep(
    names: &Names,
    file: File,
    busy: &mut Option<File>,
) -> Result<Option<File>, TwinError> {
    match lock_at(&file, names.start) {
        Ok(()) => Ok(Some(file)),
        Err(Errno::EAGAIN) | Err(Errno::EACCES) => {
            *busy = Some(file);
            Ok(None)
        }
        Err(e) => Err(TwinError::Lock {
            path: names.main.clone(),
            source: e,
        }),
    }
}

/// Settles the lock just taken on `file`: won, it is handed back still
/// locked; anything else (an error too) unlocks it first.
fn settle_locked(names: &Names, file: File) -> Result<(Settled, Option<File>), TwinError> {
    match names.settle(&file) {
        Ok(Settled::Won) => Ok((Settled::Won, Some(file))),
        other => {
            unlock(&file);
            other.map(|s| (s, None))
        }
    }
}

/// `acquire`; a non-blocking attempt that finds an existing inode busy
/// leaves it open in `busy`.
fn acquire_keeping(
    names: &Names,
    wait: Option<&dyn Fn() -> bool>,
    busy: &mut Option<File>,
) -> Result<Option<File>, TwinError> {
    for _ in 0..ROUNDS {
        let file = match names.open()? {
            Opened::Existing(f) => f,
            Opened::Created(f) => return Ok(Some(f)),
            Opened::Busy => return Ok(None),
            Opened::Raced => continue,
        };
        let file = match wait {
            None => match lock_or_keep(names, file, busy)? {
                Some(locked) => locked,
                None => return Ok(None),
            },
            Some(stopped) => loop {
                if stopped() {
                    return Ok(None);
                }
                // EINTR: see WaitStop.
                match lock_at_wait(&file, names.start) {
                    Ok(()) => break file,
                    Err(Errno::EINTR) => continue,
                    Err(e) => {
                        return Err(TwinError::Wait {
                            path: names.main.clone(),
                            source: e,
                        });
                    }
                }
            },
        };
        match settle_locked(names, file)? {
            (Settled::Won, won) => return Ok(won),
            (Settled::Busy, _) => return Ok(None),
            (Settled::Retry, _) => {}
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_differ_by_name_and_dir_and_stay_in_range() {
        let a = Names::new(Path::new("/x/locks"), "web");
        assert_eq!(a.start, Names::new(Path::new("/x/locks"), "web").start);
        assert_ne!(a.start, Names::new(Path::new("/x/locks"), "db").start);
        assert_ne!(a.start, Names::new(Path::new("/y/locks"), "web").start);
        assert!(a.start >= BASE && a.start < BASE + (1 << 56));
    }

    fn held(dir: &Path, lock: &str) -> (Names, File) {
        let n = Names::new(dir, lock);
        (n.clone(), acquire(&n, None).unwrap().expect("free"))
    }

    #[test]
    fn a_deleted_name_leads_every_contender_to_the_held_inode() {
        let dir = tempfile::tempdir().unwrap();
        let (n, f) = held(dir.path(), "web");
        let ino = f.metadata().unwrap().ino();
        for gone in [n.main().to_path_buf(), n.twin().to_path_buf()] {
            std::fs::remove_file(&gone).unwrap();
            assert!(
                acquire(&n, None).unwrap().is_none(),
                "busy without {gone:?}"
            );
            assert!(n.keep(&f).unwrap().is_some(), "put back");
            assert_eq!(std::fs::metadata(&gone).unwrap().ino(), ino);
        }
        assert_eq!(n.keep(&f).unwrap(), None);
    }

    #[test]
    fn both_names_gone_a_listed_holder_keeps_newcomers_out_until_it_unlocks() {
        let dir = tempfile::tempdir().unwrap();
        let (n, f) = held(dir.path(), "web");
        std::fs::remove_dir_all(dir.path()).unwrap();
        assert!(acquire(&n, None).unwrap().is_none(), "the orphan is listed");
        assert!(n.keep(&f).is_err(), "the holder sees it lost");
        // No name left behind by the refused creation.
        assert!(!n.twin().exists() && !n.main().exists());
        drop(f);
        let g = crate::testing::eventually("free once the holder let go", || {
            acquire(&n, None).unwrap()
        });
        assert_eq!(n.keep(&g).unwrap(), None);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(leftovers.len(), 2, "only the two names: {leftovers:?}");
    }

    #[test]
    fn a_polling_standby_keeps_the_busy_inode_and_follows_the_names_once_it_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let (n, a) = held(dir.path(), "web");
        let ino = |f: &File| f.metadata().unwrap().ino();
        let mut busy = None;
        assert!(try_keeping_busy(&n, &mut busy).unwrap().is_none());
        assert_eq!(busy.as_ref().map(ino), Some(ino(&a)), "kept open");
        assert!(try_keeping_busy(&n, &mut busy).unwrap().is_none());
        // The holder's names deleted and a new lock made and held by C
        // after A let go: the kept inode is free but named no more, so the
        // try follows the names and finds C's inode busy.
        std::fs::remove_file(n.main()).unwrap();
        std::fs::remove_file(n.twin()).unwrap();
        drop(a);
        let c = acquire(&n, None).unwrap().expect("a fresh lock");
        assert!(try_keeping_busy(&n, &mut busy).unwrap().is_none());
        assert_eq!(busy.as_ref().map(ino), Some(ino(&c)), "now C's inode");
        // C lets go: the kept inode is won, both names naming it.
        drop(c);
        let won = try_keeping_busy(&n, &mut busy).unwrap().expect("free");
        assert!(busy.is_none());
        assert_eq!(n.keep(&won).unwrap(), None, "both names name it");
    }

    #[test]
    fn a_replaced_main_name_is_made_to_name_the_twins_inode() {
        let dir = tempfile::tempdir().unwrap();
        let (n, f) = held(dir.path(), "web");
        std::fs::remove_file(n.main()).unwrap();
        std::fs::write(n.main(), "").unwrap();
        assert!(acquire(&n, None).unwrap().is_none());
        assert!(n.keep(&f).unwrap().is_some());
        assert_eq!(
            std::fs::metadata(n.main()).unwrap().ino(),
            f.metadata().unwrap().ino()
        );
    }
}
