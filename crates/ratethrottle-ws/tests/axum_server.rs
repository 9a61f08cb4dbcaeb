//! The guard in a real axum server, driven by tokio-tungstenite clients over loopback.

use std::time::Duration;

use futures_util::SinkExt;
use ratethrottle::Limiter;
use ratethrottle::clock::ManualClock;
use ratethrottle_ws::{Escalation, WsGuard, WsLimits};
use tokio_tungstenite::tungstenite::Message as ClientMessage;

#[allow(dead_code, unreachable_pub)]
mod support;
use support::*;

/// A guard enforcing `limits` with `escalation`, over a limiter of its own (`clock` when given).
fn guard_at(limits: &WsLimits, escalation: Escalation, clock: Option<ManualClock>) -> WsGuard {
    let limiter = match clock {
        Some(clock) => Limiter::builder().clock(clock).build(),
        None => Limiter::in_memory(),
    };
    for rule in limits.rules() {
        limiter.add_rule(rule).unwrap();
    }
    WsGuard::builder(limiter)
        .limits(limits)
        .escalation(escalation)
        .build()
        .unwrap()
}

fn guard(limits: WsLimits, escalation: Escalation) -> WsGuard {
    guard_at(&limits, escalation, None)
}

fn lenient() -> Escalation {
    Escalation::new(1000, 0, Duration::from_secs(60))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_size_cap_closes_with_1009() {
    let limits = WsLimits {
        max_message_size: 1024,
        ..WsLimits::default()
    };
    let address = serve(guard(limits, Escalation::default())).await;
    let mut client = connect(address, "/ws", "big").await.unwrap();
    say(&mut client, &"a".repeat(1024)).await;
    assert_eq!(
        next(&mut client).await,
        Ok("a".repeat(1024)),
        "at the cap: admitted"
    );
    client
        .send(ClientMessage::binary(vec![0u8; 1025]))
        .await
        .unwrap();
    assert_eq!(
        next(&mut client).await,
        Err(1009),
        "one byte over: {:?}",
        code_name(1009)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_and_byte_rates_are_enforced_per_client() {
    let limits = WsLimits {
        messages_per_window: 5,
        ..WsLimits::default()
    };
    let address = serve(guard(limits, lenient())).await;
    // Two connections of one client share its 5 messages.
    let mut first = connect(address, "/ws", "chatty").await.unwrap();
    let mut second = connect(address, "/ws", "chatty").await.unwrap();
    let mut echoed = 0;
    let mut notices = 0;
    for i in 0..8 {
        let client = if i % 2 == 0 { &mut first } else { &mut second };
        say(client, "hi").await;
        match next(client).await.unwrap().as_str() {
            "hi" => echoed += 1,
            notice => {
                assert!(
                    notice.starts_with(r#"{"error":"rate_limit_exceeded","retry_after":"#),
                    "{notice}"
                );
                notices += 1;
            }
        }
    }
    assert_eq!((echoed, notices), (5, 3));

    let limits = WsLimits {
        bytes_per_window: Some(100),
        max_message_size: 40,
        ..WsLimits::default()
    };
    let address = serve(guard(limits, lenient())).await;
    let mut client = connect(address, "/ws", "bulky").await.unwrap();
    let message = "b".repeat(30);
    for _ in 0..3 {
        say(&mut client, &message).await;
        assert_eq!(next(&mut client).await.unwrap(), message);
    }
    say(&mut client, &message).await;
    let notice = next(&mut client).await.unwrap();
    assert!(
        notice.starts_with(r#"{"error":"bandwidth_exceeded""#),
        "{notice}"
    );
    // 10 bytes are left: a message of 10 passes, bytes were counted, not messages.
    say(&mut client, &"c".repeat(10)).await;
    assert_eq!(next(&mut client).await.unwrap(), "c".repeat(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_notifies_then_drops_then_closes_with_1008() {
    let limits = WsLimits {
        messages_per_window: 2,
        ..WsLimits::default()
    };
    let address = serve(guard(
        limits,
        Escalation::new(2, 3, Duration::from_secs(60)),
    ))
    .await;
    let mut client = connect(address, "/ws", "escalating").await.unwrap();
    for i in 0..10 {
        say(&mut client, &format!("m{i}")).await;
    }
    // m0, m1 echoed; m2, m3 noticed; m4..m6 dropped; m7 closes; m8, m9 never read.
    let mut seen = Vec::new();
    loop {
        match next(&mut client).await {
            Ok(text) if text.starts_with('{') => seen.push("notice".to_owned()),
            Ok(text) => seen.push(text),
            Err(code) => {
                seen.push(format!("close {code}"));
                break;
            }
        }
    }
    assert_eq!(seen, ["m0", "m1", "notice", "notice", "close 1008"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_get_429_or_close_1013() {
    let limits = WsLimits {
        connections_per_window: 3,
        max_concurrent_connections: 2,
        ..WsLimits::default()
    };
    let address = serve(guard(limits, Escalation::default())).await;
    let a = connect(address, "/ws", "opener").await.unwrap();
    let _b = connect(address, "/ws", "opener").await.unwrap();
    assert_eq!(
        connect(address, "/ws", "opener").await.err(),
        Some(429),
        "two open: full"
    );
    let mut refused = connect(address, "/ws-close", "opener").await.unwrap();
    assert_eq!(next(&mut refused).await, Err(1013));
    drop(a);
    // The slot comes back once the server sees the client gone; the third attempt of the
    // window is then admitted, the fourth refused for the rate.
    let mut third = loop {
        match connect(address, "/ws", "opener").await {
            Ok(client) => break client,
            Err(status) => assert_eq!(status, 429),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    say(&mut third, "still here").await;
    assert_eq!(next(&mut third).await.unwrap(), "still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connect_and_kill_cycles_leave_no_slot_held() {
    let limits = WsLimits {
        connections_per_window: 1_000_000,
        max_concurrent_connections: 4,
        ..WsLimits::default()
    };
    let guard = guard(limits, Escalation::default());
    let address = serve(guard.clone()).await;
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            tokio::spawn(async move {
                for cycle in 0..250 {
                    let client = format!("killer-{worker}");
                    // A leaked slot would make a later connect of this client fail: 4 max.
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
                    let mut socket = loop {
                        match connect(address, "/ws", &client).await {
                            Ok(socket) => break socket,
                            // The server has not yet seen the previous connection end.
                            Err(429) if tokio::time::Instant::now() < deadline => {
                                tokio::task::yield_now().await
                            }
                            Err(status) => panic!("cycle {cycle}: status {status}: slots leaked"),
                        }
                    };
                    match cycle % 3 {
                        // Killed: the TCP connection dropped without a close handshake.
                        0 => drop(socket),
                        // The server's task panics.
                        1 => say(&mut socket, "panic").await,
                        // Closed properly.
                        _ => socket.close(None).await.unwrap(),
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while guard.total_open() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(guard.total_open(), 0, "every slot came back");
}

#[tokio::test]
async fn violations_are_forgiven_after_a_quiet_spell() {
    let clock = ManualClock::new();
    let limits = WsLimits {
        messages_per_window: 1,
        ..WsLimits::default()
    };
    let escalation = Escalation::new(1, 1, Duration::from_secs(30));
    let guard = guard_at(&limits, escalation, Some(clock.clone()));
    let mut connection = guard.connect("quiet").await.unwrap();
    use ratethrottle_ws::Verdict::*;
    assert_eq!(connection.judge(1).await, Admit);
    assert!(matches!(connection.judge(1).await, Notice(_)));
    assert!(matches!(connection.judge(1).await, Drop(_)));
    clock.advance(Duration::from_secs(30));
    assert!(
        matches!(connection.judge(1).await, Notice(_)),
        "strikes forgotten"
    );
    assert!(matches!(connection.judge(1).await, Drop(_)));
    assert!(matches!(connection.judge(1).await, Close(c) if c.code == 1008));
}
