//! String functions with more than a line of logic.

use super::*;

pub(super) fn utf16(text: &str) -> Vec<u16> {
    text.encode_utf16().collect()
}

pub(super) fn from_utf16(units: &[u16]) -> String {
    String::from_utf16_lossy(units)
}

/// Simple per-character case folding that keeps the UTF-16 length, for case-insensitive
/// searches whose result is an index.
pub(super) fn fold_case(text: &str) -> String {
    text.chars()
        .map(|ch| {
            let mut lower = ch.to_lowercase();
            match (lower.next(), lower.next()) {
                (Some(single), None) if single.len_utf16() == ch.len_utf16() => single,
                _ => ch,
            }
        })
        .collect()
}

pub(super) fn json(call: &Args<'_>) -> FnResult {
    call.exactly(1)?;
    match &call.args[0] {
        Value::Null => Ok(Value::Object(Object::new())),
        Value::String(text) if text.trim().is_empty() => Ok(Value::Null),
        Value::String(text) => parse_json_text(call, text),
        other => Err(call.type_error(0, "a string", other)),
    }
}

pub(super) fn parse_json_text(call: &Args<'_>, text: &str) -> FnResult {
    // Newtonsoft, which the engine uses, also accepts single-quoted strings.
    let node = parse_text(
        text,
        ReadOptions {
            single_quotes: true,
        },
    )
    .map_err(|failure| {
        FnError::new(
            format!(
                "`{}` got invalid JSON `{}`: {}",
                call.name,
                shorten(text),
                failure.message
            ),
            "pass valid JSON text",
        )
    })?;
    Ok(crate::eval::literal_value(&node))
}

pub(super) fn decode_base64(call: &Args<'_>, index: usize) -> Result<Vec<u8>, FnError> {
    let text = call.str(index)?;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| {
            FnError::new(
                format!("`{}` got invalid base64 `{}`", call.name, shorten(text)),
                "pass base64 text with padding",
            )
        })
}

pub(super) fn data_uri_to_string(call: &Args<'_>) -> FnResult {
    call.exactly(1)?;
    let text = call.str(0)?;
    let invalid = || {
        FnError::new(
            format!(
                "`dataUriToString` got an invalid data URI `{}`",
                shorten(text)
            ),
            "pass a URI such as `data:;base64,SGVsbG8=`",
        )
    };
    let rest = text.strip_prefix("data:").ok_or_else(invalid)?;
    let (metadata, data) = rest.split_once(',').ok_or_else(invalid)?;
    if metadata.ends_with(";base64") {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|_| invalid())?;
        return Ok(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    }
    Ok(Value::String(
        percent_decode_str(data).decode_utf8_lossy().into_owned(),
    ))
}

/// RFC 3986 unreserved characters stay; everything else is percent-encoded with upper-case
/// hex, as .NET `Uri.EscapeDataString` does.
pub(super) const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub(super) fn uri(call: &Args<'_>) -> FnResult {
    call.exactly(2)?;
    let (base, relative) = (call.str(0)?, call.str(1)?);
    let base = url::Url::parse(base).map_err(|_| {
        FnError::new(
            format!("`uri` base `{}` is not an absolute URI", shorten(base)),
            "pass an absolute URI such as `https://example.com/path/` as the base",
        )
    })?;
    let joined = base.join(relative).map_err(|_| {
        FnError::new(
            format!("`uri` cannot combine the base with `{}`", shorten(relative)),
            "pass a valid relative URI",
        )
    })?;
    Ok(Value::String(joined.to_string()))
}

/// `parseUri(uri)`: the object `{scheme, host, port, path, query}` of an absolute URI.
///
/// NOTE: the field set follows the documented shape; the port (the scheme's default when the
/// URI has none) and the query with its leading `?` follow .NET `System.Uri`, which the engine
/// is built on, and are not verified against real-engine output.
pub(super) fn parse_uri(call: &Args<'_>) -> FnResult {
    call.exactly(1)?;
    let text = call.str(0)?;
    let parsed = url::Url::parse(text).map_err(|_| {
        FnError::new(
            format!(
                "`parseUri` got `{}`, which is not an absolute URI",
                shorten(text)
            ),
            "pass an absolute URI such as `https://example.com/path?query`",
        )
    })?;
    let mut object = Object::new();
    object.insert("scheme", Value::String(parsed.scheme().to_owned()));
    object.insert(
        "host",
        Value::String(parsed.host_str().unwrap_or_default().to_owned()),
    );
    match parsed.port_or_known_default() {
        Some(port) => object.insert("port", Value::Int(i64::from(port))),
        None => object.insert("port", Value::Null),
    }
    object.insert("path", Value::String(parsed.path().to_owned()));
    let query = parsed
        .query()
        .map(|query| format!("?{query}"))
        .unwrap_or_default();
    object.insert("query", Value::String(query));
    Ok(Value::Object(object))
}

