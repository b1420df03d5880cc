//! sops' key service protocol: a gRPC `KeyService` with `Encrypt` and
//! `Decrypt`, each carrying one master key and the data key (or its wrapped
//! form), so the key itself stays on the machine that serves it.
//!
//! The messages are declared here with prost's derives, field for field as
//! sops' `keyservice.proto` numbers them (the wire format is the
//! interface); the calls go through tonic. Services are addressed as sops
//! does: `unix:///path/to.sock` or `tcp://host:port`, plaintext HTTP/2, as
//! every sops client speaks it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use super::Recipient;
use crate::error::{escape_for_terminal, UnwrapError};
use crate::sops::masterkey::{ForeignKind, KmsKeyId, MasterKey};
use crate::sops::value::{Map, Value};

/// The protocol's messages.
pub mod proto {
    use std::collections::HashMap;

    /// One master key, of any type.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Key {
        /// Which key.
        #[prost(oneof = "KeyType", tags = "1, 2, 3, 4, 5, 6, 7")]
        pub key_type: Option<KeyType>,
    }

    /// The key types.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum KeyType {
        /// AWS KMS.
        #[prost(message, tag = "1")]
        KmsKey(KmsKey),
        /// OpenPGP.
        #[prost(message, tag = "2")]
        PgpKey(PgpKey),
        /// GCP KMS.
        #[prost(message, tag = "3")]
        GcpKmsKey(GcpKmsKey),
        /// Azure Key Vault.
        #[prost(message, tag = "4")]
        AzureKeyvaultKey(AzureKeyVaultKey),
        /// HashiCorp Vault transit.
        #[prost(message, tag = "5")]
        VaultKey(VaultKey),
        /// age.
        #[prost(message, tag = "6")]
        AgeKey(AgeKey),
        /// HuaweiCloud KMS.
        #[prost(message, tag = "7")]
        HckmsKey(HckmsKey),
    }

    /// An OpenPGP key by fingerprint.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PgpKey {
        /// The fingerprint as the file stores it.
        #[prost(string, tag = "1")]
        pub fingerprint: String,
    }

    /// An AWS KMS key.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KmsKey {
        /// Key or alias ARN.
        #[prost(string, tag = "1")]
        pub arn: String,
        /// Role to assume first, if any.
        #[prost(string, tag = "2")]
        pub role: String,
        /// Encryption context.
        #[prost(map = "string, string", tag = "3")]
        pub context: HashMap<String, String>,
        /// AWS profile, if any.
        #[prost(string, tag = "4")]
        pub aws_profile: String,
    }

    /// A GCP KMS key.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GcpKmsKey {
        /// `projects/…/cryptoKeys/…`.
        #[prost(string, tag = "1")]
        pub resource_id: String,
    }

    /// A HashiCorp Vault transit key.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct VaultKey {
        /// Vault server.
        #[prost(string, tag = "1")]
        pub vault_address: String,
        /// Transit engine mount.
        #[prost(string, tag = "2")]
        pub engine_path: String,
        /// Key name.
        #[prost(string, tag = "3")]
        pub key_name: String,
    }

    /// An Azure Key Vault key.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AzureKeyVaultKey {
        /// Vault URL.
        #[prost(string, tag = "1")]
        pub vault_url: String,
        /// Key name.
        #[prost(string, tag = "2")]
        pub name: String,
        /// Key version.
        #[prost(string, tag = "3")]
        pub version: String,
    }

    /// An age recipient.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AgeKey {
        /// `age1…` or an SSH public key.
        #[prost(string, tag = "1")]
        pub recipient: String,
    }

    /// A HuaweiCloud KMS key.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HckmsKey {
        /// `region:key-uuid`.
        #[prost(string, tag = "1")]
        pub key_id: String,
    }

    /// Wrap `plaintext` (a data key or share) for `key`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EncryptRequest {
        /// The master key.
        #[prost(message, optional, tag = "1")]
        pub key: Option<Key>,
        /// The data key.
        #[prost(bytes = "vec", tag = "2")]
        pub plaintext: Vec<u8>,
    }

    /// The wrapped data key, as the file's `enc` field stores it.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EncryptResponse {
        /// The `enc` text.
        #[prost(bytes = "vec", tag = "1")]
        pub ciphertext: Vec<u8>,
    }

    /// Unwrap `ciphertext` (a file's `enc` text) with `key`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DecryptRequest {
        /// The master key.
        #[prost(message, optional, tag = "1")]
        pub key: Option<Key>,
        /// The `enc` text.
        #[prost(bytes = "vec", tag = "2")]
        pub ciphertext: Vec<u8>,
    }

    /// The data key.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DecryptResponse {
        /// The data key.
        #[prost(bytes = "vec", tag = "1")]
        pub plaintext: Vec<u8>,
    }

    // Data keys must not outlive their message in memory.
    impl Drop for EncryptRequest {
        fn drop(&mut self) {
            zeroize::Zeroize::zeroize(&mut self.plaintext);
        }
    }

    impl Drop for DecryptResponse {
        fn drop(&mut self) {
            zeroize::Zeroize::zeroize(&mut self.plaintext);
        }
    }

    /// The gRPC paths (the proto declares no package).
    pub const ENCRYPT_PATH: &str = "/KeyService/Encrypt";
    /// See [`ENCRYPT_PATH`].
    pub const DECRYPT_PATH: &str = "/KeyService/Decrypt";
}

