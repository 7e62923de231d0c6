//! Errors of the template language, each pointing at the value in the template.

use std::path::PathBuf;
use std::sync::Arc;

use miette::{MietteError, MietteSpanContents, NamedSource, SourceCode, SourceSpan, SpanContents};

use crate::encoding::EncodingError;
use crate::source::Source;
use crate::SourceLocation;

/// An error found while reading or evaluating a template or a parameters file.
///
/// Every variant except [`Error::Io`], [`Error::Encoding`] and [`Error::Inline`] carries the file, line, column and JSON path of the value
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

    /// The file is neither UTF-8 nor UTF-16 with a byte order mark.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Encoding(Box<EncodingError>),

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
    pub source_code: NamedSource<SourceText>,
    pub span: SourceSpan,
}

/// The text of a file as a diagnostic shows it. A leading byte order mark is left out,
/// because editors do not display it. The column of a span counts characters, as
/// [`SourceLocation::column`] does, where miette counts bytes. Spans stay byte offsets in the
/// text as UTF-8, the byte order mark included, which for a UTF-8 file are its own offsets.
#[derive(Clone, Debug)]
pub struct SourceText(Arc<String>);

impl SourceText {
    /// Returns the length of the byte order mark at the start of the text, 0 when it has none.
    fn byte_order_mark(&self) -> usize {
        if self.0.starts_with('\u{feff}') {
            '\u{feff}'.len_utf8()
        } else {
            0
        }
    }
}

impl SourceCode for SourceText {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let skipped = self.byte_order_mark();
        let body = self.0.get(skipped..).unwrap_or_default();
        let start = span.offset().saturating_sub(skipped).min(body.len());
        let end = (span.offset() + span.len())
            .saturating_sub(skipped)
            .clamp(start, body.len());
        let contents = body.as_bytes().read_span(
            &SourceSpan::new(start.into(), end - start),
            context_lines_before,
            context_lines_after,
        )?;

        // miette gives the column of the data's start, the span's start without context lines
        // and a line's start with them.
        let data_span = contents.span();
        let data_start = data_span.offset();
        let line_start = body
            .get(..data_start)
            .and_then(|before| before.rfind('\n'))
            .map_or(0, |newline| newline + 1);
        let column = body
            .get(line_start..data_start)
            .map_or(contents.column(), |prefix| prefix.chars().count());
        // The data starts after the byte order mark, so its span moves back to file offsets,
        // where the labels are.
        Ok(Box::new(MietteSpanContents::new(
            contents.data(),
            SourceSpan::new((data_span.offset() + skipped).into(), data_span.len()),
            contents.line(),
            column,
            contents.line_count(),
        )))
    }
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
            source_code: NamedSource::new(name, SourceText(Arc::clone(&source.text)))
                .with_language("json"),
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

    /// Returns the located payload, or `None` for [`Error::Io`], [`Error::Encoding`] and
    /// [`Error::Inline`].
    pub fn located_payload(&self) -> Option<&Located> {
        match self {
            Error::Io { .. } | Error::Encoding(_) | Error::Inline { .. } => None,
            Error::Syntax(located)
            | Error::Expression(located)
            | Error::Function(located)
            | Error::Parameter(located)
            | Error::Cycle(located)
            | Error::Template(located) => Some(located),
        }
    }

    /// Returns the location the error points at, or `None` for [`Error::Io`],
    /// [`Error::Encoding`] and [`Error::Inline`].
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
            Error::Encoding(error) => Some(error.help_text()),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the span of `needle` in `text` with `context` lines before and after it, and
    /// returns the data, its offset, and its line and column.
    fn read(text: &str, needle: &str, context: usize) -> (String, usize, usize, usize) {
        let source = SourceText(Arc::new(text.to_owned()));
        let offset = text.find(needle).unwrap();
        let contents = source
            .read_span(
                &SourceSpan::new(offset.into(), needle.len()),
                context,
                context,
            )
            .unwrap();
        let data = String::from_utf8(contents.data().to_vec()).unwrap();
        (
            data,
            contents.span().offset(),
            contents.line(),
            contents.column(),
        )
    }

    #[test]
    fn source_text_leaves_out_byte_order_mark() {
        let text = "\u{feff}{\"a\": x}";

        // With a context line, the data is the whole line, at its offset in the file after
        // the three bytes of the mark.
        assert_eq!(read(text, "x", 1), ("{\"a\": x}".to_owned(), 3, 0, 0));
        // Without one, the data is the span, and its column is the editor's.
        assert_eq!(read(text, "x", 0), ("x".to_owned(), 9, 0, 6));
    }

    #[test]
    fn source_text_counts_characters_in_column() {
        let text = "{\n\"é\": x}";

        assert_eq!(read(text, "x", 0), ("x".to_owned(), 8, 1, 5));
        assert_eq!(read(text, "x", 1), (text.to_owned(), 0, 0, 0));
    }
}
