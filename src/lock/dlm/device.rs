//! The kernel's DLM devices: `dlm-control` (create and remove lockspaces)
//! and one `dlm_LOCKSPACE` per lockspace (lock, convert, unlock, cancel;
//! results read back; `poll()` says when one is waiting). See docs/dlm.md.
//!
//! What shapes this file:
//! - locks belong to the open lockspace *file*, not to the process: the
//!   kernel keeps a `struct dlm_user_proc` per open file and unlocks its
//!   locks in `device_close`, the file's release, i.e. when the last fd
//!   that shares it is closed (dup, fork, SCM_RIGHTS, the fd store);
//! - every outcome is asynchronous: a write starts an operation and returns
//!   (a new request's write returns its lock id), its completion and any
//!   blocking AST are read from the fd later. One reader per fd: a read
//!   takes the event it returns away from every other holder of the fd;
//! - a write can sleep while the DLM recovers from a node's death (it
//!   takes the lockspace's recovery lock), so callers bound it;
//! - creating a lockspace that exists only counts it once more
//!   (`ls_create_count`); each create wants its remove, or the lockspace
//!   stays after we are gone (and `dlm.service` will not stop).

use super::layout::{self, Flags, LVB_LEN};
use super::wire::{self, Ask, Event, Status};
use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::stat::{Mode, SFlag, fstat, makedev, mknod, stat};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `MISC_MAJOR`: every DLM device is a misc device with a dynamic minor.
pub const MISC_MAJOR: u64 = 10;
/// The control device's misc name (`/proc/misc`).
pub const CONTROL_NAME: &str = "dlm-control";
/// A lockspace's device is `dlm_` + its name (`dlm_device_register`).
pub const DEVICE_PREFIX: &str = "dlm_";

/// Where the devices are looked for. Tests use stand-ins.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Lists each misc device's minor and name.
    pub proc_misc: PathBuf,
    /// Directories searched in order for a device node whose numbers match;
    /// a missing node is made (mknod) in the first. devtmpfs puts the node
    /// in /dev before `misc_register` returns; the dlm package's udev rules
    /// add /dev/misc/NAME, which libdlm opens.
    pub dev_dirs: Vec<PathBuf>,
    /// How long to wait for udev or devtmpfs before making the node.
    pub node_wait: Duration,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            proc_misc: PathBuf::from("/proc/misc"),
            dev_dirs: vec![PathBuf::from("/dev/misc"), PathBuf::from("/dev")],
            node_wait: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DlmError {
    #[error(
        "the kernel's DLM is not loaded: {0} lists no {CONTROL_NAME} (load the dlm module and start dlm_controld)"
    )]
    NotLoaded(String),
    #[error(
        "cannot create lockspace {0}: EUNATCH, dlm_controld is not running (or has not configured the node yet)"
    )]
    NoDaemon(String),
    #[error("{what}: {errno}")]
    Sys { what: String, errno: Errno },
    #[error("the kernel speaks DLM device protocol {0}.{1}.{2}; this binding speaks 6.x")]
    Version(u32, u32, u32),
    #[error("{0}")]
    Node(String),
    #[error("the DLM device protocol is only encoded for 64-bit processes")]
    Not64Bit,
    #[error(transparent)]
    Wire(#[from] wire::WireError),
}

fn sys(what: impl Into<String>) -> impl FnOnce(Errno) -> DlmError {
    let what = what.into();
    move |errno| DlmError::Sys { what, errno }
}

/// The minor of misc device `name` in the text of /proc/misc.
pub fn misc_minor(proc_misc: &str, name: &str) -> Option<u32> {
    proc_misc.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        let minor = words.next()?.parse().ok()?;
        (words.next()? == name).then_some(minor)
    })
}

fn find_minor(paths: &Paths, name: &str) -> Result<Option<u32>, DlmError> {
    let text = std::fs::read_to_string(&paths.proc_misc).map_err(|e| DlmError::Sys {
        what: format!("cannot read {}", paths.proc_misc.display()),
        errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    })?;
    Ok(misc_minor(&text, name))
}

/// The misc minor of lockspace `name`'s device, None if no such lockspace
/// is on this node: what a later [`Control::remove_lockspace`] of a
/// create made by a process gone since needs.
pub fn lockspace_minor(paths: &Paths, name: &str) -> Result<Option<u32>, DlmError> {
    find_minor(paths, &format!("{DEVICE_PREFIX}{name}"))
}

