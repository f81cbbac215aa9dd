"""The crop study: do CNNs detect deepfakes better on full faces or on the eyes and lower face alone?

Every model is trained once per face variant (and per seed) with the same settings, so a difference
between variants is the crop's and not the budget's. Results are compared on the *same test faces*:
`predictions.csv` always names the full face in `face_path`, so the runs of one model pair up face by
face, and McNemar's test on the correct/incorrect pairs says whether the variants really differ.

With several seeds the table shows the mean ± sd of each cell over seeds, and McNemar's test is run
once, on the seed ensemble (the mean prob_fake over seeds per face): one test per model, on the same
faces, rather than one per seed with its multiple-testing problem. `paired_tests` gives the per-seed
tests too, to see whether the seeds agree.

The published MesoNet weights (Afchar et al. 2018) can be scored on the same test faces as reference
rows (`reference_predictions`).
"""
from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import special

from helpers import metrics as M
from helpers import results, training
from helpers.datasets import load_crop, read_split, variant_column
from helpers.models import MODEL_NAMES, build_model, load_keras_weights
from helpers.runtime import progress

logger = logging.getLogger(__name__)

# The study's MesoNet recipe; the notebook's defaults, here so tests and scripts can share them.
STUDY_SETTINGS = {"epochs": 50, "batch_size": 16, "lr": 0.002, "optimizer": "adam", "weight_decay": 0.0}
MODEL_LABELS = {"meso4": "MesoNet (Meso4)", "mesoinception4": "MesoInception4", "vgg19": "VGG19",
                "resnet50": "ResNet50", "resnet101": "ResNet101", "vit": "ViT"}
# Models with no ImageNet weights in this project: they train from scratch whatever PRETRAINED says.
NO_PRETRAINED = {"meso4", "mesoinception4", "vit"}
# Settings that must match for a finished run to be reused (anything else, devices say, may differ).
RUN_IDENTITY = ("split_csv", "model", "model_kwargs", "variant", "seed", "image_size", "epochs", "batch_size", "lr",
                "optimizer", "weight_decay", "warmup_epochs", "pretrained", "augment", "imbalance",
                "limit_train_batches")
# The authors' weight files -> our architecture name.
PUBLISHED_WEIGHTS = {"Meso4_DF": "meso4", "Meso4_F2F": "meso4",
                     "MesoInception_DF": "mesoinception4", "MesoInception_F2F": "mesoinception4"}
PREDICTION_COLUMNS = ["model", "variant", "seed", "run", "face_path", "video_id", "group", "label", "prob_fake", "logit",
                      "split", "threshold", "trained"]
SCORE_METRICS = ("balanced_accuracy", "auc")
METRIC_LABELS = {"balanced_accuracy": "Balanced acc.", "auc": "AUC"}
VARIANT_LABELS = {"full": "full face", "eyes": "eyes", "lower": "lower face", "eyes_lower": "eyes + lower face"}


def run_name(model: str, variant: str, seed: int) -> str:
    """The run folder name of one cell of the study, e.g. crop-meso4-full-s0."""
    return f"crop-{model}-{variant}-s{int(seed)}"


BUDGET_KEYS = ("image_size", "epochs", "batch_size", "lr", "warmup_epochs")


def check_budgets(budgets: dict | None) -> dict[str, dict]:
    """`budgets` ({model: {image_size, epochs, ...}}) checked: known models and BUDGET_KEYS only."""
    budgets = {str(m): dict(b) for m, b in (budgets or {}).items()}
    for model, budget in budgets.items():
        if model not in MODEL_NAMES:
            raise ValueError(f"MODEL_BUDGETS names an unknown model {model!r}; valid names are: {', '.join(MODEL_NAMES)}")
        unknown = sorted(set(budget) - set(BUDGET_KEYS))
        if unknown:
            raise ValueError(f"MODEL_BUDGETS[{model!r}] sets {unknown}; a budget may set only {list(BUDGET_KEYS)}")
    return budgets


