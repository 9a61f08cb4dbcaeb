"""`ratethrottle.websocket`: the original's API on the Rust guard, 1.4.0 as the oracle where
it is right, and its adapters in real FastAPI, python-socketio and Django Channels servers."""


import asyncio
import json
import threading
import time

import pytest

import ratethrottle as rt
from conftest import channels_ready, free_port, original_module, run_processes
from ratethrottle.websocket import ConnectionInfo, message_size


def run(coro):
    return asyncio.run(coro)


def original():
    return original_module("websocket")


async def opened(limiter, connection_id="conn-1", client_id="10.0.0.1"):
    assert await limiter.check_connection(client_id)
    await limiter.register_connection(connection_id, client_id)


def test_names_defaults_and_results_match_the_original():
    oracle = original()
    assert rt.WebSocketLimits() == rt.WebSocketLimits(**vars(oracle.WebSocketLimits()))
    assert list(vars(ConnectionInfo("c", 1.0))) == list(vars(oracle.ConnectionInfo("c", 1.0)))

    async def scenario(module):
        limiter = module.WebSocketRateLimiter(
            module.WebSocketLimits(messages_per_minute=4, max_message_size=100,
                                   max_concurrent_connections=2, connections_per_minute=3)
        )
        results = [await limiter.check_message("nowhere", 1)]
        results += [await limiter.check_connection("10.0.0.1") for _ in range(1)]
        await limiter.register_connection("a", "10.0.0.1", metadata={"user": "u"})
        results.append(await limiter.check_connection("10.0.0.1"))
        await limiter.register_connection("b", "10.0.0.1")
        results.append(await limiter.check_connection("10.0.0.1"))  # two open: full
        for size in (10, 101, 100, 0, 5, 5):
            result = await limiter.check_message("a" if size % 2 else "b", size)
            result.pop("retry_after", None)  # the original's is 300 s of block, ours too
            results.append(result)
        results.append(limiter.get_client_connections("10.0.0.1"))
        await limiter.unregister_connection("a")
        await limiter.unregister_connection("a")
        results.append(limiter.get_client_connections("10.0.0.1"))
        info = limiter.get_connection_info("b")
        results.append((info.client_id, info.message_count, info.bytes_sent, info.metadata))
        stats = limiter.get_statistics()
        results.append(stats)
        results.append(await limiter.check_connection("10.0.0.1"))  # third attempt: ok
        results.append(await limiter.check_connection("10.0.0.2"))
        return results

    assert run(scenario(rt)) == run(scenario(oracle))


def test_retry_after_is_the_rules_block_as_in_the_original(clock):
    limiter = rt.WebSocketRateLimiter(rt.WebSocketLimits(messages_per_minute=1), clock=clock)

    async def go():
        await opened(limiter)
        assert (await limiter.check_message("conn-1"))["allowed"]
        refused = await limiter.check_message("conn-1")
        assert refused == {"allowed": False, "reason": "rate_limit_exceeded", "retry_after": 300}
        clock.advance(300)
        assert (await limiter.check_message("conn-1"))["allowed"]

    run(go())


def test_bandwidth_counts_bytes_not_messages(clock):
    limits = rt.WebSocketLimits(bytes_per_minute=1000, max_message_size=600)
    limiter = rt.WebSocketRateLimiter(limits, clock=clock)

    async def go():
        await opened(limiter)
        assert (await limiter.check_message("conn-1", 600))["allowed"]
        refused = await limiter.check_message("conn-1", 500)
        assert refused == {"allowed": False, "reason": "bandwidth_exceeded",
                           "remaining_bytes": 400}
        # The message check came first: it counted (1.4.0's order).
        assert limiter.limiter.get_metrics()["total_requests"] >= 3
        assert (await limiter.check_message("conn-1", 0))["allowed"]

    run(go())
    # 1.4.0 counts one per message: 600-byte messages pass its 1000-"byte" limit 999 times.
    oracle = original()
    theirs = oracle.WebSocketRateLimiter(oracle.WebSocketLimits(bytes_per_minute=1000,
                                                                max_message_size=600))

    async def theirs_go():
        await theirs.check_connection("c")
        await theirs.register_connection("x", "c")
        return [(await theirs.check_message("x", 600))["allowed"] for _ in range(3)]

    assert run(theirs_go()) == [True, True, True]


def test_a_byte_limit_below_the_message_size_is_refused():
    with pytest.raises(rt.ConfigurationError, match="max_message_size"):
        rt.WebSocketRateLimiter(rt.WebSocketLimits(bytes_per_minute=100, max_message_size=1000))


def test_concurrent_handshakes_cannot_take_the_last_slot_twice():
    """20 handshakes at once (check, then an await, then register) for a limit of 3 open
    connections: 3 get in. 1.4.0 counted only registered connections: all 20 got in."""

    async def handshakes(module):
        limiter = module.WebSocketRateLimiter(
            module.WebSocketLimits(max_concurrent_connections=3, connections_per_minute=100)
        )

        async def handshake(i):
            if not await limiter.check_connection("crowd"):
                return False
            await asyncio.sleep(0.001)  # websocket.accept()
            await limiter.register_connection(f"c{i}", "crowd")
            return True

        admitted = await asyncio.gather(*(handshake(i) for i in range(20)))
        return sum(admitted), limiter.get_client_connections("crowd")

    assert run(handshakes(rt)) == (3, 3)
    assert run(handshakes(original())) == (20, 20)


