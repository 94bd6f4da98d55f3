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

mod check;
mod cluster;
mod drain;

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
        return match load_as(&cli.config, false, config::check::LockUse::Release) {
            Ok(c) => crate::workload::held::unlock(&c, name),
            Err(code) => code,
        };
    }
    // At least two workers, even on one CPU: a burst of runners (1,000
    // resources starting at once) or a write blocked on a slow journald
    // then holds up one worker, not the supervisor and the watchdog's
    // round with it (seen on one-vCPU VMs: systemd killed a working daemon).
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
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
    load_as(path, print_warnings, config::check::LockUse::Take)
}

/// `load`, for a command that uses the locks as `uses` says.
fn load_as(
    path: &Path,
    print_warnings: bool,
    uses: config::check::LockUse,
) -> Result<config::Config, i32> {
    let loaded = crate::preflight::load_checked_as(path, uses).map_err(|e| {
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
        Cmd::CheckConfig => check::check_config(&cli.config),
        Cmd::Run => {
            let (signals, stop) = match crate::daemon::signals() {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("{e}");
                    return e.exit_code();
                }
            };
            let loaded = load(&cli.config, false);
            // A stop asked while the config was read: nothing started yet,
            // so nothing to release (once started, it releases first).
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                tracing::info!("stopped while reading the config: exiting before competing");
                return exit::OK;
            }
            match loaded {
                Ok(c) => crate::daemon::run(cli.config.clone(), c, signals).await,
                Err(code) => code,
            }
        }
        Cmd::Cleanup => match load_as(&cli.config, false, config::check::LockUse::Release) {
            Ok(c) => crate::daemon::cleanup(c).await,
            Err(code) => code,
        },
        Cmd::Status { .. }
        | Cmd::Release { .. }
        | Cmd::Resume { .. }
        | Cmd::Reset { .. }
        | Cmd::Drain { .. }
        | Cmd::Undrain
            if let Some(e) = unreadable(&cli.config) =>
        {
            eprintln!("dlm-electd: {e}");
            exit::CONFIG
        }
        Cmd::Status {
            json,
            watch,
            interval,
            cluster: true,
        } => match load_as(&cli.config, false, config::check::LockUse::Release) {
            Ok(c) if watch => watch_with(&cli.config, json, interval, Some(&c)).await,
            Ok(c) => match cluster::text(&c, json, true).await {
                Ok(t) => out(&t),
                Err(e) => {
                    eprintln!("dlm-electd: {e}");
                    exit::FAILURE
                }
            },
            Err(code) => code,
        },
        Cmd::Status {
            json, watch: false, ..
        } => status(&cli.config, json).await,
        Cmd::Status {
            json,
            watch: true,
            interval,
            ..
        } => watch_with(&cli.config, json, interval, None).await,
        Cmd::Release { name, hold_off } => release(&cli.config, name, hold_off).await,
        Cmd::Resume { name } => resume(&cli.config, name).await,
        Cmd::Reset { name } => reset(&cli.config, name).await,
        Cmd::Drain {
            reason,
            wait,
            timeout,
            force,
        } => drain::drain(&cli.config, reason, wait.then_some(timeout), force).await,
        Cmd::Undrain => drain::undrain(&cli.config).await,
        Cmd::KeepLocks { .. }
        | Cmd::RunLocked { .. }
        | Cmd::Lock { .. }
        | Cmd::Unlock { .. }
        | Cmd::HoldWorkloadLock { .. } => unreachable!("handled in dispatch"),
    }
}

/// Each preferred resource's order as the election uses it (for
/// `prefer = "spread"`, the order computed from `[cluster] nodes`, which
/// every node must compute alike), one line each.
fn preferences(c: &config::Config) -> String {
    let mut t = String::new();
    for r in c.resources.iter().filter(|r| !r.prefer.is_empty()) {
        let preempt = match (r.preempt, r.preempt_delay.is_zero()) {
            (false, _) => String::new(),
            (true, true) => ", preempt".into(),
            (true, false) => format!(
                ", preempt after {}",
                humantime::format_duration(r.preempt_delay)
            ),
        };
        let _ = writeln!(t, "prefer {}: {}{preempt}", r.name, r.prefer.join(", "));
    }
    t
}

