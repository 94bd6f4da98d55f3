//! The checks that need the filesystem or the network stack, run on a
//! config that validated, at the places `validate` recorded (so every
//! problem names the file, line:column and key that caused it).
//!
//! Errors: a program that cannot be executed, wherever this runs; as root,
//! the ownership rule of `security` for programs, the lock dir (`file`
//! backend only: dlmfs checks its mount by filesystem magic) and the
//! runtime dir; with the `file` backend, a lock dir on a filesystem whose
//! locks may not reach every node that sees it (`lock::filesystem`).
//! Warnings: a vip interface missing on this host (it may
//! appear later, e.g. a VLAN or bond created after boot). The warnings that
//! ask netlink or the service manager are `crate::preflight`'s.

use super::error::ConfigError;
use super::security::{dir_problem, path_problem};
use super::spec::{ActionSpec, Config, Places};
use crate::lock::Backend;
use nix::unistd::AccessFlags;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// As root: the config file and drop-ins must be safe (see `security`).
/// Separate from `check` because it judges where the files were installed,
/// not what they say.
pub fn config_files(files: &[PathBuf]) -> Vec<ConfigError> {
    files
        .iter()
        .filter_map(|f| {
            path_problem(f).map(|p| ConfigError {
                path: f.clone(),
                pos: None,
                msg: format!("refusing config as root: {p}"),
            })
        })
        .collect()
}

/// Every check but `config_files`: Ok(warnings), or Err(errors).
pub fn check(
    cfg: &Config,
    places: &Places,
    as_root: bool,
) -> Result<Vec<ConfigError>, Vec<ConfigError>> {
    check_as(cfg, places, as_root, LockUse::Take)
}

/// What the command about to run does with the config's locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockUse {
    /// Takes locks (`run`, a reload, `run-locked`, `lock`, `check-config`):
    /// a lock dir whose locks may stay on the node is an error.
    Take,
    /// Only gives them up and undoes (`cleanup`, `unlock`): refusing would
    /// leave a dead daemon's VIPs and services up (say, an old version's,
    /// which ran before this check), so the filesystem is only a warning.
    Release,
}

/// The `file` backend's lock dir, judged by the filesystem it is on (see
/// `lock::filesystem`): Ok(None) for dlmfs, Ok(how far its locks reach),
/// or the error at `lock.dir`.
pub fn lock_filesystem(
    cfg: &Config,
    places: &Places,
) -> Result<Option<crate::lock::filesystem::Accepted>, ConfigError> {
    // A relative dir was refused by validation already (`load_checked`
    // checks a config with errors as far as it goes).
    if cfg.lock.backend != Backend::File || !cfg.lock.dir.is_absolute() {
        return Ok(None);
    }
    crate::lock::filesystem::check_dir(&cfg.lock.dir, cfg.lock.trust_filesystem)
        .map(Some)
        .map_err(|why| {
            let key = match places.lock_dir.pos {
                Some(_) => "key `lock.dir`".to_string(),
                None => format!("key `lock.dir` (default {})", cfg.lock.dir.display()),
            };
            places
                .lock_dir
                .error(format!("{key}: refusing the `file` backend here: {why}"))
        })
}

const PANIC_ON_OOPS: &str = "/proc/sys/kernel/panic_on_oops";

/// dlmfs on a node whose kernel does not panic on an oops. o2cb fences a
/// node only by the node's own hand (a panic); a kernel stuck after an
/// oops cannot, so the cluster evicts it and takes its locks over while
/// its network stack may still hold the VIPs. Seen in the random-fault
/// run: `o2quo_conn_up`'s BUG after a resumed freeze, then a soft lockup.
/// `panic_on_oops`: the sysctl's text, None when unreadable (not said).
pub fn oops_warning(
    cfg: &Config,
    places: &Places,
    panic_on_oops: Option<&str>,
) -> Option<ConfigError> {
    (cfg.lock.backend == Backend::Dlmfs && panic_on_oops.map(str::trim) == Some("0")).then(|| {
        places.backend.error(
            "key `lock.backend`: kernel.panic_on_oops is 0 on this node: after a kernel oops \
             (an o2cb BUG, say) the node can stay up but stuck, still answering for its VIPs, \
             while the cluster evicts it and another node takes over; o2cb fences only by \
             panicking: set kernel.panic_on_oops = 1 and kernel.panic = 10 in /etc/sysctl.d \
             (docs/dlmfs.md §1.8)",
        )
    })
}

