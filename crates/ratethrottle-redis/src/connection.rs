//! One connection type over the topologies: a self-reconnecting multiplexed connection to a
//! standalone server, a Redis Cluster connection that routes each command by its keys, or the
//! master that Redis Sentinel names (asked again after a connection fails or the old master
//! refuses writes).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::SentinelClient;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};

#[derive(Clone)]
pub(crate) enum Connection {
    Standalone(Arc<Standalone>),
    Cluster(ClusterConnection),
    Sentinel(Arc<SentinelMaster>),
    /// Not connected yet (Redis was unreachable at start): connecting in the background.
    Pending(Arc<Pending>),
}

/// How to open the connection a configuration describes; kept to try again later.
pub(crate) struct Opener {
    /// Builds the connection (and checks it answers).
    open: Box<dyn Fn() -> RedisFuture<'static, Connection> + Send + Sync>,
    cluster: bool,
}

impl Opener {
    pub(crate) fn new(
        cluster: bool,
        open: impl Fn() -> RedisFuture<'static, Connection> + Send + Sync + 'static,
    ) -> Self {
        Opener {
            open: Box::new(open),
            cluster,
        }
    }

    /// One attempt, within `timeout`.
    pub(crate) async fn open(&self, timeout: Duration) -> RedisResult<Connection> {
        match tokio::time::timeout(timeout, (self.open)()).await {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no connection within {timeout:?}"),
            )
            .into()),
        }
    }
}

/// A connection still being made: calls fail at once (naming the last attempt's error) until a
/// background task, retrying with a growing pause, gets through.
pub(crate) struct Pending {
    opener: Opener,
    connected: OnceLock<Connection>,
    last_error: parking_lot::Mutex<String>,
}

/// The longest pause between two attempts to connect.
const MAX_PAUSE: Duration = Duration::from_secs(2);

impl Pending {
    /// Starts connecting in the background after `error`, the first attempt's; `address` for
    /// the log. The task stops once connected or when the store is gone.
    pub(crate) fn start(
        opener: Opener,
        error: &RedisError,
        address: String,
        connect_timeout: Duration,
    ) -> Arc<Self> {
        let pending = Arc::new(Pending {
            opener,
            connected: OnceLock::new(),
            last_error: parking_lot::Mutex::new(error.to_string()),
        });
        let weak = Arc::downgrade(&pending);
        tokio::spawn(async move {
            let mut pause = Duration::from_millis(100);
            loop {
                tokio::time::sleep(pause).await;
                let Some(pending) = weak.upgrade() else {
                    return;
                };
                match pending.opener.open(connect_timeout).await {
                    Ok(connection) => {
                        let _ = pending.connected.set(connection);
                        tracing::info!(target: "ratethrottle::redis", "connected to redis at {address}");
                        return;
                    }
                    Err(error) => *pending.last_error.lock() = error.to_string(),
                }
                pause = (pause * 2).min(MAX_PAUSE);
            }
        });
        pending
    }

    fn ready(&self) -> RedisResult<Connection> {
        self.connected.get().cloned().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                format!(
                    "not connected yet, connecting in the background (last attempt: {})",
                    self.last_error.lock()
                ),
            )
            .into()
        })
    }
}

/// A standalone server's self-reconnecting connection, replaced when Redis refused it: a
/// `ConnectionManager` whose reconnection was refused (a password changed while Redis
/// restarted) keeps answering with that refusal, so a new one tries afresh.
pub(crate) struct Standalone {
    client: redis::Client,
    config: ConnectionManagerConfig,
    manager: ArcSwap<ConnectionManager>,
}

impl Standalone {
    /// Connects to the server `client` names.
    pub(crate) async fn connect(
        client: redis::Client,
        config: ConnectionManagerConfig,
    ) -> RedisResult<Arc<Self>> {
        let manager = ConnectionManager::new_with_config(client.clone(), config.clone()).await?;
        Ok(Arc::new(Standalone {
            client,
            config,
            manager: ArcSwap::from_pointee(manager),
        }))
    }

    fn current(&self) -> ConnectionManager {
        ConnectionManager::clone(&self.manager.load())
    }

    /// Replaces the connection after Redis refused it (it connects on its next call).
    fn observe<T>(&self, result: RedisResult<T>) -> RedisResult<T> {
        if let Err(error) = &result
            && refused(error)
            && let Ok(fresh) =
                ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())
        {
            self.manager.store(Arc::new(fresh));
        }
        result
    }
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

