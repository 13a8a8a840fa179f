#![no_main]
//! See `capstan_fuzzing::tag_page`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| capstan_fuzzing::tag_page(data));
