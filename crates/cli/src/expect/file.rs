//! Reads an expectations file: JSON with comments, each expectation kept with its position.
//!
//! The template reader of `subnetlock-arm`, which keeps spans, is private to that crate. This
//! reader blanks out comments (keeping every byte offset) and lets serde_json parse the rest.
//! serde_json's `RawValue` borrows from the text it parses, so the address of a raw value
//! inside that text gives its byte offset and with it a line and column.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::value::RawValue;
use subnetlock_arm::SourceLocation;

/// The shape of a valid file, shown in the help of syntax errors.
const FILE_SHAPE: &str = r#"an expectations file is {"expect": [{"from": "<caller>", "to": "<site or host name>", "verdict": "allow"}]}, with "deny" for a path that must stay closed"#;

/// The caller forms, shown in the help of caller errors.
pub(crate) const CALLER_FORMS: &str = "write `internet`, `internet:<address>`, `subnet:<vnet>/<subnet>`, `app:<site>` or `servicetag:<tag>`, with `*` for any run of characters in a name";

/// The expectations of one file, in file order.
#[derive(Debug)]
pub struct ExpectationFile {
    pub path: PathBuf,
    pub expectations: Vec<Expectation>,
}

/// One `{"from", "to", "verdict"}` entry.
#[derive(Debug)]
pub struct Expectation {
    /// The `from` text as written.
    pub from: String,
    pub caller: CallerPattern,
    /// The `to` text as written.
    pub to: String,
    pub target: TargetPattern,
    pub verdict: ExpectedVerdict,
    /// Position of the entry's object, for SARIF results.
    pub location: SourceLocation,
    /// Positions of the `from` and `to` values, for errors about what they match.
    pub from_at: Position,
    pub to_at: Position,
}

/// The verdict an expectation requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectedVerdict {
    /// The caller reaches the site: the front end lets the request through.
    Allow,
    /// The caller does not reach the site: the front end denies the request, or the request
    /// never gets to the front end.
    Deny,
}

impl ExpectedVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            ExpectedVerdict::Allow => "allow",
            ExpectedVerdict::Deny => "deny",
        }
    }
}

/// A `from` value, checked for its form but not yet matched against a deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallerPattern {
    /// `internet` alone: every internet caller the reachability matrix lists.
    AnyInternet,
    /// `internet:<address>`.
    Internet(IpAddr),
    /// `subnet:`, `app:` or `servicetag:` with a name that may contain `*`.
    Named { kind: NamedCaller, pattern: String },
}

/// The caller kinds that are written with a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamedCaller {
    Subnet,
    App,
    ServiceTag,
}

impl NamedCaller {
    pub fn prefix(self) -> &'static str {
        match self {
            NamedCaller::Subnet => "subnet",
            NamedCaller::App => "app",
            NamedCaller::ServiceTag => "servicetag",
        }
    }
}

/// A `to` value: a site name pattern (main or scm site) or a host name pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetPattern {
    /// `<site>` for the main site, `<site>.scm` for its scm site.
    Site {
        pattern: String,
        kind: subnetlock_access::SiteKind,
    },
    /// `<site>.azurewebsites.net`, `<site>.scm.azurewebsites.net` or a URL on such a host.
    Host(String),
}