/// How far the `file` backend's locks reach, for `check-config` and the
/// daemon's status; None for dlmfs (or when the lock dir cannot be judged
/// now: the config check before said why).
pub fn lock_reach(c: &config::Config) -> Option<String> {
    if c.lock.backend != config::Backend::File {
        return None;
    }
    crate::lock::filesystem::check_dir(&c.lock.dir, c.lock.trust_filesystem)
        .ok()
        .map(|a| a.describe())
}

/// The clients find the daemon through the config's `runtime_dir`. A config
/// path that cannot be read is a typo to report, not a reason to ask the
/// default socket and say "not running"; only the default path may be
/// missing (then the default runtime dir is asked).
fn unreadable(config: &Path) -> Option<String> {
    if config == Path::new(config::DEFAULT_PATH) && !config.exists() {
        return None;
    }
    std::fs::File::open(config)
        .err()
        .map(|e| format!("cannot read {}: {e}", config.display()))
}

/// Asks the daemon for its status.
async fn fetch(config: &Path) -> Result<StatusReport, String> {
    let dir = config::runtime_dir_hint(config);
    // The last mile: a client prints the error, whatever it was.
    let reply = control::call(&dir, &Request::Status, Duration::from_secs(10))
        .await
        .map_err(|e| e.to_string())?;
    match reply {
        control::Reply {
            status: Some(s), ..
        } => Ok(s),
        r => Err(r.error.unwrap_or_else(|| "empty answer".into())),
    }
}

/// The workload locks `lock` holds on this node: read from the runtime dir,
/// so they are shown with or without a daemon.
fn held(config: &Path) -> Vec<crate::workload::held::HeldRecord> {
    crate::workload::held::list(&config::runtime_dir_hint(config))
}

/// One status: the daemon's report (if it answered) and the workload locks.
/// JSON: pretty for `status`, one line per document for `--watch`.
fn render(
    s: Option<&StatusReport>,
    held: &[crate::workload::held::HeldRecord],
    json: bool,
    pretty: bool,
) -> String {
    if json {
        let mut v = s
            .map(|s| serde_json::to_value(s).unwrap_or_default())
            .unwrap_or_else(|| serde_json::json!({}));
        v["workload_locks"] = serde_json::to_value(held).unwrap_or_default();
        let text = if pretty {
            serde_json::to_string_pretty(&v)
        } else {
            serde_json::to_string(&v)
        };
        format!("{}\n", text.unwrap_or_default())
    } else {
        format!("{}{}", s.map(table).unwrap_or_default(), held_table(held))
    }
}

async fn status(config: &Path, json: bool) -> i32 {
    let held = held(config);
    let err = match fetch(config).await {
        Ok(s) => return out(&render(Some(&s), &held, json, true)),
        Err(e) => e,
    };
    if !held.is_empty() {
        let _ = out(&render(None, &held, json, true));
    }
    eprintln!("dlm-electd: {err}");
    let left = leftovers(&config::runtime_dir_hint(config));
    if !left.is_empty() {
        eprintln!(
            "dlm-electd: applied records are left for: {} (a lock keeper may still be releasing them; else `dlm-electd cleanup` undoes them)",
            left.join(", ")
        );
    }
    exit::FAILURE
}

