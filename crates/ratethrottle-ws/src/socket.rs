//! [`GuardedSocket`]: a WebSocket stream whose data messages pass the guard, with the
//! escalation and the close codes applied.

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use ratethrottle::store::{MemoryStore, Store};

use crate::{CloseWith, Connection, MESSAGE_TOO_BIG, Refusal, Verdict};

/// A message type of a WebSocket library.
pub trait WsMessage: Sized {
    /// The payload size of a data message (text or binary); `None` for control frames, which
    /// pass unchecked.
    fn data_len(&self) -> Option<usize>;
    /// A close frame with `code` and `reason`.
    fn close_frame(code: u16, reason: &'static str) -> Self;
}

/// An error type of a WebSocket library.
pub trait WsError {
    /// Whether the stream refused a message over its size cap.
    fn is_message_too_big(&self) -> bool;
}

/// What [`GuardedSocket::recv`] hands the application.
#[derive(Debug)]
pub enum Incoming<M> {
    /// A message to process (data within the limits, or a control frame).
    Message(M),
    /// A refused message, not handed over: tell the client (for example with
    /// [`Refusal::notice_json`]); the connection stays open.
    Notice(Refusal),
}

/// A WebSocket whose incoming data messages pass the guard: admitted ones are returned,
/// refused ones become a notice, are dropped, or close the connection, by the escalation. A
/// message over the stream's size cap closes it with 1009. The connection's slot is given
/// back when this is dropped.
///
/// ```no_run
/// # #[cfg(feature = "axum")] mod example {
/// use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
/// use axum::extract::{ConnectInfo, State};
/// use axum::response::{IntoResponse, Response};
/// use ratethrottle_ws::{GuardedSocket, Incoming, WsGuard};
/// use std::net::SocketAddr;
///
/// async fn chat(
///     State(guard): State<WsGuard>,
///     ConnectInfo(peer): ConnectInfo<SocketAddr>,
///     upgrade: WebSocketUpgrade,
/// ) -> Response {
///     let client = peer.ip().to_string();
///     match guard.connect(&client).await {
///         Err(refused) => (axum::http::StatusCode::TOO_MANY_REQUESTS, refused.to_string())
///             .into_response(),
///         Ok(connection) => guard.upgrade(upgrade).on_upgrade(move |socket: WebSocket| async move {
///             let mut socket = GuardedSocket::new(socket, connection);
///             while let Some(Ok(incoming)) = socket.recv().await {
///                 let reply = match incoming {
///                     Incoming::Message(Message::Text(text)) => Message::Text(text),
///                     Incoming::Message(_) => continue,
///                     Incoming::Notice(refusal) => Message::text(refusal.notice_json()),
///                 };
///                 if socket.send(reply).await.is_err() {
///                     break;
///                 }
///             }
///         }),
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct GuardedSocket<T, S: Store = MemoryStore> {
    inner: T,
    connection: Connection<S>,
    closed: Option<CloseWith>,
}

impl<T, S: Store> GuardedSocket<T, S> {
    /// `socket` guarded as `connection`.
    pub fn new(socket: T, connection: Connection<S>) -> Self {
        GuardedSocket {
            inner: socket,
            connection,
            closed: None,
        }
    }

    /// The connection: its client, key and guard.
    pub fn connection(&self) -> &Connection<S> {
        &self.connection
    }

    /// The socket, to use it directly.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// How the guard closed the connection, if it did.
    pub fn closed_with(&self) -> Option<CloseWith> {
        self.closed
    }