/// `buildUri(components)`: the URI of an object shaped like `parseUri`'s result; `scheme` and
/// `host` are required, a port equal to the scheme's default is left out, and a missing path
/// becomes `/`.
pub(super) fn build_uri(call: &Args<'_>) -> FnResult {
    call.exactly(1)?;
    let components = call.object(0)?;
    let field = |name: &str| {
        components
            .get(name)
            .filter(|value| !matches!(value, Value::Null))
    };
    let text_field = |name: &str| -> Result<Option<&str>, FnError> {
        match field(name) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.as_str())),
            Some(other) => Err(FnError::new(
                format!(
                    "`buildUri` field `{name}` is {}, not a string",
                    other.type_name()
                ),
                format!("give `{name}` a string value"),
            )),
        }
    };
    let missing = |name: &str| {
        FnError::new(
            format!("`buildUri` needs the field `{name}`"),
            "pass an object with at least `scheme` and `host`",
        )
    };
    let scheme = text_field("scheme")?.ok_or_else(|| missing("scheme"))?;
    let host = text_field("host")?.ok_or_else(|| missing("host"))?;
    let mut built = url::Url::parse(&format!("{scheme}://{host}/")).map_err(|_| {
        FnError::new(
            format!(
                "`buildUri` cannot build a URI from scheme `{}` and host `{}`",
                shorten(scheme),
                shorten(host)
            ),
            "pass a scheme such as `https` and a host name",
        )
    })?;
    match field("port") {
        None => {}
        Some(Value::Int(port)) => {
            let port = u16::try_from(*port).map_err(|_| {
                FnError::new(
                    format!("`buildUri` port `{port}` is out of range"),
                    "pass a port from 0 to 65535",
                )
            })?;
            let _ = built.set_port(Some(port));
        }
        Some(other) => {
            return Err(FnError::new(
                format!(
                    "`buildUri` field `port` is {}, not an int",
                    other.type_name()
                ),
                "give `port` an int value",
            ))
        }
    }
    if let Some(path) = text_field("path")? {
        built.set_path(path);
    }
    if let Some(query) = text_field("query")? {
        let query = query.strip_prefix('?').unwrap_or(query);
        built.set_query((!query.is_empty()).then_some(query));
    }
    Ok(Value::String(built.to_string()))
}

pub(super) fn format(call: &Args<'_>) -> FnResult {
    call.between(1, usize::MAX)?;
    let pattern = call.str(0)?;
    composite_format(pattern, &call.args[1..])
        .map(Value::String)
        .map_err(|message| FnError::new(message, "match each `{n}` with an argument of `format`"))
}

pub(super) fn hash_strings<'a>(call: &'a Args<'a>) -> Result<Vec<&'a str>, FnError> {
    call.between(1, usize::MAX)?;
    (0..call.args.len()).map(|index| call.str(index)).collect()
}

pub(super) fn pad_left(call: &Args<'_>) -> FnResult {
    call.between(2, 3)?;
    let text = match &call.args[0] {
        Value::String(text) => text.clone(),
        Value::Int(number) => number.to_string(),
        other => return Err(call.type_error(0, "a string or an int", other)),
    };
    let width = call.int(1)?;
    let pad = if call.args.len() == 3 {
        let pad = call.str(2)?;
        let mut chars = pad.chars();
        match (chars.next(), chars.next()) {
            (Some(single), None) => single,
            _ => {
                return Err(FnError::new(
                    format!("`padLeft` padding `'{pad}'` must be exactly one character"),
                    "pass a single character such as `'0'`",
                ))
            }
        }
    } else {
        ' '
    };
    // NOTE: the engine's own limit on the width is not documented; this bound only keeps a
    // template from exhausting memory.
    if width > MAX_PAD_WIDTH {
        return Err(FnError::new(
            format!("`padLeft` width `{width}` is larger than {MAX_PAD_WIDTH}"),
            "use a smaller total length",
        ));
    }
    let length = text.encode_utf16().count() as i64;
    let missing = (width - length).max(0) as usize;
    Ok(Value::String(format!(
        "{}{text}",
        pad.to_string().repeat(missing)
    )))
}

pub(super) const MAX_PAD_WIDTH: i64 = 1_000_000;

pub(super) fn substring(call: &Args<'_>) -> FnResult {
    call.between(2, 3)?;
    let units = utf16(call.str(0)?);
    let start = call.int(1)?;
    let length = if call.args.len() == 3 {
        call.int(2)?
    } else {
        units.len() as i64 - start
    };
    let total = units.len() as i64;
    if start < 0 || start > total || length < 0 || length > total - start {
        return Err(FnError::new(
            format!(
                "`substring` start `{start}` and length `{length}` are out of bounds for a string of length {total}"
            ),
            "keep start and start + length within the string",
        ));
    }
    let (start, end) = (start as usize, (start + length) as usize);
    Ok(Value::String(from_utf16(&units[start..end])))
}

pub(super) fn split(call: &Args<'_>) -> FnResult {
    call.exactly(2)?;
    let text = call.str(0)?;
    let separators: Vec<String> = match &call.args[1] {
        Value::String(separator) => vec![separator.clone()],
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(separator) => Ok(separator.clone()),
                other => Err(call.type_error(1, "a string or an array of strings", other)),
            })
            .collect::<Result<_, _>>()?,
        other => return Err(call.type_error(1, "a string or an array of strings", other)),
    };

    let separators: Vec<&String> = separators.iter().filter(|sep| !sep.is_empty()).collect();
    if separators.is_empty() {
        return Ok(Value::Array(vec![Value::String(text.to_owned())]));
    }

    // .NET `Split(string[])` tries the separators in order at each position.
    let mut parts = Vec::new();
    let mut start = 0;
    let mut position = 0;
    while position < text.len() {
        let rest = &text[position..];
        if let Some(separator) = separators.iter().find(|sep| rest.starts_with(sep.as_str())) {
            parts.push(Value::String(text[start..position].to_owned()));
            position += separator.len();
            start = position;
        } else {
            position += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    parts.push(Value::String(text[start..].to_owned()));
    Ok(Value::Array(parts))
}

/// Matches `*` wildcards (any run of characters) iteratively, backtracking to the last `*`.
pub(super) fn wildcard_match(text: &[char], pattern: &[char]) -> bool {
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|ch| *ch == '*')
}
