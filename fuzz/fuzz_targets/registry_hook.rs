#![no_main]
//! See `capstan_fuzzing::registry_hook`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| capstan_fuzzing::registry_hook(data));
