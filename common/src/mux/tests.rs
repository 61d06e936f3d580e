use super::frame::{END, KEEP, NEW};
use super::*;
use bytes::BytesMut;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A New frame for session 1 to 127.0.0.1:0 with 3 bytes, as v2ray lays it out
/// (common/mux/frame.go): metadata length 12, id, status, option, network, port,
/// address type, address; then the data length and the data.
#[test]
fn new_frame_bytes() {
    let mut b = BytesMut::new();
    let target = TargetAddr::Ip(SocketAddr::from(([127, 0, 0, 1], 0)));
    encode(&mut b, 1, NEW, Some(&target), false, b"abc");
    assert_eq!(
        &b[..],
        &[0, 12, 0, 1, 1, 1, 1, 0, 0, 1, 127, 0, 0, 1, 0, 3, b'a', b'b', b'c']
    );
    assert!(looks_like_mux(&b));
    let mut b = BytesMut::new();
    encode(&mut b, 7, END, None, true, &[]);
    assert_eq!(&b[..], &[0, 4, 0, 7, 3, 2]);
    let mut b = BytesMut::new();
    let name = TargetAddr::Domain("v1.mux.cool".into(), 9527);
    encode(&mut b, 2, NEW, Some(&name), false, &[]);
    assert_eq!(&b[..12], &[0, 20, 0, 2, 1, 0, 1, 0x25, 0x37, 2, 11, b'v']);
    assert!(looks_like_mux(&b));
}

#[tokio::test]
async fn frames_read_back() {
    let mut b = BytesMut::new();
    let name = TargetAddr::Domain("example.com".into(), 443);
    encode(&mut b, 3, NEW, Some(&name), false, b"hello");
    encode(&mut b, 3, KEEP, None, false, b"more");
    encode(&mut b, 3, END, None, false, &[]);
    let mut r = &b[..];
    let f = read_frame(&mut r).await.unwrap().unwrap();
    assert_eq!(
        (f.id, f.status, f.target, &f.data[..]),
        (3, NEW, Some(name), &b"hello"[..])
    );
    let f = read_frame(&mut r).await.unwrap().unwrap();
    assert_eq!((f.status, &f.data[..]), (KEEP, &b"more"[..]));
    let f = read_frame(&mut r).await.unwrap().unwrap();
    assert_eq!((f.status, f.error), (END, false));
    assert!(read_frame(&mut r).await.unwrap().is_none());
}

#[tokio::test]
async fn bad_frames_are_errors_not_panics() {
    for bytes in [
        &[0x02, 0x01, 0, 1, 1, 0][..], // metadata longer than v2ray allows
        &[0, 2, 0, 1][..],             // too short
        &[0, 4, 0, 1, 9, 0][..],       // unknown status
        &[0, 5, 0, 1, 1, 0, 1][..],    // New without an address
        &[0, 9, 0, 1, 1, 0, 1, 0, 80, 2, 9][..], // a name longer than the frame
        &[0, 4, 0, 1, 2, 1, 0][..],    // data length cut off
    ] {
        let mut r = bytes;
        assert!(read_frame(&mut r).await.is_err(), "{bytes:?}");
    }
}

#[test]
fn salts_do_not_look_like_mux() {
    use rand::RngCore;
    let mut rng = rand::thread_rng();
    let mut head = [0u8; 32];
    let hits = (0..200_000)
        .filter(|_| {
            rng.fill_bytes(&mut head);
            looks_like_mux(&head)
        })
        .count();
    assert_eq!(hits, 0);
}

/// A client and a server over an in-memory pipe; the server echoes every session.
fn pair(max_sessions: usize) -> Mux {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (tx, mut rx) = mpsc::channel(16);
    let _server = Mux::server(b, Duration::from_secs(60), max_sessions, tx);
    tokio::spawn(async move {
        while let Some((mut s, _target)) = rx.recv().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    }
                }
                let _ = s.shutdown().await;
            });
        }
    });
    Mux::client(a, Duration::from_secs(60))
}

