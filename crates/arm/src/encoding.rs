//! Decoding of JSON files written as UTF-8 or as UTF-16 with a byte order mark.
//!
//! In Windows PowerShell 5.1, `>` is `Out-File` without parameters, whose default encoding is
//! `Unicode`, UTF-16LE (Microsoft Learn, "Out-File"), written with a byte order mark as every
//! Unicode encoding there except UTF-7 (Microsoft Learn, "about_Character_Encoding"). So a
//! plan saved with `terraform show -json plan > plan.json` arrives in that encoding. The decoded
//! text starts with U+FEFF as a UTF-8 file with a byte order mark does, so that the readers,
//! which skip that mark, and their line and column counts treat both alike.

use std::path::{Path, PathBuf};

/// A file whose bytes are not UTF-8 text, nor UTF-16 text with a byte order mark.
#[derive(Debug, thiserror::Error)]
pub enum EncodingError {
    /// The first two bytes are an ASCII character and a zero byte (or the reverse), which
    /// UTF-8 JSON never starts with, because JSON text starts with an ASCII character.
    #[error("`{}` is {encoding} text without a byte order mark", path.display())]
    Utf16WithoutMark {
        path: PathBuf,
        encoding: &'static str,
    },

    #[error("`{}` is {encoding} text with {reason}", path.display())]
    InvalidUtf16 {
        path: PathBuf,
        encoding: &'static str,
        /// Description of the fault, with the byte of the file where it is.
        reason: String,
    },

    #[error("`{}` is {encoding} text (it starts with that byte order mark), which is not read", path.display())]
    Utf32 {
        path: PathBuf,
        encoding: &'static str,
    },

    #[error("`{}` is not valid UTF-8: invalid byte 0x{byte:02X} at line {line}, column {column}", path.display())]
    InvalidUtf8 {
        path: PathBuf,
        byte: u8,
        line: usize,
        /// Column in characters, counted from 1.
        column: usize,
    },
}

impl EncodingError {
    /// Returns the next step for the user.
    pub fn help_text(&self) -> &'static str {
        match self {
            EncodingError::Utf16WithoutMark { .. } | EncodingError::Utf32 { .. } => {
                "save the file as UTF-8, or as UTF-16 with a byte order mark; in PowerShell, pipe the output to `Out-File -Encoding utf8 <file>`"
            }
            EncodingError::InvalidUtf16 { .. } => {
                "the file is damaged or was cut off: write it again, as UTF-8 if you can (in PowerShell, pipe the output to `Out-File -Encoding utf8 <file>`)"
            }
            EncodingError::InvalidUtf8 { .. } => {
                "save the file as UTF-8, or as UTF-16 with a byte order mark; an editor shows the file's encoding and can convert it"
            }
        }
    }
}

impl miette::Diagnostic for EncodingError {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        Some(Box::new("arm::encoding"))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        Some(Box::new(self.help_text()))
    }
}

/// Byte order marks of the encodings that are recognised. UTF-32LE's mark starts with
/// UTF-16LE's, so it is tested first.
const UTF32_LE_MARK: [u8; 4] = [0xFF, 0xFE, 0x00, 0x00];
const UTF32_BE_MARK: [u8; 4] = [0x00, 0x00, 0xFE, 0xFF];
const UTF16_LE_MARK: [u8; 2] = [0xFF, 0xFE];
const UTF16_BE_MARK: [u8; 2] = [0xFE, 0xFF];

/// Decodes the bytes of the file at `path`: UTF-8, with or without a byte order mark, or
/// UTF-16LE or UTF-16BE with one. A decoded UTF-16 text starts with U+FEFF.
///
/// # Errors
///
/// [`EncodingError`] for UTF-16 without a byte order mark, UTF-16 with an unpaired surrogate
/// or an odd number of bytes, UTF-32, and bytes that are not valid UTF-8.
pub fn decode_text(path: &Path, bytes: Vec<u8>) -> Result<String, EncodingError> {
    if bytes.starts_with(&UTF32_LE_MARK) || bytes.starts_with(&UTF32_BE_MARK) {
        let encoding = if bytes[0] == 0xFF {
            "UTF-32LE"
        } else {
            "UTF-32BE"
        };
        return Err(EncodingError::Utf32 {
            path: path.to_path_buf(),
            encoding,
        });
    }
    if bytes.starts_with(&UTF16_LE_MARK) {
        return decode_utf16(path, &bytes, ByteOrder::Little);
    }
    if bytes.starts_with(&UTF16_BE_MARK) {
        return decode_utf16(path, &bytes, ByteOrder::Big);
    }
    if let [first, second, ..] = bytes[..] {
        let encoding = match (first, second) {
            (1..=0x7F, 0) => Some("UTF-16LE"),
            (0, 1..=0x7F) => Some("UTF-16BE"),
            _ => None,
        };
        if let Some(encoding) = encoding {
            return Err(EncodingError::Utf16WithoutMark {
                path: path.to_path_buf(),
                encoding,
            });
        }
    }
    String::from_utf8(bytes).map_err(|error| {
        let bytes = error.as_bytes();
        let valid = error.utf8_error().valid_up_to();
        // The bytes before `valid` are UTF-8, so the prefix decodes.
        let before = std::str::from_utf8(&bytes[..valid]).unwrap_or_default();
        let before = before.strip_prefix('\u{feff}').unwrap_or(before);
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        EncodingError::InvalidUtf8 {
            path: path.to_path_buf(),
            byte: bytes.get(valid).copied().unwrap_or_default(),
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    })
}

#[derive(Clone, Copy)]
enum ByteOrder {
    Little,
    Big,
}

impl ByteOrder {
    fn encoding(self) -> &'static str {
        match self {
            ByteOrder::Little => "UTF-16LE",
            ByteOrder::Big => "UTF-16BE",
        }
    }
}

