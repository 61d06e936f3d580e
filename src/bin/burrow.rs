//! `burrow`: the one-command first try.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// burrow: an encrypted tunnel in the Shadowsocks family.
#[derive(Parser, Debug)]
#[command(name = "burrow", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Start a server and a local on 127.0.0.1 with a fresh key and print a curl line to try.
    Quickstart {
        /// SOCKS5 port to try first (another is chosen if it is taken).
        #[arg(long, default_value_t = 1080)]
        port: u16,
    },
}

fn main() -> ExitCode {
    let cli: Cli = burrow::cli::parse("burrow");
    let Cmd::Quickstart { port } = cli.command;
    burrow::cli::init_tracing(0, "text");
    let rt = match burrow::cli::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("burrow: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(burrow::quickstart::run(port)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("burrow: {e:#}");
            ExitCode::FAILURE
        }
    }
}
