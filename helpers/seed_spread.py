"""How far a finished run's numbers move when only the training seed changes.

One run is one draw: its test AUC carries the test set's sampling error (the interval says how much) and
also the luck of its initialisation and batch order, which no interval over test groups shows. This
retrains a finished run's exact settings under other seeds, through the same `helpers.training.run`,
and puts each seed's validation AUC (what chose the run) beside its video-level test AUC with its
interval, then their mean, sd, min and max. It reports; it chooses nothing: no seed is picked by its
test score, and the report's run stays the one its notebook trained.

The run with the source's own seed also checks reproducibility: on the same machine with the same
thread count its predictions must equal the source's (`same_predictions`). Another CPU kind or thread
count changes the floating-point sums (oneDNN picks other kernels), so a same-seed run there is a
different draw too, within this spread.

    python -m helpers.seed_spread --run data/processed/crop_study/crop-meso4-full-s0 --seeds 0,1,2,3,4

Run it from the repository root (a run's paths are relative to it). The runs go under
data/processed/_seeds, outside the folders notebook 07 reads, so none reaches the leaderboard.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from helpers import results, training

logger = logging.getLogger("helpers.seed_spread")  # not __name__: under `python -m` that is __main__, outside the helpers logger
COLUMNS = ["seed", "best_epoch", "val_auc", "test_auc", "test_lo", "test_hi", "seconds", "same_predictions"]


def seed_configs(run_dir: str | Path, seeds: list[int], out_dir: str | Path) -> tuple[results.Run, list[dict]]:
    """The finished run at `run_dir` and one training config per seed: its settings with only seed, out_dir
    and run_name changed (a fresh run, never a resume)."""
    source = results.load_run(run_dir)
    settings = {key: value for key, value in source.config.items() if key in training.DEFAULTS}
    split_csv = Path(settings.get("split_csv", ""))
    if not split_csv.is_file():
        raise FileNotFoundError(f"{split_csv} (the split {Path(run_dir) / 'config.json'} was trained on) is "
                                "missing: run from the repository root, after notebooks 01-03")
    configs = [training.make_config(**{**settings, "seed": int(seed), "resume": False, "out_dir": str(out_dir),
                                       "run_name": f"{source.name}-seed{seed}"}) for seed in seeds]
    return source, configs


def row_of(run: results.Run, source: results.Run) -> dict:
    """One seed's line: the kept epoch, validation AUC (frame, as the leaderboard ranks), video test AUC."""
    auc = run.metrics["video"]["auc"]
    same = None
    if run.config["seed"] == source.config["seed"]:
        mine, theirs = run.predictions, source.predictions
        same = bool(len(mine) == len(theirs) and (mine["face_path"].to_numpy() == theirs["face_path"].to_numpy()).all()
                    and np.array_equal(mine["logit"].to_numpy(), theirs["logit"].to_numpy()))
    return {"seed": run.config["seed"], "best_epoch": run.metrics.get("best_epoch"), "val_auc": run.val_auc,
            "test_auc": auc["value"], "test_lo": auc["lo"], "test_hi": auc["hi"],
            "seconds": run.metrics.get("train_seconds"), "same_predictions": same}


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean, sd (n - 1), min and max over the seeds of validation and test AUC."""
    stats = table[["val_auc", "test_auc"]].agg(["mean", "std", "min", "max"])
    return stats.rename(index={"std": "sd"})


def spread(run_dir: str | Path, seeds: list[int], out_dir: str | Path) -> pd.DataFrame:
    """Train `run_dir`'s settings under each seed; one row per seed, also written to out_dir/seed_spread.csv."""
    source, configs = seed_configs(run_dir, seeds, out_dir)
    rows = []
    for config in configs:
        logger.info("training %s (seed %s)", config["run_name"], config["seed"])
        rows.append(row_of(results.load_run(training.run(config)), source))
    table = pd.DataFrame(rows, columns=COLUMNS)
    out = Path(out_dir) / "seed_spread.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    table.assign(source=str(run_dir)).to_csv(out, index=False)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.seed_spread", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished run folder (holding config.json)")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated training seeds")
    parser.add_argument("--out-dir", type=Path, default=Path("data/processed/_seeds"))
    args = parser.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds {args.seeds!r}: give whole numbers separated by commas, e.g. 0,1,2")
    if not seeds:
        parser.error("--seeds is empty")
    try:
        table = spread(args.run, seeds, args.out_dir / args.run.name)
    except FileNotFoundError as err:
        logger.error("%s", err)
        return 1
    print(table.round(3).to_string(index=False))
    print("\n" + summary(table).round(3).to_string())
    print(f"\nVideo-level test AUC with 95% intervals over identity groups; val_auc is what chose the run. "
          f"Reported only: nothing here is chosen by a test number. Written to {args.out_dir / args.run.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
