//! `exec` actions: run an argv (no shell unless the user writes one) in its
//! own process group, with a timeout after which the whole group gets
//! SIGTERM and then SIGKILL, so a hook's grandchildren die with it.
//!
//! A hook's output never changes its outcome: both pipes are read to the
//! end whatever they carry (bytes that are not UTF-8 are logged lossily,
//! an endless line is cut rather than buffered), so the hook never blocks
//! on a full pipe nor dies of SIGPIPE.

use super::step::{Cancel, Ctx, Step};
use crate::config::ExecSpec;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::time::timeout;
use tracing::Instrument;

/// Why a hook (or health check) failed. `program` is the path it ran,
/// `event` its `DLM_ELECTD_EVENT`.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    /// It ran and failed: its exit status, or the signal that ended it.
    #[error("{program} {event}: {status}")]
    Exit {
        program: String,
        event: &'static str,
        status: ExitStatus,
    },
    #[error("waiting for {program}: {source}")]
    Wait {
        program: String,
        source: std::io::Error,
    },
    /// It outlasted its timeout; its process group was killed.
    #[error("{program} {event} timed out after {limit:?}; its process group was killed")]
    Timeout {
        program: String,
        event: &'static str,
        limit: Duration,
    },
    /// The daemon is stopping; its process group was killed.
    #[error("{program} {event} cancelled: the daemon is stopping; its process group was killed")]
    Cancelled {
        program: String,
        event: &'static str,
    },
}

/// How long a timed-out hook gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(3);
/// How long to keep reading output after the hook exited: a background
/// grandchild may hold the pipes open forever, and we must not wait for it.
/// One deadline for both pipes, not one each.
const DRAIN: Duration = Duration::from_millis(500);
/// The longest output line logged; the rest of a longer line is read and
/// dropped, so a hook printing without newlines cannot fill our memory.
pub const MAX_LINE: usize = 4096;

/// The PATH every hook and health check gets: systemd's default for
/// services, not the daemon's. A daemon started by hand would otherwise
/// pass on its user's PATH (with directories others may write to, or
/// `.`) to every program a root hook runs by a bare name.
pub const HOOK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The environment a hook starts from, given the daemon's: `HOOK_PATH`,
/// and the locale and time zone (`LANG`, `LANGUAGE`, `LC_*`, `TZ`) if set,
/// so its output and dates read like the daemon's. Nothing else: a
/// variable set on the daemon for debugging (`RUST_LOG`, a token in a
/// shell) must not reach every hook, nor the service's own ones
/// (`NOTIFY_SOCKET`, `WATCHDOG_*`, `JOURNAL_STREAM`, `LISTEN_*`). The
/// `DLM_ELECTD_*` variables are added per run. Pure.
pub fn base_env(
    daemon: impl IntoIterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    let kept = |name: &OsStr| {
        let n = name.as_bytes();
        n == b"LANG" || n == b"LANGUAGE" || n == b"TZ" || n.starts_with(b"LC_")
    };
    let mut env = vec![(OsString::from("PATH"), OsString::from(HOOK_PATH))];
    env.extend(daemon.into_iter().filter(|(k, _)| kept(k)));
    env
}

/// Lines logged per stream and run of a hook; the rest are counted, not
/// logged: a hook printing without end must not flood the journal (nor
/// hold up a stop while its lines are written).
pub const MAX_LINES: usize = 1000;

pub async fn run(spec: &ExecSpec, step: Step, ctx: &Ctx, cancel: Cancel) -> Result<(), ExecError> {
    let argv = match step {
        Step::Acquire => &spec.acquire,
        Step::Release => &spec.release,
    };
    let Some(argv) = argv else { return Ok(()) };
    run_argv(argv, &spec.env, spec.timeout, step.as_str(), ctx, cancel).await
}

