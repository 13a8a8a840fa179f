#![no_main]
//! See `capstan_fuzzing::interpolate`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| capstan_fuzzing::interpolate(data));