    /// The socket and the connection (whose slot is held until it is dropped).
    pub fn into_parts(self) -> (T, Connection<S>) {
        (self.inner, self.connection)
    }
}

impl<T, S, M, E> GuardedSocket<T, S>
where
    T: Stream<Item = Result<M, E>> + Sink<M, Error = E> + Unpin,
    M: WsMessage,
    E: WsError,
    S: Store,
{
    /// The next message for the application; `None` once the stream ended or the guard
    /// closed it. Errors of the stream are returned (after closing with 1009 for a message
    /// over the size cap).
    pub async fn recv(&mut self) -> Option<Result<Incoming<M>, E>> {
        while self.closed.is_none() {
            let message = match self.inner.next().await? {
                Ok(message) => message,
                Err(error) => {
                    if error.is_message_too_big() {
                        self.close_with(CloseWith {
                            code: MESSAGE_TOO_BIG,
                            reason: "message too big",
                        })
                        .await;
                    }
                    return Some(Err(error));
                }
            };
            let Some(size) = message.data_len() else {
                return Some(Ok(Incoming::Message(message)));
            };
            match self.connection.judge(size).await {
                Verdict::Admit => return Some(Ok(Incoming::Message(message))),
                Verdict::Notice(refusal) => return Some(Ok(Incoming::Notice(refusal))),
                Verdict::Drop(_) => {}
                Verdict::Close(with) => self.close_with(with).await,
            }
        }
        None
    }

    /// Sends `message`.
    pub async fn send(&mut self, message: M) -> Result<(), E> {
        self.inner.send(message).await
    }

    /// Closes the connection with `with` (the peer may be gone: errors are ignored). Later
    /// [`recv`](Self::recv)s return `None`.
    pub async fn close_with(&mut self, with: CloseWith) {
        self.closed = Some(with);
        let _ = self
            .inner
            .send(M::close_frame(with.code, with.reason))
            .await;
        let _ = self.inner.flush().await;
    }
}

#[cfg(feature = "tungstenite")]
mod tungstenite_impls {
    use tungstenite::Message;
    use tungstenite::error::{CapacityError, Error};
    use tungstenite::protocol::CloseFrame;
    use tungstenite::protocol::frame::coding::CloseCode;

    use crate::{WsError, WsGuard, WsMessage};
    use ratethrottle::store::Store;

    impl WsMessage for Message {
        fn data_len(&self) -> Option<usize> {
            match self {
                Message::Text(text) => Some(text.len()),
                Message::Binary(bytes) => Some(bytes.len()),
                _ => None,
            }
        }

        fn close_frame(code: u16, reason: &'static str) -> Self {
            Message::Close(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: reason.into(),
            }))
        }
    }

    impl WsError for Error {
        fn is_message_too_big(&self) -> bool {
            matches!(self, Error::Capacity(CapacityError::MessageTooLong { .. }))
        }
    }

    impl<S: Store> WsGuard<S> {
        /// tungstenite's configuration with its message and frame caps at the guard's
        /// maximum message size (tungstenite's default is 64 MiB), for
        /// `tokio_tungstenite::accept_async_with_config`.
        pub fn websocket_config(&self) -> tungstenite::protocol::WebSocketConfig {
            let max = Some(self.max_message_size());
            tungstenite::protocol::WebSocketConfig::default()
                .max_message_size(max)
                .max_frame_size(max)
        }
    }
}

#[cfg(feature = "axum")]
mod axum_impls {
    use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocketUpgrade};

    use crate::{WsError, WsGuard, WsMessage};
    use ratethrottle::store::Store;

    impl WsMessage for Message {
        fn data_len(&self) -> Option<usize> {
            match self {
                Message::Text(text) => Some(text.len()),
                Message::Binary(bytes) => Some(bytes.len()),
                _ => None,
            }
        }

        fn close_frame(code: u16, reason: &'static str) -> Self {
            Message::Close(Some(CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            }))
        }
    }

    impl WsError for axum::Error {
        fn is_message_too_big(&self) -> bool {
            std::error::Error::source(self)
                .and_then(|inner| inner.downcast_ref::<tungstenite::Error>())
                .is_some_and(WsError::is_message_too_big)
        }
    }

    impl<S: Store> WsGuard<S> {
        /// `upgrade` with its message and frame caps at the guard's maximum message size
        /// (axum's default is tungstenite's 64 MiB).
        pub fn upgrade(&self, upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
            upgrade
                .max_message_size(self.max_message_size())
                .max_frame_size(self.max_message_size())
        }
    }
}