/// Runs `argv` as `event` (`acquire`, `release`, `check`: the hook's
/// `DLM_ELECTD_EVENT` and the log field) under `limit`. Health checks use
/// this directly, so they run exactly like hooks. `env`: the resource's
/// own variables (`[[resource]] env`), on top of `base_env`.
pub async fn run_argv(
    argv: &[String],
    env: &std::collections::BTreeMap<String, String>,
    limit: Duration,
    event: &'static str,
    ctx: &Ctx,
    mut cancel: Cancel,
) -> Result<(), ExecError> {
    let prog = argv[0].clone();
    let tracker = super::hooks::Tracker::new().map(std::sync::Arc::new);
    let mut cmd = Command::new(&prog);
    if let Some(t) = tracker.clone() {
        // SAFETY: register_self only makes async-signal-safe calls.
        unsafe { cmd.pre_exec(move || t.register_self()) };
    }
    // argv[0] is an absolute path (config::check::resolve_programs), so
    // the fixed PATH below changes nothing about which program runs.
    let mut child = cmd
        .args(&argv[1..])
        .env_clear()
        .envs(base_env(std::env::vars_os()))
        .envs(env)
        .env("DLM_ELECTD_RESOURCE", &ctx.resource)
        .env("DLM_ELECTD_EVENT", event)
        .env("DLM_ELECTD_NODE", &ctx.node)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|source| {
            if let Some(t) = &tracker {
                t.sweep();
            }
            ExecError::Spawn {
                program: prog.clone(),
                source,
            }
        })?;
    let pgid = Pid::from_raw(child.id().map(|p| p as i32).unwrap_or(0));
    if let Some(t) = &tracker {
        t.started(pgid.as_raw());
    }
    // In the caller's span, which names the resource (see daemon.rs).
    let readers = [
        tokio::spawn(log_output(child.stdout.take(), event, prog.clone(), false).in_current_span()),
        tokio::spawn(log_output(child.stderr.take(), event, prog.clone(), true).in_current_span()),
    ];
    let waited = tokio::select! {
        r = timeout(limit, child.wait()) => Some(r),
        () = cancel.cancelled() => None,
    };
    let result = match waited {
        Some(Ok(Ok(st))) if st.success() => Ok(()),
        Some(Ok(Ok(status))) => Err(ExecError::Exit {
            program: prog,
            event,
            status,
        }),
        Some(Ok(Err(source))) => Err(ExecError::Wait {
            program: prog,
            source,
        }),
        Some(Err(_)) => {
            kill_group(pgid, &mut child).await;
            Err(ExecError::Timeout {
                program: prog,
                event,
                limit,
            })
        }
        None => {
            kill_group(pgid, &mut child).await;
            Err(ExecError::Cancelled {
                program: prog,
                event,
            })
        }
    };
    // Reaped (and its group killed if it had to be): nobody must kill
    // that group number any more.
    if let Some(t) = &tracker {
        t.ended(pgid.as_raw());
    }
    let aborts = readers.each_ref().map(|r| r.abort_handle());
    if timeout(DRAIN, futures::future::join_all(readers))
        .await
        .is_err()
    {
        aborts.iter().for_each(|a| a.abort());
    }
    result
}

/// SIGTERM to the hook's process group, SIGKILL after the grace time, and
/// SIGKILL again for grandchildren that ignored SIGTERM.
async fn kill_group(pgid: Pid, child: &mut tokio::process::Child) {
    // The child is not reaped yet, so its pid still names the group.
    let _ = killpg(pgid, Signal::SIGTERM);
    if timeout(KILL_GRACE, child.wait()).await.is_err() {
        let _ = killpg(pgid, Signal::SIGKILL);
        let _ = child.wait().await;
    }
    let _ = killpg(pgid, Signal::SIGKILL);
}

/// Logs every line of one pipe until EOF (stderr lines as warnings).
async fn log_output(
    pipe: Option<impl AsyncRead + Unpin>,
    event: &'static str,
    prog: String,
    stderr: bool,
) {
    let Some(mut pipe) = pipe else { return };
    let mut seen = 0usize;
    let mut log = |line: String| {
        seen += 1;
        if seen > MAX_LINES {
            return;
        }
        if stderr {
            tracing::warn!(event, program = %prog, "{line}");
        } else {
            tracing::info!(event, program = %prog, "{line}");
        }
    };
    let mut lines = Lines::default();
    let mut chunk = [0u8; 8192];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => lines.push(&chunk[..n], &mut log),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // Not seen on a pipe; stop rather than spin.
            Err(_) => break,
        }
    }
    lines.finish(&mut log);
    if seen > MAX_LINES {
        let more = seen - MAX_LINES;
        let which = if stderr { "stderr" } else { "stdout" };
        tracing::warn!(
            event,
            program = %prog,
            "… {more} more {which} lines not logged (hook output is logged up to {MAX_LINES} lines per run)"
        );
    }
}

/// Splits bytes into lines of at most `MAX_LINE` bytes, holding no more
/// than that in memory; each line is handed out lossily decoded.
#[derive(Default)]
struct Lines {
    line: Vec<u8>,
    /// The current line was longer than `MAX_LINE`.
    cut: bool,
}

