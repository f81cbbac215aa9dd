"""A shortcut baseline: logistic regression on simple per-face statistics, scored like the networks.

If colour, sharpness, compression and where the face sits in the frame already separate FAKE from
REAL, a CNN can score well without learning anything about manipulation. This baseline fits a
standardised logistic regression on those statistics with the same split, the same evaluation
protocol (`helpers.protocol.evaluate_predictions`: Platt calibration and threshold on val, group
bootstrap intervals on test) and the same run folder as `helpers.training.fit_and_test`, so it sits in
the results notebook's leaderboard beside the networks. If it comes close to them, the dataset has a
shortcut and the report must say so.

Features of one face crop (`FEATURES`; the box ones only when the split has face boxes):
    mean_r, mean_g, mean_b      channel means of the decoded RGB crop (0..255)
    std_r, std_g, std_b         channel standard deviations (0..255)
    log_laplacian_var           log(1 + variance of the Laplacian of the grey crop): sharpness; the log
                                because the variance spans orders of magnitude and a linear model on it
                                raw would be driven by a few very sharp crops
    jpeg_quality                the libjpeg quality (1..100) whose standard quantisation tables are
                                nearest (sum of absolute differences) to the file's own, read with PIL's
                                `Image.quantization`; exact for files written by libjpeg (OpenCV, PIL).
                                A non-JPEG file (PNG, ...) is lossless and gets 100
    blockiness                  mean absolute grey step across the 8x8 block boundaries minus the mean
                                step inside the blocks, horizontal and vertical averaged: JPEG blocking
                                in the crop, whatever its format (notebook 02 re-encodes every crop at one
                                quality, so jpeg_quality is often constant while blocking still varies)
    box_area_frac               w * h of the face box over the frame's area
    box_cx, box_cy              the box centre, x / frame width and y / frame height
The frame's size comes from frame_path's image header (read once per frame, EXIF rotation applied,
as helpers.faces.read_image applies it): crop_side cannot give it, since it measures the crop, not
the frame. An unreadable face crop or frame raises ValueError naming the file: the networks cannot
score such a face either, and a NaN feature would need an imputation that hides the problem.

The run folder (see helpers.training) holds config.json, history.csv (one row, epoch 0),
predictions.csv, metrics.json (with the standardised coefficients) and features.csv (the features of
every train and scored face, for plots of what separates the classes); there is no model.pt.

From a shell:
    python -m helpers.shortcut --split-csv data/interim/03_split/split.csv --out-dir data/processed/runs
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from helpers import metrics as M
from helpers import protocol

IMAGE_FEATURES = ("mean_r", "mean_g", "mean_b", "std_r", "std_g", "std_b", "log_laplacian_var", "jpeg_quality",
                  "blockiness")
BOX_FEATURES = ("box_area_frac", "box_cx", "box_cy")
FEATURES = IMAGE_FEATURES + BOX_FEATURES
BOX_COLUMNS = ("x", "y", "w", "h", "frame_path")
C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
# The networks' default imbalance="pos_weight" weighs the rarer class up in the loss (BALANCE="weights"
# in notebook 03 gives the same inverse-frequency weights), so the baseline is fitted the same way.
CLASS_WEIGHT = "balanced"

# libjpeg's standard tables (ITU T.81 Annex K) in row-major order, which PIL's `quantization` uses.
_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.int64)
_CHROMA = np.array([
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99, *[99] * 32], dtype=np.int64)
_ZIGZAG = np.array(sorted(range(64), key=lambda i: (i // 8 + i % 8, (i // 8) if (i // 8 + i % 8) % 2 else (i % 8))))


def _libjpeg_tables(quality: int) -> tuple[np.ndarray, np.ndarray]:
    """libjpeg's luminance and chrominance tables at `quality` (jpeg_quality_scaling, baseline clamp to 255)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return tuple(np.clip((base * scale + 50) // 100, 1, 255) for base in (_LUMA, _CHROMA))


_QUALITY_TABLES = {q: _libjpeg_tables(q) for q in range(1, 101)}


def quality_from_tables(tables: dict) -> float:
    """The libjpeg quality whose tables are nearest the given {0: luma, 1: chroma, ...} 64-entry tables."""
    given = [np.asarray(tables[k], dtype=np.int64) for k in sorted(tables)[:2]]
    if not given or any(t.size != 64 for t in given):
        raise ValueError(f"expected 64-entry quantisation tables, got sizes {[t.size for t in given]}")
    # Older Pillow versions gave the tables in zigzag order; take whichever order fits libjpeg better.
    orders = (given, [t[np.argsort(_ZIGZAG)] for t in given])
    best = min((int(sum(np.abs(t - ref).sum() for t, ref in zip(order, _QUALITY_TABLES[q]))), -q)
               for order in orders for q in _QUALITY_TABLES)
    return float(-best[1])


