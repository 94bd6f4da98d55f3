//! Reading config files: the main file, then `conf.d/*.toml` beside it in
//! name order, each parsed on its own so errors point into the right file.

use super::check;
use super::defaults::{DEFAULT_RUNTIME_DIR, DEFAULT_STATE_DIR};
use super::error::{ConfigError, ConfigErrors};
use super::model::{RawConfig, RawDropIn};
use super::source::Source;
use super::spec::{Config, Places};
use super::validate::{Validated, validate_all};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How old a file's last change must be before we trust that its writer
/// is done: an editor or `cp` rewriting it in place leaves it truncated or
/// half written for a moment, and a reload that read it then would apply
/// that (an empty file is a valid config without resources: every master
/// would release).
const SETTLED: Duration = Duration::from_millis(100);
/// Reads of a file that keeps changing before we give up.
const TRIES: usize = 5;

fn read_file(path: &Path) -> Result<Source, ConfigError> {
    let failed = |msg: String| ConfigError {
        path: path.to_path_buf(),
        pos: None,
        msg,
    };
    let stamp =
        |p: &Path| std::fs::metadata(p).map(|m| (m.len(), m.modified().ok(), m.ino(), m.dev()));
    for _ in 0..TRIES {
        let before = stamp(path).map_err(|e| failed(format!("cannot read: {e}")))?;
        let text =
            std::fs::read_to_string(path).map_err(|e| failed(format!("cannot read: {e}")))?;
        let after = stamp(path).map_err(|e| failed(format!("cannot read: {e}")))?;
        let age = after
            .1
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .unwrap_or(SETTLED);
        if before == after && age >= SETTLED {
            return Ok(Source::new(path.to_path_buf(), text));
        }
        // Being written: read it again once the writer had time to finish.
        std::thread::sleep(SETTLED);
    }
    Err(failed(format!(
        "kept changing while being read ({TRIES} tries): not applied; write config files whole, to a temporary name and `mv` it into place"
    )))
}

/// The drop-in files for a main config file: `DIR/conf.d/*.toml`, sorted.
pub fn drop_in_paths(main: &Path) -> Vec<PathBuf> {
    let dir = main.parent().unwrap_or(Path::new(".")).join("conf.d");
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect(),
        Err(_) => Vec::new(),
    };
    paths.sort();
    paths
}

/// Reads, parses and validates the whole configuration. No filesystem
/// checks beyond reading: see `config::load_checked` for those.
pub fn load(main: &Path) -> Result<Config, ConfigErrors> {
    load_placed(main).map(|(cfg, _)| cfg)
}

/// `load`, with where the values `check` judges were written.
pub fn load_placed(main: &Path) -> Result<(Config, Places), ConfigErrors> {
    let mut read = read_all(main);
    match read.validated {
        Some(v) if read.errors.is_empty() && v.errors.is_empty() => Ok((v.config, v.places)),
        Some(v) => {
            read.errors.extend(v.errors);
            Err(ConfigErrors(read.errors))
        }
        None => Err(ConfigErrors(read.errors)),
    }
}

/// Everything one read of the config found, problems and all, so that
/// `load_checked` can go on checking what was written well.
struct Read {
    /// Every file read (main first), whether it parsed or not.
    files: Vec<PathBuf>,
    /// None when the main file could not be read or parsed.
    validated: Option<Validated>,
    /// Read and parse errors, in file order (validation's are in
    /// `validated`).
    errors: Vec<ConfigError>,
}

fn read_all(main: &Path) -> Read {
    let mut read = Read {
        files: Vec::new(),
        validated: None,
        errors: Vec::new(),
    };
    let main_src = match read_main(main) {
        Ok(src) => src,
        Err(e) => {
            read.errors.push(e);
            return read;
        }
    };
    read.files.push(main.to_path_buf());
    let raw: Option<RawConfig> = parse_all(&main_src, false)
        .map_err(|e| read.errors.extend(e))
        .ok();
    let mut drop_ins = Vec::new();
    for path in drop_in_paths(main) {
        match read_file(&path) {
            Ok(src) => {
                read.files.push(path);
                match parse_all::<RawDropIn>(&src, true) {
                    Ok(d) => drop_ins.push((src, d)),
                    Err(e) => read.errors.extend(e),
                }
            }
            Err(e) => read.errors.push(e),
        }
    }
    read.validated = raw.map(|raw| validate_all(&main_src, raw, drop_ins));
    read
}

/// The main file's text; an empty one is refused.
fn read_main(main: &Path) -> Result<Source, ConfigError> {
    let main_src = read_file(main)?;
    if main_src.text.trim().is_empty() {
        // A valid TOML document, but never what an admin means: a file
        // truncated by its writer, read mid-write. Applied by a reload it
        // would release every resource.
        return Err(ConfigError {
            path: main.to_path_buf(),
            pos: None,
            msg: "the main config file is empty (being written?): refused; it needs at least one table, e.g. [node]".into(),
        });
    }
    Ok(main_src)
}

