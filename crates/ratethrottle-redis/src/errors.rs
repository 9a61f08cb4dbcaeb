//! What Redis's errors mean: an outage to ride out, a refusal (a configuration error at
//! start), or a bug; and the messages, which name the server and never a password.

use std::sync::Arc;

use ratethrottle::store::{StoreError, StoreErrorKind};
use redis::RedisError;

use crate::RedisConfig;

/// A Redis failure as a [`StoreError`] that names the server.
pub(crate) fn failure(address: &str, error: redis::RedisError) -> StoreError {
    if refused(&error) {
        return StoreError::new(
            StoreErrorKind::Refused,
            format!(
                "redis at {address} refused us: {error} (check the user, password and \
                 database in the URL: redis://user:password@host:6379/0)"
            ),
        )
        .with_source(error);
    }
    if server_unavailable(&error) {
        return StoreError::new(
            StoreErrorKind::Unavailable,
            format!("redis at {address} cannot serve now: {error}"),
        )
        .with_source(error);
    }
    let kind = if error.is_timeout() {
        StoreErrorKind::Timeout
    } else if error.is_io_error() || error.is_connection_dropped() || error.is_connection_refusal()
    {
        StoreErrorKind::Unavailable
    } else {
        StoreErrorKind::Protocol
    };
    if error.kind() == redis::ErrorKind::Parse {
        // Something answered, but not in the Redis protocol (an HTTP server, a database).
        return StoreError::new(
            StoreErrorKind::Protocol,
            format!(
                "the server at {address} did not answer like Redis (is it a Redis or Valkey server, and is this its port?)"
            ),
        )
        .with_source(error);
    }
    let what = match kind {
        StoreErrorKind::Unavailable => "unreachable",
        StoreErrorKind::Timeout => "timed out",
        _ => "failed",
    };
    StoreError::new(kind, format!("redis at {address} {what}: {error}")).with_source(error)
}

/// A failure to connect, as [`failure`] words it, saying when TLS may be the cause.
pub(crate) fn connect_failure(
    config: &RedisConfig,
    address: &str,
    error: &redis::RedisError,
) -> StoreError {
    let base = failure(address, error.clone());
    let handshake = error.is_timeout() || tls_failure(error);
    if config.uses_tls() && handshake {
        return StoreError::new(
            base.kind(),
            format!(
                "{base} (TLS: the handshake did not complete; is this port serving TLS? \
                 rediss:// needs a TLS-enabled Redis, redis:// a plain one)"
            ),
        )
        .with_source(error.clone());
    }
    base
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
        // An unusable address or a forbidden socket: configuration (TLS was ruled out above).
        ErrorKind::Io => !matches!(
            io_kind(error),
            Some(
                std::io::ErrorKind::InvalidInput
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
