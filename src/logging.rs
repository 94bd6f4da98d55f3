//! Logging: to the journal with structured fields (RESOURCE=, STATE=, NODE=)
//! when stderr is the journal, human-readable stderr otherwise.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    if stderr_is_journal()
        && let Ok(j) = tracing_journald::layer()
    {
        tracing_subscriber::registry()
            .with(filter)
            // Fields as docs/behaviour.md promises them (RESOURCE=, not the
            // crate's default F_RESOURCE=); ours clash with no journal field.
            .with(
                j.with_field_prefix(None)
                    .with_syslog_identifier("dlm-electd".into()),
            )
            .init();
        return;
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, not in files or pipes.
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_target(false)
        .init();
}

/// systemd sets JOURNAL_STREAM to the "DEV:INODE" of the stream it connected
/// to stderr (systemd.exec(5)); it is inherited by children whose stderr
/// is something else (a shell redirect, a hook's pipe), so it only counts
/// when it names our fd 2.
fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(st) = nix::sys::stat::fstat(std::io::stderr()) else {
        return false;
    };
    value
        .to_str()
        .is_some_and(|v| names_stream(v, st.st_dev, st.st_ino))
}

/// Whether a JOURNAL_STREAM value names the stream `dev`, `ino`.
fn names_stream(value: &str, dev: u64, ino: u64) -> bool {
    let parse = |s: &str| s.parse::<u64>().ok();
    value
        .split_once(':')
        .is_some_and(|(d, i)| parse(d) == Some(dev) && parse(i) == Some(ino))
}

#[cfg(test)]
mod tests {
    use super::names_stream;

    #[test]
    fn journal_stream_must_name_the_stream() {
        assert!(names_stream("8:12345", 8, 12345));
        assert!(!names_stream("8:12346", 8, 12345));
        assert!(!names_stream("9:12345", 8, 12345));
        for bad in ["", "8", "8:", ":12345", "8:12345:1", "x:12345", " 8:12345"] {
            assert!(!names_stream(bad, 8, 12345), "{bad:?}");
        }
    }
}
