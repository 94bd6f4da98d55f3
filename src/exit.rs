//! The process's exit codes, named once. systemd reads them:
//! `RestartPreventExitStatus=78` keeps a broken config from restart-looping,
//! and anything but 0 makes a stop with resources left held visible.

/// Done, everything released.
pub const OK: i32 = 0;
/// A runtime failure, or exit with resources not released (their locks
/// kept for the lock keeper or `cleanup`).
pub const FAILURE: i32 = 1;
/// Misuse of a command (the hidden keeper subcommand run by hand).
pub const USAGE: i32 = 2;
/// EX_CONFIG from sysexits.h: the configuration is invalid.
pub const CONFIG: i32 = 78;