def jpeg_quality(path: str | Path) -> float:
    """The JPEG quality estimate of an image file (quantisation tables); 100 for a lossless format."""
    try:
        with Image.open(path) as image:
            if image.format != "JPEG":
                return 100.0
            tables = getattr(image, "quantization", None)
    except (OSError, SyntaxError) as err:
        raise ValueError(f"{path}: cannot read its image header ({err}); check or re-create the file") from None
    if not tables:
        raise ValueError(f"{path}: a JPEG without quantisation tables; re-create the file")
    return quality_from_tables(tables)


def blockiness(grey: np.ndarray, block: int = 8) -> float:
    """Mean absolute step across block boundaries minus the mean step inside blocks (grey levels)."""
    grey = np.asarray(grey, dtype=np.float64)
    scores = []
    for steps in (np.abs(np.diff(grey, axis=1)), np.abs(np.diff(grey, axis=0)).T):
        # steps[:, j] is the step between columns j and j + 1: a boundary when j + 1 is a multiple of `block`
        boundary = (np.arange(steps.shape[1]) + 1) % block == 0
        if boundary.any() and (~boundary).any():
            scores.append(steps[:, boundary].mean() - steps[:, ~boundary].mean())
    return float(np.mean(scores)) if scores else 0.0


def frame_size(frame_path: str | Path) -> tuple[int, int]:
    """(width, height) of a frame from its image header, after its EXIF rotation."""
    try:
        with Image.open(frame_path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except (OSError, SyntaxError) as err:
        raise ValueError(f"{frame_path}: cannot read the frame's image header ({err}); the face box features "
                         "need notebook 01's frames beside the faces (run notebook 01 again, or copy them)") from None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def image_features(face_path: str | Path) -> dict[str, float]:
    """Colour, spread, sharpness and compression statistics of one face crop."""
    from helpers.faces import read_image  # noqa: PLC0415 - its clear errors for missing or truncated files

    rgb = read_image(face_path)
    pixels = rgb.reshape(-1, 3).astype(np.float64)
    means, stds = pixels.mean(axis=0), pixels.std(axis=0)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    laplacian = cv2.Laplacian(grey, cv2.CV_64F).var()
    return {**{f"mean_{c}": float(v) for c, v in zip("rgb", means)},
            **{f"std_{c}": float(v) for c, v in zip("rgb", stds)},
            "log_laplacian_var": float(np.log1p(laplacian)), "jpeg_quality": jpeg_quality(face_path),
            "blockiness": blockiness(grey)}


def _has_box(row) -> bool:
    return row is not None and all(c in row for c in BOX_COLUMNS)


def box_features(row, size: tuple[int, int] | None = None) -> dict[str, float]:
    """Face box area over the frame's area and the box centre in frame units, from a faces.csv row."""
    x, y, w, h = (float(row[c]) for c in "xywh")
    if not all(np.isfinite([x, y, w, h])) or w <= 0 or h <= 0:
        raise ValueError(f"{row.get('face_path', '?')}: its row has no usable face box (x, y, w, h = {x}, {y}, {w}, "
                         f"{h}); only status-ok faces of faces.csv/split.csv can be scored")
    width, height = size or frame_size(row["frame_path"])
    return {"box_area_frac": w * h / (width * height), "box_cx": (x + w / 2) / width, "box_cy": (y + h / 2) / height}


def face_features(face_path: str | Path, row=None) -> dict[str, float]:
    """The baseline's features of one face crop; the box features too when `row` (a faces.csv row) has a box."""
    features = image_features(face_path)
    if _has_box(row):
        features.update(box_features(row))
    return features


def features_table(frame: pd.DataFrame, progress: bool = True) -> pd.DataFrame:
    """`face_features` of every row of a faces.csv/split.csv frame (same index); box features when it has boxes."""
    from tqdm.auto import tqdm  # noqa: PLC0415

    with_box = all(c in frame.columns for c in BOX_COLUMNS)
    if with_box and not all(Path(str(p)).is_file() for p in frame["frame_path"].drop_duplicates()):
        # a faces table whose frames are gone (copied without notebook 01's output, or hand-made):
        # the box features need each frame's size, so the baseline uses the crop statistics alone
        with_box = False
    columns = list(FEATURES if with_box else IMAGE_FEATURES)
    sizes: dict[str, tuple[int, int]] = {}  # many faces share a frame, and a frame has one size
    rows = []
    for _, row in tqdm(frame.iterrows(), total=len(frame), desc="face statistics", disable=not progress):
        features = image_features(row["face_path"])
        if with_box:
            path = str(row["frame_path"])
            if path not in sizes:
                sizes[path] = frame_size(path)
            features.update(box_features(row, sizes[path]))
        rows.append(features)
    return pd.DataFrame(rows, index=frame.index, columns=columns, dtype=np.float64)


def make_model(C: float, seed: int = 0):
    """StandardScaler then L2 logistic regression, class-balanced."""
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415
    from sklearn.pipeline import make_pipeline  # noqa: PLC0415
    from sklearn.preprocessing import StandardScaler  # noqa: PLC0415

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, class_weight=CLASS_WEIGHT, max_iter=5000,
                                                              random_state=seed))


