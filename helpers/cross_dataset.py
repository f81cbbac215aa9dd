"""Cross-dataset evaluation (notebook 08): every trained run scored on datasets it never saw, per manipulation method.

The field's standard protocol trains on one dataset and tests on others, where the published numbers
fall hard. `evaluate` takes the runs of notebooks 03-06 and a list of dataset roots in any layout of
helpers.layouts (FaceForensics++, Celeb-DF, DFDC, real/fake folders) and, for each root:

1. lists its videos (`frames.list_videos`); where the layout has an official split (FF++'s splits/*.json,
   Celeb-DF's test list), only videos of SPLIT ("test") or of no split file are kept (DeepFakeDetection
   and FF++'s actors are in none); at most MAX_VIDEOS_PER_METHOD videos per method (REAL counts as the
   method "real"; fakes of the kept originals first), and stray items are kept as their own rows;
2. samples FRAMES_PER_VIDEO frames per video (uniform by default, as notebook 03's eval.csv and
   helpers.predict do) into OUT_DIR/<dataset>/frames (resumable; other settings are redone or refused
   as ON_CHANGE says, like notebooks 01 and 02);
3. detects faces once per distinct crop setting among the runs (a run's config.json "face_settings",
   notebook 02's settings.json; the shortcut baseline's from its split), into
   OUT_DIR/<dataset>/faces-<hash>: the run's crop (FACE_SIZE, MARGIN, MIN_CONFIDENCE, detector ...),
   but every face of every frame detected on that frame itself (keep "all", no box reuse), as notebook
   03's eval.csv scores held-out videos: at use time no original's boxes exist;
4. scores every face with every run the validation-chosen way: the run's Platt calibration and
   threshold from its metrics.json (fitted on its own validation split, never on the external data);
5. writes one metrics row per run x dataset x method x level (`frame`: every face; `video`: a video's
   faces averaged with metrics.aggregate_face_scores). A method's AUC is its fakes against all of the
   dataset's reals; the `all` row takes every fake. Intervals are 95% percentile bootstraps over
   independent units: identity groups (helpers.splits.group_videos over original links and the
   layout's identity columns: FF++ target/source pairs, Celeb-DF ids) when there are at least
   MIN_UNITS of them among the scored videos; else the target `identity` alone (Celeb-DF's swaps can
   join most of its 59 celebrities into one group); else videos. `unit` and `n_units` say which.

Runs: every folder `results.find_runs` finds under RUNS_DIRS with a model.pt (networks), and the
shortcut baseline (helpers.shortcut): its logistic regression is re-applied from metrics.json's
standardised coefficients, standardised with its features.csv training rows (StandardScaler: mean and
population standard deviation), on the same per-face statistics, so it shows whether the data's
shortcut travels. Runs that cannot be scored are listed with the reason.

`make_external_demo` builds the demo profile's external set offline: a second demo dataset
(helpers.demo, another seed, so other tints, grain, scenes, pairings and recipe draws) laid out as a
FaceForensics++ tree, one method folder per blending recipe, so the ffpp layout runs in `make report`.
It reuses the LFW people of the training demo (there are only 98), so it tests new renderings of
known faces: it exercises the code path, it does not measure generalisation to new people.
"""
from __future__ import annotations

import inspect
import json
import logging
import multiprocessing
import os
import re
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

# Before torch loads OpenMP (no effect once it has), as helpers.predict does: idle OpenMP threads otherwise
# spin between the many small batches of scoring and detection, and on busy cores that costs CPU time.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from helpers import frames as FR  # noqa: E402
from helpers import layouts  # noqa: E402
from helpers import metrics as M  # noqa: E402
from helpers.manifest import fingerprint, stable_hash  # noqa: E402

logger = logging.getLogger(__name__)

COLUMNS = ["run", "dataset", "method", "level", "n_videos", "n_faces", "auc", "auc_low", "auc_high", "log_loss",
           "eer", "ap", "tpr_at_1fpr", "balanced_accuracy", "threshold", "n_real_videos", "n_fake_videos", "unit",
           "n_units"]
LEVELS = ("frame", "video")
ALL = "all"
MIN_UNITS = 10  # fewer independent units than this make a percentile interval meaningless
TABLE_NAME = "08_cross_dataset"
SPLITS = ("test", "val", "train", "")
DEMO_RECIPE_METHOD = "{difficulty}-{recipe}"  # the demo's recipes as FF++ method folders, easiest first

# What the field reports: trained on FaceForensics++ c23, tested on a dataset never seen.
PUBLISHED = [
    {"source": "DeepfakeBench (Yan et al., NeurIPS 2023)", "model": "Meso4", "family": "meso4",
     "trained on": "FaceForensics++ c23", "tested on": "DFDC", "level": "frame", "AUC": 0.556},
    {"source": "DeepfakeBench (Yan et al., NeurIPS 2023)", "model": "MesoInception", "family": "mesoinception",
     "trained on": "FaceForensics++ c23", "tested on": "DFDC", "level": "frame", "AUC": 0.623},
    {"source": "DeepfakeBench (Yan et al., NeurIPS 2023)", "model": "ResNet34", "family": "resnet",
     "trained on": "FaceForensics++ c23", "tested on": "DFDC", "level": "frame", "AUC": 0.636},
    {"source": "DeepfakeBench (Yan et al., NeurIPS 2023)", "model": "EfficientNet-B4", "family": "efficientnet",
     "trained on": "FaceForensics++ c23", "tested on": "DFDC", "level": "frame", "AUC": 0.696},
    {"source": "DeepfakeBench (Yan et al., NeurIPS 2023)", "model": "Xception", "family": "xception",
     "trained on": "FaceForensics++ c23", "tested on": "DFDC", "level": "frame", "AUC": 0.708},
    {"source": "SBI (Shiohara & Yamasaki, CVPR 2022)", "model": "EfficientNet-B4, self-blended images",
     "family": "sbi", "trained on": "FaceForensics++ c23 reals + self-blended fakes", "tested on": "Celeb-DF",
     "level": "video", "AUC": 0.938},
    {"source": "SBI (Shiohara & Yamasaki, CVPR 2022)", "model": "EfficientNet-B4, self-blended images",
     "family": "sbi", "trained on": "FaceForensics++ c23 reals + self-blended fakes", "tested on": "DFDC",
     "level": "video", "AUC": 0.730},
]


