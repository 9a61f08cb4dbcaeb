"""
RateThrottle - WebSocket rate limiting: connections and messages of WebSocket clients.

The original's API (`WebSocketLimits`, `ConnectionInfo`, `WebSocketRateLimiter` and the
FastAPI, Socket.IO and Django Channels adapters) on the Rust engine (crate
`ratethrottle-ws`). The limits are rules of the limiter (`limiter.limiter`): `ws_connections`,
`ws_messages` and, with `bytes_per_minute`, `ws_bandwidth`, each per client, per minute; a
`RedisStorage` shares them across a fleet.

Different from 1.4.0, on purpose:

- `bytes_per_minute` counts bytes: each message costs its size (1.4.0 counted one per message
  and compared what was left with the size). The byte check comes after the message check, as
  in 1.4.0, so a message refused for its bytes has been counted as a message.
- Sizes are bytes: the adapters measure text as UTF-8 (1.4.0 counted characters), and JSON
  messages (`receive_json`'s dicts) by their JSON text (1.4.0 counted 0 in FastAPI).
- Concurrent connections are counted atomically: `check_connection` reserves the client's slot
  and `register_connection` takes it, so concurrent handshakes cannot both take the last slot
  (1.4.0 checked a count that only `register_connection` raised). A reservation never
  registered is given back after 60 seconds. The slots are per process.
- `on_violation` is isolated: what it raises is logged, and the decision stands (in 1.4.0 it
  turned a refusal into `internal_error`, or a refused connection into an exception log).
- A `bytes_per_minute` below `max_message_size` raises `ConfigurationError` (such messages
  could never be sent).

    >>> limiter = WebSocketRateLimiter(WebSocketLimits(messages_per_minute=2))
    >>> import asyncio
    >>> async def demo():
    ...     await limiter.check_connection("10.0.0.1")
    ...     await limiter.register_connection("conn-1", "10.0.0.1")
    ...     return [(await limiter.check_message("conn-1", 10))["reason"] for _ in range(3)]
    >>> asyncio.run(demo())
    ['ok', 'ok', 'rate_limit_exceeded']
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Set, Union

from ._native import ManualClock, NativeWebSocket
from .core import RateThrottleCore, RateThrottleRule
from .helpers import report_violation

logger = logging.getLogger(__name__)


@dataclass
class WebSocketLimits:
    """
    Configuration for WebSocket rate limits

    Args:
        connections_per_minute: Max new connections per minute per client
        messages_per_minute: Max messages per minute per client (over all its connections,
            as 1.4.0 counts them; its docs said per connection)
        bytes_per_minute: Max bytes of messages per minute per client (optional)
        max_concurrent_connections: Max concurrent connections per client
        max_message_size: Max size of individual message in bytes
    """

    connections_per_minute: int = 60
    messages_per_minute: int = 1000
    bytes_per_minute: Optional[int] = None
    max_concurrent_connections: int = 10
    max_message_size: int = 65536  # 64KB


@dataclass
class ConnectionInfo:
    """Information about a WebSocket connection"""

    client_id: str
    connected_at: float
    message_count: int = 0
    bytes_sent: int = 0
    last_message_time: float = field(default_factory=time.time)
    metadata: Dict[str, Any] = field(default_factory=dict)


class WebSocketRateLimiter:
    """
    WebSocket rate limiting: connection rate, concurrent connections, message rate,
    bandwidth (bytes) and message size, per client.

    Args:
        limits: Rate limit configuration (`WebSocketLimits()` by default)
        storage: Storage backend (InMemoryStorage by default; RedisStorage shares the rates
            across processes)
        on_violation: Callback for violations, with a dict whose `type` is
            `concurrent_connections`, `connection_rate`, `message_size`, `message_rate` or
            `bandwidth`
        clock: A `ManualClock` for tests (not in the original)

    Raises:
        ConfigurationError: `bytes_per_minute` below `max_message_size`, or a limit below 1
    """

    def __init__(
        self,
        limits: Optional[WebSocketLimits] = None,
        storage: Any = None,
        on_violation: Optional[Callable] = None,
        *,
        clock: Optional[ManualClock] = None,
    ) -> None:
        self.limits = limits or WebSocketLimits()
        self.on_violation = on_violation
        #: The limiter deciding, with the rules ws_connections, ws_messages, ws_bandwidth.
        self.limiter = RateThrottleCore(storage=storage, clock=clock)
        self.storage = self.limiter.storage
        limits = self.limits
        rules = [("ws_connections", limits.connections_per_minute)]
        rules.append(("ws_messages", limits.messages_per_minute))
        if limits.bytes_per_minute:
            rules.append(("ws_bandwidth", limits.bytes_per_minute))
        for name, limit in rules:
            self.limiter.add_rule(RateThrottleRule(name=name, limit=limit, window=60, scope="ip"))
        self._native = NativeWebSocket(
            self.limiter,
            limits.max_concurrent_connections,
            limits.max_message_size,
            bool(limits.bytes_per_minute),
        )
        self._check_message = self._native.check_message
        self.active_connections: Dict[str, ConnectionInfo] = {}
        self.connections_by_client: Dict[str, Set[str]] = defaultdict(set)
        logger.info(f"WebSocket rate limiter initialized: {self.limits}")

    def _violation(self, info: Dict[str, Any]) -> None:
        report_violation(self.on_violation, info, logger)

    async def check_connection(self, client_id: str) -> bool:
        """
        Whether `client_id` may open a new connection: under its concurrent connections,
        then its connection rate. When it may, a slot is reserved for its next
        `register_connection`.
        """
        kind, current, retry_after = await self._native.check_connection(str(client_id))
        if kind == "ok":
            logger.debug(f"Connection allowed: {client_id}")
            return True
        if kind == "concurrent_connections":
            logger.warning(
                f"Connection denied: {client_id} - "
                f"max concurrent connections reached ({current})"
            )
            self._violation(
                {
                    "type": "concurrent_connections",
                    "client_id": client_id,
                    "current": current,
                    "limit": self.limits.max_concurrent_connections,
                }
            )
        elif kind == "connection_rate":
            logger.warning(
                f"Connection denied: {client_id} - "
                f"connection rate limit exceeded (retry after {retry_after}s)"
            )
            self._violation(
                {"type": "connection_rate", "client_id": client_id, "retry_after": retry_after}
            )
        return False

    async def register_connection(
        self, connection_id: str, client_id: str, metadata: Optional[Dict] = None
    ) -> None:
        """Registers a connection (taking the slot its `check_connection` reserved)."""
        connection_id, client_id = str(connection_id), str(client_id)
        if connection_id in self.active_connections:
            await self.unregister_connection(connection_id)
        self._native.register(connection_id, client_id)
        self.active_connections[connection_id] = ConnectionInfo(
            client_id=client_id, connected_at=time.time(), metadata=metadata or {}
        )
        self.connections_by_client[client_id].add(connection_id)
        logger.info(
            f"Connection registered: {connection_id} from {client_id} "
            f"(total: {len(self.connections_by_client[client_id])})"
        )

    def release_reservation(self, client_id: str) -> None:
        """Gives back the slot `check_connection` reserved for `client_id` when the
        connection will not be registered (its handshake failed; not in the original).
        Unclaimed reservations are given back after 60 seconds anyway."""
        self._native.release(str(client_id))

    async def unregister_connection(self, connection_id: str) -> None:
        """Forgets a connection and gives its slot back."""
        connection_id = str(connection_id)
        self._native.unregister(connection_id)
        info = self.active_connections.pop(connection_id, None)
        if info is None:
            return
        client = self.connections_by_client.get(info.client_id)
        if client is not None:
            client.discard(connection_id)
            if not client:
                del self.connections_by_client[info.client_id]
        logger.info(f"Connection unregistered: {connection_id}")

    async def check_message(self, connection_id: str, message_size: int = 0) -> Dict[str, Any]:
        """
        Whether a message of `message_size` bytes may be processed.

        Returns:
            Dict with `allowed` and `reason`: `ok`, `connection_not_found`,
            `message_too_large` (with `max_size`), `rate_limit_exceeded` (with
            `retry_after`, whole seconds), `bandwidth_exceeded` (with `remaining_bytes`) or
            `internal_error`.
        """
        reason, retry_after, remaining = await self._check_message(connection_id, message_size)
        if reason == "ok":
            info = self.active_connections.get(connection_id)
            if info is not None:
                info.message_count += 1
                info.bytes_sent += message_size
                info.last_message_time = time.time()
            return {"allowed": True, "reason": "ok"}
        return self._refused(connection_id, message_size, reason, retry_after, remaining)

    def _refused(
        self, connection_id: str, size: int, reason: str, retry_after: int, remaining: int
    ) -> Dict[str, Any]:
        if reason in ("connection_not_found", "internal_error"):
            return {"allowed": False, "reason": reason}
        info = self.active_connections.get(connection_id)
        client_id = info.client_id if info is not None else None
        logger.warning(f"Message denied: {connection_id} - {reason}")
        seen = {"connection_id": connection_id, "client_id": client_id}
        if reason == "message_too_large":
            limit = self.limits.max_message_size
            self._violation({"type": "message_size", **seen, "size": size, "limit": limit})
            return {"allowed": False, "reason": reason, "max_size": limit}
        if reason == "bandwidth_exceeded":
            self._violation(
                {"type": "bandwidth", **seen, "message_size": size, "remaining": remaining}
            )
            return {"allowed": False, "reason": reason, "remaining_bytes": remaining}
        self._violation({"type": "message_rate", **seen, "retry_after": retry_after})
        return {"allowed": False, "reason": reason, "retry_after": retry_after}

    def get_connection_info(self, connection_id: str) -> Optional[ConnectionInfo]:
        """Get information about a connection"""
        return self.active_connections.get(connection_id)

    def get_client_connections(self, client_id: str) -> int:
        """Get number of active connections for a client"""
        return len(self.connections_by_client.get(client_id, ()))

    def get_statistics(self) -> Dict[str, Any]:
        """The original's statistics: connections, clients, messages, bytes and limits."""
        connections = self.active_connections.values()
        return {
            "active_connections": len(self.active_connections),
            "unique_clients": len(self.connections_by_client),
            "total_messages": sum(c.message_count for c in connections),
            "total_bytes_sent": sum(c.bytes_sent for c in connections),
            "limits": {
                "connections_per_minute": self.limits.connections_per_minute,
                "messages_per_minute": self.limits.messages_per_minute,
                "bytes_per_minute": self.limits.bytes_per_minute,
                "max_concurrent": self.limits.max_concurrent_connections,
                "max_message_size": self.limits.max_message_size,
            },
        }

    def __repr__(self) -> str:
        return (
            f"WebSocketRateLimiter("
            f"connections={len(self.active_connections)}, "
            f"clients={len(self.connections_by_client)})"
        )


