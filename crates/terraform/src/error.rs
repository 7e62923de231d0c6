//! Errors that stop a Terraform plan from being read at all.

use std::path::PathBuf;

use miette::{NamedSource, SourceSpan};

/// A plan file that cannot be read, is not JSON, or is not a Terraform plan.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    #[error("cannot read Terraform plan `{path}`")]
    #[diagnostic(help(
        "check the path; create the file with `terraform show -json <planfile> > plan.json`"
    ))]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    /// The file is neither UTF-8 nor UTF-16 with a byte order mark.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Encoding(#[from] subnetlock_arm::EncodingError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    Syntax(Box<SyntaxError>),

    #[error("`{file}` is not a Terraform plan: {reason}")]
    #[diagnostic(help("pass the output of `terraform show -json <planfile>`; `terraform show -json` without a plan file prints state, which has no `planned_values`"))]
    NotAPlan { file: PathBuf, reason: String },
}

/// Plan text that is not valid JSON, with the place serde_json stopped. `source_code` is the
/// text without a leading byte order mark, and `line`, `column` and `span` count from its start.
/// `column` counts characters, and `span` counts bytes of the text as UTF-8.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("invalid JSON in Terraform plan `{file}` at line {line}, column {column}: {message}")]
#[diagnostic(help(
    "write the plan again with `terraform show -json <planfile>`; a hand-edited plan must be strict JSON"
))]
pub struct SyntaxError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
    #[source_code]
    pub source_code: NamedSource<String>,
    #[label("here")]
    pub span: SourceSpan,
}
