use super::*;

/// Every tunnel holds these futures for its whole life: the handshake, the dial
/// and the refusal paths are boxed, the request too (the stream itself carries the
/// offsets of a run sealed in place, ~50 bytes). A regression here is memory per idle
/// tunnel.
#[test]
fn clock_warnings_are_rate_limited() {
    let said = (0..1000).filter(|_| clock_warning_due()).count();
    assert_eq!(said, 1, "a replay loop must not flood the log");
}

#[tokio::test]
async fn a_tunnel_task_stays_small() {
    use clap::Parser;
    let cli = crate::config::Cli::try_parse_from(["x", "-k", "p"]).expect("cli");
    let settings = crate::config::load(&cli).expect("load").settings;
    let shared = Arc::new(Shared {
        shutdown: Default::default(),
        handshakes: tokio::sync::Semaphore::new(1),
        settings,
        replay: None,
        metrics: Default::default(),
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let c = TcpStream::connect(l.local_addr().expect("addr"))
        .await
        .expect("connect");
    let req = Box::new(Request {
        user: shared.settings.users.get()[0].clone(),
        target: burrow_common::TargetAddr::Domain("example.com".into(), 80),
        dec: burrow_common::frame::Decoder::new(&shared.settings.key),
        rbuf: bytes::BytesMut::new(),
        payload: bytes::BytesMut::new(),
    });
    let f = serve_request(&shared, c, req);
    let size = std::mem::size_of_val(&f);
    // 2 352 before users could be removed while their tunnels run (the wait for that
    // costs 128 bytes a tunnel); 2 576 since each direction's cipher keeps its subkey
    // for the faster implementation it keys on its first large chunk (48 bytes each).
    assert!(size <= 2576, "serve_request() future is {size} bytes");
    drop(f);
    let c = TcpStream::connect(l.local_addr().expect("addr"))
        .await
        .expect("connect");
    let f = serve(shared.clone(), c);
    let size = std::mem::size_of_val(&f);
    assert!(size <= 128, "serve() future is {size} bytes");
}
