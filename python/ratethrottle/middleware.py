"""
Framework adapters: Flask, FastAPI, Django, Starlette (ASGI) and WSGI.

They behave as the Rust HTTP middleware: the client key is the TCP peer unless the peer is a
trusted proxy (then `X-Forwarded-For` is read from the right); a refused request gets 429 with
`Retry-After`, `X-RateLimit-*` and IETF `RateLimit-Policy`/`RateLimit` headers and an RFC 9457
JSON body (403 for a blacklisted client); allowed responses carry the rate-limit headers.
Each framework is imported only when its adapter is used.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
from functools import wraps
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

from ._http import (
    Decision,
    Guard,
    Headers,
    asgi_header_getter,
    environ_header_getter,
    header_getter,
    reason_phrase,
    rule_from_limit,
)
from .core import RateThrottleCore, RateThrottleRule
from .exceptions import ConfigurationError
from .helpers import proxy_list
from .storage_backend import RedisStorage, StorageBackend

logger = logging.getLogger(__name__)

__all__ = [
    "DjangoRateLimitMiddleware",
    "FastAPIRateLimiter",
    "FlaskRateLimiter",
    "StarletteRateLimitMiddleware",
    "WSGIRateLimitMiddleware",
    "django_ratelimit",
]


def _content_type(headers: Headers) -> str:
    return next((v for k, v in headers if k.lower() == "content-type"), "application/json")


def _without_content_type(headers: Headers) -> Headers:
    return [(k, v) for k, v in headers if k.lower() != "content-type"]


# Flask


def _closer_to_limit(status: Any, than: Any) -> bool:
    """Whether the allowed `status` should speak for a request rather than `than` (an earlier
    limit's, or None): the one with fewer requests left, as the Rust middleware chooses."""
    if than is None:
        return True
    if status is None:
        return False
    return bool(status.remaining < than.remaining)


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
    ) -> None:
        self.limiter = limiter or RateThrottleCore(storage=storage)
        self.key_func = key_func
        self.headers_enabled = headers_enabled
        self.guard = Guard(
            self.limiter,
            trusted_proxies=trusted_proxies,
            header_style=header_style,
            headers_enabled=headers_enabled,
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
                endpoint = f"{request.method} {request.url_rule or request.path}"
                key = self.guard.keys(self.client_ip(), endpoint, override=override)
                metadata = {
                    "endpoint": request.endpoint or "unknown",
                    "method": request.method,
                    "path": request.path,
                    "remote_addr": request.remote_addr or "unknown",
                }
                decision = self.guard.decide(key, metadata, [name])
                if decision.rejection is not None:
                    code, headers, body = decision.rejection
                    if error_message is not None and decision.status is not None:
                        code, headers, body = decision.status.rejection(
                            key(name), self.guard.header_style, error_message
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


# FastAPI


def _mark_coroutine_function(function: Callable[..., Any]) -> Callable[..., Any]:
    """Marks `function` (which returns an awaitable) as a coroutine function for frameworks
    that check (`inspect.markcoroutinefunction`, or asyncio's marker before Python 3.12)."""
    if hasattr(inspect, "markcoroutinefunction"):
        return inspect.markcoroutinefunction(function)
    import asyncio.coroutines

    function._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]
    return function


def _limited_endpoint(endpoint: Callable[..., Any], check: Callable[..., Any]) -> Callable[..., Any]:
    """`endpoint` with `check(request, response)` awaited first: the request and the response
    are added to what FastAPI injects, and not passed on unless the endpoint takes them."""
    from fastapi import Request, Response
    from starlette.concurrency import run_in_threadpool

    try:
        # Annotations as types: FastAPI would resolve strings in this module, not the endpoint's.
        signature = inspect.signature(endpoint, eval_str=True)
    except (NameError, TypeError):
        signature = inspect.signature(endpoint)
    takes = {
        kind: next((p.name for p in signature.parameters.values() if p.annotation is kind), None)
        for kind in (Request, Response)
    }
    added = [
        inspect.Parameter(f"_ratethrottle_{kind.__name__.lower()}", inspect.Parameter.KEYWORD_ONLY, annotation=kind)
        for kind, name in takes.items()
        if name is None
    ]

    @functools.wraps(endpoint)
    async def limited(*args: Any, **kwargs: Any) -> Any:
        request = kwargs[takes[Request]] if takes[Request] else kwargs.pop("_ratethrottle_request")
        response = kwargs[takes[Response]] if takes[Response] else kwargs.pop("_ratethrottle_response")
        await check(request, response)
        if inspect.iscoroutinefunction(endpoint):
            return await endpoint(*args, **kwargs)
        return await run_in_threadpool(endpoint, *args, **kwargs)

    parameters = list(signature.parameters.values())
    at = next((i for i, p in enumerate(parameters) if p.kind == p.VAR_KEYWORD), len(parameters))
    limited.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*parameters[:at], *added, *parameters[at:]]
    )
    return limited


