//! Command-line interface.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "dlm-electd",
    version,
    about = "Leader election and failover on a cluster lock manager",
    long_about = "Leader election and failover on a cluster lock manager. Each election \
resource is backed by one exclusive lock (OCFS2's DLM through dlmfs, or OFD locks in a \
directory); the node that holds it is master and runs the resource's actions in order \
(exec hooks, virtual IPs); giving mastership up undoes them in reverse order. \
See dlm-electd.toml(5) for the configuration."
)]
pub struct Cli {
    /// Config file; drop-ins are read from conf.d/*.toml beside it.
    #[arg(long, global = true, default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// More log output: -v adds debug lines (each lock attempt and wait,
    /// the lock keeper, control connections, VIP details), -vv also trace
    /// lines (mostly from libraries). RUST_LOG overrides both.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the daemon in the foreground.
    ///
    /// Signals: SIGTERM or SIGINT release every resource (in reverse order)
    /// and exit (1 if a release failed and its lock is still held); SIGHUP
    /// reloads the configuration (a bad one is refused and the running one
    /// kept); SIGUSR1 logs the status table. Exit 78: invalid configuration.
    Run,
    /// Validate the configuration (exit 78 if invalid).
    ///
    /// When valid, it also prints each preferred resource's order of nodes
    /// as the election uses it (`prefer = "spread"` resolved).
    CheckConfig,
    /// Show the running daemon's resources (exit 1 if no daemon answers).
    ///
    /// The table has, per resource: its state, since when (relative), the
    /// time left of a hold-off (from `release` or a health give-up), its
    /// health (with a `[resource.check]`) and the last error; below it, a
    /// handover a master holds back for `preempt_delay`, and the workload
    /// locks `lock` holds on this node (shown even when no daemon runs).
    Status {
        /// Print JSON for scripts instead of the table (every field is
        /// described in docs/operating.md, "Status"); with --watch, one line per
        /// refresh.
        #[arg(long)]
        json: bool,
        /// Refresh until Ctrl-C (exit 0) or until the daemon stops
        /// answering (exit 1). On a terminal the screen is redrawn;
        /// otherwise each refresh is appended.
        #[arg(long)]
        watch: bool,
        /// The whole cluster instead of this node: per resource its master
        /// (named only when one running node says so and its lock is held),
        /// and every node's state for it, read from the node records the
        /// daemons keep beside the locks (`file` backend for now).
        #[arg(long)]
        cluster: bool,
        /// How often --watch refreshes: a DURATION from 200ms to 1h.
        #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_interval, requires = "watch")]
        interval: Duration,
    },
    /// Planned switchover: the master releases NAME and stays out for the hold-off.
    Release {
        /// The resource to release (its `name` in the config).
        name: String,
        /// How long this node does not compete for NAME afterwards: a
        /// DURATION like 30s, 5m, 1h (at most 24h).
        /// A negative value reaches the parser (and its error) rather than
        /// being taken for an option.
        #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_hold_off, allow_hyphen_values = true)]
        hold_off: Duration,
    },
    /// End a hold-off early (from `release` or a health give-up): this node
    /// competes for NAME again now, if its health check lets it.
    Resume {
        /// The resource (its `name` in the config).
        name: String,
    },
    /// Clear NAME's fail count (`max_failures`): a node out of the
    /// competition for it (state `failed`) competes again now.
    Reset {
        /// The resource (its `name` in the config).
        name: String,
    },
    /// Take this node out for maintenance: master of nothing, competing
    /// for nothing, until `undrain`.
    ///
    /// Records the drain in the state dir (`daemon.state_dir`), so it
    /// survives a daemon restart, an upgrade and a reboot, then tells the
    /// daemon, which releases every resource it is master of (release
    /// steps, then the lock). With no daemon running the record alone is
    /// written: it starts drained. `status` shows the drain and its reason.
    Drain {
        /// Why, for `status`, the journal and the metrics' readers: one
        /// line of at most 200 bytes.
        #[arg(long, value_parser = parse_reason)]
        reason: Option<String>,
        /// Return only when every resource is held by another node (exit
        /// 0), or say which is not after --timeout (exit 1).
        #[arg(long)]
        wait: bool,
        /// Drain even when no other running node could take over some
        /// resource (checked from the node records `status --cluster`
        /// reads; on dlmfs and dlm through this node's daemon, so a node
        /// whose daemon is stopped drains unchecked).
        #[arg(long)]
        force: bool,
        /// How long --wait waits: a DURATION from 1s to 24h.
        #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_wait_limit, requires = "wait")]
        timeout: Duration,
    },
    /// End a drain: this node competes for every resource again now.
    Undrain,
    /// After a crash: undo what this instance applied, and drop lock state.
    ///
    /// Runs the release steps of every resource this instance's applied
    /// records name (what a killed daemon left; also for resources removed
    /// from the config since, as the record says), then drops lock state the
    /// node still keeps (dlmfs). For `ExecStopPost=`; refuses while a daemon
    /// runs on the same runtime dir.
    Cleanup,
    /// Run PROGRAM while holding workload lock NAME cluster-wide (flock(1) for the cluster).
    ///
    /// Takes NAME in the configured backend and domain (a node-local lock
    /// first, then the cluster lock `@NAME`), runs PROGRAM while it is held,
    /// drops it when PROGRAM ends and exits with PROGRAM's status (128+N if
    /// killed by signal N). Busy: exit 75 at once, or after --wait.
    /// PROGRAM inherits the lock's two fds, so killing run-locked cannot free
    /// the lock while PROGRAM runs; it gets DLM_ELECTD_LOCK, DLM_ELECTD_NODE,
    /// DLM_ELECTD_LOCK_FDS and, on dlmfs, DLM_ELECTD_EPOCH. SIGTERM, SIGINT,
    /// SIGHUP and SIGQUIT are passed on to PROGRAM. Exit 127: no such
    /// program, 126: not executable (nothing locked), 1: a lock error.
    RunLocked {
        /// The workload lock: 1-30 letters, digits, '_', '-', '.', '+',
        /// starting with a letter or digit.
        #[arg(value_parser = parse_workload_name)]
        name: String,
        /// If busy, keep trying (every poll_interval; on the dlm backend
        /// waiting in the DLM's queue) for up to DURATION, like 30s or 5m
        /// (at most 1h), then exit 75.
        #[arg(long, value_name = "DURATION", value_parser = parse_wait)]
        wait: Option<Duration>,
        /// The program and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "PROGRAM")]
        command: Vec<std::ffi::OsString>,
    },
    /// Take workload lock NAME and keep it after returning, for hooks that exit at once.
    ///
    /// A detached holder process (`hold-workload-lock`, its own session)
    /// keeps the lock until `dlm-electd unlock NAME`: it survives the
    /// caller, a restart or kill of the daemon (which need not run), and
    /// ignores SIGTERM, SIGINT and SIGHUP. `status` lists it with who asked
    /// and since when. Exit 0 once held, 75 if busy, 1 on a lock error.
    Lock {
        /// The workload lock (same rules as for run-locked).
        #[arg(value_parser = parse_workload_name)]
        name: String,
        /// If busy, keep trying for up to DURATION (at most 1h), then exit 75.
        #[arg(long, value_name = "DURATION", value_parser = parse_wait)]
        wait: Option<Duration>,
        /// Who asks, shown by `status` (default: the calling process and user).
        #[arg(long, value_name = "TEXT")]
        by: Option<String>,
    },
    /// Release workload lock NAME taken by `lock` on this node.
    ///
    /// Ends this node's holder of NAME and drops the lock. A lock not held
    /// on this node is no error (exit 0, nothing touched), so a unit's
    /// ExecStopPost= after a start refused as busy leaves the other node's
    /// lock alone. Exit 1 if a run-locked program of this node holds NAME.
    Unlock {
        /// The workload lock.
        #[arg(value_parser = parse_workload_name)]
        name: String,
    },
    /// Internal: the holder process of a workload lock, started by `lock`.
    #[command(hide = true)]
    HoldWorkloadLock {
        /// The lock it holds (for ps, status and unlock).
        name: String,
    },
    /// Internal: the `file` backend's lock keeper, started by `run`.
    #[command(hide = true)]
    KeepLocks {
        /// The inherited socket to the daemon.
        #[arg(long)]
        fd: i32,
        /// For the release hooks' DLM_ELECTD_NODE.
        #[arg(long)]
        node: String,
    },
}

