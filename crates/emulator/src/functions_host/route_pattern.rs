//! Syntax of route templates, read as ASP.NET Core's `RoutePatternParser` and
//! `RouteParameterParser` read them (dotnet/aspnetcore, `src/Http/Routing/src/Patterns`).
//!
//! This layer splits a template into segments and parts and a parameter into its name,
//! constraint texts and default, and applies the checks those classes make. It does not
//! resolve constraint names: [`super::route`] does that, as `DefaultInlineConstraintResolver`
//! does after parsing.

/// One part of a path segment. A segment with more than one part is a complex segment such
/// as `{name}.{ext}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Part {
    /// Literal text with doubled braces already read as single braces.
    Literal(String),
    Parameter(ParameterSyntax),
}

/// A parameter as written between braces, before its constraints are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ParameterSyntax {
    pub(super) name: String,
    pub(super) kind: ParameterKind,
    /// Constraint texts in order, such as `int` or `regex(^a$)`.
    pub(super) constraints: Vec<String>,
    pub(super) default: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ParameterKind {
    Standard,
    /// Written with a trailing `?`.
    Optional,
    /// Written with a leading `*` or `**`.
    CatchAll,
}

/// Characters a parameter name may not contain.
const INVALID_NAME_CHARACTERS: [char; 5] = ['/', '{', '}', '?', '*'];

/// Parses a whole template into segments of parts, rejecting what `RoutePatternParser.Parse`
/// rejects. The error is a sentence without the template, which the caller adds.
pub(super) fn parse_pattern(template: &str) -> Result<Vec<Vec<Part>>, String> {
    let text = trim_prefix(template)?;
    let mut segments: Vec<Vec<Part>> = Vec::new();
    let mut names: Vec<String> = Vec::new();

    let mut index = 0;
    while index < text.len() {
        if text.as_bytes()[index] == b'/' {
            return Err(
                "it has two `/` in a row; separate them with a literal or a parameter".to_string(),
            );
        }
        let (parts, end) = parse_segment(text, index)?;
        for part in &parts {
            if let Part::Parameter(parameter) = part {
                check_parameter_name(&parameter.name, &names)?;
                names.push(parameter.name.clone());
            }
        }
        check_segment(&parts)?;
        segments.push(parts);
        // `end` is at the `/` after the segment or at the end of the text.
        index = end + 1;
    }

    // A catch-all parameter must be the last part of the last segment.
    let last = segments.len().saturating_sub(1);
    for (position, parts) in segments.iter().enumerate() {
        for (part_position, part) in parts.iter().enumerate() {
            if let Part::Parameter(parameter) = part {
                let is_last = position == last && part_position + 1 == parts.len();
                if parameter.kind == ParameterKind::CatchAll && !is_last {
                    return Err(format!(
                        "the catch-all parameter `{}` must be the last part of the template",
                        parameter.name
                    ));
                }
            }
        }
    }

    Ok(segments)
}

/// Removes one leading `/` or `~/`. A `~` not followed by `/` is an error.
fn trim_prefix(template: &str) -> Result<&str, String> {
    if let Some(rest) = template.strip_prefix("~/") {
        Ok(rest)
    } else if let Some(rest) = template.strip_prefix('/') {
        Ok(rest)
    } else if template.starts_with('~') {
        Err("it starts with `~` not followed by `/`".to_string())
    } else {
        Ok(template)
    }
}

/// Parses the segment that starts at `start`, returning its parts and the index of the `/`
/// that ends it (or the length of the text).
fn parse_segment(text: &str, start: usize) -> Result<(Vec<Part>, usize), String> {
    let bytes = text.as_bytes();
    let mut parts = Vec::new();
    let mut index = start;
    loop {
        let next = if bytes[index] == b'{' {
            match bytes.get(index + 1) {
                None => return Err(mismatched_brace()),
                // A doubled brace is a literal brace.
                Some(b'{') => parse_literal(text, index, &mut parts)?,
                Some(_) => parse_parameter(text, index, &mut parts)?,
            }
        } else {
            parse_literal(text, index, &mut parts)?
        };
        index = next;
        if index >= bytes.len() || bytes[index] == b'/' {
            return Ok((parts, index));
        }
    }
}

/// Reads literal text from `start` up to a `/`, a parameter or the end, returning the index
/// after it.
fn parse_literal(text: &str, start: usize, parts: &mut Vec<Part>) -> Result<usize, String> {
    let bytes = text.as_bytes();
    let mut index = start;
    while index < bytes.len() {
        match bytes[index] {
            b'/' => break,
            b'{' => match bytes.get(index + 1) {
                None => return Err(mismatched_brace()),
                Some(b'{') => index += 1,
                // A parameter starts here.
                Some(_) => break,
            },
            b'}' => match bytes.get(index + 1) {
                Some(b'}') => index += 1,
                _ => return Err(mismatched_brace()),
            },
            _ => {}
        }
        index += 1;
    }

    let literal = text[start..index].replace("}}", "}").replace("{{", "{");
    if literal.contains('?') {
        return Err(format!(
            "the literal `{literal}` contains `?`, which only marks an optional parameter"
        ));
    }
    parts.push(Part::Literal(literal));
    Ok(index)
}