/// The largest message either side accepts: data keys and their wrapped
/// forms are a few KiB at most.
pub const MAX_MESSAGE: usize = 256 * 1024;

/// How long a call may take; a service with `--prompt` waits for a person.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

fn field(fields: &Map, name: &str) -> String {
    fields
        .get(name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn kms_key(k: &KmsKeyId) -> proto::KmsKey {
    proto::KmsKey {
        arn: k.arn.clone(),
        role: k.role.clone(),
        context: k.context.iter().cloned().collect(),
        aws_profile: k.aws_profile.clone(),
    }
}

/// The protocol's key for a file's master key entry (sops'
/// `KeyFromMasterKey`).
pub fn key_of(mk: &MasterKey) -> proto::Key {
    use proto::KeyType;
    let key_type = match mk {
        MasterKey::Age { recipient, .. } => KeyType::AgeKey(proto::AgeKey {
            recipient: recipient.clone(),
        }),
        MasterKey::Pgp { fp, .. } => KeyType::PgpKey(proto::PgpKey {
            fingerprint: fp.clone(),
        }),
        MasterKey::Kms { key, .. } => KeyType::KmsKey(kms_key(key)),
        MasterKey::Foreign { kind, fields } => match kind {
            ForeignKind::GcpKms => KeyType::GcpKmsKey(proto::GcpKmsKey {
                resource_id: field(fields, "resource_id"),
            }),
            ForeignKind::AzureKv => KeyType::AzureKeyvaultKey(proto::AzureKeyVaultKey {
                vault_url: field(fields, "vault_url"),
                name: field(fields, "name"),
                version: field(fields, "version"),
            }),
            ForeignKind::HcVault => KeyType::VaultKey(proto::VaultKey {
                vault_address: field(fields, "vault_address"),
                engine_path: field(fields, "engine_path"),
                key_name: field(fields, "key_name"),
            }),
        },
    };
    proto::Key {
        key_type: Some(key_type),
    }
}

/// The protocol's key for a recipient kustos wraps for.
pub fn key_of_recipient(r: &Recipient) -> proto::Key {
    use proto::KeyType;
    let key_type = match r {
        Recipient::Age(s) => KeyType::AgeKey(proto::AgeKey {
            recipient: s.clone(),
        }),
        Recipient::Pgp(fp) => KeyType::PgpKey(proto::PgpKey {
            fingerprint: fp.clone(),
        }),
        Recipient::Kms(k) => KeyType::KmsKey(kms_key(k)),
    };
    proto::Key {
        key_type: Some(key_type),
    }
}

/// A key service's address, as sops parses `--keyservice`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// `unix:///path`.
    Unix(PathBuf),
    /// `tcp://host:port`.
    Tcp(String),
}

impl Address {
    /// Parses `unix:///path` or `tcp://host:port`.
    pub fn parse(uri: &str) -> Result<Address, String> {
        let bad = || {
            format!(
                "key service address {:?}: expected unix:///PATH or tcp://HOST:PORT",
                escape_for_terminal(uri)
            )
        };
        if let Some(path) = uri.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(bad());
            }
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        let rest = uri.strip_prefix("tcp://").ok_or_else(bad)?;
        let host_port = rest.trim_end_matches('/');
        match host_port.rsplit_once(':') {
            Some((host, port))
                if !host.is_empty() && !host_port.contains('/') && port.parse::<u16>().is_ok() =>
            {
                Ok(Address::Tcp(host_port.to_string()))
            }
            _ => Err(bad()),
        }
    }
}