def plan_runs(models: Sequence[str], variants: Sequence[str], seeds: Iterable[int],
              recipes: dict[str, dict] | None = None, budgets: dict[str, dict] | None = None,
              **settings) -> list[dict]:
    """One training config per (model, variant, seed); every variant and seed of a model, the same budget.

    `budgets` maps a model to its own image size, epochs ... (the demo's were chosen on validation by
    scripts/demo_budgets.py); a model without one uses `settings`. `recipes` maps a model to the
    settings chosen for it on validation (`choose_recipes`: learning rate and warm-up), applied last.
    """
    budgets = check_budgets(budgets)
    taken = {"model", "variant", "seed", "run_name"} & set(settings)
    if taken:
        raise ValueError(f"plan_runs sets {sorted(taken)} itself; pass models, variants and seeds instead")
    seeds = [int(s) for s in seeds]
    for name, values in (("models", models), ("variants", variants), ("seeds", seeds)):
        if not values:
            raise ValueError(f"{name} is empty: the study needs at least one")
        if len(set(values)) != len(values):
            raise ValueError(f"{name} lists a value twice: {list(values)}")
    unknown = sorted(set(models) - set(MODEL_NAMES))
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; valid names are: {', '.join(MODEL_NAMES)}")
    for variant in variants:
        variant_column(variant)
    configs = []
    for model in models:
        pretrained = bool(settings.get("pretrained", False)) and model not in NO_PRETRAINED
        recipe = {**budgets.get(model, {}), **dict((recipes or {}).get(model, {}))}
        for variant in variants:
            for seed in seeds:
                configs.append(training.make_config(**{**settings, **recipe, "pretrained": pretrained}, model=model,
                                                    variant=variant, seed=seed, run_name=run_name(model, variant, seed)))
    return configs


RECIPE_KEYS = ("lr", "warmup_epochs")


def choose_recipes(models: Sequence[str], recipes: Sequence[dict], variant: str = "full", seed: int = 0,
                   keep_checkpoints: bool = False, budgets: dict[str, dict] | None = None,
                   **settings) -> tuple[dict[str, dict], pd.DataFrame]:
    """Per model, the recipe (learning rate, warm-up) with the highest VALIDATION AUC on `variant`.

    One tuning run per (model, recipe) named crop-tune-<model>-r<i>; test predictions are written
    by every run but never read here. With a single recipe nothing is trained and it is every
    model's recipe. Returns {model: recipe} and a table of every candidate's validation AUC.
    """
    recipes = [dict(r) for r in recipes]
    if not recipes:
        raise ValueError("RECIPES is empty: give at least one {lr: ..., warmup_epochs: ...}")
    for recipe in recipes:
        unknown = sorted(set(recipe) - set(RECIPE_KEYS))
        if unknown:
            raise ValueError(f"a recipe sets {unknown}; recipes may set only {list(RECIPE_KEYS)}, got {recipe}")
    budgets = check_budgets(budgets)
    if len(recipes) == 1:
        # The one recipe fills in only what a model's own budget leaves open (its budget's lr wins).
        chosen = {m: {k: v for k, v in recipes[0].items() if k not in budgets.get(m, {})} for m in models}
        table = pd.DataFrame([{"model": m, "recipe": 0, **recipes[0], **budgets.get(m, {}), "val_auc": math.nan,
                               "chosen": True} for m in models])
        return chosen, table
    configs = []
    # Tuning runs live apart (results.find_runs skips _tuning), so the leaderboard lists only the study.
    settings = {**settings, "out_dir": str(Path(settings.get("out_dir", training.DEFAULTS["out_dir"])) / "_tuning")}
    for model in models:
        pretrained = bool(settings.get("pretrained", False)) and model not in NO_PRETRAINED
        for i, recipe in enumerate(recipes):
            configs.append(training.make_config(**{**settings, **budgets.get(model, {}), **recipe,
                                                   "pretrained": pretrained}, model=model,
                                                variant=variant, seed=seed, run_name=f"crop-tune-{model}-r{i}"))
    manifest = train_all(configs, keep_checkpoints=keep_checkpoints)
    rows = []
    for (model, i), run_dir in zip([(m, i) for m in models for i in range(len(recipes))], manifest["run_dir"]):
        rows.append({"model": model, "recipe": i, **recipes[i], "val_auc": results.load_run(run_dir).val_auc})
    table = pd.DataFrame(rows)
    best = table.loc[table.groupby("model", sort=False)["val_auc"].idxmax()]
    table["chosen"] = table.index.isin(best.index)
    return {row.model: recipes[int(row.recipe)] for row in best.itertuples()}, table


def _plain(value):
    """A setting as config.json stores it (tuples become lists, paths strings)."""
    return json.loads(json.dumps(value, default=str))


