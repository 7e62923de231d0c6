//! Route templates of HTTP triggers, parsed and matched as ASP.NET Core's routing does.
//!
//! The Functions host registers each HTTP function as an ASP.NET Core `Route` whose template
//! is the route prefix, a `/` and the trigger's `route` (`WebJobsRouteBuilder` in
//! `Azure/azure-webjobs-sdk-extensions`). `Route` parses the template with `RoutePatternParser`
//! and resolves constraint names with `DefaultInlineConstraintResolver` when the host starts,
//! and an error there stops the host. At request time it fills in defaults and then checks
//! every constraint against the route values (`RoutePatternMatcher`, `RouteConstraintMatcher`).
//! [`super::route_pattern`] parses the syntax, and this module resolves constraints and matches.

use std::borrow::Cow;
use std::path::Path;

use indexmap::IndexMap;

use super::route_pattern::{self, ParameterKind, ParameterSyntax, Part};
use super::HostError;

/// A parsed ASP.NET-style route template such as `api/products/{category:alpha}/{id:int?}`,
/// route prefix included.
#[derive(Debug)]
pub(super) struct RouteTemplate {
    segments: Vec<Segment>,
    /// The literal segments joined with `/` in lower case, when the template has no
    /// parameter.
    literal: Option<String>,
}

#[derive(Debug)]
enum Segment {
    /// Literal text, matched case-insensitively.
    Literal(String),
    Parameter(Parameter),
    /// Literals and parameters sharing one segment, such as `{name}.{ext?}`. No two
    /// parameters are adjacent, none is a catch-all, and only the last may be optional, after
    /// a `.` literal.
    Complex(Vec<ComplexPart>),
}

#[derive(Debug)]
enum ComplexPart {
    Literal(String),
    Parameter(Parameter),
}

#[derive(Debug)]
struct Parameter {
    name: String,
    optional: bool,
    default: Option<String>,
    catch_all: bool,
    constraints: Vec<Constraint>,
}

/// A resolved route constraint. The names are those of ASP.NET Core's default constraint map
/// (`RouteOptions`).
#[derive(Debug)]
enum Constraint {
    Int,
    Bool,
    Alpha,
    Guid,
    Number,
    DateTime,
    MinLength(usize),
    MaxLength(usize),
    Length(usize, usize),
    Min(i64),
    Max(i64),
    Range(i64, i64),
    Regex(regex::Regex),
    Required,
    File,
    NonFile,
}

impl RouteTemplate {
    /// Parses the template the Functions host builds for a function: `prefix/route`, or
    /// `route` alone when the prefix is empty. `function_json` is the file that declares the
    /// route, which an error names.
    pub(super) fn parse(
        function: &str,
        function_json: &Path,
        prefix: &str,
        route: &str,
    ) -> Result<RouteTemplate, HostError> {
        let error = |reason: String| HostError::InvalidRoute {
            function: function.to_string(),
            path: function_json.to_path_buf(),
            route: route.to_string(),
            reason,
        };

        // The host joins the two without trimming the route, so `/x` under the prefix `api`
        // gives `api//x`, which ASP.NET Core rejects.
        if !prefix.is_empty() && route.starts_with('/') {
            return Err(error(format!(
                "the Functions host joins the route prefix and the route with `/`, which gives \
                 `{prefix}/{route}`, and ASP.NET Core rejects two `/` in a row; remove the \
                 leading `/`"
            )));
        }
        let template = if prefix.is_empty() {
            route.to_string()
        } else {
            format!("{prefix}/{route}")
        };

        let segments = route_pattern::parse_pattern(&template)
            .map_err(|reason| error(format!("the template `{template}` is invalid: {reason}")))?
            .iter()
            .map(|parts| build_segment(parts))
            .collect::<Result<Vec<_>, _>>()
            .map_err(error)?;
        let literals: Option<Vec<&str>> = segments
            .iter()
            .map(|segment| match segment {
                Segment::Literal(text) => Some(text.as_str()),
                _ => None,
            })
            .collect();
        let literal = literals.map(|literals| literals.join("/").to_ascii_lowercase());
        Ok(RouteTemplate { segments, literal })
    }

    /// Matches a path without `%` and without its leading slashes, for a template of literal
    /// segments only; `None` for any other template, which [`Self::matches`] takes.
    ///
    /// [`Self::matches`] would compare the path's segments one by one, ignoring case, after
    /// dropping one empty last segment. A literal segment contains no `/` and is never empty, so
    /// comparing the path without one trailing `/` to the joined literals decides the same,
    /// without splitting the path. Most functions have such a route.
    pub(super) fn matches_literal(&self, path: &str) -> Option<bool> {
        let literal = self.literal.as_deref()?;
        let path = path.strip_suffix('/').unwrap_or(path);
        Some(subnetlock_access::eq_lower_case(path, literal))
    }

