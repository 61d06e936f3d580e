//! The Prometheus endpoint both programs serve when asked (`metrics = "ADDR"`), and the
//! text format's pieces. What is counted lives with each program.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// One line when the metrics listen beyond loopback: anyone who reaches them learns
/// what runs here (a burrow-server's probe counter gives it away) and the traffic it
/// carries.
pub fn warn_if_open(at: std::net::SocketAddr) {
    if !at.ip().is_loopback() {
        tracing::warn!(
            "metrics on {at}: readable by anyone who can reach it, with no authentication \
             (what runs here, users' traffic); bind it to 127.0.0.1 or firewall it"
        );
    }
}

/// Connections served at once; more wait in the backlog.
const MAX_CONNECTIONS: usize = 64;

/// Serves `GET /metrics` (the text `render` gives at each request) on `listener` until
/// `shutdown`. Each connection is bounded: 10 s for its head, 30 s in all; 64 at once.
pub async fn serve<F>(listener: TcpListener, render: Arc<F>, shutdown: CancellationToken)
where
    F: Fn() -> String + Send + Sync + 'static,
{
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (conn, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = crate::net::accept_with_backoff(&listener) => c,
        };
        let render = render.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let render = render.clone();
                async move {
                    let mut r = if req.uri().path() == "/metrics" {
                        Response::new(Full::new(Bytes::from(render())))
                    } else {
                        let mut r = Response::new(Full::new(Bytes::from_static(b"see /metrics\n")));
                        *r.status_mut() = StatusCode::NOT_FOUND;
                        r
                    };
                    r.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("text/plain; version=0.0.4"),
                    );
                    Ok::<_, Infallible>(r)
                }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(conn), svc);
            let _ = crate::timeout::within(std::time::Duration::from_secs(30), served).await;
        });
    }
}

/// A metric family's type, as the exposition format names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// Appends one family: `# HELP`, `# TYPE`, then `name{labels} value` per sample.
pub fn family(out: &mut String, name: &str, kind: Kind, help: &str, samples: &[(String, u64)]) {
    let kind = kind.name();
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

/// A histogram of durations in fixed buckets (seconds), safe to add to from any thread.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<std::sync::atomic::AtomicU64>,
    sum_micros: std::sync::atomic::AtomicU64,
}

impl Histogram {
    /// Buckets at `bounds` (seconds, ascending) and +Inf.
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| Default::default()).collect(),
            sum_micros: Default::default(),
        }
    }

    /// Counts one observation.
    pub fn observe(&self, d: std::time::Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        let s = d.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
    }

    /// Appends `name_bucket`, `name_sum` and `name_count` lines with `labels` (`k="v"`,
    /// or empty).
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        use std::sync::atomic::Ordering::Relaxed;
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Relaxed);
            let le = self
                .bounds
                .get(i)
                .map_or("+Inf".to_owned(), |b| b.to_string());
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}