/// A 1-based line and column (in characters) in the expectations file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// Errors of an expectations file. Every variant but `Read` names the position of the value
/// at fault.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ExpectationsError {
    #[error("cannot read expectations file `{}`", path.display())]
    #[diagnostic(help("check the path given to --expect"))]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: the expectations file is not valid UTF-8", path.display())]
    #[diagnostic(help("save the file as UTF-8"))]
    Encoding {
        path: PathBuf,
        line: usize,
        column: usize,
    },
    #[error("{}:{line}:{column}: invalid expectations file: {message}", path.display())]
    #[diagnostic(help("{FILE_SHAPE}"))]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}: the expectations file has no expectations", path.display())]
    #[diagnostic(help("{FILE_SHAPE}"))]
    Empty { path: PathBuf },
    #[error("{}:{line}:{column}: invalid verdict {value}", path.display())]
    #[diagnostic(help("write \"allow\" or \"deny\""))]
    Verdict {
        path: PathBuf,
        line: usize,
        column: usize,
        /// The value as written, JSON quotes included.
        value: String,
    },
    #[error("{}:{line}:{column}: invalid caller {value}", path.display())]
    #[diagnostic(help("{help}"))]
    Caller {
        path: PathBuf,
        line: usize,
        column: usize,
        value: String,
        help: String,
    },
    #[error("{}:{line}:{column}: invalid target {value}", path.display())]
    #[diagnostic(help(
        "write a site name such as `function-app-b-*`, `<site>.scm` for its scm site, or a host name such as `<site>.scm.azurewebsites.net`"
    ))]
    Target {
        path: PathBuf,
        line: usize,
        column: usize,
        value: String,
    },
    #[error("{}:{line}:{column}: `{value}` matches no {kind} in this deployment", path.display())]
    #[diagnostic(help("{help}"))]
    NoMatch {
        path: PathBuf,
        line: usize,
        column: usize,
        value: String,
        /// `site`, `subnet`, `app`, `service tag` or `caller`.
        kind: &'static str,
        help: String,
    },
}

/// The file as serde reads it; `RawValue`s keep the position of each value.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object with an `expect` array")]
struct RawFile<'a> {
    #[serde(borrow)]
    expect: Vec<RawExpectation<'a>>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an object with `from`, `to` and `verdict`"
)]
struct RawExpectation<'a> {
    #[serde(borrow)]
    from: &'a RawValue,
    #[serde(borrow)]
    to: &'a RawValue,
    #[serde(borrow)]
    verdict: &'a RawValue,
}

/// The `expect` entries as raw values, for the position of each object.
#[derive(Deserialize)]
struct RawEntries<'a> {
    #[serde(borrow)]
    expect: Vec<&'a RawValue>,
}

impl ExpectationFile {
    /// Reads and checks `path`: its syntax, fields, verdicts and the form of each caller and
    /// target. Whether the patterns match anything is checked against a deployment later.
    pub fn read(path: &Path) -> Result<Self, ExpectationsError> {
        let bytes = std::fs::read(path).map_err(|source| ExpectationsError::Read {
            path: path.to_owned(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|error| {
            let valid = &error.as_bytes()[..error.utf8_error().valid_up_to()];
            // The valid prefix is UTF-8, so its lines and characters can be counted.
            let prefix = String::from_utf8_lossy(valid);
            let (line, column) = line_column(&prefix, prefix.len(), 0);
            ExpectationsError::Encoding {
                path: path.to_owned(),
                line,
                column,
            }
        })?;
        Self::parse(path, &text)
    }

    /// Checks `text` as the contents of `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ExpectationsError> {
        let bom = if text.starts_with('\u{feff}') {
            '\u{feff}'.len_utf8()
        } else {
            0
        };
        let text = blank_comments(text);
        let syntax = |error: serde_json::Error| {
            // serde_json ends its message with the position, which the error shows in front.
            let suffix = format!(" at line {} column {}", error.line(), error.column());
            let message = error.to_string();
            // serde_json counts columns in bytes; the other errors count characters.
            let offset = byte_offset(&text, error.line(), error.column());
            let (line, column) = line_column(&text, offset, bom);
            ExpectationsError::Syntax {
                path: path.to_owned(),
                line,
                column,
                message: message.strip_suffix(&suffix).unwrap_or(&message).to_owned(),
            }
        };
        let file: RawFile<'_> = serde_json::from_str(&text).map_err(syntax)?;
        let entries: RawEntries<'_> = serde_json::from_str(&text).map_err(syntax)?;
        if file.expect.is_empty() {
            return Err(ExpectationsError::Empty {
                path: path.to_owned(),
            });
        }

        let mut expectations = Vec::new();
        for (index, (raw, entry)) in file.expect.iter().zip(&entries.expect).enumerate() {
            let reader = Reader {
                path,
                text: &text,
                bom,
            };
            expectations.push(reader.expectation(index, raw, entry)?);
        }
        Ok(ExpectationFile {
            path: path.to_owned(),
            expectations,
        })
    }
}

/// Turns raw values of one text into checked expectations.
struct Reader<'a> {
    path: &'a Path,
    /// The text the raw values borrow from, with comments blanked.
    text: &'a str,
    /// Length in bytes of the byte order mark the text starts with, blanked to spaces.
    bom: usize,
}

