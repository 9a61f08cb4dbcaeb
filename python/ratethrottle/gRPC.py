"""
RateThrottle - gRPC rate limiting for grpcio servers, sync and `grpc.aio`.

The original's API (`GRPCLimits`, `GRPCRateLimitInterceptor`, `ServiceRateLimiter`,
`grpc_ratelimit`, `extract_user_id_from_metadata`) deciding each call with the Rust
middleware's policy (the same answer an HTTP request or a tonic call gets), plus
`AsyncGRPCRateLimitInterceptor` for `grpc.aio` servers. `grpcio` is an optional extra
(`pip install ratethrottle[grpc]`), imported when this module is.

Fixed from 1.4.0, on purpose:

- `method_limits` are applied (1.4.0 looked them up and never used them), keyed by bare method
  name as the docs show (`"GetUser"`) or by full path (`"/pkg.Service/GetUser"`); a method's
  limits replace the defaults for its calls.
- Unary handlers work (1.4.0 tested `hasattr(handler, "unary_stream")`, always true, and
  broke every unary call); each kind of handler is wrapped as what it is.
- IPv6 peers are parsed, and counted per /64 as the HTTP middleware does (1.4.0 counted every
  IPv6 client as the one identifier `"ipv6"`).
- `x-forwarded-for` is read only from `trusted_proxies` (1.4.0 believed it from anyone, so any
  client could pick its own key).
- The concurrency limit is kept under a lock and released however a call ends.
- Refusals carry `retry-after`, `grpc-retry-pushback-ms`, `x-ratelimit-*` and a
  `google.rpc.RetryInfo` detail (`grpc-status-details-bin`), so standard clients back off; a
  blacklisted client gets `PERMISSION_DENIED`.
"""

from __future__ import annotations

import itertools
import logging
import threading
from dataclasses import dataclass
from functools import wraps
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple
from urllib.parse import unquote

import grpc
from grpc import StatusCode

from ._http import Guard
from .core import RateThrottleCore, RateThrottleRule

logger = logging.getLogger(__name__)


@dataclass
class GRPCLimits:
    """
    Configuration for gRPC rate limits

    Args:
        requests_per_minute: Max requests per minute per client
        concurrent_requests: Max concurrent requests per client
        stream_messages_per_minute: Max messages in streams per minute

    Example:
        >>> limits = GRPCLimits(
        ...     requests_per_minute=100,
        ...     concurrent_requests=10,
        ...     stream_messages_per_minute=1000
        ... )
    """

    requests_per_minute: int = 1000
    concurrent_requests: int = 50
    stream_messages_per_minute: int = 5000


_CODES = {403: StatusCode.PERMISSION_DENIED, 503: StatusCode.UNAVAILABLE, 500: StatusCode.INTERNAL}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, value: Any) -> bytes:
    """One protobuf field: a varint for an int, length-delimited for bytes."""
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def status_details(code: StatusCode, message: str, retry_after: Optional[float]) -> bytes:
    """A `google.rpc.Status` (code, message, and a `RetryInfo` when the client may retry),
    serialized for the `grpc-status-details-bin` trailer."""
    details = b""
    if retry_after is not None:
        seconds = int(retry_after)
        nanos = int(round((retry_after - seconds) * 1e9))
        duration = _field(1, seconds) + (_field(2, nanos) if nanos else b"")
        retry_info = _field(1, duration)
        details = _field(3, _field(1, b"type.googleapis.com/google.rpc.RetryInfo")
                         + _field(2, retry_info))
    return _field(1, code.value[0]) + _field(2, message.encode()) + details


#: A refused call: its code, message and trailing metadata.
Refusal = Tuple[StatusCode, str, List[Tuple[str, Any]]]


