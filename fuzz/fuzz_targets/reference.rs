#![no_main]
//! See `capstan_fuzzing::reference`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| capstan_fuzzing::reference(data));