impl Reader<'_> {
    fn expectation(
        &self,
        index: usize,
        raw: &RawExpectation<'_>,
        entry: &RawValue,
    ) -> Result<Expectation, ExpectationsError> {
        let from_at = self.position(raw.from);
        let to_at = self.position(raw.to);
        let verdict_at = self.position(raw.verdict);

        let verdict = match self
            .string(raw.verdict)
            .as_deref()
            .map(str::to_ascii_lowercase)
        {
            Some(text) if text == "allow" => ExpectedVerdict::Allow,
            Some(text) if text == "deny" => ExpectedVerdict::Deny,
            _ => {
                return Err(ExpectationsError::Verdict {
                    path: self.path.to_owned(),
                    line: verdict_at.line,
                    column: verdict_at.column,
                    value: raw.verdict.get().to_owned(),
                })
            }
        };

        let caller_error = |help: String| ExpectationsError::Caller {
            path: self.path.to_owned(),
            line: from_at.line,
            column: from_at.column,
            value: raw.from.get().to_owned(),
            help,
        };
        let from = self
            .string(raw.from)
            .ok_or_else(|| caller_error(CALLER_FORMS.to_owned()))?;
        let caller = parse_caller(&from).map_err(caller_error)?;

        let to = self.string(raw.to).unwrap_or_default();
        let target = parse_target(&to).ok_or_else(|| ExpectationsError::Target {
            path: self.path.to_owned(),
            line: to_at.line,
            column: to_at.column,
            value: raw.to.get().to_owned(),
        })?;

        let start = self.offset(entry);
        let (line, column) = line_column(self.text, start, self.bom);
        Ok(Expectation {
            from,
            caller,
            to,
            target,
            verdict,
            location: SourceLocation {
                file: self.path.to_owned(),
                line,
                column,
                json_path: format!("$.expect[{index}]"),
                offset: start,
                length: entry.get().len(),
            },
            from_at,
            to_at,
        })
    }

    /// Returns the string a raw value holds, or `None` when it is not a string.
    fn string(&self, raw: &RawValue) -> Option<String> {
        serde_json::from_str::<String>(raw.get()).ok()
    }

    /// Returns the byte offset of `raw` in the text. serde_json hands out raw values that
    /// borrow from the text parsed, so the address difference is the offset.
    fn offset(&self, raw: &RawValue) -> usize {
        let start = raw.get().as_ptr() as usize;
        start
            .saturating_sub(self.text.as_ptr() as usize)
            .min(self.text.len())
    }

    fn position(&self, raw: &RawValue) -> Position {
        let (line, column) = line_column(self.text, self.offset(raw), self.bom);
        Position { line, column }
    }
}

/// Checks the form of a `from` value. Returns the help text of the error otherwise.
fn parse_caller(text: &str) -> Result<CallerPattern, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("internet") {
        return Ok(CallerPattern::AnyInternet);
    }
    let Some((kind, value)) = text.split_once(':') else {
        return Err(CALLER_FORMS.to_owned());
    };
    let kind = match kind.to_ascii_lowercase().as_str() {
        "internet" => {
            let address = value.trim_start_matches('[').trim_end_matches(']');
            return address
                .parse()
                .map(CallerPattern::Internet)
                .map_err(|_| {
                    "give one IPv4 or IPv6 address, for example `internet:203.0.113.7`, or write `internet` alone for every internet caller the matrix lists".to_owned()
                });
        }
        "subnet" => NamedCaller::Subnet,
        "app" => NamedCaller::App,
        "servicetag" => NamedCaller::ServiceTag,
        _ => return Err(CALLER_FORMS.to_owned()),
    };
    if value.trim().is_empty() {
        return Err(format!(
            "name the {} after `{}:`; {CALLER_FORMS}",
            match kind {
                NamedCaller::Subnet => "subnet",
                NamedCaller::App => "site",
                NamedCaller::ServiceTag => "service tag",
            },
            kind.prefix()
        ));
    }
    Ok(CallerPattern::Named {
        kind,
        pattern: value.trim().to_owned(),
    })
}

