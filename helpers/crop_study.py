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
import math
import shutil
import warnings
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
PREDICTION_COLUMNS = ["model", "variant", "seed", "run", "face_path", "video_id", "label", "prob_fake", "logit", "split"]
SCORE_METRICS = ("accuracy", "auc")
METRIC_LABELS = {"accuracy": "Accuracy", "auc": "AUC"}
VARIANT_LABELS = {"full": "full face", "eyes": "eyes", "lower": "lower face", "eyes_lower": "eyes + lower face"}


def run_name(model: str, variant: str, seed: int) -> str:
    """The run folder name of one cell of the study, e.g. crop-meso4-full-s0."""
    return f"crop-{model}-{variant}-s{int(seed)}"


def plan_runs(models: Sequence[str], variants: Sequence[str], seeds: Iterable[int], **settings) -> list[dict]:
    """One training config per (model, variant, seed), all with the same `settings` (the same budget)."""
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
        for variant in variants:
            for seed in seeds:
                configs.append(training.make_config(**{**settings, "pretrained": pretrained}, model=model,
                                                    variant=variant, seed=seed, run_name=run_name(model, variant, seed)))
    return configs


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


def collect_predictions(runs: Iterable) -> pd.DataFrame:
    """The test predictions of finished runs (Run objects or run folders), stacked with model, variant, seed, run."""
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
        frames.append(test.assign(model=key[0], variant=key[1], seed=key[2], run=run.name)[PREDICTION_COLUMNS])
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
    return predictions.assign(seed=predictions["seed"].astype(int))


def paired_faces(predictions: pd.DataFrame, model: str) -> pd.DataFrame:
    """One row per test face every run of `model` scored: face_path, video_id, label (the faces compared)."""
    own = predictions[predictions["model"] == model]
    runs = own.groupby(["variant", "seed"])["face_path"].apply(set)
    common = set.intersection(*runs.tolist())
    if not common:
        raise ValueError(f"the runs of {model} share no test face: were they trained on the same split.csv?")
    largest = max(len(faces) for faces in runs)
    if len(common) < largest:
        warnings.warn(f"{model}: only {len(common)} of {largest} test faces were scored by every variant and seed; "
                      "the comparison uses those", stacklevel=2)
    faces = own[own["face_path"].isin(common)].drop_duplicates("face_path")[["face_path", "video_id", "label"]]
    labels = own[own["face_path"].isin(common)].groupby("face_path")["label"].nunique()
    if (labels > 1).any():
        raise ValueError(f"{model}: {int((labels > 1).sum())} face(s) carry different labels in different runs, "
                         f"e.g. {labels[labels > 1].index[0]}; the runs were trained on different splits")
    return faces.sort_values("face_path").reset_index(drop=True)


def _aligned(predictions: pd.DataFrame, model: str, variant: str, seed: int, faces: pd.DataFrame) -> np.ndarray:
    """prob_fake of one run, in the order of `faces`."""
    run = predictions[(predictions["model"] == model) & (predictions["variant"] == variant) & (predictions["seed"] == seed)]
    return run.set_index("face_path")["prob_fake"].reindex(faces["face_path"]).to_numpy(dtype=np.float64)


def variant_scores(predictions: pd.DataFrame, n_boot: int = 1000, seed: int = 0, threshold: float = 0.5,
                   alpha: float = 0.05) -> pd.DataFrame:
    """Accuracy and AUC with bootstrap intervals (resampling videos) per model, variant and seed, on paired faces."""
    predictions = _check_predictions(predictions)
    rows = []
    for model in predictions["model"].drop_duplicates():
        faces = paired_faces(predictions, model)
        own = predictions[predictions["model"] == model]
        for (variant, run_seed), _ in own.groupby(["variant", "seed"], sort=False):
            prob = _aligned(predictions, model, variant, run_seed, faces)
            # One bootstrap seed for every run: the same video resamples, so the intervals are comparable.
            ci = M.bootstrap_ci(faces["label"], prob, n_boot=n_boot, seed=seed, alpha=alpha,
                                groups=faces["video_id"], threshold=threshold)
            row = {"model": model, "variant": variant, "seed": int(run_seed), "n": len(faces)}
            for metric in SCORE_METRICS:
                row.update({metric: ci[metric]["value"], f"{metric}_lo": ci[metric]["lo"], f"{metric}_hi": ci[metric]["hi"]})
            rows.append(row)
    return pd.DataFrame(rows)


def _correct(prob: np.ndarray, labels: pd.Series, threshold: float) -> np.ndarray:
    return (prob > threshold) == (M.labels_to_int(labels) == 1)


