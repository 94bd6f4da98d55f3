use clap::Parser;
use dlm_electd::cli::{Cli, Cmd};
use dlm_electd::{commands, daemon, fdlimit, logging, memory};

fn main() {
    // Before any thread exists: see memory.rs for why and what it saved.
    memory::configure();
    let cli = Cli::parse();
    if let Cmd::Run = cli.command {
        // Before anything that can take time: see catch_signals_early.
        daemon::catch_signals_early();
    }
    logging::init(cli.verbose);
    if let Cmd::Run = cli.command
        && let Some((before, after)) = fdlimit::raise()
    {
        tracing::debug!("open-file limit raised from {before} to {after} (one fd per lock)");
    }
    // exit() rather than returning: a lock call stuck in the kernel must not
    // keep the process alive, and the runtime's blocking threads are not
    // waited for.
    std::process::exit(commands::dispatch(cli))
}
