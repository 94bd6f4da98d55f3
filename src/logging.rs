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
    // systemd sets JOURNAL_STREAM when stderr is connected to the journal.
    if std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(j) = tracing_journald::layer()
    {
        tracing_subscriber::registry()
            .with(filter)
            // No "F_" prefix: the fields are RESOURCE=, STATE=, NODE= as documented,
            // so `journalctl RESOURCE=web` works.
            .with(
                j.with_syslog_identifier("dlm-electd".into())
                    .with_field_prefix(None),
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
