//! SIP002 `ss://` URLs: the server, method and password in one line (what apps and
//! phones are given, and what `-s` takes).

use percent_encoding::percent_decode_str;

use crate::aead::Method;
use crate::config::Secret;
use crate::key::decode_base64;

/// A server named by a SIP002 `ss://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsUrl {
    /// The method.
    pub method: Method,
    /// The password (or key, for methods that take one).
    pub password: Secret,
    /// Host name or IP (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// The SIP003 plugin and its options (`?plugin=name;opts`, decoded), if any.
    pub plugin: Option<String>,
}

/// Why an `ss://` URL was refused.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    /// Does not start with `ss://`.
    #[error("not an ss:// URL")]
    Scheme,
    /// Structure is wrong.
    #[error("malformed ss:// URL: {0}")]
    Malformed(&'static str),
    /// Unknown method.
    #[error(transparent)]
    Method(#[from] crate::aead::UnknownMethod),
}

impl SsUrl {
    /// Parses SIP002 (`ss://base64url(method:password)@host:port`, or percent-encoded
    /// `ss://method:password@host:port`) and the legacy `ss://base64(method:password@host:port)`.
    /// A `#tag` is ignored; `/?plugin=…` is kept.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let rest = url.trim().strip_prefix("ss://").ok_or(UrlError::Scheme)?;
        let rest = rest.split('#').next().unwrap_or_default();
        let plugin = rest
            .split_once('?')
            .map(|(_, q)| q)
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|kv| kv.strip_prefix("plugin="))
            .map(|v| {
                percent_decode_str(&v.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .filter(|p| !p.trim().is_empty());
        let rest = rest.split(['/', '?']).next().unwrap_or_default();
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (u.to_owned(), h.to_owned()),
            None => {
                let body = decode_base64(rest).ok_or(UrlError::Malformed("body is not base64"))?;
                let body = String::from_utf8(body)
                    .map_err(|_| UrlError::Malformed("body is not UTF-8"))?;
                let (u, h) = body
                    .rsplit_once('@')
                    .ok_or(UrlError::Malformed("no @ between credentials and host"))?;
                (u.to_owned(), h.to_owned())
            }
        };
        let userinfo = if userinfo.contains(':') {
            percent_decode_str(&userinfo)
                .decode_utf8()
                .map_err(|_| UrlError::Malformed("userinfo is not UTF-8"))?
                .into_owned()
        } else {
            let raw =
                decode_base64(&userinfo).ok_or(UrlError::Malformed("userinfo is not base64"))?;
            String::from_utf8(raw).map_err(|_| UrlError::Malformed("userinfo is not UTF-8"))?
        };
        let (method, password) = userinfo
            .split_once(':')
            .ok_or(UrlError::Malformed("userinfo is not method:password"))?;
        let crate::HostPort { host, port } = hostport
            .parse()
            .map_err(|_| UrlError::Malformed("host:port"))?;
        Ok(SsUrl {
            method: method.parse()?,
            password: Secret::new(password),
            host,
            port,
            plugin,
        })
    }

    /// The SIP002 form: base64url userinfo, or percent-encoding for 2022 keys.
    pub fn to_url(&self) -> String {
        use base64::Engine as _;
        // SIP002: base64url userinfo, except for 2022 methods, whose keys are already
        // base64 and go percent-encoded.
        let user = if self.method.is_2022() {
            let enc = |t: &str| {
                percent_encoding::utf8_percent_encode(t, percent_encoding::NON_ALPHANUMERIC)
                    .to_string()
            };
            format!("{}:{}", self.method, enc(self.password.expose()))
        } else {
            let plain = format!("{}:{}", self.method, self.password.expose());
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(plain)
        };
        let host = crate::hostport::bracket(&self.host);
        match &self.plugin {
            None => format!("ss://{user}@{host}:{}", self.port),
            Some(p) => {
                let p =
                    percent_encoding::utf8_percent_encode(p, percent_encoding::NON_ALPHANUMERIC);
                format!("ss://{user}@{host}:{}/?plugin={p}", self.port)
            }
        }
    }
}
