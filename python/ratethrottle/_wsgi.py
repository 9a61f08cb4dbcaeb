"""The WSGI adapter (re-exported by `ratethrottle.middleware`)."""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

from ._http import _AppMiddleware, _merged, environ_header_getter, reason_phrase
from .core import RateThrottleCore, RateThrottleRule
from .storage_backend import StorageBackend


class WSGIRateLimitMiddleware(_AppMiddleware):
    """
    WSGI middleware for any WSGI app (default: 100 requests per minute per client).

        app = WSGIRateLimitMiddleware(app, rules=[RateThrottleRule(name="api", limit=10, window=60)])

    Args:
        app: The WSGI app
        storage: InMemoryStorage (default) or RedisStorage
        rules: RateThrottleRules or rule names of `limiter` (default: "wsgi_default", 100/60s)
        key_func: `(environ) -> identifier` (default: the client IP)
        limiter, trusted_proxies, header_style, headers_enabled: as for the other adapters
    """

    def __init__(
        self,
        app: Any,
        storage: Optional[StorageBackend] = None,
        *,
        rules: Optional[Sequence[Union[RateThrottleRule, str]]] = None,
        key_func: Optional[Callable[[Any], str]] = None,
        limiter: Optional[RateThrottleCore] = None,
        trusted_proxies: Optional[Iterable[str]] = None,
        header_style: str = "both",
        headers_enabled: bool = True,
        ddos: Any = None,
    ) -> None:
        if rules is None:
            rules = [RateThrottleRule(name="wsgi_default", limit=100, window=60)]
        self._setup(app, storage, rules, key_func, limiter, trusted_proxies=trusted_proxies,
                    header_style=header_style, headers_enabled=headers_enabled, ddos=ddos)

    def __call__(self, environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/")
        decision = self.guard.decide(
            method,
            path,
            peer=environ.get("REMOTE_ADDR"),
            header_values=environ_header_getter(environ),
            key=self.key_func(environ) if self.key_func is not None else None,
            metadata={"path": path, "method": method},
        )
        if decision.rejection is not None:
            code, headers, body = decision.rejection
            start_response(f"{code} {reason_phrase(code)}", list(headers))
            return [body.encode()]
        if not decision.headers:
            return self.app(environ, start_response)
        extra = list(decision.headers)

        def start_with_headers(status: str, headers: List[Any], exc_info: Any = None) -> Any:
            return start_response(status, _merged(list(headers), extra), exc_info)

        return self.app(environ, start_with_headers)