/// One file parsed into its raw type, or every problem `recover` finds
/// besides the first one serde stops at (`drop_in`: a drop-in's errors
/// say what a drop-in may hold).
fn parse_all<T: serde::de::DeserializeOwned>(
    src: &Source,
    drop_in: bool,
) -> Result<T, Vec<ConfigError>> {
    src.parse().map_err(|first| {
        let mut errors = super::recover::more_errors(src, drop_in, &first);
        errors.push(first);
        // In the order written (a key without a place, first).
        errors.sort_by_key(|e| e.pos);
        if drop_in {
            for e in &mut errors {
                if e.msg.contains("expected `resource`") {
                    e.msg.push_str(
                        " (a drop-in may only add [[resource]] tables; [node], [lock], [daemon], [metrics], [cluster] and [[notify]] belong in the main file)",
                    );
                }
            }
        }
        errors
    })
}

/// A config that passed every check, with what is worth a warning.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// Worth telling, not worth refusing (an interface missing on this
    /// host may appear later). Displayed like errors: `file:line:col: msg`.
    pub warnings: Vec<ConfigError>,
    /// Where the values were written, for checks above `config`
    /// (`crate::preflight`).
    pub places: Places,
}

/// Loads the config and runs every check on it: programs must be
/// executable; as root, the config files, programs, lock dir and runtime dir
/// must be safe from anyone but root (see `security`); the `file` backend's
/// lock dir must be on a filesystem whose locks reach every node that sees
/// it (`lock::filesystem`). The errors stay typed so a caller can log them
/// all and show the first.
pub fn load_checked(path: &Path) -> Result<Loaded, ConfigErrors> {
    load_checked_as(path, check::LockUse::Take)
}

/// `load_checked`, for a command that uses the locks as `uses` says
/// (`cleanup` and `unlock` only give them up).
///
/// Every problem in one run (issue #19, item 9): a config that does not
/// validate is still checked as far as it was written well, so a program
/// missing from PATH is not hidden behind a relative path elsewhere, nor a
/// drop-in root may not trust behind a duplicate name in it. Errors come
/// in this order: the files as root, reading and parsing, validation,
/// then the filesystem checks.
pub fn load_checked_as(path: &Path, uses: check::LockUse) -> Result<Loaded, ConfigErrors> {
    let read = read_all(path);
    let as_root = nix::unistd::geteuid().is_root();
    let mut errors = Vec::new();
    if as_root {
        errors.extend(check::config_files(&read.files));
    }
    errors.extend(read.errors);
    let Some(Validated {
        mut config,
        mut places,
        errors: invalid,
    }) = read.validated
    else {
        return Err(ConfigErrors(errors));
    };
    errors.extend(invalid);
    // Before the checks, so they judge the files exec will run (see
    // `check::resolve_programs`).
    check::resolve_programs(&mut config, &mut places);
    let warnings = match check::check_as(&config, &places, as_root, uses) {
        Ok(w) => {
            errors.extend(check::unresolved(&places));
            w
        }
        Err(more) => {
            errors.extend(more);
            Vec::new()
        }
    };
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(Loaded {
        config,
        warnings,
        places,
    })
}

/// The runtime dir a client (`status`, `release`) should look in. The
/// config may be mid-edit and invalid while the daemon runs on the old one,
/// so only that one key is read, leniently; anything unusable (missing,
/// not a string, relative) gives the default.
pub fn runtime_dir_hint(path: &Path) -> PathBuf {
    daemon_dir_hint(path, "runtime_dir", DEFAULT_RUNTIME_DIR)
}

/// The runtime and state dirs `drain` and `undrain` use. Stricter than
/// [`runtime_dir_hint`]: they write, so a main file that is not TOML (an
/// edit half done) or names a relative dir is an error, never the default
/// dirs (which may belong to another instance, or to none). A missing file
/// at the default path gives the defaults, as for the daemon.
pub fn daemon_dirs(path: &Path) -> Result<(PathBuf, PathBuf), String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && path == Path::new(super::DEFAULT_PATH) =>
        {
            return Ok((DEFAULT_RUNTIME_DIR.into(), DEFAULT_STATE_DIR.into()));
        }
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let src = super::source::Source::new(path.to_path_buf(), text);
    let t: toml::Table = src.text.parse().map_err(|e: toml::de::Error| {
        src.error(e.span(), e.message().trim().to_string())
            .to_string()
    })?;
    let dir = |key: &str, default: &str| -> Result<PathBuf, String> {
        match t.get("daemon").and_then(|d| d.get(key)) {
            None => Ok(default.into()),
            Some(v) => v
                .as_str()
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .ok_or_else(|| {
                    format!(
                        "{}: key `daemon.{key}`: an absolute path is needed",
                        path.display()
                    )
                }),
        }
    };
    Ok((
        dir("runtime_dir", DEFAULT_RUNTIME_DIR)?,
        dir("state_dir", DEFAULT_STATE_DIR)?,
    ))
}

fn daemon_dir_hint(path: &Path, key: &str, default: &str) -> PathBuf {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|t| t.get("daemon")?.get(key)?.as_str().map(PathBuf::from))
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| default.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A file read while its writer is between two writes is read again
    /// once it settled: the whole text, never the first half.
    #[test]
    fn a_file_being_written_is_read_once_its_writer_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[node]\n").unwrap();
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
                std::thread::sleep(Duration::from_millis(30)); // the writer's pause
                f.write_all(b"name = \"a\"\n").unwrap();
            })
        };
        let src = read_file(&path).unwrap();
        writer.join().unwrap();
        assert_eq!(src.text, "[node]\nname = \"a\"\n");
    }

    #[test]
    fn an_empty_main_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, " \n").unwrap();
        let e = load(&path).unwrap_err();
        assert!(e.0[0].msg.contains("is empty"), "{:?}", e.0);
    }
}