def _refusal(decision: Any) -> Refusal:
    """The code, message and trailing metadata for a refused call."""
    http_code = decision.rejection[0]
    code = _CODES.get(http_code, StatusCode.RESOURCE_EXHAUSTED)
    status = decision.status
    retry = float(status.retry_after) if status is not None and status.retry_after else None
    if code == StatusCode.PERMISSION_DENIED:
        return code, "the client is blacklisted", []
    if code == StatusCode.UNAVAILABLE:
        return code, "rate limiting is unavailable (its store failed) and fails closed", []
    if code == StatusCode.INTERNAL:
        return code, "the server cannot tell clients apart: the peer address is unknown", []
    message = "Rate limit exceeded"
    metadata: List[Tuple[str, Any]] = []
    if status is not None:
        message = (f"Rate limit exceeded: rule {status.rule_name} allows {status.limit} per "
                   f"{status.window:g}s. Retry after {status.retry_after} seconds.")
        metadata += [("x-ratelimit-limit", str(status.limit)),
                     ("x-ratelimit-remaining", str(status.remaining)),
                     ("x-ratelimit-reset", str(status.reset_time))]
    if retry is not None:
        metadata += [("retry-after", str(int(retry))),
                     ("grpc-retry-pushback-ms", str(int(retry * 1000)))]
    metadata.append(("grpc-status-details-bin", status_details(code, message, retry)))
    return code, message, metadata


def parse_peer(peer: Optional[str]) -> Optional[str]:
    """The address in a grpcio peer string (`ipv4:127.0.0.1:5000`, `ipv6:[::1]:5000`,
    `ipv6:%5B::1%5D:5000`), or None (a Unix socket, or nothing)."""
    if not peer:
        return None
    # grpcio writes IPv6 peers URL-encoded: "ipv6:%5B::1%5D:5000".
    kind, _, rest = unquote(peer).partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        host = rest.rsplit(":", 1)[0] if rest.startswith("[") else rest
        return host.strip("[]").split("%")[0]
    return None


def _metadata_getter(context: Any) -> Callable[[str], List[str]]:
    metadata = context.invocation_metadata() or ()

    def values(name: str) -> List[str]:
        return [value for key, value in metadata if key == name and isinstance(value, str)]

    return values


class _Concurrency:
    """Calls in flight per client, under a lock; one more than the limit is refused at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.held: Dict[str, int] = {}

    def acquire(self, client: str, limit: int) -> bool:
        with self._lock:
            count = self.held.get(client, 0)
            if count >= limit:
                return False
            self.held[client] = count + 1
            return True

    def release(self, client: str) -> None:
        with self._lock:
            count = self.held.get(client, 0) - 1
            if count > 0:
                self.held[client] = count
            else:
                self.held.pop(client, None)


#: What makes a method handler of each kind: (request streaming, response streaming).
_FACTORIES = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def _rebuilt(handler: Any, behaviour: Callable) -> Any:
    """A method handler of `handler`'s kind and (de)serializers running `behaviour`."""
    factory = _FACTORIES[(handler.request_streaming, handler.response_streaming)]
    return factory(behaviour, handler.request_deserializer, handler.response_serializer)


class _Call:
    """One admitted call's bookkeeping: its client's concurrency slot (given back once), its
    stream's key and message rule."""

    def __init__(self, interceptor: "GRPCRateLimitInterceptor", client: str, stream: str,
                 rule: str) -> None:
        self._concurrency = interceptor._concurrency
        self.client, self.stream, self.rule = client, stream, rule
        self.held = False

    def release(self) -> None:
        if self.held:
            self.held = False
            self._concurrency.release(self.client)


