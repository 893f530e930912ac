"""How long `freshctl --help` and a shell TAB take (the lazy command groups keep both short).

Runs each case N times as a new process, the way a shell does, and prints min and median.

    .venv/bin/python benchmarks/cli_startup.py            # 20 runs each
    .venv/bin/python benchmarks/cli_startup.py --runs 50
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

FRESHCTL = str(Path(sys.executable).with_name("freshctl"))


def complete(words: str) -> tuple[list[str], dict[str, str]]:
    parts = words.split(" ")
    return [FRESHCTL], {"_FRESHCTL_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(len(parts) - 1)}


CASES: dict[str, tuple[list[str], dict[str, str]]] = {
    "python -c pass (baseline)": ([sys.executable, "-c", "pass"], {}),
    "freshctl --help": ([FRESHCTL, "--help"], {}),
    "freshctl --version": ([FRESHCTL, "--version"], {}),
    "TAB: freshctl <TAB>": complete("freshctl "),
    "TAB: freshctl connectors <TAB>": complete("freshctl connectors "),
    "TAB: freshctl connectors render -e <TAB>": complete("freshctl connectors render -e "),
    "freshctl connectors --help": ([FRESHCTL, "connectors", "--help"], {}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    print(f"{'case':45} {'min ms':>8} {'median ms':>10}   (runs={args.runs}, cpus={os.cpu_count()}, "
          f"load={os.getloadavg()[0]:.1f})")
    for name, (cmd, extra) in CASES.items():
        env = {**os.environ, **extra}
        times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            times.append((time.perf_counter() - started) * 1000)
        print(f"{name:45} {min(times):8.0f} {statistics.median(times):10.0f}")


if __name__ == "__main__":
    main()
