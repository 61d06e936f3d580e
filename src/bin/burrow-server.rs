//! burrow-server: parse → validate (exit 2) → tracing → bind → run.

use std::process::ExitCode;

use burrow::cli;
use burrow_server::config::{self, Cli, Command};

fn main() -> ExitCode {
    let args: Cli = cli::parse("burrow-server");
    if let Some(Command::Genkey { method, server }) = &args.command {
        return match config::genkey(method, server) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => cli::usage_error("burrow-server", &e),
        };
    }
    let loaded = match config::load(&args) {
        Ok(l) => l,
        Err(e) => return cli::usage_error("burrow-server", &e),
    };
    // The TCP listener first, then the WebSocket one and the metrics endpoint if asked for.
    let mut listen = vec![loaded.listen];
    listen.extend(loaded.ws_listen);
    listen.extend(loaded.metrics);
    let (has_ws, has_metrics) = (loaded.ws_listen.is_some(), loaded.metrics.is_some());
    let run = move |listeners: Vec<tokio::net::TcpListener>, shutdown| async move {
        for w in &loaded.warnings {
            tracing::warn!("{w}");
        }
        let mut it = listeners.into_iter();
        let Some(tcp) = it.next() else { return Ok(()) };
        let ws = if has_ws { it.next() } else { None };
        let metrics = if has_metrics { it.next() } else { None };
        burrow_server::run(loaded.settings, tcp, ws, metrics, shutdown).await
    };
    cli::serve(
        "burrow-server",
        &listen,
        args.shared.verbose,
        &args.shared.log_format,
        run,
    )
}
