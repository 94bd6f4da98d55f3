//! What each subcommand does, for `main` to dispatch: the daemon and
//! `cleanup` (in `daemon`), `check-config`, and the clients of a running
//! daemon (`status`, `release`).

use crate::cli::{Cli, Cmd};
use crate::config;
use crate::control::{self, Request, StatusReport};
use crate::exit;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

/// Runs the command; returns the exit code.
pub fn dispatch(cli: Cli) -> i32 {
    if let Cmd::KeepLocks { fd, node } = cli.command {
        // Plain blocking code with a runtime of its own for the release
        // actions: see keeper.
        return crate::keeper::main(fd, node);
    }
    if let Cmd::HoldWorkloadLock { .. } = cli.command {
        return crate::workload::held::hold_forever();
    }
    if let Cmd::RunLocked {
        name,
        wait,
        command,
    } = &cli.command
    {
        // Plain blocking code: lock calls on threads of their own under
        // op_timeout, then a wait for the program.
        return match load(&cli.config, false) {
            Ok(c) => crate::workload::run_locked(&c, name, *wait, command),
            Err(code) => code,
        };
    }
    if let Cmd::Lock { name, wait, by } = &cli.command {
        return match load(&cli.config, false) {
            Ok(c) => crate::workload::held::lock(&c, name, *wait, by.clone()),
            Err(code) => code,
        };
    }
    if let Cmd::Unlock { name } = &cli.command {
        return match load(&cli.config, false) {
            Ok(c) => crate::workload::held::unlock(&c, name),
            Err(code) => code,
        };
    }
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(run(cli)),
        Err(e) => {
            eprintln!("dlm-electd: cannot start the runtime: {e}");
            exit::FAILURE
        }
    }
}

/// Loads and checks the config; warnings are printed by `check-config`
/// (`warning: FILE:LINE:COL: ...`) and logged by the other commands.
fn load(path: &Path, print_warnings: bool) -> Result<config::Config, i32> {
    let loaded = config::load_checked(path).map_err(|e| {
        eprintln!("{e}");
        exit::CONFIG
    })?;
    for w in &loaded.warnings {
        if print_warnings {
            eprintln!("warning: {w}");
        } else {
            tracing::warn!("{w}");
        }
    }
    Ok(loaded.config)
}

async fn run(cli: Cli) -> i32 {
    match cli.command {
        Cmd::CheckConfig => match load(&cli.config, true) {
            Ok(c) => {
                // On a node of a cluster whose stack is not o2cb, the dlmfs
                // backend would hang (docs/dlmfs.md): say so now.
                if c.lock.backend == config::Backend::Dlmfs
                    && let Some(m) = crate::lock::dlmfs::cluster_stack_problem(Path::new(
                        crate::lock::dlmfs::SYSFS_ROOT,
                    ))
                {
                    eprintln!("{}: key `lock.backend`: {m}", cli.config.display());
                    return exit::CONFIG;
                }
                println!(
                    "{}: ok, {} resource(s), {} backend",
                    cli.config.display(),
                    c.resources.len(),
                    c.lock.backend
                );
                exit::OK
            }
            Err(code) => code,
        },
        Cmd::Run => match load(&cli.config, false) {
            Ok(c) => crate::daemon::run(cli.config.clone(), c).await,
            Err(code) => code,
        },
        Cmd::Cleanup => match load(&cli.config, false) {
            Ok(c) => crate::daemon::cleanup(c).await,
            Err(code) => code,
        },
        Cmd::Status { json } => status(&cli.config, json).await,
        Cmd::Release { name, hold_off } => release(&cli.config, name, hold_off).await,
        Cmd::Resume { name } => resume(&cli.config, name).await,
        Cmd::KeepLocks { .. }
        | Cmd::RunLocked { .. }
        | Cmd::Lock { .. }
        | Cmd::Unlock { .. }
        | Cmd::HoldWorkloadLock { .. } => unreachable!("handled in dispatch"),
    }
}

