"""The Flask adapter (re-exported by `ratethrottle.middleware`)."""

from __future__ import annotations

from functools import wraps
from typing import Any, Callable, Iterable, List, Optional, Union

from ._http import (
    Guard,
    _closer_to_limit,
    _content_type,
    _without_content_type,
    header_getter,
    is_adaptive,
    rule_from_limit,
)
from .core import RateThrottleCore
from .storage_backend import StorageBackend


class FlaskRateLimiter:
    """
    Flask extension: `@limiter.limit("100/minute")` on views.

        app = Flask(__name__)
        limiter = FlaskRateLimiter(app, trusted_proxies=["10.0.0.0/8"])

        @app.route("/api/data")
        @limiter.limit("100/minute")
        def data():
            return {"data": "value"}

    Args:
        app: The Flask app (or call `init_app` later)
        storage: InMemoryStorage (default) or RedisStorage
        key_func: `() -> identifier` for every limit (default: the client IP)
        headers_enabled: Add rate-limit headers to allowed responses
        trusted_proxies: Proxies (addresses or networks) whose X-Forwarded-For is believed
        header_style: "both" (default), "legacy" (X-RateLimit-*) or "ietf"
        limiter: A RateThrottleCore to use instead of a new one

    App config: RATELIMIT_HEADERS_ENABLED, RATELIMIT_TRUSTED_PROXIES, RATELIMIT_HEADER_STYLE.
    """

    def __init__(
        self,
        app: Any = None,
        storage: Optional[StorageBackend] = None,
        key_func: Optional[Callable[[], str]] = None,
        headers_enabled: bool = True,
        *,
        trusted_proxies: Optional[Iterable[str]] = None,
        header_style: str = "both",
        limiter: Optional[RateThrottleCore] = None,
        ddos: Any = None,
    ) -> None:
        self.limiter = limiter or RateThrottleCore(storage=storage)
        self.key_func = key_func
        self.headers_enabled = headers_enabled
        self.guard = Guard(
            self.limiter,
            trusted_proxies=trusted_proxies,
            header_style=header_style,
            headers_enabled=headers_enabled,
            ddos=ddos,
        )
        self.app = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Any) -> None:
        """Reads the app's RATELIMIT_* settings and adds the rate-limit headers to responses."""
        self.app = app
        app.config.setdefault("RATELIMIT_HEADERS_ENABLED", self.headers_enabled)
        self.headers_enabled = bool(app.config["RATELIMIT_HEADERS_ENABLED"])
        proxies = app.config.get("RATELIMIT_TRUSTED_PROXIES")
        style = app.config.get("RATELIMIT_HEADER_STYLE")
        if proxies is not None or style is not None:
            self.guard = Guard(
                self.limiter,
                self.guard.rules,
                trusted_proxies=proxies or (),
                header_style=style or self.guard.header_style,
                headers_enabled=self.headers_enabled,
            )
        self.guard.headers_enabled = self.headers_enabled
        app.after_request(self._add_headers)

    def _add_headers(self, response: Any) -> Any:
        from flask import g

        for name, value in getattr(g, "_ratethrottle_headers", ()):
            response.headers[name] = value
        return response

    def client_ip(self) -> str:
        """The current request's client key (peer, or forwarded behind a trusted proxy)."""
        from flask import request

        return self.guard.client_ip(request.remote_addr, header_getter(request.headers))

    def limit(
        self,
        limit: Union[str, int],
        per: int = 60,
        scope: str = "ip",
        key_func: Optional[Callable[[], str]] = None,
        strategy: str = "sliding_counter",
        methods: Optional[List[str]] = None,
        error_message: Optional[str] = None,
        *,
        block_duration: int = 300,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """
        Limits a view: `limit` is `"100/minute"` or a count per `per` seconds. `scope` "user"
        counts per `key_func()` (falling back to the IP); `methods` limits only those
        methods. Raises ConfigurationError for an invalid limit.
        """

        def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
            if is_adaptive(limit):
                # An AdaptiveRateLimiter: each client at its learned limit.
                name = self.guard.add_rule(limit)
            else:
                rule = rule_from_limit(
                    f"flask_{view.__module__}_{view.__name__}_{limit}_{per}",
                    limit,
                    per,
                    scope=scope,
                    strategy=strategy,
                    block_duration=block_duration,
                )
                name = self.guard.add_rule(rule)
            allowed_methods = {m.upper() for m in methods} if methods else None
            key_getter = key_func or self.key_func

            @wraps(view)
            def limited(*args: Any, **kwargs: Any) -> Any:
                from flask import Response, g, request

                if allowed_methods is not None and request.method not in allowed_methods:
                    return view(*args, **kwargs)
                override = key_getter() if key_getter is not None else None
                metadata = {
                    "endpoint": request.endpoint or "unknown",
                    "method": request.method,
                    "path": request.path,
                    "remote_addr": request.remote_addr or "unknown",
                }
                decision = self.guard.decide(
                    request.method,
                    request.path,
                    route=str(request.url_rule) if request.url_rule else None,
                    peer=request.remote_addr,
                    header_values=header_getter(request.headers),
                    key=override,
                    metadata=metadata,
                    rules=[name],
                )
                if decision.rejection is not None:
                    code, headers, body = decision.rejection
                    if error_message is not None and decision.status is not None:
                        code, headers, body = decision.status.rejection(
                            decision.identifier or "", self.guard.header_style, error_message
                        )
                    return Response(body, status=code, headers=_without_content_type(headers),
                                    content_type=_content_type(headers))
                # Stacked limits: the headers speak for the one closest to its limit (kept
                # in the request's environ: `g` may outlive a request in tests).
                earlier = request.environ.get("ratethrottle.status")
                if _closer_to_limit(decision.status, earlier):
                    request.environ["ratethrottle.status"] = decision.status
                    g.ratelimit_status = decision.status
                    g._ratethrottle_headers = decision.headers if self.headers_enabled else []
                return view(*args, **kwargs)

            return limited

        return decorator
