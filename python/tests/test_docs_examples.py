"""
The Python examples of the original library's documentation, run as written: every
`.. code-block:: python` of a page, in order, in one namespace (a block may use the names of
the blocks before it), with a Redis on a free port standing in for `localhost:6379`.

An example that cannot work as written is listed in ERRATA with the reason (the README's
"Docs errata" section says the same); every other one must run.
"""

import ast
import asyncio
import atexit
import inspect
import os
import re
import socket
import sys
import textwrap
import types
from pathlib import Path

import pytest

from conftest import channels_ready

DOCS = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "ratethrottle-docs"
PAGES = [
    "quickstart.rst",
    "basic_usage.rst",
    "user_guide/storage.rst",
    "user_guide/configuration.rst",
    "frameworks/flask.rst",
    "frameworks/fastapi.rst",
    "frameworks/django.rst",
    "frameworks/starlette.rst",
    "advanced/ddos_protection.rst",
    "advanced/analytics.rst",
    "advanced/adaptive.rst",
    "user_guide/ml_adaptive.rst",
    "protocols/grpc.rst",
    "protocols/websocket.rst",
    "protocols/graphql.rst",
    "advanced/monitor_and_alert.rst",
]

#: (page, block number from 1) -> why it cannot run as written (the README's docs errata).
ERRATA = {
    ("advanced/monitor_and_alert.rst", 1): "limiter, ddos_protection and analytics are never "
                                           "defined on the page",
    ("advanced/monitor_and_alert.rst", 5): "uses block 1's monitor, which block 1 cannot make",
    ("quickstart.rst", 9): "ConfigManager.load_from_file does not exist in 1.4.0 either; "
                           "use ConfigManager('config.yaml')",
    ("basic_usage.rst", 7): "`return` outside a function: a fragment of a request handler",
    ("basic_usage.rst", 12): "list_rules() returns rule names (strings) in 1.4.0 too; "
                             "use get_rule(name) for the rule",
    ("basic_usage.rst", 21): "`return` outside a function: a fragment of a request handler",
    ("user_guide/storage.rst", 6): "needs a TLS Redis on localhost:6380 and certificates at "
                                   "/path/to/ (rediss:// URLs work: see the TLS tests)",
    ("user_guide/storage.rst", 7): "needs Sentinel hosts sentinel1..3 (a client from "
                                   "Sentinel.master_for is followed through its Sentinels)",
    ("user_guide/storage.rst", 8): "needs a Redis Cluster on localhost:7000 (redis-py connects "
                                   "before RedisStorage is reached)",
    ("user_guide/storage.rst", 18): "needs Sentinel hosts sentinel-1..3",
    ("advanced/ddos_protection.rst", 8): "len(stats['blocked_ips']): get_statistics() gives "
                                         "blocked_ips as a count, in 1.4.0 too (the list is "
                                         "export_report()['blocked_ips'] or get_blocked_ips())",
    ("frameworks/starlette.rst", 1): "Starlette.route was removed from Starlette (1.0); "
                                     "use routes=[Route(...)] as the second example does",
    ("advanced/adaptive.rst", 5): "@login_required and current_user: Flask-Login is never set "
                                  "up on the page",
    ("advanced/adaptive.rst", 10): "User and get_current_user are never defined",
    ("advanced/adaptive.rst", 16): "`app` is block 13's FastAPI app (no .route) and "
                                   "strict_limit is never defined",
    ("advanced/adaptive.rst", 17): "`app` is block 13's FastAPI app, which has no .route",
    ("user_guide/ml_adaptive.rst", 4): "pseudo-code of the trust formula (age_score, ... are "
                                       "not defined)",
    ("user_guide/ml_adaptive.rst", 5): "pseudo-code of the limit formula",
    ("user_guide/ml_adaptive.rst", 9): "@app.route with no app defined on the page before it",
    ("user_guide/ml_adaptive.rst", 10): "@app.route with no app defined on the page before it",
    ("user_guide/ml_adaptive.rst", 11): "@app.route with no app defined on the page before it",
    ("user_guide/ml_adaptive.rst", 12): "@app.route with no app defined on the page before it",
    ("user_guide/ml_adaptive.rst", 13): "`limiter` is block 9's new limiter, which never saw "
                                        "user_123: get_user_profile returns None, as "
                                        "documented (in 1.4.0 too)",
    ("user_guide/ml_adaptive.rst", 19): "`logger` is never defined on the page",
    ("user_guide/ml_adaptive.rst", 24): "a fragment: user, request and service_name are not "
                                        "defined",
    ("user_guide/ml_adaptive.rst", 26): "`app` is block 21's FastAPI app: FlaskRateLimiter "
                                        "needs a Flask app",
    ("user_guide/ml_adaptive.rst", 27): "threading and time are never imported on the page",
    ("protocols/grpc.rst", 1): "adds UserServiceImpl before the page defines it (next example), "
                               "then waits for the server's termination forever",
    ("protocols/grpc.rst", 6): "ProductServiceImpl and OrderServiceImpl are never defined",
    ("protocols/grpc.rst", 7): "chat_pb2_grpc is never imported (nor its proto shown)",
    ("protocols/grpc.rst", 10): "the server's GetUser calls get_user_from_db, which the page "
                                "never defines, so the call fails (UNKNOWN)",
    ("protocols/websocket.rst", 15): "a fragment of a handler: result and websocket are not "
                                     "defined",
    ("protocols/graphql.rst", 1): "a fragment: parsed_query and request_context are never "
                                  "defined",
}