# --- runs -------------------------------------------------------------------------------------------------

@dataclass
class ScoredRun:
    """A run that can score external faces: its kind, crop settings, calibration and threshold."""

    name: str
    path: Path
    kind: str                     # "network" (model.pt) or "shortcut" (helpers.shortcut's regression)
    config: dict
    metrics: dict
    face_settings: dict
    face_settings_from: str
    platt: tuple[float, float] | None
    threshold: float
    val_auc: float = float("nan")  # results.Run.val_auc: what chose notebook 07's run, and chooses ours

    @property
    def model(self) -> str:
        return str(self.config.get("model", "?"))


def _face_settings_of(run, notes: list[str]) -> tuple[dict, str]:
    """A run's crop settings (config.json, or for the shortcut its split's), else helpers.faces defaults."""
    from helpers import faces, training  # noqa: PLC0415 - training pulls in torch

    accepted = set(inspect.signature(faces.face_settings).parameters)
    recorded = run.config.get("face_settings")
    source = "config.json face_settings"
    if not isinstance(recorded, dict) and run.config.get("split_csv"):
        recorded = training.face_settings_of(run.config["split_csv"])
        source = f"notebook 02's settings.json (via {Path(run.config['split_csv']).name})"
    if not isinstance(recorded, dict):
        notes.append(f"{run.name}: no face_settings in config.json and none through its split; crops cut with "
                     "helpers.faces defaults, which may not be how it was trained")
        return faces.face_settings(), "helpers.faces defaults"
    # A run from before DETECTOR was recorded: mtcnn-torch, as helpers.predict does (the same faces to float noise).
    settings = {"detector": "mtcnn-torch", **{k: v for k, v in recorded.items() if k in accepted}}
    return faces.face_settings(**settings), source


def _calibration(run) -> tuple[tuple[float, float] | None, float]:
    calibration = run.metrics.get("calibration") or {}
    platt = None
    if calibration.get("method") == "platt" and calibration.get("slope") is not None:
        platt = (float(calibration["slope"]), float(calibration["intercept"]))
    return platt, float(run.threshold)


def scorable_runs(runs_dirs) -> tuple[list[ScoredRun], pd.DataFrame]:
    """The runs under `runs_dirs` that can score external faces, and a table of every run found (scored or why not)."""
    from helpers import results  # noqa: PLC0415

    runs, rows, seen = [], [], set()
    for folder in [runs_dirs] if isinstance(runs_dirs, (str, Path)) else runs_dirs:
        if not Path(folder).is_dir():
            rows.append({"run": str(folder), "model": "", "variant": "", "scored": "no",
                         "why": f"{folder} does not exist (train with notebooks 03-06 first)"})
            continue
        for run in results.find_runs(folder):
            if run.path.resolve() in seen:
                continue
            seen.add(run.path.resolve())
            notes: list[str] = []
            row = {"run": run.name, "model": run.config.get("model"), "variant": run.config.get("variant")}
            if results.is_baseline(run):
                missing = [n for n in ("features.csv",) if not (run.path / n).is_file()]
                if missing or "coefficients" not in run.metrics:
                    rows.append({**row, "scored": "no", "why": "a shortcut run without features.csv or coefficients "
                                 "(re-run helpers.shortcut)"})
                    continue
                kind = "shortcut"
            elif (run.path / "model.pt").is_file():
                kind = "network"
            else:
                rows.append({**row, "scored": "no", "why": f"{run.path / 'model.pt'} is absent: nothing to score with"})
                continue
            try:
                settings, source = _face_settings_of(run, notes)
            except ValueError as err:  # a hand-edited or foreign face_settings
                rows.append({**row, "scored": "no", "why": f"its crop settings cannot be used: {err}"})
                continue
            platt, threshold = _calibration(run)
            if platt is None:
                notes.append(f"{run.name}: no Platt calibration in metrics.json; scored with the raw sigmoid")
            runs.append(ScoredRun(run.name, run.path, kind, run.config, run.metrics, settings, source, platt, threshold,
                                  run.val_auc))
            rows.append({**row, "scored": "yes", "why": "; ".join(notes) or
                         f"{kind}: crops as its training ({source}), Platt calibration and threshold "
                         f"{threshold:.3f} from its validation"})
    return runs, pd.DataFrame(rows, columns=["run", "model", "variant", "scored", "why"])


# --- datasets ---------------------------------------------------------------------------------------------

