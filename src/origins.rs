//! Test origins beyond the simple one in `kit`: a keep-alive hyper origin that records
//! what reached it, a raw WebSocket-style upgrade echo, and TLS with a CA made on the spot.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::kit::pattern;

type Body = BoxBody<Bytes, Infallible>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

/// What reached an origin: one `METHOD PATH` line per request.
#[derive(Clone, Default)]
pub struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    /// The request lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A keep-alive HTTP/1.1 origin (hyper). Routes: `GET /bytes/N` (pattern, Content-Length),
/// `/status/N` (that status, with a body),
/// `GET /chunked/N` (pattern, chunked), `GET /headers` (the request headers, one
/// `name: value` per line), `POST /sha256` (hex SHA-256 of the body); anything else "ok".
pub async fn hyper_origin() -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
    let addr = listener.local_addr().expect("addr");
    let seen = Seen::default();
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let s = s.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let s = s.clone();
                    async move { Ok::<_, Infallible>(answer(req, s).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(conn), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

async fn answer(req: Request<Incoming>, seen: Seen) -> Response<Body> {
    let line = format!("{} {}", req.method(), req.uri());
    seen.0.lock().unwrap_or_else(|p| p.into_inner()).push(line);
    let path = req.uri().path().to_owned();
    let n = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|n| n.parse::<usize>().ok())
    };
    if let Some(n) = n("/bytes/") {
        return Response::new(full(pattern(n, n as u64)));
    }
    if let Some(n) = n("/chunked/") {
        let body = pattern(n, n as u64);
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = body
            .chunks(10_000)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        return Response::new(StreamBody::new(futures_util::stream::iter(frames)).boxed());
    }
    if let Some(code) = n("/status/") {
        let mut r = Response::new(full(format!("status {code} from the origin\n")));
        *r.status_mut() =
            http::StatusCode::from_u16(code as u16).unwrap_or(http::StatusCode::IM_A_TEAPOT);
        return r;
    }
    if path == "/headers" {
        let text: String = req
            .headers()
            .iter()
            .map(|(k, v)| format!("{}: {}\n", k, v.to_str().unwrap_or("?")))
            .collect();
        return Response::new(full(text));
    }
    if path == "/sha256" {
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Response::new(full(hex::encode(Sha256::digest(&body))));
    }
    Response::new(full("ok"))
}

/// A raw origin that answers any request with `101 Switching Protocols` (WebSocket
/// style) and then echoes every byte back.
pub async fn upgrade_echo_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut c, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match c.read(&mut b).await {
                        Ok(1) => head.push(b[0]),
                        _ => return,
                    }
                }
                let upgrade = String::from_utf8_lossy(&head)
                    .to_ascii_lowercase()
                    .contains("upgrade: websocket");
                if !upgrade {
                    let _ = c
                        .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                        .await;
                    return;
                }
                let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
                if c.write_all(ok).await.is_err() {
                    return;
                }
                let (mut r, mut w) = c.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// A test CA and a server certificate for `localhost` and 127.0.0.1 signed by it.
pub struct TestPki {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The server certificate chain and key, for rustls.
    pub server: Arc<tokio_rustls::rustls::ServerConfig>,
    /// The server certificate, PEM (for peers such as Node).
    pub cert_pem: String,
    /// The server key, PEM.
    pub key_pem: String,
}

/// Makes a CA and a leaf for `names` (DNS names or IPs).
pub fn test_pki(names: &[&str]) -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "burrow test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate().expect("leaf key");
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let leaf = CertificateParams::new(names)
        .expect("leaf params")
        .signed_by(&leaf_key, &issuer)
        .expect("leaf cert");

    let chain = vec![CertificateDer::from(leaf.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let server = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server cert");
    TestPki {
        ca_pem: ca.pem(),
        server: Arc::new(server),
        cert_pem: leaf.pem(),
        key_pem: leaf_key.serialize_pem(),
    }
}

/// Writes the CA certificate to `path`.
pub fn write_ca(pki: &TestPki, path: &Path) {
    std::fs::write(path, &pki.ca_pem).expect("write CA");
}

/// An HTTPS origin (one request per connection) answering "secret over tls\n".
pub async fn tls_origin(pki: &TestPki) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server.clone());
    tokio::spawn(async move {
        while let Ok((c, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(c).await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let body = "secret over tls\n";
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

/// Makes a test PKI for `names` and writes `cert.pem`, `key.pem` and `ca.pem` into `dir`;
/// returns their paths in that order.
pub fn write_pki(
    dir: &Path,
    names: &[&str],
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let pki = test_pki(names);
    let (cert, key, ca) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("ca.pem"),
    );
    std::fs::write(&cert, &pki.cert_pem).expect("cert");
    std::fs::write(&key, &pki.key_pem).expect("key");
    std::fs::write(&ca, &pki.ca_pem).expect("ca");
    (cert, key, ca)
}
