//! A TCP proxy that can break the network between drugsync and a server the
//! ways networks break: every connection closed at once (`cut`), or a
//! partition (`partition`): nothing delivered in either direction, no FIN or
//! RST. A partitioned connection stays silent for good, even after `heal`:
//! its held bytes are dropped, so the only way past a partition is for the
//! client to notice a dead connection and open a new one, which is what the
//! tests must prove. `switch_to` points new connections at another server, as
//! DNS does after a failover. `lose_next_reply` lets the server's next reply
//! be swallowed and its connection closed: the request was delivered and
//! ran, the client never learns how it went.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// One relayed connection: its task and whether it was partitioned.
struct Relay {
    task: JoinHandle<()>,
    silenced: Arc<AtomicBool>,
}

pub struct FaultyProxy {
    pub port: u16,
    partitioned: Arc<AtomicBool>,
    lose_reply: Arc<AtomicBool>,
    upstream: Arc<std::sync::Mutex<String>>,
    accepted: Arc<AtomicU64>,
    connections: Arc<Mutex<Vec<Relay>>>,
    listener: JoinHandle<()>,
}

impl FaultyProxy {
    /// Forwards a loopback port to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let partitioned = Arc::new(AtomicBool::new(false));
        let lose_reply = Arc::new(AtomicBool::new(false));
        let upstream = Arc::new(std::sync::Mutex::new(upstream));
        let accepted = Arc::new(AtomicU64::new(0));
        let connections: Arc<Mutex<Vec<Relay>>> = Arc::default();
        let (p, u, a, c, l) = (partitioned.clone(), upstream.clone(), accepted.clone(), connections.clone(), lose_reply.clone());
        let listener = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let target = u.lock().unwrap().clone();
                let Ok(server) = TcpStream::connect(&target).await else { continue };
                // A connection opened during a partition never gets through either.
                let silenced = Arc::new(AtomicBool::new(p.load(Ordering::SeqCst)));
                let task = tokio::spawn(relay(client, server, silenced.clone(), l.clone()));
                c.lock().await.push(Relay { task, silenced });
            }
        });
        Self { port, partitioned, lose_reply, upstream, accepted, connections, listener }
    }

    /// Closes every open connection (new ones still work).
    pub async fn cut(&self) {
        for relay in self.connections.lock().await.drain(..) {
            relay.task.abort();
        }
    }

    /// Silences every open connection for good, and new ones until [`Self::heal`].
    pub async fn partition(&self) {
        self.partitioned.store(true, Ordering::SeqCst);
        for relay in self.connections.lock().await.iter() {
            relay.silenced.store(true, Ordering::SeqCst);
        }
    }

    /// New connections get through again; partitioned ones stay silent.
    pub fn heal(&self) {
        self.partitioned.store(false, Ordering::SeqCst);
    }

    /// Points new connections at `upstream`; open ones keep their server.
    pub fn switch_to(&self, upstream: String) {
        *self.upstream.lock().unwrap() = upstream;
    }

    /// The next bytes any server sends are dropped and that connection is
    /// closed: the request in flight ran, its reply is lost. Arm it only when
    /// the client's next request is the one meant to lose its reply.
    pub fn lose_next_reply(&self) {
        self.lose_reply.store(true, Ordering::SeqCst);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.listener.abort();
        if let Ok(mut relays) = self.connections.try_lock() {
            relays.drain(..).for_each(|r| r.task.abort());
        }
    }
}

async fn relay(client: TcpStream, server: TcpStream, silenced: Arc<AtomicBool>, lose_reply: Arc<AtomicBool>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let never = AtomicBool::new(false);
    let up = pump(&mut client_read, &mut server_write, &silenced, &never);
    let down = pump(&mut server_read, &mut client_write, &silenced, &lose_reply);
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

/// Copies `from` to `to` until either side closes; once silenced, reads go
/// on (so the sender sees no back-pressure or reset) and nothing is written.
/// When `lose` is set, the next bytes read are dropped, `lose` is cleared and
/// the relay ends (both connections close).
async fn pump(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    silenced: &AtomicBool,
    lose: &AtomicBool,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let Ok(n) = from.read(&mut buffer).await else { return };
        if n == 0 {
            if silenced.load(Ordering::SeqCst) {
                // A partitioned peer's FIN does not get through either.
                std::future::pending::<()>().await;
            }
            return;
        }
        if silenced.load(Ordering::SeqCst) {
            continue;
        }
        if lose.swap(false, Ordering::SeqCst) {
            return;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
