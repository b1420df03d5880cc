//! See `kustos::fuzzing::sops_config` for the property checked.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kustos::fuzzing::sops_config(data));