#[tokio::test]
async fn sessions_interleave_byte_exact() {
    let mux = pair(64);
    let mut tasks = Vec::new();
    for i in 0..20u8 {
        let mut s = mux.open().unwrap();
        tasks.push(tokio::spawn(async move {
            let data: Vec<u8> = (0..50_000u32).map(|n| (n as u8) ^ i).collect();
            let (mut r, mut w) = tokio::io::split(&mut s);
            let send = async {
                w.write_all(&data).await.unwrap();
                w.shutdown().await.unwrap();
            };
            let mut back = Vec::new();
            let recv = r.read_to_end(&mut back);
            let (_, got) = tokio::join!(send, recv);
            got.unwrap();
            assert_eq!(back, data);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn a_reset_session_leaves_the_others_whole() {
    let mux = pair(64);
    let mut keep = mux.open().unwrap();
    let mut doomed = mux.open().unwrap();
    doomed.write_all(b"partial").await.unwrap();
    let mut echo = [0u8; 7];
    doomed.read_exact(&mut echo).await.unwrap();
    doomed.reset();
    keep.write_all(b"still here").await.unwrap();
    keep.shutdown().await.unwrap();
    let mut back = Vec::new();
    keep.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"still here");
}

#[tokio::test]
async fn a_peer_reset_is_an_error_not_an_end() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (tx, mut rx) = mpsc::channel(4);
    let _server = Mux::server(b, Duration::from_secs(60), 8, tx);
    let client = Mux::client(a, Duration::from_secs(60));
    let mut s = client.open().unwrap();
    s.write_all(b"x").await.unwrap();
    let (theirs, _) = rx.recv().await.unwrap();
    theirs.reset();
    let mut buf = [0u8; 8];
    let err = s.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
}

#[tokio::test]
async fn sessions_over_the_limit_are_refused() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (tx, mut rx) = mpsc::channel(4);
    let _server = Mux::server(b, Duration::from_secs(60), 1, tx);
    let client = Mux::client(a, Duration::from_secs(60));
    let mut first = client.open().unwrap();
    first.write_all(b"1").await.unwrap();
    let _held = rx.recv().await.unwrap();
    let mut second = client.open().unwrap();
    second.write_all(b"2").await.unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(
        second.read(&mut buf).await.unwrap_err().kind(),
        io::ErrorKind::ConnectionReset
    );
}

#[tokio::test]
async fn a_lost_connection_resets_its_sessions() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let client = Mux::client(a, Duration::from_secs(60));
    let mut s = client.open().unwrap();
    s.write_all(b"x").await.unwrap();
    drop(b);
    let mut buf = [0u8; 1];
    assert_eq!(
        s.read(&mut buf).await.unwrap_err().kind(),
        io::ErrorKind::ConnectionReset
    );
    client.closed().await;
    assert!(client.open().is_err());
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_closes() {
    let (a, _b) = tokio::io::duplex(1024);
    let client = Mux::client(a, Duration::from_secs(15));
    let s = client.open().unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!client.is_closed(), "a session is open");
    drop(s);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(client.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_session_does_not_queue_far_ahead_of_a_small_one() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let (a, mut b) = tokio::io::duplex(64 * 1024);
    let client = Mux::client(a, Duration::from_secs(60));
    // Bulk: the client writes without pause, counting its writes.
    let writes = Arc::new(AtomicUsize::new(0));
    let mut bulk = client.open().unwrap();
    let counted = writes.clone();
    tokio::spawn(async move {
        let chunk = vec![7u8; 16 * 1024];
        while bulk.write_all(&chunk).await.is_ok() {
            counted.fetch_add(1, SeqCst);
        }
    });
    // The peer reads 1 MB of it, then stops reading until every queue on the way is full
    // (the bulk's writes stop advancing).
    let mut seen = 0;
    while seen < 1024 * 1024 {
        seen += read_frame(&mut b).await.unwrap().unwrap().data.len();
    }
    let mut last = writes.load(SeqCst);
    let mut still = 0;
    while still < 1000 {
        tokio::task::yield_now().await;
        let now = writes.load(SeqCst);
        still = if now == last { still + 1 } else { 0 };
        last = now;
    }
    // A small session speaks now; the peer reads on until it arrives.
    let mut small = client.open().unwrap();
    small.write_all(b"ping").await.unwrap();
    let mut ahead = 0;
    loop {
        let f = read_frame(&mut b).await.unwrap().unwrap();
        if f.id == 1 {
            ahead += f.data.len();
            continue;
        }
        assert_eq!(&f.data[..], b"ping");
        break;
    }
    // The pipe's 64 KiB and the bulk's few queued frames went first; not the writer's
    // whole queue (64 frames of 8 KiB).
    assert!(
        ahead < 160 * 1024,
        "{ahead} bulk bytes went ahead of the small session"
    );
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_stops_reading_ends_the_connection() {
    let (a, _never_read) = tokio::io::duplex(1024);
    let client = Mux::client(a, Duration::from_secs(600));
    let mut s = client.open().unwrap();
    tokio::spawn(async move {
        let chunk = vec![1u8; 16 * 1024];
        while s.write_all(&chunk).await.is_ok() {}
    });
    // Paused time runs on while everything waits: the stalled write is given up.
    tokio::time::timeout(Duration::from_secs(120), client.closed())
        .await
        .expect("the connection ended");
    assert!(client.open().is_err());
}

/// A session that moves a lot at once makes its connection busy for a while after; one
/// that stops reading makes it busy for as long as the reader waits for it.
#[tokio::test(start_paused = true)]
async fn a_bulk_session_or_one_that_stops_reading_makes_the_connection_busy() {
    let mux = pair(64);
    let mut small = mux.open().unwrap();
    small.write_all(b"hello").await.unwrap();
    let mut back = [0u8; 5];
    small.read_exact(&mut back).await.unwrap();
    assert!(!mux.busy(), "a few bytes");

    let mut bulk = mux.open().unwrap();
    let data = vec![7u8; 1024 * 1024];
    let (mut r, mut w) = tokio::io::split(&mut bulk);
    let mut got = vec![0u8; data.len()];
    let (sent, read) = tokio::join!(w.write_all(&data), r.read_exact(&mut got));
    sent.unwrap();
    read.unwrap();
    assert!(mux.busy(), "1 MiB at once");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!mux.busy(), "a second after");

    // Echoed back and never read: the session's queue fills and the reader waits.
    let mut lazy = mux.open().unwrap();
    // More than the session queues (8 frames), less than would back up to the writer.
    for _ in 0..16 {
        lazy.write_all(&[1u8; 4096]).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(mux.busy(), "a reader held by a session that does not read");
    let mut sink = vec![0u8; 16 * 4096];
    lazy.read_exact(&mut sink).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!mux.busy(), "read at last");
}