def changed_settings(config: dict, run_dir: str | Path) -> list[str]:
    """What differs between `config` and the config.json of a finished run ("epochs 1 -> 2", ...)."""
    saved = json.loads((Path(run_dir) / "config.json").read_text())
    changes = [f"{key} {saved.get(key)!r} -> {config.get(key)!r}" for key in RUN_IDENTITY
               if _plain(saved.get(key)) != _plain(config.get(key))]
    split_csv = Path(str(config.get("split_csv", "")))
    if split_csv.is_file() and (Path(run_dir) / "predictions.csv").is_file():
        # By content, not date: notebook 03 rewrites the same split on every `make report`.
        split = read_split(split_csv)
        scored = pd.read_csv(Path(run_dir) / "predictions.csv", usecols=["face_path", "split"])
        now = {name: set(split.loc[split["split"] == name, "face_path"]) for name in ("val", "test")}
        then = {name: set(scored.loc[scored["split"] == name, "face_path"]) for name in ("val", "test")}
        train = int((split["split"] == "train").sum())
        if now != then or saved.get("data", {}).get("train", {}).get("faces", train) != train:
            changes.append(f"{split_csv} holds another split than the one this run was trained on")
    return changes


def train_all(configs: Sequence[dict], keep_checkpoints: bool = False) -> pd.DataFrame:
    """Train every config in turn; with resume, reuse finished runs of the same settings and continue broken ones.

    Returns a manifest, one row per run: run, model, variant, seed, run_dir, status (trained, reused,
    resumed, retrained) and reason. Unless `keep_checkpoints`, a finished run's Lightning checkpoints
    are deleted: model.pt holds its best weights, and a VGG19 checkpoint with its Adam state is 1.7 GB.
    """
    rows = []
    for config in progress(list(configs), desc="crop study runs", unit="run"):
        config = training.make_config(**config)
        run_dir = training.run_dir_of(config)
        status, reason = "trained", ""
        finished = (run_dir / "metrics.json").exists() and (run_dir / "config.json").exists()
        if config["resume"] and finished:
            changes = changed_settings(config, run_dir)
            if not changes:
                status = "reused"
            else:
                # Resuming a checkpoint trained under other settings would mix two recipes in one run.
                status, reason = "retrained", "settings changed: " + "; ".join(changes)
                config = {**config, "resume": False}
        elif config["resume"] and (run_dir / "checkpoints" / "last.ckpt").exists():
            status, reason = "resumed", "continued from checkpoints/last.ckpt"
        if status != "reused":
            run_dir = training.run(config)
        if not keep_checkpoints and (run_dir / "metrics.json").exists():
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        rows.append({"run": config["run_name"], "model": config["model"], "variant": config["variant"],
                     "seed": int(config["seed"]), "run_dir": str(run_dir), "status": status, "reason": reason})
    return pd.DataFrame(rows, columns=["run", "model", "variant", "seed", "run_dir", "status", "reason"])


def trained_on_validation(run, n_boot: int = 1000, seed: int = 0) -> tuple[bool, dict]:
    """Whether a run learned anything, judged on VALIDATION only: its val AUC interval (groups resampled) clears 0.5.

    A model whose validation AUC is at chance "did not train" and is not compared: two collapsed
    variants would otherwise read as "no significant difference".
    """
    val = run.val
    if val.empty or val["label"].nunique() < 2:
        return False, {"value": math.nan, "lo": math.nan, "hi": math.nan}
    groups = val["group"] if "group" in val.columns and val["group"].notna().all() else val["video_id"]
    auc = M.bootstrap_ci(val["label"], val["prob_fake"], n_boot=n_boot, seed=seed, groups=groups)["auc"]
    return bool(np.isfinite(auc["lo"]) and auc["lo"] > 0.5), auc


