//! The byte layouts of the kernel's userspace DLM device protocol on a
//! 64-bit (LP64) kernel, and its constants: `include/uapi/linux/
//! dlm_device.h`, `dlm.h`, `dlmconstants.h`. Offsets, not structs: `wire`
//! encodes at them, and the tests below check each one against a
//! `#[repr(C)]` transcription of the header.

use std::fmt;

/// `DLM_DEVICE_VERSION_{MAJOR,MINOR,PATCH}`. `check_version` (user.c)
/// accepts a request whose major equals the kernel's and whose minor is not
/// above it. The current header says 6.0.1.
pub const VERSION: [u32; 3] = [6, 0, 1];
/// `DLM_USER_LVB_LEN`: user lockspaces have 32-byte lock value blocks.
pub const LVB_LEN: usize = 32;
/// `DLM_RESNAME_MAXLEN`.
pub const RESNAME_MAXLEN: usize = 64;
/// `DLM_LOCKSPACE_LEN`.
pub const LOCKSPACE_LEN: usize = 64;

/// `DLM_USER_*` commands.
pub mod cmd {
    pub const LOCK: u8 = 1;
    pub const UNLOCK: u8 = 2;
    pub const CREATE_LOCKSPACE: u8 = 4;
    pub const REMOVE_LOCKSPACE: u8 = 5;
    pub const PURGE: u8 = 6;
}

/// `DLM_USER_LSFLG_FORCEFREE`: remove a lockspace even with locks in it.
pub const LSFLG_FORCEFREE: u32 = 2;

/// `DLM_ECANCEL`, `DLM_EUNLOCK`: statuses that are not errno values.
pub const ECANCEL: i32 = 0x10001;
pub const EUNLOCK: i32 = 0x10002;

/// Opaque tokens in the request's user-pointer fields, echoed back in
/// results as `user_astaddr` and `user_lksb`. Any non-NULL value works; these
/// are odd so that no real code address could be mistaken for them.
pub const CAST_ADDR: u64 = 0xd1e_c057;
pub const BAST_ADDR: u64 = 0xd1e_ba57;
pub const LKSB_ADDR: u64 = 0xd1e_15b5;

/// Offsets in `struct dlm_write_request` (x86_64 and every LP64 arch).
pub mod req {
    pub const VERSION: usize = 0;
    pub const CMD: usize = 12;
    pub const IS64BIT: usize = 13;
    /// The union `i`, 8-aligned (it holds pointers and u64s).
    pub const I: usize = 16;
    /// sizeof: 16 + sizeof(struct dlm_lock_params), the union's largest.
    pub const SIZE: usize = 120;
}

/// Offsets in `struct dlm_lock_params`, from the start of the union.
pub mod lock {
    pub const MODE: usize = 0;
    pub const NAMELEN: usize = 1;
    pub const FLAGS: usize = 4;
    pub const LKID: usize = 8;
    pub const PARENT: usize = 12;
    pub const XID: usize = 16;
    pub const TIMEOUT: usize = 24;
    pub const CASTPARAM: usize = 32;
    pub const CASTADDR: usize = 40;
    pub const BASTPARAM: usize = 48;
    pub const BASTADDR: usize = 56;
    pub const LKSB: usize = 64;
    pub const LVB: usize = 72;
    /// The flexible `name[]`; also sizeof(struct dlm_lock_params).
    pub const NAME: usize = 104;
}

/// Offsets in `struct dlm_lspace_params`, from the start of the union.
pub mod lspace {
    pub const FLAGS: usize = 0;
    pub const MINOR: usize = 4;
    pub const NAME: usize = 8;
}

/// Offsets in `struct dlm_purge_params`, from the start of the union.
pub mod purge {
    pub const NODEID: usize = 0;
    pub const PID: usize = 4;
}

