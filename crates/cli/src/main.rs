//! The `subnetlock` binary: parses arguments, runs a command, exits with its code.

use clap::Parser;

fn main() {
    let cli = subnetlock::Cli::parse();
    subnetlock::init_logging(cli.verbose);
    let code = subnetlock::run(cli);
    std::process::exit(code);
}