/// A client of one remote key service.
#[derive(Clone)]
pub struct RemoteKeyService {
    uri: String,
    address: Address,
    channel: Arc<tokio::sync::OnceCell<tonic::transport::Channel>>,
}

impl std::fmt::Debug for RemoteKeyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.uri)
    }
}

impl RemoteKeyService {
    /// A client for `uri` (`unix:///…` or `tcp://…`); connects on first use.
    pub fn new(uri: &str) -> Result<RemoteKeyService, String> {
        Ok(RemoteKeyService {
            uri: uri.to_string(),
            address: Address::parse(uri)?,
            channel: Arc::default(),
        })
    }

    /// The address as given.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Unwraps a file's `enc` text with the service's key.
    pub fn decrypt(&self, key: &MasterKey) -> Result<Zeroizing<Vec<u8>>, String> {
        let req = proto::DecryptRequest {
            key: Some(key_of(key)),
            ciphertext: key.enc().as_bytes().to_vec(),
        };
        let mut rsp: proto::DecryptResponse = self.call(proto::DECRYPT_PATH, req)?;
        Ok(Zeroizing::new(std::mem::take(&mut rsp.plaintext)))
    }

    /// Wraps `secret` for `recipient` with the service; the text for `enc`.
    pub fn encrypt(&self, recipient: &Recipient, secret: &[u8]) -> Result<String, String> {
        let req = proto::EncryptRequest {
            key: Some(key_of_recipient(recipient)),
            plaintext: secret.to_vec(),
        };
        let rsp: proto::EncryptResponse = self.call(proto::ENCRYPT_PATH, req)?;
        String::from_utf8(rsp.ciphertext.clone())
            .map_err(|_| format!("key service {}: the wrapped key is not text", self.uri))
    }

    fn call<Req, Rsp>(&self, path: &'static str, req: Req) -> Result<Rsp, String>
    where
        Req: prost::Message + Send + Sync + 'static,
        Rsp: prost::Message + Default + Send + Sync + 'static,
    {
        let me = self.clone();
        super::runtime::block_on(async move {
            let channel = me
                .channel
                .get_or_try_init(|| connect(me.address.clone()))
                .await
                .map_err(|e| format!("key service {}: cannot connect: {e}", me.uri))?
                .clone();
            let mut grpc = tonic::client::Grpc::new(channel)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE);
            grpc.ready()
                .await
                .map_err(|e| format!("key service {}: not ready: {e}", me.uri))?;
            let codec = tonic_prost::ProstCodec::<Req, Rsp>::default();
            let path = http::uri::PathAndQuery::from_static(path);
            grpc.unary(tonic::Request::new(req), path, codec)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| {
                    format!(
                        "key service {}: {:?}: {}",
                        me.uri,
                        s.code(),
                        escape_for_terminal(s.message())
                    )
                })
        })?
    }
}

async fn connect(address: Address) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    use tonic::transport::Endpoint;
    match address {
        Address::Tcp(host_port) => {
            Endpoint::from_shared(format!("http://{host_port}"))?
                .connect_timeout(Duration::from_secs(10))
                .timeout(CALL_TIMEOUT)
                .connect()
                .await
        }
        Address::Unix(path) => {
            // The URI is unused: the connector dials the socket.
            Endpoint::from_static("http://localhost")
                .connect_timeout(Duration::from_secs(10))
                .timeout(CALL_TIMEOUT)
                .connect_with_connector(tower::service_fn(move |_: http::Uri| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                    }
                }))
                .await
        }
    }
}

