//! A running binary's metrics listener, as a test reaches it: a free port
//! for it, a config that serves there, and one `GET`.

/// A port nothing listens on now, for a binary's metrics listener.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `config` (a test config, whose listener is off) serving metrics and probes on `port`.
pub fn with_metrics(config: &str, port: u16) -> String {
    let text = config.replacen("listen = \"\"", &format!("listen = \"127.0.0.1:{port}\""), 1);
    assert!(text.contains(&format!("127.0.0.1:{port}")));
    text
}

/// `GET path` on the local `port`: (status code, body); `None` when nothing answers.
pub async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes()).await.ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await.ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((code, body))
}