    /// Matches decoded path segments, returning the route values.
    pub(super) fn matches(&self, path: &[Cow<'_, str>]) -> Option<IndexMap<String, String>> {
        // `RoutePatternMatcher` rejects an empty segment (`a//b`) up to and including the first
        // segment of a catch-all, so an empty segment never matches an optional parameter or
        // takes a default.
        let catch_all_at = self
            .segments
            .iter()
            .position(|segment| matches!(segment, Segment::Parameter(p) if p.catch_all));
        // Without a catch-all, every request segment needs a template segment, and failing
        // here avoids the work below for most routes a request is tried against.
        if catch_all_at.is_none() && path.len() > self.segments.len() {
            return None;
        }
        let checked = catch_all_at.map_or(path.len(), |at| (at + 1).min(path.len()));
        if path[..checked].iter().any(|segment| segment.is_empty()) {
            return None;
        }

        let mut values = IndexMap::new();

        for (index, segment) in self.segments.iter().enumerate() {
            let parameter = match segment {
                Segment::Literal(literal) => {
                    let value = path.get(index)?;
                    if !value.eq_ignore_ascii_case(literal) {
                        return None;
                    }
                    continue;
                }
                Segment::Complex(parts) => {
                    let value = path.get(index).filter(|value| !value.is_empty())?;
                    if !match_complex(parts, value, &mut values) {
                        return None;
                    }
                    continue;
                }
                Segment::Parameter(parameter) => parameter,
            };

            if parameter.catch_all {
                // A catch-all takes the rest of the path, which may be empty. An empty rest
                // gives the default or no value, and the constraints still apply: ASP.NET
                // Core stores a null value, which only `nonfile` accepts.
                let rest = path.get(index..).unwrap_or_default().join("/");
                let value = if rest.is_empty() {
                    parameter.default.clone()
                } else {
                    Some(rest)
                };
                if !parameter.accepts(value.as_deref()) {
                    return None;
                }
                if let Some(value) = value {
                    values.insert(parameter.name.clone(), value);
                }
                return Some(values);
            }

            let value: &str = match path.get(index) {
                Some(value) if !value.is_empty() => value,
                // An optional parameter without a value has no route value, and
                // `OptionalRouteConstraint` skips its constraints.
                _ if parameter.optional => continue,
                // A default is a route value like any other, so the constraints check it:
                // `{id:int=abc}` never matches a path without `id`.
                _ => parameter.default.as_deref()?,
            };
            // The value is copied only once its constraints accept it, because most routes
            // tried for a request do not match.
            if !parameter.accepts(Some(value)) {
                return None;
            }
            values.insert(parameter.name.clone(), value.to_string());
        }

        (path.len() <= self.segments.len()).then_some(values)
    }

    /// Builds a request path that this template matches, such as `/api/items/1` for
    /// `api/items/{id:int}`. Each parameter, optional ones included, gets the first value
    /// from a short list of candidates that its constraints accept, and the whole path is
    /// checked with [`RouteTemplate::matches`]. Returns the reason when no candidate fits or
    /// a literal would need percent-encoding.
    pub(super) fn example_path(&self) -> Result<String, String> {
        let mut segments = Vec::new();
        for segment in &self.segments {
            let text = match segment {
                Segment::Literal(literal) => literal.clone(),
                Segment::Parameter(parameter) => parameter.example_value()?,
                Segment::Complex(parts) => {
                    let mut text = String::new();
                    for part in parts {
                        match part {
                            ComplexPart::Literal(literal) => text.push_str(literal),
                            ComplexPart::Parameter(parameter) => {
                                text.push_str(&parameter.example_value()?);
                            }
                        }
                    }
                    text
                }
            };
            // Candidate values are plain, so only a literal can hold such a character.
            if let Some(bad) = text.chars().find(|&c| !is_plain_path_char(c)) {
                return Err(format!(
                    "the literal text `{text}` contains `{bad}`, which a URL path must percent-encode"
                ));
            }
            segments.push(text);
        }

        let borrowed: Vec<Cow<'_, str>> = segments
            .iter()
            .map(|segment| Cow::Borrowed(segment.as_str()))
            .collect();
        if self.matches(&borrowed).is_none() {
            return Err(format!(
                "the route does not match the path `/{}` built from sample values",
                segments.join("/")
            ));
        }
        Ok(format!("/{}", segments.join("/")))
    }
}

/// Derives a short string that `pattern` matches, written in characters a path segment contains
/// without percent-encoding, or `None` when the pattern needs other characters or uses syntax
/// the derivation does not follow. Each repetition takes its minimum count (at least one for
/// `*` and `?`, so that a parameter gets a value) and each alternation its first branch that
/// yields a string.
fn regex_sample(pattern: &str) -> Option<String> {
    let hir = regex_syntax::Parser::new().parse(pattern).ok()?;
    let mut sample = String::new();
    sample_of(&hir, &mut sample).then_some(sample)
}

/// Appends to `out` a string that `hir` matches, or returns `false`.
fn sample_of(hir: &regex_syntax::hir::Hir, out: &mut String) -> bool {
    use regex_syntax::hir::{Class, HirKind};

    // Longer samples make unwieldy URLs, and a route value this long needs no sample.
    const MAX_SAMPLE_CHARS: usize = 256;
    if out.len() > MAX_SAMPLE_CHARS {
        return false;
    }
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => true,
        HirKind::Literal(literal) => match std::str::from_utf8(&literal.0) {
            Ok(text) if text.chars().all(is_plain_path_char) => {
                out.push_str(text);
                true
            }
            _ => false,
        },
        HirKind::Class(Class::Unicode(class)) => {
            let plain = class.iter().find_map(|range| {
                (range.start()..=range.end())
                    .take(128)
                    .find(|&c| is_plain_path_char(c))
            });
            plain.map(|c| out.push(c)).is_some()
        }
        HirKind::Class(Class::Bytes(class)) => {
            let plain = class.iter().find_map(|range| {
                (range.start()..=range.end())
                    .map(char::from)
                    .find(|&c| c.is_ascii() && is_plain_path_char(c))
            });
            plain.map(|c| out.push(c)).is_some()
        }
        HirKind::Repetition(repetition) => {
            let count = repetition.min.max(1);
            (0..count).all(|_| sample_of(&repetition.sub, out))
        }
        HirKind::Capture(capture) => sample_of(&capture.sub, out),
        HirKind::Concat(parts) => parts.iter().all(|part| sample_of(part, out)),
        HirKind::Alternation(branches) => branches.iter().any(|branch| {
            let start = out.len();
            let found = sample_of(branch, out);
            if !found {
                out.truncate(start);
            }
            found
        }),
    }
}

/// Returns whether `c` can appear in a path segment without percent-encoding: an RFC 3986
/// unreserved character or one of the sub-delimiters, `:` and `@` that `pchar` allows.
fn is_plain_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@".contains(c)
}

impl Parameter {
    /// Returns the first sample value the constraints accept. The candidates cover the
    /// default constraint map, and a `regex` constraint adds the value [`regex_sample`]
    /// derives from its pattern.
    fn example_value(&self) -> Result<String, String> {
        let mut candidates = vec![
            "1".to_owned(),
            "a".to_owned(),
            "true".to_owned(),
            "00000000-0000-0000-0000-000000000001".to_owned(),
            "2024-01-01".to_owned(),
            "a.txt".to_owned(),
        ];
        for constraint in &self.constraints {
            match constraint {
                Constraint::Min(min) | Constraint::Range(min, _) => {
                    candidates.push(min.to_string());
                }
                Constraint::Max(max) => candidates.push(max.to_string()),
                Constraint::MinLength(length) | Constraint::Length(length, _) => {
                    candidates.push("1".repeat(*length));
                    candidates.push("a".repeat(*length));
                }
                Constraint::Regex(pattern) => {
                    candidates.extend(regex_sample(pattern.as_str()));
                }
                _ => {}
            }
        }
        // A segment of `.` or `..` is a dot-segment, which clients and the server remove from
        // the path (RFC 3986, section 5.2.4), so such a value never reaches the function.
        let is_dot_segment = |candidate: &str| matches!(candidate, "." | "..");
        if let Some(found) = candidates
            .into_iter()
            .find(|candidate| !is_dot_segment(candidate) && self.accepts(Some(candidate)))
        {
            return Ok(found);
        }
        let regex = self
            .constraints
            .iter()
            .find_map(|constraint| match constraint {
                Constraint::Regex(pattern) => Some(pattern.as_str()),
                _ => None,
            });
        Err(match regex {
            Some(pattern) => format!(
                "the parameter `{}` has the constraint `regex({pattern})`, and no value that \
                 meets all its constraints could be derived (the emulator derives one only from \
                 literals, character classes, repetitions and alternatives, in URL-safe \
                 characters)",
                self.name
            ),
            None => format!(
                "no sample value satisfies the constraints of the parameter `{}`",
                self.name
            ),
        })
    }

    /// Checks a route value, or its absence, against every constraint.
    fn accepts(&self, value: Option<&str>) -> bool {
        match value {
            Some(value) => self.constraints.iter().all(|c| c.accepts(value)),
            None => self.constraints.iter().all(Constraint::accepts_missing),
        }
    }
}

