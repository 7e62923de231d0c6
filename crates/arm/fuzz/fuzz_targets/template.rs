//! Evaluates arbitrary bytes as a template with the offline provider.
//!
//! Properties: evaluation never panics, and every error points at a line and column inside
//! the input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use subnetlock_arm::{evaluate_str, EvalOptions, OfflineProvider};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Err(error) = evaluate_str("fuzz.json", text, &EvalOptions::default(), &OfflineProvider)
    else {
        return;
    };
    let Some(location) = error.location() else {
        panic!("error without a location: {error}");
    };

    // Lines are 1-based and split at `\n`; columns are 1-based characters, and one past the
    // last character of a line is valid (an error at the end of the text).
    let lines: Vec<&str> = text.split('\n').collect();
    assert!(
        location.line >= 1 && location.line <= lines.len(),
        "line {} outside 1..={} for {error}",
        location.line,
        lines.len()
    );
    let line_chars = lines[location.line - 1].chars().count();
    assert!(
        location.column >= 1 && location.column <= line_chars + 1,
        "column {} outside 1..={} on line {} for {error}",
        location.column,
        line_chars + 1,
        location.line
    );
    assert!(
        text.is_char_boundary(location.offset),
        "offset {} is not a character boundary for {error}",
        location.offset
    );
    assert!(
        location.offset + location.length <= text.len(),
        "span {}+{} past the end ({}) for {error}",
        location.offset,
        location.length,
        text.len()
    );
});