/// The longest hold-off: a node kept out for longer is a configuration
/// change, not a switchover.
pub const MAX_HOLD_OFF: Duration = Duration::from_secs(24 * 3600);

fn parse_hold_off(s: &str) -> Result<Duration, String> {
    if s.trim_start().starts_with('-') {
        return Err("a hold-off cannot be negative (write e.g. 30s, 5m, 1h)".into());
    }
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 30s, 5m, 1h)"))?;
    match hold_off_problem(d) {
        Some(p) => Err(p),
        None => Ok(d),
    }
}

/// Why `d` cannot be a `release` hold-off, or None. Shared by the CLI and
/// the daemon's control socket, which must not trust its clients to have
/// checked (a raw request may carry any number of milliseconds).
pub fn hold_off_problem(d: Duration) -> Option<String> {
    if d.is_zero() {
        return Some(
            "must be more than 0s: without a hold-off this node competes again at once and may win its own lock back (`resume NAME` ends a hold-off early)"
                .into(),
        );
    }
    if d > MAX_HOLD_OFF {
        return Some(format!(
            "at most {}h (a longer hold-off is a configuration change)",
            MAX_HOLD_OFF.as_secs() / 3600
        ));
    }
    None
}

/// The shortest and longest `status --watch` refresh: faster only loads
/// the daemon, slower is no longer watching.
pub const WATCH_MIN: Duration = Duration::from_millis(200);
pub const WATCH_MAX: Duration = Duration::from_secs(3600);

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 1s, 500ms)"))?;
    if !(WATCH_MIN..=WATCH_MAX).contains(&d) {
        return Err(format!(
            "between {} and {}",
            humantime::format_duration(WATCH_MIN),
            humantime::format_duration(WATCH_MAX)
        ));
    }
    Ok(d)
}

