//! A soak: many concurrent mixed tunnels (bulk downloads, request/response, UDP echoes)
//! through burrow-local → squid → a fault relay → burrow-server for the length of the run,
//! while faults are injected in turn: the server restarted on its port, squid restarted,
//! the connections open at that moment gone silent (then reset, as a NAT that forgot them
//! answers the next packet), writes sliced into single bytes, every connection reset.
//! Every byte an app got must be byte-exact; every failure a clean error within the
//! bound; burrow-local's descriptors and memory back near their start values afterwards.
//! Used by `burrow-bench soak` and by tests/soak.rs.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::kit::{self, Proc};
use crate::peers::Squid;

mod ops;
mod relay;

use ops::{bulk, udp, Counters, Outcome};
use relay::{fault_relay, Faults};

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    pub duration: Duration,
    pub tunnels: usize,
    /// A fault every this long.
    pub fault_every: Duration,
    /// burrow-local and burrow-server.
    pub local: String,
    pub server: String,
    /// Where squid keeps its files.
    pub dir: std::path::PathBuf,
}

/// The faults, injected in this order, round and round.
pub const FAULTS: [&str; 5] = [
    "server restart",
    "sliced writes",
    "silent deaths",
    "proxy restart",
    "resets",
];

/// An operation taking longer than this is a hang.
pub const BOUND: Duration = Duration::from_secs(60);

/// What came of the run.
#[derive(Debug, Default)]
pub struct Report {
    pub ops: u64,
    pub ok: u64,
    /// Clean errors: a refusal, a reset, a short body that is a true prefix.
    pub clean_errors: u64,
    /// Bytes that differ from what the origin sent: must be 0.
    pub corrupt: u64,
    /// Operations past [`BOUND`]: must be 0.
    pub hangs: u64,
    pub bytes: u64,
    pub datagrams: u64,
    pub datagrams_lost: u64,
    /// Intact datagrams of another association (its app port used again): not corrupt.
    pub strays: u64,
    /// The first corrupt operations, said.
    pub corrupt_notes: Vec<String>,
    pub faults: Vec<(&'static str, Option<Duration>)>,
    /// burrow-local's descriptors and RSS (KiB): at the start, at the end of the load, and
    /// once it settled.
    pub fds: (usize, usize, usize),
    pub rss_kib: (u64, u64, u64),
    /// The worst time from an error to that tunnel's next success.
    pub worst_recovery: Duration,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "soak: {} operations, {} ok, {} clean errors, {} corrupt, {} hangs; {} MB, \
             {} datagrams ({} lost, {} strays); worst recovery {:.1} s",
            self.ops,
            self.ok,
            self.clean_errors,
            self.corrupt,
            self.hangs,
            self.bytes / 1_000_000,
            self.datagrams,
            self.datagrams_lost,
            self.strays,
            self.worst_recovery.as_secs_f64()
        )?;
        for note in &self.corrupt_notes {
            writeln!(f, "  corrupt: {note}")?;
        }
        for (name, back) in &self.faults {
            match back {
                Some(d) => writeln!(
                    f,
                    "  fault {name}: tunnels back after {:.2} s",
                    d.as_secs_f64()
                )?,
                None => writeln!(f, "  fault {name}: no tunnel succeeded after it")?,
            }
        }
        write!(
            f,
            "  burrow-local descriptors {} → {} → {}, RSS {} → {} → {} KiB",
            self.fds.0, self.fds.1, self.fds.2, self.rss_kib.0, self.rss_kib.1, self.rss_kib.2
        )
    }
}

