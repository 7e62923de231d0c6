//! ASCII case-insensitive comparison eight bytes at a time.
//!
//! The engine compares header names and header values ignoring case on every decision.
//! `str::eq_ignore_ascii_case` lower-cases one byte at a time, while these functions handle
//! eight bytes per step.

/// Bit 7 of each of the eight bytes in a word.
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
/// The value one in each of the eight bytes of a word.
const ONES: u64 = 0x0101_0101_0101_0101;

/// Checks whether `a` and `b` are equal ignoring ASCII case, with the same result as
/// [`str::eq_ignore_ascii_case`].
pub fn eq_ignore_case(a: &str, b: &str) -> bool {
    compare_words(a.as_bytes(), b.as_bytes(), |x, y| lower(x) == lower(y))
}

/// Checks whether `text` equals `lower_case` ignoring ASCII case, when `lower_case` has no
/// ASCII capitals (as header names and normalised host filters).
///
/// Setting bit 5 of `text` where `lower_case` has a lower-case letter makes both letter cases
/// equal to it, and every other byte must match exactly, so this needs no lower-casing.
/// When `lower_case` is a constant, its letter positions are computed at compile time.
#[inline]
pub fn eq_lower_case(text: &str, lower_case: &str) -> bool {
    compare_words(
        text.as_bytes(),
        lower_case.as_bytes(),
        |word, lower_word| word | letter_bits(lower_word) == lower_word,
    )
}

/// Compares `a` and `b` ignoring ASCII case, with `equal` comparing eight bytes at a time.
#[inline(always)]
fn compare_words(a: &[u8], b: &[u8], equal: impl Fn(u64, u64) -> bool) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if a.len() < 8 {
        return a.eq_ignore_ascii_case(b);
    }

    // Whole words first, then the last eight bytes, which may overlap the last whole word.
    let words_equal = a
        .chunks_exact(8)
        .zip(b.chunks_exact(8))
        .all(|(x, y)| equal(word(x), word(y)));
    words_equal && equal(last_word(a), last_word(b))
}

/// Checks whether `text` has a byte that is not ASCII or one of the ASCII bytes in `set`.
#[inline]
pub(crate) fn has_non_ascii_or_any(text: &str, set: &[u8]) -> bool {
    let bytes = text.as_bytes();
    if bytes.len() < 8 {
        return bytes
            .iter()
            .any(|byte| !byte.is_ascii() || set.contains(byte));
    }

    let flagged = |word: u64| {
        word & HIGH_BITS != 0
            || set
                .iter()
                .any(|&byte| has_zero_byte(word ^ (ONES * u64::from(byte))))
    };
    bytes.chunks_exact(8).any(|chunk| flagged(word(chunk))) || flagged(last_word(bytes))
}

/// Checks whether any of the eight bytes of `word` is zero.
///
/// Subtracting one from each byte sets bit 7 of a zero byte, and `!word` keeps only bytes
/// that had bit 7 clear before. A borrow can only flag a byte above a byte that is really
/// zero, so the result is exact.
fn has_zero_byte(word: u64) -> bool {
    word.wrapping_sub(ONES) & !word & HIGH_BITS != 0
}

/// Reads the eight bytes of `bytes` as a little-endian word, or returns zero when it is not
/// eight bytes long (callers only pass eight).
fn word(bytes: &[u8]) -> u64 {
    bytes.try_into().map_or(0, u64::from_le_bytes)
}

fn last_word(bytes: &[u8]) -> u64 {
    bytes
        .len()
        .checked_sub(8)
        .and_then(|from| bytes.get(from..))
        .map_or(0, word)
}

/// Lower-cases the ASCII capitals among the eight bytes of `word` and leaves every other
/// byte, non-ASCII ones included, as it is.
fn lower(word: u64) -> u64 {
    word | (bytes_in_range(word, b'A', b'Z') >> 2)
}

/// Returns bit 5 (0x20) of each byte of `word` that is a lower-case ASCII letter.
fn letter_bits(word: u64) -> u64 {
    bytes_in_range(word, b'a', b'z') >> 2
}

