"""Each adapter against its real framework: limits, headers, 429/403 bodies, spoofed
X-Forwarded-For ignored, trusted proxies resolved, per-user keys."""

from __future__ import annotations

import json
from wsgiref.util import setup_testing_defaults

import pytest

import ratethrottle as rt
from ratethrottle import RateThrottleRule

PROBLEM_KEYS = ["type", "title", "status", "detail", "rule", "retry_after"]


def assert_429(status_code, headers, body, rule, limit=2):
    assert status_code == 429
    assert headers["content-type"] == "application/problem+json"
    assert headers["retry-after"] == "300"
    assert headers["x-ratelimit-limit"] == str(limit)
    assert headers["x-ratelimit-remaining"] == "0"
    assert headers["ratelimit-policy"] == f'"{rule}";q={limit};w=60'
    problem = json.loads(body)
    assert list(problem) == PROBLEM_KEYS
    assert (problem["status"], problem["title"], problem["rule"], problem["retry_after"]) == (
        429, "Too Many Requests", rule, 300)


def lower(headers):
    return {k.lower(): v for k, v in dict(headers).items()}


# Flask


@pytest.fixture
def flask_app():
    flask = pytest.importorskip("flask")
    app = flask.Flask(__name__)
    limiter = rt.FlaskRateLimiter(app, trusted_proxies=["10.0.0.0/8"])

    @app.route("/data", methods=["GET", "POST"])
    @limiter.limit("2/minute", methods=["GET"])
    def data():
        return {"ok": True}

    @app.route("/me")
    @limiter.limit(2, per=60, key_func=lambda: flask.request.headers.get("X-User", "anon"))
    def me():
        return {"ok": True}

    @app.route("/custom")
    @limiter.limit("1/minute", error_message="slow down")
    def custom():
        return {"ok": True}

    app.limiter = limiter
    return app


def flask_get(client, path, ip="203.0.113.7", **headers):
    return client.get(path, headers=headers, environ_base={"REMOTE_ADDR": ip})


def test_flask_limits_with_headers_and_a_problem_body(flask_app):
    client = flask_app.test_client()
    first = flask_get(client, "/data")
    assert first.status_code == 200
    assert first.headers["X-RateLimit-Remaining"] == "1"
    assert first.headers["RateLimit-Policy"].endswith(";q=2;w=60")
    flask_get(client, "/data")
    denied = flask_get(client, "/data")
    rule = flask_app.limiter.limiter.list_rules()[0]
    assert_429(denied.status_code, lower(denied.headers), denied.data, rule)
    assert flask_get(client, "/data", ip="203.0.113.8").status_code == 200
    assert client.post("/data", environ_base={"REMOTE_ADDR": "203.0.113.7"}).status_code == 200


def test_flask_ignores_spoofed_forwarded_for_and_trusts_its_proxies(flask_app):
    client = flask_app.test_client()
    spoofed = [flask_get(client, "/data", **{"X-Forwarded-For": f"1.2.3.{i}"}).status_code for i in range(3)]
    assert spoofed == [200, 200, 429]
    via_proxy = [
        flask_get(client, "/data", ip="10.0.0.5", **{"X-Forwarded-For": f"9.9.9.9, 198.51.100.{i}"}).status_code
        for i in range(3)
    ]
    assert via_proxy == [200, 200, 200]


def test_flask_per_user_keys_and_custom_message(flask_app):
    client = flask_app.test_client()
    assert [flask_get(client, "/me", **{"X-User": "alice"}).status_code for _ in range(3)] == [200, 200, 429]
    assert flask_get(client, "/me", **{"X-User": "bob"}).status_code == 200
    flask_get(client, "/custom")
    denied = flask_get(client, "/custom")
    assert json.loads(denied.data)["detail"] == "slow down"


def test_flask_blacklisted_clients_get_403(flask_app):
    flask_app.limiter.limiter.add_to_blacklist("203.0.113.66")
    denied = flask_get(flask_app.test_client(), "/data", ip="203.0.113.66")
    assert denied.status_code == 403
    assert json.loads(denied.data)["title"] == "Forbidden"


def test_flask_invalid_limits_are_configuration_errors():
    pytest.importorskip("flask")
    limiter = rt.FlaskRateLimiter()
    with pytest.raises(rt.ConfigurationError, match="fortnight"):
        limiter.limit("100/fortnight")(lambda: None)


# FastAPI


@pytest.fixture
def fastapi_app():
    fastapi = pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    app = fastapi.FastAPI()
    limiter = rt.FastAPIRateLimiter(trusted_proxies=["10.0.0.0/8"])
    limiter.init_app(app)

    @app.get("/data", dependencies=[fastapi.Depends(limiter.limit(2, 60))])
    async def data():
        return {"ok": True}

    @app.get("/me", dependencies=[fastapi.Depends(limiter.limit(
        "2/minute", key_func=lambda request: request.headers.get("x-user", "anon")))])
    async def me():
        return {"ok": True}

    app.state.rt = limiter
    return app


