"""
What every framework adapter shares: finding the client's key, checking a request against its
rules, and the headers and rejection responses of the Rust HTTP middleware (429 with
`Retry-After`, `X-RateLimit-*` and IETF `RateLimit` headers and an RFC 9457 JSON body; 403
for a blacklisted client; 503 when Redis is down under `fail_closed`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from ._native import ClientIpResolver, NativePolicy, RateThrottleStatus, parse_rate
from .core import RateThrottleCore, RateThrottleRule
from .storage_backend import StorageBackend
from .exceptions import ConfigurationError, RuleNotFoundError

Headers = List[Tuple[str, str]]

HEADER_STYLES = ("both", "legacy", "ietf")


def is_adaptive(limit: Any) -> bool:
    """Whether `limit` is an `AdaptiveRateLimiter` (adapters accept one where a rate goes)."""
    from .adaptive import AdaptiveRateLimiter

    return isinstance(limit, AdaptiveRateLimiter)


def rule_from_limit(
    name: str,
    limit: Union[int, str],
    window: float,
    *,
    scope: str = "ip",
    strategy: str = "sliding_counter",
    block_duration: float = 300,
) -> RateThrottleRule:
    """A rule from `limit` given as a count (with `window` seconds) or a rate string
    (`"100/minute"`). Raises ConfigurationError naming the mistake."""
    try:
        if isinstance(limit, str):
            count, window = parse_rate(limit)
        else:
            count = limit
        window_value = int(window) if float(window).is_integer() else window
        return RateThrottleRule(
            name=name,
            limit=count,
            window=window_value,  # type: ignore[arg-type]
            scope=scope,
            strategy=strategy,
            block_duration=block_duration,  # type: ignore[arg-type]
        )
    except (ValueError, TypeError) as error:
        raise ConfigurationError(f"Invalid rate limit {limit!r}: {error}") from error
    except ConfigurationError:
        raise
    except Exception as error:  # InvalidRuleError and friends keep their message
        raise ConfigurationError(f"Invalid rate limit {limit!r}: {error}") from error


@dataclass
class Decision:
    """The outcome for one request: the status whose numbers go into the headers, and the
    rejection `(status_code, headers, body)` when the request is refused."""

    status: Optional[RateThrottleStatus] = None
    rejection: Optional[Tuple[int, Headers, str]] = None
    headers: Headers = field(default_factory=list)
    #: The identifier `status` was for.
    identifier: Optional[str] = None


def proxy_list(trusted_proxies: Any) -> List[str]:
    """`trusted_proxies` as a list of strings: one string (`"10.0.0.0/8"`) is one proxy, not
    a sequence of characters; anything else must hold only strings."""
    if trusted_proxies is None:
        return []
    if isinstance(trusted_proxies, str):
        return [trusted_proxies]
    try:
        proxies = list(trusted_proxies)
    except TypeError:
        raise ConfigurationError(
            f"trusted_proxies must be a string or a list of strings, got {trusted_proxies!r}"
        ) from None
    for proxy in proxies:
        if not isinstance(proxy, str):
            raise ConfigurationError(
                f"trusted proxy {proxy!r} is not a string; give addresses or networks such as "
                "'10.0.0.0/8'"
            )
    return proxies


def reason_phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Too Many Requests"


class Guard:
    """
    Checks requests against rules of one limiter with the Rust middleware's own decision
    (`ratethrottle_http::Policy`, through `_native.NativePolicy`): every rule that applies, in
    order; after a denial the later rules are only looked at; the denial, or else the
    admission with the fewest left, speaks in the headers. A request gets the same answer
    through these adapters as through the axum and actix-web middleware.
    """

    def __init__(
        self,
        limiter: RateThrottleCore,
        rules: Sequence[Union[str, RateThrottleRule]] = (),
        *,
        trusted_proxies: Optional[Iterable[str]] = None,
        forwarded_header: str = "x-forwarded-for",
        header_style: str = "both",
        headers_enabled: bool = True,
        ddos: Any = None,
        adaptive: Any = None,
    ) -> None:
        if header_style not in HEADER_STYLES:
            raise ConfigurationError(
                f"Unknown header_style {header_style!r}; expected one of {', '.join(HEADER_STYLES)}"
            )
        self.limiter = limiter
        self.rules: List[str] = []
        self._policies: Dict[Tuple[str, ...], NativePolicy] = {}
        #: An `AdaptiveRateLimiter` deciding its rule (given here, it is checked for every
        #: request; a route can name it instead, e.g. `@limiter.limit(adaptive)`).
        self.adaptive: Any = None
        for rule in rules:
            self.add_rule(rule)
        self.resolver = ClientIpResolver(proxy_list(trusted_proxies), forwarded_header)
        self.header_style = header_style
        self._headers_enabled = headers_enabled
        #: A `DDoSProtection` each request's client is analysed with first (its blocks go on
        #: this limiter's blacklist: 403).
        self.ddos = ddos
        if adaptive is not None:
            self.add_rule(adaptive)

    @property
    def headers_enabled(self) -> bool:
        """Whether admitted responses get the rate-limit headers."""
        return self._headers_enabled

    @headers_enabled.setter
    def headers_enabled(self, enabled: bool) -> None:
        self._headers_enabled = bool(enabled)
        self._policies.clear()

    def add_rule(self, rule: Union[str, RateThrottleRule, Any]) -> str:
        """Checks requests against `rule` too (a RateThrottleRule is added to the limiter; a
        name must name one of its rules; an `AdaptiveRateLimiter` decides its own rule at
        each client's learned limit, on its own storage)."""
        if is_adaptive(rule):
            if self.adaptive is not None and self.adaptive is not rule:
                raise ConfigurationError(
                    "one AdaptiveRateLimiter per limiter: this one already uses another"
                )
            self.adaptive = rule
            name = rule.rule_name
        elif isinstance(rule, RateThrottleRule):
            self.limiter.add_rule(rule)
            name = rule.name
        else:
            name = rule
            if self.limiter.get_rule(name) is None:
                known = ", ".join(self.limiter.list_rules()) or "none"
                raise RuleNotFoundError(f"unknown rule {name!r}; known rules: {known}")
        if name not in self.rules:
            self.rules.append(name)
        self._policies.clear()
        return name

    @property
    def forwarded_header(self) -> str:
        return self.resolver.header

    def client_ip(self, peer: Optional[str], header_values: Callable[[str], List[str]]) -> str:
        """The client's key: `peer`, or the forwarded address behind a trusted proxy."""
        values = header_values(self.resolver.header) if self.resolver.trusts_proxies else []
        return self.resolver.resolve(peer, values)

    def _policy(self, rules: Optional[Sequence[str]]) -> NativePolicy:
        names = tuple(self.rules if rules is None else rules)
        policy = self._policies.get(names)
        if policy is None:
            native_ddos = None if self.ddos is None else self.ddos._native
            native_adaptive = None if self.adaptive is None else self.adaptive._native
            policy = NativePolicy(self.limiter, list(names), self.resolver, self.header_style,
                                  self._headers_enabled, native_ddos, native_adaptive)
            if len(self._policies) < 256:
                self._policies[names] = policy
        return policy

    def _forwarded(self, header_values: Optional[Callable[[str], List[str]]]) -> List[Tuple[str, str]]:
        """The headers the policy reads: the forwarded header behind a trusted proxy, and the
        User-Agent when DDoS protection scores it."""
        if header_values is None:
            return []
        headers = []
        if self.resolver.trusts_proxies:
            name = self.resolver.header
            headers = [(name, value) for value in header_values(name)]
        if self.ddos is not None:
            headers += [("user-agent", value) for value in header_values("user-agent")[:1]]
        return headers

    def decide(
        self,
        method: str,
        path: str,
        *,
        route: Optional[str] = None,
        peer: Optional[str] = None,
        header_values: Optional[Callable[[str], List[str]]] = None,
        user: Optional[str] = None,
        key: Optional[str] = None,
        metadata: Optional[dict] = None,
        rules: Optional[Sequence[str]] = None,
    ) -> Decision:
        """Decides one request (`rules`: these instead of all of the guard's). `key` (a key
        function's answer) replaces the address and the user for IP- and user-scoped rules."""
        if not (self.rules if rules is None else rules):
            return Decision()
        answer = self._policy(rules).decide(
            method, path, route, peer, self._forwarded(header_values), user, key, metadata
        )
        return _decision(answer)

    async def adecide(
        self,
        method: str,
        path: str,
        *,
        route: Optional[str] = None,
        peer: Optional[str] = None,
        header_values: Optional[Callable[[str], List[str]]] = None,
        user: Optional[str] = None,
        key: Optional[str] = None,
        metadata: Optional[dict] = None,
        rules: Optional[Sequence[str]] = None,
    ) -> Decision:
        """`decide` without blocking the event loop."""
        if not (self.rules if rules is None else rules):
            return Decision()
        answer = await self._policy(rules).adecide(
            method, path, route, peer, self._forwarded(header_values), user, key, metadata
        )
        return _decision(answer)


def _decision(answer: Tuple[Any, Any, Any, Any]) -> Decision:
    status, identifier, rejection, headers = answer
    return Decision(status=status, rejection=rejection, headers=list(headers), identifier=identifier)


def header_getter(headers: Any) -> Callable[[str], List[str]]:
    """`name -> values` over a framework's header object (case-insensitive)."""

    def values(name: str) -> List[str]:
        getlist = getattr(headers, "getlist", None) or getattr(headers, "get_all", None)
        if getlist is not None:
            return [str(v) for v in getlist(name) or []]
        value = headers.get(name)
        return [str(value)] if value else []

    return values


def environ_header_getter(environ: Any) -> Callable[[str], List[str]]:
    """`name -> values` over a WSGI environ (or Django's META)."""

    def values(name: str) -> List[str]:
        value = environ.get("HTTP_" + name.upper().replace("-", "_"))
        return [str(value)] if value else []

    return values


def asgi_header_getter(scope: Any) -> Callable[[str], List[str]]:
    """`name -> values` over an ASGI scope's raw headers."""

    def values(name: str) -> List[str]:
        wanted = name.lower().encode("latin-1")
        return [
            value.decode("latin-1")
            for key, value in scope.get("headers") or []
            if key.lower() == wanted
        ]

    return values


def _content_type(headers: Headers) -> str:
    return next((v for k, v in headers if k.lower() == "content-type"), "application/json")


def _without_content_type(headers: Headers) -> Headers:
    return [(k, v) for k, v in headers if k.lower() != "content-type"]


def _closer_to_limit(status: Any, than: Any) -> bool:
    """Whether the allowed `status` should speak for a request rather than `than` (an earlier
    limit's, or None): the one with fewer requests left, as the Rust middleware chooses."""
    if than is None:
        return True
    if status is None:
        return False
    return bool(status.remaining < than.remaining)


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
        """`guard`: the Guard's keyword arguments (`trusted_proxies`, `ddos`, ...)."""
        self.app = app
        self.limiter = limiter or RateThrottleCore(storage=storage)
        self.key_func = key_func
        self.guard = Guard(self.limiter, rules, **guard)


def _merged(headers: List[Any], extra: List[Any]) -> List[Any]:
    """`headers` without the names in `extra`, then `extra` (names compared in lower case)."""
    names = {k.lower() for k, _ in extra}
    return [(k, v) for k, v in headers if k.lower() not in names] + extra
