//! Reading config files: the main file, then `conf.d/*.toml` beside it in
//! name order, each parsed on its own so errors point into the right file.

use super::model::{RawConfig, RawDropIn};
use super::{Config, ConfigError, ConfigErrors};
use serde::de::DeserializeOwned;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One file's text, kept so spans can be turned into line:column.
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

impl Source {
    pub fn error(&self, span: Option<Range<usize>>, msg: impl Into<String>) -> ConfigError {
        ConfigError {
            path: self.path.clone(),
            pos: span.map(|s| line_col(&self.text, s.start)),
            msg: msg.into(),
        }
    }

    fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        toml::from_str(&self.text).map_err(|e| {
            let msg = e.message().trim_end().to_string();
            // serde reports a bad value without its key; the key is what the
            // admin searches for, so recover it from the line the value is on.
            let msg = match e.span().and_then(|s| key_before(&self.text, s.start)) {
                Some(key) if !msg.contains(&format!("`{key}`")) => format!("key `{key}`: {msg}"),
                _ => msg,
            };
            self.error(e.span(), msg)
        })
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, before[line_start..].chars().count() + 1)
}

/// The `key` of a `key = value` line when `offset` lies in the value.
fn key_before(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let head = &text[line_start..offset];
    let eq = head.find('=')?;
    let key = head[..eq].trim().trim_matches('"');
    (!key.is_empty() && !key.starts_with('[')).then(|| key.to_string())
}

fn read(path: &Path) -> Result<Source, ConfigError> {
    std::fs::read_to_string(path)
        .map(|text| Source {
            path: path.to_path_buf(),
            text,
        })
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

/// Reads, parses and validates the whole configuration.
pub fn load(main: &Path) -> Result<Config, ConfigErrors> {
    let main_src = read(main).map_err(|e| ConfigErrors(vec![e]))?;
    let mut errors = Vec::new();
    let raw: Option<RawConfig> = main_src.parse().map_err(|e| errors.push(e)).ok();
    let mut drop_ins = Vec::new();
    for path in drop_in_paths(main) {
        match read(&path) {
            Ok(src) => match src.parse::<RawDropIn>() {
                Ok(d) => drop_ins.push((src, d)),
                Err(e) => errors.push(e),
            },
            Err(e) => errors.push(e),
        }
    }
    let Some(raw) = raw else {
        return Err(ConfigErrors(errors));
    };
    match super::validate::validate(&main_src, raw, drop_ins) {
        Ok(cfg) if errors.is_empty() => Ok(cfg),
        Ok(_) => Err(ConfigErrors(errors)),
        Err(more) => {
            errors.extend(more);
            Err(ConfigErrors(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        assert_eq!(line_col("a\nbc = 1", 5), (2, 4));
        assert_eq!(line_col("x", 0), (1, 1));
    }

    #[test]
    fn key_of_a_value() {
        let t = "[daemon]\npoll_interval = \"3x\"\n";
        assert_eq!(
            key_before(t, t.find("\"3x").unwrap()),
            Some("poll_interval".into())
        );
        assert_eq!(key_before(t, 1), None);
    }
}
