"""CLI start-up benchmark: wall time of `tclearn --help` (a fresh interpreter each run), best of --runs.

    PYTHONPATH=. python bench/cli.py [--runs 5] [--out bench-cli.json]

Also reports `tclearn vault --help` and the heavy libraries the help imported (none is the goal: torch, MONAI,
web3 and friends are imported inside the commands that use them). Target: under 1 s. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from tests.test_cli_imports import PROBE, loaded_by

REPO = Path(__file__).resolve().parent.parent
TARGET_S = 1.0


def best_of(runs: int, *args: str) -> float:
    """Best wall time of `python -m tclearn.cli.app ARGS` in a fresh interpreter (the machine may be shared)."""
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "tclearn.cli.app", *args], cwd=REPO, capture_output=True, check=True)
        best = min(best, time.perf_counter() - started)
    return round(best, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per figure; the best counts")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    help_seconds = best_of(args.runs, "--help")
    report = {
        "benchmark": "tclearn --help",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "runs": args.runs,
        "help_seconds": help_seconds,
        "vault_help_seconds": best_of(args.runs, "vault", "--help"),
        "heavy_imported": loaded_by(PROBE),
        "target": {"help_seconds": TARGET_S, "met": help_seconds < TARGET_S},
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
