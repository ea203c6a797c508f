//! The one Redis connection drugsync writes through, which follows a
//! failover.
//!
//! `redis`'s `ConnectionManager` reconnects when a connection breaks, but a
//! primary that was *demoted* keeps its connections open and answers every
//! write with `READONLY`: retrying on the same connection would go on
//! forever. When any reply says `READONLY`, the manager is replaced by a
//! fresh one, so the next command resolves the address again and reaches
//! the new primary (ElastiCache and Sentinel-style failovers move the DNS
//! name or the endpoint, not the old server's role). The error itself is
//! still returned, transient, and the caller's retry goes to the new one.

use std::sync::{Arc, RwLock};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};

/// See the module docs. Clones share the connection.
#[derive(Clone)]
pub struct FailoverConnection {
    current: Arc<RwLock<ConnectionManager>>,
    client: redis::Client,
    config: ConnectionManagerConfig,
}

impl FailoverConnection {
    /// Connects (and fails if Redis cannot be reached now).
    pub async fn connect(client: redis::Client, config: ConnectionManagerConfig) -> Result<Self, RedisError> {
        let manager = ConnectionManager::new_with_config(client.clone(), config.clone()).await?;
        Ok(Self { current: Arc::new(RwLock::new(manager)), client, config })
    }

    fn manager(&self) -> ConnectionManager {
        self.current.read().expect("connection lock").clone()
    }

    /// Replaces the connection when `error` says the server is a replica now.
    fn follow_failover(&self, error: &RedisError) {
        if !is_read_only(error) {
            return;
        }
        match ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone()) {
            Ok(fresh) => {
                tracing::warn!(error = %error, "Redis answered READONLY (the primary was demoted): reconnecting to find the new primary");
                *self.current.write().expect("connection lock") = fresh;
            }
            Err(e) => tracing::warn!(error = %e, "cannot set up a new Redis connection after READONLY; retrying later"),
        }
    }
}

/// Whether Redis refused a write because it is a replica now.
pub fn is_read_only(error: &RedisError) -> bool {
    // A write refused inside one of drugsync's scripts keeps the server's code.
    error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
}

impl ConnectionLike for FailoverConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let result = self.manager().req_packed_command(cmd).await;
            self.inspect(result.as_ref().map(std::slice::from_ref));
            result
        })
    }

    fn req_packed_commands<'a>(&'a mut self, pipeline: &'a Pipeline, offset: usize, count: usize) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let result = self.manager().req_packed_commands(pipeline, offset, count).await;
            self.inspect(result.as_ref().map(Vec::as_slice));
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.manager().get_db()
    }
}

impl FailoverConnection {
    /// Server errors arrive as values (turned into `Err` only when the
    /// caller converts the reply), possibly nested in a transaction's array.
    fn inspect(&self, result: Result<&[Value], &RedisError>) {
        match result {
            Err(e) => self.follow_failover(e),
            Ok(values) => {
                if let Some(error) = values.iter().find_map(server_error) {
                    self.follow_failover(&RedisError::from(error.clone()));
                }
            }
        }
    }
}

/// The first server error in `value`, looking into arrays.
fn server_error(value: &Value) -> Option<&redis::ServerError> {
    match value {
        Value::ServerError(e) => Some(e),
        Value::Array(items) => items.iter().find_map(server_error),
        _ => None,
    }
}
