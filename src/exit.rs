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
/// EX_TEMPFAIL from sysexits.h: `run-locked`/`lock` found the workload lock
/// busy (held on another node, or by another process here). Not 1, which
/// programs (and flock(1)) use for everything: a wrapper must tell "did not
/// start, someone else runs it" from "ran and failed".
pub const BUSY: i32 = 75;
/// `run-locked`: the program exists but cannot be executed (as env(1)).
pub const CANNOT_RUN: i32 = 126;
/// `run-locked`: no such program (as env(1) and the shells).
pub const NOT_FOUND: i32 = 127;