/// `--reason`: shown in `status`, the journal, an alert's environment and
/// a metric's label, so one line of printable text.
fn parse_reason(s: &str) -> Result<String, String> {
    let max = crate::drain::MAX_REASON;
    if s.trim().is_empty() || s.len() > max || s.chars().any(char::is_control) {
        return Err(format!(
            "one line of 1 to {max} bytes of printable text (leave --reason out for none)"
        ));
    }
    Ok(s.to_string())
}

/// `drain --timeout`.
fn parse_wait_limit(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 30s, 5m)"))?;
    if !(Duration::from_secs(1)..=MAX_HOLD_OFF).contains(&d) {
        return Err("between 1s and 24h".into());
    }
    Ok(d)
}

fn parse_workload_name(s: &str) -> Result<String, String> {
    match crate::workload::name_problem(s) {
        Some(p) => Err(p),
        None => Ok(s.to_string()),
    }
}

fn parse_wait(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 30s, 5m)"))?;
    let max = crate::workload::MAX_WAIT;
    if d > max {
        return Err(format!(
            "at most {}m (a start that waits longer for another node is stuck)",
            max.as_secs() / 60
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn release(hold_off: &str) -> Result<Duration, String> {
        Cli::try_parse_from(["dlm-electd", "release", "web", "--hold-off", hold_off])
            .map(|c| match c.command {
                Cmd::Release { hold_off, .. } => hold_off,
                other => panic!("{other:?}"),
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn hold_off_is_a_duration_of_at_most_a_day() {
        assert_eq!(release("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(release("24h"), Ok(MAX_HOLD_OFF));
        let e = release("0s").unwrap_err();
        assert!(
            e.contains("invalid value '0s' for '--hold-off <DURATION>': must be more than 0s"),
            "{e}"
        );
        let e = release("-5s").unwrap_err();
        assert!(e.contains("cannot be negative"), "{e}");
        let e = release("500years").unwrap_err();
        assert!(
            e.contains("invalid value '500years' for '--hold-off <DURATION>': at most 24h"),
            "{e}"
        );
        assert!(release("24h 1s").is_err());
        let e = release("soon").unwrap_err();
        assert!(e.contains("write e.g. 30s, 5m, 1h"), "{e}");
        let default = Cli::try_parse_from(["dlm-electd", "release", "web"]).unwrap();
        assert!(
            matches!(default.command, Cmd::Release { hold_off, .. } if hold_off == Duration::from_secs(10))
        );
    }

    #[test]
    fn watch_interval_is_bounded_and_needs_watch() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from([&["dlm-electd", "status"], args].concat())
                .map(|c| match c.command {
                    Cmd::Status {
                        watch, interval, ..
                    } => (watch, interval),
                    other => panic!("{other:?}"),
                })
                .map_err(|e| e.to_string())
        };
        assert_eq!(parse(&[]), Ok((false, Duration::from_secs(2))));
        assert_eq!(
            parse(&["--watch", "--interval", "500ms"]),
            Ok((true, Duration::from_millis(500)))
        );
        let e = parse(&["--watch", "--interval", "10ms"]).unwrap_err();
        assert!(e.contains("between 200ms and 1h"), "{e}");
        let e = parse(&["--watch", "--interval", "2h"]).unwrap_err();
        assert!(e.contains("between 200ms and 1h"), "{e}");
        let e = parse(&["--interval", "1s"]).unwrap_err();
        assert!(e.contains("--watch"), "{e}");
    }

    #[test]
    fn help_explains_every_argument() {
        Cli::command().debug_assert();
        let help = |args: &[&str]| {
            let mut cmd = Cli::command();
            let sub = args
                .iter()
                .fold(&mut cmd, |c, a| c.find_subcommand_mut(a).unwrap());
            sub.render_long_help().to_string()
        };
        let release = help(&["release"]);
        assert!(release.contains("DURATION like 30s, 5m, 1h"), "{release}");
        assert!(release.contains("The resource to release"), "{release}");
        assert!(help(&["status"]).contains("Print JSON"));
        let top = help(&[]);
        assert!(
            top.contains("-v adds debug lines") && top.contains("-vv"),
            "{top}"
        );
        // No argument anywhere without help text.
        for sub in Cli::command()
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
        {
            for arg in sub.get_arguments() {
                assert!(
                    arg.get_help().is_some(),
                    "{} {} has no help",
                    sub.get_name(),
                    arg.get_id()
                );
            }
        }
    }
}
