"""Every offered fix, applied and run to the end of the script: does the whole script stay right?

For each buggy program: analyze it and verify its fixes (as the CLI and the editor do by
default; --no-verify lists every candidate's fix instead), then run
the script as it is and with each fix applied in memory, to its last line (evaluate,
predict, prints), recording the script's own results; a fix whose script crashes or
whose final training/validation logs or evaluate results get worse is listed.

    python benchmarks/whole_script_fixes.py [--set fixtures|real|all] [--only b16] [--max-epochs N] [--no-verify] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "server"))

from deeplocalize.evaluation import load_expectations  # noqa: E402
from deeplocalize.runner import RunOptions  # noqa: E402
from deeplocalize.session import EngineSession  # noqa: E402
from deeplocalize.wholescript import check_fixes  # noqa: E402


def _fmt(run) -> str:
    if run.status != "completed":
        return f"{run.status}: {run.message[:80]}"
    parts = []
    if run.fits:
        logs = run.fits[-1].values
        parts.append("fit " + " ".join(f"{k}={v:.4g}" for k, v in logs.items() if v is not None))
    for i, e in enumerate(run.evaluations[-2:]):
        parts.append("eval " + " ".join(f"{k}={v:.4g}" for k, v in e.values.items() if v is not None))
    return "; ".join(parts) or "completed"


async def run(args: argparse.Namespace) -> int:
    sets = {"fixtures": [ROOT / "fixtures"], "real": [ROOT / "fixtures" / "real"], "all": [ROOT / "fixtures", ROOT / "fixtures" / "real"]}[args.set]
    exps = [e for folder in sets for e in load_expectations(folder) if e.buggy and args.only in str(e.path)]
    options = RunOptions(max_seconds=args.max_seconds, max_epochs=args.max_epochs)
    session = EngineSession()
    failures, total, rows = 0, 0, []
    start = time.monotonic()
    try:
        for exp in exps:
            report = await session.check(str(exp.path), RunOptions(), verify_seconds=None if args.no_verify else 60.0)
            checks = await check_fixes(report, options, session)
            for c in checks:
                total += 1
                failures += bool(c.problems)
                mark = "FAIL" if c.problems else "ok  "
                print(f"{mark} {exp.path.name} [{c.finding}] {c.fix}")
                print(f"       before: {_fmt(c.before)}")
                print(f"       after:  {_fmt(c.after)}")
                for p in c.problems:
                    print(f"       ! {p}")
                rows.append({"program": exp.path.name, "finding": c.finding, "fix": c.fix, "problems": c.problems,
                             "before": c.before.to_json(), "after": c.after.to_json()})
            sys.stdout.flush()
    finally:
        await session.close()
    print(f"\n{total - failures}/{total} fixes keep the whole script right ({len(exps)} programs, {time.monotonic() - start:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 1 if failures else 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", choices=("fixtures", "real", "all"), default="fixtures")
    ap.add_argument("--only", default="")
    ap.add_argument("--max-epochs", type=int, default=None, help="cap every fit (before and after alike); default: the script's own")
    ap.add_argument("--max-seconds", type=float, default=300.0)
    ap.add_argument("--json")
    ap.add_argument("--no-verify", action="store_true", help="check the fixes of every candidate cause, before experiments prune them")
    return asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
