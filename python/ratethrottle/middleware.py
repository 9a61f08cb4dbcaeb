"""
Framework adapters: Flask, FastAPI, Django, Starlette (ASGI) and WSGI, one module each
(`ratethrottle._flask`, `_fastapi`, `_django`, `_asgi`, `_wsgi`), all importable from here.

They behave as the Rust HTTP middleware: the client key is the TCP peer unless the peer is a
trusted proxy (then `X-Forwarded-For` is read from the right); a refused request gets 429 with
`Retry-After`, `X-RateLimit-*` and IETF `RateLimit-Policy`/`RateLimit` headers and an RFC 9457
JSON body (403 for a blacklisted client); allowed responses carry the rate-limit headers.
Each framework is imported only when its adapter is used.
"""

from ._asgi import StarletteRateLimitMiddleware
from ._django import DjangoRateLimitMiddleware, django_ratelimit
from ._fastapi import FastAPIRateLimiter, RateLimitRejected
from ._flask import FlaskRateLimiter
from ._wsgi import WSGIRateLimitMiddleware

__all__ = [
    "DjangoRateLimitMiddleware",
    "FastAPIRateLimiter",
    "FlaskRateLimiter",
    "RateLimitRejected",
    "StarletteRateLimitMiddleware",
    "WSGIRateLimitMiddleware",
    "django_ratelimit",
]
