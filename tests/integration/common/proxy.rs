//! A TCP proxy that can break the network between drugsync and a server the
//! ways networks break: every connection closed at once (`cut`), or nothing
//! delivered in either direction with no FIN or RST (`freeze`), as in a
//! partition. Bytes held while frozen are delivered on `restore`, like TCP
//! retransmissions after the network heals.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

pub struct FaultyProxy {
    pub port: u16,
    frozen: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    listener: JoinHandle<()>,
}

impl FaultyProxy {
    /// Forwards a loopback port to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = Arc::new(AtomicBool::new(false));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (f, c) = (frozen.clone(), connections.clone());
        let listener = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else { continue };
                let frozen = f.clone();
                c.lock().await.push(tokio::spawn(relay(client, server, frozen)));
            }
        });
        Self { port, frozen, connections, listener }
    }

    /// Closes every open connection (new ones still work).
    pub async fn cut(&self) {
        for task in self.connections.lock().await.drain(..) {
            task.abort();
        }
    }

    /// Stops delivering anything, on open and new connections, without closing them.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    /// Delivers again, held bytes first.
    pub fn restore(&self) {
        self.frozen.store(false, Ordering::SeqCst);
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.listener.abort();
        if let Ok(mut tasks) = self.connections.try_lock() {
            tasks.drain(..).for_each(|t| t.abort());
        }
    }
}

async fn relay(client: TcpStream, server: TcpStream, frozen: Arc<AtomicBool>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = pump(&mut client_read, &mut server_write, &frozen);
    let down = pump(&mut server_read, &mut client_write, &frozen);
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

async fn pump(from: &mut tokio::net::tcp::OwnedReadHalf, to: &mut tokio::net::tcp::OwnedWriteHalf, frozen: &AtomicBool) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let Ok(n) = from.read(&mut buffer).await else { return };
        if n == 0 {
            return;
        }
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
