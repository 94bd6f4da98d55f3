//! Requests to the kernel's userspace DLM devices, encoded, and the
//! results read back from a lockspace device, decoded. Pure: no fds. The
//! offsets and constants are `layout`'s.
//!
//! Every request says `is64bit = 1`: with `is64bit = 0` a `CONFIG_COMPAT`
//! kernel reads it in the 32-bit layout and, worse, answers every later
//! read of that fd in the 32-bit result layout (`device_write` sets
//! `DLM_PROC_FLAGS_COMPAT` on the open file).
//!
//! The header's user pointers (`castaddr`, `bastaddr`, `lksb`, the two
//! params) are never dereferenced by the kernel: it stores them and copies
//! them back into each result (`copy_result_to_user` in fs/dlm/user.c).
//! libdlm puts function pointers there; we put `layout`'s tokens, which
//! tell a completion from a blocking AST, and the caller's `tag`.
//! `device_user_lock` refuses a request whose `castaddr` or `lksb` is NULL
//! (EINVAL); a NULL `bastaddr` means no blocking ASTs for that lock
//! (`dlm_user_add_ast` drops them).

use super::layout::{
    BAST_ADDR, CAST_ADDR, DEVICE_VERSION_SIZE, ECANCEL, EUNLOCK, Flags, LKSB_ADDR, LOCKSPACE_LEN,
    LSFLG_FORCEFREE, LVB_LEN, Mode, RESNAME_MAXLEN, VERSION, cmd, lock, lspace, purge, req, res,
};

/// Flags a caller may pass to a new request or a conversion; the others
/// are set by the encoder that needs them (CONVERT, ORPHAN) or belong to
/// unlocks (CANCEL, FORCEUNLOCK), and TIMEOUT is gone from newer kernels.
const LOCK_FLAGS: u32 = Flags::NOQUEUE.0
    | Flags::VALBLK.0
    | Flags::QUECVT.0
    | Flags::IVVALBLK.0
    | Flags::CONVDEADLK.0
    | Flags::PERSISTENT.0
    | Flags::NODLCKWT.0
    | Flags::NODLCKBLK.0
    | Flags::EXPEDITE.0
    | Flags::NOQUEUEBAST.0
    | Flags::HEADQUE.0
    | Flags::NOORDER.0
    | Flags::ALTPR.0
    | Flags::ALTCW.0;

/// What `set_unlock_args` (fs/dlm/lock.c) accepts besides CANCEL.
const UNLOCK_FLAGS: u32 = Flags::VALBLK.0 | Flags::IVVALBLK.0 | Flags::FORCEUNLOCK.0;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("lock name must be 1 to {RESNAME_MAXLEN} bytes, got {0}")]
    ResourceName(usize),
    #[error(
        "lockspace name must be 1 to {LOCKSPACE_LEN} bytes without NUL or '/', and not plock, got {0:?}"
    )]
    LockspaceName(String),
    #[error("flags {0:#x} are not allowed here")]
    Flags(u32),
    #[error("lock id 0 names no lock")]
    NoLkid,
    #[error("short result: {0} bytes, need {min}", min = res::SIZE)]
    Short(usize),
    #[error("result of device protocol version {0}.{1}.{2}, not 6.x")]
    Version(u32, u32, u32),
    #[error("result names neither our completion nor our blocking AST (astaddr {0:#x})")]
    UnknownAst(u64),
    #[error("result says its LVB is at offset {0} of {1} bytes")]
    LvbOffset(u32, usize),
}

/// Checks a lockspace name: it becomes the misc device `dlm_NAME`, a sysfs
/// name, so no '/' (and no NUL: the kernel reads it as a C string), and
/// not `plock`, whose `dlm_plock` is the DLM's own POSIX-lock device.
pub fn check_lockspace_name(name: &str) -> Result<(), WireError> {
    let ok = !name.is_empty()
        && name.len() <= LOCKSPACE_LEN
        && name != "plock"
        && !name.bytes().any(|b| b == 0 || b == b'/');
    if ok {
        Ok(())
    } else {
        Err(WireError::LockspaceName(name.to_string()))
    }
}

fn check_resource(name: &[u8]) -> Result<(), WireError> {
    if name.is_empty() || name.len() > RESNAME_MAXLEN {
        return Err(WireError::ResourceName(name.len()));
    }
    Ok(())
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

fn get_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap())
}

fn get_u64(buf: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(buf[at..at + 8].try_into().unwrap())
}

