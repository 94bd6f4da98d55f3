//! Whether the `file` backend's locks reach every node that can see the
//! lock dir: judged from the filesystem the dir is on.
//!
//! An OFD lock is only as wide as the filesystem makes it. On a local
//! filesystem it covers one host, which is all it needs to (no other host
//! sees the files). On a shared one it must be cluster-wide, and several are
//! not: OCFS2 on the o2cb stack keeps POSIX and OFD locks on the node
//! (`ocfs2_populate_inode`: plocks only where the stack has them, which is
//! the user stack, fs/dlm), as does any OCFS2 or GFS2 mount with
//! `localflocks`, and NFS with `nolock` or `local_lock=posix|all`. There a
//! lock held on one node is granted on the next: two masters. So the lock
//! dir's filesystem is judged before any lock is taken (`check-config`,
//! `run`, a reload, `run-locked`, `lock`), and a filesystem known to keep
//! locks local, or one we know nothing about, is refused.
//!
//! [`judge`] is the decision, pure; [`probe`] gathers what it needs
//! (`statfs`, `/proc/self/mountinfo`, `/sys/fs/ocfs2/cluster_stack`).

use std::path::{Path, PathBuf};

/// `statfs` magic numbers (linux/magic.h and the filesystems' own headers).
pub mod magic {
    pub const EXT4: u32 = 0xEF53; // ext2, ext3, ext4
    pub const XFS: u32 = 0x5846_5342;
    pub const BTRFS: u32 = 0x9123_683E;
    pub const TMPFS: u32 = 0x0102_1994;
    pub const RAMFS: u32 = 0x8584_58F6;
    pub const F2FS: u32 = 0xF2F5_2010;
    pub const BCACHEFS: u32 = 0xCA45_1A4E;
    pub const ZFS: u32 = 0x2FC1_2FC1;
    pub const REISERFS: u32 = 0x5265_4973;
    pub const JFS: u32 = 0x3153_464A;
    pub const MSDOS: u32 = 0x4D44; // vfat
    pub const EXFAT: u32 = 0x2011_BAB0;
    pub const OVERLAYFS: u32 = 0x794C_7630;
    pub const OCFS2: u32 = 0x7461_636F;
    pub const GFS2: u32 = 0x0116_1970;
    pub const CEPH: u32 = 0x00C3_6400;
    pub const NFS: u32 = 0x6969;
    pub const FUSE: u32 = 0x6573_5546;
    pub const V9FS: u32 = 0x0102_1997;
    pub const CIFS: u32 = 0xFF53_4D42;
    pub const SMB2: u32 = 0xFE53_4D42;
}

/// Filesystems on one host's own storage (or memory): their locks need to
/// cover that host only. Overlayfs counts: its upper layer must be local.
const LOCAL: &[(&str, u32)] = &[
    ("ext4", magic::EXT4),
    ("ext3", magic::EXT4),
    ("ext2", magic::EXT4),
    ("xfs", magic::XFS),
    ("btrfs", magic::BTRFS),
    ("tmpfs", magic::TMPFS),
    ("ramfs", magic::RAMFS),
    ("f2fs", magic::F2FS),
    ("bcachefs", magic::BCACHEFS),
    ("zfs", magic::ZFS),
    ("reiserfs", magic::REISERFS),
    ("jfs", magic::JFS),
    ("vfat", magic::MSDOS),
    ("msdos", magic::MSDOS),
    ("exfat", magic::EXFAT),
    ("overlay", magic::OVERLAYFS),
];

/// What [`judge`] decides from: the lock dir's filesystem as the kernel
/// describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Facts {
    /// `statfs` f_type (the low 32 bits: some ABIs sign-extend it).
    pub f_type: u32,
    /// The mountinfo fields of the mount the dir is on; `fstype` empty when
    /// no mountinfo line was found (then `f_type` alone decides).
    pub mount: MountEntry,
    /// `/sys/fs/ocfs2/cluster_stack`, trimmed; None if unreadable. Read
    /// only for OCFS2.
    pub cluster_stack: Option<String>,
}

/// One line of `/proc/self/mountinfo`, the fields we use.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MountEntry {
    pub mount_point: PathBuf,
    /// `ext4`, `ocfs2`, `nfs4`, `fuse.sshfs`, ...
    pub fstype: String,
    pub source: String,
    /// The per-mount options, then the superblock's (where `localflocks`,
    /// `nolock`, `local_lock=` show).
    pub options: Vec<String>,
}

