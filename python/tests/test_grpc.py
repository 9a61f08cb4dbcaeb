"""
`ratethrottle.gRPC` (issue 21) against real grpcio servers over loopback, sync and asyncio,
with generic handlers on raw bytes (no generated stubs needed): the original's names, and
each of its defects fixed.
"""

import asyncio
import socket
import threading
from concurrent import futures

import pytest

grpc = pytest.importorskip("grpc")

import ratethrottle as rt  # noqa: E402
from ratethrottle.gRPC import (  # noqa: E402
    AsyncGRPCRateLimitInterceptor,
    GRPCLimits,
    GRPCRateLimitInterceptor,
    extract_user_id_from_metadata,
    parse_peer,
)


class Gate:
    """Holds `Wait` calls open until released; counts the calls inside."""

    def __init__(self):
        self.inside = threading.Semaphore(0)
        self.open = threading.Event()


def handlers(gate=None):
    def say(request, context):
        return request

    def wait(request, context):
        gate.inside.release()
        gate.open.wait(10)
        return request

    def count(request, context):
        for i in range(100):
            yield str(i).encode()

    def total(requests, context):
        return str(sum(1 for _ in requests)).encode()

    return grpc.method_handlers_generic_handler("test.Echo", {
        "Say": grpc.unary_unary_rpc_method_handler(say),
        "Shout": grpc.unary_unary_rpc_method_handler(say),
        "Wait": grpc.unary_unary_rpc_method_handler(wait),
        "Count": grpc.unary_stream_rpc_method_handler(count),
        "Sum": grpc.stream_unary_rpc_method_handler(total),
    })


@pytest.fixture
def serve():
    servers = []

    def start(interceptor, host="127.0.0.1", gate=None):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), interceptors=[interceptor])
        server.add_generic_rpc_handlers((handlers(gate),))
        bind = f"[{host}]" if ":" in host else host
        port = server.add_insecure_port(f"{bind}:0")
        server.start()
        servers.append(server)
        target = f"{bind}:{port}"
        return grpc.insecure_channel(target)

    yield start
    for server in servers:
        server.stop(None)


def metadata_of(error):
    return dict(error.trailing_metadata() or ())


def test_the_eleventh_call_at_ten_a_minute_is_told_when_to_retry(serve):
    interceptor = GRPCRateLimitInterceptor(GRPCLimits(requests_per_minute=10))
    say = serve(interceptor).unary_unary("/test.Echo/Say")
    for _ in range(10):
        assert say(b"hi") == b"hi", "a unary handler works (1.4.0 broke every unary call)"
    with pytest.raises(grpc.RpcError) as refused:
        say(b"hi")
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    metadata = metadata_of(refused.value)
    retry = int(metadata["retry-after"])
    assert 1 <= retry <= 300, "the rule blocks for 300 s after a violation, as the original's"
    assert int(metadata["grpc-retry-pushback-ms"]) == retry * 1000
    assert metadata["x-ratelimit-limit"] == "10" and metadata["x-ratelimit-remaining"] == "0"
    assert b"type.googleapis.com/google.rpc.RetryInfo" in metadata["grpc-status-details-bin"]
    stats = interceptor.get_statistics()
    assert stats["limits"]["requests_per_minute"] == 10 and stats["current_concurrent_requests"] == 0


def test_method_limits_apply_by_name_or_full_path(serve):
    interceptor = GRPCRateLimitInterceptor(
        GRPCLimits(requests_per_minute=100),
        method_limits={"Say": GRPCLimits(requests_per_minute=2),
                       "/test.Echo/Shout": GRPCLimits(requests_per_minute=1)},
    )
    channel = serve(interceptor)
    say, shout = channel.unary_unary("/test.Echo/Say"), channel.unary_unary("/test.Echo/Shout")

    def code(call):
        try:
            call(b"x")
            return "ok"
        except grpc.RpcError as error:
            return error.code().name

    assert [code(say) for _ in range(3)] == ["ok", "ok", "RESOURCE_EXHAUSTED"]
    assert [code(shout) for _ in range(2)] == ["ok", "RESOURCE_EXHAUSTED"]


def test_a_fourth_concurrent_call_is_rejected_at_once_while_three_are_held(serve):
    gate = Gate()
    interceptor = GRPCRateLimitInterceptor(GRPCLimits(concurrent_requests=3))
    channel = serve(interceptor, gate=gate)
    wait, say = channel.unary_unary("/test.Echo/Wait"), channel.unary_unary("/test.Echo/Say")
    held = [wait.future(b"x") for _ in range(3)]
    for _ in range(3):
        assert gate.inside.acquire(timeout=10)
    assert interceptor.concurrent_requests == {"127.0.0.1": 3}
    with pytest.raises(grpc.RpcError) as refused:
        say(b"x")
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "Max: 3" in refused.value.details()
    gate.open.set()
    assert [call.result(10) for call in held] == [b"x"] * 3
    assert say(b"x") == b"x"
    assert interceptor.concurrent_requests == {}


