#![no_main]
//! See `capstan_fuzzing::osv`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| capstan_fuzzing::osv(data));
