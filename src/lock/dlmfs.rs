//! `dlmfs` backend: OCFS2's DLM through the dlmfs filesystem (usually /dlm).
//!
//! See shared/docs/dlmfs-semantics.md. What shapes this file:
//! - locks are per node: a second local process would "win" the same lock,
//!   so one daemon per node is enforced elsewhere (the instance flock);
//! - `open(O_RDWR|O_NONBLOCK)` is a trylock (ETXTBSY when busy) but may still
//!   sleep uninterruptibly during DLM recovery: callers bound it;
//! - `close()` leaves the lock cached on this node and other nodes' trylocks
//!   keep failing, so releasing is close *then* unlink.

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
const LVB_LEN: usize = 64;

pub struct DlmfsBackend {
    mount: PathBuf,
    domain: String,
    node: String,
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
            domain_lock: Mutex::new(None),
        }
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

    /// Checks the mount and joins the domain (mkdir; EEXIST = joined).
    fn join(&self) -> Result<PathBuf, LockError> {
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
            Ok(()) | Err(Errno::EEXIST) => self.claim_domain(&dir).map(|()| dir),
            // o2cb: local node not configured or not heartbeating (EINVAL),
            // or cannot reach the heartbeating nodes (ENOTCONN).
            Err(e @ (Errno::EINVAL | Errno::ENOTCONN | Errno::EPROTO)) => {
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

/// The record we leave in the LVB for the next holder: who we were and a
/// term number. o2cb zeroes the LVB when an EX holder's node dies, so the
/// term restarts at 1 after a node death: informational only.
fn lvb_record(node: &str, epoch: u64) -> [u8; LVB_LEN] {
    let mut buf = [0u8; LVB_LEN];
    let text = format!("dlm-electd node={node} epoch={epoch}\n");
    let n = text.len().min(LVB_LEN);
    buf[..n].copy_from_slice(&text.as_bytes()[..n]);
    buf
}

fn parse_lvb(buf: &[u8]) -> (Option<String>, u64) {
    let text = String::from_utf8_lossy(buf);
    let text = text.trim_end_matches('\0').trim();
    if text.is_empty() {
        return (None, 0);
    }
    let field = |k: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .map(str::to_string)
    };
    let epoch = field("epoch=").and_then(|e| e.parse().ok()).unwrap_or(0);
    (
        Some(field("node=").unwrap_or_else(|| text.to_string())),
        epoch,
    )
}

impl LockBackend for DlmfsBackend {
    fn try_lock(&self, lock: &str) -> Result<TryLock, LockError> {
        let dir = self.join()?;
        let path = dir.join(lock);
        let flags = nix::fcntl::OFlag::O_RDWR
            | nix::fcntl::OFlag::O_CREAT
            | nix::fcntl::OFlag::O_NONBLOCK
            | nix::fcntl::OFlag::O_CLOEXEC;
        let fd = match nix::fcntl::open(&path, flags, Mode::from_bits_truncate(0o600)) {
            Ok(fd) => fd,
            // ETXTBSY: another node holds or caches it. EAGAIN: the inode is
            // being unlinked right now (kernel teardown race): also busy.
            Err(Errno::ETXTBSY) | Err(Errno::EAGAIN) => return Ok(TryLock::Busy),
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
        // SAFETY: `fd` is a fresh descriptor we own.
        let file = unsafe { File::from_raw_fd(fd.into_raw_fd()) };
        let mut buf = [0u8; LVB_LEN];
        let n = file.read_at(&mut buf, 0).unwrap_or(0);
        let (previous, epoch) = parse_lvb(&buf[..n]);
        // Always all 64 bytes: a short write keeps the old tail.
        if let Err(e) = file.write_at(&lvb_record(&self.node, epoch + 1), 0) {
            tracing::warn!(lock, error = %e, "cannot write the lock value block");
        }
        Ok(TryLock::Acquired(Box::new(DlmfsLock {
            file,
            path,
            previous,
            epoch: epoch + 1,
        })))
    }

    fn clear_stale(&self, lock: &str) -> Result<(), LockError> {
        unlink(&self.lock_path(lock))
    }
}

fn unlink(path: &Path) -> Result<(), LockError> {
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
}

impl HeldLock for DlmfsLock {
    fn previous_holder(&self) -> Option<String> {
        Some(match &self.previous {
            Some(p) => format!("previous holder {p}, now epoch {}", self.epoch),
            None => "no previous holder recorded (first holder, or its node died)".into(),
        })
    }

    fn release(self: Box<Self>) -> Result<(), LockError> {
        let DlmfsLock { file, path, .. } = *self;
        drop(file);
        // Without the unlink the node keeps the lock cached and other nodes'
        // trylocks fail until this node dies.
        unlink(&path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lvb_round_trip() {
        let b = lvb_record("node-a", 7);
        assert_eq!(parse_lvb(&b), (Some("node-a".into()), 7));
        assert_eq!(parse_lvb(&[0u8; 64]), (None, 0));
        assert_eq!(parse_lvb(&[]), (None, 0));
    }
}