/// Returns bit 7 of each byte of `word` that lies in `first..=last`, both ASCII.
fn bytes_in_range(word: u64, first: u8, last: u8) -> u64 {
    // Each byte's low seven bits plus a constant below 0x80 stays below 0x100, so no carry
    // crosses into the next byte, and bit 7 of the sum is set exactly when the byte reached
    // the threshold.
    let low_bits = word & !HIGH_BITS;
    let from_first = low_bits + ONES * (0x80 - u64::from(first));
    let past_last = low_bits + ONES * (0x80 - u64::from(last) - 1);
    // Bytes with bit 7 set are not ASCII and lie in no ASCII range.
    from_first & !past_last & !word & HIGH_BITS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_helpers_every_byte_every_lane() {
        for lane in 0..8 {
            for byte in 0..=255u8 {
                let shift = lane * 8;
                // Other lanes hold capitals and non-ASCII bytes, which must not interfere.
                let background = u64::from_le_bytes(*b"Q\xc3Z@[a`{") & !(0xff << shift);
                let input = background | (u64::from(byte) << shift);
                let expected =
                    u64::from_le_bytes(input.to_le_bytes().map(|b| b.to_ascii_lowercase()));
                assert_eq!(lower(input), expected, "byte {byte:#04x} in lane {lane}");

                let letters =
                    input
                        .to_le_bytes()
                        .map(|b| if b.is_ascii_lowercase() { 0x20 } else { 0 });
                assert_eq!(
                    letter_bits(input),
                    u64::from_le_bytes(letters),
                    "byte {byte:#04x} in lane {lane}"
                );
            }
        }
    }

    #[test]
    fn has_non_ascii_or_any_matches_naive() {
        let set = b",:[";
        let texts = [
            "",
            "a",
            "abcdefg",
            "abcdefgh",
            "www.contoso.com",
            "www.contoso.com:443",
            "a,b",
            "contoso.com, fabrikam.com",
            "[2001:db8::1]",
            "bücher.example",
            "very-long-host-name.example.co",
            "very-long-host-name.example.c:",
            "\u{7f}\u{80}",
            ":",
            "abcdefgh,",
            ",abcdefgh",
        ];
        for text in texts {
            let naive = text
                .bytes()
                .any(|byte| !byte.is_ascii() || set.contains(&byte));
            assert_eq!(has_non_ascii_or_any(text, set), naive, "{text:?}");
        }
        // Every position and every byte value in words of one and two lengths.
        for length in [8, 13] {
            for at in 0..length {
                for byte in 0..=127u8 {
                    let mut bytes = vec![b'a'; length];
                    if let Some(slot) = bytes.get_mut(at) {
                        *slot = byte;
                    }
                    let text = String::from_utf8(bytes).unwrap();
                    assert_eq!(
                        has_non_ascii_or_any(&text, set),
                        set.contains(&byte),
                        "byte {byte:#04x} at {at} of {length}"
                    );
                }
            }
        }
    }

    #[test]
    fn eq_ignore_case_matches_std() {
        let words = [
            "",
            "a",
            "A",
            "b",
            "abc",
            "ABC",
            "aBd",
            "1",
            "@",
            "`",
            "ü",
            "Ü",
            "x-azure-fdid",
            "X-Azure-FDID",
            "x-azure-fdiD",
            "x-azure-fdie",
            "x-forwarded-host",
            "X-FORWARDED-HOST",
            "x-forwarded-hosu",
            "x-fd-healthprobe",
            "WWW.Contoso.COM",
            "www.contoso.com",
            "www.contoso.co",
            "bÜcher.example",
            "bücher.example",
            "BÜCHER.EXAMPLE",
            "a1b2c3d4-0000-4000-8000-00000000abcd",
            "A1B2C3D4-0000-4000-8000-00000000ABCD",
            "a1b2c3d4-0000-4000-8000-00000000abce",
            "@[`{@[`{",
            "`{@[`{@[",
        ];
        for a in words {
            for b in words {
                let expected = a.eq_ignore_ascii_case(b);
                assert_eq!(eq_ignore_case(a, b), expected, "{a:?} vs {b:?}");
                if b.bytes().all(|byte| !byte.is_ascii_uppercase()) {
                    assert_eq!(eq_lower_case(a, b), expected, "{a:?} vs lower-case {b:?}");
                }
            }
        }
    }
}