/// `CAP_SYS_ADMIN`'s bit in a capability set.
const CAP_SYS_ADMIN: u32 = 21;

/// Whether this config's backend cannot join its lockspace here: the dlm
/// backend, with CAP_SYS_ADMIN outside the process's `bounding` set
/// (unreadable: not judged). See [`sandbox_error`].
pub fn lockspace_out_of_reach(cfg: &Config, bounding: Option<u64>) -> bool {
    cfg.lock.backend == Backend::Dlm && bounding.is_some_and(|b| b & (1 << CAP_SYS_ADMIN) == 0)
}

/// The dlm backend in a process that cannot get `CAP_SYS_ADMIN`: the
/// kernel lets only it create or leave a lockspace (fs/dlm/user.c,
/// `device_write`). That is the shipped unit's sandbox
/// (`CapabilityBoundingSet=` without it, and `PrivateDevices=`, which
/// hides the DLM's devices), loosened by the drop-in `dlm.conf.example`.
/// `bounding`: the `CapBnd:` mask of /proc/self/status, None when
/// unreadable (not said).
pub fn sandbox_error(cfg: &Config, places: &Places, bounding: Option<u64>) -> Option<ConfigError> {
    lockspace_out_of_reach(cfg, bounding).then(|| {
        places.backend.error(
            "key `lock.backend`: the dlm backend needs CAP_SYS_ADMIN (the kernel's DLM lets \
             only it join or leave a lockspace) and the DLM's devices, and this process may \
             have neither: under systemd, add the drop-in \
             /usr/share/doc/dlm-electd/examples/dlm.conf.example as \
             /etc/systemd/system/dlm-electd.service.d/dlm.conf (docs/dlm.md, \"Under \
             systemd\")",
        )
    })
}

/// This process's bounding set, None when unreadable.
pub fn own_bounding_set() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| bounding_set(&s))
}