/// Offsets in `struct dlm_lock_result` (read from a lockspace device).
pub mod res {
    pub const VERSION: usize = 0;
    pub const LENGTH: usize = 12;
    pub const USER_ASTADDR: usize = 16;
    pub const USER_ASTPARAM: usize = 24;
    pub const USER_LKSB: usize = 32;
    /// `struct dlm_lksb lksb` (24 bytes: status, lkid, flags, lvbptr).
    pub const LKSB: usize = 40;
    pub const SB_STATUS: usize = LKSB;
    pub const SB_LKID: usize = LKSB + 4;
    pub const SB_FLAGS: usize = LKSB + 8;
    pub const BAST_MODE: usize = 64;
    pub const LVB_OFFSET: usize = 68;
    pub const SIZE: usize = 72;
}

/// `struct dlm_device_version`, what a 12-byte read of any DLM device
/// returns (`device_read`: a read of exactly that size is a version query).
pub const DEVICE_VERSION_SIZE: usize = 12;

/// A read buffer that holds a result and the LVB the kernel appends to it
/// when the lock has one and the buffer has room (`copy_result_to_user`).
pub const READ_SIZE: usize = res::SIZE + LVB_LEN;

/// `DLM_LOCK_*` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Nl = 0,
    Cr = 1,
    Cw = 2,
    Pr = 3,
    Pw = 4,
    Ex = 5,
}

impl Mode {
    pub fn from_raw(raw: u8) -> Option<Mode> {
        Some(match raw {
            0 => Mode::Nl,
            1 => Mode::Cr,
            2 => Mode::Cw,
            3 => Mode::Pr,
            4 => Mode::Pw,
            5 => Mode::Ex,
            _ => return None,
        })
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Nl => "NL",
            Mode::Cr => "CR",
            Mode::Cw => "CW",
            Mode::Pr => "PR",
            Mode::Pw => "PW",
            Mode::Ex => "EX",
        })
    }
}

/// `DLM_LKF_*` flags, as the kernel takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags(pub u32);

impl Flags {
    pub const NONE: Flags = Flags(0);
    /// Fail (status EAGAIN) instead of queueing when not grantable now.
    pub const NOQUEUE: Flags = Flags(0x0000_0001);
    /// Unlock request: cancel a queued request or conversion.
    pub const CANCEL: Flags = Flags(0x0000_0002);
    /// Change the mode of the lock `lkid`.
    pub const CONVERT: Flags = Flags(0x0000_0004);
    /// Read the LVB on grant; write it on a down-conversion or unlock
    /// from PW/EX.
    pub const VALBLK: Flags = Flags(0x0000_0008);
    pub const QUECVT: Flags = Flags(0x0000_0010);
    /// Invalidate the resource's LVB.
    pub const IVVALBLK: Flags = Flags(0x0000_0020);
    pub const CONVDEADLK: Flags = Flags(0x0000_0040);
    /// The lock outlives the device fd: on close it becomes an orphan
    /// instead of being unlocked (`dlm_clear_proc_locks`).
    pub const PERSISTENT: Flags = Flags(0x0000_0080);
    pub const NODLCKWT: Flags = Flags(0x0000_0100);
    pub const NODLCKBLK: Flags = Flags(0x0000_0200);
    pub const EXPEDITE: Flags = Flags(0x0000_0400);
    /// With NOQUEUE: send blocking ASTs to the holders before failing.
    pub const NOQUEUEBAST: Flags = Flags(0x0000_0800);
    pub const HEADQUE: Flags = Flags(0x0000_1000);
    pub const NOORDER: Flags = Flags(0x0000_2000);
    /// Adopt an orphaned PERSISTENT lock of this name and mode.
    pub const ORPHAN: Flags = Flags(0x0000_4000);
    pub const ALTPR: Flags = Flags(0x0000_8000);
    pub const ALTCW: Flags = Flags(0x0001_0000);
    pub const FORCEUNLOCK: Flags = Flags(0x0002_0000);
    /// Deprecated by the kernel (removed in 6.2); never sent.
    pub const TIMEOUT: Flags = Flags(0x0004_0000);

    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    // The header's structs as a 64-bit kernel lays them out: `void __user *`
    // and `struct dlm_lksb __user *` are 8-byte pointers, here u64. Only
    // their layout is used, never their values.

