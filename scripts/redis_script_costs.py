#!/usr/bin/env python3
"""Redis CPU per check of the Redis store's fast.lua, against the floors under it.

Starts its own redis-server on a free port (or uses --port), then for each case pipelines
calls and reads the server's own CPU time (INFO cpu) before and after, so client speed does not
count. Cases, per check:

  INCR             one INCR per call, pipelined 16 deep (this script's client is slower than
                   the bench's, so Redis reads fewer commands per syscall here)
  empty script     EVALSHA that returns at once, one key and the arguments per check
  SET PX only      EVALSHA doing nothing but one SET ... PX per check: the least any atomic
                   scripted limiter with expiring keys does
  fast.lua         the real script (token_bucket, one key per check, server TIME)
  lean GCRA        the lean script of the Redis bench (the redis-gcra design: TIME, GET, SET
                   EX; no lists, no blocks), one check per call

Usage: python3 scripts/redis_script_costs.py [--port N] [--batch 1,16,48] [--rounds 3]
No dependencies beyond Python 3; prints a Markdown table (minimum over rounds, microseconds).
"""

import argparse
import os
import socket
import struct
import subprocess
import time

LUA = os.path.join(os.path.dirname(__file__), "..", "crates", "ratethrottle-redis", "lua")


# The lean GCRA script of the Redis bench.
LEAN_GCRA = open(os.path.join(os.path.dirname(__file__), "..", "crates", "ratethrottle-redis",
                              "benches", "lean_gcra.lua")).read()


class Redis:
    """Just enough RESP to pipeline commands and read replies."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.reader = self.sock.makefile("rb")

    def send(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for arg in args:
            arg = arg.encode() if isinstance(arg, str) else arg
            out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
        self.sock.sendall(b"".join(out))

    def read(self):
        line = self.reader.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind in (b"+", b":"):
            return rest
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self.reader.read(size + 2)[:-2]
        if kind == b"*":
            return [self.read() for _ in range(int(rest))]
        raise RuntimeError("unexpected reply %r" % line)

    def call(self, *args):
        self.send(*args)
        return self.read()

    def cpu_seconds(self):
        info = self.call("INFO", "cpu").decode()
        fields = dict(line.split(":", 1) for line in info.split("\r\n") if ":" in line)
        return float(fields["used_cpu_user"]) + float(fields["used_cpu_sys"])


def doubles(*values):
    return struct.pack(">%dd" % len(values), *values)


def per_check_cpu(redis, command, checks_per_call, calls, depth=16):
    """Redis CPU microseconds per check for `calls` pipelined calls of `command`."""
    before = redis.cpu_seconds()
    sent = 0
    while sent < calls:
        burst = min(depth, calls - sent)
        for _ in range(burst):
            redis.send(*command)
        for _ in range(burst):
            redis.read()
        sent += burst
    return (redis.cpu_seconds() - before) / (calls * checks_per_call) * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, help="use this server instead of starting one")
    parser.add_argument("--batch", default="1,16,48", help="checks per call (comma separated)")
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    server = None
    port = options.port
    if port is None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL)
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
    try:
        redis = Redis(port)
        scripts = {
            "empty script": "return 1",
            "SET PX only": "for i = 1, #KEYS do redis.call('SET', KEYS[i], 'x', 'PX', '2001') end return 1",
            # As the store sends it: the shared prelude, then the script.
            "fast.lua": "".join(open(os.path.join(LUA, name)).read()
                                for name in ("lists.lua", "fast.lua")),
        }
        shas = {name: redis.call("SCRIPT", "LOAD", body).decode() for name, body in scripts.items()}
        # token_bucket, 1,000,000 per second, burst 1,000,000; 300 s block; keys live 2 s.
        rules = doubles(1, 1e6, 1e9, 1e6, 300, 0, 2001, 301000)
        rows = []
        incr = min(per_check_cpu(redis, ("INCR", "costs:incr"), 1, 20000)
                   for _ in range(options.rounds))
        rows.append(("INCR", 1, incr))
        lean = redis.call("SCRIPT", "LOAD", LEAN_GCRA).decode()
        command = ("EVALSHA", lean, "1", "costs:lean", "0.000001", "1")
        rows.append(("lean GCRA", 1, min(per_check_cpu(redis, command, 1, 20000)
                                         for _ in range(options.rounds))))
        for batch in [int(b) for b in options.batch.split(",")]:
            checks = b"".join(doubles(1, 0, 1, 1, -1, -1) for _ in range(batch))
            calls = max(200, 20000 // batch)
            for case, (name, sha) in enumerate(shas.items()):
                keys = ["costs%d:{i:client-%d}:00000000000000ff" % (case, i) for i in range(batch)]
                command = ("EVALSHA", sha, str(batch), *keys, rules, checks)
                cost = min(per_check_cpu(redis, command, batch, calls) for _ in range(options.rounds))
                rows.append((name, batch, cost))
        print("| case | checks per call | Redis CPU per check (µs) |")
        print("|---|---:|---:|")
        for name, batch, cost in rows:
            print("| %s | %d | %.2f |" % (name, batch, cost))
    finally:
        if server is not None:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
