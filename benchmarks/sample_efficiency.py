"""6. Sample efficiency, measured on the replay (benchmarks/replay.py, issue 18): the epochs autoft's default search
(``search.sampler: tpe``, ``search.scheduler: asha`` with every other search key at its default) needs until one of
its evaluations reaches the target, over random search's whole budget (20 trials x the table's epochs, no early
stopping); target = random search's median best over the seeds. The recorded demo table (the demo's space plus
strategy), 30 seeds: goal <= 1/3 at the median and <= 1/2 at the 90th percentile.

The first version ran three real searches of 10 trials (0.367 in its last run: too few seeds to tell a sampler from
noise, and too slow to run more); the replay runs autoft's own searcher and Ray's scheduler classes on recorded
learning curves, so thirty seeds take seconds.
"""
from __future__ import annotations

from benchmarks import Goal, Recorder, quiet


def main() -> None:
    quiet()
    import logging

    import optuna

    from benchmarks.replay import DATA, SEEDS, Table, score

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("autoft").setLevel(logging.WARNING)
    rec = Recorder("sample_efficiency", Goal("TPE+ASHA epochs to random search's median best / random's epochs, "
                                             "median over replayed seeds (p90 <= 1/2 too)", "<=", 1 / 3))
    table = Table.load(DATA / "curves-demo.json")
    res = score(table, [("tpe", "asha", {})], SEEDS)
    core, rand = res["methods"]["tpe+asha"], res["methods"]["random+fifo"]
    rec.finish(core["ratio_median"],
               f"TPE+ASHA median {core['ratio_median']:.3f}, p90 {core['ratio_p90']:.3f} of random search's "
               f"{res['epoch_budget']} epochs ({core['reached']}/{SEEDS} seeds reach {res['target']:.4f}; random "
               f"search itself {rand['ratio_median']:.3f}); {res['recorded']}/{res['grid_size']} demo configurations "
               f"recorded",
               {"seeds": SEEDS, "table": "demo", "recorded": res["recorded"], "grid_size": res["grid_size"],
                "target": res["target"], "epoch_budget": res["epoch_budget"], "tpe_asha": core, "random": rand},
               notes="replayed: autoft's StudySearch over the Optuna sampler search.sampler builds and Ray Tune's "
                     "scheduler class, on benchmarks/data/curves-demo.json; inf when a seed never reaches the target",
               also=core["ratio_p90"] <= 0.5, seeds=SEEDS)


if __name__ == "__main__":
    main()