def test_streams_are_cut_at_the_message_over_the_limit(serve):
    interceptor = GRPCRateLimitInterceptor(GRPCLimits(stream_messages_per_minute=50))
    channel = serve(interceptor)
    received = []
    with pytest.raises(grpc.RpcError) as cut:
        for message in channel.unary_stream("/test.Echo/Count")(b"go"):
            received.append(message)
    assert len(received) == 50 and received[-1] == b"49"
    assert cut.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    total = channel.stream_unary("/test.Echo/Sum")
    assert total(iter([b"m"] * 50)) == b"50", "each stream has its own count"
    with pytest.raises(grpc.RpcError) as over:
        total(iter([b"m"] * 60))
    assert over.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_ipv6_peers_count_per_64_and_spoofed_forwarding_is_ignored(serve):
    assert parse_peer("ipv4:127.0.0.1:5000") == "127.0.0.1"
    assert parse_peer("ipv6:[::1]:5000") == "::1"
    assert parse_peer("ipv6:%5B2001:db8::7%5D:5000") == "2001:db8::7"
    assert parse_peer("unix:/tmp/s") is None
    interceptor = GRPCRateLimitInterceptor(GRPCLimits(requests_per_minute=2))
    say = serve(interceptor).unary_unary("/test.Echo/Say")
    for spoof in ("198.51.100.1", "198.51.100.2"):
        assert say(b"x", metadata=(("x-forwarded-for", spoof),)) == b"x"
    with pytest.raises(grpc.RpcError):
        say(b"x", metadata=(("x-forwarded-for", "198.51.100.3"),))
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    interceptor = GRPCRateLimitInterceptor(GRPCLimits(requests_per_minute=1))
    say = serve(interceptor, host="::1").unary_unary("/test.Echo/Say")
    say(b"x")
    with pytest.raises(grpc.RpcError):
        say(b"x")
    # 1.4.0 counted every IPv6 client as "ipv6"; here ::1 counts as its /64.
    assert not interceptor.limiter.check_rate_limit("::/64", "grpc_requests").allowed
    assert interceptor.limiter.check_rate_limit("ipv6", "grpc_requests").allowed


def test_a_metadata_key_and_a_failing_callback(serve):
    seen = []

    def on_violation(info):
        seen.append(info)
        raise RuntimeError("a buggy callback")

    interceptor = GRPCRateLimitInterceptor(
        GRPCLimits(requests_per_minute=1),
        extract_client_id=extract_user_id_from_metadata("x-user-id"),
        on_violation=on_violation,
    )
    say = serve(interceptor).unary_unary("/test.Echo/Say")
    assert say(b"x", metadata=(("x-user-id", "alice"),)) == b"x"
    assert say(b"x", metadata=(("x-user-id", "bob"),)) == b"x"
    with pytest.raises(grpc.RpcError):
        say(b"x", metadata=(("x-user-id", "alice"),))
    assert seen and seen[0]["client_id"] == "alice" and seen[0]["type"] == "rate_limit"
    assert rt.GRPCRateLimitInterceptor is GRPCRateLimitInterceptor
    assert rt.extract_user_id_from_metadata is extract_user_id_from_metadata


def test_an_asyncio_server_is_limited_too():
    async def main():
        interceptor = AsyncGRPCRateLimitInterceptor(
            GRPCLimits(requests_per_minute=3, stream_messages_per_minute=5))

        async def say(request, context):
            return request

        async def count(request, context):
            for i in range(10):
                yield str(i).encode()

        server = grpc.aio.server(interceptors=[interceptor])
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", {
            "Say": grpc.unary_unary_rpc_method_handler(say),
            "Count": grpc.unary_stream_rpc_method_handler(count),
        }),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = channel.unary_unary("/test.Echo/Say")
                assert [await call(b"a") for _ in range(2)] == [b"a", b"a"]
                received = []
                with pytest.raises(grpc.aio.AioRpcError) as cut:
                    async for message in channel.unary_stream("/test.Echo/Count")(b"go"):
                        received.append(message)
                assert len(received) == 5
                assert cut.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await call(b"a")
                assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                metadata = dict(refused.value.trailing_metadata() or ())
                assert "retry-after" in metadata and "grpc-retry-pushback-ms" in metadata
        finally:
            await server.stop(None)

    asyncio.run(main())


def test_the_configurations_grpc_section_makes_an_interceptor(serve, tmp_path):
    path = tmp_path / "rt.yaml"
    path.write_text("grpc:\n  enabled: true\n  requests_per_minute: 2\n  concurrent_requests: 4\n"
                    "  stream_messages_per_minute: 7\n")
    interceptor = rt.ConfigManager(str(path)).create_grpc_interceptor()
    assert interceptor.limits == GRPCLimits(2, 4, 7)
    say = serve(interceptor).unary_unary("/test.Echo/Say")
    assert [say(b"x") for _ in range(2)] == [b"x", b"x"]
    with pytest.raises(grpc.RpcError):
        say(b"x")
    assert isinstance(rt.ConfigManager(str(path)).create_grpc_interceptor(asyncio=True),
                      AsyncGRPCRateLimitInterceptor)


def test_a_store_failing_closed_answers_unavailable(serve):
    from conftest import start_redis, stop_redis

    proc, url = start_redis()
    storage = rt.RedisStorage(url, fault_policy="fail_closed", key_prefix="grpc-closed:")
    say = serve(GRPCRateLimitInterceptor(GRPCLimits(), storage=storage)).unary_unary(
        "/test.Echo/Say")
    try:
        assert say(b"x") == b"x"
    finally:
        stop_redis(proc)
    with pytest.raises(grpc.RpcError) as unavailable:
        say(b"x")
    assert unavailable.value.code() == grpc.StatusCode.UNAVAILABLE
