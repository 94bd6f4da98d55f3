use clap::Parser;
use dlm_electd::cli::{Cli, Cmd};
use dlm_electd::{commands, daemon, logging, memory};

fn main() {
    // Before any thread exists: see memory.rs for why and what it saved.
    memory::configure();
    let cli = Cli::parse();
    if let Cmd::Run = cli.command {
        // Before anything that can take time: see catch_signals_early.
        daemon::catch_signals_early();
    }
    logging::init(cli.verbose);
    // exit() rather than returning: a lock call stuck in the kernel must not
    // keep the process alive, and the runtime's blocking threads are not
    // waited for.
    std::process::exit(commands::dispatch(cli))
}
