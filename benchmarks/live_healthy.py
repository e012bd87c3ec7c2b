"""Healthy programs trained to their end under `deeplocalize run`: any warning or error is a false alarm.

    python benchmarks/live_healthy.py [--set fixtures|real|all] [--only NAME]

Each healthy program (fixtures/correct, and the healthy real programs of fixtures/real) is copied
into a temporary folder and run as a user would (`deeplocalize run script.py`, every epoch); its
run folder's final findings are read back. Prints one line per program and the false alarms.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "server"))

from deeplocalize.evaluation import load_expectations  # noqa: E402
from deeplocalize.live import findings_of  # noqa: E402
from deeplocalize.run_folder import RunRecord, read_run  # noqa: E402
from deeplocalize.vocab import is_serious  # noqa: E402

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT / "server")}


def healthy(which: str) -> list[Path]:
    out: list[Path] = []
    if which in ("fixtures", "all"):
        out += sorted((ROOT / "fixtures" / "correct").glob("*.py"))
    if which in ("real", "all"):
        out += [e.path for e in load_expectations(ROOT / "fixtures" / "real") if not e.buggy]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", choices=("fixtures", "real", "all"), default="all")
    ap.add_argument("--only")
    args = ap.parse_args()
    alarms, failed, total = [], [], 0
    for script in healthy(args.set):
        if args.only and args.only not in script.name:
            continue
        total += 1
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            shutil.copy(script, work / script.name)
            started = time.monotonic()
            out = subprocess.run([sys.executable, "-m", "deeplocalize", "run", script.name], cwd=work, env=ENV,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=3600)
            seconds = time.monotonic() - started
            folders = sorted((work / ".deeplocalize" / "runs").iterdir())
            record = read_run(folders[-1]) if folders else "no run folder"
            if not isinstance(record, RunRecord):
                failed.append(f"{script.name}: {record}")
                print(f"{script.name:50s} FAILED: {record}", flush=True)
                continue
            serious = [f"{f['severity']} {f['code']}@{f['range']['start']['line']}" for f in findings_of(folders[-1]) if is_serious(f["severity"])]
        state = f"{record.meta.state}, exit {out.returncode}, epochs {record.meta.epoch}/{record.meta.epochs}"
        print(f"{script.name:50s} {seconds:6.1f} s  {state}  {', '.join(serious) or 'no warning or error'}", flush=True)
        if serious:
            alarms.append(f"{script.name}: {serious}")
        if out.returncode != 0 or record.meta.state != "finished":
            failed.append(f"{script.name}: {state}: {out.stderr[-300:]}")
    print(f"\n{total} healthy programs run to their end: {len(alarms)} with a warning or error, {len(failed)} that did not finish")
    for line in alarms + failed:
        print("  " + line)
    return 1 if alarms else 0


if __name__ == "__main__":
    sys.exit(main())