/// A zeroed request of `len` bytes (at least the struct) with the version,
/// the command and `is64bit` set.
fn header(command: u8, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len.max(req::SIZE)];
    for (i, v) in VERSION.iter().enumerate() {
        put_u32(&mut buf, req::VERSION + 4 * i, *v);
    }
    buf[req::CMD] = command;
    buf[req::IS64BIT] = 1;
    buf
}

/// `DLM_USER_CREATE_LOCKSPACE`, written to the control device; the write
/// returns the new (or existing) lockspace's misc minor. As libdlm 4.x
/// (`create_lockspace_v6`): the struct plus the name's length, name at the
/// union's `name`, so NUL-terminated by the zeroed bytes after it.
pub fn create_lockspace(name: &str, flags: u32) -> Result<Vec<u8>, WireError> {
    check_lockspace_name(name)?;
    let mut buf = header(cmd::CREATE_LOCKSPACE, req::SIZE + name.len());
    put_u32(&mut buf, req::I + lspace::FLAGS, flags);
    let at = req::I + lspace::NAME;
    buf[at..at + name.len()].copy_from_slice(name.as_bytes());
    Ok(buf)
}

/// `DLM_USER_REMOVE_LOCKSPACE` of the lockspace whose device has `minor`.
pub fn remove_lockspace(minor: u32, force: bool) -> Vec<u8> {
    let mut buf = header(cmd::REMOVE_LOCKSPACE, req::SIZE);
    let flags = if force { LSFLG_FORCEFREE } else { 0 };
    put_u32(&mut buf, req::I + lspace::FLAGS, flags);
    put_u32(&mut buf, req::I + lspace::MINOR, minor);
    buf
}

/// The parts of a lock request the caller chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    pub mode: Mode,
    pub flags: Flags,
    /// Echoed back in every result for this lock (`user_astparam`).
    pub tag: u64,
    /// Whether blocking ASTs are wanted (a non-NULL `bastaddr`).
    pub bast: bool,
}

impl Ask {
    /// A request with no tag and no blocking ASTs: for an open whose
    /// results need no telling apart.
    pub fn plain(mode: Mode, flags: Flags) -> Ask {
        Ask {
            mode,
            flags,
            tag: 0,
            bast: false,
        }
    }
}

fn lock_request(
    ask: &Ask,
    flags: u32,
    lkid: u32,
    name: &[u8],
    lvb: Option<&[u8; LVB_LEN]>,
) -> Vec<u8> {
    let mut buf = header(cmd::LOCK, req::SIZE + name.len());
    let p = req::I;
    buf[p + lock::MODE] = ask.mode as u8;
    buf[p + lock::NAMELEN] = name.len() as u8;
    put_u32(&mut buf, p + lock::FLAGS, flags);
    put_u32(&mut buf, p + lock::LKID, lkid);
    put_u64(&mut buf, p + lock::CASTPARAM, ask.tag);
    put_u64(&mut buf, p + lock::CASTADDR, CAST_ADDR);
    put_u64(&mut buf, p + lock::BASTPARAM, ask.tag);
    put_u64(
        &mut buf,
        p + lock::BASTADDR,
        if ask.bast { BAST_ADDR } else { 0 },
    );
    put_u64(&mut buf, p + lock::LKSB, LKSB_ADDR);
    if let Some(lvb) = lvb {
        buf[p + lock::LVB..p + lock::LVB + LVB_LEN].copy_from_slice(lvb);
    }
    buf[p + lock::NAME..p + lock::NAME + name.len()].copy_from_slice(name);
    buf
}

fn check_lock_flags(flags: Flags) -> Result<(), WireError> {
    let bad = flags.0 & !LOCK_FLAGS;
    if bad != 0 {
        return Err(WireError::Flags(bad));
    }
    Ok(())
}

/// A new lock on resource `name`: `DLM_USER_LOCK` without CONVERT. The
/// write returns the new lock's id; the outcome comes as a completion.
pub fn request(ask: &Ask, name: &[u8]) -> Result<Vec<u8>, WireError> {
    check_resource(name)?;
    check_lock_flags(ask.flags)?;
    Ok(lock_request(ask, ask.flags.0, 0, name, None))
}