/// Turns the parts of one segment into a literal or a parameter with resolved constraints.
fn build_segment(parts: &[Part]) -> Result<Segment, String> {
    match parts {
        [Part::Literal(literal)] => Ok(Segment::Literal(literal.clone())),
        [Part::Parameter(parameter)] => build_parameter(parameter).map(Segment::Parameter),
        _ => parts
            .iter()
            .map(|part| match part {
                Part::Literal(literal) => Ok(ComplexPart::Literal(literal.clone())),
                Part::Parameter(parameter) => {
                    build_parameter(parameter).map(ComplexPart::Parameter)
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Segment::Complex),
    }
}

/// Matches one request segment against a complex segment as
/// `RoutePatternMatcher.MatchComplexSegment` does, adding the parameters' values when it
/// matches and their constraints accept them.
///
/// The reading goes from right to left: each literal is the last occurrence (ignoring case)
/// left of the text already used, leaving at least one character for a parameter to its
/// right. When the segment ends in an optional parameter, a request without that part is
/// tried again without it, unless the request ends with the `.` before it.
fn match_complex(
    parts: &[ComplexPart],
    segment: &str,
    values: &mut IndexMap<String, String>,
) -> bool {
    let last = parts.len() - 1;
    let captured = match &parts[last] {
        ComplexPart::Parameter(parameter) if parameter.optional => {
            match match_complex_from(parts, segment, last) {
                Some(captured) => Some(captured),
                None => {
                    let separator = match &parts[last - 1] {
                        ComplexPart::Literal(literal) => literal.as_str(),
                        ComplexPart::Parameter(_) => return false,
                    };
                    let ends_with_separator = segment.len() >= separator.len()
                        && segment.as_bytes()[segment.len() - separator.len()..]
                            .eq_ignore_ascii_case(separator.as_bytes());
                    if ends_with_separator {
                        return false;
                    }
                    // Without a part before the `.`, as in `.{ext?}`, nothing is left to match.
                    last.checked_sub(2)
                        .and_then(|from| match_complex_from(parts, segment, from))
                }
            }
        }
        _ => match_complex_from(parts, segment, last),
    };
    let Some(captured) = captured else {
        return false;
    };

    for (parameter, value) in &captured {
        if !parameter.accepts(Some(value)) {
            return false;
        }
    }
    for (parameter, value) in captured {
        values.insert(parameter.name.clone(), value.to_string());
    }
    true
}

/// Reads `parts[..=last_part]` from the right end of `segment`, returning each parameter with
/// its text, or `None` when the segment does not match.
fn match_complex_from<'a, 's>(
    parts: &'a [ComplexPart],
    segment: &'s str,
    last_part: usize,
) -> Option<Vec<(&'a Parameter, &'s str)>> {
    let bytes = segment.as_bytes();
    let mut captured = Vec::new();
    // Byte index where the text already used begins.
    let mut end = bytes.len();
    let mut pending: Option<&Parameter> = None;
    let mut last_literal: Option<&str> = None;

    for index in (0..=last_part).rev() {
        let mut new_end = end;
        match &parts[index] {
            ComplexPart::Parameter(parameter) => pending = Some(parameter),
            ComplexPart::Literal(literal) => {
                last_literal = Some(literal);
                // A pending parameter needs at least one character.
                // NOTE: where ASP.NET Core's index would become negative here, it throws and
                // the request fails; the emulator reads it as no match.
                let search_end = if pending.is_some() {
                    end.checked_sub(1)?
                } else {
                    end
                };
                if search_end == 0 {
                    return None;
                }
                let found = rfind_ignore_ascii_case(&bytes[..search_end], literal.as_bytes())?;
                // The last part, when literal, must end the segment.
                if index == parts.len() - 1 && found + literal.len() != bytes.len() {
                    return None;
                }
                new_end = found;
            }
        }

        let is_literal = matches!(parts[index], ComplexPart::Literal(_));
        if let Some(parameter) = pending {
            if (last_literal.is_some() && is_literal) || index == 0 {
                let start = match last_literal {
                    Some(literal) if is_literal => new_end + literal.len(),
                    _ => 0,
                };
                let value = segment.get(start..end).filter(|value| !value.is_empty())?;
                captured.push((parameter, value));
                pending = None;
                last_literal = None;
            }
        }
        end = new_end;
    }

    // A leading literal must reach the start of the segment.
    let starts_with_parameter = matches!(parts[0], ComplexPart::Parameter(_));
    (end == 0 || starts_with_parameter).then_some(captured)
}

/// Returns the start of the last occurrence of `needle` in `haystack`, ignoring ASCII case.
/// A match starts on a character boundary because `needle` is valid UTF-8.
fn rfind_ignore_ascii_case(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.len() > haystack.len() {
        return None;
    }
    (0..=haystack.len() - needle.len())
        .rev()
        .find(|&start| haystack[start..start + needle.len()].eq_ignore_ascii_case(needle))
}

fn build_parameter(syntax: &ParameterSyntax) -> Result<Parameter, String> {
    let with_note = |reason: String| match split_note(syntax) {
        Some(note) => format!("{reason}; {note}"),
        None => reason,
    };

    // An unknown name is reported before an invalid pattern, because the current
    // `RegexRouteConstraint` compiles its pattern only at the first request, so the host fails
    // at startup on the name alone.
    if let Some(text) = syntax.constraints.iter().find(|text| {
        !CONSTRAINT_NAMES.contains(&constraint_name(text).0.to_ascii_lowercase().as_str())
    }) {
        return Err(with_note(format!(
            "`{text}` is not a known route constraint; the known ones are {}",
            CONSTRAINT_NAMES.join(", ")
        )));
    }
    let constraints = syntax
        .constraints
        .iter()
        .map(|text| Constraint::parse(text))
        .collect::<Result<Vec<_>, _>>()
        .map_err(with_note)?;

    Ok(Parameter {
        name: syntax.name.clone(),
        optional: syntax.kind == ParameterKind::Optional,
        default: syntax.default.clone(),
        catch_all: syntax.kind == ParameterKind::CatchAll,
        constraints,
    })
}

/// Explains how the parser cut a parameter whose parentheses ended a constraint early, as in
/// `{p:regex(^(a|b):c$)}`, or returns `None` when every constraint's parentheses balance.
fn split_note(syntax: &ParameterSyntax) -> Option<String> {
    let balanced = |text: &str| text.matches('(').count() == text.matches(')').count();
    if syntax.constraints.iter().all(|text| balanced(text)) {
        return None;
    }

    let constraints: Vec<String> = syntax
        .constraints
        .iter()
        .map(|text| format!("`{text}`"))
        .collect();
    let mut note = format!(
        "ASP.NET Core ends a constraint at a `)` followed by `:` or `=`, so it reads the \
         parameter `{}` as the constraints {}",
        syntax.name,
        constraints.join(", ")
    );
    if let Some(default) = &syntax.default {
        note.push_str(&format!(" and the default value `{default}`"));
    }
    note.push_str("; write a `:` or `=` that follows a `)` in a pattern as `[:]` or `[=]`");
    Some(note)
}

/// Names of the constraints in ASP.NET Core's default constraint map, compared ignoring case.
const CONSTRAINT_NAMES: [&str; 19] = [
    "int",
    "long",
    "bool",
    "alpha",
    "guid",
    "decimal",
    "double",
    "float",
    "datetime",
    "required",
    "file",
    "nonfile",
    "minlength",
    "maxlength",
    "length",
    "min",
    "max",
    "range",
    "regex",
];

/// Splits a constraint text into name and arguments as `ParameterPolicyActivator` does: the
/// name is the text before the first `(` when the text ends with `)`, and the whole text
/// otherwise.
fn constraint_name(text: &str) -> (&str, Option<&str>) {
    match text.find('(') {
        Some(open) if text.ends_with(')') => (&text[..open], Some(&text[open + 1..text.len() - 1])),
        _ => (text, None),
    }
}

impl Constraint {
    /// Resolves one constraint text as `DefaultInlineConstraintResolver` does. A constraint
    /// that takes no arguments rejects `()` too, because ASP.NET Core finds no constructor
    /// for one empty argument.
    fn parse(text: &str) -> Result<Constraint, String> {
        let (name, arguments) = constraint_name(text);

        let without_arguments = |constraint: Constraint| match arguments {
            None => Ok(constraint),
            Some(_) => Err(format!(
                "constraint `{text}` passes arguments to `{name}`, which takes none"
            )),
        };
        // The length constraints take .NET `int` arguments and reject negative ones.
        let length = |value: i64| {
            i32::try_from(value)
                .ok()
                .and_then(|value| usize::try_from(value).ok())
                .ok_or_else(|| format!("constraint `{text}` needs a length from 0 to {}", i32::MAX))
        };

        let constraint = match name.to_ascii_lowercase().as_str() {
            "int" | "long" => without_arguments(Constraint::Int)?,
            "bool" => without_arguments(Constraint::Bool)?,
            "alpha" => without_arguments(Constraint::Alpha)?,
            "guid" => without_arguments(Constraint::Guid)?,
            "decimal" | "double" | "float" => without_arguments(Constraint::Number)?,
            "datetime" => without_arguments(Constraint::DateTime)?,
            "required" => without_arguments(Constraint::Required)?,
            "file" => without_arguments(Constraint::File)?,
            "nonfile" => without_arguments(Constraint::NonFile)?,
            "minlength" => {
                let [min] = integer_arguments(text, arguments)?;
                Constraint::MinLength(length(min)?)
            }
            "maxlength" => {
                let [max] = integer_arguments(text, arguments)?;
                Constraint::MaxLength(length(max)?)
            }
            "length" if arguments.is_some_and(|a| a.contains(',')) => {
                let [min, max] = integer_arguments(text, arguments)?;
                let (min, max) = (length(min)?, length(max)?);
                if min > max {
                    return Err(format!(
                        "constraint `{text}` has a minimum length above its maximum"
                    ));
                }
                Constraint::Length(min, max)
            }
            "length" => {
                let [exact] = integer_arguments(text, arguments)?;
                Constraint::Length(length(exact)?, length(exact)?)
            }
            "min" => {
                let [min] = integer_arguments(text, arguments)?;
                Constraint::Min(min)
            }
            "max" => {
                let [max] = integer_arguments(text, arguments)?;
                Constraint::Max(max)
            }
            "range" => {
                let [min, max] = integer_arguments(text, arguments)?;
                if min > max {
                    return Err(format!(
                        "constraint `{text}` has a minimum above its maximum"
                    ));
                }
                Constraint::Range(min, max)
            }
            "regex" => Constraint::Regex(route_regex(text, arguments)?),
            _ => {
                return Err(format!(
                    "`{text}` is not a known route constraint; the known ones are {}",
                    CONSTRAINT_NAMES.join(", ")
                ))
            }
        };
        Ok(constraint)
    }

    /// Returns whether the constraint accepts a parameter without a value. Only `nonfile`
    /// does: the others return false for a missing or null route value.
    fn accepts_missing(&self) -> bool {
        matches!(self, Constraint::NonFile)
    }

    fn accepts(&self, value: &str) -> bool {
        let chars = || value.chars().count();
        match self {
            Constraint::Int => value.parse::<i64>().is_ok(),
            Constraint::Bool => {
                value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("false")
            }
            Constraint::Alpha => value.chars().all(|c| c.is_ascii_alphabetic()),
            Constraint::Guid => is_guid(value),
            Constraint::Number => value.parse::<f64>().is_ok_and(f64::is_finite),
            Constraint::DateTime => {
                chrono::DateTime::parse_from_rfc3339(value).is_ok()
                    || chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").is_ok()
                    || chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S").is_ok()
            }
            Constraint::MinLength(min) => chars() >= *min,
            Constraint::MaxLength(max) => chars() <= *max,
            Constraint::Length(min, max) => (*min..=*max).contains(&chars()),
            Constraint::Min(min) => value.parse::<i64>().is_ok_and(|v| v >= *min),
            Constraint::Max(max) => value.parse::<i64>().is_ok_and(|v| v <= *max),
            Constraint::Range(min, max) => {
                value.parse::<i64>().is_ok_and(|v| v >= *min && v <= *max)
            }
            Constraint::Regex(pattern) => pattern.is_match(value),
            Constraint::Required => !value.is_empty(),
            Constraint::File => is_file_name(value),
            Constraint::NonFile => !is_file_name(value),
        }
    }
}

/// Compiles the pattern of a `regex(...)` route constraint as ASP.NET Core's
/// `RegexRouteConstraint` does: ignoring case, and matching anywhere in the value unless the
/// pattern is anchored with `^` and `$`.
///
/// The pattern is read with Rust's `regex` syntax, which agrees with .NET's for quantifiers,
/// groups and anchors, and like .NET reads `\d` and `\w` as Unicode classes. Character classes
/// are first rewritten by [`dotnet_class_literals`]. Rust's syntax has no look-around,
/// backreferences or atomic groups, so a pattern that uses them is an error here although the
/// Functions host would accept it.
fn route_regex(text: &str, pattern: Option<&str>) -> Result<regex::Regex, String> {
    let pattern = pattern.ok_or_else(|| format!("constraint `{text}` needs a pattern"))?;
    let pattern = dotnet_class_literals(pattern).map_err(|reason| {
        format!("constraint `{text}`: {reason}; rewrite the character class without it")
    })?;
    regex::RegexBuilder::new(&pattern)
        .case_insensitive(true)
        .build()
        .map_err(|error| match error {
            // NOTE: .NET has no such limit, so the real host accepts such a pattern.
            regex::Error::CompiledTooBig(limit) => format!(
                "constraint `{text}`: the compiled pattern is larger than the {limit} bytes the \
                 emulator's regex engine allows; use smaller repetition counts, for example \
                 `+` in place of `{{{{1000}}}}`"
            ),
            error => format!(
                "constraint `{text}`: the pattern is invalid or uses a .NET feature Rust's regex \
                 syntax lacks (look-around, backreferences, atomic groups): {error}; rewrite it \
                 without them"
            ),
        })
}

/// Escapes the characters that a .NET character class reads as literals and Rust's `regex`
/// reads as class syntax: `[` (a nested class in Rust), `&&` and `~~` (intersection and
/// symmetric difference) and `--` (difference). So `[[a-z]]` is the class of `[` and the
/// letters followed by `]`, as in .NET. .NET's class subtraction, `[a-z-[aeiou]]`, has no
/// Rust equivalent and is an error.
fn dotnet_class_literals(pattern: &str) -> Result<String, String> {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.push(c);
            if let Some(escaped) = chars.next() {
                out.push(escaped);
            }
            continue;
        }
        if !in_class {
            out.push(c);
            if c == '[' {
                in_class = true;
                // A `]` right after `[` or `[^` is a literal in both syntaxes.
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
                if chars.peek() == Some(&']') {
                    out.push_str("\\]");
                    chars.next();
                }
            }
            continue;
        }
        match c {
            ']' => {
                in_class = false;
                out.push(c);
            }
            '[' if out.ends_with('-') && !out.ends_with("\\-") => {
                return Err(
                    "the class subtraction `-[...]` is a .NET feature Rust's regex syntax lacks"
                        .to_string(),
                );
            }
            '[' => out.push_str("\\["),
            '&' | '~' | '-' if chars.peek() == Some(&c) => {
                out.push(c);
                out.push('\\');
                out.push(c);
                chars.next();
            }
            _ => out.push(c),
        }
    }
    Ok(out)
}

