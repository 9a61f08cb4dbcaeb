"""`ratethrottle.graphQL`: the original's API with the analysis in Rust; 1.4.0 as the oracle
where it is right, and the attacks it missed."""

import pytest

import ratethrottle as rt
from conftest import original_module

graphql = pytest.importorskip("graphql")
from graphql import build_schema, graphql_sync, parse  # noqa: E402


def original():
    return original_module("graphQL")


#: Queries without fragments or nested lists, where 1.4.0's pricing is right.
AGREED = [
    "{ a }",
    "{ a b c }",
    "{ a { b c } }",
    "{ users(first: 5) { name email } }",
    "{ user(id: 1) { name title } }",
    "query Q { a { ... on A { b } } }",
    "mutation { createPost(input: {title: \"t\"}) { id title } }",
    "{ search(limit: 20) { id } viewer { name } }",
]


@pytest.mark.parametrize("query", AGREED)
def test_complexity_and_depth_agree_with_the_original(query):
    oracle = original()
    document = parse(query)
    costs = {"title": 3}
    ours = rt.ComplexityAnalyzer(field_costs=costs).calculate_complexity(document)
    theirs = oracle.ComplexityAnalyzer(field_costs=costs).calculate_complexity(document)
    assert ours == theirs
    assert rt.DepthAnalyzer().calculate_depth(document) == \
        oracle.DepthAnalyzer().calculate_depth(document)
    assert rt.ComplexityAnalyzer().calculate_complexity(query) == \
        oracle.ComplexityAnalyzer().calculate_complexity(document), "text or document alike"


def test_fragments_cannot_hide_work():
    oracle = original()
    fields = " ".join(f"f{i}" for i in range(1000))
    big = parse(f"{{ ...Big }} fragment Big on Query {{ {fields} }}")
    assert rt.ComplexityAnalyzer().calculate_complexity(big) == 1000
    assert oracle.ComplexityAnalyzer().calculate_complexity(big) == 10
    chain = "{ ...F20 } fragment F0 on Query { a }" + "".join(
        f" fragment F{i} on Query {{ ...F{i - 1} ...F{i - 1} }}" for i in range(1, 21))
    assert rt.ComplexityAnalyzer().calculate_complexity(chain) == 2 ** 20
    limiter = rt.GraphQLRateLimiter()
    error = limiter.check_rate_limit(parse(chain), None)
    assert error.extensions["code"] == "COMPLEXITY_LIMIT_EXCEEDED"
    assert error.extensions["complexity"] == 2 ** 20
    assert error.message == f"Query too complex. Complexity: {2 ** 20}, Limit: 1000"


def test_cycles_and_unknown_fragments_are_refused():
    limiter = rt.GraphQLRateLimiter()
    cycle = "{ ...A } fragment A on Query { ...B } fragment B on Query { a ...A }"
    error = limiter.check_rate_limit(cycle, None)
    assert error.extensions["code"] == "COMPLEXITY_LIMIT_EXCEEDED"
    assert "cycle" in error.message
    assert rt.ComplexityAnalyzer(max_complexity=77).calculate_complexity(cycle) == 77
    assert "unknown fragment" in limiter.check_rate_limit("{ ...Nope }", None).message


def test_variables_drive_list_sizes():
    limiter = rt.GraphQLRateLimiter(rt.GraphQLLimits(max_complexity=100))
    query = parse("query Items($n: Int) { items(first: $n) { id } }")
    assert limiter.check_rate_limit(query, None, variables={"n": 30}) is None  # 30 + 60
    error = limiter.check_rate_limit(query, None, variables={"n": 40})  # 40 + 80
    assert error.extensions == {"code": "COMPLEXITY_LIMIT_EXCEEDED", "complexity": 120,
                                "max_complexity": 100}


def test_operation_rates_apply_which_the_original_never_did():
    query = parse("{ a }")
    # 1.4.0 checked a rule it never created, "graphql_querys", and refused every query.
    for module, admitted in ((rt, 2), (original(), 0)):
        limiter = module.GraphQLRateLimiter(module.GraphQLLimits(queries_per_minute=2))
        answers = [limiter.check_rate_limit(query, None) for _ in range(3)]
        assert sum(answer is None for answer in answers) == admitted
    answers_of_ours = rt.GraphQLRateLimiter(rt.GraphQLLimits(mutations_per_minute=1))
    mutation = parse("mutation { create { id } }")
    assert answers_of_ours.check_rate_limit(mutation, None) is None
    error = answers_of_ours.check_rate_limit(mutation, None)
    assert error.message == "Rate limit exceeded for mutation. Retry after 300 seconds."
    assert error.extensions == {"code": "RATE_LIMIT_EXCEEDED", "retry_after": 300,
                                "retryAfter": 300, "limit": 1, "remaining": 0}


def test_field_limits_and_violations():
    seen = []

    def on_violation(info):
        seen.append(info)
        raise RuntimeError("a buggy alert")

    limiter = rt.GraphQLRateLimiter(rt.GraphQLLimits(field_limits={"createPost": 2}),
                                    on_violation=on_violation)
    query = parse("mutation { createPost(title: \"x\") { id } }")
    context = {"request": None, "user": None}
    answers = [limiter.check_rate_limit(query, context) for _ in range(3)]
    assert answers[:2] == [None, None]
    assert answers[2].extensions["code"] == "FIELD_RATE_LIMIT_EXCEEDED"
    assert answers[2].extensions["field"] == "createPost"
    assert seen == [{"type": "field_rate", "client_id": "unknown", "field_name": "createPost",
                     "retry_after": 300}]


