//! See `kustos::fuzzing::pgp_keys` for the property checked.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kustos::fuzzing::pgp_keys(data));
