//! Percent-decoding of request path segments as Kestrel, the server under the Functions host,
//! decodes the request path before routing.
//!
//! Kestrel's `UrlDecoder` decodes every `%XX` escape, and a run of escapes that forms one UTF-8
//! character decodes to that character. Some escapes stay as written. `%2F` in either case does,
//! because decoding it would add a path separator. So do escapes that do not form valid UTF-8
//! (`%FF`, an overlong form, a surrogate) and a `%` without two hex digits. ASP.NET Core's
//! routing splits the decoded path at `/` and does not decode route values again, so a
//! route value keeps `%2F` (`/api/items/a%2Fb` gives `{id}` the value `a%2Fb`).

use std::borrow::Cow;

/// Decodes one path segment as Kestrel decodes the path. Borrows the segment when it contains
/// no `%`, which is the common case.
///
/// NOTE: Kestrel's decoder throws on `%00` ("The path contains null characters"), so the real
/// host fails such a request before routing, with a status not established here. Here `%00`
/// decodes to a NUL character, and the request is routed.
pub(super) fn decode_segment(segment: &str) -> Cow<'_, str> {
    // A byte search is cheaper than the decoder, and most segments contain no escape.
    if !segment.as_bytes().contains(&b'%') {
        return Cow::Borrowed(segment);
    }

    let bytes = segment.as_bytes();
    let mut decoded = String::with_capacity(segment.len());
    // Start of the text not yet copied to `decoded`.
    let mut copied = 0;
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] != b'%' {
            index += 1;
            continue;
        }
        let Some((character, escapes)) = decode_char(bytes, index) else {
            // The `%` stays as written, and scanning resumes after it.
            index += 1;
            continue;
        };

        decoded.push_str(&segment[copied..index]);
        decoded.push(character);
        index += 3 * escapes;
        copied = index;
    }
    decoded.push_str(&segment[copied..]);
    Cow::Owned(decoded)
}

/// Decodes the character that the escapes from `start` stand for, returning it with the number
/// of escapes it takes, or `None` when the escape at `start` stays as written.
fn decode_char(bytes: &[u8], start: usize) -> Option<(char, usize)> {
    let first = escaped_byte(bytes, start)?;
    let length = match first {
        0x00..=0x7F => 1,
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => return None,
    };

    let mut utf8 = [0u8; 4];
    for (offset, byte) in utf8.iter_mut().take(length).enumerate() {
        *byte = escaped_byte(bytes, start + 3 * offset)?;
    }
    // Rust's UTF-8 check rejects overlong forms, surrogates and values above U+10FFFF, as
    // Kestrel's decoder does.
    let character = std::str::from_utf8(&utf8[..length]).ok()?.chars().next()?;
    Some((character, length))
}

/// Returns the byte that the escape at `at` stands for, or `None` when there is no escape at
/// `at` or it is `%2F`, which Kestrel does not decode in a path.
fn escaped_byte(bytes: &[u8], at: usize) -> Option<u8> {
    let escape = bytes.get(at..at + 3)?;
    if escape[0] != b'%' {
        return None;
    }
    let high = char::from(escape[1]).to_digit(16)?;
    let low = char::from(escape[2]).to_digit(16)?;
    let byte = u8::try_from(high * 16 + low).ok()?;
    (byte != b'/').then_some(byte)
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
