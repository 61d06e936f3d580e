//! NTLM and Negotiate on Windows, through Windows's own SSPI (secur32): the logged-on
//! user's credentials — no password in the config, what px and cntlm's `-I` give — or, when
//! the proxy URL carries a user and password, those. Windows does the cryptography, and
//! its policies (NTLMv2 only, Kerberos first) apply; this module only carries the tokens in
//! `Proxy-Authorization` / `Proxy-Authenticate` headers.

use std::io;
use std::ptr;

use base64::Engine;
use burrow_common::config::Secret;
use windows_sys::Win32::Foundation::{SEC_E_OK, SEC_I_CONTINUE_NEEDED};
use windows_sys::Win32::Security::Authentication::Identity::{
    AcquireCredentialsHandleW, DeleteSecurityContext, FreeContextBuffer, FreeCredentialsHandle,
    InitializeSecurityContextW, SecBuffer, SecBufferDesc, ISC_REQ_ALLOCATE_MEMORY,
    ISC_REQ_CONNECTION, SECBUFFER_TOKEN, SECBUFFER_VERSION, SECPKG_CRED_OUTBOUND,
    SECURITY_NATIVE_DREP,
};
use windows_sys::Win32::Security::Credentials::SecHandle;
use windows_sys::Win32::System::Rpc::{SEC_WINNT_AUTH_IDENTITY_UNICODE, SEC_WINNT_AUTH_IDENTITY_W};

/// A token no proxy needs more than: what a Kerberos ticket with a large PAC comes to.
const MAX_TOKEN: usize = 64 * 1024;

/// One client-side exchange with the package of `scheme` (`NTLM` or `Negotiate`).
pub struct Exchange {
    scheme: &'static str,
    creds: SecHandle,
    ctx: Option<SecHandle>,
    /// `HTTP/proxy-host`, as a C wide string.
    target: Vec<u16>,
    done: bool,
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

fn failed(scheme: &str, step: &str, status: i32) -> io::Error {
    let meaning = match status as u32 {
        0x8009_030E => {
            " (no credentials: the logged-on user has none for this; set outbound_username \
             and outbound_password)"
        }
        0x8009_030C => " (logon denied)",
        0x8009_0303 => " (target unknown: no service principal HTTP/ for this proxy host)",
        0x8009_0311 => " (no authority: no domain controller reachable)",
        0x8009_0308 => " (invalid token)",
        _ => "",
    };
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "{scheme} (Windows SSPI) {step}: status 0x{:08x}{meaning}",
            status as u32
        ),
    )
}

impl Exchange {
    /// For `scheme` (`NTLM` or `Negotiate`) towards `proxy_host`: with `auth` (`DOMAIN\user`
    /// or `user`, and the password) when given, else the logged-on user.
    #[allow(unsafe_code)]
    pub fn new(
        scheme: &'static str,
        auth: Option<(&str, &Secret)>,
        proxy_host: &str,
    ) -> io::Result<Exchange> {
        let package = wide(scheme);
        let (mut user, mut domain, mut password) = (Vec::new(), Vec::new(), Vec::new());
        let identity = auth.map(|(who, secret)| {
            let (d, u) = who.split_once('\\').unwrap_or(("", who));
            user = u.encode_utf16().collect();
            domain = d.encode_utf16().collect();
            password = secret.expose().encode_utf16().collect();
            SEC_WINNT_AUTH_IDENTITY_W {
                User: user.as_mut_ptr(),
                UserLength: user.len() as u32,
                Domain: domain.as_mut_ptr(),
                DomainLength: domain.len() as u32,
                Password: password.as_mut_ptr(),
                PasswordLength: password.len() as u32,
                Flags: SEC_WINNT_AUTH_IDENTITY_UNICODE,
            }
        });
        let auth_data = identity.as_ref().map_or(ptr::null(), |i| {
            i as *const SEC_WINNT_AUTH_IDENTITY_W as *const _
        });
        let mut creds = SecHandle::default();
        let mut expiry = 0i64;
        // SAFETY: every pointer is to a live local (or null where SSPI allows it); the
        // identity's buffers outlive the call, which copies them.
        let status = unsafe {
            AcquireCredentialsHandleW(
                ptr::null(),
                package.as_ptr(),
                SECPKG_CRED_OUTBOUND,
                ptr::null(),
                auth_data,
                None,
                ptr::null(),
                &mut creds,
                &mut expiry,
            )
        };
        password.fill(0);
        if status != SEC_E_OK {
            return Err(failed(scheme, "credentials", status));
        }
        Ok(Exchange {
            scheme,
            creds,
            ctx: None,
            target: wide(&format!("HTTP/{proxy_host}")),
            done: false,
        })
    }

