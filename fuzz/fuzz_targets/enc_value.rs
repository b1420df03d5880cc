//! See `kustos::fuzzing::enc_value` for the property checked.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kustos::fuzzing::enc_value(data));