/// Reads a parameter from the `{` at `start` to its closing `}`, returning the index after
/// it. Inside a parameter `{{` and `}}` stand for single braces, and a single `{` is an error.
fn parse_parameter(text: &str, start: usize, parts: &mut Vec<Part>) -> Result<usize, String> {
    let bytes = text.as_bytes();
    let mut index = start + 1;
    let end = loop {
        match bytes.get(index) {
            None => return Err(mismatched_brace()),
            Some(b'{') if bytes.get(index + 1) == Some(&b'{') => index += 2,
            Some(b'{') => {
                return Err(format!(
                    "the parameter starting `{}` has a `{{` inside it; write a literal brace \
                     there as `{{{{` or `}}}}`",
                    &text[start..=index]
                ))
            }
            Some(b'}') if bytes.get(index + 1) == Some(&b'}') => index += 2,
            Some(b'}') => break index + 1,
            Some(_) => index += 1,
        }
    };

    let inside = &text[start + 1..end - 1];
    if inside.is_empty() {
        return Err("a parameter `{}` needs a name".to_string());
    }
    let decoded = inside.replace("}}", "}").replace("{{", "{");
    let parameter = parse_parameter_text(&decoded);

    if decoded.starts_with('*') && decoded.ends_with('?') {
        return Err(format!(
            "the catch-all parameter `{{{decoded}}}` cannot also be optional"
        ));
    }
    if parameter.kind == ParameterKind::Optional && parameter.default.is_some() {
        return Err(format!(
            "the parameter `{{{decoded}}}` is optional and has a default value; use one of them"
        ));
    }
    parts.push(Part::Parameter(parameter));
    Ok(end)
}