def slug(name: str) -> str:
    """A dataset name as a file-name part."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("_") or "dataset"


def keep_split(videos: pd.DataFrame, split: str) -> pd.DataFrame:
    """Videos of the official `split` and of none (stray rows kept); all of them for split "" or without the column."""
    if not split or "split" not in videos.columns:
        return videos
    keep = (videos.status != "ok") | videos.split.isna() | (videos.split == split)
    return videos[keep]


def select_per_method(videos: pd.DataFrame, limit: int, seed: int = 0) -> pd.DataFrame:
    """At most `limit` usable videos per method (0 = all): reals first, then each method's fakes of those reals first.

    The order is a fixed pseudo-random one (seeded), so a small budget still mixes targets; stray rows stay.
    """
    if not limit:
        return videos
    usable = videos[videos.status == "ok"]
    order = {i: (stable_hash(f"{seed}/{v}"), v) for i, v in zip(usable.index, usable.video_id)}
    reals = sorted(usable.index[usable.label == "REAL"], key=order.get)[:limit]
    chosen, originals = list(reals), set(usable.loc[reals, "video_id"])
    fakes = usable[usable.label != "REAL"]
    for _, group in fakes.groupby(fakes.method.fillna(""), sort=True):
        ranked = sorted(group.index, key=lambda i: (group.at[i, "original"] not in originals, order[i]))
        chosen.extend(ranked[:limit])
    return videos.loc[sorted(set(chosen) | set(videos.index[videos.status != "ok"]))]


def crop_key(settings: dict) -> str:
    """The extraction folder's key: the crop settings, with every face detected on its own frame."""
    return fingerprint({**settings, "keep": "all", "reuse_original_boxes": False})[:10]


def _extract(frames_csv: str, out_dir: str, settings: dict, device: str, workers: int, on_change: str) -> pd.DataFrame:
    from helpers import faces  # noqa: PLC0415
    from helpers.notebook import redo_on_change  # noqa: PLC0415

    kwargs = {**settings, "keep": "all", "reuse_original_boxes": False}
    return redo_on_change(faces.extract_faces, frames_csv, out_dir, on_change=on_change, workers=workers,
                          device=device, allow_empty=True, **kwargs)


def detect_faces(frames_csv: Path, out_dir: Path, settings: dict, device: str = "", workers: int = 1,
                 on_change: str = "redo") -> pd.DataFrame:
    """faces.csv for a dataset's frames with one run's crop settings (every face, detected on each frame itself).

    on_change: what a folder holding faces of other settings gets (helpers.notebook.redo_on_change: "redo"
    remakes them, "refuse" stops naming the settings). "mtcnn-tf" runs in a child process: TensorFlow next
    to torch in one process can segfault.
    """
    if settings.get("detector") == "mtcnn-tf":
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            return pool.submit(_extract, str(frames_csv), str(out_dir), settings, device, workers, on_change).result()
    return _extract(str(frames_csv), str(out_dir), settings, device, workers, on_change)


@dataclass
class Dataset:
    """One external dataset root as evaluation sees it: its listing, frames and the faces of each crop setting."""

    root: Path
    name: str
    layout: str
    videos: pd.DataFrame          # the listing after the split and the per-method budget
    listed: pd.DataFrame          # every item the layout gave
    frames: pd.DataFrame
    faces: dict[str, pd.DataFrame] = field(default_factory=dict)  # crop_key -> usable faces with the listing's columns
    units: pd.Series | None = None  # video_id -> bootstrap unit
    unit: str = "video"


def prepare_dataset(root: str | Path, out_dir: str | Path, layout: str = "auto", compression: str = "c23",
                    split: str = "test", frames_per_video: int = 32, max_videos_per_method: int = 0,
                    strategy: str = "uniform", seed: int = 447, workers: int = 1, on_change: str = "redo") -> Dataset:
    """List, select and sample one dataset root into out_dir/<dataset>/frames (see the module docstring)."""
    from helpers.notebook import redo_on_change  # noqa: PLC0415

    if split not in SPLITS:
        raise ValueError(f"SPLIT must be one of {', '.join(repr(s) for s in SPLITS)}, got {split!r}")
    root = Path(root)
    listed = FR.list_videos(root, layout, compression)
    name = str(listed.dataset.dropna().iloc[0]) if listed.dataset.notna().any() else root.name
    videos = select_per_method(keep_split(listed, split), max_videos_per_method, seed)
    folder = Path(out_dir) / slug(name)
    sampled = redo_on_change(FR.sample_frames, root, folder / "frames", on_change=on_change,
                             frames_per_video=frames_per_video, strategy=strategy, seed=seed, workers=workers,
                             videos=videos, allow_empty=True)
    return Dataset(root, name, listed.attrs["layout"], videos, listed, sampled)


def faces_for(dataset: Dataset, out_dir: str | Path, settings: dict, device: str = "", workers: int = 1,
              on_change: str = "redo") -> pd.DataFrame:
    """The usable faces of `dataset` cut with `settings` (extracted once per crop key), with the listing's columns."""
    key = crop_key(settings)
    if key not in dataset.faces:
        folder = Path(out_dir) / slug(dataset.name)
        table = detect_faces(folder / "frames" / "frames.csv", folder / f"faces-{key}", settings, device, workers,
                             on_change)
        ok = table[table.status == "ok"].copy()
        extra = [c for c in layouts.EXTRA_COLUMNS if c in dataset.frames.columns]
        meta = dataset.frames.drop_duplicates("frame_path").set_index("frame_path")[extra]
        dataset.faces[key] = ok.drop(columns=[c for c in extra if c in ok.columns]).join(meta, on="frame_path")
    return dataset.faces[key]


