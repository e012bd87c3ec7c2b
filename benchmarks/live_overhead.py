"""Whole-run time of `deeplocalize run train.py` against `python train.py`, as ratios, in one run.

    python benchmarks/live_overhead.py [--reps 2] [--only NAME]

Models: the healthy fixtures' (fixtures/correct), a ResNet50 (keras.applications, no weights,
32x32 images) and a 6-block Transformer encoder (benchmarks/models/). Each script runs plain and
under `deeplocalize run` alternately, `--reps` times; the minimum of each is compared, since the
machine is shared and noisy. Both include the interpreter's start and TensorFlow's import, as a
user's run does. Target (issue 23): <= 1.05x on each. For comparison, the bounded analysis
(`deeplocalize check --no-verify`, its epoch cap lifted so it trains as long) on the same scripts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "benchmarks" / "models"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT / "server")}


def scripts(only: str | None) -> list[Path]:
    found = sorted((ROOT / "fixtures" / "correct").glob("*.py")) + sorted(MODELS.glob("*.py"))
    return [p for p in found if only is None or only in p.name]


def timed(cmd: list[str], cwd: Path, ok: tuple[int, ...] = (0,)) -> float:
    start = time.monotonic()
    out = subprocess.run(cmd, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=3600)
    if out.returncode not in ok:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr[-800:]}")
    return time.monotonic() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--only", help="only scripts whose name contains this")
    args = ap.parse_args()
    ratios, checks = [], []
    print(f"{'script':40s} {'plain s':>8s} {'run s':>8s} {'ratio':>6s} {'check s':>8s} {'ratio':>6s}")
    for script in scripts(args.only):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            shutil.copy(script, work / script.name)
            plain, live, check = [], [], []
            for _ in range(args.reps):
                plain.append(timed([sys.executable, script.name], work))
                live.append(timed([sys.executable, "-m", "deeplocalize", "run", script.name], work))
                check.append(timed([sys.executable, "-m", "deeplocalize", "check", "--no-verify", "--no-progress", "--max-epochs", "0",
                                    "--max-seconds", "3600", "--seed", "-1", script.name], work, ok=(0, 1)))
        ratio, check_ratio = min(live) / min(plain), min(check) / min(plain)
        ratios.append(ratio)
        checks.append(check_ratio)
        print(f"{script.name:40s} {min(plain):8.1f} {min(live):8.1f} {ratio:6.2f}x {min(check):8.1f} {check_ratio:6.2f}x", flush=True)
    if ratios:
        print(f"\ndeeplocalize run: median {statistics.median(ratios):.2f}x, max {max(ratios):.2f}x over {len(ratios)} scripts (target <= 1.05x each)")
        print(f"deeplocalize check --no-verify (no epoch cap): median {statistics.median(checks):.2f}x, max {max(checks):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