/// Where data keys are wrapped and unwrapped, in sops' order: this
/// process's own keys first (unless `--enable-local-keyservice=false`),
/// then each `--keyservice` in turn until one answers.
#[derive(Clone, Debug)]
pub struct KeyServices {
    /// Use this process's keys.
    pub local: bool,
    /// Remote services, tried in order.
    pub remote: Vec<RemoteKeyService>,
}

impl Default for KeyServices {
    fn default() -> Self {
        KeyServices {
            local: true,
            remote: Vec::new(),
        }
    }
}

impl KeyServices {
    /// From `--keyservice` URIs and `--enable-local-keyservice`.
    pub fn from_flags(uris: &[String], local: bool) -> Result<KeyServices, String> {
        Ok(KeyServices {
            local,
            remote: uris
                .iter()
                .filter(|u| !u.is_empty())
                .map(|u| RemoteKeyService::new(u))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Unwraps with the remote services, after `local` failed (or was off).
    pub fn unwrap_remote(
        &self,
        key: &MasterKey,
        local: Option<UnwrapError>,
    ) -> Result<Zeroizing<Vec<u8>>, UnwrapError> {
        let mut errors: Vec<String> = local.iter().map(ToString::to_string).collect();
        for svc in &self.remote {
            match svc.decrypt(key) {
                Ok(k) => return Ok(k),
                Err(e) => errors.push(e),
            }
        }
        let msg = if errors.is_empty() {
            "the local key service is disabled and no --keyservice was given".to_string()
        } else {
            errors.join("; ")
        };
        Err(match local {
            Some(UnwrapError::Failed(_)) => UnwrapError::Failed(msg),
            _ => UnwrapError::NoIdentity(msg),
        })
    }

    /// Wraps `secret` for `recipient`: locally first when enabled, then
    /// with each remote service until one succeeds.
    pub fn wrap(&self, recipient: &Recipient, secret: &[u8]) -> crate::Result<MasterKey> {
        let mut errors = Vec::new();
        if self.local {
            match MasterKey::wrap(recipient, secret) {
                Ok(mk) => return Ok(mk),
                Err(e) if self.remote.is_empty() => return Err(e),
                Err(e) => errors.push(e.to_string()),
            }
        }
        for svc in &self.remote {
            match svc.encrypt(recipient, secret) {
                Ok(enc) => return Ok(super::with_enc(recipient, enc)),
                Err(e) => errors.push(e),
            }
        }
        Err(crate::Error::Key(format!(
            "cannot wrap the data key for {}: {}",
            recipient.name(),
            if errors.is_empty() {
                "the local key service is disabled and no --keyservice was given".to_string()
            } else {
                errors.join("; ")
            }
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_as_sops_writes_them() {
        assert_eq!(
            Address::parse("unix:///run/sops.sock"),
            Ok(Address::Unix("/run/sops.sock".into()))
        );
        assert_eq!(
            Address::parse("tcp://127.0.0.1:5000"),
            Ok(Address::Tcp("127.0.0.1:5000".into()))
        );
        assert_eq!(
            Address::parse("tcp://[::1]:5000"),
            Ok(Address::Tcp("[::1]:5000".into()))
        );
        for bad in [
            "127.0.0.1:5000",
            "tcp://host",
            "tcp://:5000",
            "tcp://h:99999",
            "unix://relative.sock",
            "http://h:1",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_match_the_wire_format() {
        use prost::Message;
        // An age key in a DecryptRequest, encoded by hand from the proto:
        // field 1 (Key) holding field 6 (AgeKey) holding field 1 (string).
        let req = proto::DecryptRequest {
            key: Some(key_of(&MasterKey::Age {
                recipient: "age1x".into(),
                enc: "E".into(),
            })),
            ciphertext: b"E".to_vec(),
        };
        let expect = [
            0x0a, 0x09, 0x32, 0x07, 0x0a, 0x05, b'a', b'g', b'e', b'1', b'x', 0x12, 0x01, b'E',
        ];
        assert_eq!(req.encode_to_vec(), expect);
        let back = proto::DecryptRequest::decode(&expect[..]).unwrap();
        assert_eq!(back.key, req.key);
    }
}