def paired_tests(predictions: pd.DataFrame, normal: str = "full", cropped: str = "eyes_lower",
                 threshold: float = 0.5) -> pd.DataFrame:
    """McNemar's test of normal vs cropped per model: per seed, and on the seed ensemble (seed "mean").

    b counts faces the normal-image model gets right and the cropped one wrong, c the reverse.
    """
    predictions = _check_predictions(predictions)
    rows = []
    for model in predictions["model"].drop_duplicates():
        own = predictions[predictions["model"] == model]
        seeds = {v: sorted(own.loc[own["variant"] == v, "seed"].unique()) for v in (normal, cropped)}
        if not seeds[normal] or not seeds[cropped]:
            continue  # a reference model, or a model trained on one variant only: nothing to pair
        if seeds[normal] != seeds[cropped]:
            raise ValueError(f"{model}: seeds {seeds[normal]} were trained on {normal!r} but {seeds[cropped]} on "
                             f"{cropped!r}; train the missing runs (RESUME reuses the finished ones)")
        faces = paired_faces(own[own["variant"].isin([normal, cropped])], model)
        probs = {v: np.stack([_aligned(own, model, v, s, faces) for s in seeds[v]]) for v in (normal, cropped)}
        entries = [(s, i) for i, s in enumerate(seeds[normal])]
        if len(entries) > 1:
            entries.append(("mean", None))
        for label, i in entries:
            pick = (lambda v: probs[v].mean(axis=0)) if i is None else (lambda v, i=i: probs[v][i])
            test = M.mcnemar(_correct(pick(normal), faces["label"], threshold),
                             _correct(pick(cropped), faces["label"], threshold))
            rows.append({"model": model, "seed": str(label), **test})
    return pd.DataFrame(rows, columns=["model", "seed", "b", "c", "statistic", "p_value", "method", "n"])


def fmt_p(p: float) -> str:
    """p=0.40, p=0.004, p<0.001."""
    if p is None or not np.isfinite(p):
        return "p=n/a"
    if p < 0.001:
        return "p<0.001"
    return f"p={p:.3f}" if p < 0.01 else f"p={p:.2f}"


def verdict(b: int, c: int, p_value: float, alpha: float = 0.05) -> str:
    """Plain words for a McNemar result: "cropped worse (p=0.004)", "no significant difference (p=0.40)"."""
    if p_value < alpha and b != c:
        return f"cropped {'worse' if b > c else 'better'} ({fmt_p(p_value)})"
    return f"no significant difference ({fmt_p(p_value)})"


def _cell(values: pd.DataFrame, metric: str, digits: int = 3) -> tuple[str, dict]:
    """The text of one table cell and its numbers, from the per-seed scores of one model and variant."""
    if values.empty or values[metric].isna().all():
        return "n/a", {"": math.nan, "_lo": math.nan, "_hi": math.nan, "_sd": math.nan}
    if len(values) == 1:
        row = values.iloc[0]
        text = results.fmt_interval({"value": row[metric], "lo": row[f"{metric}_lo"], "hi": row[f"{metric}_hi"]}, digits)
        return text, {"": row[metric], "_lo": row[f"{metric}_lo"], "_hi": row[f"{metric}_hi"], "_sd": math.nan}
    mean, sd = values[metric].mean(), values[metric].std(ddof=1)
    # The bars' interval: the mean of the seeds' bootstrap bounds, the test-set uncertainty of one run.
    numbers = {"": mean, "_lo": values[f"{metric}_lo"].mean(), "_hi": values[f"{metric}_hi"].mean(), "_sd": sd}
    return f"{mean:.{digits}f} ± {sd:.{digits}f} ({len(values)} seeds)", numbers


