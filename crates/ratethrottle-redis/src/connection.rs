//! One connection type over the topologies: a self-reconnecting multiplexed connection to a
//! standalone server, a Redis Cluster connection that routes each command by its keys, or the
//! master that Redis Sentinel names (asked again after a connection fails or the old master
//! refuses writes).

use std::sync::Arc;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::SentinelClient;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};

#[derive(Clone)]
pub(crate) enum Connection {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(Arc<SentinelMaster>),
}

/// The current master as Sentinel reports it, and a connection to it.
pub(crate) struct SentinelMaster {
    sentinel: tokio::sync::Mutex<SentinelClient>,
    master: parking_lot::Mutex<Option<ConnectionManager>>,
    config: ConnectionManagerConfig,
}

impl SentinelMaster {
    /// Asks Sentinel for the master and connects to it.
    pub(crate) async fn connect(
        sentinel: SentinelClient,
        config: ConnectionManagerConfig,
    ) -> RedisResult<Arc<Self>> {
        let master = Arc::new(SentinelMaster {
            sentinel: tokio::sync::Mutex::new(sentinel),
            master: parking_lot::Mutex::new(None),
            config,
        });
        master.current().await?;
        Ok(master)
    }

    async fn current(&self) -> RedisResult<ConnectionManager> {
        if let Some(connection) = self.master.lock().clone() {
            return Ok(connection);
        }
        let client = self.sentinel.lock().await.async_get_client().await?;
        let connection = ConnectionManager::new_with_config(client, self.config.clone()).await?;
        *self.master.lock() = Some(connection.clone());
        Ok(connection)
    }

    /// Forgets the master after an error that suggests it moved, so the next call asks
    /// Sentinel again.
    fn observe<T>(&self, result: RedisResult<T>) -> RedisResult<T> {
        if let Err(error) = &result
            && moved(error)
        {
            *self.master.lock() = None;
        }
        result
    }
}

/// Whether `error` says the master is gone or is no longer the master.
fn moved(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.code() == Some("READONLY")
}

impl Connection {
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Connection::Cluster(_))
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Standalone(connection) => connection.req_packed_command(cmd),
            Connection::Cluster(connection) => connection.req_packed_command(cmd),
            Connection::Sentinel(master) => Box::pin(async move {
                let mut connection = master.current().await?;
                master.observe(connection.req_packed_command(cmd).await)
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Standalone(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
            Connection::Cluster(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
            Connection::Sentinel(master) => Box::pin(async move {
                let mut connection = master.current().await?;
                master.observe(
                    connection
                        .req_packed_commands(pipeline, offset, count)
                        .await,
                )
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Standalone(connection) => connection.get_db(),
            Connection::Cluster(connection) => connection.get_db(),
            Connection::Sentinel(master) => master
                .master
                .lock()
                .as_ref()
                .map_or(0, ConnectionLike::get_db),
        }
    }
}