def test_slots_come_back_on_unregister_and_unclaimed_reservations_lapse(clock):
    limits = rt.WebSocketLimits(max_concurrent_connections=1, connections_per_minute=100)
    limiter = rt.WebSocketRateLimiter(limits, clock=clock)

    async def go():
        await opened(limiter, "a", "c")
        assert not await limiter.check_connection("c")
        await limiter.unregister_connection("a")
        assert await limiter.check_connection("c")  # reserved, never registered
        assert not await limiter.check_connection("c")
        limiter.release_reservation("c")
        assert await limiter.check_connection("c")
        clock.advance(61)
        assert await limiter.check_connection("other")  # prunes lapsed reservations
        assert await limiter.check_connection("c")

    run(go())


def test_violations_reach_the_callback_which_cannot_break_a_decision(caplog):
    seen = []

    def on_violation(info):
        seen.append(info)
        raise RuntimeError("a buggy alert")

    limits = rt.WebSocketLimits(messages_per_minute=1, max_message_size=10,
                                max_concurrent_connections=1, connections_per_minute=2,
                                bytes_per_minute=15)
    limiter = rt.WebSocketRateLimiter(limits, on_violation=on_violation)

    async def go():
        await opened(limiter, "a", "c")
        assert not await limiter.check_connection("c")
        assert (await limiter.check_message("a", 11))["reason"] == "message_too_large"
        assert (await limiter.check_message("a", 10))["allowed"]
        assert (await limiter.check_message("a", 1))["reason"] == "rate_limit_exceeded"
        await limiter.unregister_connection("a")
        assert await limiter.check_connection("c")
        assert not await limiter.check_connection("c")

    run(go())
    assert [v["type"] for v in seen] == [
        "concurrent_connections", "message_size", "message_rate", "concurrent_connections"]
    assert seen[0] == {"type": "concurrent_connections", "client_id": "c", "current": 1,
                       "limit": 1}
    assert seen[1] == {"type": "message_size", "connection_id": "a", "client_id": "c",
                       "size": 11, "limit": 10}
    assert "on_violation callback raised" in caplog.text


def test_processes_sharing_redis_share_the_connection_rate(redis_url, redis_prefix):
    code = f"""
import asyncio, ratethrottle as rt
limiter = rt.WebSocketRateLimiter(
    rt.WebSocketLimits(connections_per_minute=15, max_concurrent_connections=1000),
    storage=rt.RedisStorage({redis_url!r}, key_prefix={redis_prefix!r}))
async def main():
    results = await asyncio.gather(*(limiter.check_connection("fleet") for _ in range(12)))
    print(sum(results))
asyncio.run(main())
"""
    counts = [int(out) for out in run_processes(code, 3)]
    assert sum(counts) == 15, counts


def test_sizes_are_bytes():
    assert message_size("héllo") == 6
    assert message_size(b"\x00\x01") == 2
    assert message_size({"a": 1}) == len('{"a": 1}')
    assert message_size(object()) > 0


# ---------------------------------------------------------------- FastAPI


def fastapi_app(limits):
    from fastapi import FastAPI, WebSocket, WebSocketDisconnect

    app = FastAPI()
    limiter = rt.FastAPIWebSocketLimiter(limits)

    @app.websocket("/ws/{client_id}")
    async def endpoint(websocket: WebSocket, client_id: str):
        if not await limiter.connect(websocket, client_id):
            return
        try:
            while True:
                data = await websocket.receive_text()
                if not await limiter.check_message(websocket, data):
                    await websocket.send_text('{"error": "Rate limit exceeded"}')
                    continue
                await websocket.send_text(f"echo {data}")
        except WebSocketDisconnect:
            await limiter.disconnect(websocket)

    return app, limiter


def test_fastapi_websockets_are_limited_and_refusals_close_with_1008():
    from fastapi.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect

    app, limiter = fastapi_app(rt.WebSocketLimits(messages_per_minute=3, max_message_size=8,
                                                  max_concurrent_connections=1))
    client = TestClient(app)
    with client.websocket_connect("/ws/alice") as ws:
        replies = []
        for text in ["one", "two", "ninebytes", "three", "four"]:
            ws.send_text(text)
            replies.append(ws.receive_text())
        assert replies == ["echo one", "echo two", '{"error": "Rate limit exceeded"}',
                           "echo three", '{"error": "Rate limit exceeded"}']
        with pytest.raises(WebSocketDisconnect) as refused:
            with client.websocket_connect("/ws/alice"):
                pass
        assert refused.value.code == 1008
    assert limiter.limiter.get_client_connections("alice") == 0
    with client.websocket_connect("/ws/alice") as ws:  # the slot came back
        ws.send_text("x")
        assert ws.receive_text() == '{"error": "Rate limit exceeded"}'


