//! An HTTP CONNECT (RFC 9110 §9.3.6) as a tunnel: the request's authority is the target,
//! the status line is the answer, the upgraded connection is the app's stream.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, Span};

use crate::inbound::forward::target_of;
use crate::inbound::respond::{text, Body};
use crate::outbound::dial::DialError;
use crate::settings::Settings;

/// Serves a CONNECT: the tunnel runs as a task of the client's connection (it outlives
/// the request), and hyper writes whichever answer it gives.
pub async fn connect(
    req: Request<Incoming>,
    s: Arc<Settings>,
    tasks: &TaskTracker,
) -> Response<Body> {
    let Some(target) = target_of(req.uri(), 443).filter(|_| req.uri().port_u16().is_some()) else {
        return text(
            StatusCode::BAD_REQUEST,
            "burrow-local: CONNECT needs host:port",
        );
    };
    let (respond, response) = oneshot::channel();
    let answer = Answer {
        req,
        respond,
        timeout: s.handshake_timeout,
    };
    tasks.spawn(
        async move { crate::tunnel::tunnel("CONNECT tunnel", &target, answer, &s).await }
            .instrument(Span::current()),
    );
    response.await.unwrap_or_else(|_| {
        text(
            StatusCode::BAD_GATEWAY,
            "burrow-local: the tunnel ended before it answered",
        )
    })
}

/// The answer to a CONNECT: a status for hyper to write, then the upgraded connection.
struct Answer {
    req: Request<Incoming>,
    respond: oneshot::Sender<Response<Body>>,
    timeout: std::time::Duration,
}

impl crate::tunnel::Answer for Answer {
    type App = TokioIo<Upgraded>;

    async fn open(self) -> io::Result<(Bytes, TokioIo<Upgraded>)> {
        if self
            .respond
            .send(Response::new(BoxBody::default()))
            .is_err()
        {
            return Err(io::ErrorKind::ConnectionAborted.into());
        }
        // Bytes the app sent before its 200 are in the upgraded stream already.
        let upgrade = async { hyper::upgrade::on(self.req).await.map_err(io::Error::other) };
        let up = burrow_common::timeout::with_timeout("CONNECT upgrade", self.timeout, upgrade);
        Ok((Bytes::new(), TokioIo::new(up.await?)))
    }

    async fn failed(self, e: &DialError) {
        let _ = self
            .respond
            .send(text(e.http_status(), format!("burrow-local: {e}")));
    }
}
