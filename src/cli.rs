//! What every `main` does the same way: parse (exit 2 with one line), log setup.

use std::process::ExitCode;

use clap::Parser;

/// Exit code for bad command-line or config input (EX_USAGE-like, as clap uses).
pub const USAGE: u8 = 2;

/// Parses the command line; help and version print and exit 0, anything else wrong
/// prints one line `NAME: error: …` and exits 2.
pub fn parse<T: Parser>(name: &str) -> T {
    match T::try_parse() {
        Ok(t) => t,
        Err(e) => {
            use clap::error::ErrorKind::*;
            if matches!(
                e.kind(),
                DisplayHelp | DisplayVersion | DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                std::process::exit(0);
            }
            let text = e.render().to_string();
            let line = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments");
            let line = line.trim_start_matches("error: ");
            eprintln!("{name}: error: {line} (see --help)");
            std::process::exit(USAGE as i32);
        }
    }
}

/// Prints one line for bad input and yields exit code 2.
pub fn usage_error(name: &str, msg: &str) -> ExitCode {
    eprintln!("{name}: error: {msg}");
    ExitCode::from(USAGE)
}

/// Logs to stderr: `RUST_LOG` if set (`level` or `target=level,…`), else info (`-v` debug,
/// `-vv` trace); text or JSON. (Per-target levels only: no span or field filters, which
/// would pull a regex engine into every start.)
pub fn init_tracing(verbose: u8, format: &str) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let default = match verbose {
        0 => LevelFilter::INFO,
        1 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let filter = match from_env.map(|v| (v.parse::<Targets>(), v)) {
        Some((Ok(t), _)) => t,
        Some((Err(e), v)) => {
            eprintln!("RUST_LOG={v:?} ignored ({e}); logging at {default}");
            Targets::new().with_default(default)
        }
        None => Targets::new().with_default(default),
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_max_level(LevelFilter::TRACE)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().finish().with(filter).init();
    } else {
        builder.finish().with(filter).init();
    }
}

/// A command's one line: on stdout and exit 0, or on stderr after the program's name and
/// exit 1.
pub fn said(name: &str, r: Result<String, String>) -> ExitCode {
    match r {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Sends everything written to stderr from now on — the log, the `listening on` lines,
/// one-line errors — to `path` (appended; its folder made if need be).
pub fn log_to_file(path: &std::path::Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    #[cfg(unix)]
    #[allow(unsafe_code)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: both descriptors are open (the file's until this returns, 2 the
        // process's own); dup2 replaces 2 with a copy of the file's.
        if unsafe { libc::dup2(file.as_raw_fd(), 2) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    #[cfg(windows)]
    #[allow(unsafe_code)]
    {
        use std::os::windows::io::IntoRawHandle;
        use windows_sys::Win32::System::Console::{SetStdHandle, STD_ERROR_HANDLE};
        // The handle stays open for the life of the process, as stderr's does.
        let handle = file.into_raw_handle();
        // SAFETY: `handle` is an open file handle this process owns from now on.
        if unsafe { SetStdHandle(STD_ERROR_HANDLE, handle as _) } == 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Chooses the AEAD implementation for each method in use (a short measurement, once)
/// and says which at `-v`.
pub fn choose_aead(methods: impl IntoIterator<Item = burrow_common::Method>) {
    let mut seen = Vec::new();
    for alg in methods.into_iter().map(|m| m.algorithm()) {
        if !seen.contains(&alg) {
            seen.push(alg);
            let choice = burrow_common::backend::choice(alg);
            tracing::debug!("{alg} sealed by {choice}");
        }
    }
}

/// The runtime every binary uses.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    // BURROW_WORKER_THREADS: 0 (or 1) runs everything on one thread; default: one per core.
    match std::env::var("BURROW_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        Some(0 | 1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    }
}

/// The rest of every serving `main`: tracing, runtime, bind every address, print
/// `listening on ADDR` for each on stderr, then `run` until SIGTERM/SIGINT. Exit 0 after a
/// clean drain, 1 on failure.
pub fn serve<F, Fut>(
    name: &str,
    listen: &[std::net::SocketAddr],
    log: &burrow_common::config::SharedArgs,
    run: F,
) -> ExitCode
where
    F: FnOnce(Vec<tokio::net::TcpListener>, tokio_util::sync::CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    serve_until(name, listen, log, None, run)
}

/// [`serve`], stopped by `stop` when given (a Windows service's Stop) instead of the
/// signals and console events.
pub fn serve_until<F, Fut>(
    name: &str,
    listen: &[std::net::SocketAddr],
    log: &burrow_common::config::SharedArgs,
    stop: Option<tokio_util::sync::CancellationToken>,
    run: F,
) -> ExitCode
where
    F: FnOnce(Vec<tokio::net::TcpListener>, tokio_util::sync::CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    if let Some(path) = &log.log_file {
        if let Err(e) = log_to_file(path) {
            eprintln!("{name}: cannot log to {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    init_tracing(log.verbose, &log.log_format);
    // Also when max_connections is set by hand: it may count on more than the soft limit.
    #[cfg(unix)]
    burrow_common::net::raise_descriptor_limit();
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        let mut listeners = Vec::new();
        for addr in listen {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => listeners.push(l),
                Err(e) => {
                    eprintln!("{name}: cannot listen on {addr}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        // The signal handlers first: once a program says it listens, a SIGTERM drains it.
        // A service's logoff and console events are not its own: only the SCM stops it.
        let shutdown = match stop {
            Some(stop) => {
                let asked = stop.clone();
                tokio::spawn(async move {
                    asked.cancelled().await;
                    tracing::info!("asked to stop: no new connections, draining open tunnels");
                });
                stop
            }
            None => burrow_common::shutdown::on_signal(),
        };
        for l in &listeners {
            match l.local_addr() {
                Ok(a) => eprintln!("listening on {a}"),
                Err(e) => eprintln!("{name}: listening, address unknown: {e}"),
            }
        }
        match run(listeners, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{name}: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}