class GRPCRateLimitInterceptor(grpc.ServerInterceptor):
    """
    gRPC server interceptor for rate limiting (grpcio's sync server).

    Every call is checked against `limits.requests_per_minute` for its client (or its
    method's limits in `method_limits`), at most `concurrent_requests` of a client's calls run
    at once (one more is refused at once, never queued), and each stream may carry
    `stream_messages_per_minute` messages each way.

    Args:
        limits: Default rate limits
        storage: Storage backend (defaults to in-memory; RedisStorage for a fleet)
        extract_client_id: Custom function to extract client ID from context
        on_violation: Callback for rate limit violations (a dict; exceptions are logged)
        method_limits: Per-method rate limit overrides, by method name or full path
        trusted_proxies: Proxies whose `x-forwarded-for` is believed (not in the original)
    """

    def __init__(
        self,
        limits: Optional[GRPCLimits] = None,
        storage: Any = None,
        extract_client_id: Optional[Callable] = None,
        on_violation: Optional[Callable] = None,
        method_limits: Optional[Dict[str, GRPCLimits]] = None,
        *,
        trusted_proxies: Optional[Iterable[str]] = None,
        limiter: Optional[RateThrottleCore] = None,
    ):
        self.limits = limits or GRPCLimits()
        self.limiter = limiter or RateThrottleCore(storage=storage)
        self.storage = self.limiter.storage
        self.extract_client_id = extract_client_id
        self.on_violation = on_violation
        self.method_limits = dict(method_limits or {})
        self.limiter.add_rule(RateThrottleRule(
            name="grpc_requests", limit=self.limits.requests_per_minute, window=60, scope="ip"))
        self.limiter.add_rule(RateThrottleRule(
            name="grpc_stream_messages", limit=self.limits.stream_messages_per_minute, window=60,
            scope="ip", block_duration=0))
        for key, override in self.method_limits.items():
            self.limiter.add_rule(RateThrottleRule(
                name=f"grpc_method_{key}", limit=override.requests_per_minute, window=60,
                scope="ip"))
            self.limiter.add_rule(RateThrottleRule(
                name=f"grpc_method_{key}_stream", limit=override.stream_messages_per_minute,
                window=60, scope="ip", block_duration=0))
        self.guard = Guard(self.limiter, trusted_proxies=trusted_proxies, header_style="legacy")
        self._concurrency = _Concurrency()
        self._streams = itertools.count()
        logger.info(f"gRPC rate limiter initialized: {self.limits}")

    @property
    def concurrent_requests(self) -> Dict[str, int]:
        """Calls in flight per client."""
        return dict(self._concurrency.held)

    def _method_key(self, method: str) -> Optional[str]:
        """The `method_limits` key for a full method path, if any."""
        if method in self.method_limits:
            return method
        name = method.rsplit("/", 1)[-1]
        return name if name in self.method_limits else None

    def _client(self, context: Any) -> Tuple[Optional[str], str]:
        """`(key, client)`: the custom key (or None) and who the call counts for."""
        if self.extract_client_id is not None:
            try:
                key = self.extract_client_id(context)
            except Exception as error:
                logger.error(f"extract_client_id failed ({error}); counting the peer")
                key = None
            if key:
                return str(key), str(key)
        values = _metadata_getter(context)
        return None, self.guard.client_ip(parse_peer(context.peer()), values)

    def _violation(self, info: Dict[str, Any]) -> None:
        if self.on_violation is None:
            return
        try:
            self.on_violation(info)
        except Exception as error:
            logger.error(f"on_violation callback error: {error}")

    def _decide(self, method: str, context: Any) -> Tuple[Optional[Refusal], "_Call"]:
        """Checks a call: its refusal (or None), and the call's bookkeeping (the release of
        its concurrency slot, its stream's key and rule)."""
        key, client = self._client(context)
        method_key = self._method_key(method)
        limits = self.method_limits.get(method_key, self.limits) if method_key else self.limits
        rule = f"grpc_method_{method_key}" if method_key else "grpc_requests"
        stream_rule = f"grpc_method_{method_key}_stream" if method_key else "grpc_stream_messages"
        call = _Call(self, client, f"{client}#{next(self._streams)}", stream_rule)
        decision = self.guard.decide(
            "POST", method, peer=parse_peer(context.peer()),
            header_values=_metadata_getter(context), key=key, rules=[rule])
        if decision.rejection is not None:
            refusal = _refusal(decision)
            logger.warning(f"gRPC call denied: {method} from {client} - {refusal[1]}")
            self._violation({"type": "rate_limit", "client_id": client, "method": method,
                             "retry_after": getattr(decision.status, "retry_after", 0)})
            return refusal, call
        if not self._concurrency.acquire(client, limits.concurrent_requests):
            message = f"Concurrent request limit exceeded. Max: {limits.concurrent_requests}"
            self._violation({"type": "concurrent_requests", "client_id": client,
                             "method": method, "limit": limits.concurrent_requests})
            metadata = [("grpc-retry-pushback-ms", "100"),
                        ("grpc-status-details-bin",
                         status_details(StatusCode.RESOURCE_EXHAUSTED, message, 0.1))]
            return (StatusCode.RESOURCE_EXHAUSTED, message, metadata), call
        call.held = True
        return None, call

    def _admit(self, method: str, context: Any) -> "_Call":
        """`_decide`, aborting the (sync) context when refused."""
        refusal, call = self._decide(method, context)
        if refusal is not None:
            code, message, metadata = refusal
            if metadata:
                context.set_trailing_metadata(tuple(metadata))
            context.abort(code, message)
        return call

    def _over(self, stream: str, rule: str) -> Optional[str]:
        """Counts one message of `stream`: why it is refused, or None."""
        status = self.limiter.check_rate_limit(stream, rule)
        if status.allowed:
            return None
        return f"Stream message rate limit exceeded: rule {rule} allows {status.limit} per 60s"

    def _metered(self, messages: Iterable[Any], stream: str, rule: str, context: Any):
        for message in messages:
            over = self._over(stream, rule)
            if over is not None:
                context.abort(StatusCode.RESOURCE_EXHAUSTED, over)
            yield message

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method or ""
        interceptor = self
        kind = (handler.request_streaming, handler.response_streaming)

        if kind == (False, False):
            def unary_unary(request, context):
                call = interceptor._admit(method, context)
                try:
                    return handler.unary_unary(request, context)
                finally:
                    call.release()

            return _rebuilt(handler, unary_unary)

        if kind == (False, True):
            def unary_stream(request, context):
                call = interceptor._admit(method, context)
                try:
                    yield from interceptor._metered(
                        handler.unary_stream(request, context), call.stream, call.rule, context)
                finally:
                    call.release()

            return _rebuilt(handler, unary_stream)

        if kind == (True, False):
            def stream_unary(requests, context):
                call = interceptor._admit(method, context)
                try:
                    return handler.stream_unary(
                        interceptor._metered(requests, call.stream, call.rule, context), context)
                finally:
                    call.release()

            return _rebuilt(handler, stream_unary)

        def stream_stream(requests, context):
            call = interceptor._admit(method, context)
            try:
                metered = interceptor._metered(requests, call.stream + "<", call.rule, context)
                yield from interceptor._metered(
                    handler.stream_stream(metered, context), call.stream + ">", call.rule,
                    context)
            finally:
                call.release()

        return _rebuilt(handler, stream_stream)

    def get_statistics(self) -> Dict[str, Any]:
        """Get rate limiting statistics"""
        held = self._concurrency.held
        return {
            "limits": {
                "requests_per_minute": self.limits.requests_per_minute,
                "concurrent_requests": self.limits.concurrent_requests,
                "stream_messages_per_minute": self.limits.stream_messages_per_minute,
            },
            "current_concurrent_requests": sum(held.values()),
            "unique_clients": len(held),
            "metrics": self.limiter.get_metrics(),
        }


