//! Errors of the template language, each pointing at the value in the template.

use std::path::PathBuf;
use std::sync::Arc;

use miette::{NamedSource, SourceSpan};

use crate::source::Source;
use crate::SourceLocation;

/// An error found while reading or evaluating a template or a parameters file.
///
/// Every variant except [`Error::Io`] and [`Error::Inline`] carries the file, line, column and JSON path of the value
/// at fault, and the source text so that `miette` can underline it.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read `{}`", path.display())]
    #[diagnostic(code(arm::io), help("check that the file exists and is readable"))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The text is not JSON (comments are allowed).
    #[error(transparent)]
    #[diagnostic(transparent)]
    Syntax(Box<Located>),

    /// A template expression (`"[...]"`) does not parse.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Expression(Box<Located>),

    /// A function was called with wrong arguments, or failed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Function(Box<Located>),

    /// A parameter has no value, or a value its declaration does not allow.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Parameter(Box<Located>),

    /// A parameter value given inline (`-p NAME=VALUE`), which has no file to point at, is
    /// invalid for the template.
    #[error("{message}")]
    #[diagnostic(code(arm::parameter))]
    Inline {
        message: String,
        #[help]
        help: String,
    },

    /// Variables, resources or `dependsOn` entries refer to each other in a cycle.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Cycle(Box<Located>),

    /// The template structure is invalid (a wrong type for a section, a bad copy loop, ...).
    #[error(transparent)]
    #[diagnostic(transparent)]
    Template(Box<Located>),
}

/// The common payload of a located error.
#[derive(Debug)]
pub struct Located {
    /// Stable diagnostic code such as `arm::expression`.
    pub code: &'static str,
    /// Lowercase one-line description naming the value in backticks.
    pub message: String,
    /// Next step for the user.
    pub help: String,
    pub location: SourceLocation,
    pub source_code: NamedSource<Arc<String>>,
    pub span: SourceSpan,
}

impl std::ops::Deref for Located {
    type Target = SourceLocation;

    fn deref(&self) -> &SourceLocation {
        &self.location
    }
}

/// The variant of a located error, used to build one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    Syntax,
    Expression,
    Function,
    Parameter,
    Cycle,
    Template,
}

impl Error {
    pub(crate) fn located(
        kind: ErrorKind,
        message: String,
        help: String,
        source: &Source,
        location: SourceLocation,
    ) -> Self {
        let name = source.name.display().to_string();
        let code = match kind {
            ErrorKind::Syntax => "arm::syntax",
            ErrorKind::Expression => "arm::expression",
            ErrorKind::Function => "arm::function",
            ErrorKind::Parameter => "arm::parameter",
            ErrorKind::Cycle => "arm::cycle",
            ErrorKind::Template => "arm::template",
        };
        let located = Box::new(Located {
            code,
            message,
            help,
            span: SourceSpan::new(location.offset.into(), location.length),
            source_code: NamedSource::new(name, Arc::clone(&source.text)).with_language("json"),
            location,
        });
        match kind {
            ErrorKind::Syntax => Error::Syntax(located),
            ErrorKind::Expression => Error::Expression(located),
            ErrorKind::Function => Error::Function(located),
            ErrorKind::Parameter => Error::Parameter(located),
            ErrorKind::Cycle => Error::Cycle(located),
            ErrorKind::Template => Error::Template(located),
        }
    }

    /// Returns the located payload, or `None` for [`Error::Io`] and [`Error::Inline`].
    pub fn located_payload(&self) -> Option<&Located> {
        match self {
            Error::Io { .. } | Error::Inline { .. } => None,
            Error::Syntax(located)
            | Error::Expression(located)
            | Error::Function(located)
            | Error::Parameter(located)
            | Error::Cycle(located)
            | Error::Template(located) => Some(located),
        }
    }

    /// Returns the location the error points at, or `None` for [`Error::Io`] and
    /// [`Error::Inline`].
    pub fn location(&self) -> Option<&SourceLocation> {
        self.located_payload().map(|located| &located.location)
    }

    /// Returns the message without the location suffix.
    pub fn message(&self) -> String {
        match self.located_payload() {
            Some(located) => located.message.clone(),
            None => self.to_string(),
        }
    }

    /// Returns the `help` text shown under the message.
    pub fn help_text(&self) -> Option<&str> {
        match self {
            Error::Inline { help, .. } => Some(help),
            _ => self.located_payload().map(|located| located.help.as_str()),
        }
    }
}

// The located variants forward their diagnostic to this payload (`diagnostic(transparent)`).
impl miette::Diagnostic for Located {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        Some(Box::new(self.code))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        Some(Box::new(&self.help))
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source_code)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        Some(Box::new(std::iter::once(
            miette::LabeledSpan::new_with_span(Some("here".to_owned()), self.span),
        )))
    }
}

impl std::fmt::Display for Located {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {}", self.message, self.location)
    }
}

impl std::error::Error for Located {}
