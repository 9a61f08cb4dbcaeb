"""
RateThrottle - GraphQL rate limiting: operation rates, complexity, depth and field limits.

The original's API (`GraphQLLimits`, `ComplexityAnalyzer`, `DepthAnalyzer`,
`GraphQLRateLimiter`, `AriadneRateLimiter`) with the analysis in Rust (crate
`ratethrottle-graphql`), on the query text or on a graphql-core document (its source text).
graphql-core (`pip install ratethrottle[graphql]`) is imported only to build `GraphQLError`s.

Different from 1.4.0, on purpose:

- Fragments are priced as what they expand to (1.4.0 priced each spread a flat 10 × depth, so
  `{ ...Big }` hid any amount of work), each named fragment once, so fan-out attacks cost
  linear time. Cycles and unknown fragments are refused (`COMPLEXITY_LIMIT_EXCEEDED` naming
  the fault); the depth follows fragments too.
- Nested list multipliers compound (`a(first: 10) { b(first: 10) { c } }`: c counts 100
  times; 1.4.0 multiplied by the nearest list only), each capped at 1,000; `$variables` give
  list sizes (1.4.0 ignored them).
- A query is analysed once per operation, also under Ariadne's middleware (1.4.0 ran its
  check in every resolver: a query of 50 fields counted 50 operations).
- `queries_per_minute` applies (1.4.0 looked up a rule "graphql_querys" it never created, and
  refused every query as rate limited).
- `AriadneRateLimiter` runs: graphql-core calls a middleware object's `resolve` method, which
  1.4.0's lacked (it had only `__call__`, so it never ran).
- The complexity error's message gives the limit (1.4.0 printed "{self.limits.max_complexity}"
  literally). Callbacks that raise are logged.
- Objects that are not GraphQL documents (test doubles) fail open, logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from ._native import NativeGraphQL
from .core import RateThrottleCore, RateThrottleRule
from .helpers import report_violation

logger = logging.getLogger(__name__)


@dataclass
class GraphQLLimits:
    """
    Configuration for GraphQL rate limits

    Args:
        queries_per_minute: Max queries per minute per client
        mutations_per_minute: Max mutations per minute per client
        subscriptions_per_minute: Max subscriptions per minute per client
        max_complexity: Max query complexity score
        max_depth: Max query depth
        field_limits: Per-field rate limits (calls per minute by field name)
    """

    queries_per_minute: int = 1000
    mutations_per_minute: int = 100
    subscriptions_per_minute: int = 50
    max_complexity: int = 1000
    max_depth: int = 15
    field_limits: Optional[Dict[str, int]] = None


def query_text(document: Any) -> Optional[str]:
    """The GraphQL text of `document`: a string as it is, a graphql-core `DocumentNode` by its
    source (or printed when it has none); `None` for anything else."""
    if isinstance(document, str):
        return document
    if type(document).__name__ != "DocumentNode":
        return None
    loc = getattr(document, "loc", None)
    source = getattr(loc, "source", None)
    body = getattr(source, "body", None)
    if isinstance(body, str):
        return body
    from graphql import print_ast

    return print_ast(document)


#: Analyses kept per analyser: servers see the same queries again and again.
_CACHE_SIZE = 512

Analysis = Tuple[str, int, int, List[str]]

#: The analysers by pricing (see `_analyses_for`).
_SHARED: Dict[Any, "_Analyses"] = {}


def _analyses_for(default_list_size: int = 10, field_costs: Optional[Dict[str, int]] = None,
                  ) -> "_Analyses":
    """The analyser of this pricing, shared: a `ComplexityAnalyzer` and a `DepthAnalyzer` of
    one pricing analyse a document once between them."""
    key = (default_list_size, tuple(sorted((field_costs or {}).items())))
    analyses = _SHARED.get(key)
    if analyses is None:
        if len(_SHARED) >= 64:
            del _SHARED[next(iter(_SHARED))]
        analyses = _SHARED[key] = _Analyses(NativeGraphQL(default_list_size, dict(field_costs or {})))
    return analyses


class _Analyses:
    """An analyser and its most recent analyses, by query text, operation name and the
    integer variables (the only ones a cost depends on)."""

    def __init__(self, native: NativeGraphQL) -> None:
        self.native = native
        self.cache: Dict[Any, Any] = {}

    def of(self, document: Any, operation_name: Optional[str],
           variables: Optional[Dict] = None) -> Optional[Analysis]:
        """`(kind, cost, depth, fields)`, or `None` (logged) for something that is not a
        document; `ValueError` for a document that cannot be analysed."""
        text = query_text(document)
        if text is None:
            logger.error(f"not a GraphQL document ({type(document).__name__}): not analysed")
            return None
        if not isinstance(variables, dict):
            variables = None
        numbers = None
        if variables:
            numbers = tuple(sorted((k, v) for k, v in variables.items()
                                   if isinstance(v, (int, str)) and isinstance(k, str)))
        key = (text, operation_name, numbers)
        cached = self.cache.get(key)
        if cached is None:
            try:
                cached = self.native.analyze(text, operation_name, variables)
            except ValueError as error:
                cached = error
            if len(self.cache) >= _CACHE_SIZE:
                del self.cache[next(iter(self.cache))]
            self.cache[key] = cached
        if isinstance(cached, ValueError):
            raise cached
        return cached


class ComplexityAnalyzer:
    """
    GraphQL query complexity, as 1.4.0 prices it: each field costs its cost (1, or
    `field_costs[name]`) × its depth × the list multipliers above it × its own (`first`,
    `last`, `limit` or `take`; `default_list_size` for a field with other arguments).
    """

    def __init__(
        self,
        max_complexity: int = 1000,
        default_list_size: int = 10,
        field_costs: Optional[Dict[str, int]] = None,
    ) -> None:
        self.max_complexity = max_complexity
        self.default_list_size = default_list_size
        self.field_costs = field_costs or {}
        self._analyses = _analyses_for(default_list_size, self.field_costs)

    def calculate_complexity(self, document_ast: Any, operation_name: Optional[str] = None) -> int:
        """The complexity of the operation (`max_complexity` when the document cannot be
        analysed, as in 1.4.0; 0 for something that is not a document)."""
        try:
            analysis = self._analyses.of(document_ast, operation_name)
        except ValueError as error:
            logger.error(f"Error calculating complexity: {error}")
            return self.max_complexity
        return 0 if analysis is None else analysis[1]


class DepthAnalyzer:
    """GraphQL query depth: 1 for `{ a }`, fragments followed."""

    def __init__(self, max_depth: int = 15) -> None:
        self.max_depth = max_depth
        self._analyses = _analyses_for()

    def calculate_depth(self, document_ast: Any, operation_name: Optional[str] = None) -> int:
        """The depth of the operation (`max_depth` when the document cannot be analysed, as in
        1.4.0; 0 for something that is not a document)."""
        try:
            analysis = self._analyses.of(document_ast, operation_name)
        except ValueError as error:
            logger.error(f"Error calculating depth: {error}")
            return self.max_depth
        return 0 if analysis is None else analysis[2]


#: The rule of each kind of operation (1.4.0 checked "graphql_querys", a rule it never had,
#: so its query rate never applied).
_OPERATION_RULES = {
    "query": "graphql_queries",
    "mutation": "graphql_mutations",
    "subscription": "graphql_subscriptions",
}


def _graphql_error(message: str, extensions: Dict[str, Any]) -> Any:
    from graphql import GraphQLError

    return GraphQLError(message, extensions=extensions)


class GraphQLRateLimiter:
    """
    GraphQL rate limiting: operation rates per client (`graphql_queries`,
    `graphql_mutations`, `graphql_subscriptions`, per minute), complexity and depth caps, and
    per-field rates (`graphql_field_<name>`), all decided on one analysis of the operation.

    Args:
        limits: Rate limits configuration
        storage: Storage backend (RedisStorage shares the rates across processes)
        extract_client_id: Function to extract client ID from context
        on_violation: Callback for violations (a dict with `type`)
        custom_field_costs: Custom complexity costs per field
    """

    def __init__(
        self,
        limits: Optional[GraphQLLimits] = None,
        storage: Any = None,
        extract_client_id: Optional[Callable] = None,
        on_violation: Optional[Callable] = None,
        custom_field_costs: Optional[Dict[str, int]] = None,
    ) -> None:
        self.limits = limits or GraphQLLimits()
        self.extract_client_id = extract_client_id or self._default_extract_client_id
        self.on_violation = on_violation
        self.custom_field_costs = custom_field_costs or {}
        self.limiter = RateThrottleCore(storage=storage)
        self.storage = self.limiter.storage
        per_minute = [
            ("graphql_queries", self.limits.queries_per_minute),
            ("graphql_mutations", self.limits.mutations_per_minute),
            ("graphql_subscriptions", self.limits.subscriptions_per_minute),
        ]
        for name, limit in per_minute:
            self.limiter.add_rule(RateThrottleRule(name=name, limit=limit, window=60))
        self.complexity_analyzer = ComplexityAnalyzer(
            max_complexity=self.limits.max_complexity, field_costs=self.custom_field_costs
        )
        self.depth_analyzer = DepthAnalyzer(max_depth=self.limits.max_depth)
        #: The limiter of each limited field (one limiter holds all their rules).
        self.field_limiters: Dict[str, RateThrottleCore] = {}
        for field_name, limit in (self.limits.field_limits or {}).items():
            self.limiter.add_rule(
                RateThrottleRule(name=f"graphql_field_{field_name}", limit=limit, window=60)
            )
            self.field_limiters[field_name] = self.limiter
        logger.info(f"GraphQL rate limiter initialized: {self.limits}")

    def _default_extract_client_id(self, context: Any) -> str:
        """The client: the request's address (trusted proxies as `get_client_ip` knows
        them), else `user_<id>`, else "unknown"; `context` may be an object or a dict."""
        def part(name: str) -> Any:
            if isinstance(context, dict):
                return context.get(name)
            return getattr(context, name, None)

        request = part("request")
        if request is not None:
            from .helpers import get_client_ip

            return get_client_ip(request)
        user = part("user")
        if user is not None and getattr(user, "id", None) is not None:
            return f"user_{user.id}"
        return "unknown"

    def _violation(self, info: Dict[str, Any]) -> None:
        report_violation(self.on_violation, info, logger)

    def check_rate_limit(
        self,
        document_ast: Any,
        context: Any,
        operation_name: Optional[str] = None,
        variables: Optional[Dict] = None,
    ) -> Optional[Any]:
        """
        Whether the operation may run: `None` when it may, else a `GraphQLError` whose
        `extensions.code` is `RATE_LIMIT_EXCEEDED`, `COMPLEXITY_LIMIT_EXCEEDED`,
        `DEPTH_LIMIT_EXCEEDED` or `FIELD_RATE_LIMIT_EXCEEDED`.
        """
        try:
            analysis = self.complexity_analyzer._analyses.of(document_ast, operation_name,
                                                             variables)
        except ValueError as error:
            return _graphql_error(
                f"Query cannot be analysed: {error}",
                {"code": "COMPLEXITY_LIMIT_EXCEEDED", "reason": str(error)},
            )
        if analysis is None:
            return None
        kind, complexity, depth, fields = analysis
        try:
            client_id = self.extract_client_id(context)
        except Exception:
            logger.exception("extract_client_id raised; the client counts as 'unknown'")
            client_id = "unknown"
        status = self.limiter.check_rate_limit(client_id, _OPERATION_RULES[kind])
        if not status.allowed:
            logger.warning(f"GraphQL {kind} denied for {client_id} - rate limit exceeded")
            self._violation({"type": "operation_rate", "client_id": client_id,
                             "operation_type": kind, "retry_after": status.retry_after})
            return _graphql_error(
                f"Rate limit exceeded for {kind}. Retry after {status.retry_after} seconds.",
                {"code": "RATE_LIMIT_EXCEEDED", "retry_after": status.retry_after,
                 "retryAfter": status.retry_after, "limit": status.limit,
                 "remaining": status.remaining},
            )
        limit = self.limits.max_complexity
        if complexity > limit:
            logger.warning(f"GraphQL query denied for {client_id} - "
                           f"complexity {complexity} exceeds limit {limit}")
            self._violation({"type": "complexity", "client_id": client_id,
                             "complexity": complexity, "limit": limit})
            return _graphql_error(
                f"Query too complex. Complexity: {complexity}, Limit: {limit}",
                {"code": "COMPLEXITY_LIMIT_EXCEEDED", "complexity": complexity,
                 "max_complexity": limit},
            )
        if depth > self.limits.max_depth:
            logger.warning(f"GraphQL query denied for {client_id} - "
                           f"depth {depth} exceeds limit {self.limits.max_depth}")
            self._violation({"type": "depth", "client_id": client_id, "depth": depth,
                             "limit": self.limits.max_depth})
            return _graphql_error(
                f"Query too deep. Depth: {depth}, Limit: {self.limits.max_depth}",
                {"code": "DEPTH_LIMIT_EXCEEDED", "depth": depth,
                 "max_depth": self.limits.max_depth},
            )
        for field_name in fields:
            if field_name not in self.field_limiters:
                continue
            status = self.limiter.check_rate_limit(client_id, f"graphql_field_{field_name}")
            if not status.allowed:
                logger.warning(f"GraphQL field '{field_name}' denied for {client_id} - "
                               f"field rate limit exceeded")
                self._violation({"type": "field_rate", "client_id": client_id,
                                 "field_name": field_name, "retry_after": status.retry_after})
                return _graphql_error(
                    f"Rate limit exceeded for field '{field_name}'. "
                    f"Retry after {status.retry_after} seconds.",
                    {"code": "FIELD_RATE_LIMIT_EXCEEDED", "field": field_name,
                     "retry_after": status.retry_after, "retryAfter": status.retry_after},
                )
        return None

    def get_statistics(self) -> Dict[str, Any]:
        """Get rate limiting statistics"""
        return {
            "limits": {
                "queries_per_minute": self.limits.queries_per_minute,
                "mutations_per_minute": self.limits.mutations_per_minute,
                "subscriptions_per_minute": self.limits.subscriptions_per_minute,
                "max_complexity": self.limits.max_complexity,
                "max_depth": self.limits.max_depth,
            },
            "metrics": self.limiter.get_metrics(),
        }


class AriadneRateLimiter:
    """
    Ariadne rate limiting, as the original's resolver middleware (`middleware=[limiter]` of
    `graphql_sync`/`graphql` or `GraphQL(..., middleware=...)`), checking each operation once:
    the first resolver of an operation decides, the others reuse the answer.
    """

    def __init__(self, limits: Optional[GraphQLLimits] = None, **kwargs: Any) -> None:
        self.limiter = GraphQLRateLimiter(limits, **kwargs)

    def _decide(self, info: Any) -> Optional[Any]:
        """The operation's answer, from its resolver's `info`."""
        context = info.context
        document = context.get("document") if isinstance(context, dict) else None
        if document is None:
            from graphql.language import DocumentNode

            document = DocumentNode(definitions=(info.operation, *info.fragments.values()))
        name = info.operation.name.value if info.operation.name else None
        return self.limiter.check_rate_limit(
            document, context, name, getattr(info, "variable_values", None))

    def extension(self) -> type:
        """This limiter as an Ariadne extension, for `GraphQL(schema, extensions=[...])` or
        `graphql_sync(schema, data, extensions=[...])`: Ariadne makes one per request and its
        first resolver decides (Ariadne 0.20+; `make_executable_schema` takes no
        middleware, which the original's docs pass it)."""
        return _ariadne_extension(self)

    def __call__(self, next_resolver: Callable, root: Any, info: Any, **kwargs: Any) -> Any:
        context = info.context
        key = (id(info.operation), id(context))
        decided = _decided(context)
        if key not in decided:
            decided[key] = self._decide(info)
        error = decided[key]
        if error:
            raise error
        return next_resolver(root, info, **kwargs)

    #: graphql-core (under Ariadne) calls a middleware object's `resolve`, not the object:
    #: 1.4.0's, which had only `__call__`, never ran.
    resolve = __call__


def _decided(context: Any) -> Dict[Any, Any]:
    """The per-operation answers kept on a request's context."""
    if isinstance(context, dict):
        return context.setdefault("_ratethrottle_graphql", {})
    decided = getattr(context, "_ratethrottle_graphql", None)
    if decided is None:
        decided = {}
        try:
            context._ratethrottle_graphql = decided
        except AttributeError:
            pass
    return decided


class GrapheneRateLimiter(AriadneRateLimiter):
    """
    Graphene rate limiting: a graphql-core middleware deciding each operation once
    (`schema.execute(query, middleware=[GrapheneRateLimiter(limits)])`, or graphene-django's
    `GRAPHENE = {"MIDDLEWARE": [...]}` with an instance).
    """


def _strawberry_extension() -> type:
    from graphql import ExecutionResult
    from strawberry.extensions import SchemaExtension

    class StrawberryRateLimiter(SchemaExtension):
        """
        Strawberry rate limiting: a schema extension deciding each operation once, before it
        runs (`strawberry.Schema(query=Query, extensions=[StrawberryRateLimiter(limits)])`);
        a refused operation is answered with the error, unexecuted.

        Args:
            limits: the `GraphQLLimits` (or give `limiter`, a `GraphQLRateLimiter`)
            limiter: a `GraphQLRateLimiter` to share
            **kwargs: what `GraphQLRateLimiter` takes besides `limits`
        """

        def __init__(self, limits: Optional[GraphQLLimits] = None, *,
                     limiter: Optional[GraphQLRateLimiter] = None,
                     execution_context: Any = None, **kwargs: Any) -> None:
            super().__init__(execution_context=execution_context)
            self.limiter = limiter or GraphQLRateLimiter(limits, **kwargs)

        def on_execute(self) -> Any:
            context = self.execution_context
            document = context.graphql_document or context.query
            if document is not None:
                error = self.limiter.check_rate_limit(
                    document, context.context, context.operation_name, context.variables)
                if error is not None:
                    context.result = ExecutionResult(data=None, errors=[error])
            yield

    return StrawberryRateLimiter


def _ariadne_extension(limiter: "AriadneRateLimiter") -> type:
    from ariadne.types import Extension

    class AriadneRateLimitExtension(Extension):
        """Ariadne's extension API: one instance per request, its first resolver decides."""

        def __init__(self) -> None:
            self.error: Any = None
            self.decided = False

        def resolve(self, next_: Callable, obj: Any, info: Any, **kwargs: Any) -> Any:
            if not self.decided:
                self.decided = True
                self.error = limiter._decide(info)
            if self.error:
                raise self.error
            return next_(obj, info, **kwargs)

    return AriadneRateLimitExtension


def __getattr__(name: str) -> Any:
    # Strawberry is imported only when its extension is asked for.
    if name == "StrawberryRateLimiter":
        extension = _strawberry_extension()
        globals()[name] = extension
        return extension
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
