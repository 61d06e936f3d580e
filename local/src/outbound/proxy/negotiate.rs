//! Negotiate (SPNEGO/Kerberos) for the CONNECT to a corporate proxy, through the system's
//! GSSAPI (MIT krb5, the `libgssapi` crate) with the user's own credentials: the ticket
//! cache `kinit` filled (`KRB5CCNAME`), for the service `HTTP@proxy-host`. This module
//! only carries the token in a `Proxy-Authorization` header; no Kerberos is written here.

use std::io;

use base64::Engine;
use libgssapi::context::{ClientCtx, CtxFlags};
use libgssapi::name::Name;
use libgssapi::oid::{GSS_MECH_SPNEGO, GSS_NT_HOSTBASED_SERVICE};

/// The `Proxy-Authorization` value for `proxy_host`: `Negotiate <SPNEGO token>`. Blocking
/// (GSSAPI may ask the KDC for the proxy's service ticket): call it off the runtime.
pub fn token(proxy_host: &str) -> io::Result<String> {
    let fail = |step: &str, e: libgssapi::error::Error| {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "Negotiate {step} for HTTP/{proxy_host}: {}",
                one_line(&e.to_string())
            ),
        )
    };
    let service = format!("HTTP@{proxy_host}");
    let name = Name::new(service.as_bytes(), Some(GSS_NT_HOSTBASED_SERVICE))
        .map_err(|e| fail("service name", e))?;
    let mut ctx = ClientCtx::new(None, name, CtxFlags::empty(), Some(GSS_MECH_SPNEGO));
    let tok = ctx
        .step(None, None)
        .map_err(|e| fail("(is there a Kerberos ticket? kinit)", e))?
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                "Negotiate: GSSAPI gave no token",
            )
        })?;
    Ok(format!(
        "Negotiate {}",
        base64::engine::general_purpose::STANDARD.encode(&*tok)
    ))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
