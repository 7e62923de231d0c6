//! The `subnetlock` binary: parses arguments, runs a command, exits with its code.

use clap::Parser;

// The front end of `up` allocates small buffers for every proxied request. In a `perf`
// profile of `bench/frontend.sh`, glibc's allocator took about a tenth of its CPU time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // Piped or captured, an error report is not wrapped at 80 columns, so that the paths and
    // names in it can be copied whole. A terminal keeps miette's wrapping to its width.
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let _ = miette::set_hook(Box::new(|_| {
            Box::new(miette::MietteHandlerOpts::new().wrap_lines(false).build())
        }));
    }
    let cli = subnetlock::Cli::parse();
    subnetlock::init_logging(cli.verbose);
    let code = subnetlock::run(cli);
    std::process::exit(code);
}
