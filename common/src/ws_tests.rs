use super::*;

#[tokio::test]
async fn a_plain_get_gets_a_web_servers_404() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        for _ in 0..2 {
            let (c, _) = l.accept().await.expect("accept");
            assert!(accept(c, "/tunnel", None).await.is_err());
        }
    });
    for req in [
        "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /tunnel HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
        c.write_all(req.as_bytes()).await.expect("send");
        let mut out = Vec::new();
        c.read_to_end(&mut out).await.expect("answer");
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
        let (head, body) = text.split_once("\r\n\r\n").expect("head");
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{text}"
        );
    }
    server.await.expect("server");
}

#[tokio::test]
async fn bytes_half_close_and_wrong_path() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (c, _) = l.accept().await.expect("accept");
        let mut s = accept(c, "/tunnel", None).await.expect("ws accept");
        let mut all = Vec::new();
        s.read_to_end(&mut all)
            .await
            .expect("read to the EOF marker");
        s.write_all(format!("got {}", all.len()).as_bytes())
            .await
            .expect("answer after EOF");
        s.shutdown().await.expect("eof");
        let (c, _) = l.accept().await.expect("accept");
        assert!(
            accept(c, "/tunnel", None).await.is_err(),
            "wrong path refused"
        );
    });
    let c = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut s = client(c, "example.com", "/tunnel", Some(Duration::from_millis(10)))
        .await
        .expect("ws");
    s.write_all(&vec![7u8; 300_000]).await.expect("write");
    s.shutdown().await.expect("half-close");
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.expect("answer");
    assert_eq!(answer, "got 300000");
    let c = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let err = client(c, "example.com", "/other", None)
        .await
        .err()
        .expect("404");
    assert!(err.to_string().contains("404"), "{err}");
    server.await.expect("server");
}
