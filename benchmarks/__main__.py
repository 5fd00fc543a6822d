"""``python -m benchmarks [NAME...]``: run the benchmarks (all of them by default), each in a fresh process so that
one's Ray instance, threads or caches never bias the next; the summary lines are printed as they finish."""
from __future__ import annotations

import argparse
import subprocess
import sys
import time

from benchmarks import BENCHMARKS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"one or more of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--all", action="store_true", help="replay: the whole sampler x scheduler matrix")
    args = parser.parse_args(argv)
    names = args.names or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; valid: {', '.join(BENCHMARKS)}")
    failed = []
    started = time.time()
    for name in names:
        extra = ["--all"] if args.all and name == "replay" else []
        done = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", *extra], stdout=subprocess.PIPE,
                              text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith(f"{name}: ")]
        print(lines[-1] if lines else f"{name}: failed (exit {done.returncode})", flush=True)
        if done.returncode or not lines:
            failed.append(name)
    print(f"{len(names) - len(failed)}/{len(names)} benchmarks ran in {time.time() - started:.0f}s; "
          f"results in benchmarks/results/", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