/// Whether `error` says the master is gone or is no longer the master (or refused us: a
/// new connection tries afresh).
fn moved(error: &RedisError) -> bool {
    refused(error)
        || error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.code() == Some("READONLY")
}

impl Connection {
    pub(crate) fn is_cluster(&self) -> bool {
        match self {
            Connection::Cluster(_) => true,
            Connection::Pending(pending) => pending.opener.cluster,
            _ => false,
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Standalone(standalone) => Box::pin(async move {
                let mut connection = standalone.current();
                standalone.observe(connection.req_packed_command(cmd).await)
            }),
            Connection::Cluster(connection) => connection.req_packed_command(cmd),
            Connection::Sentinel(master) => Box::pin(async move {
                let mut connection = master.current().await?;
                master.observe(connection.req_packed_command(cmd).await)
            }),
            Connection::Pending(pending) => Box::pin(async move {
                let mut connection = pending.ready()?;
                connection.req_packed_command(cmd).await
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
            Connection::Standalone(standalone) => Box::pin(async move {
                let mut connection = standalone.current();
                standalone.observe(
                    connection
                        .req_packed_commands(pipeline, offset, count)
                        .await,
                )
            }),
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
            Connection::Pending(pending) => Box::pin(async move {
                let mut connection = pending.ready()?;
                connection
                    .req_packed_commands(pipeline, offset, count)
                    .await
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Standalone(standalone) => standalone.current().get_db(),
            Connection::Cluster(connection) => connection.get_db(),
            Connection::Sentinel(master) => master
                .master
                .lock()
                .as_ref()
                .map_or(0, ConnectionLike::get_db),
            Connection::Pending(pending) => {
                pending.connected.get().map_or(0, ConnectionLike::get_db)
            }
        }
    }
}

/// The errors behind `error`, nearest first (looking inside I/O errors too).
fn causes(error: &RedisError) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
    type Shared = Arc<dyn std::error::Error + Send + Sync>;
    std::iter::successors(std::error::Error::source(error), |cause| {
        if let Some(shared) = cause.downcast_ref::<Shared>() {
            // redis-rs keeps the cause behind an `Arc`.
            Some(&**shared as _)
        } else if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            io.get_ref().map(|inner| inner as _)
        } else {
            cause.source()
        }
    })
}

/// The kind of the I/O error behind `error`, if that is what it is.
pub(crate) fn io_kind(error: &RedisError) -> Option<std::io::ErrorKind> {
    causes(error)
        .find_map(|cause| cause.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind)
        .or_else(|| error.is_timeout().then_some(std::io::ErrorKind::TimedOut))
}

/// Whether TLS itself failed behind `error` (a certificate not trusted, a handshake that
/// went wrong): a configuration error, not an outage.
pub(crate) fn tls_failure(error: &RedisError) -> bool {
    causes(error).any(|cause| cause.downcast_ref::<rustls::Error>().is_some())
        || io_kind(error) == Some(std::io::ErrorKind::InvalidData)
}

/// Whether `error` says Redis cannot be reached now (down, restarting, a network in the way),
/// as opposed to refusing us or being misconfigured: worth trying again later.
pub(crate) fn unreachable(error: &RedisError) -> bool {
    use redis::ErrorKind;
    if refused(error) || tls_failure(error) {
        return false;
    }
    match error.kind() {
        // A TLS certificate that cannot be trusted, an unusable address: configuration.
        ErrorKind::Io => !matches!(
            io_kind(error),
            Some(
                std::io::ErrorKind::InvalidData
                    | std::io::ErrorKind::InvalidInput
                    | std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::Unsupported
            )
        ),
        ErrorKind::ClusterConnectionNotFound
        | ErrorKind::MasterNameNotFoundBySentinel
        | ErrorKind::NoValidReplicasFoundBySentinel => true,
        _ => server_unavailable(error),
    }
}

/// Whether Redis refused us: wrong credentials, no permission, no such database.
pub(crate) fn refused(error: &RedisError) -> bool {
    error.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(error.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
        || error
            .detail()
            .is_some_and(|detail| detail.contains("DB index is out of range"))
}

/// Whether Redis answered that it cannot serve now (loading its data, a cluster or master
/// down, a busy script, out of memory, a replica after a failover).
pub(crate) fn server_unavailable(error: &RedisError) -> bool {
    matches!(
        error.code(),
        Some(
            "LOADING"
                | "MASTERDOWN"
                | "CLUSTERDOWN"
                | "TRYAGAIN"
                | "BUSY"
                | "OOM"
                | "READONLY"
                | "MISCONF"
        )
    )
}
