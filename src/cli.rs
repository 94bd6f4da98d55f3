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
    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the daemon in the foreground.
    Run,
    /// Validate the configuration (exit 78 if invalid).
    CheckConfig,
    /// Show the running daemon's resources.
    Status {
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Planned switchover: the master releases NAME and stays out for the hold-off.
    Release {
        /// The resource to hand over.
        name: String,
        /// How long this node stays out of the election for NAME afterwards.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        hold_off: Duration,
    },
    /// Run every release action and clear leftover lock state (after a crash).
    Cleanup,
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
