//! Percent-decoding of request paths and query strings as ASP.NET Core decodes them under
//! the Functions host.
//!
//! Both decode every `%XX` escape, and a run of escapes that forms UTF-8 decodes to those
//! characters. Escapes that do not form valid UTF-8 (`%FF`, an overlong form, a surrogate) and
//! a `%` without two hex digits stay as written, as in Kestrel's `UrlDecoder` and .NET's
//! `Uri.UnescapeDataString`.
//!
//! A path segment also keeps `%2F` in either case, because Kestrel does not decode it: that
//! would add a path separator. ASP.NET Core's routing splits the decoded path at `/` and does
//! not decode route values again, so a route value keeps `%2F` (`/api/items/a%2Fb` gives
//! `{id}` the value `a%2Fb`). A query name or value reads `+` as a space.

use std::borrow::Cow;

/// Decodes one path segment as Kestrel decodes the path. Borrows the segment when it contains
/// no `%`, which is the common case.
///
/// NOTE: Kestrel's decoder throws on `%00` ("The path contains null characters"), so the real
/// host fails such a request before routing, with a status not established here. Here `%00`
/// decodes to a NUL character, and the request is routed.
pub(super) fn decode_segment(segment: &str) -> Cow<'_, str> {
    decode(segment, Form::PathSegment)
}

/// Decodes one name or value of a query as ASP.NET Core does. Borrows the text when it
/// contains no `%` and no `+`.
pub(super) fn decode_query_part(text: &str) -> Cow<'_, str> {
    decode(text, Form::QueryPart)
}

/// The part of a URL being decoded, which decides the two rules in which they differ.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `%2F` stays as written.
    PathSegment,
    /// `+` is a space.
    QueryPart,
}

fn decode(text: &str, form: Form) -> Cow<'_, str> {
    let plus_is_space = form == Form::QueryPart;
    // A byte search is cheaper than the decoder, and most texts contain no escape.
    let found = match form {
        Form::PathSegment => memchr::memchr(b'%', text.as_bytes()),
        Form::QueryPart => memchr::memchr2(b'%', b'+', text.as_bytes()),
    };
    if found.is_none() {
        return Cow::Borrowed(text);
    }

    let bytes = text.as_bytes();
    let mut decoded = String::with_capacity(text.len());
    let mut index = 0;
    while index < bytes.len() {
        // A run of consecutive escapes is decoded together, because one UTF-8 sequence may
        // span several of them.
        let mut run = Vec::new();
        let mut end = index;
        while let Some(byte) = escaped_byte(bytes, end, form) {
            run.push(byte);
            end += 3;
        }
        if run.is_empty() {
            let next = text[index..].chars().next().unwrap_or(' ');
            decoded.push(if plus_is_space && next == '+' {
                ' '
            } else {
                next
            });
            index += next.len_utf8();
            continue;
        }

        let mut consumed = 0;
        for chunk in run.utf8_chunks() {
            decoded.push_str(chunk.valid());
            consumed += chunk.valid().len();
            // Each byte of the run came from three characters of the text.
            let invalid = chunk.invalid().len();
            let start = index + 3 * consumed;
            decoded.push_str(&text[start..start + 3 * invalid]);
            consumed += invalid;
        }
        index = end;
    }
    Cow::Owned(decoded)
}

/// Returns the byte of the escape `%XX` at `index`, or `None` when there is no escape there or
/// `form` keeps it as written.
fn escaped_byte(bytes: &[u8], index: usize, form: Form) -> Option<u8> {
    let escape = bytes.get(index..index + 3)?;
    if escape[0] != b'%' {
        return None;
    }
    let high = char::from(escape[1]).to_digit(16)?;
    let low = char::from(escape[2]).to_digit(16)?;
    let byte = u8::try_from(high * 16 + low).ok()?;
    (form == Form::QueryPart || byte != b'/').then_some(byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_segment_cases() {
        let cases = [
            ("plain", "plain"),
            ("a%20b", "a b"),
            ("a%2Fb", "a%2Fb"),
            ("a%2fb", "a%2fb"),
            // One pass only: `%25` gives `%`, and the `2F` after it is not decoded again.
            ("a%252Fb", "a%2Fb"),
            ("%C3%A9t%C3%A9", "\u{e9}t\u{e9}"),
            ("%E2%82%AC", "\u{20ac}"),
            ("%F0%9F%98%80", "\u{1f600}"),
            // Invalid UTF-8 stays escaped, and the valid escapes around it are decoded.
            ("%FF%41", "%FFA"),
            ("%C3%28", "%C3("),
            ("%E2%82%28", "%E2%82("),
            // Overlong `/` and a UTF-16 surrogate.
            ("%C0%AF", "%C0%AF"),
            ("%ED%A0%80", "%ED%A0%80"),
            // A `%` without two hex digits, also at the end.
            ("100%", "100%"),
            ("%4", "%4"),
            ("%zz%41", "%zzA"),
            ("\u{e9}%41", "\u{e9}A"),
        ];
        for (segment, expected) in cases {
            assert_eq!(decode_segment(segment), expected, "{segment}");
        }
    }

    #[test]
    fn decode_segment_borrows_without_escape() {
        assert!(matches!(decode_segment("items"), Cow::Borrowed("items")));
    }
}
