//! The daemon runs the commands its config names, as root. So when it runs as
//! root it refuses a config file, drop-in or program that someone other than
//! root could have changed: the rule keepalived applies with
//! `enable_script_security`. A file is unsafe when it, or any directory above
//! it, is writable by group or others (a sticky root-owned directory such as
//! /tmp is fine: others cannot replace what root put there), or is owned by a
//! user other than root.

use super::{ActionSpec, Config, ConfigError};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const S_ISVTX: u32 = 0o1000;

/// Why `path` is unsafe to trust as root, or None.
pub fn path_problem(path: &Path) -> Option<String> {
    let path = match std::fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) => return Some(format!("{}: {e}", path.display())),
    };
    let mut here = Some(path.as_path());
    let mut leaf = true;
    while let Some(p) = here {
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
        let sticky_dir = !leaf && md.mode() & S_ISVTX != 0;
        if md.mode() & 0o022 != 0 && !sticky_dir {
            return Some(format!(
                "{} is writable by group or others (mode {:o})",
                p.display(),
                md.mode() & 0o7777
            ));
        }
        leaf = false;
        here = p.parent();
    }
    None
}

/// Resolves a command the way exec would (a bare name is looked up in PATH).
pub fn resolve_program(prog: &str) -> Option<PathBuf> {
    if prog.contains('/') {
        return Some(PathBuf::from(prog));
    }
    std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(prog))
                .find(|c| c.is_file())
        })
        .unwrap_or(None)
}

/// Every problem with the files and programs of `cfg`; call only as root.
pub fn check(cfg: &Config) -> Vec<ConfigError> {
    let mut out = Vec::new();
    for f in &cfg.files {
        if let Some(p) = path_problem(f) {
            out.push(ConfigError {
                path: f.clone(),
                pos: None,
                msg: format!("refusing config as root: {p}"),
            });
        }
    }
    for r in &cfg.resources {
        for a in &r.actions {
            let ActionSpec::Exec(e) = a else { continue };
            for argv in [&e.acquire, &e.release].into_iter().flatten() {
                let problem = match resolve_program(&argv[0]) {
                    None => Some(format!("{:?} not found in PATH", argv[0])),
                    Some(p) => path_problem(&p),
                };
                if let Some(p) = problem {
                    out.push(ConfigError {
                        path: cfg.files[0].clone(),
                        pos: None,
                        msg: format!("resource {:?}: refusing program as root: {p}", r.name),
                    });
                }
            }
        }
    }
    out
}