def test_objects_that_are_not_documents_fail_open(caplog):
    class Double:
        definitions = []

    limiter = rt.GraphQLRateLimiter(rt.GraphQLLimits(queries_per_minute=1))
    assert limiter.check_rate_limit(Double(), None) is None
    assert limiter.check_rate_limit(Double(), None) is None
    assert "not a GraphQL document" in caplog.text
    assert rt.ComplexityAnalyzer().calculate_complexity(object()) == 0


def test_the_ariadne_middleware_checks_once_per_operation():
    """graphql-core's resolver middleware (what Ariadne's `middleware=` runs): a query of
    five fields counts one operation. (1.4.0's never ran there: graphql-core calls a
    middleware object's `resolve`, which it lacked; had it run, it checked in every resolver.)"""
    schema = build_schema("type Query { a: Int b: Int c: Int d: Int e: Int }")
    root = {name: 1 for name in "abcde"}
    limiter = rt.AriadneRateLimiter(rt.GraphQLLimits(queries_per_minute=2))
    results = [
        graphql_sync(schema, "{ a b c d e }", root_value=root, context_value={},
                     middleware=[limiter])
        for _ in range(3)
    ]
    assert [r.errors for r in results[:2]] == [None, None]
    assert results[0].data == root
    assert results[2].errors[0].extensions["code"] == "RATE_LIMIT_EXCEEDED"


def test_the_configurations_graphql_section_makes_a_limiter(tmp_path):
    path = tmp_path / "rt.yaml"
    path.write_text("graphql:\n  enabled: true\n  queries_per_minute: 2\n  max_depth: 3\n"
                    "  field_costs: {expensive: 40}\n  field_limits: {createPost: 1}\n")
    limiter = rt.ConfigManager(str(path)).create_graphql_limiter()
    assert limiter.limits.queries_per_minute == 2
    assert limiter.check_rate_limit("{ expensive }", None) is None
    assert limiter.complexity_analyzer.calculate_complexity("{ expensive }") == 40
    error = limiter.check_rate_limit("{ a { b { c { d } } } }", None)
    assert error.extensions["code"] == "DEPTH_LIMIT_EXCEEDED"
    error = limiter.check_rate_limit("{ a }", None)
    assert error.extensions["code"] == "RATE_LIMIT_EXCEEDED"
    path.write_text("graphql:\n  enabled: true\n  max_depth: 0\n")
    with pytest.raises(rt.ConfigurationError, match="max_depth"):
        rt.ConfigManager(str(path))


def test_a_strawberry_extension_refuses_before_execution():
    strawberry = pytest.importorskip("strawberry")
    calls = []

    @strawberry.type
    class Query:
        @strawberry.field
        def items(self, first: int) -> list[int]:
            calls.append(first)
            return list(range(first))

    # As in 1.4.0 the operation rate comes first: the refused big query counts too.
    extension = rt.StrawberryRateLimiter(rt.GraphQLLimits(queries_per_minute=3,
                                                          max_complexity=50))
    schema = strawberry.Schema(query=Query, extensions=[extension])
    assert schema.execute_sync("{ items(first: 3) }").data == {"items": [0, 1, 2]}
    too_big = schema.execute_sync("{ items(first: 60) }")
    assert too_big.data is None
    assert too_big.errors[0].extensions["code"] == "COMPLEXITY_LIMIT_EXCEEDED"
    assert schema.execute_sync("{ items(first: 1) }").errors is None
    refused = schema.execute_sync("{ items(first: 1) }")
    assert refused.errors[0].extensions["code"] == "RATE_LIMIT_EXCEEDED"
    assert calls == [3, 1], "refused operations never ran"


def test_a_graphene_middleware_decides_once_per_operation():
    graphene = pytest.importorskip("graphene")

    class Query(graphene.ObjectType):
        a = graphene.Int()
        b = graphene.Int()
        c = graphene.Int()

        def resolve_a(self, info):
            return 1

        def resolve_b(self, info):
            return 2

        def resolve_c(self, info):
            return 3

    schema = graphene.Schema(query=Query)
    middleware = rt.GrapheneRateLimiter(rt.GraphQLLimits(queries_per_minute=2))
    results = [schema.execute("{ a b c }", middleware=[middleware], context_value={})
               for _ in range(3)]
    assert [r.errors for r in results[:2]] == [None, None]
    assert results[0].data == {"a": 1, "b": 2, "c": 3}
    assert results[2].errors[0].extensions["code"] == "RATE_LIMIT_EXCEEDED"


def test_an_ariadne_extension_decides_once_per_operation():
    ariadne = pytest.importorskip("ariadne")
    query = ariadne.QueryType()
    for name in "abcde":
        query.set_field(name, lambda *_: 1)
    schema = ariadne.make_executable_schema(
        "type Query { a: Int b: Int c: Int d: Int e: Int }", query)
    limiter = rt.AriadneRateLimiter(rt.GraphQLLimits(queries_per_minute=2))
    answers = [ariadne.graphql_sync(schema, {"query": "{ a b c d e }"},
                                    extensions=[limiter.extension()])
               for _ in range(3)]
    assert ["errors" in result for _, result in answers] == [False, False, True]
    assert answers[0][1]["data"] == {name: 1 for name in "abcde"}
    assert answers[2][1]["errors"][0]["extensions"]["code"] == "RATE_LIMIT_EXCEEDED"
