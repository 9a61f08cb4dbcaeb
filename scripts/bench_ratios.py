#!/usr/bin/env python3
"""Turns criterion's results for the `check` group into a table of ns/check and ratios to the
peer measured in the same run (governor's keyed limiter), and writes it into BENCHMARKS.md
between the `<!-- check:begin -->` and `<!-- check:end -->` markers.

ns/check is the median over criterion's samples (robust to the bursts of a shared machine);
the last column compares the fastest sample of each side, the least disturbed measurement.

Usage: cargo bench -p ratethrottle --bench check && python3 scripts/bench_ratios.py [--print]
"""
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
GROUP = ROOT / "target" / "criterion" / "check"
STRATEGIES = ["token_bucket", "leaky_bucket", "gcra", "fixed_window", "sliding_window", "sliding_counter"]
CASES = ["1", "1m", "2t_1", "2t_1m"]


def per_iteration_ns(bench: str):
    """The sorted ns/iteration of each of criterion's samples, or None if not measured."""
    path = GROUP / bench / "new" / "sample.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return sorted(time / iters for time, iters in zip(data["times"], data["iters"]))


def median(values):
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def table() -> str:
    rows = ["| case | ratethrottle ns/check | governor ns/check | ratio | ratio of fastest samples |",
            "|---|---:|---:|---:|---:|"]
    for case in CASES:
        peer = per_iteration_ns(f"governor_keyed_{case}")
        for strategy in STRATEGIES:
            ours = per_iteration_ns(f"{strategy}_{case}")
            if ours is None or peer is None:
                continue
            rows.append(f"| `{strategy}_{case}` | {median(ours):.1f} | {median(peer):.1f} "
                        f"| {median(ours) / median(peer):.2f}× | {ours[0] / peer[0]:.2f}× |")
    return "\n".join(rows)


def main() -> int:
    if not GROUP.exists():
        print(f"no results in {GROUP}; run `cargo bench -p ratethrottle --bench check` first", file=sys.stderr)
        return 1
    text = table()
    if "--print" in sys.argv:
        print(text)
        return 0
    target = ROOT / "BENCHMARKS.md"
    doc = target.read_text()
    pattern = re.compile(r"(<!-- check:begin -->\n)(?:.*?\n)?(<!-- check:end -->)", re.S)
    if not pattern.search(doc):
        print("BENCHMARKS.md has no <!-- check:begin --> / <!-- check:end --> markers", file=sys.stderr)
        return 1
    target.write_text(pattern.sub(lambda m: m.group(1) + text + "\n" + m.group(2), doc))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
