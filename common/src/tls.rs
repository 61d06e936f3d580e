//! TLS made by burrow-local, end to end inside the tunnel, for wss/https upstreams.
//! rustls with the webpki (Mozilla) roots plus an optional `ca_file`, or a pinned key;
//! verification is only skipped for a route that asks for it. A refused certificate is
//! explained in one line (who issued it, whose it is, the pin that would accept it).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::crypto::{
    ring, verify_tls12_signature, verify_tls13_signature, CryptoProvider,
};
use tokio_rustls::rustls::{CertificateError, OtherError};
use tokio_rustls::rustls::{
    ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme,
};
use tokio_rustls::TlsConnector;
use x509_parser::prelude::{FromDer, X509Certificate};

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

/// Why a certificate was refused, in words a user can act on.
#[derive(Debug)]
struct Diagnosis(String);

impl std::fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Diagnosis {}

/// The diagnosis inside a handshake error, as the error's text.
fn said(e: std::io::Error) -> std::io::Error {
    let diagnosis = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<Error>())
        .and_then(|tls| match tls {
            Error::InvalidCertificate(CertificateError::Other(OtherError(why))) => {
                why.downcast_ref::<Diagnosis>()
            }
            _ => None,
        })
        .map(|d| format!("certificate refused: {d}"));
    match diagnosis {
        Some(text) => std::io::Error::new(e.kind(), text),
        None => e,
    }
}

fn diagnosis(text: String) -> Error {
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Diagnosis(
        text,
    )))))
}

/// Turns the verifier's refusal into what the user should know: who issued the
/// certificate (a network that inspects TLS shows its own CA here), a self-signed or CA
/// certificate used as the server's own (with the pin that would accept it), the names it
/// is for, when it expired. Other refusals pass as they are.
fn explain(
    err: Error,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Error {
    let Error::InvalidCertificate(why) = &err else {
        return err;
    };
    let Ok((_, cert)) = X509Certificate::from_der(end_entity) else {
        return err;
    };
    let issuer = cert.issuer().to_string();
    let subject = cert.subject().to_string();
    let pin = pin_of(end_entity).unwrap_or_default();
    let self_signed = issuer == subject && intermediates.is_empty();
    let text = match why {
        _ if cert.is_ca() && !matches!(why, CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }) => format!(
            "the server presents a CA certificate (\"{subject}\") as its own: give the server a certificate \
             signed by that CA, or trust this key alone with pin_sha256 = \"{pin}\""
        ),
        CertificateError::UnknownIssuer if self_signed => format!(
            "the server's certificate is self-signed (\"{subject}\"): give it as ca_file, or trust this key \
             alone with pin_sha256 = \"{pin}\" (check that hash on the server first)"
        ),
        CertificateError::UnknownIssuer => format!(
            "the certificate is issued by \"{issuer}\", which is not trusted here: if this network \
             inspects TLS, add its CA with ca_file, or use the tcp transport"
        ),
        CertificateError::NotValidForNameContext { expected, presented } => format!(
            "the certificate is for {} and not for {}: set sni to one of those names, or give the server \
             a certificate for this one",
            presented.join(", "),
            expected.to_str()
        ),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => format!(
            "the certificate (\"{subject}\") expired on {} (or this machine's clock is wrong)",
            cert.validity().not_after
        ),
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => format!(
            "the certificate (\"{subject}\") is valid only from {} (or this machine's clock is wrong)",
            cert.validity().not_before
        ),
        _ => return err,
    };
    diagnosis(text)
}

/// The Mozilla roots and `ca_file`, with refusals explained.
#[derive(Debug)]
struct Explained(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for Explained {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.0
            .verify_server_cert(end_entity, intermediates, name, ocsp, now)
            .map_err(|e| explain(e, end_entity, intermediates))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A server known by its key alone (`pin_sha256`); the handshake signatures are still
/// checked, so only the holder of that key gets through.
#[derive(Debug)]
struct Pinned {
    pins: Vec<[u8; 32]>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        use base64::Engine;
        let Some(pin) = pin_of(end_entity) else {
            return Err(Error::InvalidCertificate(CertificateError::BadEncoding));
        };
        let hash = base64::engine::general_purpose::STANDARD
            .decode(&pin)
            .unwrap_or_default();
        if self.pins.iter().any(|p| p[..] == hash[..]) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(diagnosis(format!(
                "the server's key is not the pinned one: it has pin_sha256 = \"{pin}\" (if the server's key \
                 changed, check that hash on the server; if not, something in between answers in its place)"
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Accepts any certificate: only for routes with `insecure_skip_verify = true`.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