/// How far a lock on this filesystem reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// A filesystem of one host: the lock covers that host, and no other
    /// host can see the lock files.
    Host,
    /// Shared, with locks every node sees; `note`: what it costs (NFS: a
    /// dead holder's lock is freed only by the server's recovery).
    Cluster { note: Option<String> },
    /// Not known to us; the admin said its locks are cluster-wide
    /// (`[lock] trust_filesystem = true`).
    Trusted,
}

/// The lock dir's filesystem, accepted: for `status` and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub reach: Reach,
    /// The statfs type judged, for the `file` backend to hold every lock
    /// file to (`FileBackend::judged_on`).
    pub f_type: u32,
    /// `ext4 at /var/lib` (or the f_type, without a mountinfo line).
    pub what: String,
}

impl Accepted {
    /// One line for `status` and the log: how far the locks reach.
    pub fn describe(&self) -> String {
        match &self.reach {
            Reach::Host => format!(
                "host-local ({}): locks exclude processes of this host only",
                self.what
            ),
            Reach::Cluster { note: None } => format!("cluster-wide ({})", self.what),
            Reach::Cluster { note: Some(n) } => format!("cluster-wide ({}): {n}", self.what),
            Reach::Trusted => format!(
                "cluster-wide as trust_filesystem says ({}); not checked by dlm-electd",
                self.what
            ),
        }
    }
}

/// Has mount option `name` (a flag, or `name=...` when `name` ends in `=`).
fn opt<'a>(options: &'a [String], name: &str) -> Option<&'a str> {
    options.iter().rev().find_map(|o| {
        if let Some(v) = name.strip_suffix('=') {
            o.strip_prefix(v)?.strip_prefix('=')
        } else {
            (o == name).then_some("")
        }
    })
}

const USE_DLMFS: &str = "use the `dlmfs` backend on OCFS2 clusters (docs/lock-backends.md)";

/// Why the `file` backend may not lock in a dir (the messages the
/// config check places at `lock.dir`).
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// Its filesystem keeps locks on the node, or may.
    #[error("the lock dir is on {what}: {why}")]
    Refused { what: String, why: String },
    /// Neither the dir nor any ancestor could be looked at.
    #[error("{}: {source}", path.display())]
    Unreachable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot statfs {}: {source}", path.display())]
    Statfs { path: PathBuf, source: nix::Error },
}

