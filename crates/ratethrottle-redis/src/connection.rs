//! One connection type over the topologies: a self-reconnecting multiplexed connection to a
//! standalone server, a Redis Cluster connection that routes each command by its keys, or the
//! master that Redis Sentinel names (asked again after a connection fails or the old master
//! refuses writes).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use ratethrottle::store::{StoreError, StoreErrorKind};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::SentinelClient;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};

use crate::RedisConfig;
use crate::config::redact;
use crate::errors::refused;

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

/// Sends a request on the connection in use now: `$request` is an expression on the
/// connection bound as `$connection`, so both request methods share one match over the
/// topologies (and each topology sees the result: a refused standalone connection is
/// replaced, a Sentinel master that moved is forgotten).
macro_rules! on_current {
    ($self:ident, $connection:ident => $request:expr) => {
        match $self {
            Connection::Standalone(standalone) => Box::pin(async move {
                let mut $connection = standalone.current();
                standalone.observe($request.await)
            }),
            Connection::Cluster($connection) => $request,
            Connection::Sentinel(master) => Box::pin(async move {
                let mut $connection = master.current().await?;
                master.observe($request.await)
            }),
            Connection::Pending(pending) => Box::pin(async move {
                let mut $connection = pending.ready()?;
                $request.await
            }),
        }
    };
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        on_current!(self, connection => connection.req_packed_command(cmd))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        on_current!(self, connection => connection.req_packed_commands(pipeline, offset, count))
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

/// The connection `config` describes, how to open it (again), and where it goes (for
/// messages).
pub(crate) fn opener(config: &RedisConfig) -> Result<(Opener, String), StoreError> {
    let invalid = |error: redis::RedisError| {
        StoreError::new(
            StoreErrorKind::Protocol,
            format!("invalid redis url {:?}: {error}", redact(&config.url)),
        )
    };
    // One quick retry: the circuit breaker, not the connection, rides out outages.
    let manager_config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(Some(config.timeout))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(10))
        .set_max_delay(Duration::from_millis(100));
    if let Some(master) = &config.sentinel_master {
        let address = format!(
            "sentinel master {master:?} via {}",
            redact(&config.sentinel_nodes.join(","))
        );
        let (nodes, master) = (config.sentinel_nodes.clone(), master.clone());
        let sentinel = move || {
            redis::sentinel::SentinelClient::build(
                nodes.clone(),
                master.clone(),
                None,
                redis::sentinel::SentinelServerType::Master,
            )
        };
        // Fails now on a malformed node address, rather than on every attempt later.
        sentinel().map_err(invalid)?;
        let opener = Opener::new(false, move || {
            let (sentinel, manager_config) = (sentinel(), manager_config.clone());
            Box::pin(async move {
                let master = SentinelMaster::connect(sentinel?, manager_config).await?;
                answering(Connection::Sentinel(master)).await
            })
        });
        Ok((opener, address))
    } else if config.cluster_nodes.is_empty() {
        let client = match &config.tls_root_certificate {
            Some(root) => redis::Client::build_with_tls(
                config.url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root.clone()),
                },
            ),
            None => redis::Client::open(config.url.as_str()),
        }
        .map_err(invalid)?;
        let address = client.get_connection_info().addr().to_string();
        let opener = Opener::new(false, move || {
            let (client, manager_config) = (client.clone(), manager_config.clone());
            Box::pin(async move {
                let standalone = Standalone::connect(client, manager_config).await?;
                answering(Connection::Standalone(standalone)).await
            })
        });
        Ok((opener, address))
    } else {
        let address = format!("cluster {}", redact(&config.cluster_nodes.join(",")));
        let client = redis::cluster::ClusterClientBuilder::new(config.cluster_nodes.clone())
            .connection_timeout(config.connect_timeout)
            .response_timeout(config.timeout)
            .retries(2)
            .build()
            .map_err(invalid)?;
        let opener = Opener::new(true, move || {
            let client = client.clone();
            Box::pin(async move {
                let cluster = client.get_async_connection().await?;
                answering(Connection::Cluster(cluster)).await
            })
        });
        Ok((opener, address))
    }
}

/// `connection` once it has answered a `PING`: a server that wants a password (or a
/// database that does not exist) says so now, not on the first check.
async fn answering(mut connection: Connection) -> redis::RedisResult<Connection> {
    redis::cmd("PING")
        .query_async::<()>(&mut connection)
        .await?;
    Ok(connection)
}