/// Parses exactly `N` comma-separated integers from a constraint's arguments.
fn integer_arguments<const N: usize>(
    constraint: &str,
    arguments: Option<&str>,
) -> Result<[i64; N], String> {
    let values = arguments
        .unwrap_or_default()
        .split(',')
        .map(|value| value.trim().parse::<i64>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| format!("constraint `{constraint}` needs integer arguments"))?;
    values
        .try_into()
        .map_err(|_| format!("constraint `{constraint}` needs {N} argument(s)"))
}

/// Accepts the hyphenated form, optionally in braces, like .NET `Guid.TryParse` does for `D`/`B`.
fn is_guid(value: &str) -> bool {
    let inner = value
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .unwrap_or(value);
    let groups: Vec<&str> = inner.split('-').collect();
    let lengths = [8, 4, 4, 4, 12];
    groups.len() == lengths.len()
        && groups
            .iter()
            .zip(lengths)
            .all(|(group, len)| group.len() == len && group.chars().all(|c| c.is_ascii_hexdigit()))
        || (inner.len() == 32 && inner.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Returns whether the last `/`-separated part of the value has a `.` followed somewhere by
/// a character other than `.`, as ASP.NET Core's `FileNameRouteConstraint` decides. So
/// `a/b.txt` and `.gitignore` are file names, and `a.b/c` and `x.` are not.
fn is_file_name(value: &str) -> bool {
    let last = value.rsplit('/').next().unwrap_or(value);
    last.split_once('.')
        .is_some_and(|(_, after)| after.chars().any(|c| c != '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(prefix: &str, route: &str) -> Result<RouteTemplate, HostError> {
        RouteTemplate::parse("f", Path::new("f/function.json"), prefix, route)
    }

    fn template(route: &str) -> RouteTemplate {
        parse("", route).expect("route")
    }

    #[test]
    fn literal_match_equals_segment_match() {
        let routes = [
            "api/function-b",
            "API/Items",
            "a/b/c",
            "",
            "api/{id}",
            "api/{*rest}",
            "api/x.{ext}",
        ];
        let paths = [
            "",
            "/",
            "api",
            "api/",
            "api/function-b",
            "API/FUNCTION-B",
            "api/function-b/",
            "api/function-b//",
            "api//function-b",
            "api/function-bb",
            "api/items",
            "a/b/c",
            "a/b/c/",
            "a/b",
            "a//b/c",
            "api/7",
        ];
        for route in routes {
            let template = template(route);
            for path in paths {
                // As `Shared::route` splits a path without `%`, after its leading slashes.
                let path = path.trim_start_matches('/');
                let mut split: Vec<Cow<'_, str>> = path.split('/').map(Cow::Borrowed).collect();
                if split.last().is_some_and(|segment| segment.is_empty()) {
                    split.pop();
                }
                let by_segments = template.matches(&split).is_some();
                match template.matches_literal(path) {
                    Some(by_literal) => assert_eq!(by_literal, by_segments, "{route} {path}"),
                    None => assert!(route.contains('{'), "{route}"),
                }
            }
        }
    }

    fn segments(path: &str) -> Vec<Cow<'_, str>> {
        path.split('/')
            .filter(|s| !s.is_empty())
            .map(Cow::Borrowed)
            .collect()
    }

    fn rejection(prefix: &str, route: &str) -> String {
        match parse(prefix, route) {
            Err(HostError::InvalidRoute { reason, .. }) => reason,
            Err(other) => panic!("route `{route}`: unexpected error {other}"),
            Ok(_) => panic!("route `{route}` must be rejected"),
        }
    }

    #[test]
    fn example_path_cases() {
        let cases = [
            ("api", "hello", "/api/hello"),
            ("", "items/{id:int}", "/items/1"),
            ("api", "items/{name:alpha}/{rest?}", "/api/items/a/1"),
            ("api", "n/{id:min(42)}", "/api/n/42"),
            ("api", "n/{id:range(5,9)}", "/api/n/5"),
            ("api", "n/{code:length(3)}", "/api/n/111"),
            ("api", "n/{slug:minlength(5):alpha}", "/api/n/aaaaa"),
            ("api", "f/{name}.{ext?}", "/api/f/1.1"),
            (
                "api",
                "g/{id:guid}",
                "/api/g/00000000-0000-0000-0000-000000000001",
            ),
            ("api", "files/{*rest}", "/api/files/1"),
            ("api", r"r/{id:regex(^\d+$)}", "/api/r/1"),
            ("api", r"r/{id:regex(^x\d$)}", "/api/r/x0"),
            (
                "api",
                r"r/{code:regex(^[A-Z]{{3}}-\d{{2,4}}$)}",
                "/api/r/AAA-00",
            ),
            ("api", r"r/{v:regex(^(beta|rc)\.\d+$)}", "/api/r/beta.0"),
        ];
        for (prefix, route, expected) in cases {
            let template = parse(prefix, route).expect("route");
            assert_eq!(
                template.example_path().as_deref(),
                Ok(expected),
                "route `{route}`"
            );
        }
    }

    #[test]
    fn example_path_reports_unmet_constraint() {
        // A value must hold a space, which a URL path must percent-encode.
        let spaced = template(r"r/{id:regex(^x y$)}");
        let reason = spaced.example_path().expect_err("no sample fits");
        assert!(reason.contains("parameter `id`"), "{reason}");
        assert!(reason.contains("constraint `regex(^x y$)`"), "{reason}");

        // The only values are dot-segments, which a URL cannot carry as they are.
        let dots = template(r"r/{id:regex(^\.{{1,2}}$)}");
        let reason = dots.example_path().expect_err("no sample fits");
        assert!(reason.contains("parameter `id`"), "{reason}");

        let contradiction = template("n/{id:int:alpha}");
        assert!(contradiction.example_path().is_err());
    }

    #[test]
    fn example_path_rejects_encoded_literal() {
        let spaced = template("a b/{id}");
        let reason = spaced.example_path().expect_err("space needs encoding");
        assert!(reason.contains("percent-encode"), "{reason}");
    }

    /// A route, a path under it, and the route values it gives, or `None` when it does not
    /// match.
    type MatchCase<'a> = (&'a str, &'a str, Option<&'a [(&'a str, &'a str)]>);

    /// Asserts that each route matches its path with exactly the expected values.
    fn assert_route_matches(cases: &[MatchCase<'_>]) {
        for &(route, path, expected) in cases {
            let actual = template(route).matches(&segments(path));
            let expected = expected.map(|pairs| {
                pairs
                    .iter()
                    .map(|(name, value)| (name.to_string(), value.to_string()))
                    .collect::<IndexMap<_, _>>()
            });
            assert_eq!(actual, expected, "route `{route}` path `{path}`");
        }
    }

    #[test]
    fn route_matches_cases() {
        let cases: [MatchCase; 24] = [
            ("hello", "hello", Some(&[])),
            ("hello", "HELLO", Some(&[])),
            ("hello", "hello/x", None),
            (
                "products/{category:alpha}/{id:int?}",
                "products/toys/5",
                Some(&[("category", "toys"), ("id", "5")]),
            ),
            (
                "products/{category:alpha}/{id:int?}",
                "products/toys",
                Some(&[("category", "toys")]),
            ),
            (
                "products/{category:alpha}/{id:int?}",
                "products/toys/x",
                None,
            ),
            (
                "products/{category:alpha}/{id:int?}",
                "products/t0ys/5",
                None,
            ),
            ("items/{id:min(1)}", "items/0", None),
            ("items/{id:range(1,9)}", "items/5", Some(&[("id", "5")])),
            ("files/{*path}", "files/a/b/c", Some(&[("path", "a/b/c")])),
            ("files/{name=index}", "files", Some(&[("name", "index")])),
            // A non-final optional parameter is accepted but needs a value to match.
            ("a/{id?}/b", "a/5/b", Some(&[("id", "5")])),
            ("a/{id?}/b", "a/b", None),
            // Route values of a default are checked by the constraints too.
            ("items/{id:int=7}", "items", Some(&[("id", "7")])),
            ("items/{id:int=abc}", "items", None),
            ("items/{id:int=abc}", "items/5", Some(&[("id", "5")])),
            // An empty catch-all has no value, which only `nonfile` accepts.
            ("files/{*path:int}", "files", None),
            ("files/{*path:int=5}", "files", Some(&[("path", "5")])),
            ("files/{*path:nonfile}", "files", Some(&[])),
            ("files/{*path:nonfile}", "files/a/b.txt", None),
            (
                "files/{*path:file}",
                "files/a/b.txt",
                Some(&[("path", "a/b.txt")]),
            ),
            ("files/{**path}", "files/a/b", Some(&[("path", "a/b")])),
            ("files/{*path}", "files", Some(&[])),
            (
                "users/{id:guid}",
                "users/5f1c7a7e-3c1b-4c6e-9a4e-0d5f2b6c8a11",
                Some(&[("id", "5f1c7a7e-3c1b-4c6e-9a4e-0d5f2b6c8a11")]),
            ),
        ];
        assert_route_matches(&cases);
    }

    #[test]
    fn route_parse_rejects_cases() {
        let cases = [
            "{*rest}/b",
            "{id:regex((?=a)b)}",
            "{id:regex(a{2)}",
            "{id:regex}",
            "{id:unknown}",
            "{}",
            "a//b",
            "//x",
            "~x",
            "{*rest?}",
            "{**rest?}",
            "{id=5?}",
            "{id?=5}",
            "{id}/{ID}",
            "a?b",
            "{a}{b}",
            "{a}-{b?}",
            "{a?}.{b}",
            "x.{*rest}",
            "{a/b}",
            "{*}",
            "{?}",
            "{id:int()}",
            "{id:alpha(x)}",
            "{id:length(5,2)}",
            "{id:range(9,1)}",
            "{id:minlength(-1)}",
            "{id:maxlength(2147483648)}",
            "{id:min(1,2)}",
            "{p:regex(^(a|b):c$)}",
            "{p:test(#}",
            "{a}}",
            "a}b",
            "{",
        ];
        for route in cases {
            assert!(parse("", route).is_err(), "route `{route}`");
        }
    }

    #[test]
    fn regex_constraint_follows_aspnet_core() {
        // ASP.NET Core's `RegexRouteConstraint` ignores case and matches anywhere in the
        // value. A doubled brace or bracket in the template is one character of the pattern.
        let cases = [
            (r"{id:regex(^\d{{3}}$)}", "123", true),
            (r"{id:regex(^\d{{3}}$)}", "1234", false),
            (r"{id:regex(^\d{{3}}$)}", "abc", false),
            // Brackets are not doubled delimiters in a route, and `[` inside a .NET class is
            // a literal: this is a class of `[` and the letters, then `]` twice.
            ("{id:regex(^[[a-z]]{{2}}$)}", "a]]", true),
            ("{id:regex(^[[a-z]]{{2}}$)}", "[]]", true),
            ("{id:regex(^[[a-z]]{{2}}$)}", "ab", false),
            ("{id:regex(^[a&&b]$)}", "&", true),
            ("{id:regex(^[a~~b]$)}", "~", true),
            ("{id:regex(^[]a]$)}", "]", true),
            (r"{id:regex(^[\[]$)}", "[", true),
            ("{id:regex(^[(]$)}", "(", true),
            ("{id:regex(^a=b$)}", "a=b", true),
            ("{name:regex(^(get|create)$)}", "GET", true),
            ("{name:regex(^(get|create)$)}", "delete", false),
            ("{name:regex(et)}", "get", true),
            ("{name:regex(^a:b$)}", "a:b", true),
        ];
        for (route, value, expected) in cases {
            let matched = template(route).matches(&segments(value)).is_some();
            assert_eq!(matched, expected, "route `{route}` value `{value}`");
        }
    }

    #[test]
    fn regex_with_slash_constrains_catch_all() {
        // A `/` inside a parameter belongs to the parameter, and a catch-all's constraints
        // apply to the whole rest of the path.
        let route = template("files/{*path:regex(^public/)}");
        assert!(route.matches(&segments("files/public/a/b")).is_some());
        assert!(route.matches(&segments("files/PUBLIC/a")).is_some());
        assert!(route.matches(&segments("files/private/a")).is_none());
        assert!(route.matches(&segments("files/public")).is_none());

        let route = template("files/{*path:int}");
        assert!(route.matches(&segments("files/12")).is_some());
        assert!(route.matches(&segments("files/x/12")).is_none());
    }

    #[test]
    fn route_splits_outside_parameters() {
        let count = |route: &str| {
            route_pattern::parse_pattern(route)
                .expect("valid template")
                .len()
        };
        assert_eq!(count("a/{b}/c"), 3);
        assert_eq!(count("a/{id:regex(^x/y{{2}}$)}/c"), 3);
        assert_eq!(count("{*rest:regex(^a/b)}"), 1);
        assert_eq!(count("x/"), 1);
        assert_eq!(count(""), 0);
    }

    #[test]
    fn regex_errors_say_what_to_write() {
        let Err(HostError::InvalidRoute { reason, .. }) = parse("", r"{id:regex(^\d{3}$)}") else {
            panic!("an unescaped brace must be rejected");
        };
        assert!(reason.contains("as `{{` or `}}`"), "{reason}");

        let Err(HostError::InvalidRoute { reason, .. }) = parse("", r"{id:regex(\w{{1000}})}")
        else {
            panic!("a pattern beyond the size limit must be rejected");
        };
        assert!(reason.contains("smaller repetition counts"), "{reason}");
        assert!(!reason.contains("look-around"), "{reason}");
    }

    #[test]
    fn dotnet_class_subtraction_is_rejected() {
        let Err(HostError::InvalidRoute { reason, .. }) = parse("", "{id:regex(^[a-z-[aeiou]]$)}")
        else {
            panic!("class subtraction must be rejected");
        };
        assert!(reason.contains("class subtraction"), "{reason}");
        assert!(parse("", r"{id:regex(^[a\-[]$)}").is_ok());
    }

    #[test]
    fn unsupported_regex_error_names_the_gap() {
        let Err(HostError::InvalidRoute { reason, .. }) = parse("", "{id:regex((?=a)b)}") else {
            panic!("look-ahead must be rejected");
        };
        assert!(reason.contains("look-around"), "{reason}");
        assert!(reason.contains("regex((?=a)b)"), "{reason}");
    }

    #[test]
    fn empty_path_segment_never_matches() {
        let path = |parts: &[&'static str]| -> Vec<Cow<'static, str>> {
            parts.iter().map(|part| Cow::Borrowed(*part)).collect()
        };
        let optional = template("a/{id?}");
        assert!(optional.matches(&path(&["a", ""])).is_none());
        assert!(optional.matches(&path(&["a"])).is_some());

        let defaulted = template("a/{id=5}/b");
        assert!(defaulted.matches(&path(&["a", "", "b"])).is_none());

        // After the first segment of a catch-all, empty segments belong to its value.
        let catch_all = template("files/{*rest}");
        let values = catch_all
            .matches(&path(&["files", "a", "", "b"]))
            .expect("match");
        assert_eq!(values.get("rest").map(String::as_str), Some("a//b"));
        assert!(catch_all.matches(&path(&["files", "", "b"])).is_none());
    }

    #[test]
    fn parameter_text_splits_like_aspnet_core() {
        // Expected results from ASP.NET Core's `InlineRouteParameterParserTest`, plus the
        // regex whose group closes right before a `:`.
        type Case<'a> = (&'a str, &'a str, &'a [&'a str], Option<&'a str>);
        let cases: [Case; 25] = [
            ("=", "=", &[], None),
            (":", ":", &[], None),
            ("param=", "param", &[], Some("")),
            ("param:", "param", &[], None),
            ("param:=", "param", &[], Some("")),
            ("param=:", "param", &[], Some(":")),
            ("param:int=111111", "param", &["int"], Some("111111")),
            (
                r"param:test(\d+)=111111",
                "param",
                &[r"test(\d+)"],
                Some("111111"),
            ),
            (
                "param::test(d+)::test(w+)",
                "param",
                &["test(d+)", "test(w+)"],
                None,
            ),
            (
                r"param:test(\d+):test(\w:+)",
                "param",
                &[r"test(\d+)", r"test(\w:+)"],
                None,
            ),
            (
                r"param:test(\d+)::test(\w+)==qwer",
                "param",
                &[r"test(\d+)", r"test(\w+)"],
                Some("=qwer"),
            ),
            (
                "comparison-operator:length(6)=>= || <= || ==",
                "comparison-operator",
                &["length(6)"],
                Some(">= || <= || =="),
            ),
            (":param::test=12", ":param", &["test"], Some("12")),
            ("par==am:test=dvds", "par", &[], Some("=am:test=dvds")),
            ("par=test(am):est=asd", "par", &[], Some("test(am):est=asd")),
            (
                "param:test(a==b)=dvds",
                "param",
                &["test(a==b)"],
                Some("dvds"),
            ),
            ("par(am:test(\\()", "par(am", &["test(\\()"], None),
            ("a(:b)", "a(", &["(:b)"], None),
            ("param:test(#:test1", "param", &["test(#", "test1"], None),
            (
                "param:test(abc:somevalue):name(test1:differentname=default-value",
                "param",
                &["test(abc:somevalue)", "name(test1", "differentname"],
                Some("default-value"),
            ),
            (
                "param:test(constraintvalue=test1",
                "param",
                &["test(constraintvalue"],
                Some("test1"),
            ),
            ("param:test(#):$)", "param", &["test(#)", "$)"], None),
            ("param:test(#:)$)", "param", &["test(#:)$)"], None),
            ("p:regex(^(a|b):c$)", "p", &["regex(^(a|b)", "c$)"], None),
            ("p:regex(^(a|b)=c$)", "p", &["regex(^(a|b)"], Some("c$)")),
        ];
        for (text, name, constraints, default) in cases {
            let parameter = route_pattern::parse_parameter_text(text);
            assert_eq!(parameter.name, name, "`{text}`");
            assert_eq!(parameter.constraints, constraints, "`{text}`");
            assert_eq!(parameter.default.as_deref(), default, "`{text}`");
        }

        let optional = route_pattern::parse_parameter_text(r"param:test(\?)=sdf?");
        assert_eq!(optional.kind, ParameterKind::Optional);
        assert_eq!(optional.default.as_deref(), Some("sdf"));
        let catch_all = route_pattern::parse_parameter_text("**path:int");
        assert_eq!(catch_all.kind, ParameterKind::CatchAll);
        assert_eq!(catch_all.name, "path");
    }

    #[test]
    fn colon_after_group_ends_the_constraint() {
        let reason = rejection("api", "{p:regex(^(a|b):c$)}");
        assert!(
            reason.contains("`c$)` is not a known route constraint"),
            "{reason}"
        );
        assert!(reason.contains("`regex(^(a|b)`, `c$)`"), "{reason}");
        assert!(reason.contains("`[:]`"), "{reason}");

        let reason = rejection("api", "{p:regex(^(a|b)=c$)}");
        assert!(reason.contains("the default value `c$)`"), "{reason}");

        // The rewrite the message suggests is accepted and matches.
        let route = template("{p:regex(^(a|b)[:]c$)}");
        assert!(route.matches(&segments("b:c")).is_some());
        assert!(route.matches(&segments("x:c")).is_none());
    }

    #[test]
    fn unusual_names_and_empty_constraints_are_accepted() {
        let cases = [
            ("{:x}", "x"),
            ("{=}", "v"),
            ("{p:}", "v"),
            ("{p::int}", "5"),
            ("{p:int:}", "5"),
            ("{p=}", "v"),
            ("{p:required}", "v"),
            ("{p:REGEX(^V$)}", "v"),
            ("{p:regex()}", "v"),
            ("{par,am}", "v"),
            ("~/x", "x"),
            ("x/", "x"),
        ];
        for (route, path) in cases {
            let template = parse("", route).unwrap_or_else(|error| panic!("{route}: {error}"));
            assert!(template.matches(&segments(path)).is_some(), "{route}");
        }
        let values = template("{:x}").matches(&segments("v")).expect("match");
        assert_eq!(values.get(":x").map(String::as_str), Some("v"));
    }

    #[test]
    fn template_includes_route_prefix() {
        let route = parse("api", "items/{id}").expect("route");
        assert!(route.matches(&segments("api/items/1")).is_some());
        assert!(route.matches(&segments("API/items/1")).is_some());
        assert!(route.matches(&segments("items/1")).is_none());

        // The host writes `prefix/route`, so `~/x` keeps its `~` as a literal segment.
        let route = parse("api", "~/x").expect("route");
        assert!(route.matches(&segments("api/~/x")).is_some());

        let reason = rejection("api", "/hello");
        assert!(reason.contains("`api//hello`"), "{reason}");
        assert!(reason.contains("remove the leading `/`"), "{reason}");
        assert!(parse("", "/hello").is_ok());
    }

    #[test]
    fn invalid_route_error_names_function_and_route() {
        let path = Path::new("app/lookup/function.json");
        let error = RouteTemplate::parse("lookup", path, "api", "{id:int()}").expect_err("invalid");
        let message = error.to_string();
        assert!(message.contains("`lookup`"), "{message}");
        assert!(message.contains("`{id:int()}`"), "{message}");
        assert!(message.contains("takes none"), "{message}");
        assert!(message.contains("`app/lookup/function.json`"), "{message}");

        let help = miette::Diagnostic::help(&error).expect("help").to_string();
        assert!(
            help.contains("change `route` in `app/lookup/function.json`"),
            "{help}"
        );
        assert!(help.contains("no function of this app"), "{help}");
    }

    #[test]
    fn complex_segment_matches_like_aspnet_core() {
        let cases: [MatchCase; 22] = [
            (
                "{p1}.{p2?}",
                "foo.bar",
                Some(&[("p1", "foo"), ("p2", "bar")]),
            ),
            ("{p1}.{p2?}", "foo", Some(&[("p1", "foo")])),
            ("{p1}.{p2?}", "foo.", None),
            (
                "{p1}.{p2?}",
                "foo.bar.baz",
                Some(&[("p1", "foo.bar"), ("p2", "baz")]),
            ),
            ("moo/{p1}.{p2?}", "moo/.foo", Some(&[("p1", ".foo")])),
            (
                "{p1}.{p2}.{p3?}",
                "foo.moo.bar",
                Some(&[("p1", "foo"), ("p2", "moo"), ("p3", "bar")]),
            ),
            (
                "{p1}.{p2}.{p3?}",
                "foo.moo",
                Some(&[("p1", "foo"), ("p2", "moo")]),
            ),
            ("{p1}-{p2}", "a-b-c", Some(&[("p1", "a-b"), ("p2", "c")])),
            (
                "{lang}-{region}",
                "en-US",
                Some(&[("lang", "en"), ("region", "US")]),
            ),
            (
                "{lang}-{region}a",
                "en-USa",
                Some(&[("lang", "en"), ("region", "US")]),
            ),
            (
                "a{lang}-{region}",
                "aen-US",
                Some(&[("lang", "en"), ("region", "US")]),
            ),
            (
                "a{lang}-{region}a",
                "AEN-USA",
                Some(&[("lang", "EN"), ("region", "US")]),
            ),
            ("{lang}-{region}a", "en-US", None),
            ("a{lang}-{region}", "en-US", None),
            ("{lang}-{region}", "en-", None),
            ("{lang}-{region}", "-US", None),
            (
                "{name:alpha}.html",
                "index.html",
                Some(&[("name", "index")]),
            ),
            ("{name:alpha}.html", "index2.html", None),
            (
                "{name}.{ext:regex(^(js|css)$)?}",
                "app.js",
                Some(&[("name", "app"), ("ext", "js")]),
            ),
            ("{name}.{ext:regex(^(js|css)$)?}", "app.png", None),
            (".{ext?}", ".txt", Some(&[("ext", "txt")])),
            (".{ext?}", "txt", None),
        ];
        assert_route_matches(&cases);
    }

    #[test]
    fn invalid_complex_segment_gets_the_reason() {
        let reason = rejection("", "files/{name}-{ext?}");
        assert!(reason.contains("only a period"), "{reason}");
        let reason = rejection("", "files/{name}{ext}");
        assert!(reason.contains("two parameters in a row"), "{reason}");
    }

    #[test]
    fn parse_and_match_never_panic() {
        // Every template of up to five characters from the parser's delimiters, a letter and
        // a two-byte character: parsing returns a result, and matching a few paths does too.
        let alphabet = [
            '{', '}', '(', ')', ':', '=', '?', '*', '/', '.', 'a', '\u{e9}',
        ];
        let paths = [
            segments(""),
            segments("a"),
            segments("a/a.a"),
            segments("\u{e9}.a/x"),
            // Three- and four-byte characters beside the delimiters, where byte arithmetic in
            // complex segments could land inside a character.
            segments("a.\u{20ac}"),
            segments("\u{1f600}.\u{e9}a.\u{1f600}"),
        ];
        let mut templates = vec![String::new()];
        for _ in 0..5 {
            let mut longer = Vec::new();
            for template in &templates {
                for c in alphabet {
                    let mut next = template.clone();
                    next.push(c);
                    longer.push(next);
                }
            }
            for template in &longer {
                if let Ok(route) = parse("", template) {
                    for path in &paths {
                        let _ = route.matches(path);
                    }
                }
            }
            templates = longer;
        }
    }

    #[test]
    fn complex_segment_on_long_path() {
        // Each literal is one search from the right, so a segment with thousands of `.` costs
        // one pass per literal, and the leftmost parameter takes the rest.
        let route = template("f/{a}.{b}.{c}");
        let segment = format!("p{}", ".q".repeat(2000));
        let values = route
            .matches(&segments(&format!("f/{segment}")))
            .expect("match");

        assert_eq!(values["c"], "q");
        assert_eq!(values["b"], "q");
        assert_eq!(values["a"], &segment[..segment.len() - 4]);

        let undotted = format!("f/{}", "p".repeat(4000));
        assert!(route.matches(&segments(&undotted)).is_none());
    }

    #[test]
    fn file_name_follows_aspnet_core() {
        let cases = [
            ("a/b/c.txt", true),
            ("hello.world.txt", true),
            (".gitignore", true),
            ("a/b/c", false),
            ("a/b.d/c", false),
            ("a/b.d/c/", false),
            ("x.", false),
            ("x..", false),
            ("", false),
        ];
        for (value, expected) in cases {
            assert_eq!(is_file_name(value), expected, "`{value}`");
        }
    }
}
