//! NTLM (NTLMv2 only) for the CONNECT to a corporate proxy, through `sspi`: this module
//! only carries its tokens in `Proxy-Authorization` / `Proxy-Authenticate` headers. No
//! NTLM cryptography is written here.

use std::io;

use base64::Engine;
use sspi::{
    AuthIdentity, BufferType, ClientRequestFlags, CredentialUse, DataRepresentation, Ntlm,
    SecurityBuffer, SecurityStatus, Sspi, SspiImpl, Username,
};

use burrow_common::config::Secret;

/// One client-side NTLM exchange: [`Exchange::negotiate`] gives the Type 1 header value,
/// [`Exchange::authenticate`] turns the proxy's Type 2 into the Type 3 one.
pub struct Exchange {
    ntlm: Ntlm,
    creds: <Ntlm as SspiImpl>::CredentialsHandle,
    target: String,
}

fn ntlm_err(step: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, format!("NTLM {step}: {e}"))
}

impl Exchange {
    /// For `user` (`DOMAIN\user`, `user@domain` or `user`) with `password`, towards the
    /// proxy `proxy_host` (service name `HTTP/proxy_host`).
    pub fn new(user: &str, password: &Secret, proxy_host: &str) -> io::Result<Exchange> {
        let username = Username::parse(user).map_err(|e| ntlm_err("user name", e))?;
        let identity = AuthIdentity {
            username,
            password: password.expose().to_owned().into(),
        };
        let mut ntlm = Ntlm::new();
        let acquired = ntlm
            .acquire_credentials_handle()
            .with_credential_use(CredentialUse::Outbound)
            .with_auth_data(&identity)
            .execute(&mut ntlm)
            .map_err(|e| ntlm_err("credentials", e))?;
        Ok(Exchange {
            ntlm,
            creds: acquired.credentials_handle,
            target: format!("HTTP/{proxy_host}"),
        })
    }

    /// The `Proxy-Authorization` value carrying the Type 1 (negotiate) message.
    pub fn negotiate(&mut self) -> io::Result<String> {
        self.step(None).map(|(v, _)| v)
    }

    /// The `Proxy-Authorization` value carrying the Type 3 (authenticate) message, from
    /// the proxy's `Proxy-Authenticate: NTLM <Type 2>` value.
    pub fn authenticate(&mut self, challenge: &str) -> io::Result<String> {
        let token = challenge
            .trim()
            .strip_prefix("NTLM ")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ntlm_err("challenge", "the proxy sent no Type 2 message"))?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(token)
            .map_err(|e| ntlm_err("challenge", e))?;
        // NTLMv2 answers over the challenge's target information; a challenge without it
        // asks for NTLMv1/LM, which burrow never sends.
        const TARGET_INFO: u32 = 0x0080_0000;
        let flags = raw
            .get(20..24)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes);
        if raw.starts_with(b"NTLMSSP\0") && flags.is_some_and(|f| f & TARGET_INFO == 0) {
            return Err(ntlm_err(
                "challenge",
                "it carries no target information, which NTLMv2 needs: the proxy asks for \
                 NTLMv1/LM, which burrow does not send (weak, broken crypto)",
            ));
        }
        self.step(Some(raw)).map(|(v, _)| v)
    }

    fn step(&mut self, input: Option<Vec<u8>>) -> io::Result<(String, SecurityStatus)> {
        let mut output = vec![SecurityBuffer::new(Vec::new(), BufferType::Token)];
        let mut input = input.map(|raw| vec![SecurityBuffer::new(raw, BufferType::Token)]);
        let mut builder = self
            .ntlm
            .initialize_security_context()
            .with_credentials_handle(&mut self.creds)
            .with_context_requirements(ClientRequestFlags::ALLOCATE_MEMORY)
            .with_target_data_representation(DataRepresentation::Native)
            .with_target_name(&self.target)
            .with_output(&mut output);
        if let Some(input) = input.as_mut() {
            builder = builder.with_input(input);
        }
        let result = self
            .ntlm
            .initialize_security_context_impl(&mut builder)
            .and_then(|mut r| r.resolve_to_result())
            .map_err(|e| ntlm_err("message", e))?;
        let token = output
            .first()
            .map(|b| b.buffer.clone())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ntlm_err("message", "no token produced"))?;
        let value = format!(
            "NTLM {}",
            base64::engine::general_purpose::STANDARD.encode(token)
        );
        Ok((value, result.status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_1_then_type_3_from_a_type_2() {
        let mut x =
            Exchange::new("CORP\\alice", &Secret::new("s3cret"), "proxy.corp").expect("exchange");
        let t1 = x.negotiate().expect("type 1");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(t1.trim_start_matches("NTLM "))
            .expect("base64");
        assert!(raw.starts_with(b"NTLMSSP\0"), "{raw:?}");
        assert_eq!(raw[8], 1, "message type 1");
        // A bad challenge is an error, not a panic.
        assert!(x.authenticate("NTLM").is_err());
        assert!(x.authenticate("NTLM !!!").is_err());
        assert!(x.authenticate("Basic x").is_err());
        // squid's ntlm_fake_auth challenge: no target information, so no NTLMv2 answer.
        let v1 = "NTLM TlRMTVNTUAACAAAACQAJAK6qqqoHggiimqA0De6F3XcAAAAAAAA6AFdPUktHUk9VUA==";
        let err = x.authenticate(v1).expect_err("NTLMv1-only challenge");
        assert!(err.to_string().contains("NTLMv1"), "{err}");
    }
}
