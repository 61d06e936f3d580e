//! burrow-local: parse → validate (exit 2) → tracing → bind → run.

use std::process::ExitCode;

use burrow::cli;
use burrow_local::config::{self, Cli};

fn main() -> ExitCode {
    let args: Cli = cli::parse("burrow-local");
    let loaded = match config::load(&args) {
        Ok(l) => l,
        Err(e) => return cli::usage_error("burrow-local", &e),
    };
    cli::serve(
        "burrow-local",
        &loaded.listen,
        args.shared.verbose,
        &args.shared.log_format,
        |listener, shutdown| {
            for w in &loaded.warnings {
                tracing::warn!("{w}");
            }
            burrow_local::run(loaded.settings, listener, shutdown)
        },
    )
}
