//! `dlmfs` backend: OCFS2's DLM through the dlmfs filesystem (usually /dlm).
//!
//! See docs/dlmfs.md. What shapes this file:
//! - locks are per node: a second local process would "win" the same lock,
//!   so one daemon per node is enforced elsewhere (the instance flock);
//! - `open(O_RDWR|O_NONBLOCK)` is a trylock (ETXTBSY when busy) but may still
//!   sleep uninterruptibly during DLM recovery: callers bound it;
//! - `close()` leaves the lock cached on this node and other nodes' trylocks
//!   keep failing, so releasing is close *then* unlink;
//! - only OCFS2's o2cb stack is safe: on the user stack (fs/dlm, `pcmk`) a
//!   contended trylock never returns, so we refuse any other stack.

use super::{HeldLock, LockBackend, LockError, TryLock};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::stat::Mode;
use std::fs::File;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// statfs(2) f_type of ocfs2_dlmfs.
pub const DLMFS_MAGIC: i64 = 0x76a9_f425;
/// The lock value block dlmfs exposes as the file's contents.
pub(crate) const LVB_LEN: usize = 64;
/// Where sysfs is mounted on a real node.
pub const SYSFS_ROOT: &str = "/sys";
/// Under the sysfs root: the stack OCFS2 (and so dlmfs) joins domains with.
/// Made by ocfs2_stackglue, which dlmfs depends on.
const CLUSTER_STACK: &str = "fs/ocfs2/cluster_stack";

pub struct DlmfsBackend {
    mount: PathBuf,
    domain: String,
    node: String,
    /// Root of sysfs, for the cluster-stack check; tests use a stand-in.
    sysfs: PathBuf,
    /// A node-local flock on the domain directory, held for the life of the
    /// daemon once joined: dlmfs locks are per node, so a second daemon on
    /// this node (another runtime_dir) would "win" our locks. It gets an
    /// error instead, whatever its runtime_dir.
    domain_lock: Mutex<Option<Flock<File>>>,
}

impl DlmfsBackend {
    pub fn new(mount: PathBuf, domain: String, node: &str) -> Self {
        DlmfsBackend {
            mount,
            domain,
            node: node.to_string(),
            sysfs: PathBuf::from(SYSFS_ROOT),
            domain_lock: Mutex::new(None),
        }
    }

    /// The same backend reading the cluster stack under `root` instead of
    /// /sys (for tests; deliberately not an environment variable).
    pub fn with_sysfs(mut self, root: PathBuf) -> Self {
        self.sysfs = root;
        self
    }

    /// Takes the node-local domain flock once; later calls are free.
    fn claim_domain(&self, dir: &Path) -> Result<(), LockError> {
        let mut held = self.domain_lock.lock().unwrap();
        if held.is_some() {
            return Ok(());
        }
        let f = File::open(dir)
            .map_err(|e| LockError::Failed(format!("cannot open {}: {e}", dir.display())))?;
        match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(l) => {
                *held = Some(l);
                Ok(())
            }
            Err((_, Errno::EWOULDBLOCK)) => Err(LockError::Failed(format!(
                "another dlm-electd on this node uses domain {} (it holds the flock on {}); dlmfs locks are per node, so only one daemon per node and domain may run",
                self.domain,
                dir.display()
            ))),
            Err((_, e)) => Err(LockError::Failed(format!(
                "cannot flock {}: {e}",
                dir.display()
            ))),
        }
    }

    fn domain_dir(&self) -> PathBuf {
        self.mount.join(&self.domain)
    }

    /// Checks the stack and the mount, joins the domain (mkdir; EEXIST =
    /// joined) and claims it for this daemon. Runs before every lock call: a
    /// sysfs read is cheap, and no dlmfs open may happen on a stack we refuse.
    fn join(&self) -> Result<PathBuf, LockError> {
        let dir = self.join_unclaimed()?;
        self.claim_domain(&dir).map(|()| dir)
    }

    /// [`Self::join`] without the daemon's domain flock: for workload locks
    /// (`crate::workload`), which live beside the daemon's in its domain and
    /// bring their own node-local exclusion.
    pub fn join_unclaimed(&self) -> Result<PathBuf, LockError> {
        check_cluster_stack(&self.sysfs)?;
        let st = nix::sys::statfs::statfs(&self.mount).map_err(|e| {
            LockError::NotReady(format!("cannot statfs {}: {e}", self.mount.display()))
        })?;
        let magic = st.filesystem_type().0 as i64;
        if magic != DLMFS_MAGIC {
            return Err(LockError::NotReady(format!(
                "{} is not a dlmfs mount (filesystem magic {magic:#x}, want {DLMFS_MAGIC:#x}); is o2cb online?",
                self.mount.display()
            )));
        }
        let dir = self.domain_dir();
        match nix::unistd::mkdir(&dir, Mode::from_bits_truncate(0o700)) {
            Ok(()) | Err(Errno::EEXIST) => Ok(dir),
            // o2cb: local node not configured or not heartbeating (EINVAL),
            // or cannot reach the heartbeating nodes (ENOTCONN), or a node
            // died while we joined (EHOSTDOWN, until it is evicted).
            Err(e @ (Errno::EINVAL | Errno::ENOTCONN | Errno::EPROTO | Errno::EHOSTDOWN)) => {
                Err(LockError::NotReady(format!(
                    "cannot join domain {}: {e} (is the o2cb cluster online and heartbeating?)",
                    dir.display()
                )))
            }
            Err(e) => Err(LockError::Failed(format!(
                "cannot join domain {}: {e}",
                dir.display()
            ))),
        }
    }

    fn lock_path(&self, lock: &str) -> PathBuf {
        self.domain_dir().join(lock)
    }
}

