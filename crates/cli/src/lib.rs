//! The commands of the `subnetlock` binary.
//!
//! `check` and `explain` read a template offline and report who can reach whom. `up` runs the
//! template's apps locally behind the emulated front end, and `call` sends a request into a
//! running emulator as a chosen caller. `demo` does all of it for one example and compares what
//! `check` predicted with what `up` did. Data goes to stdout and messages to stderr.
//!
//! Exit codes:
//! - 0: success.
//! - 1: findings of severity error or an expectation not met or not proven (`check`), a
//!   mismatch between prediction and live result (`demo`), or an unexpected status
//!   (`call --expect-status`).
//! - 2: invalid input, a response that no site sent (`call` without `--expect-status`), a
//!   `demo` with nothing to compare, or a failure of the tool itself.

/// Writes a line to stdout, ignoring write errors: a closed pipe (`subnetlock check | head`)
/// ends the output, not the process.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// Writes to stdout without a newline, ignoring write errors like [`out!`].
macro_rules! out_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// Writes a line to stderr, ignoring write errors: a closed or full stderr
/// (`subnetlock check x 2>&- | true`, `2>/dev/full`) loses the message but keeps the exit code,
/// where `eprintln!` would panic and exit with 101.
macro_rules! err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

mod args;
mod call;
mod check;
mod demo;
mod expect;
mod function_apps;
mod inputs;
mod up;

pub use args::{Cli, Command, Format};
pub use demo::{run_probes, ProbeResult};
pub use inputs::{resolve_inputs, Inputs};

/// Exit code for success.
pub const EXIT_OK: i32 = 0;
/// Exit code for findings, mismatches or unexpected statuses.
pub const EXIT_FINDINGS: i32 = 1;
/// Exit code for invalid input or a tool failure.
pub const EXIT_ERROR: i32 = 2;

/// Runs one parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Command::Up(args) = &cli.command {
        if args.worker_threads > 0 {
            builder.worker_threads(args.worker_threads);
        }
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            err!("error: cannot start the async runtime: {error}");
            return EXIT_ERROR;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Check(args) => check::check(args),
            Command::Explain(args) => check::explain(args),
            Command::Up(args) => up::up(args).await,
            Command::Call(args) => call::call(args).await,
            Command::Demo(args) => demo::demo(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(report) => {
            err!("{report:?}");
            EXIT_ERROR
        }
    }
}

/// Sends `tracing` events to stderr: warnings by default, decisions with `-v`, per-request
/// detail with `-vv`. `RUST_LOG` overrides.
pub fn init_logging(verbose: u8) {
    use std::io::IsTerminal;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal())
        .try_init();
}
