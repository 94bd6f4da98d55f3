//! `exec` actions: run an argv (no shell unless the user writes one) in its
//! own process group, with a timeout after which the whole group gets
//! SIGTERM and then SIGKILL, so a hook's grandchildren die with it.

use super::{Ctx, Step};
use crate::config::ExecSpec;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::time::timeout;

/// How long a timed-out hook gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(3);
/// How long to keep reading output after the hook exited: a background
/// grandchild may hold the pipe open forever, and we must not wait for it.
const DRAIN: Duration = Duration::from_millis(500);

pub async fn run(
    spec: &ExecSpec,
    step: Step,
    ctx: &Ctx,
    _cancel: super::Cancel,
) -> Result<(), String> {
    let argv = match step {
        Step::Acquire => &spec.acquire,
        Step::Release => &spec.release,
    };
    let Some(argv) = argv else { return Ok(()) };
    let prog = argv[0].clone();
    let mut child = Command::new(&prog)
        .args(&argv[1..])
        .env("DLM_ELECTD_RESOURCE", &ctx.resource)
        .env("DLM_ELECTD_EVENT", step.as_str())
        .env("DLM_ELECTD_NODE", &ctx.node)
        // The hook is not the service: it must not talk to systemd for us.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run {prog}: {e}"))?;
    let pgid = Pid::from_raw(child.id().map(|p| p as i32).unwrap_or(0));
    let readers = [
        tokio::spawn(log_lines(
            child.stdout.take(),
            ctx.resource.clone(),
            step,
            prog.clone(),
            false,
        )),
        tokio::spawn(log_lines(
            child.stderr.take(),
            ctx.resource.clone(),
            step,
            prog.clone(),
            true,
        )),
    ];
    let result = match timeout(spec.timeout, child.wait()).await {
        Ok(Ok(st)) if st.success() => Ok(()),
        Ok(Ok(st)) => Err(format!("{prog} {}: {st}", step.as_str())),
        Ok(Err(e)) => Err(format!("waiting for {prog}: {e}")),
        Err(_) => {
            // The child is not reaped yet, so its pid still names the group.
            let _ = killpg(pgid, Signal::SIGTERM);
            if timeout(KILL_GRACE, child.wait()).await.is_err() {
                let _ = killpg(pgid, Signal::SIGKILL);
                let _ = child.wait().await;
            }
            // Grandchildren that ignored SIGTERM.
            let _ = killpg(pgid, Signal::SIGKILL);
            Err(format!(
                "{prog} {} timed out after {:?}; its process group was killed",
                step.as_str(),
                spec.timeout
            ))
        }
    };
    for r in readers {
        let abort = r.abort_handle();
        if timeout(DRAIN, r).await.is_err() {
            abort.abort();
        }
    }
    result
}

async fn log_lines(
    pipe: Option<impl AsyncRead + Unpin>,
    resource: String,
    step: Step,
    prog: String,
    stderr: bool,
) {
    let Some(pipe) = pipe else { return };
    let mut lines = BufReader::new(pipe).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if stderr {
            tracing::warn!(resource = %resource, event = step.as_str(), program = %prog, "{line}");
        } else {
            tracing::info!(resource = %resource, event = step.as_str(), program = %prog, "{line}");
        }
    }
}
