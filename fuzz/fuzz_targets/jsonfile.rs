#![no_main]
//! See `capstan_fuzzing::jsonfile`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| capstan_fuzzing::jsonfile(data));
