//! Why a tunnel could not be opened, as the app is told it (a SOCKS5 reply, an HTTP
//! status) and as the log says it.

use std::io;
use std::time::Duration;

use burrow_common::TargetAddr;
use fast_socks5::ReplyError;

/// Why no tunnel could be opened.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// burrow-server itself could not be reached.
    #[error("cannot reach the server {server}: {source}")]
    Server {
        /// host:port of the server.
        server: String,
        /// What went wrong.
        source: io::Error,
    },
    /// The server closed without a byte: its egress policy refused the target, or the
    /// target did not answer it.
    #[error(
        "the server could not open {0} (refused by its egress policy, or unreachable from it)"
    )]
    Target(TargetAddr),
    /// A target routed around the tunnel (`direct`, or `proxy`: the corporate proxy
    /// alone) could not be reached.
    #[error("cannot reach {target} {via}: {source}")]
    Around {
        /// The app's target.
        target: TargetAddr,
        /// `directly` or `through the corporate proxy`.
        via: &'static str,
        /// What went wrong.
        source: io::Error,
    },
    /// A rule blocks the target.
    #[error("{target} is blocked by {rule}")]
    Blocked {
        /// The app's target.
        target: TargetAddr,
        /// Which rule.
        rule: String,
    },
    /// The server did not answer in time.
    #[error(
        "the server did not answer within {0:?} (a wrong password or method gets silence; \
             a server other than burrow-server needs confirm_connect = \"auto\" or false)"
    )]
    NoAnswer(Duration),
}

impl DialError {
    /// The HTTP status for this failure: 504 for timeouts, else 502.
    pub fn http_status(&self) -> http::StatusCode {
        match self {
            DialError::Server { source, .. } | DialError::Around { source, .. }
                if source.kind() == io::ErrorKind::TimedOut =>
            {
                http::StatusCode::GATEWAY_TIMEOUT
            }
            DialError::Blocked { .. } => http::StatusCode::FORBIDDEN,
            DialError::NoAnswer(_) => http::StatusCode::GATEWAY_TIMEOUT,
            _ => http::StatusCode::BAD_GATEWAY,
        }
    }

    /// The SOCKS5 reply for this failure.
    pub fn socks_reply(&self) -> ReplyError {
        match self {
            DialError::Blocked { .. } => ReplyError::ConnectionNotAllowed,
            DialError::Server { source, .. } | DialError::Around { source, .. } => {
                match source.kind() {
                    io::ErrorKind::ConnectionRefused => ReplyError::ConnectionRefused,
                    io::ErrorKind::PermissionDenied => ReplyError::ConnectionNotAllowed,
                    io::ErrorKind::TimedOut => ReplyError::TtlExpired,
                    io::ErrorKind::NetworkUnreachable => ReplyError::NetworkUnreachable,
                    io::ErrorKind::HostUnreachable | io::ErrorKind::NotFound => {
                        ReplyError::HostUnreachable
                    }
                    _ => ReplyError::GeneralFailure,
                }
            }
            DialError::Target(_) => ReplyError::HostUnreachable,
            DialError::NoAnswer(_) => ReplyError::TtlExpired,
        }
    }
}

/// Logs a failed tunnel. Trouble reaching the server (a proxy refusing, a timeout) is
/// said once as a warning, not once per connection; repeats go to debug.
pub fn report(e: &DialError) {
    static LAST: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());
    match e {
        DialError::Server { .. } => {
            let msg = e.to_string();
            let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
            if *last == msg {
                tracing::debug!("{msg}");
            } else {
                tracing::warn!("{msg}");
                *last = msg;
            }
        }
        _ => tracing::info!("{e}"),
    }
}
