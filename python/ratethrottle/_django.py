"""The Django adapters (re-exported by `ratethrottle.middleware`)."""

from __future__ import annotations

import threading
from functools import wraps
from typing import Any, Callable, Iterable, List, Optional, Union

from ._http import (
    Decision,
    Guard,
    _content_type,
    _without_content_type,
    environ_header_getter,
    is_adaptive,
    rule_from_limit,
)
from .core import RateThrottleCore
from .exceptions import ConfigurationError
from .storage_backend import RedisStorage, StorageBackend


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
        ddos=getattr(settings, "RATELIMIT_DDOS", None),
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
            if is_adaptive(config):
                # An AdaptiveRateLimiter: each client at its learned limit.
                prefixes.append((prefix, guard.add_rule(config)))
                continue
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
        user = _django_user(request)
        decision = guard.decide(
            request.method,
            request.path,
            peer=request.META.get("REMOTE_ADDR"),
            header_values=environ_header_getter(request.META),
            user=user,
            metadata={"path": request.path, "method": request.method, "user": user},
            rules=[rule],
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
            decision = guard.decide(
                request.method,
                request.path,
                peer=request.META.get("REMOTE_ADDR"),
                key=identifier,
                metadata={"path": request.path},
                rules=[name],
            )
            request.ratelimit_status = decision.status
            if decision.rejection is not None:
                return _django_response(decision)
            response = view(request, *args, **kwargs)
            for header, value in decision.headers:
                response[header] = value
            return response

        return limited

    return decorator
