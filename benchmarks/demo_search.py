"""10. The demo search (search_spaces/demo.yaml, seed 0) run the old way and the new way: ``train.eval_engine:
dygraph`` + ``train.depthwise: native`` (every forward that does not train in the dynamic graph and Paddle's own
depthwise kernel in training, as before) against ``auto`` + ``auto`` (Paddle's inference engine for evaluation,
depthwise layers trained as grouped convolutions). Same seed, same trials, one after the other in fresh processes,
old first then new then old then new; the ratio is the median of the paired wall times. val_acc is the best trial's."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile

from benchmarks import Goal, Recorder, median, quiet

REPEATS = 1

CHILD = r"""
import json, sys, time
from autoft.config import load_config, demo_config_path
from autoft.search.run import search
depthwise = "native" if sys.argv[1] == "dygraph" else "auto"
cfg = load_config(demo_config_path(), [f"train.eval_engine={sys.argv[1]}", f"train.depthwise={depthwise}"])
start = time.perf_counter()
outcome = search(cfg, results_dir=sys.argv[2], name="demo-" + sys.argv[1])
best = outcome.leaderboard.best
records = outcome.leaderboard.records
print(json.dumps({"wall_s": time.perf_counter() - start, "val_acc": best.best["val_acc"] if best else None,
                  "trials": len(records), "epochs": sum(r.epochs_run for r in records),
                  "trial_seconds": sum(r.seconds for r in records)}))
"""


def _run(engine: str, tmp: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, engine, tmp], capture_output=True, text=True, timeout=3600)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode or not lines:
        raise SystemExit(f"demo_search: the {engine} search failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(lines[-1])


def main() -> None:
    quiet()
    rec = Recorder("demo_search", Goal("demo search wall, new way (engine + grouped depthwise) / old way", "<=", 0.5))
    runs: dict[str, list[dict]] = {"dygraph": [], "auto": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(REPEATS):
            for engine in ("dygraph", "auto") if r % 2 == 0 else ("auto", "dygraph"):
                runs[engine].append(_run(engine, f"{tmp}/{engine}-{r}"))
    ratio = median([a["wall_s"] / b["wall_s"] for a, b in zip(runs["auto"], runs["dygraph"])])
    per_epoch = {k: median([r["trial_seconds"] / max(1, r["epochs"]) for r in v]) for k, v in runs.items()}
    acc_new = median([r["val_acc"] for r in runs["auto"]])
    acc_old = median([r["val_acc"] for r in runs["dygraph"]])
    rec.finish(ratio, f"demo search {median([r['wall_s'] for r in runs['auto']]):.0f}s the new way vs "
                      f"{median([r['wall_s'] for r in runs['dygraph']]):.0f}s the old way: {ratio:.2f}; best val_acc "
                      f"{acc_new:.3f} vs {acc_old:.3f}; a trial epoch {per_epoch['auto']:.1f}s vs "
                      f"{per_epoch['dygraph']:.1f}s ({per_epoch['auto'] / per_epoch['dygraph']:.2f})",
               {"auto": runs["auto"], "dygraph": runs["dygraph"], "val_acc_new": acc_new, "val_acc_old": acc_old,
                "val_acc_not_lower_by_more_than_0.02": acc_new >= acc_old - 0.02, "repeats": REPEATS,
                "trial_seconds_per_epoch": per_epoch,
                "trial_epoch_ratio": round(per_epoch["auto"] / per_epoch["dygraph"], 3)},
               notes="'dygraph' is the old way (eval_engine dygraph, depthwise native), 'auto' the new way "
                     "(eval_engine auto, depthwise auto). The two searches run the same seed, but their trials "
                     "differ once the first results differ (TPE's proposals, ASHA's cuts), so the JSON also has "
                     "each search's trial seconds per epoch run (evaluation included).")


if __name__ == "__main__":
    main()