/// Splits the text between a parameter's braces into name, kind, constraints and default,
/// as `RouteParameterParser.ParseRouteParameter` does. It returns no error, because
/// [`check_parameter_name`] and constraint resolution reject what it cannot read.
pub(super) fn parse_parameter_text(parameter: &str) -> ParameterSyntax {
    let bytes = parameter.as_bytes();
    let mut kind = ParameterKind::Standard;
    let mut start = 0usize;
    if parameter.starts_with("**") {
        kind = ParameterKind::CatchAll;
        start = 2;
    } else if parameter.starts_with('*') {
        kind = ParameterKind::CatchAll;
        start = 1;
    }
    // `end` is exclusive, unlike the inclusive index of the original.
    let mut end = bytes.len();
    if parameter.ends_with('?') {
        kind = ParameterKind::Optional;
        end -= 1;
    }

    // The name runs to the first `:` or `=` that is not its first character, so `{:x}` and
    // `{=}` are names.
    let delimiter =
        (start..end).find(|&index| index != start && matches!(bytes[index], b':' | b'='));
    let name_end = delimiter.unwrap_or(end.max(start));
    let name = parameter
        .get(start..name_end)
        .unwrap_or_default()
        .to_string();

    // The original steps back onto the name's last character before it reads constraints, so
    // a name ending in `(`, as in `{a(:b)}`, starts the arguments of a constraint.
    let from = delimiter.map_or(end, |index| index - 1);
    let (constraints, rest) = parse_constraints(parameter, from, end);
    let default = match rest {
        Some(index) if bytes[index] == b'=' => Some(parameter[index + 1..end].to_string()),
        _ => None,
    };

    ParameterSyntax {
        name,
        kind,
        constraints,
        default,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ConstraintState {
    /// Between constraints, looking for `:` or `=`.
    Start,
    /// In a constraint's name.
    Name,
    /// After the `(` of a constraint's arguments.
    Arguments,
}

/// Reads constraints from `from` (the last character of the name) up to `end`, returning them
/// and the index of the `=` that starts the default, if one does.
///
/// This is the state machine of `RouteParameterParser.ParseConstraints`. A `)` ends the
/// arguments only when it is followed by `:`, `=` or the end of the parameter. A `:` or `=`
/// inside the arguments ends the constraint only when no `)` follows anywhere later, and
/// otherwise the reading jumps past the next `)`. So in `regex(^(a|b):c$)` the first `)` is
/// followed by `:` and ends the constraint: the constraints are `regex(^(a|b)` and `c$)`.
fn parse_constraints(text: &str, from: usize, end: usize) -> (Vec<String>, Option<usize>) {
    let bytes = text.as_bytes();
    let mut constraints = Vec::new();
    let mut state = ConstraintState::Start;
    let mut start = from;
    let mut index = from;

    while index < end {
        let c = bytes[index];
        match state {
            ConstraintState::Start => match c {
                b':' => {
                    state = ConstraintState::Name;
                    start = index + 1;
                }
                b'(' => state = ConstraintState::Arguments,
                b'=' => return (constraints, Some(index)),
                _ => {}
            },
            ConstraintState::Name => match c {
                b':' => {
                    push_nonempty(&mut constraints, &text[start..index]);
                    start = index + 1;
                }
                b'(' => state = ConstraintState::Arguments,
                b'=' => {
                    push_nonempty(&mut constraints, &text[start..index]);
                    return (constraints, Some(index));
                }
                _ => {}
            },
            ConstraintState::Arguments => match c {
                b')' => match bytes.get(index + 1).filter(|_| index + 1 < end) {
                    None => {
                        constraints.push(text[start..=index].to_string());
                        return (constraints, None);
                    }
                    Some(b':') => {
                        constraints.push(text[start..=index].to_string());
                        state = ConstraintState::Start;
                        start = index + 1;
                    }
                    Some(b'=') => {
                        constraints.push(text[start..=index].to_string());
                        return (constraints, Some(index + 1));
                    }
                    Some(_) => {}
                },
                b':' | b'=' => match text[index + 1..].find(')') {
                    // The original searches the whole parameter text, including a trailing
                    // `?` beyond `end`, which cannot be a `)`.
                    Some(offset) => index += offset + 1,
                    None => {
                        constraints.push(text[start..index].to_string());
                        if c == b'=' {
                            return (constraints, Some(index));
                        }
                        state = ConstraintState::Name;
                        start = index + 1;
                    }
                },
                _ => {}
            },
        }
        index += 1;
    }

    // The end of the parameter ends the constraint being read.
    match state {
        ConstraintState::Start => {}
        ConstraintState::Name => push_nonempty(&mut constraints, &text[start..end]),
        ConstraintState::Arguments => constraints.push(text[start..end.max(start)].to_string()),
    }
    (constraints, None)
}

fn push_nonempty(constraints: &mut Vec<String>, text: &str) {
    if !text.is_empty() {
        constraints.push(text.to_string());
    }
}

/// Rejects an empty name, a name with a character of [`INVALID_NAME_CHARACTERS`] and a name
/// already used in the template, compared ignoring ASCII case (ASP.NET Core ignores the case
/// of every letter).
fn check_parameter_name(name: &str, used: &[String]) -> Result<(), String> {
    if name.is_empty() || name.contains(INVALID_NAME_CHARACTERS) {
        return Err(format!(
            "the parameter name `{name}` is invalid; a name must be non-empty and must not \
             contain `/`, `{{`, `}}`, `?` or `*`"
        ));
    }
    if used.iter().any(|other| other.eq_ignore_ascii_case(name)) {
        return Err(format!(
            "the parameter name `{name}` appears more than once in the template"
        ));
    }
    Ok(())
}

/// Applies `RoutePatternParser.IsSegmentValid` to a segment with more than one part.
fn check_segment(parts: &[Part]) -> Result<(), String> {
    if parts.len() < 2 {
        return Ok(());
    }
    let text = segment_text(parts);

    for (position, part) in parts.iter().enumerate() {
        let Part::Parameter(parameter) = part else {
            continue;
        };
        match parameter.kind {
            ParameterKind::CatchAll => {
                return Err(format!(
                    "the segment `{text}` has a catch-all parameter beside other parts; a \
                     catch-all must be a whole segment"
                ))
            }
            ParameterKind::Optional if position + 1 != parts.len() => {
                return Err(format!(
                    "in the segment `{text}` the optional parameter `{}` is not the last part",
                    parameter.name
                ))
            }
            ParameterKind::Optional => {
                let previous = &parts[position - 1];
                if previous != &Part::Literal(".".to_string()) {
                    return Err(format!(
                        "in the segment `{text}` the optional parameter `{}` follows `{}`; only \
                         a period (`.`) may come before an optional parameter in a segment",
                        parameter.name,
                        part_text(previous)
                    ));
                }
            }
            ParameterKind::Standard => {}
        }
    }

    let consecutive = parts
        .windows(2)
        .any(|pair| matches!(pair, [Part::Parameter(_), Part::Parameter(_)]));
    if consecutive {
        return Err(format!(
            "the segment `{text}` has two parameters in a row; separate them with literal text"
        ));
    }
    Ok(())
}

/// Writes a segment back in template form for messages.
pub(super) fn segment_text(parts: &[Part]) -> String {
    parts.iter().map(part_text).collect()
}

fn part_text(part: &Part) -> String {
    match part {
        Part::Literal(text) => text.clone(),
        Part::Parameter(parameter) => {
            let mut text = String::from("{");
            match parameter.kind {
                ParameterKind::CatchAll => text.push('*'),
                ParameterKind::Standard | ParameterKind::Optional => {}
            }
            text.push_str(&parameter.name);
            for constraint in &parameter.constraints {
                text.push(':');
                text.push_str(constraint);
            }
            if let Some(default) = &parameter.default {
                text.push('=');
                text.push_str(default);
            }
            if parameter.kind == ParameterKind::Optional {
                text.push('?');
            }
            text.push('}');
            text
        }
    }
}

fn mismatched_brace() -> String {
    "it has a `{` or `}` without its pair; write a literal brace as `{{` or `}}`".to_string()
}