def _default_client(context: Any) -> str:
    """The peer's address (IPv6 per /64 is left to the limiter's rules: the whole address)."""
    return parse_peer(context.peer()) or "unknown"


def grpc_ratelimit(
    limit: int, window: int = 60, scope: str = "ip", extract_client_id: Optional[Callable] = None
):
    """
    Decorator for rate limiting specific gRPC servicer methods (unary or streaming).

    Args:
        limit: Maximum requests allowed
        window: Time window in seconds
        scope: Rate limit scope ('ip', 'user', etc.)
        extract_client_id: Custom function to extract client ID from the context
    """
    limiter = RateThrottleCore()
    rule_name = f"grpc_method_{limit}_{window}"
    limiter.add_rule(RateThrottleRule(name=rule_name, limit=limit, window=window, scope=scope))
    extract = extract_client_id or _default_client

    def check(context: Any) -> None:
        status = limiter.check_rate_limit(str(extract(context)), rule_name)
        if not status.allowed:
            message = (f"Rate limit exceeded for this method. "
                       f"Retry after {status.retry_after} seconds.")
            context.set_trailing_metadata((
                ("x-ratelimit-limit", str(status.limit)),
                ("x-ratelimit-remaining", str(status.remaining)),
                ("retry-after", str(status.retry_after)),
                ("grpc-retry-pushback-ms", str(max(1, status.retry_after) * 1000)),
                ("grpc-status-details-bin",
                 status_details(StatusCode.RESOURCE_EXHAUSTED, message,
                                float(max(1, status.retry_after)))),
            ))
            context.abort(StatusCode.RESOURCE_EXHAUSTED, message)

    def decorator(func):
        @wraps(func)
        def wrapper(self, request_or_iterator, context):
            check(context)
            return func(self, request_or_iterator, context)

        return wrapper

    return decorator


