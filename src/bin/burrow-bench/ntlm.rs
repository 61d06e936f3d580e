//! NTLM: burrow-local answering the proxy itself, against cntlm in front of it.

use std::time::Duration;

use burrow::kit::{free_port, Proc};
use burrow::link::Link;

use super::suite::{beside, local, measure, temp, PW};

/// NTLM: burrow-local answering the proxy itself, against the usual answer of putting
/// cntlm in front. burrow-local → NTLM proxy → long link → burrow-server, and
/// burrow-local → cntlm → the same proxy: first byte (first after start, cold, warm)
/// and a 64 MiB download each.
pub async fn ntlm_against_cntlm(
    count: usize,
    rtt_ms: u64,
    proxy_rtt_ms: u64,
) -> anyhow::Result<()> {
    let server_proc = Proc::spawn(
        &beside("burrow-server"),
        &["-s", "127.0.0.1:0", "-k", PW, "--allow-private"],
        &[("RUST_LOG", "warn")],
    );
    let link = Link::start(
        "127.0.0.1:0",
        server_proc.listening(),
        Duration::from_millis(rtt_ms),
    )
    .await?;
    let server = link.addr;
    let base = format!(
        "password = \"{PW}\"\nlocal_address = \"127.0.0.1\"\nlocal_port = 0\n\
         warm_idle_after = \"1s\"\nwarm_max_age = \"1s\"\n"
    );
    // The NTLM-only proxy that verifies NTLMv2 (pyspnego), as in tests/corporate.rs.
    let users = temp("ntlm").join("users");
    std::fs::write(&users, "CORP:alice:s3cret\n")?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/ntlm_proxy.py");
    let ntlm_proc = Proc::spawn(
        "python3",
        &[script],
        &[("NTLM_USER_FILE", &users.to_string_lossy())],
    );
    // The proxy sits a LAN away from the laptop: its own short link.
    let proxy_link = Link::start(
        "127.0.0.1:0",
        ntlm_proc.listening(),
        Duration::from_millis(proxy_rtt_ms),
    )
    .await?;
    let ntlm_addr = proxy_link.addr;
    let cport = free_port();
    let cconf = temp("cntlm").join("cntlm.conf");
    std::fs::write(
        &cconf,
        format!(
            "Username alice\nDomain CORP\nPassword s3cret\nAuth NTLMv2\n\
             Proxy {ntlm_addr}\nListen 127.0.0.1:{cport}\n"
        ),
    )?;
    let cntlm = Proc::spawn("cntlm", &["-f", "-c", &cconf.to_string_lossy()], &[]);
    burrow::kit::wait_for_port(format!("127.0.0.1:{cport}").parse()?);
    let ways = [
        (
            "burrow-tcp-ntlm-proxy",
            format!("http://CORP%5Calice:s3cret@{ntlm_addr}"),
        ),
        (
            "burrow-tcp-cntlm-ntlm-proxy",
            format!("http://127.0.0.1:{cport}"),
        ),
    ];
    let target = super::target().await?;
    for (label, proxy) in &ways {
        let toml = format!("server = \"{server}\"\n{base}outbound_proxy = \"{proxy}\"\n");
        let (_l, addr) = local(&toml, label);
        println!("{label}: the proxy is {proxy_rtt_ms} ms away, the server {rtt_ms} ms beyond it");
        measure(label, addr, false, count, rtt_ms + proxy_rtt_ms).await;
        let bytes = 64u64 << 20;
        let start = std::time::Instant::now();
        match super::one_stream(Some(addr), target, bytes, super::Dir::Down).await {
            Ok(()) => println!(
                "{label} download 64 MiB rtt={rtt_ms}ms proxy_rtt={proxy_rtt_ms}ms : {:.1} MB/s",
                bytes as f64 / start.elapsed().as_secs_f64() / 1e6
            ),
            Err(e) => println!("{label} download: {e}"),
        }
    }
    drop((cntlm, ntlm_proc, server_proc));
    Ok(())
}