def collect_predictions(runs: Iterable) -> pd.DataFrame:
    """The test predictions of finished runs (Run objects or folders), stacked with model, variant, seed, run.

    Each row also carries its run's validation-chosen `threshold` and whether the run `trained`
    (validation AUC above chance, `trained_on_validation`).
    """
    frames, seen = [], {}
    for item in runs:
        run = item if isinstance(item, results.Run) else results.load_run(item)
        key = (run.config["model"], run.config["variant"], int(run.config["seed"]))
        if key in seen:
            raise ValueError(f"two runs are {key} (model, variant, seed): {seen[key]} and {run.path}; "
                             "pass one run per cell of the study")
        seen[key] = run.path
        test = run.test
        if test.empty:
            raise ValueError(f"{run.path / 'predictions.csv'} has no test rows: was the run finished?")
        trained, _ = trained_on_validation(run)
        group = test["group"] if "group" in test.columns else test["video_id"]
        frames.append(test.assign(model=key[0], variant=key[1], seed=key[2], run=run.name, group=group,
                                  threshold=run.threshold, trained=trained).reindex(columns=PREDICTION_COLUMNS))
    if not frames:
        raise ValueError("no runs given: train the study first (crop_study.train_all)")
    return pd.concat(frames, ignore_index=True)


def _check_predictions(predictions: pd.DataFrame) -> pd.DataFrame:
    missing = sorted({"model", "variant", "seed", "face_path", "video_id", "label", "prob_fake"} - set(predictions.columns))
    if missing:
        raise ValueError(f"predictions lack the column(s) {missing}; build them with crop_study.collect_predictions")
    if "split" in predictions.columns:  # rows without a split (reference rows, say) count as test rows
        predictions = predictions[predictions["split"].isna() | (predictions["split"] == "test")]
    if predictions.empty:
        raise ValueError("no test predictions to compare")
    duplicated = predictions.duplicated(["model", "variant", "seed", "face_path"])
    if duplicated.any():
        example = predictions.loc[duplicated, ["model", "variant", "seed", "face_path"]].iloc[0].tolist()
        raise ValueError(f"{int(duplicated.sum())} face(s) are scored twice by one run, e.g. {example}")
    defaults = {"group": predictions["video_id"], "threshold": 0.5, "trained": True}
    for column, value in defaults.items():
        if column not in predictions.columns:
            predictions = predictions.assign(**{column: value})
        elif predictions[column].isna().any():
            predictions = predictions.assign(**{column: predictions[column].where(predictions[column].notna(), value)})
    return predictions.assign(seed=predictions["seed"].astype(int), trained=predictions["trained"].astype(bool))


def paired_faces(predictions: pd.DataFrame, model: str) -> pd.DataFrame:
    """One row per test face every run of `model` scored: face_path, video_id, label (the faces compared)."""
    own = predictions[predictions["model"] == model]
    runs = own.groupby(["variant", "seed"])["face_path"].apply(set)
    common = set.intersection(*runs.tolist())
    if not common:
        raise ValueError(f"the runs of {model} share no test face: were they trained on the same split.csv?")
    largest = max(len(faces) for faces in runs)
    if len(common) < largest:
        logger.warning(f"{model}: only {len(common)} of {largest} test faces were scored by every variant and "
                       "seed; the comparison uses those")
    faces = own[own["face_path"].isin(common)].drop_duplicates("face_path")[["face_path", "video_id", "group", "label"]]
    labels = own[own["face_path"].isin(common)].groupby("face_path")["label"].nunique()
    if (labels > 1).any():
        raise ValueError(f"{model}: {int((labels > 1).sum())} face(s) carry different labels in different runs, "
                         f"e.g. {labels[labels > 1].index[0]}; the runs were trained on different splits")
    return faces.sort_values("face_path").reset_index(drop=True)


def _aligned(predictions: pd.DataFrame, model: str, variant: str, seed: int, faces: pd.DataFrame) -> np.ndarray:
    """prob_fake of one run, in the order of `faces`."""
    run = predictions[(predictions["model"] == model) & (predictions["variant"] == variant) & (predictions["seed"] == seed)]
    return run.set_index("face_path")["prob_fake"].reindex(faces["face_path"]).to_numpy(dtype=np.float64)


def _seeds(own: pd.DataFrame, variant: str) -> list[int]:
    return sorted(own.loc[own["variant"] == variant, "seed"].unique())


def _thresholds(own: pd.DataFrame, variant: str, seeds: list[int]) -> list[float]:
    first = own[own["variant"] == variant].drop_duplicates("seed").set_index("seed")["threshold"]
    return [float(first[s]) for s in seeds]