impl Lines {
    fn push(&mut self, mut data: &[u8], emit: &mut impl FnMut(String)) {
        while !data.is_empty() {
            let (part, rest, ends) = match data.iter().position(|&b| b == b'\n') {
                Some(i) => (&data[..i], &data[i + 1..], true),
                None => (data, &[][..], false),
            };
            let room = MAX_LINE - self.line.len();
            self.cut |= part.len() > room;
            self.line.extend_from_slice(&part[..part.len().min(room)]);
            if ends {
                self.flush(emit);
            }
            data = rest;
        }
    }

    /// At EOF: a last line without a newline.
    fn finish(&mut self, emit: &mut impl FnMut(String)) {
        if !self.line.is_empty() || self.cut {
            self.flush(emit);
        }
    }

    fn flush(&mut self, emit: &mut impl FnMut(String)) {
        if !self.cut && self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        // Control characters (a CR that would draw over the line at a
        // terminal, escape sequences) are shown escaped, tabs kept.
        let mut text: String = String::from_utf8_lossy(&self.line)
            .chars()
            .flat_map(|c| match c {
                '\t' => vec![c],
                c if c.is_control() => c.escape_default().collect(),
                c => vec![c],
            })
            .collect();
        if self.cut {
            text.push_str(&format!(" … (line cut at {MAX_LINE} bytes)"));
        }
        self.line.clear();
        self.cut = false;
        emit(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut out = Vec::new();
        let mut lines = Lines::default();
        for c in chunks {
            lines.push(c, &mut |l| out.push(l));
        }
        lines.finish(&mut |l| out.push(l));
        out
    }

    #[test]
    fn a_hook_gets_a_fixed_path_the_locale_and_nothing_else() {
        let daemon = [
            ("PATH", "/home/admin/bin:.:/usr/bin"),
            ("LANG", "de_DE.UTF-8"),
            ("LC_TIME", "C"),
            ("TZ", "Europe/Berlin"),
            ("LANGUAGE", "de"),
            ("RUST_LOG", "trace"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
            ("NOTIFY_SOCKET", "/run/systemd/notify"),
            ("JOURNAL_STREAM", "8:1"),
            ("LISTEN_FDS", "1"),
            ("HOME", "/root"),
            ("XLANG", "no"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let env: Vec<(String, String)> = base_env(daemon)
            .into_iter()
            .map(|(k, v)| (k.into_string().unwrap(), v.into_string().unwrap()))
            .collect();
        let want = [
            ("PATH", HOOK_PATH),
            ("LANG", "de_DE.UTF-8"),
            ("LC_TIME", "C"),
            ("TZ", "Europe/Berlin"),
            ("LANGUAGE", "de"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        assert_eq!(env, want);
    }

    #[test]
    fn lines_across_chunks_crlf_and_a_last_line_without_newline() {
        assert_eq!(
            split(&[b"one\ntw", b"o\r\n\nthr", b"ee"]),
            ["one", "two", "", "three"]
        );
        assert!(split(&[]).is_empty());
    }

    #[test]
    fn invalid_utf8_is_decoded_lossily() {
        assert_eq!(
            split(&[b"caf\xe9\n\xff\x00x"]),
            ["caf\u{fffd}", "\u{fffd}\\u{0}x"]
        );
    }

    #[test]
    fn control_characters_are_escaped_tabs_kept() {
        // A CR would let a hook draw over the daemon's own log line.
        assert_eq!(
            split(&[b"x\rOVERWRITE\tok\x1b[2J\n"]),
            ["x\\rOVERWRITE\tok\\u{1b}[2J"]
        );
    }

    #[test]
    fn a_long_line_is_cut_without_buffering_it() {
        let mut out = Vec::new();
        let mut lines = Lines::default();
        let chunk = [b'x'; 8192];
        for _ in 0..128 {
            lines.push(&chunk, &mut |l| out.push(l));
            assert!(
                lines.line.capacity() <= 2 * MAX_LINE,
                "buffered {}",
                lines.line.capacity()
            );
        }
        lines.push(b"\nnext", &mut |l| out.push(l));
        lines.finish(&mut |l| out.push(l));
        assert_eq!(
            out.len(),
            2,
            "{:?}",
            out.iter().map(String::len).collect::<Vec<_>>()
        );
        assert_eq!(
            out[0],
            format!("{} … (line cut at 4096 bytes)", "x".repeat(MAX_LINE))
        );
        assert_eq!(out[1], "next");
        // Exactly MAX_LINE bytes is not cut.
        let exact = vec![b'y'; MAX_LINE];
        assert_eq!(split(&[&exact, b"\n"]), ["y".repeat(MAX_LINE)]);
    }
}
