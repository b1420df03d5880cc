//! `kustos keyservice`: sops' key service for the keys this machine holds.

use clap::Args;

use super::{CliError, CliResult, GlobalArgs};
use crate::error::exit;
use crate::keys::{KeyRing, KeySources};
use crate::keyservice::{self, Listen, Options};

/// Arguments of `keyservice`, as sops names them.
#[derive(Args, Debug)]
#[command(
    after_help = "Clients: sops or kustos with --keyservice unix:///PATH or tcp://HOST:PORT \
(and --enable-local-keyservice=false to use only the service).\n\
Keys: age identities and OpenPGP keys found as `kustos decrypt` finds them (SOPS_AGE_KEY_FILE, \
~/.config/sops/age/keys.txt, --keys-dir, GnuPG), and AWS KMS keys with this machine's AWS credentials. \
A key service never forwards to another one.\n\
The protocol has no authentication: keep TCP on loopback, or put an authenticating proxy or service \
mesh in front and pass --allow-remote."
)]
pub struct KeyserviceArgs {
    /// Network to listen on: tcp or unix
    #[arg(
        long,
        visible_alias = "net",
        default_value = "tcp",
        value_name = "NETWORK"
    )]
    pub network: String,
    /// Address to listen on: HOST:PORT for tcp, a socket path for unix
    #[arg(
        long,
        visible_alias = "addr",
        default_value = "127.0.0.1:5000",
        value_name = "ADDRESS"
    )]
    pub address: String,
    /// Ask at the terminal before answering each request
    #[arg(long)]
    pub prompt: bool,
    /// Listen on a non-loopback TCP address (anyone who reaches it can use the keys)
    #[arg(long = "allow-remote")]
    pub allow_remote: bool,
}

/// `kustos keyservice`.
pub fn keyservice(g: &GlobalArgs, a: KeyserviceArgs) -> CliResult {
    let listen =
        Listen::parse(&a.network, &a.address).map_err(|e| CliError::new(exit::GENERIC, e))?;
    let opts = Options {
        listen,
        prompt: a.prompt,
        allow_remote: a.allow_remote,
    };
    keyservice::check(&opts).map_err(|e| CliError::new(exit::GENERIC, e))?;
    // The user's own keys and AWS credentials, as sops' key service uses
    // them; RSA keys aws-lc-rs does not take stay unused, as in every
    // service.
    let ring = KeyRing::new(KeySources {
        keys_dirs: g.keys_dir.clone(),
        use_env: true,
        gpg_fallback: true,
        weak_rsa: false,
        age_plugins: true,
        kms: crate::keys::KmsAccess::Any,
    });
    keyservice::run(ring, opts).map_err(CliError::from)
}