def message_size(message: Any) -> int:
    """A message's size in bytes: text as UTF-8, bytes as they are, anything else as its JSON
    text (or `str()` when it is not JSON-serialisable)."""
    if isinstance(message, str):
        return len(message.encode("utf-8", "surrogatepass"))
    if isinstance(message, (bytes, bytearray, memoryview)):
        return len(message)
    try:
        return len(json.dumps(message).encode())
    except (TypeError, ValueError):
        return len(str(message).encode("utf-8", "surrogatepass"))


# ============================================
# FastAPI WebSocket Integration
# ============================================


class FastAPIWebSocketLimiter:
    """
    FastAPI / Starlette WebSocket rate limiting: `connect` (closes a refused connection with
    1008), `check_message` and `disconnect`.

    Args:
        limits: Rate limit configuration
        get_client_id: Custom function to extract client ID from the websocket (default: the
            peer's host)
    """

    def __init__(
        self, limits: Optional[WebSocketLimits] = None, get_client_id: Optional[Callable] = None
    ) -> None:
        self.limiter = WebSocketRateLimiter(limits)
        self.get_client_id = get_client_id or self._default_get_client_id
        self.websocket_map: Dict[Any, str] = {}

    def _default_get_client_id(self, websocket: Any) -> str:
        return websocket.client.host if websocket.client else "unknown"

    async def connect(self, websocket: Any, client_id: Optional[str] = None) -> bool:
        """Accepts the websocket when its client is within its limits; closes it with 1008
        otherwise. Returns whether it was accepted."""
        if client_id is None:
            client_id = self.get_client_id(websocket)
        if not await self.limiter.check_connection(client_id):
            await websocket.close(code=1008, reason="Rate limit exceeded")
            return False
        try:
            await websocket.accept()
        except BaseException:
            self.limiter.release_reservation(client_id)
            raise
        connection_id = f"ws_{id(websocket)}"
        await self.limiter.register_connection(connection_id, client_id)
        self.websocket_map[websocket] = connection_id
        return True

    async def check_message(self, websocket: Any, message: Union[str, bytes, Any]) -> bool:
        """Whether `message` (text, bytes, or a JSON value) may be processed."""
        connection_id = self.websocket_map.get(websocket)
        if not connection_id:
            return False
        result = await self.limiter.check_message(connection_id, message_size(message))
        return bool(result["allowed"])

    async def disconnect(self, websocket: Any) -> None:
        """Forgets the websocket's connection."""
        connection_id = self.websocket_map.pop(websocket, None)
        if connection_id:
            await self.limiter.unregister_connection(connection_id)