/// Whether `path` is the character device `dev` (following symlinks, as
/// udev's /dev/misc entries are).
fn node_is(path: &Path, dev: libc::dev_t) -> bool {
    match stat(path) {
        Ok(st) => {
            SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR
                && st.st_rdev == dev
        }
        Err(_) => false,
    }
}

/// Opens misc device `name` with `minor`: a node that names it in one of
/// the device dirs, waiting up to `node_wait` for one to appear, else one
/// made by us in the first dir (libdlm waits for udev only). The fd is
/// checked to be that device, whatever raced with us.
fn open_misc(paths: &Paths, name: &str, minor: u32, flags: OFlag) -> Result<OwnedFd, DlmError> {
    let dev = makedev(MISC_MAJOR, minor as u64);
    let deadline = Instant::now() + paths.node_wait;
    let found = loop {
        if let Some(p) = paths
            .dev_dirs
            .iter()
            .map(|d| d.join(name))
            .find(|p| node_is(p, dev))
        {
            break p;
        }
        if Instant::now() >= deadline {
            break make_node(paths, name, dev)?;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let fd = open(&found, flags | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(sys(format!("cannot open {}", found.display())))?;
    let st = fstat(&fd).map_err(sys(format!("cannot fstat {}", found.display())))?;
    if st.st_rdev != dev {
        return Err(DlmError::Node(format!(
            "{} is device {}:{}, not {MISC_MAJOR}:{minor} ({name})",
            found.display(),
            nix::sys::stat::major(st.st_rdev),
            nix::sys::stat::minor(st.st_rdev)
        )));
    }
    Ok(fd)
}

/// Makes the node no udev made: a stale one (another minor, left by a
/// lockspace of the same name removed while nobody cleaned up) is replaced.
fn make_node(paths: &Paths, name: &str, dev: libc::dev_t) -> Result<PathBuf, DlmError> {
    let Some(dir) = paths.dev_dirs.first() else {
        return Err(DlmError::Node(format!(
            "no device directory to make {name} in"
        )));
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| DlmError::Node(format!("cannot create {}: {e}", dir.display())))?;
    let path = dir.join(name);
    match nix::unistd::unlink(&path) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(sys(format!("cannot remove stale {}", path.display()))(e)),
    }
    match mknod(&path, SFlag::S_IFCHR, Mode::from_bits_truncate(0o600), dev) {
        // udev (or another process) made it meanwhile: open checks it.
        Ok(()) | Err(Errno::EEXIST) => Ok(path),
        Err(e) => Err(sys(format!("cannot mknod {}", path.display()))(e)),
    }
}

/// The control device: creates and removes lockspaces. Needs
/// CAP_SYS_ADMIN for both (`device_create_lockspace`).
pub struct Control {
    fd: OwnedFd,
    version: [u32; 3],
}

impl Control {
    pub fn open(paths: &Paths) -> Result<Control, DlmError> {
        if !cfg!(target_pointer_width = "64") {
            return Err(DlmError::Not64Bit);
        }
        let minor = find_minor(paths, CONTROL_NAME)?
            .ok_or_else(|| DlmError::NotLoaded(paths.proc_misc.display().to_string()))?;
        let fd = open_misc(paths, CONTROL_NAME, minor, OFlag::O_RDWR)?;
        // A read of exactly sizeof(struct dlm_device_version) answers the
        // kernel's protocol version (device_read), as libdlm asks it.
        let mut buf = [0u8; layout::DEVICE_VERSION_SIZE];
        let n =
            nix::unistd::read(&fd, &mut buf).map_err(sys("cannot read the DLM device version"))?;
        if n != buf.len() {
            return Err(DlmError::Node(format!(
                "DLM version read returned {n} bytes"
            )));
        }
        let version = wire::decode_version(&buf);
        if version[0] != layout::VERSION[0] {
            return Err(DlmError::Version(version[0], version[1], version[2]));
        }
        Ok(Control { fd, version })
    }

    /// What the kernel said its device protocol version is.
    pub fn kernel_version(&self) -> [u32; 3] {
        self.version
    }

    /// Creates lockspace `name`, or counts one more user of it if it
    /// exists; returns the misc minor of its device. Flags 0, as
    /// libdlm's `dlm_create_lockspace` (the kernel adds the cluster name
    /// and the 32-byte LVB length itself). Joining the cluster-wide
    /// lockspace happens here, through dlm_controld: it can take seconds.
    pub fn create_lockspace(&self, name: &str) -> Result<u32, DlmError> {
        let buf = wire::create_lockspace(name, 0)?;
        match nix::unistd::write(&self.fd, &buf) {
            Ok(minor) => Ok(minor as u32),
            Err(Errno::EUNATCH) => Err(DlmError::NoDaemon(name.to_string())),
            Err(e) => Err(sys(format!("cannot create lockspace {name}"))(e)),
        }
    }

    /// Takes back one create of the lockspace whose device has `minor`
    /// (`release_lockspace` in fs/dlm/lockspace.c). While others hold
    /// creates it only counts down. The last one frees the lockspace on
    /// this node (it leaves the cluster's lockspace); without `force` only
    /// if this node has no lock structures in it at all, its own or other
    /// nodes' locks it masters (EBUSY otherwise), so a plain leave from a
    /// lockspace others use mostly fails; with `force` (FORCEFREE) it goes
    /// anyway. Either way the final release first waits for every open fd
    /// of the lockspace device to be closed (the comment in
    /// `device_remove_lockspace`): a keeper that holds a copy of the fd
    /// must hold a create of its own, or our leave waits for it.
    pub fn remove_lockspace(&self, minor: u32, force: bool) -> Result<(), DlmError> {
        nix::unistd::write(&self.fd, &wire::remove_lockspace(minor, force))
            .map(drop)
            .map_err(sys(format!("cannot remove the lockspace of minor {minor}")))
    }
}

/// An open lockspace device: the locks taken through it live as long as
/// the open file (see the module doc). Dropping it closes our fd; the
/// lockspace itself stays until [`Lockspace::leave`].
pub struct Lockspace {
    fd: OwnedFd,
    name: String,
    minor: u32,
}

impl Lockspace {
    /// Creates (or joins) lockspace `name` and opens its device.
    pub fn join(name: &str, paths: &Paths) -> Result<Lockspace, DlmError> {
        wire::check_lockspace_name(name)?;
        let control = Control::open(paths)?;
        let minor = control.create_lockspace(name)?;
        let device = format!("{DEVICE_PREFIX}{name}");
        match open_misc(paths, &device, minor, OFlag::O_RDWR | OFlag::O_NONBLOCK) {
            Ok(fd) => Ok(Lockspace {
                fd,
                name: name.to_string(),
                minor,
            }),
            Err(e) => {
                // Give our create back, or the lockspace outlives us.
                let _ = control.remove_lockspace(minor, false);
                Err(e)
            }
        }
    }

    /// Opens the same lockspace's device once more: a separate open file,
    /// so a separate set of locks and results (see the module doc), without
    /// another create. One open per resource lets a lock be handed to a
    /// keeper, or dropped by a close, alone.
    pub fn open_again(&self, paths: &Paths) -> Result<Lockspace, DlmError> {
        let device = format!("{DEVICE_PREFIX}{}", self.name);
        let fd = open_misc(
            paths,
            &device,
            self.minor,
            OFlag::O_RDWR | OFlag::O_NONBLOCK,
        )?;
        Ok(Lockspace {
            fd,
            name: self.name.clone(),
            minor: self.minor,
        })
    }

    /// A lockspace device fd received from elsewhere (a keeper's copy, the
    /// fd store), for lockspace `name`. Shares its locks and its results.
    pub fn from_fd(fd: OwnedFd, name: &str) -> Result<Lockspace, DlmError> {
        let st = fstat(&fd).map_err(sys("cannot fstat a lockspace fd"))?;
        if nix::sys::stat::major(st.st_rdev) != MISC_MAJOR {
            return Err(DlmError::Node(format!(
                "the fd given for lockspace {name} is no misc device"
            )));
        }
        Ok(Lockspace {
            fd,
            name: name.to_string(),
            minor: nix::sys::stat::minor(st.st_rdev) as u32,
        })
    }

    /// Any fd as a lockspace, for tests of the read side (a seqpacket
    /// socket keeps the kernel's one-result-per-read boundaries).
    #[cfg(test)]
    fn on_fd(fd: OwnedFd) -> Lockspace {
        Lockspace {
            fd,
            name: "test".into(),
            minor: 0,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The open file as a plain fd (to hand to another process): its locks
    /// live as long as any copy of it is open.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// The misc minor of the lockspace's device.
    pub fn minor(&self) -> u32 {
        self.minor
    }

    fn write(&self, buf: &[u8], what: impl FnOnce() -> String) -> Result<usize, DlmError> {
        nix::unistd::write(&self.fd, buf).map_err(|errno| DlmError::Sys {
            what: what(),
            errno,
        })
    }

    /// Starts a new lock request on resource `name`; returns its lock id
    /// (the write's return value, `device_user_lock`). The outcome comes as
    /// a completion: granted, or Busy for a NOQUEUE request that cannot be
    /// granted now (never an error of the write).
    pub fn request(&self, ask: &Ask, name: &[u8]) -> Result<u32, DlmError> {
        let buf = wire::request(ask, name)?;
        let n = self.write(&buf, || {
            format!(
                "cannot request {} on {}/{}",
                ask.mode,
                self.name,
                String::from_utf8_lossy(name)
            )
        })?;
        match u32::try_from(n) {
            Ok(lkid) if lkid != 0 => Ok(lkid),
            _ => Err(DlmError::Node(format!(
                "lock request returned {n}, not a lock id"
            ))),
        }
    }

    /// Starts converting lock `lkid` to `ask.mode`; the outcome comes as a
    /// completion. For a lock with an LVB (taken with VALBLK) pass the LVB
    /// it should carry: the kernel copies the request's lvb field into it
    /// on every conversion and unlock (`dlm_user_convert`,
    /// `dlm_user_unlock`), so None means 32 zero bytes.
    pub fn convert(
        &self,
        ask: &Ask,
        lkid: u32,
        lvb: Option<&[u8; LVB_LEN]>,
    ) -> Result<(), DlmError> {
        let buf = wire::convert(ask, lkid, lvb)?;
        self.write(&buf, || {
            format!("cannot convert lock {lkid:#x} to {}", ask.mode)
        })
        .map(drop)
    }

    /// Starts unlocking lock `lkid`; completes with status Unlocked. For an
    /// LVB, see [`Lockspace::convert`].
    pub fn unlock(
        &self,
        lkid: u32,
        flags: Flags,
        lvb: Option<&[u8; LVB_LEN]>,
    ) -> Result<(), DlmError> {
        let buf = wire::unlock(lkid, flags, lvb)?;
        self.write(&buf, || format!("cannot unlock lock {lkid:#x}"))
            .map(drop)
    }

    /// Cancels the queued request or conversion of lock `lkid`. Completes
    /// with status Cancelled, unless it was granted first (then the grant
    /// is the completion, and the lock is held: unlock it).
    pub fn cancel(&self, lkid: u32) -> Result<(), DlmError> {
        let buf = wire::cancel(lkid)?;
        self.write(&buf, || format!("cannot cancel lock {lkid:#x}"))
            .map(drop)
    }

    /// Takes over an orphan: a PERSISTENT lock on `name` in `ask.mode`
    /// whose file was closed. Its id, or None when there is none; Err
    /// EAGAIN when the orphans there have another mode. No completion.
    pub fn adopt(&self, ask: &Ask, name: &[u8]) -> Result<Option<u32>, DlmError> {
        let buf = wire::adopt(ask, name)?;
        match nix::unistd::write(&self.fd, &buf) {
            Ok(n) => Ok(Some(n as u32)),
            Err(Errno::ENOENT) => Ok(None),
            Err(errno) => Err(DlmError::Sys {
                what: format!(
                    "cannot adopt an orphan on {}/{}",
                    self.name,
                    String::from_utf8_lossy(name)
                ),
                errno,
            }),
        }
    }

    /// Unlocks the orphans of process `pid` on this node (0: all).
    pub fn purge_orphans(&self, pid: u32) -> Result<(), DlmError> {
        self.write(&wire::purge(0, pid), || {
            format!("cannot purge orphans of pid {pid}")
        })
        .map(drop)
    }

    /// The next result if one is waiting; never blocks (the fd is
    /// O_NONBLOCK).
    pub fn read_event(&self) -> Result<Option<Event>, DlmError> {
        let mut buf = [0u8; layout::READ_SIZE];
        match nix::unistd::read(&self.fd, &mut buf) {
            Ok(n) => Ok(Some(wire::decode(&buf[..n])?)),
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => Ok(None),
            Err(e) => Err(sys(format!("cannot read lockspace {}", self.name))(e)),
        }
    }

    /// Whether a result is waiting, after up to `timeout` (None: forever).
    /// A signal ends the wait early (false).
    pub fn wait_readable(&self, timeout: Option<Duration>) -> Result<bool, DlmError> {
        let timeout = timeout.map_or(PollTimeout::NONE, poll_timeout);
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(n) => Ok(n > 0),
            Err(Errno::EINTR) => Ok(false),
            Err(e) => Err(sys(format!("cannot poll lockspace {}", self.name))(e)),
        }
    }

    /// The next result, waiting up to `timeout` for one (None: forever).
    pub fn next_event(&self, timeout: Option<Duration>) -> Result<Option<Event>, DlmError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(ev) = self.read_event()? {
                return Ok(Some(ev));
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Ok(None);
            }
            self.wait_readable(left)?;
        }
    }

    /// The completion of `lkid`, waiting up to `within` (None: it did not
    /// come). For an open with one lock and no blocking ASTs asked, where
    /// any other result is nobody's and is skipped.
    pub fn completion(&self, lkid: u32, within: Duration) -> Result<Option<Status>, DlmError> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(Some(left))? {
                Some(Event::Completion {
                    lkid: l, status, ..
                }) if l == lkid => return Ok(Some(status)),
                Some(_) => continue,
                None => return Ok(None),
            }
        }
    }

    /// [`leave`](Self::leave) plain, and if that is refused (EBUSY: some
    /// lock is in the lockspace on this node) and `force_if_busy`, with
    /// FORCEFREE. Ok(true) when it took the force.
    pub fn leave_else_force(self, paths: &Paths, force_if_busy: bool) -> Result<bool, DlmError> {
        let Lockspace { fd, minor, .. } = self;
        drop(fd);
        let control = Control::open(paths)?;
        match control.remove_lockspace(minor, false) {
            Ok(()) => Ok(false),
            Err(DlmError::Sys {
                errno: Errno::EBUSY,
                ..
            }) if force_if_busy => control.remove_lockspace(minor, true).map(|()| true),
            Err(e) => Err(e),
        }
    }

    /// Closes the device (the kernel unlocks what is still held through
    /// it, unless PERSISTENT, which stays as orphans) and gives back our
    /// create of the lockspace; see [`Control::remove_lockspace`] for
    /// `force`, which a last user leaving a shared lockspace needs.
    pub fn leave(self, paths: &Paths, force: bool) -> Result<(), DlmError> {
        let Lockspace { fd, minor, .. } = self;
        drop(fd);
        Control::open(paths)?.remove_lockspace(minor, force)
    }
}