def variant_scores(predictions: pd.DataFrame, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> pd.DataFrame:
    """Balanced accuracy and AUC with 95% intervals per model and variant, on the model's paired test faces.

    Intervals resample identity groups; with several seeds, groups and seeds are resampled together
    (a hierarchical bootstrap) and the value is the mean over seeds. Each run is scored at its own
    validation-chosen threshold.
    """
    predictions = _check_predictions(predictions)
    rows = []
    for model in predictions["model"].drop_duplicates():
        faces = paired_faces(predictions, model)
        own = predictions[predictions["model"] == model]
        for variant in own["variant"].drop_duplicates():
            seeds = _seeds(own, variant)
            probs = np.stack([_aligned(own, model, variant, s, faces) for s in seeds])
            ci = M.hierarchical_bootstrap(faces["label"], probs, faces["group"], n_boot=n_boot, seed=seed, alpha=alpha,
                                          threshold=_thresholds(own, variant, seeds))
            trained = bool(own.loc[own["variant"] == variant, "trained"].all())
            row = {"model": model, "variant": variant, "n_seeds": len(seeds), "n": len(faces),
                   "groups": int(faces["group"].nunique()), "trained": trained}
            for metric in SCORE_METRICS:
                row.update({metric: ci[metric]["value"], f"{metric}_lo": ci[metric]["lo"], f"{metric}_hi": ci[metric]["hi"]})
            rows.append(row)
    return pd.DataFrame(rows)


def _correct(prob: np.ndarray, labels: pd.Series, threshold: float) -> np.ndarray:
    return (prob > threshold) == (M.labels_to_int(labels) == 1)


PAIRED_COLUMNS = ["model", "auc_diff", "auc_diff_lo", "auc_diff_hi", "auc_p", "auc_p_holm", "bal_acc_diff",
                  "bal_acc_diff_lo", "bal_acc_diff_hi", "bal_acc_p", "b", "c", "mcnemar_p", "n", "groups", "n_seeds",
                  "trained"]


def paired_tests(predictions: pd.DataFrame, normal: str = "full", cropped: str = "eyes_lower", n_boot: int = 1000,
                 seed: int = 0, alpha: float = 0.05) -> pd.DataFrame:
    """Cropped minus normal per model: a paired group bootstrap of the AUC and balanced-accuracy differences.

    Both variants are scored on the same resamples of identity groups (seeds resampled too when there
    are several), the p-values are two-sided bootstrap p-values, and `auc_p_holm` adjusts the AUC
    p-values across the models compared (Holm). McNemar's b (right on normal, wrong on cropped), c and
    p on the seed ensemble stay as a secondary check. Models that did not train on validation are
    listed with trained = False and left out of the Holm family.
    """
    predictions = _check_predictions(predictions)
    rows = []
    for model in predictions["model"].drop_duplicates():
        own = predictions[predictions["model"] == model]
        seeds = {v: _seeds(own, v) for v in (normal, cropped)}
        if not seeds[normal] or not seeds[cropped]:
            continue  # a reference model, or a model trained on one variant only: nothing to pair
        faces = paired_faces(own[own["variant"].isin([normal, cropped])], model)
        probs = {v: np.stack([_aligned(own, model, v, s, faces) for s in seeds[v]]) for v in (normal, cropped)}
        thresholds = {v: _thresholds(own, v, seeds[v]) for v in (normal, cropped)}
        diff = M.hierarchical_paired_bootstrap(faces["label"], probs[normal], probs[cropped], faces["group"],
                                               thresholds[normal], thresholds[cropped], n_boot, seed, alpha)
        mc = M.mcnemar(_correct(probs[normal].mean(axis=0), faces["label"], float(np.mean(thresholds[normal]))),
                       _correct(probs[cropped].mean(axis=0), faces["label"], float(np.mean(thresholds[cropped]))))
        trained = bool(own.loc[own["variant"].isin([normal, cropped]), "trained"].all())
        rows.append({"model": model, "auc_diff": diff["auc"]["diff"], "auc_diff_lo": diff["auc"]["lo"],
                     "auc_diff_hi": diff["auc"]["hi"], "auc_p": diff["auc"]["p_value"],
                     "bal_acc_diff": diff["balanced_accuracy"]["diff"], "bal_acc_diff_lo": diff["balanced_accuracy"]["lo"],
                     "bal_acc_diff_hi": diff["balanced_accuracy"]["hi"], "bal_acc_p": diff["balanced_accuracy"]["p_value"],
                     "b": mc["b"], "c": mc["c"], "mcnemar_p": mc["p_value"], "n": len(faces),
                     "groups": int(faces["group"].nunique()), "n_seeds": len(seeds[normal]), "trained": trained})
    table = pd.DataFrame(rows, columns=PAIRED_COLUMNS)
    family = table["trained"].astype(bool) & table["auc_p"].notna()
    table["auc_p_holm"] = np.nan
    if family.any():
        table.loc[family, "auc_p_holm"] = M.holm(table.loc[family, "auc_p"].tolist())
    return table


def fmt_p(p: float) -> str:
    """p=0.40, p=0.004, p<0.001."""
    if p is None or not np.isfinite(p):
        return "p=n/a"
    if p < 0.001:
        return "p<0.001"
    return f"p={p:.3f}" if p < 0.01 else f"p={p:.2f}"


def verdict(row: dict | pd.Series, alpha: float = 0.05) -> str:
    """Plain words for one model's paired comparison: "did not train", "cropped worse (ΔAUC ...)", ..."""
    if not bool(row["trained"]):
        return "did not train (validation AUC at chance): not compared"
    delta = f"ΔAUC {row['auc_diff']:+.3f} [{row['auc_diff_lo']:+.3f}, {row['auc_diff_hi']:+.3f}]"
    p = row["auc_p_holm"]
    if np.isfinite(p) and p < alpha and row["auc_diff"] != 0:
        return f"cropped {'worse' if row['auc_diff'] < 0 else 'better'} ({delta}, Holm {fmt_p(p)})"
    return f"no significant difference ({delta}, Holm {fmt_p(p)})"


def _cell(row: pd.Series | None, metric: str, digits: int = 3) -> tuple[str, dict]:
    """The text of one table cell and its numbers (value [lo, hi]; seeds pooled when there are several)."""
    if row is None or not np.isfinite(row[metric]):
        return "n/a", {"": math.nan, "_lo": math.nan, "_hi": math.nan}
    text = results.fmt_interval({"value": row[metric], "lo": row[f"{metric}_lo"], "hi": row[f"{metric}_hi"]}, digits)
    if row["n_seeds"] > 1:
        text += f" ({int(row['n_seeds'])} seeds)"
    return text, {"": row[metric], "_lo": row[f"{metric}_lo"], "_hi": row[f"{metric}_hi"]}


def crop_study_table(runs_or_predictions, normal: str = "full", cropped: str = "eyes_lower", n_boot: int = 1000,
                     seed: int = 0, alpha: float = 0.05, reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """The study's table: per model, balanced accuracy and AUC on normal and cropped images, and the paired test.

    `runs_or_predictions` is a predictions frame (collect_predictions) or finished runs; `reference`
    (reference_predictions) adds rows scored on one variant, shown untested. Cells are "value [95%
    interval]" from a bootstrap over identity groups (and seeds, pooled hierarchically, when there are
    several). The verdict comes from the paired group bootstrap of the AUC difference, Holm-adjusted
    across models; McNemar's b, c and p are a secondary column. Numeric columns are kept for plots;
    `display_columns(table)` are the ones to read.
    """
    predictions = runs_or_predictions
    if not isinstance(predictions, pd.DataFrame):
        predictions = collect_predictions(runs_or_predictions)
    if reference is not None and len(reference):
        predictions = pd.concat([predictions, reference.reindex(columns=PREDICTION_COLUMNS)], ignore_index=True)
    predictions = _check_predictions(predictions)
    variants = predictions["variant"].unique().tolist()
    for role, name in (("normal", normal), ("cropped", cropped)):
        if name not in variants:
            raise ValueError(f"no run was trained on the {role} variant {name!r} (variants found: {variants}); "
                             "add it to VARIANTS or change NORMAL / CROPPED")
    order = [normal, cropped] + [v for v in variants if v not in (normal, cropped)]
    scores = variant_scores(predictions, n_boot, seed, alpha)
    tests = paired_tests(predictions, normal, cropped, n_boot, seed, alpha)
    headers = {normal: "normal image", cropped: "cropped image"}
    rows = []
    for model in predictions["model"].drop_duplicates():
        own = scores[scores["model"] == model]
        row = {"Model": MODEL_LABELS.get(model, model), "Test faces": int(own["n"].iloc[0]), "model": model,
               "n_seeds": int(own["n_seeds"].max()), "groups": int(own["groups"].iloc[0])}
        for metric in SCORE_METRICS:
            for variant in order:
                match = own[own["variant"] == variant]
                text, numbers = _cell(match.iloc[0] if len(match) else None, metric)
                row[f"{METRIC_LABELS[metric]} ({headers.get(variant, VARIANT_LABELS.get(variant, variant))})"] = text
                row.update({f"{metric}_{variant}{k}": v for k, v in numbers.items()})
        test = tests[tests["model"] == model]
        if len(test):
            t = test.iloc[0]
            row.update({"Verdict": verdict(t, alpha), "McNemar b / c": f"{int(t['b'])} / {int(t['c'])}",
                        "McNemar p": fmt_p(t["mcnemar_p"]).removeprefix("p=").removeprefix("p"),
                        **{k: t[k] for k in PAIRED_COLUMNS if k != "model" and k not in ("n", "groups", "n_seeds")},
                        "p_value": float(t["auc_p_holm"]) if np.isfinite(t["auc_p_holm"]) else math.nan})
        else:
            only = own["variant"].iloc[0]
            row.update({"Verdict": f"reference ({VARIANT_LABELS.get(only, only)} only, not tested)",
                        "McNemar b / c": "", "McNemar p": "", "p_value": math.nan, "trained": True})
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs.update({"normal": normal, "cropped": cropped, "variants": order, "n_boot": int(n_boot), "alpha": alpha,
                        "note": table_note(normal, cropped, n_boot, int(table["n_seeds"].max()))})
    return table


def table_note(normal: str, cropped: str, n_boot: int, n_seeds: int) -> str:
    """The caption under the saved table: what normal and cropped are, and what the numbers mean."""
    pooled = "" if n_seeds == 1 else f", seeds resampled with them ({n_seeds} seeds, hierarchical bootstrap)"
    return (f"Normal image: {VARIANT_LABELS.get(normal, normal)} ({normal}); cropped image: "
            f"{VARIANT_LABELS.get(cropped, cropped)} ({cropped}). Cells: value [95% percentile-bootstrap interval, "
            f"{n_boot} resamples of identity groups{pooled}]; each run at its validation-chosen threshold. Verdict: "
            "paired group bootstrap of the AUC difference (cropped − normal), Holm-adjusted across models; a model "
            "whose validation AUC interval includes 0.5 did not train and is not compared. McNemar b: test faces "
            "right on the normal image and wrong on the cropped one; c: the reverse (a secondary check that treats "
            "faces as independent).")


def display_columns(table: pd.DataFrame) -> list[str]:
    """The human-readable columns of a crop_study_table (its capitalised ones), in order."""
    return [c for c in table.columns if c[:1].isupper()]


def save_table(table: pd.DataFrame, out_dir: str | Path, name: str = "06_crop_study") -> tuple[Path, Path]:
    """Write out_dir/name.csv (every column) and out_dir/name.md (the readable columns and the note)."""
    paths = results.save_table(table, out_dir, name, md_columns=display_columns(table),
                               note=table.attrs.get("note"), index=False)
    return paths["csv"], paths["md"]


def summarize(table: pd.DataFrame) -> str:
    """What the table found, in a few sentences (Markdown), for the notebook's closing summary."""
    cropped = table.attrs.get("cropped", "eyes_lower")
    normal = table.attrs.get("normal", "full")
    tested = table[table["Verdict"].astype(str).str.startswith(("cropped", "no significant"))]
    untrained = table[table["Verdict"].astype(str).str.startswith("did not train")]
    sentences = []
    if tested.empty:
        sentences.append("No model trained on both variants (validation AUC above chance), so nothing is compared.")
    else:
        n_faces = int(tested["Test faces"].max())
        sentences.append(f"On {n_faces} test faces, cropping to the {VARIANT_LABELS.get(cropped, cropped)} instead of "
                         f"the {VARIANT_LABELS.get(normal, normal)}:")
        for _, row in tested.iterrows():
            sentences.append(f"- {row['Model']}: AUC {row[f'auc_{normal}']:.3f} → {row[f'auc_{cropped}']:.3f}; "
                             f"{row['Verdict']}")
        worse = int(tested["Verdict"].str.startswith("cropped worse").sum())
        sentences.append(f"\nThe earlier study's conclusion (cropped is worse) holds for {worse} of {len(tested)} "
                         f"compared model(s) at the {table.attrs.get('alpha', 0.05):.0%} level after Holm's correction."
                         " A non-significant difference is not evidence that the variants are equal: with few test "
                         "identities only large differences can be detected.")
    for _, row in untrained.iterrows():
        sentences.append(f"- {row['Model']} did not train: its validation AUC interval includes 0.5, so its test "
                         "numbers are not compared (a larger budget or another recipe is needed).")
    for _, row in table[table["Verdict"].astype(str).str.startswith("reference")].iterrows():
        sentences.append(f"- Reference: {row['Model']} scores balanced accuracy "
                         f"{row[f'balanced_accuracy_{normal}']:.3f} and AUC {row[f'auc_{normal}']:.3f} on our test faces "
                         f"({VARIANT_LABELS.get(normal, normal)}).")
    return "\n".join(sentences)


# ----------------------------------------------------------------------------------------------------
# The published MesoNet weights as reference rows


def published_label(name: str) -> str:
    return f"{name} (published)"


@torch.no_grad()
def score_published_mesonet(weights_dir: str | Path, test_frame: pd.DataFrame, image_size: int = 256,
                            names: Sequence[str] | None = None, variant: str = "full", batch_size: int = 32) -> pd.DataFrame:
    """Predictions of the authors' MesoNet weights on `test_frame`'s faces, one row per (weights file, face).

    What the authors' code (github.com/DariusAf/MesoNet) shows, and why we score this way:
    * input: `example.py` reads images with ImageDataGenerator(rescale=1./255) at target_size (256, 256),
      with the comment "the models were trained on 256x256 images in [0,1]", so crops are scaled to
      [0, 1], RGB, not ImageNet-normalised like our training runs. (Their video helper
      `pipeline.compute_accuracy` feeds un-rescaled 0-255 faces, contradicting that comment; we follow
      the stated training input.)
    * classes: `example.py` reads `flow_from_directory('test_images', class_mode='binary')`, and the
      repository's test_images holds folders `df` and `real` (their issue #9: "2 images each for df and
      real", where a real face scored 0.998 with "Real class: [1.]"). Keras numbers classes
      alphabetically, df = 0 and real = 1, so their sigmoid is P(REAL). `load_keras_weights` negates
      the output layer at load, so the model here already gives the FAKE logit like every other run.
    """
    folder = Path(weights_dir)
    names = list(names or PUBLISHED_WEIGHTS)
    unknown = sorted(set(names) - set(PUBLISHED_WEIGHTS))
    if unknown:
        raise ValueError(f"unknown published MesoNet weights {unknown}; known: {sorted(PUBLISHED_WEIGHTS)}")
    present = [n for n in names if (folder / f"{n}.h5").is_file()]
    if not present:
        raise FileNotFoundError(f"{folder} holds none of {[n + '.h5' for n in names]}: set MESONET_WEIGHTS_DIR to "
                                "the folder with the authors' weights, or to \"\" to skip the reference rows")
    if len(present) < len(names):
        logger.warning(f"{folder}: {sorted(set(names) - set(present))} missing, scoring {present} only")
    faces = test_frame.reset_index(drop=True)
    paths = [str(p) for p in faces[variant_column(variant)]]
    images = np.stack([load_crop(p, image_size) for p in paths]).astype(np.float32) / 255.0
    batch = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    frames = []
    for name in present:
        model = load_keras_weights(build_model(PUBLISHED_WEIGHTS[name], image_size=image_size), folder / f"{name}.h5").eval()
        logit = torch.cat([model(batch[i:i + batch_size]) for i in range(0, len(batch), batch_size)]).double().numpy()
        frames.append(pd.DataFrame({
            "model": published_label(name), "variant": variant, "seed": 0, "run": f"published:{name}",
            "face_path": faces["face_path"], "video_id": faces["video_id"].astype(str), "label": faces["label"],
            "group": faces["group"] if "group" in faces else faces["video_id"].astype(str),
            "prob_fake": special.expit(logit), "logit": logit,  # load_keras_weights made it the FAKE logit
            "split": "test",
        }))
    return pd.concat(frames, ignore_index=True)


def reference_predictions(weights_dir: str | Path, split_csv: str | Path, names: Sequence[str] | None = None,
                          image_size: int = 256) -> pd.DataFrame:
    """The published MesoNet weights scored on split.csv's test faces; an empty frame when weights_dir is ""."""
    if not str(weights_dir):
        return pd.DataFrame(columns=PREDICTION_COLUMNS)
    split = read_split(split_csv)
    return score_published_mesonet(weights_dir, split[split["split"] == "test"], image_size=image_size, names=names)