/// Runs the soak; the caller checks the report.
pub async fn run(o: Options) -> Report {
    let target = kit::http_target().await;
    let (echo, _) = kit::udp_echo().await;
    let port = kit::free_port();
    let server_args = [
        "-s".to_owned(),
        format!("127.0.0.1:{port}"),
        "-k".into(),
        "soak-password".into(),
        "--allow-private".into(),
    ];
    let start_server = || {
        let args: Vec<&str> = server_args.iter().map(String::as_str).collect();
        let p = Proc::spawn(&o.server, &args, &[]);
        p.listening();
        p
    };
    let mut server = start_server();
    let faults = Arc::new(Faults::default());
    let relay = fault_relay(SocketAddr::from(([127, 0, 0, 1], port)), faults.clone()).await;
    let mut squid = Squid::start(o.dir.clone(), &[relay.port()]);
    let proxy = format!("http://alice:s3cret@{}", squid.addr);
    let local = Proc::spawn(
        &o.local,
        &[
            "-b",
            "127.0.0.1:0",
            "-s",
            &relay.to_string(),
            "-k",
            "soak-password",
            "--outbound-proxy",
            &proxy,
        ],
        &[],
    );
    let local_addr = local.listening();
    let pid = local.pid();
    let c = Arc::new(Counters::default());
    let t0 = Instant::now();
    let stop = CancellationToken::new();
    let workers: Vec<_> = (0..o.tunnels as u64)
        .map(|w| {
            let (c, stop) = (c.clone(), stop.clone());
            tokio::spawn(async move {
                let mut failing_since: Option<Instant> = None;
                let mut i = w;
                while !stop.is_cancelled() {
                    i += 1;
                    let op = async {
                        match i % 3 {
                            0 => {
                                bulk(local_addr, target, 16_384 + (i as usize * 7919) % 1_000_000)
                                    .await
                            }
                            1 => bulk(local_addr, target, 1000).await,
                            _ => udp(local_addr, echo, i, &c).await,
                        }
                    };
                    c.ops.fetch_add(1, Relaxed);
                    let done = tokio::select! {
                        done = tokio::time::timeout(BOUND, op) => done,
                        // The end of the run: what is under way is not counted.
                        _ = stop.cancelled() => {
                            c.ops.fetch_sub(1, Relaxed);
                            break;
                        }
                    };
                    match done {
                        Err(_) => {
                            c.hangs.fetch_add(1, Relaxed);
                        }
                        Ok(Outcome::Corrupt(what)) => {
                            c.corrupt.fetch_add(1, Relaxed);
                            let mut notes = c.notes.lock().unwrap_or_else(|p| p.into_inner());
                            if notes.len() < 5 {
                                notes.push(what);
                            }
                        }
                        Ok(Outcome::Clean) => {
                            c.clean.fetch_add(1, Relaxed);
                            failing_since.get_or_insert_with(Instant::now);
                            // A failed tunnel does not spin: the next try a moment later.
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Ok(Outcome::Ok(n)) => {
                            c.ok.fetch_add(1, Relaxed);
                            c.bytes.fetch_add(n, Relaxed);
                            c.last_ok_ms
                                .fetch_max(t0.elapsed().as_millis() as u64, Relaxed);
                            if let Some(since) = failing_since.take() {
                                let ms = since.elapsed().as_millis() as u64;
                                c.worst_recovery_ms.fetch_max(ms, Relaxed);
                            }
                        }
                    }
                }
            })
        })
        .collect();
    let start_fds = kit::fd_count(pid);
    let start_rss = kit::rss_kib(pid);
    let mut report = Report::default();
    let kinds = FAULTS;
    let mut k = 0;
    while t0.elapsed() + o.fault_every < o.duration {
        tokio::time::sleep(o.fault_every).await;
        let name = kinds[k % kinds.len()];
        k += 1;
        match name {
            "server restart" => {
                drop(server);
                server = start_server();
            }
            "sliced writes" => {
                faults.slicing.store(true, Relaxed);
                tokio::time::sleep(Duration::from_secs(3)).await;
                faults.slicing.store(false, Relaxed);
            }
            "silent deaths" => {
                faults.each(|silent, _| silent.store(true, Relaxed));
                tokio::time::sleep(Duration::from_secs(3)).await;
                faults.each(|silent, reset| {
                    if silent.load(Relaxed) {
                        reset.cancel();
                    }
                });
            }
            "proxy restart" => squid.restart(),
            _ => faults.each(|_, reset| reset.cancel()),
        }
        let ended = t0.elapsed().as_millis() as u64;
        // Recovery: the first success after the fault ended (looked at until the next).
        let wait_until = Instant::now() + o.fault_every;
        let mut back = None;
        while Instant::now() < wait_until {
            let last = c.last_ok_ms.load(Relaxed);
            if last > ended {
                back = Some(Duration::from_millis(last - ended));
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        report.faults.push((name, back));
    }
    let rest = o.duration.saturating_sub(t0.elapsed());
    tokio::time::sleep(rest).await;
    stop.cancel();
    for w in workers {
        if let Err(e) = w.await {
            c.corrupt.fetch_add(1, Relaxed);
            let mut notes = c.notes.lock().unwrap_or_else(|p| p.into_inner());
            notes.push(format!("a tunnel's task ended: {e}"));
        }
    }
    let (end_fds, end_rss) = (kit::fd_count(pid), kit::rss_kib(pid));
    // Settled: open tunnels gone, the pool back to its size.
    let settle = Instant::now() + Duration::from_secs(30);
    while kit::fd_count(pid) > start_fds + 16 && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // And memory: burrow-local gives back what the load freed at its next look (every
    // 5 s); its resident size is read once it stops falling, or at the limit.
    let mut rss = kit::rss_kib(pid);
    while Instant::now() < settle {
        tokio::time::sleep(Duration::from_secs(6)).await;
        let now = kit::rss_kib(pid);
        if now + 256 >= rss {
            rss = rss.min(now);
            break;
        }
        rss = now;
    }
    report.ops = c.ops.load(Relaxed);
    report.ok = c.ok.load(Relaxed);
    report.clean_errors = c.clean.load(Relaxed);
    report.corrupt = c.corrupt.load(Relaxed);
    report.hangs = c.hangs.load(Relaxed);
    report.bytes = c.bytes.load(Relaxed);
    report.datagrams = c.datagrams.load(Relaxed);
    report.datagrams_lost = c.datagrams_lost.load(Relaxed);
    report.strays = c.strays.load(Relaxed);
    report.corrupt_notes = std::mem::take(&mut *c.notes.lock().unwrap_or_else(|p| p.into_inner()));
    report.worst_recovery = Duration::from_millis(c.worst_recovery_ms.load(Relaxed));
    report.fds = (start_fds, end_fds, kit::fd_count(pid));
    report.rss_kib = (start_rss, end_rss, rss);
    drop(local);
    report
}
