//! See `kustos::fuzzing::pgp_message` for the property checked.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kustos::fuzzing::pgp_message(data));
