"""The FastAPI adapter (re-exported by `ratethrottle.middleware`)."""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Iterable, List, Optional, Union

from ._asgi import StarletteRateLimitMiddleware
from ._http import (
    Guard,
    _closer_to_limit,
    _content_type,
    _without_content_type,
    header_getter,
    is_adaptive,
    proxy_list,
    rule_from_limit,
)
from .core import RateThrottleCore
from .storage_backend import StorageBackend


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
        request_name, response_name = takes[Request], takes[Response]
        request = kwargs[request_name] if request_name else kwargs.pop("_ratethrottle_request")
        response = kwargs[response_name] if response_name else kwargs.pop("_ratethrottle_response")
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
        ddos: Any = None,
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
            ddos=ddos,
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
        if is_adaptive(limit):
            # An AdaptiveRateLimiter: each client at its learned limit.
            return self._dependency([self.guard.add_rule(limit)], key_func or self.key_func)
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
            metadata = {"path": request.url.path, "method": request.method, "client": ip}
            decision = await self.guard.adecide(
                request.method,
                request.url.path,
                route=getattr(request.scope.get("route"), "path", None),
                peer=request.client.host if request.client else None,
                header_values=header_getter(request.headers),
                key=override,
                metadata=metadata,
                rules=names,
            )
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