/// `t` in whole milliseconds, rounded up (a wait of 0.4 ms must not turn
/// into a busy loop of zero-timeout polls), capped at poll's maximum.
fn poll_timeout(t: Duration) -> PollTimeout {
    let ms = t.as_nanos().div_ceil(1_000_000);
    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
}

impl AsFd for Lockspace {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROC_MISC: &str =
        " 58 dlm_web\n 59 dlm_plock\n 60 dlm-monitor\n 61 dlm-control\n183 hw_random\n";

    #[test]
    fn misc_minor_finds_whole_names_only() {
        assert_eq!(misc_minor(PROC_MISC, "dlm-control"), Some(61));
        assert_eq!(misc_minor(PROC_MISC, "dlm_web"), Some(58));
        assert_eq!(misc_minor(PROC_MISC, "dlm"), None);
        assert_eq!(misc_minor(PROC_MISC, "dlm_we"), None);
        assert_eq!(misc_minor("garbage\n\n x y\n", "y"), None);
    }

    fn paths(dir: &Path, misc: &str) -> Paths {
        let proc_misc = dir.join("misc");
        std::fs::write(&proc_misc, misc).unwrap();
        Paths {
            proc_misc,
            dev_dirs: vec![dir.join("dev")],
            node_wait: Duration::from_millis(50),
        }
    }

