//! See `kustos::fuzzing::serve` for the property checked.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kustos::fuzzing::serve(data));