def fastapi_client(app, ip="203.0.113.7"):
    from fastapi.testclient import TestClient

    return TestClient(app, client=(ip, 50000))


def test_fastapi_dependency_limits_with_headers(fastapi_app):
    client = fastapi_client(fastapi_app)
    first = client.get("/data")
    assert first.status_code == 200
    assert first.headers["x-ratelimit-remaining"] == "1"
    client.get("/data")
    denied = client.get("/data", headers={"X-Forwarded-For": "1.2.3.4"})
    rule = fastapi_app.state.rt.limiter.list_rules()[0]
    assert_429(denied.status_code, denied.headers, denied.content, rule)
    assert fastapi_client(fastapi_app, "10.0.0.1").get(
        "/data", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 200


def test_fastapi_per_user_keys(fastapi_app):
    client = fastapi_client(fastapi_app)
    assert [client.get("/me", headers={"x-user": "alice"}).status_code for _ in range(3)] == [200, 200, 429]
    assert client.get("/me", headers={"x-user": "bob"}).status_code == 200


def test_fastapi_middleware_limits_every_request():
    fastapi = pytest.importorskip("fastapi")
    app = fastapi.FastAPI()

    @app.get("/a")
    async def a():
        return {}

    limiter = rt.FastAPIRateLimiter()
    limiter.add_middleware(app, "3/minute")
    client = fastapi_client(app)
    assert [client.get("/a").status_code for _ in range(4)] == [200, 200, 200, 429]


# Starlette / ASGI


def test_starlette_middleware_limits_and_blacklists():
    pytest.importorskip("starlette")
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    core = rt.RateThrottleCore()
    core.add_to_blacklist("203.0.113.66")
    app = Starlette(
        routes=[Route("/", lambda request: PlainTextResponse("ok")),
                Route("/health", lambda request: PlainTextResponse("ok"))],
        middleware=[Middleware(
            rt.StarletteRateLimitMiddleware,
            rules=[RateThrottleRule(name="api", limit=2, window=60)],
            limiter=core,
            exempt_paths=["/health"],
        )],
    )
    client = TestClient(app, client=("203.0.113.7", 1))
    responses = [client.get("/", headers={"X-Forwarded-For": f"1.1.1.{i}"}) for i in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert responses[0].headers["ratelimit"].startswith('"api";r=1;t=')
    assert_429(429, responses[2].headers, responses[2].content, "api")
    assert [client.get("/health").status_code for _ in range(4)] == [200] * 4
    blocked = TestClient(app, client=("203.0.113.66", 1)).get("/")
    assert blocked.status_code == 403


def test_starlette_unknown_rule_names_are_errors():
    with pytest.raises(rt.RuleNotFoundError, match="unknown rule 'nope'"):
        rt.StarletteRateLimitMiddleware(app=None, rules=["nope"])


# WSGI


def wsgi_call(app, ip="203.0.113.7", **headers):
    environ = {"REMOTE_ADDR": ip, **{"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}}
    setup_testing_defaults(environ)
    captured = {}

    def start_response(status, response_headers, exc_info=None):
        captured["status"] = int(status.split()[0])
        captured["headers"] = {k.lower(): v for k, v in response_headers}

    body = b"".join(app(environ, start_response))
    return captured["status"], captured["headers"], body


def hello_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def test_wsgi_middleware_limits_with_headers():
    app = rt.WSGIRateLimitMiddleware(
        hello_app, rules=[RateThrottleRule(name="api", limit=2, window=60)], trusted_proxies=["10.0.0.1"])
    code, headers, _ = wsgi_call(app)
    assert code == 200 and headers["x-ratelimit-remaining"] == "1"
    wsgi_call(app)
    code, headers, body = wsgi_call(app, **{"X-Forwarded-For": "5.5.5.5"})
    assert_429(code, headers, body, "api")
    assert wsgi_call(app, ip="10.0.0.1", **{"X-Forwarded-For": "5.5.5.5"})[0] == 200


def test_wsgi_default_rule_is_the_originals():
    app = rt.WSGIRateLimitMiddleware(hello_app)
    assert app.limiter.get_rule("wsgi_default").limit == 100


# Django


@pytest.fixture(scope="module")
def django_settings():
    pytest.importorskip("django")
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            ALLOWED_HOSTS=["*"],
            ROOT_URLCONF=__name__,
            MIDDLEWARE=["ratethrottle.middleware.DjangoRateLimitMiddleware"],
            RATELIMIT_RULES={"/api/": {"limit": 2, "window": 60}, "/api/login": {"limit": 1, "window": 60}},
            RATELIMIT_TRUSTED_PROXIES=["10.0.0.0/8"],
        )
        django.setup()
    return settings


def _django_views():
    from django.http import JsonResponse

    def view(request):
        return JsonResponse({"ok": True})

    return view


def _urls():
    from django.urls import path

    view = _django_views()
    limited = rt.django_ratelimit(limit=1, window=60)(_django_views())
    return [path("api/data", view), path("api/login", view), path("open", view), path("deco", limited)]


def __getattr__(name):  # ROOT_URLCONF = this module: urlpatterns built lazily
    if name == "urlpatterns":
        return _urls()
    raise AttributeError(name)


def test_django_middleware_uses_the_longest_prefix(django_settings):
    from django.test import Client

    client = Client(REMOTE_ADDR="203.0.113.7")
    assert [client.get("/api/data").status_code for _ in range(3)] == [200, 200, 429]
    assert [client.get("/api/login").status_code for _ in range(2)] == [200, 429]
    assert [client.get("/open").status_code for _ in range(4)] == [200] * 4
    denied = client.get("/api/data", HTTP_X_FORWARDED_FOR="7.7.7.7")
    assert denied.status_code == 429 and denied["Retry-After"] == "300"
    assert json.loads(denied.content)["status"] == 429
    proxied = Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.9")
    ok = proxied.get("/api/data")
    assert ok.status_code == 200 and ok["X-RateLimit-Remaining"] == "1"


def test_django_view_decorator(django_settings):
    from django.test import Client

    client = Client(REMOTE_ADDR="203.0.113.9")
    assert [client.get("/deco").status_code for _ in range(2)] == [200, 429]


def test_get_client_ip_trusts_only_its_proxies():
    class Request:  # Flask/Werkzeug-like
        def __init__(self, peer, **headers):
            self.remote_addr = peer
            self.headers = headers

    spoofed = Request("203.0.113.7", **{"x-forwarded-for": "1.2.3.4"})
    assert rt.get_client_ip(spoofed) == "203.0.113.7"
    proxied = Request("10.0.0.2", **{"x-forwarded-for": "1.2.3.4, 198.51.100.7"})
    assert rt.get_client_ip(proxied, trusted_proxies=["10.0.0.0/8"]) == "198.51.100.7"
    assert rt.get_client_ip(Request(None)) == "0.0.0.0"
    assert rt.get_client_ip(Request("2001:db8:1:2::99")) == "2001:db8:1:2::/64"


def test_stacked_limits_report_the_one_closest_to_its_limit():
    """3/minute and 5/hour on one view: after one request the minute limit has 2 left and
    the hour 4; the headers say 2, whichever decorator runs last (Flask and FastAPI)."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from flask import Flask

    app = Flask(__name__)
    limiter = rt.FlaskRateLimiter(app)

    @app.route("/both")
    @limiter.limit("3/minute")
    @limiter.limit("5/hour")
    def both():
        return "ok"

    @app.route("/reversed")
    @limiter.limit("5/hour")
    @limiter.limit("3/minute")
    def reversed_order():
        return "ok"

    client = app.test_client()
    for path in ("/both", "/reversed"):
        response = client.get(path)
        assert response.headers["X-RateLimit-Remaining"] == "2", path
        assert response.headers["X-RateLimit-Limit"] == "3", path

    api = FastAPI()
    fast = rt.FastAPIRateLimiter()

    @api.get("/both")
    @fast.limit("3/minute")
    @fast.limit("5/hour")
    async def fast_both():
        return {}

    answer = TestClient(api).get("/both")
    assert (answer.headers["x-ratelimit-remaining"], answer.headers["x-ratelimit-limit"]) == ("2", "3")


def test_adapters_decide_as_the_rust_middleware_does():
    """Through the Rust Policy: every rule that applies is asked; after a denial the later
    ones are only looked at (not counted), and the violation reaches the callbacks with the
    request's metadata."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    core = rt.RateThrottleCore()
    core.add_rule(rt.RateThrottleRule(name="strict", limit=1, window=60, block_duration=0))
    core.add_rule(rt.RateThrottleRule(name="loose", limit=5, window=60, block_duration=0))
    seen = []
    core.register_violation_callback(seen.append)
    app = Starlette(routes=[Route("/", lambda request: PlainTextResponse("hi"))])
    app.add_middleware(rt.StarletteRateLimitMiddleware, limiter=core, rules=["strict", "loose"])
    client = TestClient(app)
    assert [client.get("/").status_code for _ in range(3)] == [200, 429, 429]
    # "testclient" is no address: such requests share the 0.0.0.0 key (as before).
    assert core.peek("0.0.0.0", "loose").remaining == 4  # counted once, then only peeked
    assert [(v.rule_name, v.metadata["path"]) for v in seen] == [("strict", "/"), ("strict", "/")]
