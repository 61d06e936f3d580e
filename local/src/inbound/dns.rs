//! `dns = "ADDR"` (or `--dns ADDR`): a DNS forwarder on this machine whose queries travel
//! through the tunnel to a resolver reached from the server (`dns_upstream`, 1.1.1.1:53
//! by default), so that apps doing their own DNS do not leak names to the network the
//! laptop sits on. Each client address gets its own way to the server (the same as a
//! SOCKS5 UDP association's), closed after 30 s without a query.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use burrow_common::udp::MAX_DATAGRAM;
use burrow_common::TargetAddr;
use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::inbound::udp::Hop;
use crate::settings::Settings;

/// A client with no query for this long is forgotten.
const IDLE: Duration = Duration::from_secs(30);
/// Clients served at once at most.
const MAX_CLIENTS: usize = 256;

type Clients = Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<Bytes>>>>;

/// Forwards the queries that reach `socket` to `upstream`, until `shutdown`.
pub async fn serve(
    current: crate::Current,
    socket: UdpSocket,
    upstream: TargetAddr,
    shutdown: CancellationToken,
) {
    let socket = Arc::new(socket);
    if let Ok(a) = socket.local_addr() {
        info!("listening on {a} (DNS, forwarded through the server to {upstream})");
    }
    let clients: Clients = Default::default();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, client) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(got) => got,
                Err(e) => { debug!("DNS: {e}"); continue; }
            },
        };
        let query = Bytes::copy_from_slice(&buf[..n]);
        let tx = {
            let mut map = clients.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(&client) {
                Some(tx) if !tx.is_closed() => tx.clone(),
                _ if map.len() >= MAX_CLIENTS => continue,
                _ => {
                    let (tx, rx) = mpsc::channel(64);
                    map.insert(client, tx.clone());
                    let s = current.read().unwrap_or_else(|p| p.into_inner()).clone();
                    let (socket, upstream, clients) =
                        (socket.clone(), upstream.clone(), clients.clone());
                    tokio::spawn(async move {
                        one_client(&s, &socket, client, &upstream, rx).await;
                        let mut map = clients.lock().unwrap_or_else(|p| p.into_inner());
                        if map.get(&client).is_some_and(|tx| tx.is_closed()) {
                            map.remove(&client);
                        }
                    });
                    tx
                }
            }
        };
        let _ = tx.try_send(query);
    }
}

async fn one_client(
    s: &Settings,
    socket: &UdpSocket,
    client: SocketAddr,
    upstream: &TargetAddr,
    mut rx: mpsc::Receiver<Bytes>,
) {
    let mut hop = match Hop::open(s).await {
        Ok(h) => h,
        Err(e) => return info!("DNS for {client}: cannot reach the server: {e}"),
    };
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            q = rx.recv() => match q {
                Some(q) => if let Err(e) = hop.send(upstream, &q).await {
                    debug!("DNS for {client}: {e}");
                    break;
                },
                None => break,
            },
            r = hop.recv(&mut buf) => match r {
                Ok((_, answer)) => { let _ = socket.send_to(&answer, client).await; }
                Err(e) => { debug!("DNS for {client}: {e}"); break; }
            },
            _ = tokio::time::sleep(IDLE) => break,
        }
    }
    rx.close();
}