/// Resources whose applied records are still there with no daemon running:
/// what a stopped or killed daemon may have left applied.
fn leftovers(runtime_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(runtime_dir.join(crate::instance::RECORDS))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// The workload locks `lock` holds on this node.
fn held_table(held: &[crate::workload::held::HeldRecord]) -> String {
    if held.is_empty() {
        return String::new();
    }
    let now = crate::clock::now_ms();
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

/// `status --watch`: the status every `every` until Ctrl-C or SIGTERM
/// (exit 0), or until the daemon stops answering (exit 1). On a terminal
/// each refresh redraws the screen; into a pipe or file, the tables follow
/// each other separated by a blank line, or with --json one JSON document
/// per line.
/// `cluster`: the cluster view of that config instead of this node's status.
async fn watch_with(
    config: &Path,
    json: bool,
    every: Duration,
    cluster: Option<&config::Config>,
) -> i32 {
    use std::io::IsTerminal;
    use tokio::signal::unix::{SignalKind, signal};
    // Streams made once, before the first refresh: a signal that comes
    // between two refreshes is kept for the next select.
    let (mut int, mut term) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("dlm-electd: cannot catch SIGINT and SIGTERM: {e}");
            return exit::FAILURE;
        }
    };
    let redraw = std::io::stdout().is_terminal();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut first = true;
    loop {
        let frame = async {
            tick.tick().await;
            match cluster {
                Some(c) => cluster::text(c, json, false).await,
                None => fetch(config)
                    .await
                    .map(|s| render(Some(&s), &held(config), json, false)),
            }
        };
        let now = tokio::select! {
            _ = int.recv() => return exit::OK,
            _ = term.recv() => return exit::OK,
            r = frame => r,
        };
        let now = match now {
            Ok(s) => s,
            Err(e) => {
                eprintln!("dlm-electd: {e}; stopped watching");
                return exit::FAILURE;
            }
        };
        let text = if json {
            now
        } else if redraw {
            // Home, clear: the table replaces the one before.
            format!("\x1b[H\x1b[2J{now}")
        } else if first {
            now
        } else {
            format!("\n{now}")
        };
        first = false;
        if out(&text) != exit::OK {
            return exit::FAILURE;
        }
        let _ = std::io::stdout().flush();
    }
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
    match control::call(&dir, &req, wait)
        .await
        .map_err(|e| e.to_string())
    {
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

/// `name`'s row in the daemon's status, if it answers.
async fn resource_status(dir: &Path, name: &str) -> Option<crate::election::ResourceStatus> {
    match control::call(dir, &Request::Status, Duration::from_secs(10)).await {
        Ok(control::Reply {
            status: Some(st), ..
        }) => st.resources.into_iter().find(|r| r.name == name),
        _ => None,
    }
}

async fn reset(config: &Path, name: String) -> i32 {
    let dir = config::runtime_dir_hint(config);
    // What it clears: said after, as the state was before.
    let before = resource_status(&dir, &name).await.map(|r| r.state);
    let req = Request::Reset {
        resource: name.clone(),
    };
    match control::call(&dir, &req, Duration::from_secs(10))
        .await
        .map_err(|e| e.to_string())
    {
        Ok(control::Reply { error: None, .. }) => {
            match before {
                Some(crate::state::Status::Failed) => {
                    println!("{name}: fail count cleared; competing again")
                }
                Some(s) => println!(
                    "{name}: was not out for a fail count (state {}); its count is cleared",
                    s.as_str()
                ),
                None => println!("{name}: fail count cleared"),
            }
            exit::OK
        }
        Ok(control::Reply { error: Some(e), .. }) | Err(e) => {
            eprintln!("dlm-electd: reset {name}: {e}");
            exit::FAILURE
        }
    }
}

async fn resume(config: &Path, name: String) -> i32 {
    let dir = config::runtime_dir_hint(config);
    let req = Request::Resume {
        resource: name.clone(),
    };
    match control::call(&dir, &req, Duration::from_secs(10))
        .await
        .map_err(|e| e.to_string())
    {
        Ok(control::Reply { error: None, .. }) => {
            // A failing health check still keeps it out: say so rather
            // than promise a competition that will not happen.
            let now = resource_status(&dir, &name).await;
            let failing = now
                .as_ref()
                .is_some_and(|r| r.health.as_deref() == Some("failing"));
            if now.is_some_and(|r| r.state == crate::state::Status::Drained) {
                println!(
                    "{name}: hold-off ended; the node is drained: it competes once `dlm-electd undrain` runs"
                );
            } else if failing {
                println!("{name}: hold-off ended; not competing while its health check fails");
            } else {
                println!("{name}: hold-off ended; competing again");
            }
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

/// The status table: per resource its state, since when, a hold-off's
/// time left and the last error ("-" for none). Times are relative to the
/// daemon's clock (`now_ms`), so a client on a skewed clock reads the same.
fn table(s: &StatusReport) -> String {
    let now = if s.now_ms > 0 {
        s.now_ms
    } else {
        crate::clock::now_ms()
    };
    let w = s
        .resources
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let mut t = format!("node: {}\n", s.node);
    // A header over no rows reads as a daemon that lost its resources; the
    // docs/operating.md and STATUS= say it plainly.
    if s.resources.is_empty() {
        t.push_str("no resources configured\n");
    } else {
        let _ = writeln!(
            t,
            "{:<w$}  {:<9}  {:>12}  {:>14}  {:<7}  LAST ERROR",
            "RESOURCE", "STATE", "SINCE", "HOLD-OFF", "HEALTH"
        );
    }
    for r in &s.resources {
        let since = format!("{} ago", compact(now.saturating_sub(r.since_ms) / 1000));
        // An admin's hold-off, or the fail count's timeout (state
        // `failed`): how long this node stays out either way.
        let hold_off = match r.hold_off_until_ms.or(r.failed_until_ms) {
            // Rounded up: 0.4 s left is not "0s left".
            Some(until) => format!("{} left", compact(until.saturating_sub(now).div_ceil(1000))),
            None => "-".into(),
        };
        // The resource's own last failure first; else why its health
        // check fails, which is what keeps a healthy-looking standby out.
        let error = match (&r.last_error, &r.health_error) {
            (Some(e), _) => e.clone(),
            (None, Some(e)) => format!("check: {e}"),
            (None, None) => "-".into(),
        };
        let _ = writeln!(
            t,
            "{:<w$}  {:<9}  {:>12}  {:>14}  {:<7}  {}",
            r.name,
            r.state.as_str(),
            since,
            hold_off,
            r.health.as_deref().unwrap_or("-"),
            error
        );
    }
    // Handovers a master delays (`preempt_delay`): after the rows, as
    // notes, so the columns stay as they are.
    for r in &s.resources {
        if let (Some(to), Some(at)) = (&r.handover_to, r.handover_at_ms) {
            let left = compact(at.saturating_sub(now).div_ceil(1000));
            let _ = writeln!(
                t,
                "{}: handing over to {to} in {left} (preempt_delay) if it stays a candidate",
                r.name
            );
        }
    }
    if let Some(l) = &s.locks {
        let _ = writeln!(t, "locks: {l}");
    }
    // Also after the rows: the node's drain.
    if let Some(d) = &s.drain {
        let since = match d.since_ms {
            0 => String::new(),
            ms => format!(" {} ago", compact(now.saturating_sub(ms) / 1000)),
        };
        let by = match d.by.as_str() {
            "" => String::new(),
            by => format!(" by {by}"),
        };
        let _ = writeln!(
            t,
            "{}{since}{by}; `dlm-electd undrain` ends it",
            d.describe()
        );
    }
    t
}

/// Seconds as their two largest units without spaces: "45s", "3m12s",
/// "5h3m", "2d4h". (humantime writes every unit, spaced: "2days 4h 3m 1s"
/// is too wide for a column.)
fn compact(secs: u64) -> String {
    let units = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let Some(i) = units.iter().position(|(n, _)| secs >= *n) else {
        return "0s".into();
    };
    let (big, b) = units[i];
    let mut text = format!("{}{b}", secs / big);
    if let Some((small, u)) = units.get(i + 1)
        && secs % big >= *small
    {
        let _ = write!(text, "{}{u}", secs % big / small);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::election::{ResourceStatus, Status};

    #[test]
    fn compact_durations() {
        assert_eq!(compact(0), "0s");
        assert_eq!(compact(45), "45s");
        assert_eq!(compact(60), "1m");
        assert_eq!(compact(192), "3m12s");
        assert_eq!(compact(3600 + 59), "1h");
        assert_eq!(compact(5 * 3600 + 3 * 60 + 7), "5h3m");
        assert_eq!(compact(2 * 86_400 + 4 * 3600 + 1), "2d4h");
    }

    #[test]
    fn table_shows_since_hold_off_and_error_per_resource() {
        let r = |name: &str, state, since_ms, err: Option<&str>, until| ResourceStatus {
            last_error: err.map(str::to_string),
            hold_off_until_ms: until,
            settled: true,
            ..ResourceStatus::new(name, name, state, since_ms)
        };
        let now = 1_000_000_000;
        let s = StatusReport {
            node: "a".into(),
            now_ms: now,
            resources: vec![
                r("web", Status::Master, now - 192_000, None, None),
                r(
                    "db",
                    Status::Standby,
                    now - 5_000,
                    None,
                    Some(now + 287_400),
                ),
                r(
                    "mail",
                    Status::Backoff,
                    now,
                    Some("acquire step 1 failed"),
                    None,
                ),
            ],
            locks: Some("host-local (ext4 at /): locks exclude processes of this host only".into()),
            drain: Some(crate::drain::Drain {
                reason: Some("kernel update".into()),
                since_ms: now - 90_000,
                by: "pid 7 (bash), uid 0".into(),
            }),
        };
        let mut s = s;
        s.resources[1].health = Some("ok".into());
        let mut api = r("api", Status::Standby, now - 61_000, None, None);
        api.health = Some("failing".into());
        api.health_error = Some("exit status 1".into());
        s.resources.push(api);
        let mut vip = r(
            "vip",
            Status::Failed,
            now - 2_000,
            Some("acquire step 1 failed"),
            None,
        );
        vip.failed_until_ms = Some(now + 1_798_000);
        s.resources.push(vip);
        s.resources[0].handover_to = Some("b".into());
        s.resources[0].handover_at_ms = Some(now + 252_000);
        let t = table(&s);
        let lines: Vec<Vec<&str>> = t.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(lines[0], ["node:", "a"]);
        assert_eq!(
            lines[1],
            [
                "RESOURCE", "STATE", "SINCE", "HOLD-OFF", "HEALTH", "LAST", "ERROR"
            ]
        );
        assert_eq!(lines[2], ["web", "master", "3m12s", "ago", "-", "-", "-"]);
        assert_eq!(
            lines[3],
            ["db", "standby", "5s", "ago", "4m48s", "left", "ok", "-"]
        );
        assert_eq!(
            lines[4],
            [
                "mail", "backoff", "0s", "ago", "-", "-", "acquire", "step", "1", "failed"
            ]
        );
        assert_eq!(
            lines[5],
            [
                "api", "standby", "1m1s", "ago", "-", "failing", "check:", "exit", "status", "1"
            ]
        );
        assert_eq!(
            lines[6],
            [
                "vip", "failed", "2s", "ago", "29m58s", "left", "-", "acquire", "step", "1",
                "failed"
            ]
        );
        // After the rows, so scripts reading rows by position are unaffected.
        assert_eq!(
            t.lines().nth(7),
            Some("web: handing over to b in 4m12s (preempt_delay) if it stays a candidate")
        );
        assert_eq!(
            t.lines().nth(8),
            Some("locks: host-local (ext4 at /): locks exclude processes of this host only")
        );
        assert_eq!(
            t.lines().nth(9),
            Some(
                "drained: kernel update 1m30s ago by pid 7 (bash), uid 0; `dlm-electd undrain` ends it"
            )
        );
        assert_eq!(t.lines().count(), 10);
    }

    /// Issue #19, item 12: the header alone said nothing.
    #[test]
    fn table_without_resources_says_so() {
        let s = StatusReport {
            node: "a".into(),
            now_ms: 1,
            resources: Vec::new(),
            locks: Some("host-local (ext4 at /): x".into()),
            drain: None,
        };
        assert_eq!(
            table(&s),
            "node: a\nno resources configured\nlocks: host-local (ext4 at /): x\n"
        );
    }
}