#: Errata whose blocks still define names the later blocks use: they run, up to the failure
#: the reason gives (checked), instead of being skipped.
RUN_UNTIL_FAILURE = {
    ("advanced/adaptive.rst", 1): (NameError, "process_request",
                                   "calls process_request() and return_error(), which the page "
                                   "never defines (a template of a handler)"),
    ("protocols/websocket.rst", 1): (NameError, "data",
                                     "checks len(data), and data is never defined"),
    ("protocols/graphql.rst", 2): (TypeError, "middleware",
                                   "passes middleware= to Ariadne's make_executable_schema, "
                                   "which takes no such argument (Ariadne's GraphQL app and "
                                   "graphql_sync take middleware=)"),
    ("protocols/graphql.rst", 5): (TypeError, "middleware",
                                   "passes middleware= to Ariadne's make_executable_schema, "
                                   "which takes no such argument"),
    ("protocols/websocket.rst", 8): (AttributeError, "message_count",
                                     "conn_123 is never registered, so get_connection_info "
                                     "returns None (in 1.4.0 too); time is never imported "
                                     "either"),
}


def python_blocks(text):
    """The `.. code-block:: python` bodies of an .rst page, dedented, in order."""
    blocks = []
    lines = text.splitlines()
    at = 0
    while at < len(lines):
        if re.match(r"\s*\.\. code-block::\s*python\s*$", lines[at]):
            at += 1
            body = []
            while at < len(lines) and (not lines[at].strip() or lines[at].startswith((" ", "\t"))):
                body.append(lines[at])
                at += 1
            blocks.append(textwrap.dedent("\n".join(body)).strip("\n"))
        else:
            at += 1
    return blocks


def cases():
    if not DOCS.exists():
        return []
    return [(page, n) for page in PAGES
            for n in range(1, len(python_blocks((DOCS / page).read_text())) + 1)]


_namespaces = {}
#: page -> [(block, app)]: the apps the page's examples built, to call with a test client.
_apps = {}
#: (page, block) of an app that cannot answer as written -> why.
APP_ERRATA = {
    ("frameworks/flask.rst", 10): "never calls LoginManager().init_app(app), so current_user "
                                  "fails on every request (in 1.4.0 too)",
}


