"""Each verified fix, applied and analyzed again as the editor would: is its fault gone?

The suite runs the same check on the fixtures (tests/test_fixtures.py) and the real programs
(tests/test_real_corpus.py); this runs it alone, on one set or a few programs.

    python benchmarks/verified_fixes_heal.py [--set fixtures|real|all] [--only b10] [--verify-seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "server"))

from deeplocalize.evaluation import evaluate, load_expectations, verified_fixes_heal  # noqa: E402
from deeplocalize.runner import RunOptions  # noqa: E402
from deeplocalize.session import EngineSession  # noqa: E402


async def run(args: argparse.Namespace) -> int:
    folders = {"fixtures": [ROOT / "fixtures"], "real": [ROOT / "fixtures" / "real"], "all": [ROOT / "fixtures", ROOT / "fixtures" / "real"]}[args.set]
    exps = [e for folder in folders for e in load_expectations(folder) if args.only in e.path.name]
    start = time.monotonic()
    session = EngineSession()
    try:
        summary = await evaluate(exps, session, RunOptions(), parallel=2, verify_seconds=args.verify_seconds)
        analyzed = time.monotonic() - start
        checked, failures = await verified_fixes_heal(summary, session, RunOptions(), parallel=2)
    finally:
        await session.close()
    for f in failures:
        print("FAIL", f)
    print(f"{checked - len(failures)}/{checked} verified fixes heal their fault when analyzed again "
          f"(analysis and verification {analyzed:.0f} s, re-analysis {time.monotonic() - start - analyzed:.0f} s)")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=("fixtures", "real", "all"), default="fixtures")
    parser.add_argument("--verify-seconds", type=float, default=60.0)
    parser.add_argument("--only", default="", help="only programs whose file name contains this")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