def choose_C(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
             grid=C_GRID, seed: int = 0) -> tuple[float, list[dict], object]:
    """The C of `grid` with the highest validation AUC (ties: the smallest C, the simplest model).

    Returns (C, [{"C", "val_auc"}, ...], the model fitted at C).
    """
    search, best = [], None
    for C in sorted(float(c) for c in grid):
        model = make_model(C, seed).fit(x_train, y_train)
        auc = M.binary_metrics(y_val, _sigmoid(model.decision_function(x_val)))["auc"]
        search.append({"C": C, "val_auc": auc})
        if best is None or auc > best[1] + 1e-12:
            best = (C, auc, model)
    return best[0], search, best[2]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return M.apply_temperature(z, 1.0)


def _parts(split: pd.DataFrame, split_csv: Path) -> dict[str, pd.DataFrame]:
    missing = {"split", "label", "face_path", "video_id"} - set(split.columns)
    if missing:
        raise ValueError(f"{split_csv} lacks the columns {sorted(missing)}: is it a split.csv from notebook 03?")
    parts = {}
    for name in ("train", "val", "test"):
        part = split[split.split == name].reset_index(drop=True)
        labels = set(part.label)
        if not len(part):
            raise ValueError(f"{split_csv} has no {name} rows: check the fractions in notebook 03")
        if name == "train" and labels != {"REAL", "FAKE"}:
            raise ValueError(f"{split_csv}: the train split holds only {sorted(labels)} faces; fitting needs both "
                             "REAL and FAKE (check notebook 03's split)")
        parts[name] = part
    return parts


def _raw_predictions(frame: pd.DataFrame, logits: np.ndarray, split: str) -> pd.DataFrame:
    """The columns training.write_predictions writes, with the crop scored (the full face) as variant_path."""
    columns = {c: frame[c].to_numpy() for c in ("face_path", "video_id", "group", "label", "frame_index", "face_index")
               if c in frame.columns}
    return pd.DataFrame({**columns, "logit": logits, "split": split, "variant_path": frame["face_path"].to_numpy()})


def _history_row(y_train, logit_train, y_val, logit_val) -> pd.DataFrame:
    """One "epoch 0" row in the networks' history.csv columns (raw probabilities, threshold 0.5)."""
    row = {"epoch": 0}
    for name, y, z in (("train", y_train, logit_train), ("val", y_val, logit_val)):
        m = M.binary_metrics(y, _sigmoid(z))
        row.update({f"{name}/loss": m["log_loss"], f"{name}/acc": m["accuracy"], f"{name}/auc": m["auc"]})
    return pd.DataFrame([row])


