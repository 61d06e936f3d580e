//! The certificate verifiers: the webpki one with its refusals explained, a pinned key,
//! and none (for a route that asks for it).

use std::sync::Arc;

use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::crypto::{
    verify_tls12_signature, verify_tls13_signature, CryptoProvider,
};
use tokio_rustls::rustls::{CertificateError, OtherError};
use tokio_rustls::rustls::{DigitallySignedStruct, Error, SignatureScheme};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::pin_of;

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
pub(super) fn said(e: std::io::Error) -> std::io::Error {
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
pub(super) struct Explained(pub(super) Arc<WebPkiServerVerifier>);

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
pub(super) struct Pinned {
    pub(super) pins: Vec<[u8; 32]>,
    pub(super) provider: Arc<CryptoProvider>,
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
pub(super) struct NoVerify(pub(super) Arc<CryptoProvider>);

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
