//! Fixtures for the tests of crates that read templates, parameter files and plans.

/// Encodes `text` as UTF-16 with a byte order mark, little-endian or big-endian, as Windows
/// PowerShell 5.1 writes a file with `>` or `Out-File -Encoding Unicode` (little-endian) and
/// with `Out-File -Encoding BigEndianUnicode`.
pub fn utf16_with_mark(text: &str, little_endian: bool) -> Vec<u8> {
    std::iter::once(0xFEFF_u16)
        .chain(text.encode_utf16())
        .flat_map(|unit| {
            if little_endian {
                unit.to_le_bytes()
            } else {
                unit.to_be_bytes()
            }
        })
        .collect()
}

/// Returns the line and column, both from 1 and the column in characters, where `needle` first
/// occurs in `text`, as the readers report a location.
///
/// # Panics
///
/// When `text` does not contain `needle`: the fixture is wrong.
#[allow(
    clippy::expect_used,
    reason = "a test fixture without the needle is a bug in the test"
)]
pub fn line_column_of(text: &str, needle: &str) -> (usize, usize) {
    let offset = text.find(needle).expect("needle in text");
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    (line, before[line_start..].chars().count() + 1)
}
