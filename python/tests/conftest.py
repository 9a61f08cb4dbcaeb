"""Shared fixtures: a limiter on a hand-set clock, and a private redis-server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

import ratethrottle as rt

START = 1_700_000_040  # a whole minute, so fixed windows start here


@pytest.fixture
def clock() -> rt.ManualClock:
    return rt.ManualClock(START)


@pytest.fixture
def core(clock: rt.ManualClock) -> rt.RateThrottleCore:
    return rt.RateThrottleCore(clock=clock)


_next_port = 20_000 + (os.getpid() * 7_919) % 6_000


def _free_port() -> int:
    """A free port below the range the system gives to outgoing connections: a store retrying
    a server that is down could otherwise be given that very port for its connection (which
    then connects to itself) and keep the restarted server from binding it."""
    global _next_port
    while True:
        port, _next_port = _next_port, 20_000 + (_next_port - 20_000 + 1) % 12_000
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def start_redis(*extra: str, port: int = 0):
    """`(process, url)` of a new redis-server on a free port (or `port`), started with `extra`
    arguments. Outside CI the tests that need it are skipped when redis-server is not
    installed; in CI they must run."""
    server = shutil.which("redis-server")
    if server is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is required in CI")
        pytest.skip("redis-server not installed: Redis tests skipped")
    port = port or _free_port()
    workdir = tempfile.mkdtemp(prefix="rt-py-redis-")
    log = os.path.join(workdir, "redis.log")
    proc = subprocess.Popen(
        [server, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", workdir,
         "--logfile", log, *extra],
        stdout=subprocess.DEVNULL,
    )
    # Generous: a loaded shared machine can stall a process start for seconds.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.02)
    proc.kill()
    proc.wait()
    with open(log, errors="replace") as text:
        pytest.fail(f"redis-server did not start on port {port}: {text.read()[-2000:]}")


def free_port() -> int:
    """A local port nothing listens on."""
    return _free_port()


def stop_redis(proc) -> None:
    proc.kill()
    proc.wait()


@pytest.fixture(scope="session")
def redis_url():
    """A redis-server of the test session's own."""
    proc, url = start_redis()
    yield url
    stop_redis(proc)


@pytest.fixture
def redis_prefix(request) -> str:
    """A key prefix of the test's own."""
    return f"test:{request.node.name}:{time.time_ns()}:"
