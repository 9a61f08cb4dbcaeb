"""Shared fixtures: a limiter on a hand-set clock, a private redis-server, and ratethrottle
1.4.0's modules as a differential oracle."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def _oracle_dir():
    """A directory holding 1.4.0's package (from RT_ORACLE_DIR, the benchmark peers' venv, or
    `pip download`), or None."""
    root = Path(__file__).resolve().parents[1]
    candidates = [os.environ.get("RT_ORACLE_DIR", "")]
    candidates += [str(p) for p in (root / "bench").glob(".venv-peers/lib/python*/site-packages")]
    for candidate in candidates:
        if candidate and (Path(candidate) / "ratethrottle" / "ddos.py").exists():
            return Path(candidate) / "ratethrottle"
    target = Path(tempfile.mkdtemp())
    try:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d",
                        str(target), "ratethrottle==1.4.0"], check=True, timeout=60,
                       capture_output=True)
        wheel = next(target.glob("*.whl"))
        shutil.unpack_archive(str(wheel), str(target / "src"), "zip")
        return target / "src" / "ratethrottle"
    except Exception:
        return None


_oracle_package = None


def original_module(name: str):
    """1.4.0's module `name`, imported from a copy of its package renamed `rt_oracle` (its
    `__init__` left out, so no optional dependency is needed); skips the test when 1.4.0
    cannot be found or downloaded."""
    global _oracle_package
    if _oracle_package is None:
        source = _oracle_dir()
        if source is None:
            pytest.skip("ratethrottle 1.4.0 could not be found or downloaded")
        package = Path(tempfile.mkdtemp()) / "rt_oracle"
        package.mkdir()
        (package / "__init__.py").write_text("")
        for module in source.glob("*.py"):
            if module.name != "__init__.py":
                shutil.copy(module, package / module.name)
        _oracle_package = package
    sys.path.insert(0, str(_oracle_package.parent))
    try:
        spec = importlib.util.find_spec(f"rt_oracle.{name}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[f"rt_oracle.{name}"] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(_oracle_package.parent))


def channels_ready() -> None:
    """Django configured (if no test did it yet) with an in-memory channel layer, for Django
    Channels consumers; skips the test without channels."""
    pytest.importorskip("channels")
    import django
    from django.conf import settings

    layers = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    if not settings.configured:
        settings.configure(CHANNEL_LAYERS=layers)
        django.setup()
    else:
        settings.CHANNEL_LAYERS = layers


def run_processes(code: str, count: int) -> list:
    """The standard output of `count` Python processes running `code` at once (each must exit
    cleanly, within a minute)."""
    workers = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(count)]
    outputs = []
    for worker in workers:
        out, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, (worker.returncode, err[-2000:])
        outputs.append(out)
    return outputs