/// A conversion of lock `lkid` to `ask.mode` (CONVERT is added). With
/// VALBLK, `lvb` is what a down-conversion from PW/EX writes. The write
/// returns 0; the outcome comes as a completion.
pub fn convert(ask: &Ask, lkid: u32, lvb: Option<&[u8; LVB_LEN]>) -> Result<Vec<u8>, WireError> {
    check_lock_flags(ask.flags)?;
    if lkid == 0 {
        return Err(WireError::NoLkid);
    }
    Ok(lock_request(
        ask,
        ask.flags.0 | Flags::CONVERT.0,
        lkid,
        &[],
        lvb,
    ))
}

/// Adopts an orphan (a PERSISTENT lock whose fd was closed) on `name`
/// granted in `ask.mode` (ORPHAN is added). The write returns its lock id,
/// or fails ENOENT (none) or EAGAIN (orphans only in another mode); no
/// completion follows (`dlm_user_adopt_orphan` queues none).
pub fn adopt(ask: &Ask, name: &[u8]) -> Result<Vec<u8>, WireError> {
    check_resource(name)?;
    check_lock_flags(ask.flags)?;
    Ok(lock_request(
        ask,
        ask.flags.0 | Flags::ORPHAN.0,
        0,
        name,
        None,
    ))
}

/// `DLM_USER_UNLOCK` of lock `lkid`; with VALBLK, `lvb` is written to the
/// resource when the lock is PW/EX. The write returns 0; the outcome comes
/// as a completion with status EUNLOCK.
pub fn unlock(lkid: u32, flags: Flags, lvb: Option<&[u8; LVB_LEN]>) -> Result<Vec<u8>, WireError> {
    let bad = flags.0 & !UNLOCK_FLAGS;
    if bad != 0 {
        return Err(WireError::Flags(bad));
    }
    unlock_request(lkid, flags.0, lvb)
}

/// Cancels the queued request or conversion of lock `lkid`
/// (`DLM_USER_UNLOCK` with CANCEL). The write returns 0, also when there
/// is nothing to cancel (the lock was granted meanwhile: `-EBUSY` is
/// mapped to 0 by `dlm_user_cancel`); a cancelled request completes with
/// status ECANCEL, a granted one already completed with 0.
pub fn cancel(lkid: u32) -> Result<Vec<u8>, WireError> {
    unlock_request(lkid, Flags::CANCEL.0, None)
}

fn unlock_request(
    lkid: u32,
    flags: u32,
    lvb: Option<&[u8; LVB_LEN]>,
) -> Result<Vec<u8>, WireError> {
    if lkid == 0 {
        return Err(WireError::NoLkid);
    }
    let mut buf = header(cmd::UNLOCK, req::SIZE);
    let p = req::I;
    put_u32(&mut buf, p + lock::FLAGS, flags);
    put_u32(&mut buf, p + lock::LKID, lkid);
    // The completion keeps the lock's castaddr and tag (dlm_user_unlock
    // takes only a non-zero castparam and the lksb from an unlock).
    put_u64(&mut buf, p + lock::LKSB, LKSB_ADDR);
    if let Some(lvb) = lvb {
        buf[p + lock::LVB..p + lock::LVB + LVB_LEN].copy_from_slice(lvb);
    }
    Ok(buf)
}

/// `DLM_USER_PURGE`: unlocks the orphans of process `pid` on node `nodeid`
/// (0: this node; pid 0: every orphan).
pub fn purge(nodeid: u32, pid: u32) -> Vec<u8> {
    let mut buf = header(cmd::PURGE, req::SIZE);
    put_u32(&mut buf, req::I + purge::NODEID, nodeid);
    put_u32(&mut buf, req::I + purge::PID, pid);
    buf
}

/// `sb_status` of a completion, the kernel's negative errno made a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 0: the request or conversion was granted.
    Granted,
    /// -EAGAIN: a NOQUEUE request (or conversion) could not be granted now.
    Busy,
    /// -DLM_ECANCEL: a queued request or conversion was cancelled.
    Cancelled,
    /// -DLM_EUNLOCK: the unlock is done.
    Unlocked,
    /// -EDEADLK: a conversion deadlock; the conversion was refused.
    Deadlock,
    /// -ETIMEDOUT (old kernels' lock timeouts only).
    TimedOut,
    /// Anything else, as a positive errno.
    Error(i32),
}

impl Status {
    pub fn from_raw(raw: i32) -> Status {
        match -raw {
            0 => Status::Granted,
            libc::EAGAIN => Status::Busy,
            ECANCEL => Status::Cancelled,
            EUNLOCK => Status::Unlocked,
            libc::EDEADLK => Status::Deadlock,
            libc::ETIMEDOUT => Status::TimedOut,
            e => Status::Error(e),
        }
    }
}

