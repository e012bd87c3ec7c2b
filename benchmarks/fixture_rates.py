"""Detection / localization / diagnosis rates and false positives on fixtures/.

    python benchmarks/fixture_rates.py [--parallel 2] [--only b0]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "server"))

from deeplocalize.evaluation import evaluate, load_expectations  # noqa: E402
from deeplocalize.runner import RunOptions  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--only", default="", help="substring filter on fixture paths")
    ap.add_argument("--verbose", "-v", action="store_true")
    args = ap.parse_args()
    exps = [e for e in load_expectations(ROOT / "fixtures") if args.only in str(e.path)]
    summary = asyncio.run(evaluate(exps, RunOptions(), parallel=args.parallel))
    for s in summary.scores:
        e = s.expectation
        mark = ("OK " if s.diagnosed else ("LOC" if s.localized else ("DET" if s.detected else "MISS"))) if e.buggy else ("FP " if s.false_positive else "ok ")
        print(f"{mark} {e.path.parent.name}/{e.path.name:32s} {s.report.status:9s} {s.report.duration_s:5.1f}s  expect {','.join(e.root_causes) or '-'} @ {e.lines}")
        if args.verbose or (e.buggy and not s.diagnosed) or s.false_positive:
            for f in s.report.findings:
                x = f.finding
                print(f"      {x.severity[:4]} {x.code} [{x.root_cause}] line {f.range.start.line}: {x.message[:140]}")
    for name in ("detected", "localized", "diagnosed"):
        n, d = summary.rate(name)
        print(f"{name:10s} {n}/{d} = {n / max(d, 1):.0%}")
    fp, nc = summary.false_positives
    print(f"false positives {fp}/{nc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
