//! kustos: SOPS-compatible secrets for multi-tenant Flux fleets.
//!
//! The library holds everything; the `kustos` binary is a thin CLI on top.
//! - [`sops`]: the file format core (values, cipher, metadata, MAC).
//! - [`formats`]: YAML, JSON, dotenv, INI and binary stores.
//! - [`keys`]: age and OpenPGP master keys, Shamir key groups.
//! - [`ops`]: whole-file encrypt/decrypt used by the CLI, plugin and sidecar.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cli;
pub mod config;
pub mod error;
pub mod fleet;
pub mod formats;
pub mod fsutil;
pub mod gitauth;
pub mod keys;
pub mod keyservice;
pub mod kustomize;
pub mod ops;
pub mod platform;
pub mod plugin;
pub mod render;
pub mod serve;
pub mod sops;

pub use error::{Error, Result};
