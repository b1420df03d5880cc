//! The integration and interop tests, built as one binary: each module is
//! one area, `common` holds the helpers (the kustos binary, the real peers
//! and isolated environments). Run one area with `cargo test --test it
//! AREA::`.

mod common;

mod age_keys;
mod age_plugins;
mod build_inputs;
mod cli;
mod errors;
mod exit_codes;
mod fleet;
mod fleet_ops;
mod fuzz_smoke;
mod gitauth;
mod hardening;
mod interop_sops;
mod isolation;
mod keyservice;
mod kms;
mod ksops_corpus;
mod layers;
mod newer_sops;
mod pgp_cli;
mod pgp_interop;
mod pgp_rsa;
mod platforms;
mod plugin;
mod render;
mod serve;
mod sops_commands;
mod sops_repo_corpus;
mod validate_schema;
