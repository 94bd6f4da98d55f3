//! A config problem and where it was written: `file:line:col: key …`.
//! A leaf, so every part of `config` can make one without importing the
//! others.

use std::fmt;
use std::path::PathBuf;

/// A config problem, located in a file when it has a place there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    /// 1-based line and column.
    pub pos: Option<(usize, usize)>,
    pub msg: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some((l, c)) => write!(f, "{}:{}:{}: {}", self.path.display(), l, c, self.msg),
            None => write!(f, "{}: {}", self.path.display(), self.msg),
        }
    }
}

/// All the problems found in one read, so an admin fixes them in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
