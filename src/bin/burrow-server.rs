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
    if let Some(Command::Url { user, host, qr }) = &args.command {
        return match config::user_url(&args, user.as_deref(), host.as_deref(), *qr) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => cli::usage_error("burrow-server", &e),
        };
    }
    if let Some(Command::Uninstall) = &args.command {
        return cli::said("burrow-server", burrow::service::uninstall());
    }
    let loaded = match config::load(&args) {
        Ok(l) => l,
        Err(e) => return cli::usage_error("burrow-server", &e),
    };
    if let Some(Command::Status) = &args.command {
        let Some(at) = loaded.metrics else {
            return cli::usage_error(
                "burrow-server",
                "metrics are off: set metrics = \"ADDR\" (or --metrics) to read the status",
            );
        };
        return match burrow::status::fetch(at) {
            Ok(samples) => {
                print!("{}", burrow::status::server(at, &samples));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("burrow-server: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Install { service }) = &args.command {
        if !service {
            return cli::usage_error("burrow-server", "install: say what (--service)");
        }
        let own: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
        let arguments = burrow::service::launch_arguments(&own, &burrow::service::default_log());
        return cli::said("burrow-server", burrow::service::install(arguments));
    }
    // The TCP listener first, then the WebSocket one and the metrics endpoint if asked for.
    let mut listen = vec![loaded.listen];
    listen.extend(loaded.ws_listen);
    listen.extend(loaded.metrics);
    let (has_ws, has_metrics) = (loaded.ws_listen.is_some(), loaded.metrics.is_some());
    let log = args.shared.clone();
    let args_service = args.service;
    let run = move |listeners: Vec<tokio::net::TcpListener>,
                    shutdown: tokio_util::sync::CancellationToken| async move {
        for w in &loaded.warnings {
            tracing::warn!("{w}");
        }
        cli::choose_aead(loaded.settings.users.get().iter().map(|u| u.key.method()));
        // SIGHUP: the users are read again from the same command line and config.
        let config_file = args.config.clone();
        let load = move || {
            let next = config::load(&args)?;
            let users = next.settings.users.get();
            Ok(users
                .iter()
                .map(|u| (u.name.clone(), u.key.clone(), u.max_connections))
                .collect())
        };
        tokio::spawn(burrow_server::reload_on_request(
            loaded.settings.users.clone(),
            loaded.settings.user_grace,
            config_file,
            load,
            shutdown.clone(),
        ));
        let mut it = listeners.into_iter();
        let Some(tcp) = it.next() else { return Ok(()) };
        let ws = if has_ws { it.next() } else { None };
        let metrics = if has_metrics { it.next() } else { None };
        if let Some(a) = metrics.as_ref().and_then(|m| m.local_addr().ok()) {
            burrow_common::metrics::warn_if_open(a);
        }
        burrow_server::run(
            loaded.settings,
            burrow_server::Listeners { tcp, ws, metrics },
            shutdown,
        )
        .await
    };
    if args_service {
        let body = move |stop| cli::serve_until("burrow-server", &listen, &log, Some(stop), run);
        return match burrow::service::run(Box::new(body)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => cli::usage_error("burrow-server", &e),
        };
    }
    cli::serve("burrow-server", &listen, &log, run)
}
