use clap::Parser;
use dlm_electd::cli::{Cli, Cmd};
use dlm_electd::config::{self, EXIT_CONFIG};
use dlm_electd::control::{self, Request};
use dlm_electd::{daemon, logging};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.verbose);
    if let Cmd::KeepLocks { fd, node } = cli.command {
        // Plain blocking code with a runtime of its own for the release
        // actions: see lock::keeper.
        std::process::exit(dlm_electd::lock::keeper::main(fd, node));
    }
    let code = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(dispatch(cli)),
        Err(e) => {
            eprintln!("dlm-electd: cannot start the runtime: {e}");
            1
        }
    };
    // A lock call stuck in the kernel must not keep the process alive: the
    // runtime's blocking threads are not waited for.
    std::process::exit(code)
}

async fn dispatch(cli: Cli) -> i32 {
    let load = || match daemon::load_checked(&cli.config) {
        Ok(c) => Ok(c),
        Err(e) => {
            eprintln!("{e}");
            Err(EXIT_CONFIG)
        }
    };
    match cli.command {
        Cmd::CheckConfig => match load() {
            Ok(c) => {
                println!(
                    "{}: ok, {} resource(s), {:?} backend",
                    cli.config.display(),
                    c.resources.len(),
                    c.lock.backend
                );
                0
            }
            Err(code) => code,
        },
        Cmd::Run => match load() {
            Ok(c) => daemon::run(cli.config.clone(), c).await,
            Err(code) => code,
        },
        Cmd::Cleanup => match load() {
            Ok(c) => daemon::cleanup(c).await,
            Err(code) => code,
        },
        Cmd::Status { json } => {
            let dir = runtime_dir(&cli.config);
            match control::call(&dir, &Request::Status, Duration::from_secs(10)).await {
                Ok(control::Reply {
                    status: Some(s), ..
                }) => {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
                    } else {
                        print_table(&s);
                    }
                    0
                }
                Ok(r) => {
                    eprintln!(
                        "dlm-electd: {}",
                        r.error.unwrap_or_else(|| "empty answer".into())
                    );
                    1
                }
                Err(e) => {
                    eprintln!("dlm-electd: {e}");
                    1
                }
            }
        }
        Cmd::KeepLocks { .. } => unreachable!("handled in main"),
        Cmd::Release { name, hold_off } => {
            let dir = runtime_dir(&cli.config);
            let req = Request::Release {
                resource: name.clone(),
                hold_off_ms: hold_off.as_millis() as u64,
            };
            // Release actions have their own timeouts; wait longer than any sane one.
            match control::call(&dir, &req, Duration::from_secs(600)).await {
                Ok(control::Reply { error: None, .. }) => {
                    println!(
                        "{name}: released; not competing for {}",
                        humantime::format_duration(hold_off)
                    );
                    0
                }
                Ok(control::Reply { error: Some(e), .. }) | Err(e) => {
                    eprintln!("dlm-electd: release {name}: {e}");
                    1
                }
            }
        }
    }
}

/// Clients find the daemon through the runtime dir named in the config. The
/// config may be mid-edit and invalid while the daemon runs on the old one,
/// so only that one key is read, leniently.
fn runtime_dir(path: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|t| {
            t.get("daemon")?
                .get("runtime_dir")?
                .as_str()
                .map(Into::into)
        })
        .unwrap_or_else(|| config::validate::DEFAULT_RUNTIME_DIR.into())
}

fn print_table(s: &control::StatusReport) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    println!("node: {}", s.node);
    let w = s
        .resources
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(8)
        .max(8);
    println!(
        "{:<w$}  {:<9}  {:>10}  LAST ERROR",
        "RESOURCE", "STATE", "FOR"
    );
    for r in &s.resources {
        let age = Duration::from_secs(now.saturating_sub(r.since_ms) / 1000);
        println!(
            "{:<w$}  {:<9}  {:>10}  {}",
            r.name,
            r.state.as_str(),
            humantime::format_duration(age).to_string(),
            r.last_error.as_deref().unwrap_or("-")
        );
    }
}