/// Decodes UTF-16 `bytes` that start with a byte order mark, keeping the mark as U+FEFF.
fn decode_utf16(path: &Path, bytes: &[u8], order: ByteOrder) -> Result<String, EncodingError> {
    let invalid = |reason: String| EncodingError::InvalidUtf16 {
        path: path.to_path_buf(),
        encoding: order.encoding(),
        reason,
    };
    if !bytes.len().is_multiple_of(2) {
        return Err(invalid(format!(
            "an odd number of bytes ({}), so its last character is cut off",
            bytes.len()
        )));
    }
    let units = bytes.chunks_exact(2).map(|pair| match order {
        ByteOrder::Little => u16::from_le_bytes([pair[0], pair[1]]),
        ByteOrder::Big => u16::from_be_bytes([pair[0], pair[1]]),
    });

    let mut text = String::with_capacity(bytes.len());
    let mut offset = 0;
    for decoded in char::decode_utf16(units) {
        match decoded {
            Ok(character) => {
                text.push(character);
                offset += 2 * character.len_utf16();
            }
            Err(error) => {
                return Err(invalid(format!(
                    "an unpaired surrogate 0x{:04X} at byte {offset}",
                    error.unpaired_surrogate()
                )));
            }
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16(text: &str, order: ByteOrder) -> Vec<u8> {
        std::iter::once(0xFEFF)
            .chain(text.encode_utf16())
            .flat_map(|unit| match order {
                ByteOrder::Little => unit.to_le_bytes(),
                ByteOrder::Big => unit.to_be_bytes(),
            })
            .collect()
    }

    #[test]
    fn decode_utf16_with_mark() {
        let text = "{\"a\": \"é😀\"}";
        for order in [ByteOrder::Little, ByteOrder::Big] {
            let decoded = decode_text(Path::new("t.json"), utf16(text, order)).unwrap();
            assert_eq!(decoded, format!("\u{feff}{text}"), "{}", order.encoding());
        }
    }

    #[test]
    fn decode_utf8_keeps_text() {
        let marked = "\u{feff}{}".as_bytes().to_vec();
        assert_eq!(
            decode_text(Path::new("t.json"), marked).unwrap(),
            "\u{feff}{}"
        );
        assert_eq!(
            decode_text(Path::new("t.json"), b"[1]".to_vec()).unwrap(),
            "[1]"
        );
        assert_eq!(decode_text(Path::new("t.json"), Vec::new()).unwrap(), "");
    }

    #[test]
    fn decode_rejects_unpaired_surrogate() {
        // The high surrogate 0xD800 after `{` is followed by `}`, not by a low surrogate.
        let bytes = vec![0xFF, 0xFE, b'{', 0, 0x00, 0xD8, b'}', 0];
        let error = decode_text(Path::new("t.json"), bytes).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`t.json` is UTF-16LE text with an unpaired surrogate 0xD800 at byte 4"
        );
    }

    #[test]
    fn decode_rejects_odd_length() {
        let bytes = vec![0xFE, 0xFF, 0, b'{', 0];
        let error = decode_text(Path::new("t.json"), bytes).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("`t.json` is UTF-16BE text with an odd number of bytes (5)"),
            "{error}"
        );
    }

    #[test]
    fn decode_rejects_utf16_without_mark() {
        let cases = [
            (vec![b'{', 0, b'}', 0], "UTF-16LE"),
            (vec![0, b'{', 0, b'}'], "UTF-16BE"),
        ];
        for (bytes, encoding) in cases {
            let error = decode_text(Path::new("t.json"), bytes).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("`t.json` is {encoding} text without a byte order mark")
            );
        }
    }

    #[test]
    fn decode_rejects_utf32() {
        let bytes = vec![0xFF, 0xFE, 0, 0, b'{', 0, 0, 0];
        let error = decode_text(Path::new("t.json"), bytes).unwrap_err();
        assert!(matches!(
            error,
            EncodingError::Utf32 {
                encoding: "UTF-32LE",
                ..
            }
        ));
    }

    #[test]
    fn decode_names_invalid_utf8_place() {
        // 0xE9 is `é` in Windows-1252, and no UTF-8 sequence starts with it before `x`.
        let bytes = b"{\n  \"\xC3\xA9\": \"\xE9x\"\n}".to_vec();
        let error = decode_text(Path::new("t.json"), bytes).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`t.json` is not valid UTF-8: invalid byte 0xE9 at line 2, column 9"
        );
    }
}
