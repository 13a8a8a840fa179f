#![no_main]
//! See `capstan_fuzzing::manifest`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| capstan_fuzzing::manifest(data));