/// Reads a `to` value: a URL names its host, a text with a dot is a host name, except
/// that `<site>.scm` names the scm site of `<site>`. A site name is the first label of its
/// host name `<site>.azurewebsites.net`, so it has no dot and the forms cannot be confused.
fn parse_target(text: &str) -> Option<TargetPattern> {
    let host = crate::check::target_host(text);
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return None;
    }
    if let Some(site) = host.strip_suffix(".scm") {
        if site.is_empty() || site.contains('.') {
            return None;
        }
        return Some(TargetPattern::Site {
            pattern: site.to_owned(),
            kind: subnetlock_access::SiteKind::Scm,
        });
    }
    if host.contains('.') {
        return Some(TargetPattern::Host(host));
    }
    Some(TargetPattern::Site {
        pattern: host,
        kind: subnetlock_access::SiteKind::Main,
    })
}

/// Replaces `//` and `/* */` comments and a leading byte order mark with spaces, keeping line
/// breaks, so that every byte offset stays where it was. Azure accepts comments in templates,
/// and expectations files are read the same way.
fn blank_comments(text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    if bytes.starts_with("\u{feff}".as_bytes()) {
        bytes[..3].fill(b' ');
    }
    let mut index = 0;
    let mut in_string = false;
    while index < bytes.len() {
        let byte = bytes[index];
        if in_string {
            match byte {
                b'\\' => index += 1,
                b'"' => in_string = false,
                _ => {}
            }
            index += 1;
            continue;
        }
        match (byte, bytes.get(index + 1)) {
            (b'"', _) => {
                in_string = true;
                index += 1;
            }
            (b'/', Some(b'/')) => {
                while index < bytes.len() && bytes[index] != b'\n' {
                    bytes[index] = b' ';
                    index += 1;
                }
            }
            (b'/', Some(b'*')) => {
                let end = bytes[index + 2..]
                    .windows(2)
                    .position(|pair| pair == b"*/")
                    .map_or(bytes.len(), |at| index + 2 + at + 2);
                for byte in &mut bytes[index..end] {
                    if *byte != b'\n' && *byte != b'\r' {
                        *byte = b' ';
                    }
                }
                index = end;
            }
            _ => index += 1,
        }
    }
    // Only whole comments, which end at ASCII bytes, and the byte order mark were replaced,
    // so the bytes are still UTF-8.
    String::from_utf8(bytes)
        .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
}

/// Returns the 1-based line and column (in characters) of a byte offset. The first `bom`
/// bytes, a byte order mark blanked to spaces, take no column, as editors do not show the mark.
fn line_column(text: &str, offset: usize, bom: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |at| at + 1).max(bom);
    let column = before
        .get(line_start..)
        .map_or(0, |rest| rest.chars().count())
        + 1;
    (line, column)
}

