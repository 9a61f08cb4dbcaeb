//! The guard over a plain tokio-tungstenite server (no axum): the stream's caps come from the
//! guard, and a message over them closes with 1009.

use futures_util::SinkExt;
use ratethrottle::Limiter;
use ratethrottle_ws::{GuardedSocket, Incoming, WsGuard, WsLimits};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

#[allow(dead_code, unreachable_pub)]
mod support;
use support::next;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tungstenite_server_is_capped_and_limited_by_the_guard() {
    let limits = WsLimits {
        messages_per_window: 2,
        max_message_size: 512,
        ..WsLimits::default()
    };
    let guard = WsGuard::with_limits(Limiter::in_memory(), &limits).unwrap();
    assert_eq!(guard.websocket_config().max_message_size, Some(512));
    assert_eq!(guard.websocket_config().max_frame_size, Some(512));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server_guard = guard.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let guard = server_guard.clone();
            tokio::spawn(async move {
                let connection = guard.connect("tungstenite-client").await.unwrap();
                let config = Some(guard.websocket_config());
                let socket = tokio_tungstenite::accept_async_with_config(stream, config)
                    .await
                    .unwrap();
                let mut socket = GuardedSocket::new(socket, connection);
                while let Some(Ok(incoming)) = socket.recv().await {
                    let reply = match incoming {
                        Incoming::Message(message) if message.is_text() => message,
                        Incoming::Message(_) => continue,
                        Incoming::Notice(refusal) => Message::text(refusal.notice_json()),
                    };
                    if socket.send(reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let url = format!("ws://{address}/");
    let (mut client, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    for text in ["one", "two", "three"] {
        client.send(Message::text(text)).await.unwrap();
    }
    assert_eq!(next(&mut client).await.unwrap(), "one");
    assert_eq!(next(&mut client).await.unwrap(), "two");
    assert!(
        next(&mut client)
            .await
            .unwrap()
            .contains("rate_limit_exceeded")
    );
    let (mut client, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    client.send(Message::binary(vec![1u8; 513])).await.unwrap();
    assert_eq!(next(&mut client).await, Err(1009));
}