/// Refuses any OCFS2 cluster stack but o2cb. On the user stack (`pcmk`:
/// fs/dlm with corosync) fs/dlm answers a NOQUEUE request that cannot be
/// granted asynchronously, with -EAGAIN in the lock AST; dlmfs's `user_ast`
/// only logs "lksb status value of 4294967285" and returns without clearing
/// USER_LOCK_BUSY, so a contended O_NONBLOCK open sleeps in D state forever
/// instead of failing with ETXTBSY (docs/dlmfs.md, "Cluster stack").
/// A missing file means ocfs2_stackglue is not loaded: the cluster is not
/// up yet, retried like an unmounted /dlm.
pub fn check_cluster_stack(sysfs_root: &Path) -> Result<(), LockError> {
    let path = sysfs_root.join(CLUSTER_STACK);
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim_end() == "o2cb" => Ok(()),
        Ok(s) => Err(LockError::Failed(format!(
            "{} reads {:?}, not \"o2cb\": dlm-electd's dlmfs backend needs the o2cb stack (on any other stack a contended trylock on /dlm never returns: it sleeps in the kernel for good); run o2cb, or use another backend",
            path.display(),
            s.trim_end()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(LockError::NotReady(format!(
            "{} does not exist (ocfs2_stackglue is not loaded); is o2cb online?",
            path.display()
        ))),
        Err(e) => Err(LockError::Failed(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// For `check-config` on a node: why the dlmfs backend cannot run here, or
/// None. A cluster that is merely not up yet is no problem of the config.
pub fn cluster_stack_problem(sysfs_root: &Path) -> Option<String> {
    match check_cluster_stack(sysfs_root) {
        Err(LockError::Failed(m)) => Some(m),
        Ok(()) | Err(LockError::NotReady(_)) => None,
    }
}

/// One trylock of the dlmfs lock at `path`: EX (read-write), created if
/// missing, close-on-exec, and never a blocking open (that would sleep
/// uninterruptibly while another node holds the lock). None: busy —
/// ETXTBSY, another node holds or caches it; EAGAIN, the inode is being
/// unlinked right now (the kernel's teardown race), busy as well.
pub fn trylock_open(path: &Path) -> Result<Option<File>, Errno> {
    let flags = nix::fcntl::OFlag::O_RDWR
        | nix::fcntl::OFlag::O_CREAT
        | nix::fcntl::OFlag::O_NONBLOCK
        | nix::fcntl::OFlag::O_CLOEXEC;
    match nix::fcntl::open(path, flags, Mode::from_bits_truncate(0o600)) {
        Ok(fd) => Ok(Some(File::from(fd))),
        Err(Errno::ETXTBSY) | Err(Errno::EAGAIN) => Ok(None),
        Err(e) => Err(e),
    }
}

impl LockBackend for DlmfsBackend {
    fn try_lock(&self, lock: &str) -> Result<TryLock, LockError> {
        let dir = self.join()?;
        let path = dir.join(lock);
        let file = match trylock_open(&path) {
            Ok(Some(file)) => file,
            Ok(None) => return Ok(TryLock::Busy),
            Err(Errno::EINVAL) => {
                return Err(LockError::Failed(format!(
                    "dlmfs refused lock {}: EINVAL (lock names are 1-31 bytes, not starting with '$')",
                    path.display()
                )));
            }
            Err(e) => {
                return Err(LockError::Failed(format!(
                    "cannot open {}: {e}",
                    path.display()
                )));
            }
        };
        let mut buf = [0u8; LVB_LEN];
        let n = file.read_at(&mut buf, 0).unwrap_or(0);
        let (previous, epoch) = super::holder::parse(&buf[..n]);
        // Always all 64 bytes: a short write keeps the old tail.
        if let Err(e) = file.write_at(&super::holder::record(&self.node, epoch + 1), 0) {
            tracing::warn!(lock, error = %e, "cannot write the lock value block");
        }
        Ok(TryLock::Acquired(Box::new(DlmfsLock {
            file,
            path,
            previous,
            epoch: epoch + 1,
            bell: Some((dir, lock.to_string())),
        })))
    }

    fn clear_stale(&self, lock: &str) -> Result<(), LockError> {
        // On a refused stack the unlink itself can hang (a lock left BUSY by
        // a stuck open); a stack that is not up has nothing to clear.
        if let Some(m) = cluster_stack_problem(&self.sysfs) {
            return Err(LockError::Failed(m));
        }
        unlink(&self.lock_path(lock))
    }

    /// A *blocking* EX open: a probe from another node may have left the
    /// lock cached there at PR with no holder, which a trylock would never
    /// get past (no BAST for NOQUEUE requests); a queued request makes that
    /// node downconvert. Released like any lock: close, then unlink.
    fn take_candidate(&self, lock: &str) -> Result<Option<Box<dyn HeldLock>>, LockError> {
        let path = self.join()?.join(lock);
        let flags =
            nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CREAT | nix::fcntl::OFlag::O_CLOEXEC;
        match nix::fcntl::open(&path, flags, Mode::from_bits_truncate(0o600)) {
            Ok(fd) => {
                // SAFETY: `fd` is a fresh descriptor we own.
                let file = unsafe { File::from_raw_fd(fd.into_raw_fd()) };
                Ok(Some(Box::new(DlmfsLock {
                    file,
                    path,
                    previous: None,
                    epoch: 0,
                    bell: None,
                })))
            }
            // The inode is being unlinked by us (an earlier release).
            Err(Errno::EAGAIN) => Ok(None),
            Err(e) => Err(LockError::Failed(format!(
                "cannot open {}: {e}",
                path.display()
            ))),
        }
    }

    /// Not asked: the only question dlmfs answers is a trylock, and a PR
    /// trylock that is granted (the lock was free) stays cached on this
    /// node with no holder, where every other node's trylock (NOQUEUE,
    /// which sends no BAST) then fails until this node drops it
    /// (docs/dlmfs.md §1.2): the probe would keep out the very takeover it
    /// asks about. Unlinking after it could hang against a local open
    /// (§1.4). So `drain --wait` says it cannot tell on dlmfs.
    fn held(&self, _lock: &str) -> Result<Option<bool>, LockError> {
        Ok(None)
    }

    fn watch_release(&self, lock: &str, wake: super::Wake) -> Option<Box<dyn Send>> {
        let guard = super::bell::watch(&self.domain_dir(), lock, wake)?;
        Some(Box::new(guard))
    }

    fn value_locks(&self) -> Result<Option<Box<dyn super::ValueLocks>>, LockError> {
        Ok(Some(Box::new(super::lvb::DlmfsValues::new(
            self.join()?,
            self.sysfs.clone(),
        ))))
    }

    /// A PR trylock, closed at once and never unlinked (an unlink racing
    /// a local open can hang, docs/dlmfs.md §1.4): busy iff another node
    /// holds EX, i.e. its owner is a candidate. A PR left cached here
    /// neither hides the owner from other probes (PR is compatible with
    /// PR) nor blocks the owner's blocking EX open (it downconverts).
    fn candidate_held(&self, lock: &str) -> Result<bool, LockError> {
        let path = self.join()?.join(lock);
        let flags = nix::fcntl::OFlag::O_RDONLY
            | nix::fcntl::OFlag::O_CREAT
            | nix::fcntl::OFlag::O_NONBLOCK
            | nix::fcntl::OFlag::O_CLOEXEC;
        match nix::fcntl::open(&path, flags, Mode::from_bits_truncate(0o600)) {
            Ok(fd) => {
                drop(fd);
                Ok(false)
            }
            Err(Errno::ETXTBSY) | Err(Errno::EAGAIN) => Ok(true),
            Err(e) => Err(LockError::Failed(format!(
                "cannot open {}: {e}",
                path.display()
            ))),
        }
    }
}

pub(crate) fn unlink(path: &Path) -> Result<(), LockError> {
    match nix::unistd::unlink(path) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EBUSY) => Err(LockError::Failed(format!(
            "cannot drop {}: EBUSY, a local process still holds it (a second daemon instance, or a hook that inherited the fd?)",
            path.display()
        ))),
        Err(e) => Err(LockError::Failed(format!(
            "cannot unlink {}: {e}",
            path.display()
        ))),
    }
}

pub struct DlmfsLock {
    file: File,
    path: PathBuf,
    previous: Option<String>,
    epoch: u64,
    /// The domain directory and election lock whose doorbell a release
    /// rings (`bell`); None for a candidate lock, which nobody watches.
    bell: Option<(PathBuf, String)>,
}

impl HeldLock for DlmfsLock {
    fn previous_holder(&self) -> Option<String> {
        Some(match &self.previous {
            Some(p) => format!("previous holder {p}, now epoch {}", self.epoch),
            None => "no previous holder recorded (first holder, or its node died)".into(),
        })
    }

    fn epoch(&self) -> Option<u64> {
        (self.epoch > 0).then_some(self.epoch)
    }

    fn release(self: Box<Self>) -> Result<(), LockError> {
        let DlmfsLock {
            file, path, bell, ..
        } = *self;
        drop(file);
        // Without the unlink the node keeps the lock cached and other nodes'
        // trylocks fail until this node dies.
        unlink(&path)?;
        // Free for all now: tell the standbys at once.
        if let Some((dir, lock)) = bell {
            super::bell::ring(&dir, &lock);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in sysfs root whose cluster_stack reads `stack` (None: the
    /// file is missing, as without ocfs2_stackglue).
    fn sysfs(stack: Option<&str>) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        if let Some(s) = stack {
            let dir = root.path().join("fs/ocfs2");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("cluster_stack"), format!("{s}\n")).unwrap();
        }
        root
    }

    #[test]
    fn o2cb_stack_is_accepted() {
        let root = sysfs(Some("o2cb"));
        assert_eq!(check_cluster_stack(root.path()), Ok(()));
        assert_eq!(cluster_stack_problem(root.path()), None);
    }

    #[test]
    fn user_stack_is_refused_naming_file_value_and_fix() {
        let root = sysfs(Some("pcmk"));
        let file = root.path().join("fs/ocfs2/cluster_stack");
        let Err(LockError::Failed(m)) = check_cluster_stack(root.path()) else {
            panic!("pcmk accepted");
        };
        assert!(m.contains(&file.display().to_string()), "{m}");
        assert!(m.contains("\"pcmk\""), "{m}");
        assert!(
            m.contains("dlm-electd's dlmfs backend needs the o2cb stack"),
            "{m}"
        );
        assert_eq!(cluster_stack_problem(root.path()), Some(m));
        // Anything but o2cb, even an empty label.
        assert!(cluster_stack_problem(sysfs(Some("")).path()).is_some());
    }

    #[test]
    fn missing_stack_file_is_not_ready() {
        let root = sysfs(None);
        let e = check_cluster_stack(root.path()).unwrap_err();
        assert!(
            matches!(&e, LockError::NotReady(m) if m.contains("fs/ocfs2/cluster_stack")),
            "{e:?}"
        );
        // Not a config problem: check-config stays quiet.
        assert_eq!(cluster_stack_problem(root.path()), None);
    }

    /// The backend checks the stack before it looks at /dlm at all: with a
    /// refused stack the error is the stack's, not "not a dlmfs mount".
    #[test]
    fn backend_refuses_user_stack_before_touching_dlmfs() {
        let mount = tempfile::tempdir().unwrap();
        let be = |stack| DlmfsBackend::new(mount.path().into(), "d".into(), "n").with_sysfs(stack);
        let pcmk = sysfs(Some("pcmk"));
        match be(pcmk.path().into()).try_lock("web") {
            Err(LockError::Failed(m)) => assert!(m.contains("needs the o2cb stack"), "{m}"),
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("locked"),
        }
        match be(pcmk.path().into()).clear_stale("web") {
            Err(LockError::Failed(m)) => assert!(m.contains("needs the o2cb stack"), "{m}"),
            other => panic!("{other:?}"),
        }
        // o2cb goes on to the mount check (a tempdir is no dlmfs).
        let o2cb = sysfs(Some("o2cb"));
        match be(o2cb.path().into()).try_lock("web") {
            Err(LockError::NotReady(m)) => assert!(m.contains("is not a dlmfs mount"), "{m}"),
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("locked"),
        }
        assert_eq!(be(o2cb.path().into()).clear_stale("web"), Ok(()));
        assert!(!mount.path().join("d").exists());
    }
}