def fit_and_test(split_csv: str | Path, out_dir: str | Path, run_name: str = "shortcut", n_boot: int = 1000,
                 seed: int = 0, C: float | None = None, progress: bool = True) -> Path:
    """Fit the baseline on train (C by validation AUC unless given), score val and test, write the run folder."""
    from helpers import splits, training  # noqa: PLC0415 - training pulls in torch, needed only here

    split_csv = Path(split_csv)
    if C is not None and not (np.isfinite(C) and C > 0):
        raise ValueError(f"C must be a positive number, got {C}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    started = time.time()
    parts = _parts(splits.read_split(split_csv), split_csv)
    evaluation = training.eval_faces(split_csv)
    # split.csv's test faces are scored only when there is no eval.csv, as in training.fit_and_test
    features = {name: features_table(parts[name], progress) for name in
                (("train", "val") if evaluation is not None else ("train", "val", "test"))}
    columns = list(features["train"].columns)
    scored = {name: parts[name] for name in ("val", "test")}
    scored_features = {name: features.get(name) for name in ("val", "test")}
    if evaluation is not None:
        table = features_table(evaluation, progress)
        missing = sorted(set(columns) - set(table.columns))
        if missing:
            raise ValueError(f"{split_csv.with_name('eval.csv')} lacks what the features {missing} need "
                             f"(columns {list(BOX_COLUMNS)}); run notebook 03 again")
        for name in ("val", "test"):
            keep = (evaluation.split == name).to_numpy()
            scored[name] = evaluation[keep].reset_index(drop=True)
            scored_features[name] = table[keep].reset_index(drop=True)

    y = {name: M.labels_to_int(part.label) for name, part in parts.items()}
    x = {name: features[name][columns].to_numpy() for name in ("train", "val")}
    one_class_val = len(set(y["val"].tolist())) < 2
    # A validation split with one class ranks nothing: C stays at 1 (said in config.json's C_chosen_by).
    grid = (1.0,) if one_class_val and C is None else C_GRID if C is None else (float(C),)
    # C is chosen on split.csv's val faces, the set the networks choose their epoch on; test is never looked at.
    chosen, search, model = choose_C(x["train"], y["train"], x["val"], y["val"], grid, seed)

    raw = pd.concat([_raw_predictions(scored[name], model.decision_function(scored_features[name][columns].to_numpy()),
                                      name) for name in ("val", "test")], ignore_index=True)
    prevalence, prevalence_from = protocol.train_prevalence(split_csv, parts["train"])
    predictions, payload = protocol.evaluate_predictions(raw, prevalence, prevalence_from, n_boot=n_boot, seed=seed)

    run_dir = Path(out_dir) / run_name
    if run_dir.exists():
        training.clear_run_dir(run_dir)  # a fresh run: files of an earlier one must not be mixed in
    run_dir.mkdir(parents=True, exist_ok=True)
    best_val_auc = next(s["val_auc"] for s in search if s["C"] == chosen)
    config = {
        "run_name": run_name, "model": "shortcut", "variant": "full", "features": columns,
        "C": chosen, "C_grid": list(grid), "C_search": search,
        "C_chosen_by": "given" if C is not None else "fixed at 1: the validation split holds one class"
        if one_class_val else "max validation AUC on split.csv's val faces (ties: smallest C)",
        "class_weight": CLASS_WEIGHT, "standardised": True, "seed": seed, "n_boot": n_boot,
        "data": {name: {"faces": len(part), "fake": int(y[name].sum()), "real": int((y[name] == 0).sum())}
                 for name, part in parts.items()},
        "split_csv": str(split_csv), "out_dir": str(out_dir),
    }
    (run_dir / "config.json").write_text(json.dumps(M.to_jsonable(config), indent=2))
    _history_row(y["train"], model.decision_function(x["train"]), y["val"],
                 model.decision_function(x["val"])).to_csv(run_dir / "history.csv", index=False)
    predictions.to_csv(run_dir / "predictions.csv", index=False)
    table = pd.concat([pd.DataFrame({"face_path": scored[n].face_path, "label": scored[n].label, "split": n,
                                     **scored_features[n]}) for n in ("val", "test")]
                      + [pd.DataFrame({"face_path": parts["train"].face_path, "label": parts["train"].label,
                                       "split": "train", **features["train"]})], ignore_index=True)
    table.to_csv(run_dir / "features.csv", index=False)

    regression = model[-1]
    payload["evaluated_on"] = ("eval.csv: every face of the held-out videos' evaluation frames"
                               if evaluation is not None else "split.csv's val and test faces")
    payload.update({
        "run": run_name, "model": "shortcut", "variant": "full", "best_epoch": 0, "best_val_auc": best_val_auc,
        "epochs_trained": 0, "train_seconds": round(time.time() - started, 1),
        "parameters": int(regression.coef_.size + regression.intercept_.size),  # weights and the intercept
        "coefficients": dict(zip(columns, regression.coef_[0].tolist())),  # per standard deviation of a feature
        "intercept": float(regression.intercept_[0]), "C": chosen,
    })
    (run_dir / "metrics.json").write_text(json.dumps(M.to_jsonable(payload), indent=2))
    return run_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.shortcut", description="Fit and test the shortcut "
                                     "baseline (logistic regression on face statistics).")
    parser.add_argument("--split-csv", type=Path, required=True, help="split.csv written by notebook 03")
    parser.add_argument("--out-dir", type=Path, required=True, help="folder that receives the run folder")
    parser.add_argument("--run-name", default="shortcut", help="name of the run folder (default: shortcut)")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the test intervals")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--C", type=float, default=None, help=f"fix the inverse regularisation (default: best of "
                                                              f"{list(C_GRID)} by validation AUC)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if not args.split_csv.is_file():
        print(f"shortcut: {args.split_csv} does not exist: pass the split.csv notebook 03 wrote", file=sys.stderr)
        return 2
    if not args.run_name or Path(args.run_name).name != args.run_name:
        print(f"shortcut: --run-name {args.run_name!r} must be a plain folder name", file=sys.stderr)
        return 2
    try:
        run_dir = fit_and_test(args.split_csv, args.out_dir, args.run_name, args.n_boot, args.seed, args.C,
                               progress=not args.no_progress)
    except (OSError, ValueError) as err:
        print(f"shortcut: {err}", file=sys.stderr)
        return 2
    print(run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