def extract_user_id_from_metadata(metadata_key: str = "user-id"):
    """
    A client ID extractor reading `metadata_key` from the call's metadata, falling back to the
    peer's address.
    """

    def extractor(context) -> str:
        for key, value in context.invocation_metadata() or ():
            if key == metadata_key and value:
                return str(value)
        return _default_client(context)

    return extractor


class ServiceRateLimiter:
    """
    Rate limiter for specific gRPC services: call `check_rate_limit(client_id, context)` in
    the service's methods.
    """

    def __init__(self, limits: GRPCLimits, service_name: Optional[str] = None):
        self.limits = limits
        self.service_name = service_name or "unknown"
        self.limiter = RateThrottleCore()
        self.limiter.add_rule(RateThrottleRule(
            name=f"grpc_service_{self.service_name}", limit=limits.requests_per_minute,
            window=60))

    def check_rate_limit(self, client_id: str, context) -> bool:
        """True if the call is allowed; otherwise aborts the context (and returns False
        where aborting does not raise)."""
        rule_name = f"grpc_service_{self.service_name}"
        status = self.limiter.check_rate_limit(client_id, rule_name)
        if not status.allowed:
            message = (f"Rate limit exceeded for {self.service_name}. "
                       f"Retry after {status.retry_after} seconds.")
            context.set_trailing_metadata((
                ("x-ratelimit-limit", str(status.limit)),
                ("x-ratelimit-remaining", str(status.remaining)),
                ("retry-after", str(status.retry_after)),
            ))
            context.abort(StatusCode.RESOURCE_EXHAUSTED, message)
            return False
        return True


class AsyncGRPCRateLimitInterceptor(grpc.aio.ServerInterceptor):
    """
    `GRPCRateLimitInterceptor` for `grpc.aio` servers (new here: 1.4.0 had none): the same
    arguments and checks, with async handlers and async message streams.

        server = grpc.aio.server(interceptors=[AsyncGRPCRateLimitInterceptor(GRPCLimits())])
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        #: The sync interceptor whose checks this one awaits around.
        self.checks = GRPCRateLimitInterceptor(*args, **kwargs)
        self.limiter = self.checks.limiter
        self.limits = self.checks.limits

    def get_statistics(self) -> Dict[str, Any]:
        """Get rate limiting statistics"""
        return self.checks.get_statistics()

    async def _admit(self, method: str, context: Any) -> _Call:
        refusal, call = self.checks._decide(method, context)
        if refusal is not None:
            code, message, metadata = refusal
            if metadata:
                context.set_trailing_metadata(tuple(metadata))
            await context.abort(code, message)
        return call

    async def _metered(self, messages: Any, stream: str, rule: str, context: Any):
        async for message in _aiter(messages):
            over = self.checks._over(stream, rule)
            if over is not None:
                await context.abort(StatusCode.RESOURCE_EXHAUSTED, over)
            yield message

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method or ""
        this = self
        kind = (handler.request_streaming, handler.response_streaming)

        if kind == (False, False):
            async def unary_unary(request, context):
                call = await this._admit(method, context)
                try:
                    return await handler.unary_unary(request, context)
                finally:
                    call.release()

            return _rebuilt(handler, unary_unary)

        if kind == (False, True):
            async def unary_stream(request, context):
                call = await this._admit(method, context)
                try:
                    async for message in this._metered(
                            handler.unary_stream(request, context), call.stream, call.rule,
                            context):
                        yield message
                finally:
                    call.release()

            return _rebuilt(handler, unary_stream)

        if kind == (True, False):
            async def stream_unary(requests, context):
                call = await this._admit(method, context)
                try:
                    return await handler.stream_unary(
                        this._metered(requests, call.stream, call.rule, context), context)
                finally:
                    call.release()

            return _rebuilt(handler, stream_unary)

        async def stream_stream(requests, context):
            call = await this._admit(method, context)
            try:
                metered = this._metered(requests, call.stream + "<", call.rule, context)
                async for message in this._metered(
                        handler.stream_stream(metered, context), call.stream + ">", call.rule,
                        context):
                    yield message
            finally:
                call.release()

        return _rebuilt(handler, stream_stream)


async def _aiter(messages: Any):
    """An async iterator over `messages` (an async iterable, or a plain one a sync handler
    returned)."""
    if hasattr(messages, "__aiter__"):
        async for message in messages:
            yield message
    else:
        for message in messages:
            yield message