def bootstrap_units(videos: pd.DataFrame, scored: set, min_units: int = MIN_UNITS) -> tuple[pd.Series, str]:
    """(unit per video_id, what a unit is): identity groups, else target identities, else videos (see the docstring)."""
    from helpers import splits  # noqa: PLC0415

    usable = videos[videos.status == "ok"]
    groups = splits.group_videos(usable, splits.IDENTITY_COLUMNS, name_pattern="")
    if groups.reindex(sorted(scored)).nunique() >= min_units:
        return groups, "identity group"
    if "identity" in usable.columns and usable.identity.notna().any():
        target = usable.set_index("video_id").identity
        target = target.where(target.notna(), "video:" + target.index.to_series()).astype(str)
        if target.reindex(sorted(scored)).nunique() >= min_units:
            return target, "target identity"
    return pd.Series(usable.video_id.to_numpy(), index=usable.video_id.to_numpy()), "video"


# --- scoring ----------------------------------------------------------------------------------------------

def _device(device: str) -> str:
    import torch  # noqa: PLC0415

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def network_logits(run: ScoredRun, faces: pd.DataFrame, device: str = "", batch_size: int = 64) -> np.ndarray:
    """A network run's raw logits for `faces` (its variant's crop, fitted to its image size, no augmentation)."""
    import torch  # noqa: PLC0415

    from helpers.datasets import FaceDataModule  # noqa: PLC0415
    from helpers.training import load_model, predict_logits  # noqa: PLC0415

    model, saved = load_model(run.path)
    data = FaceDataModule("", variant=saved["variant"], image_size=int(saved["image_size"]), batch_size=batch_size,
                          augment=False, cache_dir="")
    loader = data.loader_for(faces.reset_index(drop=True), "external")
    return predict_logits(model, loader, torch.device(_device(device)))


def shortcut_logits(run: ScoredRun, faces: pd.DataFrame) -> np.ndarray:
    """The shortcut baseline's logits for `faces`: its standardised coefficients on the same per-face statistics."""
    from helpers import shortcut  # noqa: PLC0415

    columns = list(run.config.get("features") or run.metrics["coefficients"])
    train = pd.read_csv(run.path / "features.csv")
    train = train[train.split == "train"][columns]
    mean, scale = train.mean().to_numpy(), train.std(ddof=0).to_numpy()
    scale = np.where(scale > 0, scale, 1.0)  # StandardScaler leaves a constant feature unscaled
    features = shortcut.features_table(faces.reset_index(drop=True), progress=False)
    missing = sorted(set(columns) - set(features.columns))
    if missing:
        raise ValueError(f"{run.path}: the shortcut needs features {missing}, which these faces cannot give")
    x = (features[columns].to_numpy(dtype=np.float64) - mean) / scale
    coefficients = np.array([run.metrics["coefficients"][c] for c in columns], dtype=np.float64)
    return x @ coefficients + float(run.metrics["intercept"])


def score_faces(run: ScoredRun, faces: pd.DataFrame, device: str = "", batch_size: int = 64) -> pd.DataFrame:
    """`faces` with the run's logit and calibrated prob_fake (its validation Platt fit) per face."""
    if faces.empty:
        return faces.assign(logit=pd.Series(dtype=float), prob_fake=pd.Series(dtype=float))
    logits = shortcut_logits(run, faces) if run.kind == "shortcut" else network_logits(run, faces, device, batch_size)
    logits = np.asarray(logits, dtype=np.float64)
    prob = M.apply_platt(logits, *run.platt) if run.platt is not None else M.apply_temperature(logits, 1.0)
    return faces.reset_index(drop=True).assign(logit=logits, prob_fake=prob)


# --- metrics ----------------------------------------------------------------------------------------------

def method_order(methods) -> list[str]:
    """FF++'s published methods in their order, then the rest sorted; "real" and "all" left out."""
    present = [m for m in dict.fromkeys(methods) if isinstance(m, str) and m not in (layouts.REAL_METHOD, ALL)]
    known = [m for m in layouts.FFPP_METHODS if m in present]
    return known + sorted(m for m in present if m not in known)


def _row(run: str, dataset: str, method: str, level: str, data: pd.DataFrame, threshold: float, n_boot: int,
         seed: int, unit: str) -> dict:
    y = M.labels_to_int(data.label)
    n_faces = int(data.n_faces.sum()) if level == "video" else len(data)
    row = {"run": run, "dataset": dataset, "method": method, "level": level, "n_videos": int(data.video_id.nunique()),
           "n_faces": n_faces, "threshold": threshold, "n_real_videos": int(data.video_id[y == 0].nunique()),
           "n_fake_videos": int(data.video_id[y == 1].nunique()), "unit": unit,
           "n_units": int(data.unit.nunique()) if len(data) else 0}
    if len(data) == 0 or len(set(y.tolist())) < 2:
        return {**row, **{k: np.nan for k in ("auc", "auc_low", "auc_high", "log_loss", "eer", "ap", "tpr_at_1fpr",
                                             "balanced_accuracy")}}
    ci = M.bootstrap_ci(y, data.prob_fake, n_boot=n_boot, seed=seed, groups=data.unit.to_numpy(), threshold=threshold)
    return {**row, "auc": ci["auc"]["value"], "auc_low": ci["auc"]["lo"], "auc_high": ci["auc"]["hi"],
            **{k: ci[k]["value"] for k in ("log_loss", "eer", "ap", "tpr_at_1fpr", "balanced_accuracy")}}


