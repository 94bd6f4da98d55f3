//! One config file's text, and how byte spans in it become the
//! file:line:column an admin can jump to. Shared by `load` (parse errors)
//! and `validate` (everything after), so neither needs the other's insides.

use super::error::ConfigError;
use serde::de::DeserializeOwned;
use std::ops::Range;
use std::path::PathBuf;

/// One file's text, kept so spans can be turned into line:column.
pub struct Source {
    pub path: PathBuf,
    pub text: String,
    /// Byte offset of each line's start: a place is a binary search, not a
    /// count of the newlines before it (validate places every resource, and
    /// counting made a 10,000-resource file quadratic to load).
    line_starts: Vec<usize>,
}

/// Where something was written: a file, and a 1-based line and column when
/// it has a place in that file (a defaulted key has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub path: PathBuf,
    pub pos: Option<(usize, usize)>,
}

impl Place {
    pub fn error(&self, msg: impl Into<String>) -> ConfigError {
        ConfigError {
            path: self.path.clone(),
            pos: self.pos,
            msg: msg.into(),
        }
    }
}

impl Source {
    pub fn new(path: PathBuf, text: String) -> Source {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Source {
            path,
            text,
            line_starts,
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let start = self.line_starts[line - 1];
        (line, self.text[start..offset].chars().count() + 1)
    }

    pub fn place(&self, span: Option<Range<usize>>) -> Place {
        Place {
            path: self.path.clone(),
            pos: span.map(|s| self.line_col(s.start)),
        }
    }

    pub fn error(&self, span: Option<Range<usize>>, msg: impl Into<String>) -> ConfigError {
        self.place(span).error(msg)
    }

    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        toml::from_str(&self.text).map_err(|e| self.toml_error(&e))
    }

    /// A TOML or serde error in this file, at its place and key.
    pub fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let msg = e.message().trim_end().to_string();
        // serde reports a bad value without its key; the key is what the
        // admin searches for, so recover it from the line the value is on.
        let key = e
            .span()
            .and_then(|s| key_before(&self.text, s.start).or_else(|| key_at(&self.text, s.start)));
        let msg = match key {
            Some(key) if !msg.contains(&format!("`{key}`")) => format!("key `{key}`: {msg}"),
            _ => msg,
        };
        self.error(e.span(), msg)
    }
}

/// The `key` of a `key = value` line when `offset` lies in the value.
pub fn key_before(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let head = &text[line_start..offset];
    let eq = head.find('=')?;
    let key = head[..eq].trim().trim_matches('"');
    (!key.is_empty() && !key.starts_with('[')).then(|| key.to_string())
}

/// The key a `key = value` line (or a `[table]` header) starting at
/// `offset` names: toml points a duplicate key at the key itself.
pub fn key_at(text: &str, offset: usize) -> Option<String> {
    let rest = text.get(offset..)?;
    let line = rest.lines().next()?.trim();
    let key = match line.find('=') {
        Some(eq) if !line.starts_with('[') => line[..eq].trim().trim_matches('"'),
        _ => line.trim_start_matches('[').split(']').next()?.trim(),
    };
    (!key.is_empty()).then(|| key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let at = |text: &str, offset| Source::new("/x".into(), text.into()).line_col(offset);
        assert_eq!(at("a\nbc = 1", 5), (2, 4));
        assert_eq!(at("x", 0), (1, 1));
        // On a line's first byte, at its newline, past the end.
        assert_eq!(at("a\nbc\n\nd", 2), (2, 1));
        assert_eq!(at("a\nbc\n\nd", 4), (2, 3));
        assert_eq!(at("a\nbc\n\nd", 6), (4, 1));
        assert_eq!(at("a\nbc\n\nd", 99), (4, 2));
        assert_eq!(at("é\nü = x", 6), (2, 3));
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

    #[test]
    fn a_duplicate_key_is_named() {
        let src = Source::new(
            "/x.toml".into(),
            "[node]\nname = \"a\"\nname = \"b\"\n".into(),
        );
        let e = src.parse::<toml::Table>().unwrap_err().to_string();
        assert!(e.contains("/x.toml:3:1") && e.contains("key `name`"), "{e}");
        let src = Source::new("/x.toml".into(), "[node]\n[lock]\n[node]\n".into());
        let e = src.parse::<toml::Table>().unwrap_err().to_string();
        assert!(e.contains("`node`"), "{e}");
    }
}