class FastAPIRateLimiter:
    """
    FastAPI dependency (and middleware) for rate limiting; checks never block the loop.

        app = FastAPI()
        limiter = FastAPIRateLimiter()
        limiter.init_app(app)              # renders 429/403 as the Rust middleware does

        @app.get("/api/data", dependencies=[Depends(limiter.limit(100, 60))])
        async def data():
            return {"data": "value"}

    `limiter.add_middleware(app, "1000/hour")` limits every request instead.
    """

    def __init__(
        self,
        storage: Optional[StorageBackend] = None,
        key_func: Optional[Callable[[Any], str]] = None,
        headers_enabled: bool = True,
        *,
        trusted_proxies: Optional[Iterable[str]] = None,
        header_style: str = "both",
        limiter: Optional[RateThrottleCore] = None,
    ) -> None:
        self.limiter = limiter or RateThrottleCore(storage=storage)
        self.key_func = key_func
        self.headers_enabled = headers_enabled
        self.trusted_proxies = proxy_list(trusted_proxies)
        self.guard = Guard(
            self.limiter,
            trusted_proxies=self.trusted_proxies,
            header_style=header_style,
            headers_enabled=headers_enabled,
        )

    def init_app(self, app: Any) -> None:
        """Renders rejections with the Rust middleware's problem+json body (without it,
        FastAPI wraps the same body in {"detail": ...})."""
        from starlette.responses import Response

        async def handler(request: Any, error: Any) -> Any:
            code, headers, body = error.rejection
            return Response(body, status_code=code, headers=dict(_without_content_type(headers)),
                            media_type=_content_type(headers))

        app.add_exception_handler(RateLimitRejected, handler)

    def limit(
        self,
        limit: Union[int, str],
        window: int = 60,
        strategy: str = "sliding_counter",
        key_func: Optional[Callable[[Any], str]] = None,
        scope: str = "ip",
        *,
        block_duration: int = 300,
    ) -> Callable[..., Any]:
        """A dependency limiting the route to `limit` per `window` seconds (or a rate string
        such as `"100/minute"`). It also decorates an endpoint directly:

            @app.get("/api/data")
            @limiter.limit("100/minute")
            async def get_data(): ...
        """
        rule = rule_from_limit(
            f"fastapi_{limit}_{window}_{strategy}_{scope}",
            limit,
            window,
            scope=scope,
            strategy=strategy,
            block_duration=block_duration,
        )
        return self._dependency([self.guard.add_rule(rule)], key_func or self.key_func)

    def _dependency(
        self, names: List[str], key_getter: Optional[Callable[[Any], str]]
    ) -> Callable[..., Any]:
        """A FastAPI dependency checking the rules `names`, which also works as a decorator of
        an endpoint (`@app.get(...)` over `@limiter.limit("100/minute")`, as the quickstart
        writes it)."""
        from fastapi import Request, Response

        async def check(request: Request, response: Response) -> None:
            ip = self.guard.client_ip(
                request.client.host if request.client else None, header_getter(request.headers)
            )
            override = key_getter(request) if key_getter is not None else None
            route = getattr(request.scope.get("route"), "path", request.url.path)
            key = self.guard.keys(ip, f"{request.method} {route}", override=override)

            metadata = {"path": request.url.path, "method": request.method, "client": ip}
            decision = await self.guard.adecide(key, metadata, names)
            if decision.rejection is not None:
                request.state.ratelimit_status = decision.status
                raise RateLimitRejected(decision.rejection)
            # Several limits on one route: the headers speak for the one closest to its limit.
            if _closer_to_limit(decision.status, getattr(request.state, "ratelimit_status", None)):
                request.state.ratelimit_status = decision.status
                for header, value in decision.headers:
                    response.headers[header] = value

        def dependency(*args: Any, **kwargs: Any) -> Any:
            if len(args) == 1 and not kwargs and callable(args[0]) and not isinstance(args[0], Request):
                return _limited_endpoint(args[0], check)
            return check(*args, **kwargs)

        # FastAPI awaits what a coroutine function returns and injects by the signature.
        dependency.__signature__ = inspect.signature(check).replace(  # type: ignore[attr-defined]
            parameters=[
                inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request),
                inspect.Parameter("response", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Response),
            ],
            return_annotation=None,
        )
        return _mark_coroutine_function(dependency)

    def add_middleware(self, app: Any, limit: Union[int, str], window: int = 60, **rule: Any) -> None:
        """Limits every HTTP request of `app` (an ASGI middleware over this limiter)."""
        rule_obj = rule_from_limit(f"fastapi_app_{limit}_{window}", limit, window, **rule)
        app.add_middleware(
            StarletteRateLimitMiddleware,
            limiter=self.limiter,
            rules=[rule_obj],
            trusted_proxies=self.trusted_proxies,
            header_style=self.guard.header_style,
            headers_enabled=self.headers_enabled,
        )


