//! Real TLS handshakes over an in-memory pipe against certificates made for each case:
//! what the user reads when a certificate is refused, and pinning.

use super::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io::Write;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

fn ca(cn: &str) -> (rcgen::Certificate, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, cn);
    let cert = p.self_signed(&key).expect("ca");
    (cert, Issuer::new(p, key))
}

fn leaf(
    names: &[&str],
    issuer: Option<&Issuer<'static, KeyPair>>,
) -> (CertificateDer<'static>, KeyPair) {
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("params");
    p.distinguished_name.push(DnType::CommonName, "vps.example");
    let cert = match issuer {
        Some(i) => p.signed_by(&key, i),
        None => p.self_signed(&key),
    }
    .expect("leaf");
    (CertificateDer::from(cert.der().to_vec()), key)
}

/// Runs a handshake of a client built with `trust` for `name` against a server showing
/// `cert`; the client's error, if any.
async fn handshake(
    cert: CertificateDer<'static>,
    key: &KeyPair,
    name: &str,
    trust: &Trust,
) -> Result<(), String> {
    let provider = Arc::new(ring::default_provider());
    let server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .expect("server config");
    let (a, b) = tokio::io::duplex(64 * 1024);
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let srv = tokio::spawn(async move { acceptor.accept(b).await.map(|_| ()) });
    let client = TlsTarget::new(name, trust).expect("client");
    let out = client
        .connect(a)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    drop(srv);
    out
}

fn ca_file(pem: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "burrow-tls-{}-{}.pem",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(pem.as_bytes()))
        .expect("ca file");
    path
}

#[tokio::test]
async fn an_inspecting_proxys_certificate_is_named_by_its_issuer() {
    let (_, inspector) = ca("Corp Inspection CA");
    let (cert, key) = leaf(&["vps.example"], Some(&inspector));
    let err = handshake(cert, &key, "vps.example", &Trust::Roots)
        .await
        .unwrap_err();
    assert!(err.contains("issued by \"CN=Corp Inspection CA\""), "{err}");
    assert!(
        err.contains("inspects TLS") && err.contains("ca_file"),
        "{err}"
    );
    assert!(!err.contains('\n'), "one line: {err}");
}

#[tokio::test]
async fn the_right_ca_file_is_trusted() {
    let (ca_cert, issuer) = ca("Own CA");
    let (cert, key) = leaf(&["vps.example"], Some(&issuer));
    let path = ca_file(&ca_cert.pem());
    let out = handshake(cert, &key, "vps.example", &Trust::WithCa(path.clone())).await;
    let _ = std::fs::remove_file(path);
    assert_eq!(out, Ok(()));
}

#[tokio::test]
async fn a_self_signed_certificate_is_said_with_the_pin_that_would_take_it() {
    let (cert, key) = leaf(&["vps.example"], None);
    let pin = pin_of(&cert).expect("pin");
    let err = handshake(cert.clone(), &key, "vps.example", &Trust::Roots)
        .await
        .unwrap_err();
    assert!(err.contains("self-signed"), "{err}");
    assert!(err.contains(&format!("pin_sha256 = \"{pin}\"")), "{err}");
    // That pin accepts it, whatever name is asked for; another key is refused by name.
    let pinned = Trust::Pinned(vec![parse_pin(&pin).expect("parse")]);
    assert_eq!(handshake(cert, &key, "203.0.113.9", &pinned).await, Ok(()));
    let (other, other_key) = leaf(&["vps.example"], None);
    let other_pin = pin_of(&other).expect("pin");
    let err = handshake(other, &other_key, "vps.example", &pinned)
        .await
        .unwrap_err();
    assert!(
        err.contains("not the pinned one") && err.contains(&other_pin),
        "{err}"
    );
}

#[tokio::test]
async fn a_ca_certificate_used_as_the_servers_own_is_said_so() {
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(vec!["vps.example".to_string()]).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "My VPS CA");
    let cert = p.self_signed(&key).expect("cert");
    let path = ca_file(&cert.pem());
    let der = CertificateDer::from(cert.der().to_vec());
    let err = handshake(der, &key, "vps.example", &Trust::WithCa(path.clone()))
        .await
        .unwrap_err();
    let _ = std::fs::remove_file(path);
    assert!(
        err.contains("presents a CA certificate (\"CN=My VPS CA\")"),
        "{err}"
    );
    assert!(!err.contains("CaUsedAsEndEntity"), "{err}");
}

#[tokio::test]
async fn a_certificate_for_other_names_lists_them() {
    let (ca_cert, issuer) = ca("Own CA");
    let (cert, key) = leaf(&["a.example", "b.example"], Some(&issuer));
    let path = ca_file(&ca_cert.pem());
    let err = handshake(cert, &key, "vps.example", &Trust::WithCa(path.clone()))
        .await
        .unwrap_err();
    let _ = std::fs::remove_file(path);
    assert!(
        err.contains("a.example")
            && err.contains("b.example")
            && err.contains("not for vps.example"),
        "{err}"
    );
}

#[test]
fn pins_read_in_base64_curl_and_hex_forms() {
    let raw = [7u8; 32];
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
    assert_eq!(parse_pin(&b64), Ok(raw));
    assert_eq!(parse_pin(&format!("sha256//{b64}")), Ok(raw));
    assert_eq!(parse_pin(&"07".repeat(32)), Ok(raw));
    assert!(parse_pin("abc").unwrap_err().contains("pin_sha256"));
    assert!(parse_pin(&base64::engine::general_purpose::STANDARD.encode([1u8; 31])).is_err());
}
