//! The daemon runs the commands its config names, as root, and locks files
//! in the lock dir. So when it runs as root it refuses a config file,
//! drop-in, program, lock dir or runtime dir that someone other than root
//! could have changed: the rule keepalived applies with
//! `enable_script_security`. A path is unsafe when it, or any directory
//! above it, is writable by group or others (a sticky root-owned directory
//! such as /tmp above it is fine: others cannot replace what root put
//! there), or is owned by a user other than root.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

const S_ISVTX: u32 = 0o1000;

/// Why an existing runtime dir is not private to this user (not a
/// directory, another owner, group or other access), or None: the daemon
/// refuses such a dir rather than chmod one that may be shared (`/run`).
/// `instance` applies it at start; `check` reports it beforehand.
pub fn not_private(md: &std::fs::Metadata) -> Option<String> {
    let euid = nix::unistd::geteuid().as_raw();
    if !md.is_dir() {
        Some("not a directory".to_string())
    } else if md.uid() != euid {
        Some(format!("owned by uid {}, we run as uid {euid}", md.uid()))
    } else if md.mode() & 0o077 != 0 {
        Some(format!(
            "mode {:o}: group or others may enter",
            md.mode() & 0o7777
        ))
    } else {
        None
    }
}

/// Why `path` is unsafe to trust as root, or None.
pub fn path_problem(path: &Path) -> Option<String> {
    chain_problem(path, true)
}

/// Why directory `dir` is unsafe to trust as root, or None. The daemon
/// creates a missing one (0700), so then it is judged by its nearest
/// existing ancestor, which lies above it: sticky root-owned is fine there.
pub fn dir_problem(dir: &Path) -> Option<String> {
    let mut here = dir;
    loop {
        match std::fs::symlink_metadata(here) {
            Ok(_) => return chain_problem(here, here == dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match here.parent() {
                Some(p) => here = p,
                None => return Some(format!("{}: {e}", dir.display())),
            },
            Err(e) => return Some(format!("{}: {e}", here.display())),
        }
    }
}

/// `path` and every directory above it must be owned by root and writable
/// by nobody else; the sticky exception applies to the directories above,
/// and to `path` itself unless `leaf` (a sticky world-writable lock dir
/// would let anyone plant files in it). Judged twice: along the resolved
/// path, and along the path as written, because a symlink on the way can be
/// re-pointed by whoever may write the directory it sits in.
fn chain_problem(path: &Path, leaf: bool) -> Option<String> {
    let resolved = match std::fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) => return Some(format!("{}: {e}", path.display())),
    };
    let written = std::path::absolute(path).unwrap_or_else(|_| resolved.clone());
    let mut strict = leaf;
    for p in resolved.ancestors() {
        if let Some(e) = one_problem(p, strict) {
            return Some(e);
        }
        strict = false;
    }
    written
        .ancestors()
        .skip(1)
        .find_map(|p| one_problem(p, false))
}

/// Why `p` (followed if a symlink) is not root's alone, or None.
fn one_problem(p: &Path, strict: bool) -> Option<String> {
    let md = match std::fs::metadata(p) {
        Ok(m) => m,
        Err(e) => return Some(format!("{}: {e}", p.display())),
    };
    if md.uid() != 0 {
        return Some(format!(
            "{} is owned by uid {}, not root",
            p.display(),
            md.uid()
        ));
    }
    let sticky_dir = !strict && md.is_dir() && md.mode() & S_ISVTX != 0;
    if md.mode() & 0o022 != 0 && !sticky_dir {
        return Some(format!(
            "{} is writable by group or others (mode {:o})",
            p.display(),
            md.mode() & 0o7777
        ));
    }
    None
}
