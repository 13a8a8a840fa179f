#![no_main]
//! See `capstan_fuzzing::compose`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| capstan_fuzzing::compose(data));