    #[allow(dead_code)]
    #[repr(C)]
    struct DlmLockParams {
        mode: u8,
        namelen: u8,
        unused: u16,
        flags: u32,
        lkid: u32,
        parent: u32,
        xid: u64,
        timeout: u64,
        castparam: u64,
        castaddr: u64,
        bastparam: u64,
        bastaddr: u64,
        lksb: u64,
        lvb: [u8; LVB_LEN],
        name: [u8; 0],
    }

    #[allow(dead_code)]
    #[repr(C)]
    struct DlmLspaceParams {
        flags: u32,
        minor: u32,
        name: [u8; 0],
    }

    #[allow(dead_code)]
    #[repr(C)]
    struct DlmPurgeParams {
        nodeid: u32,
        pid: u32,
    }

    #[allow(dead_code)]
    #[repr(C)]
    union Params {
        lock: std::mem::ManuallyDrop<DlmLockParams>,
        lspace: std::mem::ManuallyDrop<DlmLspaceParams>,
        purge: std::mem::ManuallyDrop<DlmPurgeParams>,
    }

    #[allow(dead_code)]
    #[repr(C)]
    struct DlmWriteRequest {
        version: [u32; 3],
        cmd: u8,
        is64bit: u8,
        unused: [u8; 2],
        i: Params,
    }

    #[allow(dead_code)]
    #[repr(C)]
    struct DlmLksb {
        sb_status: i32,
        sb_lkid: u32,
        sb_flags: i8,
        sb_lvbptr: u64,
    }

    #[allow(dead_code)]
    #[repr(C)]
    struct DlmLockResult {
        version: [u32; 3],
        length: u32,
        user_astaddr: u64,
        user_astparam: u64,
        user_lksb: u64,
        lksb: DlmLksb,
        bast_mode: u8,
        unused: [u8; 3],
        lvb_offset: u32,
    }

    #[test]
    fn write_request_layout_matches_the_header() {
        assert_eq!(size_of::<DlmWriteRequest>(), req::SIZE);
        assert_eq!(offset_of!(DlmWriteRequest, version), req::VERSION);
        assert_eq!(offset_of!(DlmWriteRequest, cmd), req::CMD);
        assert_eq!(offset_of!(DlmWriteRequest, is64bit), req::IS64BIT);
        assert_eq!(offset_of!(DlmWriteRequest, unused), 14);
        assert_eq!(offset_of!(DlmWriteRequest, i), req::I);
    }

    #[test]
    fn lock_params_layout_matches_the_header() {
        assert_eq!(size_of::<DlmLockParams>(), lock::NAME);
        assert_eq!(offset_of!(DlmLockParams, mode), lock::MODE);
        assert_eq!(offset_of!(DlmLockParams, namelen), lock::NAMELEN);
        assert_eq!(offset_of!(DlmLockParams, unused), 2);
        assert_eq!(offset_of!(DlmLockParams, flags), lock::FLAGS);
        assert_eq!(offset_of!(DlmLockParams, lkid), lock::LKID);
        assert_eq!(offset_of!(DlmLockParams, parent), lock::PARENT);
        assert_eq!(offset_of!(DlmLockParams, xid), lock::XID);
        assert_eq!(offset_of!(DlmLockParams, timeout), lock::TIMEOUT);
        assert_eq!(offset_of!(DlmLockParams, castparam), lock::CASTPARAM);
        assert_eq!(offset_of!(DlmLockParams, castaddr), lock::CASTADDR);
        assert_eq!(offset_of!(DlmLockParams, bastparam), lock::BASTPARAM);
        assert_eq!(offset_of!(DlmLockParams, bastaddr), lock::BASTADDR);
        assert_eq!(offset_of!(DlmLockParams, lksb), lock::LKSB);
        assert_eq!(offset_of!(DlmLockParams, lvb), lock::LVB);
        assert_eq!(offset_of!(DlmLockParams, name), lock::NAME);
    }

