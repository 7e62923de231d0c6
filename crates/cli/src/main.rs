//! The `subnetlock` binary: parses arguments, runs a command, exits with its code.

use clap::Parser;

// The front end of `up` allocates small buffers for every proxied request. In a `perf`
// profile of `bench/frontend.sh`, glibc's allocator took about a tenth of its CPU time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = subnetlock::Cli::parse();
    subnetlock::init_logging(cli.verbose);
    let code = subnetlock::run(cli);
    std::process::exit(code);
}
