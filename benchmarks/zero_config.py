"""13. The zero-config search against the demo's hand-written space, on data the portfolio was not chosen on (issue
17): ``autoft search DATA --time-budget B`` (no YAML: autoft's plan, its portfolio first) against ``autoft search
demo-space.yaml --time-budget B`` — search_spaces/demo.yaml with its data replaced by the same images (no per-class
caps, its 48 px kept) and trials enough that the budget, not the count, ends it. DATA is ``patches`` (default) or
``photos`` from benchmarks/datasets.py: crops of scikit-image's sample photographs, one class a photo; neither the
portfolio (benchmarks/portfolio.py) nor the plan's constants were chosen on them. Both searches split train/val
alike (val_split 0.2, seed 0), so their best val_acc are on the same images; they run one after the other, whole CLI
commands, and the hand-written space's search gets the whole budget for its search alone (the zero-config plan's
budget also pays for the probe, decoding and report), which favours the baseline. The value is zero-config best
val_acc minus the hand-written space's, per repeat (median); the goal is >= 0. Results: zero_config.json
(patches), zero_config-photos.json."""
from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks import Goal, Recorder, median, quiet

BIN = Path(sys.executable).parent


def _best(results: Path) -> tuple[float, int, str]:
    (run,) = [p for p in results.iterdir() if p.is_dir()]
    rows = list(csv.DictReader((run / "leaderboard.csv").open()))
    accs = [float(r["val_acc"]) for r in rows if r.get("val_acc") not in (None, "", "nan")]
    return max(accs), len(rows), run.name


def _search(target: str, budget: str, results: Path) -> dict:
    started = time.perf_counter()
    done = subprocess.run([str(BIN / "autoft"), "search", target, "--time-budget", budget, "--results-dir",
                           str(results), "--plain"], capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"zero_config: `autoft search {target}` failed: "
                         f"{(done.stderr.strip().splitlines() or ['?'])[-1]}")
    best, trials, run = _best(results)
    plan = [line for line in done.stdout.splitlines() if line.startswith(("plan for", "  model:", "  trials:"))]
    return {"val_acc": best, "trials": trials, "wall_s": round(wall, 1), "run": run, "plan": plan}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.zero_config", description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", default="4m")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--data", default="patches", choices=["patches", "photos"],
                        help="held-out ImageFolder from benchmarks/datasets.py")
    args = parser.parse_args(argv)
    quiet()
    from autoft.config import demo_config_path
    from benchmarks.datasets import build

    name = "zero_config" if args.data == "patches" else f"zero_config-{args.data}"
    rec = Recorder(name, Goal("best val_acc, zero-config minus the demo's hand-written space, same budget, held-out "
                              "data", ">=", 0.0))
    photos = build(args.data)
    demo = yaml.safe_load(Path(demo_config_path()).read_text())
    demo["name"] = "demo-space"
    demo["data"] = {"path": str(photos), "image_size": demo["data"]["image_size"]}
    demo["search"]["trials"] = 200
    runs: dict[str, list[dict]] = {"zero_config": [], "demo_space": []}
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "demo-space.yaml"
        config.write_text(yaml.safe_dump(demo, sort_keys=False))
        for r in range(args.repeats):
            order = ("zero_config", "demo_space") if r % 2 == 0 else ("demo_space", "zero_config")
            for which in order:
                target = str(photos) if which == "zero_config" else str(config)
                runs[which].append(_search(target, args.budget, Path(tmp) / f"{which}-{r}"))
    diffs = [a["val_acc"] - b["val_acc"] for a, b in zip(runs["zero_config"], runs["demo_space"])]
    value = median(diffs)
    zc, ds = runs["zero_config"], runs["demo_space"]
    rec.finish(value, f"held-out {args.data}, {args.budget} each: zero-config best val_acc "
                      f"{median([r['val_acc'] for r in zc]):.3f} ({median([r['trials'] for r in zc]):.0f} trials, "
                      f"{median([r['wall_s'] for r in zc]):.0f}s) vs the demo's space "
                      f"{median([r['val_acc'] for r in ds]):.3f} ({median([r['trials'] for r in ds]):.0f} trials, "
                      f"{median([r['wall_s'] for r in ds]):.0f}s): {value:+.3f}",
               {"budget": args.budget, "repeats": args.repeats, "data": str(photos.name), "runs": runs,
                "differences": diffs},
               notes="whole `autoft search` commands, one after the other (order alternating by repeat); the demo "
                     "space's YAML: search_spaces/demo.yaml with data {path: photos, image_size: 48} and trials 200, "
                     "--time-budget overriding its search.time_budget.")


if __name__ == "__main__":
    main()