/// Returns the byte offset of serde_json's 1-based line and byte column, which may be 0 right
/// after a line break.
fn byte_offset(text: &str, line: usize, column: usize) -> usize {
    let line_start = if line <= 1 {
        0
    } else {
        text.match_indices('\n')
            .nth(line - 2)
            .map_or(text.len(), |(at, _)| at + 1)
    };
    let offset = (line_start + column.saturating_sub(1)).min(text.len());
    // A column inside a multi-byte character is moved back to the character's start.
    (0..=offset)
        .rev()
        .find(|at| text.is_char_boundary(*at))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_comments_keeps_offsets() {
        let text = "{ // note \"x\"\n \"a\": \"//b\", /* c\n d */ \"e\": 1 }";
        let blanked = blank_comments(text);
        assert_eq!(blanked.len(), text.len());
        assert_eq!(blanked.matches('\n').count(), 2);
        assert!(blanked.contains("\"//b\""), "{blanked}");
        assert!(!blanked.contains("note"), "{blanked}");
        assert!(!blanked.contains('d'), "{blanked}");
        let value: serde_json::Value = serde_json::from_str(&blanked).unwrap();
        assert_eq!(value["e"], 1);
    }

    #[test]
    fn parse_caller_forms() {
        assert_eq!(parse_caller("internet"), Ok(CallerPattern::AnyInternet));
        assert_eq!(
            parse_caller("internet:[2001:db8::5]"),
            Ok(CallerPattern::Internet("2001:db8::5".parse().unwrap()))
        );
        assert!(parse_caller("internet:*").is_err());
        assert!(parse_caller("vm:x").is_err());
        assert!(parse_caller("app:").is_err());
        assert_eq!(
            parse_caller("App:function-app-a-*"),
            Ok(CallerPattern::Named {
                kind: NamedCaller::App,
                pattern: "function-app-a-*".to_owned()
            })
        );
    }

    #[test]
    fn parse_target_forms() {
        use subnetlock_access::SiteKind;
        let site = |pattern: &str, kind| {
            Some(TargetPattern::Site {
                pattern: pattern.to_owned(),
                kind,
            })
        };
        assert_eq!(parse_target("B-*"), site("b-*", SiteKind::Main));
        assert_eq!(parse_target("b-*.scm"), site("b-*", SiteKind::Scm));
        assert_eq!(
            parse_target("https://b-1.scm.azurewebsites.net/api/f"),
            Some(TargetPattern::Host("b-1.scm.azurewebsites.net".to_owned()))
        );
        assert_eq!(parse_target(""), None);
        assert_eq!(parse_target(".scm"), None);
    }

    #[test]
    fn positions_skip_byte_order_mark() {
        let text = "\u{feff}{\"expect\": [{\"from\": \"internet\", \"to\": \"b\", \"verdict\": \"deny\"}]}";
        let file = ExpectationFile::parse(Path::new("e.json"), text).unwrap();
        let first = &file.expectations[0];
        assert_eq!((first.location.line, first.location.column), (1, 13));
        assert_eq!(first.from_at.column, 22);

        let invalid =
            "\u{feff}{\"expect\": [{\"from\": \"internet\", \"to\": \"b\", \"verdict\": 1}]}";
        let error = ExpectationFile::parse(Path::new("e.json"), invalid).unwrap_err();
        assert!(
            matches!(
                error,
                ExpectationsError::Verdict {
                    line: 1,
                    column: 56,
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn syntax_error_column_counts_characters() {
        // Five two-byte characters before the error: serde_json's byte column is 5 too far.
        let text = "{ \"expect\": [ { \"from\": \"\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\", \"to\": \"x\" \"verdict\": \"deny\" } ] }";
        let error = ExpectationFile::parse(Path::new("e.json"), text).unwrap_err();
        assert!(
            matches!(
                error,
                ExpectationsError::Syntax {
                    line: 1,
                    column: 44,
                    ..
                }
            ),
            "{error:?}"
        );

        let multi_line = "{\n  \"expect\": [\n    { \"from\": \"\u{e9}\" \"to\": \"x\" }\n  ]\n}";
        let error = ExpectationFile::parse(Path::new("e.json"), multi_line).unwrap_err();
        assert!(
            matches!(
                error,
                ExpectationsError::Syntax {
                    line: 3,
                    column: 19,
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn invalid_utf8_names_position() {
        let dir = std::env::temp_dir().join(format!("subnetlock-expect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("latin1.json");
        std::fs::write(&path, b"{\n  \"expect\": [ { \"to\": \"caf\xe9\" } ]\n}").unwrap();
        let error = ExpectationFile::read(&path).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            matches!(
                error,
                ExpectationsError::Encoding {
                    line: 2,
                    column: 27,
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .ends_with("2:27: the expectations file is not valid UTF-8"),
            "{error}"
        );
    }

    #[test]
    fn positions_point_at_each_object() {
        let text = "{\n  // lockdown\n  \"expect\": [\n    {\"from\": \"internet\", \"to\": \"b\", \"verdict\": \"deny\"},\n    { \"from\": \"app:a\", \"to\": \"b\", \"verdict\": \"Allow\" }\n  ]\n}";
        let file = ExpectationFile::parse(Path::new("e.json"), text).unwrap();
        let first = &file.expectations[0];
        assert_eq!((first.location.line, first.location.column), (4, 5));
        assert_eq!(
            first.from_at,
            Position {
                line: 4,
                column: 14
            }
        );
        let second = &file.expectations[1];
        assert_eq!((second.location.line, second.location.column), (5, 5));
        assert_eq!(second.verdict, ExpectedVerdict::Allow);
        assert_eq!(second.location.json_path, "$.expect[1]");
    }
}