/// The decision: Ok with how far the locks reach, or Err with why the
/// `file` backend must not lock there. `trust` (`[lock] trust_filesystem`)
/// admits a filesystem we do not know; it never overrides one known to
/// keep locks on the node.
pub fn judge(f: &Facts, trust: bool) -> Result<Accepted, FsError> {
    let m = &f.mount;
    let fstype = if m.fstype.is_empty() {
        // No mountinfo line: name what statfs says.
        LOCAL
            .iter()
            .find(|(_, x)| *x == f.f_type)
            .map(|(n, _)| n.to_string())
            .unwrap_or_else(|| match f.f_type {
                magic::OCFS2 => "ocfs2".into(),
                magic::GFS2 => "gfs2".into(),
                magic::CEPH => "ceph".into(),
                magic::NFS => "nfs".into(),
                _ => format!("f_type {:#x}", f.f_type),
            })
    } else {
        m.fstype.clone()
    };
    let what = if m.mount_point.as_os_str().is_empty() {
        fstype.clone()
    } else {
        format!("{fstype} at {}", m.mount_point.display())
    };
    let base = fstype.split('.').next().unwrap_or("");
    let ok = |reach| {
        Ok(Accepted {
            reach,
            f_type: f.f_type,
            what: what.clone(),
        })
    };
    let refuse = |why: String| {
        Err(FsError::Refused {
            what: what.clone(),
            why,
        })
    };
    let o = &m.options;
    let is = |name: &str, mag: u32| base == name || (m.fstype.is_empty() && f.f_type == mag);

    if is("ocfs2", magic::OCFS2) {
        if opt(o, "localflocks").is_some() {
            return refuse(format!(
                "mounted with `localflocks`, so POSIX and OFD locks stay on each node and two nodes can both be master; {USE_DLMFS}"
            ));
        }
        // The mount option, when given, names the stack the mount uses;
        // otherwise the node's one active stack does.
        let stack = opt(o, "cluster_stack=").or(f.cluster_stack.as_deref());
        return match stack {
            Some("o2cb") => refuse(format!(
                "OCFS2 on the o2cb stack keeps POSIX and OFD locks on each node (only flock(2) is cluster-wide there), so two nodes can both be master; {USE_DLMFS}"
            )),
            Some(s) if !s.is_empty() => ok(Reach::Cluster {
                note: Some(format!(
                    "OCFS2 on the {s} (user) stack: POSIX locks through fs/dlm"
                )),
            }),
            _ => refuse(format!(
                "cannot tell its cluster stack (/sys/fs/ocfs2/cluster_stack unreadable); on o2cb its POSIX locks stay on each node; {USE_DLMFS}"
            )),
        };
    }
    if is("gfs2", magic::GFS2) {
        if opt(o, "localflocks").is_some() {
            return refuse(
                "mounted with `localflocks`, so POSIX and OFD locks stay on each node and two nodes can both be master".into(),
            );
        }
        if opt(o, "lockproto=") == Some("lock_nolock") {
            // A single-node mount: no other node may mount it at all.
            return ok(Reach::Host);
        }
        return ok(Reach::Cluster {
            note: Some("GFS2: POSIX locks through dlm_controld".into()),
        });
    }
    if is("ceph", magic::CEPH) {
        return ok(Reach::Cluster { note: None });
    }
    if base == "nfs" || base == "nfs4" || (m.fstype.is_empty() && f.f_type == magic::NFS) {
        if opt(o, "nolock").is_some() {
            return refuse(
                "mounted with `nolock`, so locks stay on each client and two nodes can both be master".into(),
            );
        }
        if let Some(l @ ("posix" | "all")) = opt(o, "local_lock=") {
            return refuse(format!(
                "mounted with `local_lock={l}`, so POSIX and OFD locks stay on each client and two nodes can both be master"
            ));
        }
        let v4 = base == "nfs4" || opt(o, "vers=").is_some_and(|v| v.starts_with('4'));
        let note = if v4 {
            "a dead holder's lock is freed only when its NFSv4 lease on the server runs out (the server's lease time, 90 s by default on Linux)"
        } else {
            "a dead holder's lock (NLM) is freed only when its node reboots and tells the server, or an admin clears it on the server, plus the server's grace time after a server restart"
        };
        return ok(Reach::Cluster {
            note: Some(note.into()),
        });
    }
    // By name or by magic: a FUSE or network filesystem cannot have a
    // local one's magic, and names vary (devtmpfs has tmpfs's magic).
    let local = LOCAL.iter().any(|(n, x)| *x == f.f_type || *n == base);
    if local {
        return ok(Reach::Host);
    }
    if trust {
        return ok(Reach::Trusted);
    }
    let kind = match f.f_type {
        magic::FUSE => "a FUSE filesystem (virtiofs and the like too)",
        magic::V9FS => "a 9p share",
        magic::CIFS | magic::SMB2 => "an SMB share",
        _ => "not a local filesystem dlm-electd knows",
    };
    refuse(format!(
        "{kind}, whose locks may stay on each node (that depends on the implementation), so two nodes could both be master; use a local dir, or a shared filesystem known to lock cluster-wide (GFS2, CephFS, OCFS2 on the user stack, NFS with locking), or set `[lock] trust_filesystem = true` if you know its locks reach every node"
    ))
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        // Three octal digits of one byte (the kernel escapes space, tab,
        // newline and backslash): a first digit above 3 would not fit.
        if b[i] == b'\\'
            && i + 3 < b.len()
            && (b'0'..=b'3').contains(&b[i + 1])
            && b[i + 2..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses one mountinfo line; None if it is not one.
pub fn parse_mountinfo_line(line: &str) -> Option<MountEntry> {
    let (left, right) = line.split_once(" - ")?;
    let l: Vec<&str> = left.split(' ').collect();
    let r: Vec<&str> = right.split(' ').collect();
    if l.len() < 6 || r.len() < 3 {
        return None;
    }
    let mut options: Vec<String> = l[5].split(',').map(str::to_string).collect();
    options.extend(r[2].split(',').map(str::to_string));
    Some(MountEntry {
        mount_point: PathBuf::from(unescape(l[4])),
        fstype: r[0].to_string(),
        source: unescape(r[1]),
        options,
    })
}

/// The mount `path` (absolute, symlinks resolved) is on: the last of the
/// longest mount points above it (a later mount on the same point hides
/// the earlier one).
pub fn mount_of(mountinfo: &str, path: &Path) -> Option<MountEntry> {
    let mut best: Option<MountEntry> = None;
    for e in mountinfo.lines().filter_map(parse_mountinfo_line) {
        if !path.starts_with(&e.mount_point) {
            continue;
        }
        let longer = best.as_ref().is_none_or(|b| {
            e.mount_point.components().count() >= b.mount_point.components().count()
        });
        if longer {
            best = Some(e);
        }
    }
    best
}

/// The dir, or its nearest existing ancestor: the daemon creates a missing
/// lock dir, which then lands on that ancestor's filesystem (unless a mount
/// appears in between, which a later check sees).
fn nearest_existing(dir: &Path) -> Result<PathBuf, FsError> {
    let mut here = dir;
    loop {
        match std::fs::canonicalize(here) {
            Ok(p) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match here.parent() {
                Some(p) => here = p,
                None => {
                    return Err(FsError::Unreachable {
                        path: dir.to_path_buf(),
                        source: e,
                    });
                }
            },
            Err(e) => {
                return Err(FsError::Unreachable {
                    path: here.to_path_buf(),
                    source: e,
                });
            }
        }
    }
}

pub const MOUNTINFO: &str = "/proc/self/mountinfo";
pub const OCFS2_CLUSTER_STACK: &str = "/sys/fs/ocfs2/cluster_stack";

/// Gathers the [`Facts`] of the filesystem `dir` (or its nearest existing
/// ancestor) is on.
pub fn probe(dir: &Path) -> Result<Facts, FsError> {
    let at = nearest_existing(dir)?;
    let st = nix::sys::statfs::statfs(&at).map_err(|source| FsError::Statfs {
        path: at.clone(),
        source,
    })?;
    // f_type is signed on some ABIs; the magic numbers are 32-bit.
    let f_type = st.filesystem_type().0 as u32;
    let mount = std::fs::read_to_string(MOUNTINFO)
        .ok()
        .and_then(|t| mount_of(&t, &at))
        .unwrap_or_default();
    let cluster_stack = (f_type == magic::OCFS2 || mount.fstype == "ocfs2")
        .then(|| std::fs::read_to_string(OCFS2_CLUSTER_STACK).ok())
        .flatten()
        .map(|s| s.trim().to_string());
    Ok(Facts {
        f_type,
        mount,
        cluster_stack,
    })
}

/// [`probe`] then [`judge`]: the one call the config check, the daemon's
/// start and the workload commands make.
pub fn check_dir(dir: &Path, trust: bool) -> Result<Accepted, FsError> {
    judge(&probe(dir)?, trust)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in mountinfo, as a node with these mounts shows it.
    const MOUNTINFO: &str = "\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
25 22 0:23 / /run rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,size=400k,mode=755
40 22 8:16 / /srv/shared rw,relatime shared:20 - ocfs2 /dev/sdb rw,_netdev,heartbeat=global,nointr,data=ordered,errors=remount-ro,atime_quantum=60,coherency=full,user_xattr,acl
41 22 8:32 / /srv/local\\040flocks rw,relatime shared:21 - ocfs2 /dev/sdc rw,_netdev,heartbeat=local,localflocks,cluster_stack=pcmk
42 22 0:50 / /mnt/nfs rw,relatime shared:22 - nfs 10.0.0.1:/export rw,vers=3,rsize=1048576,nolock,proto=tcp,local_lock=all,addr=10.0.0.1
43 22 0:51 / /mnt/nfs4 rw,relatime shared:23 - nfs4 10.0.0.1:/ rw,vers=4.2,rsize=1048576,proto=tcp,local_lock=none,addr=10.0.0.1
44 22 0:52 / /mnt/sshfs rw,nosuid,nodev,relatime shared:24 - fuse.sshfs user@h:/ rw,user_id=0,group_id=0
45 22 0:53 / /mnt/gfs2 rw,relatime shared:25 - gfs2 /dev/sdd rw,meta,lockproto=lock_dlm,locktable=c:fs
46 40 8:48 / /srv/shared/inner rw,relatime shared:26 - xfs /dev/sde rw,attr2
47 22 0:54 / /mnt/ceph rw,relatime shared:27 - ceph 10.0.0.1:6789:/ rw,name=admin
";

    fn facts(path: &str, f_type: u32, stack: Option<&str>) -> Facts {
        Facts {
            f_type,
            mount: mount_of(MOUNTINFO, Path::new(path)).unwrap(),
            cluster_stack: stack.map(str::to_string),
        }
    }

    fn reach(f: &Facts, trust: bool) -> Reach {
        judge(f, trust)
            .unwrap_or_else(|e| panic!("refused: {e}"))
            .reach
    }

    fn refused(f: &Facts, trust: bool) -> String {
        match judge(f, trust) {
            Err(e) => e.to_string(),
            Ok(a) => panic!("accepted: {a:?}"),
        }
    }

    #[test]
    fn finds_the_innermost_mount_of_a_path() {
        let m = mount_of(MOUNTINFO, Path::new("/srv/shared/inner/locks")).unwrap();
        assert_eq!((m.fstype.as_str(), m.source.as_str()), ("xfs", "/dev/sde"));
        let m = mount_of(MOUNTINFO, Path::new("/srv/shared/locks")).unwrap();
        assert_eq!(m.fstype, "ocfs2");
        assert!(m.options.iter().any(|o| o == "coherency=full"), "{m:?}");
        // Path components, not string prefixes: /srv/sharedx is on /.
        assert_eq!(
            mount_of(MOUNTINFO, Path::new("/srv/sharedx"))
                .unwrap()
                .fstype,
            "ext4"
        );
        let m = mount_of(MOUNTINFO, Path::new("/srv/local flocks/l")).unwrap();
        assert_eq!(m.mount_point, Path::new("/srv/local flocks"));
    }

    #[test]
    fn a_later_mount_on_the_same_point_hides_the_earlier() {
        let info = format!("{MOUNTINFO}50 22 0:60 / /run rw - ocfs2 /dev/sdf rw,heartbeat=local\n");
        let m = mount_of(&info, Path::new("/run/locks")).unwrap();
        assert_eq!(m.fstype, "ocfs2");
    }

    #[test]
    fn local_filesystems_are_host_local() {
        assert_eq!(
            reach(&facts("/var/lib/x", magic::EXT4, None), false),
            Reach::Host
        );
        assert_eq!(
            reach(&facts("/run/x", magic::TMPFS, None), false),
            Reach::Host
        );
        let a = judge(&facts("/run/x", magic::TMPFS, None), false).unwrap();
        assert_eq!(
            a.describe(),
            "host-local (tmpfs at /run): locks exclude processes of this host only"
        );
        // Without a mountinfo line, by statfs magic alone.
        let bare = Facts {
            f_type: magic::XFS,
            ..Facts::default()
        };
        assert_eq!(judge(&bare, false).unwrap().what, "xfs");
    }

    #[test]
    fn ocfs2_on_o2cb_is_refused_whatever_the_trust() {
        let f = facts("/srv/shared/locks", magic::OCFS2, Some("o2cb"));
        for trust in [false, true] {
            let e = refused(&f, trust);
            assert!(e.starts_with("the lock dir is on ocfs2 at /srv/shared: OCFS2 on the o2cb stack keeps POSIX and OFD locks on each node"), "{e}");
            assert!(e.contains("`dlmfs` backend"), "{e}");
        }
        // Stack unknown (ocfs2_stackglue not loaded, or unreadable): refused.
        let e = refused(&facts("/srv/shared/locks", magic::OCFS2, None), false);
        assert!(e.contains("cannot tell its cluster stack"), "{e}");
        // By magic alone, too.
        let bare = Facts {
            f_type: magic::OCFS2,
            cluster_stack: Some("o2cb".into()),
            ..Facts::default()
        };
        assert!(refused(&bare, true).contains("o2cb stack"));
    }

    #[test]
    fn ocfs2_on_the_user_stack_is_cluster_wide_unless_localflocks() {
        let mut f = facts("/srv/shared/locks", magic::OCFS2, Some("pcmk"));
        assert!(matches!(reach(&f, false), Reach::Cluster { .. }));
        // The mount's own cluster_stack= wins over the sysfs file.
        f.mount.options.push("cluster_stack=o2cb".into());
        assert!(refused(&f, false).contains("o2cb stack"));
        let e = refused(
            &facts("/srv/local flocks/l", magic::OCFS2, Some("pcmk")),
            true,
        );
        assert!(e.contains("mounted with `localflocks`"), "{e}");
        assert!(e.contains("at /srv/local flocks"), "{e}");
    }

    #[test]
    fn nfs_is_refused_with_local_locks_and_otherwise_says_what_a_death_costs() {
        let e = refused(&facts("/mnt/nfs/l", magic::NFS, None), true);
        assert!(e.contains("mounted with `nolock`"), "{e}");
        let mut f = facts("/mnt/nfs/l", magic::NFS, None);
        f.mount.options.retain(|o| o != "nolock");
        assert!(refused(&f, false).contains("`local_lock=all`"));
        for l in ["posix", "flock", "none"] {
            f.mount.options.retain(|o| !o.starts_with("local_lock="));
            f.mount.options.push(format!("local_lock={l}"));
            let got = judge(&f, false);
            // flock-only local locking leaves OFD (POSIX) locks to the server.
            assert_eq!(got.is_ok(), l != "posix", "local_lock={l}: {got:?}");
        }
        let a = judge(&f, false).unwrap();
        assert!(
            a.describe().contains("(NLM) is freed only when"),
            "{}",
            a.describe()
        );
        let a = judge(&facts("/mnt/nfs4/l", magic::NFS, None), false).unwrap();
        assert!(a.describe().contains("NFSv4 lease"), "{}", a.describe());
    }

    #[test]
    fn gfs2_and_ceph_are_cluster_wide() {
        let mut f = facts("/mnt/gfs2/l", magic::GFS2, None);
        assert!(matches!(reach(&f, false), Reach::Cluster { .. }));
        f.mount.options.push("localflocks".into());
        assert!(refused(&f, true).contains("`localflocks`"));
        f.mount.options.retain(|o| o != "localflocks");
        f.mount.options.push("lockproto=lock_nolock".into());
        assert_eq!(reach(&f, false), Reach::Host);
        assert_eq!(
            reach(&facts("/mnt/ceph/l", magic::CEPH, None), false),
            Reach::Cluster { note: None }
        );
    }

    #[test]
    fn unknown_and_user_space_filesystems_need_trust() {
        let f = facts("/mnt/sshfs/l", magic::FUSE, None);
        let e = refused(&f, false);
        assert!(
            e.starts_with("the lock dir is on fuse.sshfs at /mnt/sshfs: a FUSE filesystem"),
            "{e}"
        );
        assert!(e.contains("trust_filesystem = true"), "{e}");
        assert_eq!(reach(&f, true), Reach::Trusted);
        let smb = Facts {
            f_type: magic::SMB2,
            ..Facts::default()
        };
        assert!(refused(&smb, false).contains("an SMB share"));
        assert_eq!(reach(&smb, true), Reach::Trusted);
        let nine = Facts {
            f_type: magic::V9FS,
            mount: MountEntry {
                fstype: "9p".into(),
                ..MountEntry::default()
            },
            ..Facts::default()
        };
        assert!(refused(&nine, false).contains("a 9p share"));
    }

    #[test]
    fn mountinfo_escapes_are_undone_and_odd_ones_kept() {
        assert_eq!(unescape("/a\\040b\\011c\\134d"), "/a b\tc\\d");
        assert_eq!(unescape("/x\\777\\04"), "/x\\777\\04");
    }

    #[test]
    fn options_are_matched_whole() {
        let o: Vec<String> = ["rw", "nolocks", "local_lock=posixx", "vers=4.1"]
            .map(String::from)
            .to_vec();
        assert_eq!(opt(&o, "nolock"), None);
        assert_eq!(opt(&o, "local_lock="), Some("posixx"));
        assert_eq!(opt(&o, "vers="), Some("4.1"));
        assert_eq!(opt(&o, "rw"), Some(""));
    }

    #[test]
    fn probes_the_nearest_existing_ancestor() {
        let d = tempfile::tempdir().unwrap();
        let f = probe(&d.path().join("not/yet")).unwrap();
        let at = std::fs::canonicalize(d.path()).unwrap();
        assert!(at.starts_with(&f.mount.mount_point), "{f:?}");
        assert!(!f.mount.fstype.is_empty(), "{f:?}");
    }
}