def _rate_limit_rejected_base() -> type:
    try:
        from starlette.exceptions import HTTPException

        return HTTPException
    except ImportError:  # FastAPI/Starlette not installed: the class is never raised
        return Exception


class RateLimitRejected(_rate_limit_rejected_base()):  # type: ignore[misc]
    """Raised by the FastAPI dependency for a refused request; carries the response."""

    def __init__(self, rejection: Any) -> None:
        import json

        code, headers, body = rejection
        self.rejection = rejection
        super().__init__(status_code=code, detail=json.loads(body), headers=dict(headers))


# Starlette / any ASGI app, and WSGI


class _AppMiddleware:
    """What the ASGI and WSGI middleware share: the wrapped app, the limiter and its guard."""

    def _setup(
        self,
        app: Any,
        storage: Optional[StorageBackend],
        rules: Sequence[Union[RateThrottleRule, str]],
        key_func: Optional[Callable[[Any], str]],
        limiter: Optional[RateThrottleCore],
        **guard: Any,
    ) -> None:
        self.app = app
        self.limiter = limiter or RateThrottleCore(storage=storage)
        self.key_func = key_func
        self.guard = Guard(self.limiter, rules, **guard)

    def _keys(self, request: Any, ip: str, endpoint: str) -> Callable[[str], str]:
        override = self.key_func(request) if self.key_func is not None else None
        return self.guard.keys(ip, endpoint, override=override)