@pytest.fixture(scope="module")
def docs_env(redis_url, tmp_path_factory):
    """Runs the examples in a scratch directory, with the test Redis as localhost:6379. What
    they register with `atexit` (saving a model at shutdown) runs when the examples are done,
    there, and must not fail."""
    workdir = tmp_path_factory.mktemp("docs")
    previous = os.getcwd()
    os.chdir(workdir)
    at_exit = []
    register = atexit.register
    atexit.register = lambda function, *args, **kwargs: at_exit.append((function, args, kwargs)) or function
    # The gRPC page's generated stubs (`user_pb2`, `user_pb2_grpc`), and its servers, stopped
    # when the examples are done.
    sys.path.insert(0, str(STUBS))
    servers = []
    grpc = sys.modules.get("grpc")
    try:
        import grpc  # noqa: F811
    except ImportError:
        grpc = None
    make_server = grpc.server if grpc is not None else None
    if grpc is not None:
        def recorded(*args, **kwargs):
            server = make_server(*args, **kwargs)
            servers.append(server)
            return server

        grpc.server = recorded
    try:
        yield redis_url
        for function, args, kwargs in reversed(at_exit):
            function(*args, **kwargs)
    finally:
        for server in servers:
            server.stop(None)
        if grpc is not None:
            grpc.server = make_server
        sys.path.remove(str(STUBS))
        atexit.register = register
        os.chdir(previous)


#: Hand-written equivalents of what protoc makes of the gRPC page's `user.proto`.
STUBS = Path(__file__).resolve().parent / "docs_stubs"


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


#: The port the gRPC page's servers and clients use instead of 50051.
GRPC_PORT = _free_port()


def localized(source, redis_url):
    """`source` with the documentation's Redis address pointing at the test server, and its
    gRPC port at a free one."""
    source = source.replace("50051", str(GRPC_PORT))
    # Alerts to example.com go to a closed local port instead (no traffic leaves the machine).
    source = source.replace("https://example.com/", "http://127.0.0.1:9/")
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    for host in ("localhost:6379", "redis-server:6379"):
        source = source.replace(host, f"127.0.0.1:{port}")
    source = re.sub(r"port\s*=\s*6379", f"port={port}", source)
    source = re.sub(r"redis\.Redis\(\s*\)", f"redis.Redis(port={port})", source)
    source = re.sub(r"redis\.Redis\(host=['\"]localhost['\"]\)", f"redis.Redis(port={port})", source)
    return source


