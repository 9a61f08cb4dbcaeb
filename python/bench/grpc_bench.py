#!/usr/bin/env python3
"""
Server-streaming calls of one message per second through a grpcio server with this package's
`GRPCRateLimitInterceptor` against the same server with the original `ratethrottle==1.4.0`'s
interceptor (and without any), in one run. One message per call: 1.4.0's interceptor breaks
every unary call (it tests `hasattr(handler, "unary_stream")`, always true), so unary calls
cannot be compared; a one-message stream goes through its working path.

    python python/bench/grpc_bench.py --ours-python python/.venv/bin/python
    python python/bench/grpc_bench.py --rounds 5 --calls 3000

Each contestant runs in its own process (server and client, limits far above the load);
rounds interleave them and the ratios are medians of per-round ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from bench import ours_python, peers_python, run


def worker(args: argparse.Namespace) -> None:
    from concurrent import futures

    import grpc

    interceptors = []
    if args.what != "bare":
        from ratethrottle import GRPCLimits, GRPCRateLimitInterceptor

        interceptors.append(GRPCRateLimitInterceptor(GRPCLimits(
            requests_per_minute=10**9, concurrent_requests=10**6,
            stream_messages_per_minute=10**9)))

    def one(request, context):
        yield request

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=interceptors)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "bench.Echo", {"One": grpc.unary_stream_rpc_method_handler(one)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    call = grpc.insecure_channel(f"127.0.0.1:{port}").unary_stream("/bench.Echo/One")
    for _ in range(200):
        list(call(b"x"))
    start = time.perf_counter()
    for _ in range(args.calls):
        assert list(call(b"x")) == [b"x"]
    elapsed = time.perf_counter() - start
    server.stop(None)
    print(json.dumps({"calls_per_s": args.calls / elapsed}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--what", choices=("bare", "interceptor"), default="interceptor")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--ours-python", help="an interpreter that has this package installed")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    pythons = {
        "original": peers_python(),
        "ours": ours_python(args.ours_python),
    }
    rounds = []
    for r in range(args.rounds):
        row = {}
        for name, what in (("ours", "interceptor"), ("original", "interceptor"), ("bare", "bare")):
            python = pythons["ours" if name == "bare" else name]
            out = run([python, __file__, "--worker", "--what", what, "--calls", str(args.calls)])
            row[name] = json.loads(out)["calls_per_s"]
        rounds.append(row)
        print(f"round {r + 1}: ours {row['ours']:.0f}/s, 1.4.0 {row['original']:.0f}/s, "
              f"no interceptor {row['bare']:.0f}/s", file=sys.stderr)
    print(json.dumps({
        "calls_per_s": {n: statistics.median(r[n] for r in rounds) for n in ("ours", "original", "bare")},
        "ours_over_original": statistics.median(r["ours"] / r["original"] for r in rounds),
        "ours_over_bare": statistics.median(r["ours"] / r["bare"] for r in rounds),
    }, indent=2))


if __name__ == "__main__":
    main()
