#![no_main]
//! See `capstan_fuzzing::log_query`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| capstan_fuzzing::log_query(data));
