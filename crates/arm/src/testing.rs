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
