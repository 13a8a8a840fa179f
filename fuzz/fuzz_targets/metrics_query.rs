#![no_main]
//! See `capstan_fuzzing::metrics_query`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| capstan_fuzzing::metrics_query(data));
