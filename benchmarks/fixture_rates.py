"""Detection / localization / diagnosis rates and false positives, on the bundled
fixtures and, apart, on the corpus of real programs (fixtures/real/), with the time
of each analysis against the script's plain run (--plain): the first diagnosis, the
diagnosis with its fixes verified by re-training, and healthy scripts, each as a median
ratio. With --plain every analysis starts from a worker that has imported TensorFlow, as
in the editor; `deeplocalize check` on one file also pays that import (about 4 s).

With --cli each program is also checked by the real CLI, one process per program as a user
runs it (`deeplocalize check file.py`: its fork server imports TensorFlow once, fixes verified),
timed against the same plain run. --cli-only does only that: each program is scored from the
CLI's JSON report, and its first diagnosis is the CLI's time less the verification's (half the
benchmark's time, for the ratios alone).

    python benchmarks/fixture_rates.py [--set fixtures|real|all] [--parallel 2] [--only b0] [--plain [--cli]] [--cli-only]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "server"))

from deeplocalize.evaluation import evaluate, load_expectations  # noqa: E402
from deeplocalize.runner import RunOptions  # noqa: E402
from deeplocalize.session import EngineSession  # noqa: E402
from deeplocalize.vocab import is_serious  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--only", default="", help="substring filter on fixture paths")
    ap.add_argument("--verbose", "-v", action="store_true")
    ap.add_argument("--set", choices=("fixtures", "real", "all"), default="all")
    ap.add_argument("--plain", action="store_true", help="also time a plain `python script.py` run of each (ratio); each analysis then "
                    "starts with a worker that has imported TensorFlow, as in the editor (use --parallel 1 for timings)")
    ap.add_argument("--verify-seconds", type=float, default=60.0, help="budget of the fix-verifying re-runs (0: none)")
    ap.add_argument("--cli", action="store_true", help="with --plain: also time `deeplocalize check file.py` (a fresh CLI) on each")
    ap.add_argument("--cli-only", action="store_true", help="only a plain run and `deeplocalize check` of each (ratios, rates from its JSON)")
    args = ap.parse_args()
    sets = {"fixtures": [ROOT / "fixtures"], "real": [ROOT / "fixtures" / "real"], "all": [ROOT / "fixtures", ROOT / "fixtures" / "real"]}[args.set]
    for folder in sets:
        exps = [e for e in load_expectations(folder) if args.only in str(e.path)]
        if exps:
            print(f"== {folder.relative_to(ROOT)} ({len(exps)} programs)")
            (report_cli if args.cli_only else report)(exps, args)
    return 0


def cli_check(path: Path, verify_seconds: float) -> tuple[float, dict]:
    """`deeplocalize check` on one file, from a fresh process, as a user runs it: its time and
    its JSON report of that file."""
    start = time.monotonic()
    verify = ["--verify-seconds", str(verify_seconds)] if verify_seconds else ["--no-verify"]
    done = subprocess.run([sys.executable, "-m", "deeplocalize", "check", "--format", "json", *verify, str(path)], cwd=path.parent,
                          capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT / "server")})
    seconds = time.monotonic() - start
    try:
        return seconds, json.loads(done.stdout)["files"][0]
    except (ValueError, KeyError, IndexError):
        return seconds, {"status": f"cli exit {done.returncode}", "findings": [], "verification": None}


def report_cli(exps: list, args: argparse.Namespace) -> None:
    """Each program's plain run and CLI check, one at a time: ratios and rates from the CLI's JSON."""
    ratios: dict[str, list[float]] = {"first diagnosis": [], "with verified fixes": [], "healthy": []}
    counts = {"detected": 0, "diagnosed": 0, "buggy": 0, "false positives": 0, "healthy": 0}
    for e in exps:
        plain = plain_seconds(e.path)
        cli, file = cli_check(e.path, args.verify_seconds)
        verifying = (file.get("verification") or {}).get("seconds", 0.0)
        serious = [f for f in file["findings"] if is_serious(f["severity"])]
        on_line = [f for f in serious if any(f["range"]["start"]["line"] <= n <= f["range"]["end"]["line"] for n in e.lines)]
        diagnosed = any(f["root_cause"] in e.root_causes for f in on_line)
        if e.buggy:
            counts["buggy"] += 1
            counts["detected"] += bool(serious)
            counts["diagnosed"] += diagnosed
            ratios["first diagnosis"].append((cli - verifying) / plain)
            ratios["with verified fixes"].append(cli / plain)
            mark = "OK " if diagnosed else ("DET" if serious else "MISS")
        else:
            counts["healthy"] += 1
            counts["false positives"] += bool(serious)
            ratios["healthy"].append(cli / plain)
            mark = "FP " if serious else "ok "
        print(f"{mark} {e.path.parent.name}/{e.path.name:32s} {file['status']:9s} plain {plain:5.1f}s cli {cli:5.1f}s "
              f"(verifying {verifying:4.1f}s) x{cli / plain:4.2f}", flush=True)
    print(f"detected {counts['detected']}/{counts['buggy']}, diagnosed {counts['diagnosed']}/{counts['buggy']}, "
          f"false positives {counts['false positives']}/{counts['healthy']}")
    for name, values in ratios.items():
        if values:
            print(f"deeplocalize check, {name} / plain run: median x{statistics.median(values):.2f}, max x{max(values):.2f} ({len(values)} programs)")


def plain_seconds(path: Path) -> float:
    start = time.monotonic()
    subprocess.run([sys.executable, str(path)], cwd=path.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    return time.monotonic() - start


def report(exps: list, args: argparse.Namespace) -> None:
    async def scored():
        session = EngineSession()
        try:
            return await evaluate(exps, session, RunOptions(), parallel=args.parallel, verify_seconds=args.verify_seconds or None, warm=args.plain)
        finally:
            await session.close()

    summary = asyncio.run(scored())
    ratios: dict[str, list[float]] = {"first diagnosis": [], "with verified fixes": [], "healthy": [], "deeplocalize check (CLI)": []}
    for s in summary.scores:
        e = s.expectation
        mark = ("OK " if s.diagnosed else ("LOC" if s.localized else ("DET" if s.detected else "MISS"))) if e.buggy else ("FP " if s.false_positive else "ok ")
        ratio = ""
        if args.plain:
            plain = plain_seconds(e.path)
            if e.buggy:
                ratios["first diagnosis"].append(s.first_s / plain)
                ratios["with verified fixes"].append(s.report.duration_s / plain)
            else:
                ratios["healthy"].append(s.report.duration_s / plain)
            ratio = f" plain {plain:5.1f}s first x{s.first_s / plain:4.2f} total x{s.report.duration_s / plain:4.2f}"
            if args.cli:
                cli, _ = cli_check(e.path, args.verify_seconds)
                ratios["deeplocalize check (CLI)"].append(cli / plain)
                ratio += f" cli x{cli / plain:4.2f}"
        print(f"{mark} {e.path.parent.name}/{e.path.name:32s} {s.report.status:9s} {s.report.duration_s:5.1f}s{ratio}  expect {','.join(e.root_causes) or '-'} @ {e.lines}")
        if args.verbose or (e.buggy and not s.diagnosed) or s.false_positive:
            for f in s.report.findings:
                x = f.finding
                print(f"      {x.severity[:4]} {x.code} [{x.root_cause}] line {f.range.start.line}: {x.message[:140]}")
                for fix in f.fixes:
                    if fix.verification:
                        v = fix.verification
                        print(f"         {v.verdict:12s} {fix.title[:60]}: {v.reason}; before {v.before} after {v.after} ({v.seconds:.1f}s)")
    for name in ("detected", "localized", "diagnosed"):
        n, d = summary.rate(name)
        print(f"{name:10s} {n}/{d} = {n / max(d, 1):.0%}")
    fp, nc = summary.false_positives
    print(f"false positives {fp}/{nc}")
    classes = sorted({s.expectation.mistake_class.split(":")[0] for s in summary.scores if s.expectation.buggy and s.expectation.mistake_class})
    for c in classes:
        members = [s for s in summary.scores if s.expectation.buggy and s.expectation.mistake_class.split(":")[0] == c]
        print(f"  class {c:34s} diagnosed {sum(s.diagnosed for s in members)}/{len(members)}")
    reports = [s.report.verification for s in summary.scores if s.report.verification]
    if reports:
        total = {k: sum(getattr(r, k) for r in reports) for k in ("tried", "verified", "refuted", "inconclusive", "corrected", "demoted")}
        serious = sum(1 for s in summary.scores for f in s.report.findings if f.confirmation)
        print(f"verification: {total['tried']} re-runs; of {serious} findings tested: {total['verified']} verified "
              f"({total['corrected']} after a refuted first guess), {total['refuted']} unconfirmed ({total['demoted']} warnings demoted), "
              f"{total['inconclusive']} inconclusive")
    for name, values in ratios.items():
        if values:
            print(f"{name} / plain run: median x{statistics.median(values):.2f}, max x{max(values):.2f} ({len(values)} programs)")


if __name__ == "__main__":
    sys.exit(main())
