//! TLS made by burrow-local, end to end inside the tunnel, for wss/https upstreams.
//! rustls with the webpki (Mozilla) roots plus an optional `ca_file`, or a pinned key;
//! verification is only skipped for a route that asks for it. A refused certificate is
//! explained in one line (who issued it, whose it is, the pin that would accept it).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::danger::ServerCertVerifier;
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use x509_parser::prelude::{FromDer, X509Certificate};

mod verify;

use verify::{said, Explained, NoVerify, Pinned};

/// What a TLS client trusts.
#[derive(Clone, Debug, Default)]
pub enum Trust {
    /// The Mozilla roots.
    #[default]
    Roots,
    /// The Mozilla roots plus these CA certificates (read from `ca_file`).
    WithCa(PathBuf),
    /// Only a server whose public key hashes to one of these (SHA-256 of the
    /// certificate's SubjectPublicKeyInfo, as `pin_sha256`): chain, names and dates are
    /// not checked, as with an SSH host key. For a VPS with a self-signed certificate.
    Pinned(Vec<[u8; 32]>),
    /// Nothing checked: only for a route with `insecure_skip_verify = true`.
    Insecure,
}

impl Trust {
    /// The trust a config asks for: a pin wins over `ca_file`; `insecure` over both.
    pub fn from_config(
        ca_file: Option<&Path>,
        pins: &[String],
        insecure: bool,
    ) -> Result<Trust, String> {
        if insecure {
            return Ok(Trust::Insecure);
        }
        if !pins.is_empty() {
            return pins
                .iter()
                .map(|p| parse_pin(p))
                .collect::<Result<_, _>>()
                .map(Trust::Pinned);
        }
        Ok(ca_file.map_or(Trust::Roots, |p| Trust::WithCa(p.to_owned())))
    }
}

/// Reads a `pin_sha256`: base64 of the 32-byte hash (optionally `sha256//`-prefixed, as
/// curl writes it) or 64 hex digits.
pub fn parse_pin(text: &str) -> Result<[u8; 32], String> {
    use base64::Engine;
    let t = text.trim();
    let t = t.strip_prefix("sha256//").unwrap_or(t);
    let bytes = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|e| e.to_string())
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(t)
            .map_err(|e| e.to_string())
    };
    bytes
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| format!("pin_sha256 {text:?}: not the base64 (or hex) of a SHA-256 hash"))
}

/// A TLS client for one upstream: the config and the name to verify (and send as SNI).
pub struct TlsTarget {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl std::fmt::Debug for TlsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsTarget({:?})", self.name)
    }
}

impl TlsTarget {
    /// Builds the client for `host`, trusting what `trust` says.
    pub fn new(host: &str, trust: &Trust) -> Result<Self, String> {
        let provider = Arc::new(ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let verifier: Arc<dyn ServerCertVerifier> = match trust {
            Trust::Insecure => Arc::new(NoVerify(provider)),
            Trust::Pinned(pins) => Arc::new(Pinned {
                pins: pins.clone(),
                provider,
            }),
            Trust::Roots | Trust::WithCa(_) => {
                let mut roots = RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                if let Trust::WithCa(path) = trust {
                    add_ca_file(&mut roots, path)?;
                }
                let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| format!("TLS: {e}"))?;
                Arc::new(Explained(inner))
            }
        };
        let config = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| format!("{host:?} is not a TLS server name"))?;
        Ok(TlsTarget {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        })
    }

    /// With TLS 1.3 0-RTT: on a resumed session whose server allows it, what is written
    /// first leaves with the ClientHello (a server that refuses it gets it again after
    /// the handshake). Only for what may be replayed: the wss hop's WebSocket upgrade
    /// (idempotent, no tunnel bytes in it), never an app's request.
    pub fn with_early_data(self) -> Self {
        let mut config = (**self.connector.config()).clone();
        config.enable_early_data = true;
        TlsTarget {
            connector: TlsConnector::from(Arc::new(config)).early_data(true),
            name: self.name,
        }
    }

    /// Runs the handshake over `io` (the tunnel). A refused certificate reads as its
    /// diagnosis.
    pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: S,
    ) -> std::io::Result<TlsStream<S>> {
        self.connector
            .connect(self.name.clone(), io)
            .await
            .map_err(said)
    }
}

fn add_ca_file(roots: &mut RootCertStore, path: &Path) -> Result<(), String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("ca_file {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("ca_file {}: no certificate in it", path.display()));
    }
    for c in certs {
        roots
            .add(c)
            .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
    }
    Ok(())
}

/// The `pin_sha256` of a certificate: base64 of the SHA-256 of its SubjectPublicKeyInfo.
pub fn pin_of(cert: &CertificateDer<'_>) -> Option<String> {
    use base64::Engine;
    let (_, parsed) = X509Certificate::from_der(cert).ok()?;
    let hash = ::ring::digest::digest(
        &::ring::digest::SHA256,
        parsed.tbs_certificate.subject_pki.raw,
    );
    Some(base64::engine::general_purpose::STANDARD.encode(hash.as_ref()))
}

#[cfg(test)]
mod tests;