def metrics_rows(predictions: pd.DataFrame, run: str, dataset: str, threshold: float, n_boot: int = 1000,
                 seed: int = 0, unit: str = "video") -> list[dict]:
    """Rows of COLUMNS for one run on one dataset: per method and `all`, at frame and video level.

    `predictions`: one row per face with video_id, label, method, prob_fake and unit (the bootstrap unit
    of its video). A method's rows hold its fakes and every real of the dataset.
    """
    rows = []
    if predictions.empty:
        return rows
    videos = M.video_level(predictions, "prob_fake", group_column="unit")
    videos = videos.join(predictions.drop_duplicates("video_id").set_index("video_id")[["method"]], on="video_id")
    methods = method_order(predictions.loc[predictions.label == "FAKE", "method"].fillna(layouts.FAKE_METHOD))
    for level, data in (("frame", predictions), ("video", videos)):
        data = data.assign(method=data.method.fillna(layouts.FAKE_METHOD))
        reals = data[data.label == "REAL"]
        fakes = data[data.label == "FAKE"]
        for method in [*methods, ALL]:
            chosen = fakes if method == ALL else fakes[fakes.method == method]
            rows.append(_row(run, dataset, method, level, pd.concat([reals, chosen]), threshold, n_boot, seed, unit))
    return rows


# --- the whole evaluation -----------------------------------------------------------------------------------

@dataclass
class CrossDataset:
    """What notebook 08 shows: the metrics table, the face predictions, the datasets and what was left out."""

    table: pd.DataFrame
    predictions: dict[tuple[str, str], pd.DataFrame]
    datasets: pd.DataFrame
    skipped: pd.DataFrame
    notes: list[str]


def evaluate(runs: list[ScoredRun], roots, out_dir: str | Path, layout: str = "auto", compression: str = "c23",
             split: str = "test", frames_per_video: int = 32, max_videos_per_method: int = 0, strategy: str = "uniform",
             seed: int = 447, n_boot: int = 1000, device: str = "", workers: int = 1, batch_size: int = 64,
             on_change: str = "redo") -> CrossDataset:
    """Score every run on every dataset root (see the module docstring); writes nothing but the stages' folders.

    on_change: what frames or faces of other settings already under out_dir get: "redo" (remade) or
    "refuse" (SettingsChanged naming them), as notebooks 01 and 02's ON_CHANGE.
    """
    from helpers.notebook import ON_CHANGE  # noqa: PLC0415

    if on_change not in ON_CHANGE:
        raise ValueError(f"ON_CHANGE must be one of {ON_CHANGE}, got {on_change!r}")
    notes, summaries, skipped, table, predictions = [], [], [], [], {}
    if not runs:
        notes.append("no run can be scored: train with notebooks 03-06 first")
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            notes.append(f"{root} does not exist: skipped (download the dataset there, or remove it from EXTERNAL_DIRS)")
            continue
        try:
            dataset = prepare_dataset(root, out_dir, layout, compression, split, frames_per_video,
                                      max_videos_per_method, strategy, seed, workers, on_change)
        except layouts.LayoutError as err:  # one misread root must not cost the others their numbers
            notes.append(f"{root} skipped: {err}")
            continue
        stray = dataset.frames[dataset.frames.status != "ok"].drop_duplicates(["part", "video_id"])
        skipped.append(stray.assign(dataset=dataset.name)[["dataset", "part", "video_id", "status", "reason"]])
        per_key: dict[str, pd.DataFrame] = {}
        for run in runs if len(FR.usable(dataset.frames)) else []:
            faces = faces_for(dataset, out_dir, run.face_settings, device, workers, on_change)
            per_key[crop_key(run.face_settings)] = faces
            if dataset.units is None:
                dataset.units, dataset.unit = bootstrap_units(dataset.videos, set(faces.video_id))
            try:
                scored = score_faces(run, faces, device, batch_size)
            except (ValueError, FileNotFoundError) as err:  # load_model's and the shortcut's named errors
                notes.append(f"{run.name} could not score {dataset.name}: {err}")
                continue
            scored = scored.assign(unit=scored.video_id.map(dataset.units).fillna("video:" + scored.video_id))
            predictions[(run.name, dataset.name)] = scored
            table.extend(metrics_rows(scored, run.name, dataset.name, run.threshold, n_boot, seed, dataset.unit))
        summaries.append(dataset_summary(dataset, per_key))
        if not len(FR.usable(dataset.frames)):
            notes.append(f"{dataset.name}: no video gave a frame ({root}); see the skipped items")
    frame = pd.DataFrame(table, columns=COLUMNS)
    datasets = pd.concat(summaries, ignore_index=True) if summaries else pd.DataFrame()
    skipped_ = pd.concat(skipped, ignore_index=True) if skipped else pd.DataFrame(
        columns=["dataset", "part", "video_id", "status", "reason"])
    return CrossDataset(frame, predictions, datasets, skipped_, notes)