    #[test]
    fn lspace_and_purge_params_layout_matches_the_header() {
        assert_eq!(size_of::<DlmLspaceParams>(), 8);
        assert_eq!(offset_of!(DlmLspaceParams, flags), lspace::FLAGS);
        assert_eq!(offset_of!(DlmLspaceParams, minor), lspace::MINOR);
        assert_eq!(offset_of!(DlmLspaceParams, name), lspace::NAME);
        assert_eq!(size_of::<DlmPurgeParams>(), 8);
        assert_eq!(offset_of!(DlmPurgeParams, nodeid), purge::NODEID);
        assert_eq!(offset_of!(DlmPurgeParams, pid), purge::PID);
    }

    #[test]
    fn lock_result_layout_matches_the_header() {
        assert_eq!(size_of::<DlmLksb>(), 24);
        assert_eq!(offset_of!(DlmLksb, sb_status), 0);
        assert_eq!(offset_of!(DlmLksb, sb_lkid), 4);
        assert_eq!(offset_of!(DlmLksb, sb_flags), 8);
        assert_eq!(offset_of!(DlmLksb, sb_lvbptr), 16);
        assert_eq!(size_of::<DlmLockResult>(), res::SIZE);
        assert_eq!(offset_of!(DlmLockResult, version), res::VERSION);
        assert_eq!(offset_of!(DlmLockResult, length), res::LENGTH);
        assert_eq!(offset_of!(DlmLockResult, user_astaddr), res::USER_ASTADDR);
        assert_eq!(offset_of!(DlmLockResult, user_astparam), res::USER_ASTPARAM);
        assert_eq!(offset_of!(DlmLockResult, user_lksb), res::USER_LKSB);
        assert_eq!(offset_of!(DlmLockResult, lksb), res::LKSB);
        assert_eq!(offset_of!(DlmLockResult, bast_mode), res::BAST_MODE);
        assert_eq!(offset_of!(DlmLockResult, lvb_offset), res::LVB_OFFSET);
    }

    /// The values of dlmconstants.h, dlm_device.h and dlm.h.
    #[test]
    fn constants_match_the_headers() {
        assert_eq!(VERSION, [6, 0, 1]);
        assert_eq!((cmd::LOCK, cmd::UNLOCK), (1, 2));
        assert_eq!((cmd::CREATE_LOCKSPACE, cmd::REMOVE_LOCKSPACE), (4, 5));
        assert_eq!(cmd::PURGE, 6);
        assert_eq!(LSFLG_FORCEFREE, 2);
        assert_eq!((ECANCEL, EUNLOCK), (0x10001, 0x10002));
        assert_eq!((LVB_LEN, RESNAME_MAXLEN, LOCKSPACE_LEN), (32, 64, 64));
        let modes = [Mode::Nl, Mode::Cr, Mode::Cw, Mode::Pr, Mode::Pw, Mode::Ex];
        for (i, m) in modes.iter().enumerate() {
            assert_eq!(*m as u8, i as u8);
            assert_eq!(Mode::from_raw(i as u8), Some(*m));
        }
        assert_eq!(Mode::from_raw(6), None);
        let flags = [
            (Flags::NOQUEUE, 0x1),
            (Flags::CANCEL, 0x2),
            (Flags::CONVERT, 0x4),
            (Flags::VALBLK, 0x8),
            (Flags::QUECVT, 0x10),
            (Flags::IVVALBLK, 0x20),
            (Flags::CONVDEADLK, 0x40),
            (Flags::PERSISTENT, 0x80),
            (Flags::NODLCKWT, 0x100),
            (Flags::NODLCKBLK, 0x200),
            (Flags::EXPEDITE, 0x400),
            (Flags::NOQUEUEBAST, 0x800),
            (Flags::HEADQUE, 0x1000),
            (Flags::NOORDER, 0x2000),
            (Flags::ORPHAN, 0x4000),
            (Flags::ALTPR, 0x8000),
            (Flags::ALTCW, 0x10000),
            (Flags::FORCEUNLOCK, 0x20000),
            (Flags::TIMEOUT, 0x40000),
        ];
        for (f, v) in flags {
            assert_eq!(f.0, v);
        }
    }
}
