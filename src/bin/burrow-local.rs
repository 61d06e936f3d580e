//! burrow-local: parse → validate (exit 2) → tracing → bind → run.

use std::process::ExitCode;

use burrow::cli;
use burrow_local::config::{self, Cli};

/// `burrow-local doctor`: exit 0 when a tunnel opened, 1 when a step failed.
fn doctor(loaded: config::Loaded, target: &str, verbose: u8) -> ExitCode {
    let target = match target.parse::<burrow_common::TargetAddr>() {
        Ok(t) => t,
        Err(_) => {
            return cli::usage_error(
                "burrow-local",
                &format!("--target {target:?}: expected host:port"),
            )
        }
    };
    // Quiet unless asked: the steps speak for themselves.
    if verbose > 0 {
        cli::init_tracing(verbose, "text");
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return cli::usage_error("burrow-local", &format!("runtime: {e}")),
    };
    if rt.block_on(burrow_local::tools::doctor::run(loaded.settings, target)) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let args: Cli = cli::parse("burrow-local");
    if let Some(config::Command::Uninstall) = &args.command {
        return cli::said("burrow-local", burrow_local::system::uninstall_autostart());
    }
    let loaded = match config::load(&args) {
        Ok(l) => l,
        Err(e) => return cli::usage_error("burrow-local", &e),
    };
    if let Some(config::Command::Install { autostart }) = &args.command {
        if !autostart {
            return cli::usage_error("burrow-local", "install: say what (--autostart)");
        }
        let config = loaded.settings.config_file.clone();
        return cli::said(
            "burrow-local",
            burrow_local::system::install_autostart(config.as_deref()),
        );
    }
    if let Some(config::Command::Doctor {
        route: Some(route), ..
    }) = &args.command
    {
        return cli::said(
            "burrow-local",
            burrow_local::tools::doctor::route(&loaded.settings, route),
        );
    }
    if let Some(config::Command::Doctor { target, .. }) = &args.command {
        return doctor(loaded, target, args.shared.verbose);
    }
    if let Some(config::Command::Status) = &args.command {
        let Some(at) = loaded.settings.metrics_listen else {
            return cli::usage_error(
                "burrow-local",
                "metrics are off: set metrics = \"ADDR\" (or --metrics) to read the status",
            );
        };
        return match burrow::status::fetch(at) {
            Ok(samples) => {
                print!("{}", burrow::status::local(at, &samples));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("burrow-local: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let mut log = args.shared.clone();
    if args.background {
        // No console to write to: a log file, where the user looks for it.
        if log.log_file.is_none() {
            log.log_file = burrow_local::system::default_log_file();
        }
        if log.log_file.is_none() {
            return cli::usage_error(
                "burrow-local",
                "--background: no place for the log (LOCALAPPDATA or HOME unset): give --log-file",
            );
        }
    }
    let background = args.background;
    cli::serve(
        "burrow-local",
        &loaded.listen,
        &log,
        move |listener, shutdown| {
            if background {
                burrow_local::system::detach_console();
            }
            for w in &loaded.warnings {
                tracing::warn!("{w}");
            }
            let servers = loaded.settings.servers.in_order();
            cli::choose_aead(servers.iter().map(|s| s.key.method()));
            // SIGHUP: the config is read again from the same command line.
            let reload: burrow_local::settings::Reload =
                Box::new(move || config::load(&args).map(|l| l.settings));
            burrow_local::run_with_reload(loaded.settings, listener, shutdown, Some(reload))
        },
    )
}
