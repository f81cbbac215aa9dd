"""How the demo profile's training budgets were chosen: candidate (image size, epochs, learning rate) per
model, trained on the demo's train split and compared by VALIDATION AUC only; test is never read.

The demo runs on a laptop CPU, so every minute spent on a model must buy something it can learn. For
each model this trains the candidates below with `helpers.training.run` (the loop notebooks 04-06 use,
the same split, augmentation and imbalance handling), reads each run's best validation AUC (the epoch
the checkpoint kept) and its wall time, and marks per model the candidate with the highest validation
AUC among those that fit the model's time ALLOWANCE; where two are within `--tie` of each other the
cheaper one wins (a demo budget is a cost too). The allowances share out what `make report`'s 15
minutes on a 2-core machine leave for training after set-up, face extraction, the split and the report
(about 10 minutes for nine runs): MesoNet learns within its share, the from-scratch ResNets and VGG19 get
what is left, and the table keeps the dearer candidates too, to show what a larger budget buys. The
chosen values are what the notebooks' parameter cells hold (04: ViT, 05: ResNets, 06: MODEL_BUDGETS);
params/demo_budgets.csv keeps the table the choice was made from.

Runs go under data/processed/_budgets (never into the report's run folders), so nothing here can
reach the leaderboard. Run after `make notebooks` has written the demo split (notebooks 01-03):

    python scripts/demo_budgets.py [--models 06:meso4,05:resnet50] [--split-csv data/interim/03_split/split.csv]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from helpers import results, training  # noqa: E402

# "<notebook>:<model>" -> candidates, each trained with that notebook's own defaults (NOTEBOOK_SETTINGS)
# plus the candidate. Epochs are a maximum: the run keeps the epoch with the best validation AUC, so a
# longer budget can only cost time, never pick a later, worse epoch.
VIT = training.vit_kwargs("tiny", 8, 4)
NOTEBOOK_SETTINGS = {
    "04": dict(lr=5e-4, weight_decay=0.05, warmup_epochs=1.0, model_kwargs=VIT),
    "05": dict(lr=3e-4, weight_decay=1e-4, warmup_epochs=1.0),
    "06": dict(lr=1e-3, optimizer="adam", schedule="constant", weight_decay=0.0, warmup_epochs=0.0),
}
CANDIDATES: dict[str, list[dict]] = {
    "06:meso4": [dict(image_size=64, epochs=24, augment=True), dict(image_size=64, epochs=24, augment=False),
                 dict(image_size=64, epochs=40, augment=False)],
    "04:vit": [dict(image_size=48, epochs=16, augment=True), dict(image_size=48, epochs=16, augment=False),
               dict(image_size=48, epochs=8, augment=False)],
    "05:resnet50": [dict(image_size=32, epochs=8, augment=False), dict(image_size=48, epochs=8, augment=False)],
    "06:vgg19": [dict(image_size=32, epochs=8, lr=1e-4, augment=False), dict(image_size=32, epochs=3, lr=1e-4,
                                                                             augment=False)],
    "06:resnet50": [dict(image_size=48, epochs=8, augment=False), dict(image_size=32, epochs=3, augment=False)],
    "05:resnet101": [dict(image_size=48, epochs=8, augment=False), dict(image_size=48, epochs=3, augment=False)],
}
# Seconds one run of the model may take (the crop study trains two, one per variant): the shares of about
# 10 minutes of training. A candidate over its allowance stays in the table but cannot be chosen. The crop
# study's ResNet50 had 35 s until a fresh-clone `make report` measured 10 minutes in all, leaving room for
# its 48 px candidate (about 82 s a run, twice); the choice among the affordable ones is still validation's.
ALLOWANCE = {"06:meso4": 30, "04:vit": 40, "05:resnet50": 120, "06:vgg19": 60, "06:resnet50": 90,
             "05:resnet101": 90}
COMMON = dict(accelerator="cpu", batch_size=32, n_boot=100)


def run_candidates(split_csv: Path, out_dir: Path, models: list[str], only: set[int] | None = None) -> pd.DataFrame:
    """Train each candidate of `models` (those numbered in `only`, when given); one row per run."""
    rows = []
    for key in models:
        notebook, model = key.split(":")
        for i, candidate in enumerate(CANDIDATES[key]):
            if only is not None and i not in only:
                continue
            settings = {**COMMON, **NOTEBOOK_SETTINGS[notebook], **candidate}
            config = training.make_config(**settings, model=model, split_csv=str(split_csv), out_dir=str(out_dir),
                                          run_name=f"budget-{notebook}-{model}-c{i}")
            start = time.perf_counter()
            run = results.load_run(training.run(config))
            best = run.history.loc[run.history["val/auc"].idxmax()]
            rows.append({"model": key, "candidate": i, "image_size": settings["image_size"],
                         "epochs": settings["epochs"], "lr": settings["lr"], "augment": settings["augment"],
                         "val_auc": round(run.val_auc, 3), "best_epoch": int(best.epoch) + 1,
                         "train_auc_there": round(float(best["train/auc"]), 3),
                         "seconds": round(time.perf_counter() - start)})
            print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1), flush=True)
    return pd.DataFrame(rows)


def choose(table: pd.DataFrame, tie: float) -> pd.DataFrame:
    """`affordable` (within ALLOWANCE) and `chosen`: per model the best validation AUC among the affordable
    candidates, the cheapest of those within `tie` of it."""
    table = table.copy()
    table["affordable"] = table.seconds <= table.model.map(ALLOWANCE).fillna(float("inf"))
    table["chosen"] = False
    for _, group in table[table.affordable].groupby("model", sort=False):
        near = group[group.val_auc >= group.val_auc.max() - tie]
        table.loc[near.seconds.idxmin(), "chosen"] = True
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split-csv", type=Path, default=ROOT / "data/interim/03_split/split.csv")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "data/processed/_budgets")
    parser.add_argument("--models", default=",".join(CANDIDATES))
    parser.add_argument("--tie", type=float, default=0.02, help="val AUC within which the cheaper candidate wins")
    parser.add_argument("--candidates", default="", help="comma-separated candidate numbers to train (default all)")
    parser.add_argument("--table", type=Path, default=ROOT / "params/demo_budgets.csv")
    args = parser.parse_args(argv)
    if not args.split_csv.is_file():
        print(f"{args.split_csv} is missing: run notebooks 01-03 of the demo first "
              "(python -m helpers.pipeline --only 01,02,03)", file=sys.stderr)
        return 1
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(CANDIDATES))
    if unknown:
        print(f"no candidates for {unknown}; models with candidates: {', '.join(CANDIDATES)}", file=sys.stderr)
        return 1
    only = {int(i) for i in args.candidates.split(",")} if args.candidates else None
    table = run_candidates(args.split_csv, args.out_dir, models, only)
    if args.table.is_file():  # keep the rows of an earlier run that this one did not redo
        earlier = pd.read_csv(args.table)
        redone = set(zip(table.model, table.candidate))
        keep = [(m, c) not in redone for m, c in zip(earlier.model, earlier.candidate)]
        table = pd.concat([earlier[keep], table], ignore_index=True)
    order = {key: i for i, key in enumerate(CANDIDATES)}
    table = choose(table.sort_values(["model", "candidate"], key=lambda s: s.map(order) if s.name == "model" else s,
                                     kind="stable").reset_index(drop=True), args.tie)
    args.table.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.table, index=False)
    print("\n" + table.to_string(index=False))
    print(f"\nwritten to {args.table}; the chosen rows are the notebooks' defaults")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
