use clap::Parser;
use dlm_electd::cli::Cli;
use dlm_electd::{commands, logging};

fn main() {
    let cli = Cli::parse();
    logging::init(cli.verbose);
    // exit() rather than returning: a lock call stuck in the kernel must not
    // keep the process alive, and the runtime's blocking threads are not
    // waited for.
    std::process::exit(commands::dispatch(cli))
}
