//! Command-line arguments.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Check and run Azure App Service / Functions access-restriction lockdowns from ARM templates.
#[derive(Debug, Parser)]
#[command(
    name = "subnetlock",
    version,
    about,
    after_help = "Exit codes: 0 success; 1 `check` found errors or an expectation of `--expect` \
that is not met or not proven, `demo` saw a live result that \
differs from the prediction, or `call --expect-status` got another status; 2 invalid input (an \
invalid expectations file included), a deployment `up` or `demo` does not start because Azure would reject it, `demo` stopped by a \
signal before it compared every probe, `demo` with nothing to compare, `call` without `--expect-status` got a response that no \
site sent, or a failure of the tool itself."
)]
pub struct Cli {
    /// More log output on stderr: -v for decisions, -vv for per-request detail.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Report who can reach whom, which rule decided, and what Azure would reject.
    Check(CheckArgs),
    /// Explain one caller's request to one site, step by step.
    Explain(ExplainArgs),
    /// Run the template's apps locally behind an emulated App Service front end.
    Up(UpArgs),
    /// Send a request into a running `up` as a chosen caller.
    Call(CallArgs),
    /// Check, run and probe an example, then compare prediction and live results.
    Demo(DemoArgs),
}

/// Output formats for data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
    Sarif,
}

/// The template, its parameters, bindings and the deployment scope.
#[derive(Clone, Debug, Args)]
pub struct InputArgs {
    /// A template file, or a directory with a `subnetlock.json` binding file (or an
    /// `azuredeploy.json`).
    pub input: PathBuf,
    /// Use this template instead of the one the binding file names.
    #[arg(long)]
    pub template: Option<PathBuf>,
    /// Parameters file (deploymentParameters.json); JSON with comments is accepted.
    #[arg(long)]
    pub parameters: Option<PathBuf>,
    /// Parameter value as NAME=VALUE; VALUE is read as JSON when it parses, else as a string.
    #[arg(short = 'p', long = "parameter", value_name = "NAME=VALUE")]
    pub parameter: Vec<String>,
    /// Folder of linked templates, as DIR or URI=DIR; repeatable. With URI=DIR, a
    /// `templateLink.uri` that starts with URI is read from the same path below DIR, its query
    /// (SAS token) left out. DIR alone stands for the template's own location: its
    /// `deployment().properties.templateLink.uri` becomes
    /// `https://artifacts.subnetlock.invalid/<template file name>`, which maps to DIR, so the
    /// `_artifactsLocation` convention of the Azure quickstarts links into DIR.
    #[arg(long = "artifacts", value_name = "[URI=]DIR")]
    pub artifacts: Vec<String>,
    /// Binding file that maps site-name patterns to local function folders.
    #[arg(long)]
    pub bindings: Option<PathBuf>,
    /// Subscription id the deployment targets.
    #[arg(long, default_value = "00000000-0000-0000-0000-000000000000")]
    pub subscription_id: String,
    /// Resource group the deployment targets.
    #[arg(long, default_value = "subnetlock")]
    pub resource_group: String,
    /// Location of the resource group (`resourceGroup().location`).
    #[arg(long, default_value = "westeurope")]
    pub location: String,
    /// Azure service tags file (ServiceTags_Public_*.json) to resolve service-tag rules.
    #[arg(long)]
    pub service_tags: Option<PathBuf>,
    /// The template (or Terraform plan) deployed before this one, to check what Azure rejects
    /// when this one is deployed over it; read with the same scope and parameters.
    #[arg(long)]
    pub previous: Option<PathBuf>,
    /// App Service scale unit the plans land on. `older` is one without Premium v2, where
    /// Basic and Standard plans have no regional VNet integration and the deployment fails.
    #[arg(long, value_enum, default_value_t = ScaleUnitArg::Newer)]
    pub scale_unit: ScaleUnitArg,
}

/// `--scale-unit` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScaleUnitArg {
    Newer,
    Older,
}

