#![no_main]
//! See `capstan_fuzzing::challenge`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| capstan_fuzzing::challenge(data));
