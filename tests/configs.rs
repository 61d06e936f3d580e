//! Every file in configs/ parses and validates with the role its name says.

use std::path::Path;

use clap::Parser;

#[test]
fn every_config_file_parses_and_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("configs/ exists") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let p = path.to_str().expect("utf8 path");
        if name.starts_with("server") {
            let cli = burrow_server::config::Cli::try_parse_from(["burrow-server", "-c", p])
                .expect("cli");
            burrow_server::config::load(&cli).unwrap_or_else(|e| panic!("{name}: {e}"));
        } else if name.starts_with("local") {
            let cli =
                burrow_local::config::Cli::try_parse_from(["burrow-local", "-c", p]).expect("cli");
            burrow_local::config::load(&cli).unwrap_or_else(|e| panic!("{name}: {e}"));
        } else {
            panic!("{name}: config names start with local or server");
        }
        checked += 1;
    }
    assert!(
        checked >= 2,
        "configs/ must hold at least local.toml and server.toml"
    );
}