def _merged(headers: List[Any], extra: List[Any]) -> List[Any]:
    """`headers` without the names in `extra`, then `extra` (names compared in lower case)."""
    names = {k.lower() for k, _ in extra}
    return [(k, v) for k, v in headers if k.lower() not in names] + extra


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
    ) -> None:
        self.exempt_paths = tuple(exempt_paths)
        rules = list(rules or ())
        if rate_limit is not None:
            rules.append(rule_from_limit(f"asgi_{rate_limit}", rate_limit, 60))
        self._setup(app, storage, rules, key_func, limiter, trusted_proxies=trusted_proxies,
                    header_style=header_style, headers_enabled=headers_enabled)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "/")
        if scope["type"] != "http" or not self.guard.rules or path.startswith(self.exempt_paths):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        ip = self.guard.client_ip(client[0] if client else None, asgi_header_getter(scope))
        method = scope.get("method", "GET")
        route = getattr(scope.get("route"), "path", path)
        key = self._keys(scope, ip, f"{method} {route}")

        decision = await self.guard.adecide(key, {"path": path, "method": method})
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


# WSGI


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
    ) -> None:
        if rules is None:
            rules = [RateThrottleRule(name="wsgi_default", limit=100, window=60)]
        self._setup(app, storage, rules, key_func, limiter, trusted_proxies=trusted_proxies,
                    header_style=header_style, headers_enabled=headers_enabled)

    def __call__(self, environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        ip = self.guard.client_ip(environ.get("REMOTE_ADDR"), environ_header_getter(environ))
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/")
        key = self._keys(environ, ip, f"{method} {path}")

        decision = self.guard.decide(key, {"path": path, "method": method})
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


# Django


def _django_response(decision: Decision) -> Any:
    from django.http import HttpResponse

    code, headers, body = decision.rejection  # type: ignore[misc]
    response = HttpResponse(body, status=code, content_type=_content_type(headers))
    for name, value in _without_content_type(headers):
        response[name] = value
    return response


def _django_user(request: Any) -> Optional[str]:
    user = getattr(request, "user", None)
    if user is not None and getattr(user, "is_authenticated", False):
        return str(getattr(user, "pk", None) or getattr(user, "id", ""))
    return None


def _django_ip(guard: Guard, request: Any) -> str:
    return guard.client_ip(request.META.get("REMOTE_ADDR"), environ_header_getter(request.META))


def _django_guard(limiter: RateThrottleCore, settings: Any, **overrides: Any) -> Guard:
    return Guard(
        limiter,
        trusted_proxies=overrides.get("trusted_proxies")
        or getattr(settings, "RATELIMIT_TRUSTED_PROXIES", ()),
        header_style=getattr(settings, "RATELIMIT_HEADER_STYLE", "both"),
        headers_enabled=getattr(settings, "RATELIMIT_HEADERS_ENABLED", True),
    )


def _django_storage(settings: Any, storage: Optional[StorageBackend]) -> Optional[StorageBackend]:
    url = getattr(settings, "RATELIMIT_STORAGE_URL", None)
    if storage is None and url:
        return RedisStorage(url)
    return storage


class DjangoRateLimitMiddleware:
    """
    Django middleware: path-prefix rules from settings (the longest matching prefix applies).

        MIDDLEWARE = ["ratethrottle.middleware.DjangoRateLimitMiddleware", ...]
        RATELIMIT_RULES = {
            "/api/": {"limit": 100, "window": 60},
            "/login": {"limit": 5, "window": 300, "scope": "ip", "block_duration": 900},
        }
        RATELIMIT_TRUSTED_PROXIES = ["10.0.0.0/8"]   # optional
        RATELIMIT_STORAGE_URL = "redis://localhost:6379/0"   # optional, else in memory

    Rules with `"scope": "user"` count per authenticated user (falling back to the IP).
    """

    def __init__(self, get_response: Callable[[Any], Any], storage: Optional[StorageBackend] = None) -> None:
        self.get_response = get_response
        self._storage = storage
        self._setup_lock = threading.Lock()
        self._guard: Optional[Guard] = None
        self.prefixes: List[tuple] = []

    @property
    def guard(self) -> Guard:
        """The rules' guard, set up from the Django settings on first use (so the middleware
        can be made before the settings are configured, as the original allows)."""
        if self._guard is None:
            with self._setup_lock:
                if self._guard is None:
                    self._guard = self._setup()
        return self._guard

    @property
    def limiter(self) -> RateThrottleCore:
        """The limiter (set up with the guard)."""
        return self.guard.limiter

    def _setup(self) -> Guard:
        from django.conf import settings

        limiter = RateThrottleCore(storage=_django_storage(settings, self._storage))
        guard = _django_guard(limiter, settings)
        prefixes = []
        for prefix, config in getattr(settings, "RATELIMIT_RULES", {}).items():
            config = dict(config)
            rule = rule_from_limit(
                f"django_{prefix}",
                config.pop("rate", None) or config.pop("limit", 100),
                config.pop("window", 60),
                **config,
            )
            prefixes.append((prefix, guard.add_rule(rule)))
        self.prefixes = sorted(prefixes, key=lambda entry: len(entry[0]), reverse=True)
        return guard

    def _rule_for_path(self, path: str) -> Optional[str]:
        return next((rule for prefix, rule in self.prefixes if path.startswith(prefix)), None)

    def __call__(self, request: Any) -> Any:
        guard = self.guard
        rule = self._rule_for_path(request.path)
        if rule is None:
            return self.get_response(request)
        ip = _django_ip(guard, request)
        user = _django_user(request)
        decision = guard.decide(
            guard.keys(ip, f"{request.method} {request.path}", user=user),
            {"path": request.path, "method": request.method, "user": user},
            [rule],
        )
        request.ratelimit_status = decision.status
        if decision.rejection is not None:
            return _django_response(decision)
        response = self.get_response(request)
        for name, value in decision.headers:
            response[name] = value
        return response


def django_ratelimit(
    limit: Union[int, str],
    window: int = 60,
    key: Union[str, Callable[[Any], str]] = "ip",
    strategy: str = "sliding_counter",
    *,
    block_duration: int = 300,
    limiter: Optional[RateThrottleCore] = None,
    storage: Optional[StorageBackend] = None,
    trusted_proxies: Optional[Iterable[str]] = None,
    scope: Optional[str] = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """
    Django view decorator: `@django_ratelimit(limit=100, window=60)` or
    `@django_ratelimit("5/minute", key="user")`. `key` is "ip", "user" (the authenticated
    user's id, else the IP) or a function of the request; `scope="user"` or `scope="ip"` (as
    the Django guide writes it) is the same as `key`.
    """
    if scope is not None:
        if scope not in ("ip", "user"):
            raise ConfigurationError(f"django_ratelimit scope must be 'ip' or 'user', got {scope!r}")
        key = scope
    setup_lock = threading.Lock()
    guards: List[Guard] = []

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        # Checked now, so a bad rate fails at import; the limiter and the settings it reads
        # wait for the first request (the settings may not be configured yet).
        rule = rule_from_limit(
            f"django_{view.__module__}_{view.__name__}_{limit}_{window}",
            limit,
            window,
            strategy=strategy,
            block_duration=block_duration,
        )

        def guard_of() -> Guard:
            if not guards:
                with setup_lock:
                    if not guards:
                        from django.conf import settings

                        core = limiter or RateThrottleCore(storage=_django_storage(settings, storage))
                        guard = _django_guard(core, settings, trusted_proxies=trusted_proxies)
                        guard.add_rule(rule)
                        guards.append(guard)
            return guards[0]

        @wraps(view)
        def limited(request: Any, *args: Any, **kwargs: Any) -> Any:
            guard = guard_of()
            name = rule.name
            ip = _django_ip(guard, request)
            if callable(key):
                identifier = str(key(request))
            elif key == "user":
                identifier = _django_user(request) or ip
            else:
                identifier = ip
            decision = guard.decide(lambda _: identifier, {"path": request.path}, [name])
            request.ratelimit_status = decision.status
            if decision.rejection is not None:
                return _django_response(decision)
            response = view(request, *args, **kwargs)
            for header, value in decision.headers:
                response[header] = value
            return response

        return limited

    return decorator