def dataset_summary(dataset: Dataset, faces: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per method of one dataset: videos listed, kept (split, budget), sampled, with a face (per crop key)."""
    def by_method(table: pd.DataFrame) -> pd.Series:
        table = table.drop_duplicates("video_id") if "video_id" in table else table
        return table.method.fillna("?").value_counts()

    listed = dataset.listed[dataset.listed.status == "ok"]
    columns = {"videos listed": by_method(listed), "videos kept": by_method(dataset.videos[dataset.videos.status == "ok"]),
               "videos sampled": by_method(FR.usable(dataset.frames))}
    for key, table in faces.items():
        columns[f"with a face ({key})"] = by_method(table)
    summary = pd.DataFrame(columns).fillna(0).astype(int)
    order = [m for m in [layouts.REAL_METHOD, *method_order(summary.index)] if m in summary.index]
    summary = summary.reindex(order + [m for m in summary.index if m not in order])
    summary.index.name = "method"
    return summary.reset_index().assign(dataset=dataset.name, layout=dataset.layout, unit=dataset.unit)[
        ["dataset", "layout", "method", *columns, "unit"]]


# --- tables and figures -------------------------------------------------------------------------------------

DISPLAY_COLUMNS = ["n_videos", "n_faces", "AUC", "log_loss", "eer", "ap", "tpr_at_1fpr", "balanced_accuracy"]


def display_table(table: pd.DataFrame, level: str = "video") -> pd.DataFrame:
    """The table at one level for reading, indexed by run, dataset and method: AUC with its interval in one cell.

    The interval's unit and count are left to the dataset table (one per dataset); empty when nothing was scored.
    """
    part = table[table.level == level]
    shown = part.assign(AUC=[_interval(a, lo, hi) for a, lo, hi in zip(part.auc, part.auc_low, part.auc_high)])
    return shown[["run", "dataset", "method", *DISPLAY_COLUMNS]].round(3).set_index(["run", "dataset", "method"])


def unit_plural(unit: str) -> str:
    """"identity group" -> "identity groups", for sentences."""
    return {"identity group": "identity groups", "target identity": "target identities", "video": "videos"}.get(unit, unit)


def _interval(value, lo, hi, digits: int = 3) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    if lo is None or not np.isfinite(lo):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def save_table(table: pd.DataFrame, tables_dir: str | Path, name: str = TABLE_NAME) -> dict[str, Path]:
    """TABLES_DIR/08_cross_dataset.csv (every row) and .md (video level, for the report)."""
    folder = Path(tables_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"csv": folder / f"{name}.csv", "md": folder / f"{name}.md"}
    table.to_csv(paths["csv"], index=False)
    paths["md"].write_text(display_table(table, "video").to_markdown() + "\n", encoding="utf-8")
    return paths


def heatmap(table: pd.DataFrame, level: str = "video", title: str | None = None):
    """Runs x (dataset, method) AUC at `level`, each cell annotated; chance (0.5) is the neutral colour."""
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import seaborn as sns  # noqa: PLC0415

    part = table[table.level == level]
    if part.empty:
        fig, ax = plt.subplots(figsize=(5, 1.2))
        ax.text(0.5, 0.5, "no external dataset was scored", ha="center", va="center")
        ax.axis("off")
        return fig
    columns = []
    for dataset in dict.fromkeys(part.dataset):
        columns += [(dataset, m) for m in [*method_order(part[part.dataset == dataset].method), ALL]]
    runs = list(dict.fromkeys(part.run))
    values = part.set_index(["run", "dataset", "method"]).auc
    grid = np.array([[values.get((r, d, m), np.nan) for d, m in columns] for r in runs], dtype=float)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(columns) + 2.5), max(2.0, 0.45 * len(runs) + 1.5)))
    # seaborn leaves a missing AUC blank and unannotated; "n/a" says it is missing, not forgotten.
    sns.heatmap(grid, annot=np.vectorize(lambda v: f"{v:.2f}")(grid), fmt="", cmap="RdYlGn", vmin=0.0, vmax=1.0,
                annot_kws={"fontsize": 8, "color": "black"}, ax=ax,
                cbar_kws={"fraction": 0.03, "label": f"{level}-level AUC"})
    for i, j in zip(*np.nonzero(np.isnan(grid))):
        ax.text(j + 0.5, i + 0.5, "n/a", ha="center", va="center", fontsize=8, color="black")
    several = len({d for d, _ in columns}) > 1
    # seaborn's cells span [i, i + 1] and it turns the run names vertical: set the labels as before.
    ax.set_xticks(np.arange(len(columns)) + 0.5, [f"{d}\n{m}" if several else m for d, m in columns], rotation=35,
                  ha="right", fontsize=8)
    ax.set_yticks(np.arange(len(runs)) + 0.5, runs, fontsize=8, rotation=0)
    ax.set_title(title or f"{level.capitalize()}-level AUC on data the runs never saw (each method's fakes vs all reals)",
                 fontsize=10)
    fig.tight_layout()
    return fig


def roc_figures(study: CrossDataset, level: str = "video") -> dict[str, object]:
    """One ROC figure per dataset (every run, every method's fakes against the reals), by dataset name."""
    from helpers import plots  # noqa: PLC0415

    figures = {}
    for dataset in dict.fromkeys(d for _, d in study.predictions):
        curves = {}
        for (run, name), faces in study.predictions.items():
            if name != dataset or faces.empty:
                continue
            data = M.video_level(faces, "prob_fake", group_column=None) if level == "video" else faces
            y = M.labels_to_int(data.label)
            if len(set(y.tolist())) < 2:
                continue
            fpr, tpr, _ = M.roc_points(y, data.prob_fake)
            curves[run] = (fpr, tpr, M.binary_metrics(y, data.prob_fake)["auc"])
        if curves:
            figures[dataset] = plots.roc_curves(curves, title=f"{dataset}: {level}-level ROC, all methods")
    return figures


def _family(model: str) -> str:
    model = str(model).lower()
    for family in ("meso4", "mesoinception", "resnet", "efficientnet", "xception", "vit", "vgg"):
        if model.startswith(family):
            return family
    return model


def published_table(table: pd.DataFrame, runs: list[ScoredRun], trained_on: str) -> pd.DataFrame:
    """The published cross-dataset AUCs, then ours in the same columns, each with what differs from the published setting.

    Ours: for every external dataset, the `all` row at frame and video level of the validation-chosen
    network (highest validation AUC) and of every run of a published model family (Meso4, ResNet).
    """
    rows = [{**{k: v for k, v in p.items() if k != "family"}, "AUC [95% CI]": f"{p['AUC']:.3f} (no interval published)",
             "what differs from ours": ""} for p in PUBLISHED]
    chosen = chosen_run(runs)
    families = {p["family"] for p in PUBLISHED}
    # The published detectors see whole faces: a family's region-crop runs would not be like for like.
    ours = [r for r in runs if r.name == chosen or (_family(r.model) in families and r.config.get("variant") == "full")]
    by_name = {r.name: r for r in runs}
    part = table[table.method == ALL]
    for run in ours:
        for row in part[part.run == run.name].itertuples():
            # "trained on" has its own column; the intervals' unit is named only where it is not the video.
            units = ("the intervals' units" if row.unit == "video" and row.n_units == row.n_videos
                     else f"intervals over {row.n_units} {unit_plural(row.unit)}")
            differs = (f"not FF++ c23; {row.n_videos} videos of {row.dataset} ({row.n_real_videos} real, "
                       f"{row.n_fake_videos} fake), {units}; {by_name[run.name].model} at "
                       f"{by_name[run.name].config.get('image_size', '?')} px, {by_name[run.name].config.get('variant', 'full')} "
                       f"crop")
            rows.append({"source": "this study" + (" (chosen on validation)" if run.name == chosen else ""),
                         "model": f"{run.name} ({run.model})", "trained on": trained_on, "tested on": row.dataset,
                         "level": row.level, "AUC": row.auc, "AUC [95% CI]": _interval(row.auc, row.auc_low, row.auc_high),
                         "what differs from ours": differs})
    columns = ["source", "model", "trained on", "tested on", "level", "AUC", "AUC [95% CI]", "what differs from ours"]
    return pd.DataFrame(rows, columns=columns)


def save_published(comparison: pd.DataFrame, tables_dir: str | Path, name: str = "08_published") -> dict[str, Path]:
    """The comparison as CSV and Markdown (without the bare AUC column) for the report."""
    from helpers import results  # noqa: PLC0415

    shown = comparison.drop(columns=["AUC"])
    return results.save_table(shown, tables_dir, name, index=False, note=PUBLISHED_NOTE)


PUBLISHED_NOTE = (
    "The published numbers train on FaceForensics++ c23 and test on DFDC or Celeb-DF; ours train on this "
    "profile's data and test on the external sets listed. Besides the direction, the models, input sizes "
    "and training budgets differ, frame-level AUC pools every face of every sampled frame, and DeepfakeBench "
    "and SBI publish no intervals. Read the rows side by side for the size of the fall from in-distribution "
    "test numbers, not as a ranking.")


def chosen_run(runs: list[ScoredRun]) -> str | None:
    """The network with the highest validation AUC (frame level), as notebook 07 chooses; never external data."""
    networks = [r for r in runs if r.kind == "network"]
    if not networks:
        return None
    finite = [r for r in networks if np.isfinite(r.val_auc)]
    return max(finite, key=lambda r: r.val_auc).name if finite else networks[0].name  # ties: the first listed


def summary_text(study: CrossDataset, runs: list[ScoredRun]) -> str:
    """A paragraph saying what the cross-dataset table shows, computed from it: the validation-chosen network first."""
    table = study.table
    if table.empty:
        reason = "; ".join(study.notes) or "EXTERNAL_DIRS is empty and no demo set was asked for"
        return _relative(f"No external dataset was scored ({reason}), so this notebook has no cross-dataset numbers.")
    text, chosen = [], chosen_run(runs)
    by_run = {r.name: r for r in runs}
    video = table[(table.level == "video") & (table.method == ALL)]
    for dataset, part in video.groupby("dataset", sort=False):
        scored = part.dropna(subset=["auc"])
        if scored.empty:
            text.append(f"On {dataset} no run could be scored (one class among the scored videos).")
            continue
        first = scored.iloc[0]
        text.append(f"On {dataset} ({int(first.n_videos)} videos, {int(first.n_real_videos)} real; intervals over "
                    f"{int(first.n_units)} {unit_plural(first.unit)}) the {len(scored)} runs reach video-level AUC "
                    f"{scored.auc.min():.3f} to {scored.auc.max():.3f}.")
        if chosen in set(scored.run):
            row = scored[scored.run == chosen].iloc[0]
            own = (by_run[chosen].metrics.get("video") or {}).get("auc") or {}
            fall = f", against {own['value']:.3f} on its own test split" if own.get("value") is not None else ""
            chance = ": its interval includes 0.5, so it is not distinguishable from chance there" \
                if row.auc_low <= 0.5 else ""
            text.append(f"The network chosen on validation, {chosen}, reaches "
                        f"{_interval(row.auc, row.auc_low, row.auc_high)}{fall}{chance}.")
            methods = table[(table.dataset == dataset) & (table.level == "video") & (table.run == chosen)
                            & (table.method != ALL)].dropna(subset=["auc"])
            if len(methods) > 1:
                hardest, easiest = methods.loc[methods.auc.idxmin()], methods.loc[methods.auc.idxmax()]
                text.append(f"Per method it does best on {easiest.method} (AUC {easiest.auc:.3f}) and worst on "
                            f"{hardest.method} ({hardest.auc:.3f}).")
        for row in scored[scored.run.isin([r.name for r in runs if r.kind == "shortcut"])].itertuples():
            text.append(f"The shortcut baseline ({row.run}: colour, sharpness, JPEG and face-box statistics) reaches "
                        f"{_interval(row.auc, row.auc_low, row.auc_high)}: how far the training data's shortcut travels.")
    if study.notes:
        text.append("Notes: " + "; ".join(study.notes) + ".")
    return _relative(" ".join(text))


def _relative(text: str) -> str:
    """`text` with absolute paths written relative to the project (what the report may show)."""
    from helpers import display  # noqa: PLC0415

    return display.ABSOLUTE_PATH.sub(lambda m: display.relative_path(m.group(0)), text)


# --- the demo's external set ----------------------------------------------------------------------------------

def _build_demo(folder: str, identities: int, seed: int, frames: int, size: int) -> None:
    """helpers.demo's build in this (child) process: its landmark detection loads TensorFlow."""
    from helpers import demo  # noqa: PLC0415

    demo.make_demo_dataset(folder, identities=identities, seed=seed, frames=frames, size=size, reals_per_identity=1,
                           fakes_per_real=5, progress=False)


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(source, target)


def make_external_demo(out_dir: str | Path, identities: int = 8, seed: int = 1, frames: int = 4, size: int = 160,
                       compression: str = "c23") -> Path:
    """Build (or reuse) a small external set offline: a second demo dataset laid out as a FaceForensics++ tree.

    helpers.demo.make_demo_dataset (in a child process: it loads TensorFlow) renders `identities` LFW
    people, one REAL video each and five fakes per REAL, one per blending recipe, with `seed` (not the
    training demo's 0). Its files are re-laid as original_sequences/youtube/<compression>/videos/<id>.mp4
    and manipulated_sequences/<difficulty>-<recipe>/<compression>/videos/<target>_<source>.mp4, with
    splits/test.json listing every pair (the whole set is a test set). `out_dir/external_demo.json` records
    the arguments; a later call with the same ones reuses the tree. Returns `out_dir`. The defaults make
    48 videos of 4 frames (8 REAL, 8 per recipe): with notebook 08's FRAMES_PER_VIDEO 32 every frame is
    scored, 192 frames, so the demo's cross-dataset step takes seconds per run (the build about 10 s,
    most of it TensorFlow loading in the child).
    """
    out_dir = Path(out_dir)
    layouts.check_compression(compression)
    arguments = {"identities": int(identities), "seed": int(seed), "frames": int(frames), "size": int(size),
                 "compression": compression, "format": 1}
    stamp = out_dir / "external_demo.json"
    try:
        if json.loads(stamp.read_text(encoding="utf-8")).get("arguments") == arguments:
            return out_dir
    except (OSError, ValueError):
        pass
    for name in ("original_sequences", "manipulated_sequences", "splits"):
        shutil.rmtree(out_dir / name, ignore_errors=True)
    stamp.unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Built beside out_dir, never inside it: its parts' metadata.json would make the tree look like DFDC too.
    build = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-build-", dir=out_dir.parent))
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            pool.submit(_build_demo, str(build), identities, seed, frames, size).result()
        from helpers import demo  # noqa: PLC0415 - reads videos.csv only; no TensorFlow

        videos = demo.read_videos(build)
        reals = videos[videos.label == "REAL"]
        ids: dict[str, str] = {}
        for video, identity in zip(reals.video, reals.identity):
            # FF++ names a video by its person; a second REAL of one person (not asked for) gets a free number
            wanted, spare = f"{int(identity):03d}", 900
            while wanted in ids.values():
                wanted, spare = f"{spare:03d}", spare + 1
            ids[video] = wanted
        person = {int(i): ids[v] for v, i in zip(reals.video, reals.identity)}
        videos_dir = Path(compression) / "videos"
        pairs, taken = set(), set()
        for row in videos.itertuples():
            if row.label == "REAL":
                target = out_dir / "original_sequences" / "youtube" / videos_dir / f"{ids[row.video]}.mp4"
            else:
                method = DEMO_RECIPE_METHOD.format(difficulty=int(row.difficulty), recipe=row.recipe)
                name = f"{ids[row.original]}_{person[int(row.source_identity)]}"
                target = out_dir / "manipulated_sequences" / method / videos_dir / f"{name}.mp4"
                pairs.add(tuple(sorted((ids[row.original], person[int(row.source_identity)]))))
            if target in taken:
                raise RuntimeError(f"two demo videos would both be {target}: make_external_demo expects one fake per "
                                   "recipe and original")
            taken.add(target)
            _link_or_copy(build / row.part / row.video, target)
        (out_dir / "splits").mkdir(exist_ok=True)
        (out_dir / "splits" / "test.json").write_text(json.dumps([list(p) for p in sorted(pairs)]) + "\n")
        counts = {"videos": len(videos), "real": len(reals), "fake": int((videos.label == "FAKE").sum()),
                  "methods": sorted({DEMO_RECIPE_METHOD.format(difficulty=int(d), recipe=r)
                                     for d, r in zip(videos.difficulty, videos.recipe) if pd.notna(d)})}
        stamp.write_text(json.dumps({"arguments": arguments, "counts": counts}, indent=2) + "\n", encoding="utf-8")
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return out_dir


def external_roots(external_dirs, out_dir: str | Path, make_demo: bool = False, **demo_kwargs) -> list[Path]:
    """The dataset roots to evaluate: EXTERNAL_DIRS, plus the demo's external set (built under OUT_DIR) when asked."""
    roots = [Path(p) for p in external_dirs or []]
    if make_demo:
        roots.append(make_external_demo(Path(out_dir) / "external_demo", **demo_kwargs))
    if not roots:
        logger.warning("EXTERNAL_DIRS is empty and MAKE_DEMO_EXTERNAL is off: there is nothing to evaluate, so "
                       "notebook 08 skips the cross-dataset evaluation (list FaceForensics++ or Celeb-DF roots in EXTERNAL_DIRS)")
    return roots