impl From<ScaleUnitArg> for subnetlock_model::ScaleUnit {
    fn from(value: ScaleUnitArg) -> Self {
        match value {
            ScaleUnitArg::Newer => subnetlock_model::ScaleUnit::Newer,
            ScaleUnitArg::Older => subnetlock_model::ScaleUnit::Older,
        }
    }
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Expectations file: JSON with `{"expect": [{"from", "to", "verdict"}]}` entries that
    /// state who may reach whom. `check` exits with 1 when one is not met or not proven.
    #[arg(long, value_name = "FILE")]
    pub expect: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Caller: `internet[:<address>]`, `subnet:<vnet>/<subnet>`, `app:<site>` or
    /// `servicetag:<tag>`.
    #[arg(long)]
    pub from: String,
    /// Target site name or host name (`<site>.azurewebsites.net`, `<site>.scm.azurewebsites.net`).
    #[arg(long)]
    pub to: String,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Directory for the state file, the local CA and the decision log.
    #[arg(long, default_value = ".subnetlock")]
    pub state_dir: PathBuf,
    /// Port of the plain HTTP front end (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub http_port: u16,
    /// Port of the HTTPS front end (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub https_port: u16,
    /// Skip the binding file's build commands.
    #[arg(long)]
    pub no_build: bool,
    /// Handler executable for sites matching PATTERN, as PATTERN=PATH.
    #[arg(long = "handler", value_name = "PATTERN=PATH")]
    pub handler: Vec<String>,
    /// Worker threads of the emulator's async runtime (control API, egress proxies, handler
    /// supervision); 0 means one per CPU core. The front end has threads of its own, set with
    /// --front-end-threads.
    #[arg(long, default_value_t = 0)]
    pub worker_threads: usize,
    /// Threads of the front end that serves the HTTP and HTTPS listeners, each with its own
    /// single-threaded runtime. From 1 to 1024, one per CPU core by default.
    #[arg(long, value_name = "N", value_parser = parse_front_end_threads)]
    pub front_end_threads: Option<NonZeroUsize>,
}

/// Parses a `--front-end-threads` value. clap adds the option and the value to the error.
fn parse_front_end_threads(text: &str) -> Result<NonZeroUsize, String> {
    let max = subnetlock_emulator::MAX_FRONT_END_THREADS;
    let choose = format!(
        "Choose a count from 1 to {max}, or leave the option out for one thread per CPU core"
    );
    let threads: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("expected a whole number of threads. {choose}"))?;
    let threads = NonZeroUsize::new(threads)
        .ok_or_else(|| format!("the front end needs at least one thread. {choose}"))?;
    if threads.get() > max {
        return Err(format!("the maximum is {max} threads. {choose}"));
    }
    Ok(threads)
}

#[derive(Debug, Args)]
pub struct CallArgs {
    /// Caller: `internet[:<address>]`, `subnet:<vnet>/<subnet>`, `app:<site>` or
    /// `servicetag:<tag>`.
    #[arg(long)]
    pub from: String,
    /// URL, for example https://<site>.azurewebsites.net/api/<function>?code=<key>.
    pub url: String,
    /// HTTP method: GET, or POST when `-d` gives a body, as curl chooses.
    #[arg(short = 'X', long)]
    pub method: Option<String>,
    /// Request header as `Name: value`; repeatable.
    #[arg(short = 'H', long = "header")]
    pub header: Vec<String>,
    /// Request body.
    #[arg(short = 'd', long)]
    pub data: Option<String>,
    /// Print the status line and response headers before the body.
    #[arg(short = 'i', long)]
    pub include: bool,
    /// Exit with 1 unless the response has this status. Without it, `call` exits with 0 for
    /// any response a site sends and with 2 for a response the emulator makes itself, because
    /// the host is not a site or the request stopped before the front end.
    #[arg(long)]
    pub expect_status: Option<u16>,
    /// State directory of the running `up`.
    #[arg(long, default_value = ".subnetlock")]
    pub state_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Directory for the state file, the local CA and the decision log.
    #[arg(long, default_value = ".subnetlock/demo")]
    pub state_dir: PathBuf,
    /// Skip the binding file's build commands.
    #[arg(long)]
    pub no_build: bool,
    /// Handler executable for sites matching PATTERN, as PATTERN=PATH.
    #[arg(long = "handler", value_name = "PATTERN=PATH")]
    pub handler: Vec<String>,
}
