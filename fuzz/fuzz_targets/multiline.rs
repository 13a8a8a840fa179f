#![no_main]
//! See `capstan_fuzzing::multiline`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| capstan_fuzzing::multiline(data));
