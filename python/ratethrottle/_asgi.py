"""The Starlette / ASGI adapter (re-exported by `ratethrottle.middleware`)."""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, Optional, Sequence, Union

from ._http import _AppMiddleware, _merged, asgi_header_getter, rule_from_limit
from .core import RateThrottleCore, RateThrottleRule
from .storage_backend import StorageBackend


class StarletteRateLimitMiddleware(_AppMiddleware):
    """
    ASGI middleware (Starlette, FastAPI, any ASGI app): every HTTP request is checked
    against `rules` in order.

        app.add_middleware(
            StarletteRateLimitMiddleware,
            rules=[RateThrottleRule(name="api", limit=100, window=60)],
            trusted_proxies=["10.0.0.0/8"],
        )

    Args:
        app: The ASGI app
        storage: InMemoryStorage (default) or RedisStorage
        rules: RateThrottleRules (added), or names of rules of `limiter`
        key_func: `(scope) -> identifier` (default: the client IP)
        limiter: A RateThrottleCore to use instead of a new one
        rate_limit: A rate such as "100/minute" for every request (a rule added after `rules`)
        trusted_proxies, header_style, headers_enabled: as for the other adapters
        exempt_paths: Path prefixes not limited (e.g. "/health")
    """

    def __init__(
        self,
        app: Any,
        storage: Optional[StorageBackend] = None,
        rules: Optional[Sequence[Union[RateThrottleRule, str]]] = None,
        key_func: Optional[Callable[[Any], str]] = None,
        *,
        limiter: Optional[RateThrottleCore] = None,
        rate_limit: Optional[str] = None,
        trusted_proxies: Optional[Iterable[str]] = None,
        header_style: str = "both",
        headers_enabled: bool = True,
        exempt_paths: Sequence[str] = (),
        ddos: Any = None,
    ) -> None:
        self.exempt_paths = tuple(exempt_paths)
        rules = list(rules or ())
        if rate_limit is not None:
            rules.append(rule_from_limit(f"asgi_{rate_limit}", rate_limit, 60))
        self._setup(app, storage, rules, key_func, limiter, trusted_proxies=trusted_proxies,
                    header_style=header_style, headers_enabled=headers_enabled, ddos=ddos)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "/")
        if scope["type"] != "http" or not self.guard.rules or path.startswith(self.exempt_paths):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        method = scope.get("method", "GET")
        decision = await self.guard.adecide(
            method,
            path,
            route=getattr(scope.get("route"), "path", None),
            peer=client[0] if client else None,
            header_values=asgi_header_getter(scope),
            key=self.key_func(scope) if self.key_func is not None else None,
            metadata={"path": path, "method": method},
        )
        if decision.rejection is not None:
            code, headers, body = decision.rejection
            await send({
                "type": "http.response.start",
                "status": code,
                "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
            })
            await send({"type": "http.response.body", "body": body.encode()})
            return
        if not decision.headers:
            await self.app(scope, receive, send)
            return
        extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in decision.headers]

        async def send_with_headers(message: Dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": _merged(list(message.get("headers", [])), extra)}
            await send(message)

        await self.app(scope, receive, send_with_headers)