/// One result read from a lockspace device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A completion AST: the request, conversion, unlock or cancel of lock
    /// `lkid` is over, with `status`.
    Completion {
        lkid: u32,
        status: Status,
        /// `DLM_SBF_*` (DEMOTED 1, VALNOTVALID 2, ALTMODE 4).
        sb_flags: u8,
        tag: u64,
        /// The resource's LVB, when the lock has one and it was returned.
        lvb: Option<[u8; LVB_LEN]>,
    },
    /// A blocking AST: someone waits for lock `lkid`, wanting `mode`.
    Blocking { lkid: u32, mode: u8, tag: u64 },
}

/// Decodes what one `read()` of a lockspace device returned.
pub fn decode(buf: &[u8]) -> Result<Event, WireError> {
    if buf.len() < res::SIZE {
        return Err(WireError::Short(buf.len()));
    }
    let v = [
        get_u32(buf, res::VERSION),
        get_u32(buf, res::VERSION + 4),
        get_u32(buf, res::VERSION + 8),
    ];
    if v[0] != VERSION[0] {
        return Err(WireError::Version(v[0], v[1], v[2]));
    }
    let lkid = get_u32(buf, res::SB_LKID);
    let tag = get_u64(buf, res::USER_ASTPARAM);
    match get_u64(buf, res::USER_ASTADDR) {
        BAST_ADDR => Ok(Event::Blocking {
            lkid,
            mode: buf[res::BAST_MODE],
            tag,
        }),
        CAST_ADDR => {
            let status = Status::from_raw(get_u32(buf, res::SB_STATUS) as i32);
            let at = get_u32(buf, res::LVB_OFFSET);
            let lvb = match at as usize {
                0 => None,
                o if o + LVB_LEN <= buf.len() => Some(buf[o..o + LVB_LEN].try_into().unwrap()),
                _ => return Err(WireError::LvbOffset(at, buf.len())),
            };
            Ok(Event::Completion {
                lkid,
                status,
                sb_flags: buf[res::SB_FLAGS],
                tag,
                lvb,
            })
        }
        other => Err(WireError::UnknownAst(other)),
    }
}

/// Decodes a `struct dlm_device_version` (a 12-byte read).
pub fn decode_version(buf: &[u8; DEVICE_VERSION_SIZE]) -> [u32; 3] {
    [get_u32(buf, 0), get_u32(buf, 4), get_u32(buf, 8)]
}