@pytest.mark.parametrize("page, number", cases())
def test_documented_example_runs(page, number, docs_env):
    if (page, number) in ERRATA:
        pytest.skip(ERRATA[(page, number)])
    blocks = python_blocks((DOCS / page).read_text())
    if page == "protocols/websocket.rst":
        channels_ready()  # its Django Channels consumer needs settings and a channel layer
    namespace = _namespaces.get(page)
    if namespace is None:
        # A real module, so that libraries looking classes up by their module find it
        # (Strawberry does).
        name = "docs_" + re.sub(r"\W", "_", page)
        module = types.ModuleType(name)
        sys.modules[name] = module
        namespace = _namespaces[page] = module.__dict__
    source = localized(blocks[number - 1], docs_env)
    # Top-level `await` (the WebSocket page's first example) runs in an event loop.
    code = compile(source, f"{page} block {number}", "exec",
                   flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    if (page, number) in RUN_UNTIL_FAILURE:
        error, name, _ = RUN_UNTIL_FAILURE[(page, number)]
        with pytest.raises(error, match=name):
            execute(code, namespace)
        return
    execute(code, namespace)
    app = namespace.get("app")
    if app is not None and all(app is not seen for _, seen in _apps.setdefault(page, [])):
        _apps[page].append((number, app))


def execute(code, namespace):
    """Runs a compiled block; one with top-level `await` in an event loop of its own."""
    awaited = eval(code, namespace)
    if inspect.iscoroutine(awaited):
        asyncio.run(awaited)


def run_alone(page, number):
    """The namespace block `number` of `page` leaves, run by itself (for a block complete in
    itself whose globals later blocks of the page rebind)."""
    if not DOCS.exists():
        pytest.skip("the original's docs are not beside the repository")
    block = python_blocks((DOCS / page).read_text())[number - 1]
    namespace = {"__name__": f"docs_alone_{number}"}
    execute(compile(block, f"{page} block {number}", "exec"), namespace)
    return namespace


def test_the_documented_graphene_view_refuses_what_is_over_its_limits(docs_env):
    """The GraphQL page's Graphene view (block 3) over Flask's test client: a query over its
    complexity limit gets 429 with the error. (A query within it fails: the view passes the
    graphene Schema, not its graphql_schema, to graphql-core's execute, and jsonify cannot
    serialise an ExecutionResult; see the errata.)"""
    pytest.importorskip("graphene")
    app = run_alone("protocols/graphql.rst", 3)["app"]
    response = app.test_client().post("/graphql", json={"query": "{ users(first: 900) { id } }"})
    assert response.status_code == 429
    error = response.get_json()["errors"][0]
    assert error["extensions"]["code"] == "COMPLEXITY_LIMIT_EXCEEDED"
    assert error["message"] == "Query too complex. Complexity: 2700, Limit: 1000"


def test_the_documented_websocket_chat_limits_messages(docs_env):
    """The WebSocket page's real-time chat (its example 1, block 9, complete in itself: run
    alone, as later blocks of the page rebind its global `limiter`), over FastAPI's test
    client: 30 messages a minute are broadcast, the 31st gets the warning, and the page's
    size limit (1024) refuses a bigger message."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    app = run_alone("protocols/websocket.rst", 9)["app"]
    with TestClient(app).websocket_connect("/chat") as chat:
        chat.send_text("x" * 1025)
        assert chat.receive_text().startswith("⚠️  Slow down!")
        replies = []
        for i in range(30):
            chat.send_text(f"message {i}")
            replies.append(chat.receive_text())
        assert replies == [f"message {i}" for i in range(30)]
        chat.send_text("one too many")
        assert chat.receive_text() == "⚠️  Slow down! Rate limit exceeded."


@pytest.mark.parametrize("page", [p for p in PAGES if p.startswith("frameworks/") or "adaptive" in p])
def test_the_documented_apps_answer(page, docs_env):
    """Every parameterless GET route of the apps a framework page built answers (with the
    page's limits: a 429 is an answer), through the framework's test client."""
    if page not in _namespaces:
        pytest.skip("run with the page's examples (the whole file)")
    answered = 0
    for block, app in _apps.get(page, []):
        if (page, block) in APP_ERRATA:
            continue
        for path, get in _routes(app):
            for _ in range(3):
                response = get(path)
                assert response.status_code < 500, (page, path, response.status_code)
                answered += 1
    if page != "frameworks/django.rst":
        assert answered > 0, f"no app with GET routes on {page}"


def _routes(app):
    """`(path, get)` for each parameterless GET route of a Flask, FastAPI or Starlette app."""
    try:
        import flask

        if isinstance(app, flask.Flask):
            client = app.test_client()
            return [(r.rule, client.get) for r in app.url_map.iter_rules()
                    if "GET" in r.methods and not r.arguments and r.endpoint != "static"]
    except ImportError:
        pass
    try:
        from starlette.applications import Starlette
        from starlette.testclient import TestClient

        if isinstance(app, Starlette):
            client = TestClient(app, raise_server_exceptions=False)
            return [(r.path, client.get) for r in app.routes
                    if "{" not in getattr(r, "path", "{") and "GET" in (getattr(r, "methods", None) or {"GET"})]
    except ImportError:
        pass
    return []