async fn status(config: &Path, json: bool) -> i32 {
    let dir = config::runtime_dir_hint(config);
    // Workload locks held by `lock` need no daemon: read from the runtime
    // dir, shown with or without one.
    let held = crate::workload::held::list(&dir);
    let err = match control::call(&dir, &Request::Status, Duration::from_secs(10)).await {
        Ok(control::Reply {
            status: Some(s), ..
        }) => {
            return if json {
                let mut v = serde_json::to_value(&s).unwrap_or_default();
                v["workload_locks"] = serde_json::to_value(&held).unwrap_or_default();
                let text = serde_json::to_string_pretty(&v).unwrap_or_default();
                out(&format!("{text}\n"))
            } else {
                out(&format!("{}{}", table(&s), held_table(&held)))
            };
        }
        Ok(r) => r.error.unwrap_or_else(|| "empty answer".into()),
        Err(e) => e,
    };
    if !held.is_empty() {
        if json {
            let v = serde_json::json!({ "workload_locks": held });
            let text = serde_json::to_string_pretty(&v).unwrap_or_default();
            let _ = out(&format!("{text}\n"));
        } else {
            let _ = out(&held_table(&held));
        }
    }
    eprintln!("dlm-electd: {err}");
    exit::FAILURE
}

/// The workload locks `lock` holds on this node.
fn held_table(held: &[crate::workload::held::HeldRecord]) -> String {
    if held.is_empty() {
        return String::new();
    }
    let now = crate::election::status::now_ms();
    let w = held.iter().map(|r| r.name.len()).max().unwrap_or(0).max(13);
    let mut t = format!(
        "\n{:<w$}  {:>8}  {:>10}  ASKED BY\n",
        "WORKLOAD LOCK", "HOLDER", "FOR"
    );
    for r in held {
        let age = Duration::from_secs(now.saturating_sub(r.since_ms) / 1000);
        let holder = if r.holder_alive {
            r.pid.to_string()
        } else {
            "gone".into()
        };
        let _ = writeln!(
            t,
            "{:<w$}  {:>8}  {:>10}  {}",
            r.name,
            holder,
            humantime::format_duration(age).to_string(),
            r.by
        );
    }
    t
}

async fn release(config: &Path, name: String, hold_off: Duration) -> i32 {
    let dir = config::runtime_dir_hint(config);
    let req = Request::Release {
        resource: name.clone(),
        hold_off_ms: hold_off.as_millis() as u64,
    };
    // The daemon answers once the lock is given up, or at the first failed
    // release attempt, and gives up itself after RELEASE_WAIT: this only
    // guards against a daemon that stopped answering at all.
    let wait = control::RELEASE_WAIT + Duration::from_secs(10);
    match control::call(&dir, &req, wait).await {
        Ok(control::Reply { error: None, .. }) => {
            println!(
                "{name}: released; not competing for {}",
                humantime::format_duration(hold_off)
            );
            exit::OK
        }
        Ok(control::Reply { error: Some(e), .. }) | Err(e) => {
            eprintln!("dlm-electd: release {name}: {e}");
            exit::FAILURE
        }
    }
}

async fn resume(config: &Path, name: String) -> i32 {
    let dir = config::runtime_dir_hint(config);
    let req = Request::Resume {
        resource: name.clone(),
    };
    match control::call(&dir, &req, Duration::from_secs(10)).await {
        Ok(control::Reply { error: None, .. }) => {
            println!("{name}: hold-off ended; competing again");
            exit::OK
        }
        Ok(control::Reply { error: Some(e), .. }) | Err(e) => {
            eprintln!("dlm-electd: resume {name}: {e}");
            exit::FAILURE
        }
    }
}

/// Writes a client's output; a closed pipe (`| head`) or a full disk is
/// an error to report, not a panic.
fn out(text: &str) -> i32 {
    match std::io::stdout().write_all(text.as_bytes()) {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("dlm-electd: cannot write the status: {e}");
            exit::FAILURE
        }
    }
}

fn table(s: &StatusReport) -> String {
    let now = crate::election::status::now_ms();
    let w = s
        .resources
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let mut t = format!("node: {}\n", s.node);
    let _ = writeln!(
        t,
        "{:<w$}  {:<9}  {:>10}  LAST ERROR",
        "RESOURCE", "STATE", "FOR"
    );
    for r in &s.resources {
        let age = Duration::from_secs(now.saturating_sub(r.since_ms) / 1000);
        let note = match (&r.last_error, r.hold_off_until_ms) {
            (Some(e), _) => e.clone(),
            (None, Some(until)) => format!(
                "holding off for {} more",
                humantime::format_duration(Duration::from_secs(until.saturating_sub(now) / 1000))
            ),
            (None, None) => "-".into(),
        };
        let _ = writeln!(
            t,
            "{:<w$}  {:<9}  {:>10}  {}",
            r.name,
            r.state.as_str(),
            humantime::format_duration(age).to_string(),
            note
        );
    }
    t
}