def crop_study_table(runs_or_predictions, normal: str = "full", cropped: str = "eyes_lower", n_boot: int = 1000,
                     seed: int = 0, alpha: float = 0.05, threshold: float = 0.5,
                     reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """The study's table: per model, accuracy and AUC on normal and cropped images with 95% intervals, and McNemar.

    `runs_or_predictions` is a predictions frame (collect_predictions) or finished runs; `reference`
    (reference_predictions) adds rows scored on one variant, shown untested. One seed: "value [lo, hi]",
    a bootstrap over the test faces resampling whole videos. Several seeds: "mean ± sd" over seeds, and
    McNemar on the seed ensemble. Other variants found (eyes, lower) get columns of their own, without
    a test. Numeric columns (accuracy_<variant>, _lo, _hi, _sd, b, c, p_value) are kept for plots;
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
    scores = variant_scores(predictions, n_boot, seed, threshold)
    tests = paired_tests(predictions, normal, cropped, threshold)
    headers = {normal: "normal image", cropped: "cropped image"}
    rows = []
    for model in predictions["model"].drop_duplicates():
        own = scores[scores["model"] == model]
        row = {"Model": MODEL_LABELS.get(model, model), "Test faces": int(own["n"].iloc[0]), "model": model,
               "n_seeds": int(own["seed"].nunique())}
        for metric in SCORE_METRICS:
            for variant in order:
                text, numbers = _cell(own[own["variant"] == variant], metric)
                row[f"{METRIC_LABELS[metric]} ({headers.get(variant, VARIANT_LABELS.get(variant, variant))})"] = text
                row.update({f"{metric}_{variant}{k}": v for k, v in numbers.items()})
        test = tests[tests["model"] == model]
        if len(test):
            t = test.iloc[-1]  # the only seed, or the seed ensemble ("mean"), which paired_tests lists last
            p_text = fmt_p(t["p_value"]).removeprefix("p=").removeprefix("p")
            row.update({"McNemar b": int(t["b"]), "McNemar c": int(t["c"]), "McNemar p": p_text,
                        "Verdict": verdict(t["b"], t["c"], t["p_value"], alpha), "b": int(t["b"]), "c": int(t["c"]),
                        "p_value": float(t["p_value"]), "test": t["method"]})
        else:
            only = own["variant"].iloc[0]
            row.update({"McNemar b": "", "McNemar c": "", "McNemar p": "",
                        "Verdict": f"reference ({VARIANT_LABELS.get(only, only)} only, not tested)",
                        "b": math.nan, "c": math.nan, "p_value": math.nan, "test": ""})
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs.update({"normal": normal, "cropped": cropped, "variants": order, "n_boot": int(n_boot), "alpha": alpha,
                        "note": table_note(normal, cropped, n_boot, int(table["n_seeds"].max()))})
    return table


def table_note(normal: str, cropped: str, n_boot: int, n_seeds: int) -> str:
    """The caption under the saved table: what normal and cropped are, and what the numbers mean."""
    spread = ("value [95% bootstrap interval over test videos, "
              f"{n_boot} resamples]") if n_seeds == 1 else f"mean ± sd over {n_seeds} seeds"
    return (f"Normal image: {VARIANT_LABELS.get(normal, normal)} ({normal}); cropped image: "
            f"{VARIANT_LABELS.get(cropped, cropped)} ({cropped}). Cells: {spread}. McNemar b: test faces right on "
            "the normal image and wrong on the cropped one; c: the reverse"
            + ("" if n_seeds == 1 else "; tested on the seed ensemble (mean prob_fake over seeds)") + ".")


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
    tested = table[table["p_value"].notna()]
    if tested.empty:
        return "No model was trained on both variants, so there is nothing to compare."
    groups: dict[str, list[str]] = {"worse": [], "better": [], "same": []}
    for _, row in tested.iterrows():
        kind = "same" if row["Verdict"].startswith("no significant") else row["Verdict"].split()[1]
        acc = f"accuracy {row[f'accuracy_{normal}']:.3f} → {row[f'accuracy_{cropped}']:.3f}"
        groups[kind].append(f"{row['Model']}: {acc}, {fmt_p(row['p_value'])}")
    n_faces = int(tested["Test faces"].max())
    sentences = [f"On {n_faces} test faces, cropping to the {VARIANT_LABELS.get(cropped, cropped)} instead of the "
                 f"{VARIANT_LABELS.get(normal, normal)}:"]
    words = {"worse": "made detection significantly **worse** for", "better": "made detection significantly "
             "**better** for", "same": "made **no significant difference** for"}
    for kind, items in groups.items():
        if items:
            sentences.append(f"- {words[kind]} {'; '.join(items)}")
    worse = len(groups["worse"])
    sentences.append(f"\nThe earlier study's conclusion (cropped is worse) holds for {worse} of {len(tested)} "
                     f"model(s) at the {table.attrs.get('alpha', 0.05):.0%} level." +
                     (" A non-significant difference is not evidence that the variants are equal: with few test "
                      "faces the test can only detect large differences." if groups["same"] else ""))
    reference = table[table["p_value"].isna()]
    for _, row in reference.iterrows():
        sentences.append(f"- Reference: {row['Model']} scores accuracy {row[f'accuracy_{normal}']:.3f} and AUC "
                         f"{row[f'auc_{normal}']:.3f} on our test faces ({VARIANT_LABELS.get(normal, normal)}).")
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
      alphabetically, df = 0 and real = 1, so the sigmoid is P(REAL): prob_fake = 1 - sigmoid(logit),
      and our `logit` column (the FAKE logit, as in predictions.csv) is minus theirs.
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
        warnings.warn(f"{folder}: {sorted(set(names) - set(present))} missing, scoring {present} only", stacklevel=2)
    faces = test_frame.reset_index(drop=True)
    paths = [str(p) for p in faces[variant_column(variant)]]
    images = np.stack([load_crop(p, image_size) for p in paths]).astype(np.float32) / 255.0
    batch = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    frames = []
    for name in present:
        model = load_keras_weights(build_model(PUBLISHED_WEIGHTS[name], image_size=image_size), folder / f"{name}.h5").eval()
        keras_logit = torch.cat([model(batch[i:i + batch_size]) for i in range(0, len(batch), batch_size)]).double().numpy()
        frames.append(pd.DataFrame({
            "model": published_label(name), "variant": variant, "seed": 0, "run": f"published:{name}",
            "face_path": faces["face_path"], "video_id": faces["video_id"].astype(str), "label": faces["label"],
            "prob_fake": special.expit(-keras_logit), "logit": -keras_logit,  # 1 - sigmoid: their output is P(REAL)
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