#[cfg(test)]
mod tests {
    use super::super::layout::READ_SIZE;
    use super::*;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        get_u32(b, at)
    }
    fn u64_at(b: &[u8], at: usize) -> u64 {
        get_u64(b, at)
    }

    fn assert_header(b: &[u8], command: u8) {
        assert_eq!(u32_at(b, 0), 6);
        assert_eq!(u32_at(b, 4), 0);
        assert_eq!(u32_at(b, 8), 1);
        assert_eq!(b[12], command);
        assert_eq!(b[13], 1, "is64bit");
        assert_eq!(&b[14..16], &[0, 0]);
    }

    #[test]
    fn create_lockspace_encoding() {
        let b = create_lockspace("electd", 0).unwrap();
        assert_eq!(b.len(), 120 + 6);
        assert_header(&b, 4);
        assert_eq!(u32_at(&b, 16), 0, "flags");
        assert_eq!(u32_at(&b, 20), 0, "minor");
        assert_eq!(&b[24..30], b"electd");
        assert!(b[30..].iter().all(|&x| x == 0), "NUL-terminated");
        // The longest name still ends in a NUL inside the buffer.
        let long = "l".repeat(64);
        let b = create_lockspace(&long, 0).unwrap();
        assert_eq!(b.len(), 184);
        assert_eq!(b[24 + 64], 0);
        for bad in ["", "a/b", "a\0b", "plock", &"l".repeat(65)] {
            assert!(create_lockspace(bad, 0).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn remove_lockspace_encoding() {
        let b = remove_lockspace(57, false);
        assert_eq!(b.len(), 120);
        assert_header(&b, 5);
        assert_eq!(u32_at(&b, 16), 0);
        assert_eq!(u32_at(&b, 20), 57);
        assert_eq!(u32_at(&remove_lockspace(57, true), 16), 2);
    }

    #[test]
    fn request_encoding() {
        let ask = Ask {
            mode: Mode::Ex,
            flags: Flags::NOQUEUE | Flags::NOQUEUEBAST,
            tag: 0x1234_5678_9abc,
            bast: true,
        };
        let b = request(&ask, b"web").unwrap();
        assert_eq!(b.len(), 123);
        assert_header(&b, 1);
        let p = 16;
        assert_eq!(b[p], 5, "mode EX");
        assert_eq!(b[p + 1], 3, "namelen");
        assert_eq!(u32_at(&b, p + 4), 0x801, "flags");
        assert_eq!(u32_at(&b, p + 8), 0, "lkid");
        assert_eq!(u32_at(&b, p + 12), 0, "parent");
        assert_eq!(u64_at(&b, p + 16), 0, "xid");
        assert_eq!(u64_at(&b, p + 24), 0, "timeout");
        assert_eq!(u64_at(&b, p + 32), 0x1234_5678_9abc, "castparam");
        assert_eq!(u64_at(&b, p + 40), CAST_ADDR);
        assert_eq!(u64_at(&b, p + 48), 0x1234_5678_9abc, "bastparam");
        assert_eq!(u64_at(&b, p + 56), BAST_ADDR);
        assert_eq!(u64_at(&b, p + 64), LKSB_ADDR);
        assert!(b[p + 72..p + 104].iter().all(|&x| x == 0), "lvb");
        assert_eq!(&b[120..], b"web");
        // No BASTs wanted: a NULL bastaddr. PR and NL encode their modes.
        let quiet = Ask {
            mode: Mode::Pr,
            flags: Flags::NONE,
            tag: 0,
            bast: false,
        };
        let b = request(&quiet, b"x").unwrap();
        assert_eq!((b[16], u64_at(&b, 16 + 56)), (3, 0));
        assert_ne!(u64_at(&b, 16 + 40), 0, "castaddr is never NULL");
        let b = request(
            &Ask {
                mode: Mode::Nl,
                ..quiet
            },
            b"x",
        )
        .unwrap();
        assert_eq!(b[16], 0);
        // Names: 1 to 64 bytes, any bytes.
        assert!(request(&quiet, &[0xff; 64]).is_ok());
        assert_eq!(request(&quiet, b""), Err(WireError::ResourceName(0)));
        assert_eq!(request(&quiet, &[1; 65]), Err(WireError::ResourceName(65)));
        // Flags that other encoders own are refused.
        for f in [
            Flags::CANCEL,
            Flags::CONVERT,
            Flags::ORPHAN,
            Flags::FORCEUNLOCK,
            Flags::TIMEOUT,
        ] {
            let a = Ask { flags: f, ..quiet };
            assert_eq!(request(&a, b"x"), Err(WireError::Flags(f.0)));
        }
        let persistent = Ask {
            flags: Flags::PERSISTENT | Flags::VALBLK,
            ..quiet
        };
        assert_eq!(u32_at(&request(&persistent, b"x").unwrap(), 20), 0x88);
    }

    #[test]
    fn convert_encoding() {
        let ask = Ask {
            mode: Mode::Nl,
            flags: Flags::VALBLK,
            tag: 9,
            bast: true,
        };
        let lvb = [7u8; LVB_LEN];
        let b = convert(&ask, 0x10003, Some(&lvb)).unwrap();
        assert_eq!(b.len(), 120, "no name");
        assert_header(&b, 1);
        assert_eq!(b[16], 0);
        assert_eq!(b[17], 0, "namelen");
        assert_eq!(u32_at(&b, 20), 0x4 | 0x8, "CONVERT added");
        assert_eq!(u32_at(&b, 24), 0x10003, "lkid");
        assert_eq!(&b[16 + 72..16 + 104], &lvb);
        assert_eq!(convert(&ask, 0, None), Err(WireError::NoLkid));
    }

    #[test]
    fn adopt_encoding() {
        let ask = Ask {
            mode: Mode::Ex,
            flags: Flags::PERSISTENT,
            tag: 1,
            bast: true,
        };
        let b = adopt(&ask, b"web").unwrap();
        assert_eq!(u32_at(&b, 20), 0x4000 | 0x80);
        assert_eq!(&b[120..], b"web");
    }

    #[test]
    fn unlock_and_cancel_encoding() {
        let b = unlock(0x2a, Flags::NONE, None).unwrap();
        assert_eq!(b.len(), 120);
        assert_header(&b, 2);
        assert_eq!(u32_at(&b, 20), 0, "flags");
        assert_eq!(u32_at(&b, 24), 0x2a, "lkid");
        assert_eq!(u64_at(&b, 16 + 40), 0, "castaddr: the lock's own is kept");
        assert_eq!(u64_at(&b, 16 + 64), LKSB_ADDR);
        let lvb = [3u8; LVB_LEN];
        let b = unlock(0x2a, Flags::VALBLK, Some(&lvb)).unwrap();
        assert_eq!(u32_at(&b, 20), 0x8);
        assert_eq!(&b[16 + 72..16 + 104], &lvb);
        assert_eq!(
            unlock(0x2a, Flags::NOQUEUE, None),
            Err(WireError::Flags(0x1))
        );
        assert_eq!(unlock(0, Flags::NONE, None), Err(WireError::NoLkid));
        let b = cancel(0x2a).unwrap();
        assert_header(&b, 2);
        assert_eq!(u32_at(&b, 20), 0x2, "CANCEL");
        assert_eq!(u32_at(&b, 24), 0x2a);
    }

    #[test]
    fn purge_encoding() {
        let b = purge(0, 4321);
        assert_header(&b, 6);
        assert_eq!((u32_at(&b, 16), u32_at(&b, 20)), (0, 4321));
    }

    /// A result as `copy_result_to_user` builds it.
    fn result(
        astaddr: u64,
        status: i32,
        lkid: u32,
        bast_mode: u8,
        lvb: Option<[u8; 32]>,
    ) -> Vec<u8> {
        let mut b = vec![0u8; READ_SIZE];
        put_u32(&mut b, 0, 6);
        put_u32(&mut b, 8, 1);
        put_u64(&mut b, res::USER_ASTADDR, astaddr);
        put_u64(&mut b, res::USER_ASTPARAM, 77);
        put_u64(&mut b, res::USER_LKSB, LKSB_ADDR);
        put_u32(&mut b, res::SB_STATUS, status as u32);
        put_u32(&mut b, res::SB_LKID, lkid);
        b[res::BAST_MODE] = bast_mode;
        let len = match lvb {
            Some(l) => {
                b[72..104].copy_from_slice(&l);
                put_u32(&mut b, res::LVB_OFFSET, 72);
                104
            }
            None => 72,
        };
        put_u32(&mut b, res::LENGTH, len as u32);
        b.truncate(len);
        b
    }

    #[test]
    fn decode_completions() {
        let cases = [
            (0, Status::Granted),
            (-libc::EAGAIN, Status::Busy),
            (-ECANCEL, Status::Cancelled),
            (-EUNLOCK, Status::Unlocked),
            (-libc::EDEADLK, Status::Deadlock),
            (-libc::ETIMEDOUT, Status::TimedOut),
            (-libc::ENOMEM, Status::Error(libc::ENOMEM)),
        ];
        for (raw, status) in cases {
            let ev = decode(&result(CAST_ADDR, raw, 0x10001, 0, None)).unwrap();
            assert_eq!(
                ev,
                Event::Completion {
                    lkid: 0x10001,
                    status,
                    sb_flags: 0,
                    tag: 77,
                    lvb: None
                }
            );
        }
        let lvb = [0x5a; 32];
        match decode(&result(CAST_ADDR, 0, 1, 0, Some(lvb))).unwrap() {
            Event::Completion { lvb: got, .. } => assert_eq!(got, Some(lvb)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn decode_blocking_ast() {
        let ev = decode(&result(BAST_ADDR, 0, 0x20002, 5, None)).unwrap();
        assert_eq!(
            ev,
            Event::Blocking {
                lkid: 0x20002,
                mode: 5,
                tag: 77
            }
        );
    }

    #[test]
    fn decode_refuses_what_is_not_ours() {
        assert_eq!(decode(&[0u8; 71]), Err(WireError::Short(71)));
        let mut b = result(CAST_ADDR, 0, 1, 0, None);
        put_u32(&mut b, 0, 5);
        assert!(matches!(decode(&b), Err(WireError::Version(5, 0, 1))));
        assert_eq!(
            decode(&result(0x401000, 0, 1, 0, None)),
            Err(WireError::UnknownAst(0x401000))
        );
        let mut b = result(CAST_ADDR, 0, 1, 0, None);
        put_u32(&mut b, res::LVB_OFFSET, 72);
        assert_eq!(decode(&b), Err(WireError::LvbOffset(72, 72)));
    }

    #[test]
    fn decode_version_reads_three_words() {
        let mut b = [0u8; 12];
        put_u32(&mut b, 0, 6);
        put_u32(&mut b, 8, 1);
        assert_eq!(decode_version(&b), [6, 0, 1]);
    }
}