/// The `CapBnd:` mask in the text of /proc/self/status.
pub fn bounding_set(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// `check`, for a command that `uses` the locks so.
pub fn check_as(
    cfg: &Config,
    places: &Places,
    as_root: bool,
    uses: LockUse,
) -> Result<Vec<ConfigError>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut fs_warning = None;
    if let Err(e) = lock_filesystem(cfg, places) {
        match uses {
            LockUse::Take => errors.push(e),
            LockUse::Release => fs_warning = Some(e),
        }
    }
    // `cleanup` in the same sandbox still runs the release steps: a warning.
    let sandbox_warning = match (sandbox_error(cfg, places, own_bounding_set()), uses) {
        (Some(e), LockUse::Take) => {
            errors.push(e);
            None
        }
        (e, _) => e,
    };
    if as_root {
        let mut dirs = vec![(
            "daemon.runtime_dir",
            &cfg.daemon.runtime_dir,
            &places.runtime_dir,
        )];
        if cfg.lock.backend == Backend::File {
            dirs.insert(0, ("lock.dir", &cfg.lock.dir, &places.lock_dir));
        }
        // A relative one was refused by validation already.
        for (key, dir, at) in dirs.into_iter().filter(|(_, d, _)| d.is_absolute()) {
            if let Some(p) = dir_problem(dir) {
                let key = match at.pos {
                    Some(_) => format!("key `{key}`"),
                    None => format!("key `{key}` (default {})", dir.display()),
                };
                errors.push(at.error(format!("{key}: refusing directory as root: {p}")));
            }
        }
    }
    // What `run` and `cleanup` would refuse at start (instance.rs); not
    // for a user who is not the dir's owner and not root (`status` or
    // `check-config` by hand as someone else than the daemon).
    if let Ok(md) = std::fs::metadata(&cfg.daemon.runtime_dir)
        && (as_root || md.uid() == nix::unistd::geteuid().as_raw())
        && let Some(why) = super::security::not_private(&md)
    {
        errors.push(places.runtime_dir.error(format!(
            "key `daemon.runtime_dir`: runtime dir {} is not private to dlm-electd ({why}): `run` and `cleanup` refuse it; point `daemon.runtime_dir` at a directory of its own (a missing one is created with mode 0700), or `chmod 0700` this one if it is dlm-electd's alone",
            cfg.daemon.runtime_dir.display()
        )));
    }
    for p in &places.programs {
        let problem = match resolve_program(&p.program) {
            None => Some(format!("{:?} not found in PATH", p.program)),
            Some(path) => run_problem(&path).or_else(|| {
                as_root
                    .then(|| path_problem(&path).map(|e| format!("refusing program as root: {e}")))
                    .flatten()
            }),
        };
        if let Some(problem) = problem {
            errors.push(p.at.error(format!("{}: {problem}", p.named())));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut warnings: Vec<ConfigError> = places
        .interfaces
        .iter()
        .filter(|(name, _)| nix::net::if_::if_nametoindex(name.as_str()).is_err())
        .map(|(name, at)| {
            at.error(format!(
                "key `interface`: no interface {name:?} on this host (yet); the VIP cannot be added until it exists"
            ))
        })
        .collect();
    warnings.extend(fs_warning);
    warnings.extend(sandbox_warning);
    let panic_on_oops = std::fs::read_to_string(PANIC_ON_OOPS).ok();
    warnings.extend(oops_warning(cfg, places, panic_on_oops.as_deref()));
    // The units' and VIPs' warnings need D-Bus and netlink: `preflight`
    // adds them after these, above `config`.
    Ok(warnings)
}

/// Why this process could not exec `path`, or None: exec needs a regular
/// file with an execute bit for us (root included: root needs one bit).
pub fn run_problem(path: &Path) -> Option<String> {
    let md = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return Some(format!("cannot run {}: {e}", path.display())),
    };
    if !md.is_file() {
        return Some(format!("cannot run {}: not a regular file", path.display()));
    }
    if nix::unistd::eaccess(path, AccessFlags::X_OK).is_err() {
        return Some(format!(
            "cannot run {}: not executable by uid {} (mode {:o})",
            path.display(),
            nix::unistd::geteuid(),
            md.mode() & 0o7777
        ));
    }
    None
}

/// Resolves every bare program name (exec hooks, health checks) to the
/// absolute path PATH gives it now, in `cfg` and in `places`, so that
/// `check` judges exactly the file the daemon will exec and exec never
/// looks in PATH again: a directory earlier in PATH that someone else can
/// write to could otherwise get a program planted in it after the check,
/// to be run as root at the next hook. Each name is looked up once, so
/// every use of it runs the same file. A name not found stays bare, for
/// `check` to report (and `unresolved` to refuse, should it turn up in
/// between).
pub fn resolve_programs(cfg: &mut Config, places: &mut Places) {
    let mut found: HashMap<String, Option<String>> = HashMap::new();
    let mut resolve = |name: &mut String| {
        if name.contains('/') {
            return;
        }
        let path = found
            .entry(name.clone())
            // A relative PATH entry (`.`, `bin`) is taken against the
            // working directory now, once, like everything else here. A
            // path that is not UTF-8 cannot be an argv String: left bare,
            // it is reported as not found.
            .or_insert_with(|| {
                resolve_program(name)
                    .and_then(|p| std::path::absolute(p).ok())
                    .and_then(|p| p.to_str().map(str::to_string))
            });
        if let Some(path) = path {
            *name = path.clone();
        }
    };
    for r in &mut cfg.resources {
        for a in &mut r.actions {
            if let ActionSpec::Exec(e) = a {
                for argv in [&mut e.acquire, &mut e.release].into_iter().flatten() {
                    resolve(&mut argv[0]);
                }
            }
        }
        if let Some(c) = &mut r.check {
            resolve(&mut c.exec[0]);
        }
        for n in &mut r.notify {
            resolve(&mut n.exec[0]);
        }
    }
    for p in &mut places.programs {
        resolve(&mut p.program);
    }
}

/// Programs still named without a path after `resolve_programs`: not in
/// PATH when resolved. `check` refuses them as not found; this refuses
/// one that was planted between the two looks, which would otherwise be
/// looked up again at every run.
pub fn unresolved(places: &Places) -> Vec<ConfigError> {
    places
        .programs
        .iter()
        .filter(|p| !p.program.contains('/'))
        .map(|p| {
            p.at.error(format!("{}: {:?} not found in PATH", p.named(), p.program))
        })
        .collect()
}

/// Resolves a command the way exec does: a path is taken as it is, a bare
/// name is the first executable regular file of that name in PATH.
pub fn resolve_program(prog: &str) -> Option<PathBuf> {
    if prog.contains('/') {
        return Some(PathBuf::from(prog));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|c| run_problem(c).is_none())
}