    /// The first `Proxy-Authorization` value.
    pub fn first(&mut self) -> io::Result<String> {
        self.step(None)
    }

    /// The next `Proxy-Authorization` value, from the proxy's `Proxy-Authenticate` value
    /// for this scheme; `None` when the exchange is complete on this side (the proxy's
    /// answer stands).
    pub fn next(&mut self, challenge: &str) -> io::Result<Option<String>> {
        if self.done {
            return Ok(None);
        }
        let token = challenge
            .trim()
            .strip_prefix(self.scheme)
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN * 4 / 3 + 4)
            .and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok())
            .ok_or_else(|| failed(self.scheme, "challenge (not base64)", 0))?;
        self.step(Some(&token)).map(Some)
    }

    #[allow(unsafe_code)]
    fn step(&mut self, input: Option<&[u8]>) -> io::Result<String> {
        let mut in_buf = SecBuffer {
            cbBuffer: input.map_or(0, |i| i.len() as u32),
            BufferType: SECBUFFER_TOKEN,
            pvBuffer: input.map_or(ptr::null_mut(), |i| i.as_ptr() as *mut _),
        };
        let in_desc = SecBufferDesc {
            ulVersion: SECBUFFER_VERSION,
            cBuffers: 1,
            pBuffers: &mut in_buf,
        };
        let mut out_buf = SecBuffer {
            cbBuffer: 0,
            BufferType: SECBUFFER_TOKEN,
            pvBuffer: ptr::null_mut(),
        };
        let mut out_desc = SecBufferDesc {
            ulVersion: SECBUFFER_VERSION,
            cBuffers: 1,
            pBuffers: &mut out_buf,
        };
        let mut next = SecHandle::default();
        let (mut attrs, mut expiry) = (0u32, 0i64);
        let current = self.ctx.as_ref().map_or(ptr::null(), |c| c as *const _);
        // SAFETY: the handles are live (the context only after a first call made it), the
        // input buffer borrows `input` for the call, and SSPI allocates the output
        // (ISC_REQ_ALLOCATE_MEMORY), freed below with FreeContextBuffer.
        let status = unsafe {
            InitializeSecurityContextW(
                &self.creds,
                current,
                self.target.as_ptr(),
                ISC_REQ_ALLOCATE_MEMORY | ISC_REQ_CONNECTION,
                0,
                SECURITY_NATIVE_DREP,
                if input.is_some() {
                    &in_desc
                } else {
                    ptr::null()
                },
                0,
                &mut next,
                &mut out_desc,
                &mut attrs,
                &mut expiry,
            )
        };
        if self.ctx.is_none() && (status == SEC_E_OK || status == SEC_I_CONTINUE_NEEDED) {
            self.ctx = Some(next);
        }
        let token = if out_buf.pvBuffer.is_null() {
            Vec::new()
        } else {
            // SAFETY: SSPI wrote `cbBuffer` bytes at `pvBuffer`; copied, then given back.
            let bytes = unsafe {
                std::slice::from_raw_parts(out_buf.pvBuffer as *const u8, out_buf.cbBuffer as usize)
                    .to_vec()
            };
            // SAFETY: allocated by SSPI for this call.
            unsafe { FreeContextBuffer(out_buf.pvBuffer) };
            bytes
        };
        match status {
            SEC_E_OK => self.done = true,
            SEC_I_CONTINUE_NEEDED => {}
            other => return Err(failed(self.scheme, "token", other)),
        }
        if token.is_empty() {
            return Err(failed(self.scheme, "token (empty)", status));
        }
        Ok(format!(
            "{} {}",
            self.scheme,
            base64::engine::general_purpose::STANDARD.encode(token)
        ))
    }
}

impl Drop for Exchange {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: both handles were made by SSPI for this exchange and are freed once.
        unsafe {
            if let Some(ctx) = self.ctx.take() {
                DeleteSecurityContext(&ctx);
            }
            FreeCredentialsHandle(&self.creds);
        }
    }
}