# ============================================
# Socket.IO Integration
# ============================================


class SocketIOLimiter:
    """python-socketio rate limiting: `on_connect` (return its answer from the `connect`
    handler), `check_message` and `on_disconnect`."""

    def __init__(self, limits: Optional[WebSocketLimits] = None) -> None:
        self.limiter = WebSocketRateLimiter(limits)
        self.sid_to_client: Dict[str, str] = {}

    async def on_connect(self, sid: str, client_id: str) -> bool:
        """Whether the connection `sid` of `client_id` is accepted (registered when it is)."""
        if not await self.limiter.check_connection(client_id):
            return False
        await self.limiter.register_connection(sid, client_id)
        self.sid_to_client[sid] = client_id
        return True

    async def check_message(self, sid: str, data: Any) -> bool:
        """Whether an event's `data` may be processed (sized as its JSON text)."""
        result = await self.limiter.check_message(sid, message_size(data))
        return bool(result["allowed"])

    async def on_disconnect(self, sid: str) -> None:
        """Forgets the connection `sid`."""
        await self.limiter.unregister_connection(sid)
        self.sid_to_client.pop(sid, None)


# ============================================
# Django Channels Integration
# ============================================


class ChannelsRateLimiter:
    """Django Channels rate limiting: for a consumer's `connect`, `receive` and `disconnect`."""

    def __init__(self, limits: Optional[WebSocketLimits] = None) -> None:
        self.limiter = WebSocketRateLimiter(limits)

    async def check_connection(self, client_id: str) -> bool:
        """Check if connection is allowed"""
        return await self.limiter.check_connection(client_id)

    async def register_connection(
        self, channel_name: str, client_id: str, metadata: Optional[Dict] = None
    ) -> None:
        """Register a new connection"""
        await self.limiter.register_connection(channel_name, client_id, metadata)

    async def unregister_connection(self, channel_name: str) -> None:
        """Unregister a connection"""
        await self.limiter.unregister_connection(channel_name)

    async def check_message(self, channel_name: str, message: Union[str, bytes, dict]) -> bool:
        """Check if message is allowed"""
        result = await self.limiter.check_message(channel_name, message_size(message))
        return bool(result["allowed"])
