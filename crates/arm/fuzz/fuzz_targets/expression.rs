//! Parses arbitrary bytes as the inside of a template expression.
//!
//! Properties: the parser never panics, a rejected input gets an error offset inside the text,
//! and an accepted input prints to text that parses to the same tree.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(broken) = subnetlock_arm::fuzzing::check_expression(text) {
        panic!("{broken}");
    }
});
