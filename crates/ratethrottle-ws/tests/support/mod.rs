//! A real axum echo server behind the guard, and tokio-tungstenite clients, on loopback.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use ratethrottle::store::Store;
use ratethrottle_ws::{GuardedSocket, Incoming, WsGuard};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as ClientMessage;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The client: the `x-client` header when sent (tests acting as many clients), else the peer.
fn client_of(headers: &HeaderMap, peer: SocketAddr) -> String {
    headers
        .get("x-client")
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| peer.ip().to_string(), str::to_owned)
}

/// `/ws`: refused connections get HTTP 429 before the upgrade. `/ws-close`: they are accepted
/// and closed with the refusal's close code. Messages are echoed; notices are sent as JSON;
/// the text "panic" makes the connection's task panic.
async fn handler<S: Store>(
    State(guard): State<WsGuard<S>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
    close_refused: bool,
) -> Response {
    let client = client_of(&headers, peer);
    let connection = match guard.connect(&client).await {
        Ok(connection) => connection,
        Err(refused) if close_refused => {
            return guard
                .upgrade(upgrade)
                .on_upgrade(move |mut socket| async move {
                    let frame = axum::extract::ws::CloseFrame {
                        code: refused.close_code(),
                        reason: "refused".into(),
                    };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                });
        }
        Err(refused) => {
            return (StatusCode::TOO_MANY_REQUESTS, refused.to_string()).into_response();
        }
    };
    guard
        .upgrade(upgrade)
        .on_upgrade(move |socket: WebSocket| async move {
            let mut socket = GuardedSocket::new(socket, connection);
            while let Some(Ok(incoming)) = socket.recv().await {
                let reply = match incoming {
                    Incoming::Message(Message::Text(text)) if text.as_str() == "panic" => {
                        panic!("the handler failed")
                    }
                    Incoming::Message(message @ (Message::Text(_) | Message::Binary(_))) => message,
                    Incoming::Message(_) => continue,
                    Incoming::Notice(refusal) => Message::text(refusal.notice_json()),
                };
                if socket.send(reply).await.is_err() {
                    break;
                }
            }
        })
}

/// `/plain`: the same echo without the guard (the benchmark's floor).
async fn plain(upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(|mut socket: WebSocket| async move {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Text(_) | Message::Binary(_))
                && socket.send(message).await.is_err()
            {
                break;
            }
        }
    })
}

/// Serves the guard's echo routes (and `/plain`) on a free loopback port.
pub async fn serve<S: Store>(guard: WsGuard<S>) -> SocketAddr {
    let app = Router::new()
        .route("/ws", get(|s, c, h, u| handler::<S>(s, c, h, u, false)))
        .route(
            "/ws-close",
            get(|s, c, h, u| handler::<S>(s, c, h, u, true)),
        )
        .route("/plain", get(plain))
        .with_state(guard);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    address
}

/// A client of `path` as `client` (the `x-client` header); the HTTP status when refused.
pub async fn connect(address: SocketAddr, path: &str, client: &str) -> Result<Client, u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{address}{path}")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-client", client.parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(error) => panic!("connecting failed: {error}"),
    }
}

/// What the client receives next: `Ok(text)` of a data message, `Err(code)` of a close.
pub async fn next(client: &mut Client) -> Result<String, u16> {
    loop {
        match client.next().await {
            Some(Ok(ClientMessage::Text(text))) => return Ok(text.to_string()),
            Some(Ok(ClientMessage::Binary(bytes))) => return Ok(format!("{} bytes", bytes.len())),
            Some(Ok(ClientMessage::Close(frame))) => {
                return Err(frame.map_or(0, |f| u16::from(f.code)));
            }
            Some(Ok(_)) => {}
            other => panic!("the connection ended without a close frame: {other:?}"),
        }
    }
}

/// Sends a text message.
pub async fn say(client: &mut Client, text: &str) {
    client.send(ClientMessage::text(text)).await.unwrap();
}

/// The close code as tungstenite names it, for messages.
pub fn code_name(code: u16) -> CloseCode {
    CloseCode::from(code)
}
