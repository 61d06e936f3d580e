//! `burrow-bench udp`: datagrams through a SOCKS5 UDP ASSOCIATE, round trips and rate.

use super::*;

/// UDP figures through `cli.socks` (a SOCKS5 UDP association) or direct.
pub(crate) async fn udp_bench(
    cli: &Cli,
    count: usize,
    size: usize,
    window: usize,
) -> anyhow::Result<()> {
    use burrow::kit::Socks5Udp;
    let (echo, _) = burrow::kit::udp_echo().await;
    let assoc = match cli.socks {
        Some(p) => Some(
            Socks5Udp::associate(p)
                .await
                .map_err(|code| anyhow::anyhow!("UDP ASSOCIATE refused ({code})"))?,
        ),
        None => None,
    };
    let direct = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let payload = vec![0x5au8; size.max(8)];
    let wait = Duration::from_secs(2);
    // Sends datagram `n` (its number in the first 8 bytes); receives one, `Some(number)`.
    let send = |n: u64| {
        let mut d = payload.clone();
        d[..8].copy_from_slice(&n.to_be_bytes());
        d
    };
    async fn recv_one(
        assoc: &Option<Socks5Udp>,
        direct: &tokio::net::UdpSocket,
        wait: Duration,
    ) -> Option<u64> {
        let data = match assoc {
            Some(a) => a.recv(wait).await?.1,
            None => {
                let mut buf = vec![0u8; 65_536];
                let (n, _) = tokio::time::timeout(wait, direct.recv_from(&mut buf))
                    .await
                    .ok()?
                    .ok()?;
                buf.truncate(n);
                buf
            }
        };
        Some(u64::from_be_bytes(data.get(..8)?.try_into().ok()?))
    }
    let out = |d: Vec<u8>| {
        let (assoc, direct) = (&assoc, &direct);
        async move {
            match assoc {
                Some(a) => a.send(echo, &d).await,
                None => {
                    let _ = direct.send_to(&d, echo).await;
                }
            }
        }
    };
    // Round trips, one at a time.
    let rounds = 2_000;
    let mut lat = Vec::with_capacity(rounds);
    let mut lost = 0usize;
    for i in 0..rounds as u64 {
        let t0 = Instant::now();
        out(send(i)).await;
        match recv_one(&assoc, &direct, wait).await {
            Some(_) => lat.push(t0.elapsed()),
            None => lost += 1,
        }
    }
    lat.sort();
    let us = |p: f64| percentile(&lat, p).as_secs_f64() * 1e6;
    // Throughput with a window in flight.
    let start = Instant::now();
    let (mut sent, mut got) = (0usize, 0usize);
    while got < count {
        while sent < count && sent - got < window {
            out(send(sent as u64)).await;
            sent += 1;
        }
        match recv_one(&assoc, &direct, wait).await {
            Some(_) => got += 1,
            None => {
                // What is still in flight is lost; go on with a fresh window.
                lost += sent - got;
                if sent >= count {
                    break;
                }
                got = sent;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} udp {size}B : {:.0} datagrams/s, rtt p50 {:.0} us p99 {:.0} us, {lost} lost",
        cli.label,
        got as f64 / secs,
        us(0.5),
        us(0.99)
    );
    Ok(())
}