# ---------------------------------------------------------------- python-socketio


class Uvicorn:
    """An ASGI app served by uvicorn on a free loopback port, in a thread."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                ws="websockets-sansio", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


def test_socketio_server_limits_connections_and_events():
    socketio = pytest.importorskip("socketio")
    sio = socketio.AsyncServer(async_mode="asgi")
    limiter = rt.SocketIOLimiter(rt.WebSocketLimits(connections_per_minute=2,
                                                    messages_per_minute=3))

    @sio.event
    async def connect(sid, environ):
        return await limiter.on_connect(sid, environ.get("REMOTE_ADDR", "unknown"))

    @sio.event
    async def message(sid, data):
        if not await limiter.check_message(sid, data):
            await sio.emit("error", {"message": "Rate limit exceeded"}, to=sid)
            return
        await sio.emit("response", data, to=sid)

    @sio.event
    async def disconnect(sid, reason=None):
        await limiter.on_disconnect(sid)

    async def client_session(url):
        client = socketio.AsyncClient(reconnection=False)
        received = asyncio.Queue()
        client.on("response", lambda data: received.put_nowait(("response", data)))
        client.on("error", lambda data: received.put_nowait(("error", data)))
        await client.connect(url, transports=["websocket"])
        events = []
        for i in range(5):
            await client.emit("message", {"n": i})
            events.append(await asyncio.wait_for(received.get(), 10))
        await client.disconnect()
        refused = socketio.AsyncClient(reconnection=False)
        await refused.connect(url, transports=["websocket"])  # second of 2 per minute
        await refused.disconnect()
        third = socketio.AsyncClient(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await third.connect(url, transports=["websocket"])
        return events

    with Uvicorn(socketio.ASGIApp(sio)) as url:
        events = asyncio.run(client_session(url))
        deadline = time.monotonic() + 10
        while limiter.limiter.active_connections and time.monotonic() < deadline:
            time.sleep(0.01)
    assert [kind for kind, _ in events] == ["response"] * 3 + ["error"] * 2
    assert events[0] == ("response", {"n": 0})
    assert limiter.limiter.get_client_connections("127.0.0.1") == 0


# ---------------------------------------------------------------- Django Channels


def test_channels_consumer_is_limited():
    channels_ready()
    from channels.generic.websocket import AsyncWebsocketConsumer
    from channels.testing.websocket import WebsocketCommunicator

    limiter = rt.ChannelsRateLimiter(rt.WebSocketLimits(messages_per_minute=2,
                                                        max_concurrent_connections=1))

    class Consumer(AsyncWebsocketConsumer):
        async def connect(self):
            client_ip = self.scope["client"][0]
            if await limiter.check_connection(client_ip):
                await self.accept()
                await limiter.register_connection(self.channel_name, client_ip)
            else:
                await self.close(code=1008)

        async def disconnect(self, close_code):
            await limiter.unregister_connection(self.channel_name)

        async def receive(self, text_data=None, bytes_data=None):
            if not await limiter.check_message(self.channel_name, text_data):
                await self.send(text_data=json.dumps({"type": "error"}))
                return
            await self.send(text_data=json.dumps({"type": "message", "message": text_data}))

    async def go():
        app = Consumer.as_asgi()
        first = WebsocketCommunicator(app, "/ws/room/")
        first.scope["client"] = ("192.0.2.1", 5000)
        assert (await first.connect())[0]
        second = WebsocketCommunicator(app, "/ws/room/")
        second.scope["client"] = ("192.0.2.1", 5001)
        assert await second.connect() == (False, 1008)
        replies = []
        for text in ["a", "b", "c"]:
            await first.send_to(text_data=text)
            replies.append(json.loads(await first.receive_from())["type"])
        await first.disconnect()
        return replies

    assert run(go()) == ["message", "message", "error"]
    assert limiter.limiter.get_statistics()["active_connections"] == 0


def test_the_configurations_websocket_section_makes_a_limiter(tmp_path):
    path = tmp_path / "rt.yaml"
    path.write_text("websocket:\n  enabled: true\n  connections_per_minute: 2\n"
                    "  messages_per_minute: 3\n  max_concurrent_connections: 1\n"
                    "  max_message_size: 10\n  bytes_per_minute: 25\n")
    limiter = rt.ConfigManager(str(path)).create_websocket_limiter()
    assert limiter.limits == rt.WebSocketLimits(2, 3, 25, 1, 10)

    async def go():
        await opened(limiter, "a", "c")
        assert not await limiter.check_connection("c")
        sizes = [10, 11, 10, 10]
        return [(await limiter.check_message("a", size))["reason"] for size in sizes]

    assert run(go()) == ["ok", "message_too_large", "ok", "bandwidth_exceeded"]
    path.write_text("websocket:\n  enabled: true\n  max_message_size: 100\n  bytes_per_minute: 50\n")
    with pytest.raises(rt.ConfigurationError, match="bytes_per_minute"):
        rt.ConfigManager(str(path))
