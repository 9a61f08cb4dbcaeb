#!/usr/bin/env python3
"""
`ComplexityAnalyzer.calculate_complexity` + `DepthAnalyzer.calculate_depth` per second with
this package against the original `ratethrottle==1.4.0`, on the same graphql-core document
(parsed once; ours also measured with its analysis cache emptied before each call, as for
a query never seen before): a storefront query of aliased collections with nested products, variants and
reviews, written without fragments (1.4.0 prices a fragment spread as a flat 10 × depth
without reading it, which would flatter it).

    python python/bench/graphql_bench.py --ours-python python/.venv/bin/python
    python python/bench/graphql_bench.py --rounds 5 --calls 2000

Each contestant runs in its own process; rounds interleave them and the ratio is the median
of per-round ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from bench import ours_python, peers_python, run

SECTION = (
    "  section{i}: collection(handle: \"c{i}\") {{ id title description "
    "products(first: 12) {{ edges {{ cursor node {{ id handle title vendor tags "
    "priceRange {{ minVariantPrice {{ amount currencyCode }} maxVariantPrice {{ amount currencyCode }} }} "
    "variants(first: 5) {{ edges {{ node {{ id title sku price {{ amount currencyCode }} }} }} }} "
    "reviews(first: 5) {{ edges {{ node {{ id rating body author {{ id name }} }} }} }} "
    "}} }} pageInfo {{ hasNextPage endCursor }} }} }}\n"
)


def query() -> str:
    sections = ""
    i = 0
    while len(sections) < 10 * 1024:
        sections += SECTION.format(i=i)
        i += 1
    return "query Storefront {\n  shop { name }\n" + sections + "}\n"


def worker(args: argparse.Namespace) -> None:
    from graphql import parse

    from ratethrottle.graphQL import ComplexityAnalyzer, DepthAnalyzer
    document = parse(query())
    complexity, depth = ComplexityAnalyzer(max_complexity=10**12), DepthAnalyzer()
    for _ in range(20):
        complexity.calculate_complexity(document)
        depth.calculate_depth(document)
    caches = list({id(a._analyses.cache): a._analyses.cache
                   for a in (complexity, depth) if hasattr(a, "_analyses")}.values())
    start = time.perf_counter()
    for _ in range(args.calls):
        complexity.calculate_complexity(document)
        depth.calculate_depth(document)
    elapsed = time.perf_counter() - start
    uncached = None
    if caches:
        # Every analysis from the text: what a document never seen before costs.
        calls = max(args.calls // 10, 50)
        start = time.perf_counter()
        for _ in range(calls):
            for cache in caches:
                cache.clear()
            complexity.calculate_complexity(document)
            depth.calculate_depth(document)
        uncached = calls / (time.perf_counter() - start)
    print(json.dumps({"per_s": args.calls / elapsed, "uncached_per_s": uncached,
                      "complexity": complexity.calculate_complexity(document),
                      "depth": depth.calculate_depth(document)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--what", choices=("ours", "original"), default="ours")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--ours-python", help="an interpreter that has this package installed")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    pythons = {"original": peers_python(), "ours": ours_python(args.ours_python)}
    rounds = []
    for r in range(args.rounds):
        row = {}
        for name in ("ours", "original"):
            calls = args.calls if name == "ours" else max(args.calls // 10, 50)
            out = json.loads(run([pythons[name], __file__, "--worker", "--what", name,
                                  "--calls", str(calls)]))
            row[name] = out["per_s"]
            if out["uncached_per_s"]:
                row["ours_uncached"] = out["uncached_per_s"]
            row[name + "_result"] = (out["complexity"], out["depth"])
        rounds.append(row)
        print(f"round {r + 1}: ours {row['ours']:.0f}/s (first sight {row['ours_uncached']:.0f}/s) "
              f"{row['ours_result']}, 1.4.0 {row['original']:.0f}/s {row['original_result']}",
              file=sys.stderr)
    print(json.dumps({
        "analyses_per_s": {n: statistics.median(r[n] for r in rounds)
                           for n in ("ours", "ours_uncached", "original")},
        "ours_over_original": statistics.median(r["ours"] / r["original"] for r in rounds),
        "first_sight_over_original": statistics.median(r["ours_uncached"] / r["original"]
                                                       for r in rounds),
    }, indent=2))


if __name__ == "__main__":
    main()
