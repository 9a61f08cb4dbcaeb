#!/usr/bin/env python3
"""Turns criterion's results for the `check` group into a table of ns/check and ratios to the
peer measured in the same run (governor's keyed limiter), and writes it into BENCHMARKS.md
between the `<!-- check:begin -->` and `<!-- check:end -->` markers.

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


def mean_ns(bench: str):
    path = GROUP / bench / "new" / "estimates.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())["mean"]["point_estimate"]


def table() -> str:
    rows = ["| case | ratethrottle ns/check | governor ns/check | ratio (lower is better) |",
            "|---|---:|---:|---:|"]
    for case in CASES:
        peer = mean_ns(f"governor_keyed_{case}")
        for strategy in STRATEGIES:
            ours = mean_ns(f"{strategy}_{case}")
            if ours is None or peer is None:
                continue
            rows.append(f"| `{strategy}_{case}` | {ours:.1f} | {peer:.1f} | {ours / peer:.2f}× |")
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