    #[test]
    fn no_control_device_is_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path(), " 183 hw_random\n");
        match Control::open(&p) {
            Err(e @ DlmError::NotLoaded(_)) => {
                assert!(e.to_string().contains("lists no dlm-control"), "{e}")
            }
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("opened"),
        }
        match Lockspace::join("web", &p) {
            Err(DlmError::NotLoaded(_)) => {}
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("joined"),
        }
    }

    #[test]
    fn bad_lockspace_names_fail_before_any_device() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path(), PROC_MISC);
        for bad in ["", "a/b", &"x".repeat(65)] {
            assert!(
                matches!(Lockspace::join(bad, &p), Err(DlmError::Wire(_))),
                "{bad:?}"
            );
        }
    }

    /// A file of the right name that is not the device is never taken for
    /// it (the open would then make a node, which a test must not do).
    #[test]
    fn a_regular_file_is_not_the_device() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dlm-control");
        std::fs::write(&file, "").unwrap();
        assert!(!node_is(&file, makedev(MISC_MAJOR, 61)));
    }

    /// /dev/null is 1:3: a char device, but not ours.
    #[test]
    fn node_is_checks_the_numbers() {
        assert!(node_is(Path::new("/dev/null"), makedev(1, 3)));
        assert!(!node_is(Path::new("/dev/null"), makedev(MISC_MAJOR, 3)));
        assert!(!node_is(Path::new("/nonexistent"), makedev(1, 3)));
    }

    /// A lockspace whose "kernel" is the other end of a seqpacket pair.
    fn fake() -> (Lockspace, OwnedFd) {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        (Lockspace::on_fd(a), b)
    }

    /// A result as `copy_result_to_user` writes it (72 bytes, no LVB).
    fn result(astaddr: u64, status: i32, lkid: u32, bast_mode: u8) -> Vec<u8> {
        let mut b = vec![0u8; layout::res::SIZE];
        b[0..4].copy_from_slice(&6u32.to_ne_bytes());
        b[8..12].copy_from_slice(&1u32.to_ne_bytes());
        b[12..16].copy_from_slice(&72u32.to_ne_bytes());
        b[16..24].copy_from_slice(&astaddr.to_ne_bytes());
        b[24..32].copy_from_slice(&5u64.to_ne_bytes());
        b[40..44].copy_from_slice(&status.to_ne_bytes());
        b[44..48].copy_from_slice(&lkid.to_ne_bytes());
        b[64] = bast_mode;
        b
    }

    #[test]
    fn reads_one_result_at_a_time_and_never_blocks() {
        let (ls, kernel) = fake();
        assert!(
            ls.read_event().unwrap().is_none(),
            "nothing queued: no block"
        );
        assert!(!ls.wait_readable(Some(Duration::from_millis(10))).unwrap());
        nix::unistd::write(&kernel, &result(layout::BAST_ADDR, 0, 7, 5)).unwrap();
        nix::unistd::write(&kernel, &result(layout::CAST_ADDR, -libc::EAGAIN, 8, 0)).unwrap();
        assert!(ls.wait_readable(Some(Duration::ZERO)).unwrap());
        assert_eq!(
            ls.read_event().unwrap(),
            Some(Event::Blocking {
                lkid: 7,
                mode: 5,
                tag: 5
            })
        );
        match ls.next_event(Some(Duration::from_secs(5))).unwrap() {
            Some(Event::Completion {
                lkid: 8, status, ..
            }) => {
                assert_eq!(status, wire::Status::Busy)
            }
            other => panic!("{other:?}"),
        }
        assert!(ls.read_event().unwrap().is_none());
    }

    #[test]
    fn next_event_waits_for_a_late_result_and_times_out_without_one() {
        let (ls, kernel) = fake();
        let t0 = Instant::now();
        assert!(
            ls.next_event(Some(Duration::from_millis(50)))
                .unwrap()
                .is_none()
        );
        assert!(t0.elapsed() >= Duration::from_millis(50));
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            nix::unistd::write(&kernel, &result(layout::CAST_ADDR, 0, 9, 0)).unwrap();
            kernel
        });
        let ev = ls.next_event(None).unwrap();
        assert!(
            matches!(
                ev,
                Some(Event::Completion {
                    lkid: 9,
                    status: wire::Status::Granted,
                    ..
                })
            ),
            "{ev:?}"
        );
        drop(writer.join());
    }

    #[test]
    fn a_result_that_is_not_ours_is_an_error() {
        let (ls, kernel) = fake();
        nix::unistd::write(&kernel, &result(0x401000, 0, 1, 0)).unwrap();
        assert!(matches!(ls.read_event(), Err(DlmError::Wire(_))));
    }

    #[test]
    fn poll_timeouts_round_up() {
        assert_eq!(poll_timeout(Duration::ZERO), PollTimeout::ZERO);
        assert_eq!(i32::from(poll_timeout(Duration::from_micros(400))), 1);
        assert_eq!(i32::from(poll_timeout(Duration::from_millis(1500))), 1500);
        assert_eq!(
            poll_timeout(Duration::from_secs(u64::MAX)),
            PollTimeout::MAX
        );
    }

    #[test]
    fn from_fd_refuses_what_is_no_misc_device() {
        let f = std::fs::File::open("/dev/null").unwrap();
        assert!(matches!(
            Lockspace::from_fd(f.into(), "web"),
            Err(DlmError::Node(_))
        ));
    }
}
