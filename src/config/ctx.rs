//! What validation carries while it walks the raw config: the errors so
//! far, the file being read, and the places of what `check` judges later;
//! with the small helpers every conversion uses (a required key, a
//! bounded duration, an absolute path).

use super::defaults::MIN_POLL;
use super::error::ConfigError;
use super::model::{Argv, Duration0, Interval, MAX_INTERVAL};
use super::names::program_problem;
use super::source::{Place, Source};
use super::spec::ProgramPlace;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

pub struct Ctx<'a> {
    pub errors: Vec<ConfigError>,
    pub src: &'a Source,
    pub programs: Vec<ProgramPlace>,
    pub interfaces: Vec<(String, Place)>,
    pub units: Vec<(String, Place)>,
    /// Each VIP's address and interface, with where its `address` is.
    pub vips: Vec<(IpAddr, String, Place)>,
}

impl Ctx<'_> {
    pub fn err<T>(&mut self, at: &Spanned<T>, msg: impl Into<String>) {
        self.errors.push(self.src.error(Some(at.span()), msg));
    }

    pub fn place<T>(&self, at: &Spanned<T>) -> Place {
        self.src.place(Some(at.span()))
    }

    /// A key its table cannot do without: the value, or None after an
    /// error at the table (`missing` says what to write).
    pub fn required<'v, T, U>(
        &mut self,
        table: &Spanned<U>,
        value: &'v Option<Spanned<T>>,
        missing: &str,
    ) -> Option<&'v Spanned<T>> {
        if value.is_none() {
            self.err(table, missing);
        }
        value.as_ref()
    }

    /// An error at `key`'s value when a name rule (`names`) refused it.
    pub fn judge<T>(&mut self, at: &Spanned<T>, key: &str, problem: Option<String>) {
        if let Some(p) = problem {
            self.err(at, format!("key `{key}`: {p}"));
        }
    }

    /// A program (argv[0]) written at `key`: refused if a relative path,
    /// else its place kept for `check` (runnable, owned by root). One
    /// refused here is not checked again: `check` would judge it against
    /// the working directory.
    pub fn program(
        &mut self,
        resource: &str,
        key: &'static str,
        shown: &str,
        argv: &Spanned<Argv>,
    ) {
        let program = argv.get_ref().0[0].clone();
        let problem = program_problem(&program);
        if problem.is_some() {
            self.judge(argv, shown, problem);
            return;
        }
        let at = self.place(argv);
        self.programs.push(ProgramPlace {
            resource: resource.into(),
            key,
            program,
            at,
        });
    }

    /// The absolute path written for `key`, or `default`, with its place.
    /// Relative paths are refused: they would follow the working directory,
    /// so two starts from different directories would use different locks
    /// (or runtime dirs) and both become master.
    pub fn abs_path(
        &mut self,
        key: &str,
        value: Option<Spanned<PathBuf>>,
        default: &str,
    ) -> (PathBuf, Place) {
        match value {
            None => (default.into(), self.src.place(None)),
            Some(v) => {
                if !v.get_ref().is_absolute() {
                    self.err(
                        &v,
                        format!(
                            "key `{key}`: {:?} is a relative path: write an absolute one (relative paths would follow the daemon's working directory)",
                            v.get_ref()
                        ),
                    );
                }
                let place = self.place(&v);
                (v.into_inner(), place)
            }
        }
    }
}

/// An interval given at `at`, if any and not below `min` (an error at the
/// key otherwise).
pub fn at_least(
    cx: &mut Ctx,
    at: Option<&Spanned<Interval>>,
    key: &str,
    min: Duration,
) -> Option<Duration> {
    let at = at?;
    let d = at.get_ref().0;
    if d < min {
        cx.err(
            at,
            format!("key `{key}`: {d:?} is below the {min:?} minimum (a typo for seconds?)"),
        );
    }
    Some(d)
}

/// A duration that may be zero ("off"), if not above `MAX_INTERVAL` (an
/// error at the key otherwise). The others are bounded where they are
/// parsed (`Interval`); these need the same bound, or a value like
/// "300000000000years" reaches the runner's clock arithmetic.
pub fn at_most_a_day(cx: &mut Ctx, at: &Spanned<Duration0>, key: &str) -> Option<Duration> {
    let d = at.get_ref().0;
    if d > MAX_INTERVAL {
        cx.err(
            at,
            format!(
                "key `{key}`: at most {}h, not {}",
                MAX_INTERVAL.as_secs() / 3600,
                humantime::format_duration(d)
            ),
        );
        return None;
    }
    Some(d)
}

pub fn poll(cx: &mut Ctx, at: Option<&Spanned<Interval>>) -> Option<Duration> {
    at_least(cx, at, "poll_interval", MIN_POLL)
}
