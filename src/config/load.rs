//! Reading config files: the main file, then `conf.d/*.toml` beside it in
//! name order, each parsed on its own so errors point into the right file.

use super::model::{RawConfig, RawDropIn};
use super::source::Source;
use super::{Config, ConfigError, ConfigErrors, Places};
use std::path::{Path, PathBuf};

fn read(path: &Path) -> Result<Source, ConfigError> {
    std::fs::read_to_string(path)
        .map(|text| Source::new(path.to_path_buf(), text))
        .map_err(|e| ConfigError {
            path: path.to_path_buf(),
            pos: None,
            msg: format!("cannot read: {e}"),
        })
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
    let main_src = read(main).map_err(|e| ConfigErrors(vec![e]))?;
    let mut errors = Vec::new();
    let raw: Option<RawConfig> = main_src.parse().map_err(|e| errors.push(e)).ok();
    let mut drop_ins = Vec::new();
    for path in drop_in_paths(main) {
        match read(&path) {
            Ok(src) => match src.parse::<RawDropIn>() {
                Ok(d) => drop_ins.push((src, d)),
                Err(mut e) => {
                    if e.msg.contains("expected `resource`") {
                        e.msg.push_str(
                            " (a drop-in may only add [[resource]] tables; [node], [lock], [daemon] and [metrics] belong in the main file)",
                        );
                    }
                    errors.push(e)
                }
            },
            Err(e) => errors.push(e),
        }
    }
    let Some(raw) = raw else {
        return Err(ConfigErrors(errors));
    };
    match super::validate::validate(&main_src, raw, drop_ins) {
        Ok(done) if errors.is_empty() => Ok(done),
        Ok(_) => Err(ConfigErrors(errors)),
        Err(more) => {
            errors.extend(more);
            Err(ConfigErrors(errors))
        }
    }
}
