"""The evaluation protocol: every choice made on validation, every number reported on test.

One function, `evaluate_predictions`, turns a run's raw validation and test logits into what the
report shows, the same way for every run (notebooks 04-06 and the cross-dataset notebook):

1. **Calibration on validation.** Platt scaling (a slope and an intercept on the logit) is fitted on
   the validation faces and applied to the test faces. A class-weighted loss (`pos_weight`) shifts
   every logit by log(n_real / n_fake); temperature scaling only rescales and cannot remove that
   offset, Platt's intercept can. The temperature is kept beside it for comparison. `prob_fake` in
   predictions.csv is the calibrated probability, `prob_raw` the sigmoid of the raw logit.
2. **Threshold on validation.** The threshold behind accuracy, balanced accuracy and the confusion
   matrix maximises validation balanced accuracy (on calibrated probabilities); it is recorded.
3. **Intervals over independent units.** Test intervals resample identity groups (the `group` column
   of split.csv), never faces of one video or fakes of one original as if they were independent.
4. **Baseline from the training prevalence before balancing** (split_audit.json), the share a
   majority-class guess could have known in advance.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from helpers import metrics as M

THRESHOLD_RULE = "balanced_accuracy"


def train_prevalence(split_csv: str | Path, train: pd.DataFrame | None = None) -> tuple[float, str]:
    """The training FAKE share before any balancing, and where it came from.

    split_audit.json (beside split.csv) records the training counts before BALANCE dropped or
    re-weighted faces; without it the training rows of split.csv are used.
    """
    audit_path = Path(split_csv).with_name("split_audit.json")
    if audit_path.is_file():
        before = json.loads(audit_path.read_text(encoding="utf-8")).get("balance", {}).get("train_before") or {}
        fake, real = int(before.get("FAKE", 0)), int(before.get("REAL", 0))
        if fake + real:
            return fake / (fake + real), "train before balancing"
    if train is None or not len(train):
        raise ValueError(f"{audit_path} is missing and no training rows were given: the baseline needs the "
                         "training prevalence (run notebook 03 again)")
    return float(M.labels_to_int(train["label"]).mean()), "train"


def evaluate_predictions(predictions: pd.DataFrame, prevalence: float, prevalence_from: str = "train",
                         n_boot: int = 1000, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Calibrate on val, choose the threshold on val, score test; returns (predictions, metrics payload).

    `predictions` holds val and test rows with columns video_id, label, logit, split (and group).
    The returned predictions gain `prob_raw` and a calibrated `prob_fake`.
    """
    missing = {"video_id", "label", "logit", "split"} - set(predictions.columns)
    if missing:
        raise ValueError(f"predictions lack column(s) {sorted(missing)}; expected val and test rows with logits")
    out = predictions.copy()
    val, test = out[out.split == "val"], out[out.split == "test"]
    if not len(val) or not len(test):
        raise ValueError(f"calibration needs validation and test rows; got {len(val)} val and {len(test)} test")
    y_val, y_test = M.labels_to_int(val.label), M.labels_to_int(test.label)
    slope, intercept = M.fit_platt(val.logit, y_val)
    out["prob_raw"] = M.apply_temperature(out.logit, 1.0)
    out["prob_fake"] = M.apply_platt(out.logit, slope, intercept)
    val, test = out[out.split == "val"], out[out.split == "test"]
    one_class = len(set(y_val.tolist())) < 2
    # A validation split with one class cannot rank or balance anything: keep 0.5 and say so.
    threshold = 0.5 if one_class else M.choose_threshold(y_val, val.prob_fake, rule=THRESHOLD_RULE)
    group_column = "group" if "group" in out.columns and out.group.notna().all() else None
    payload = M.evaluate(test, n_boot=n_boot, seed=seed, group_column=group_column,
                         threshold=threshold, prevalence=prevalence)
    payload["baseline_prevalence_from"] = prevalence_from
    summary = M.calibration_summary(val.logit, y_val, test.logit, y_test)
    payload["calibration"] = {"method": "platt", "fitted_on": "val", "slope": slope, "intercept": intercept,
                              **summary}
    payload["threshold"] = {"value": threshold, "chosen_on": "val",
                            "rule": "0.5: the validation split holds one class" if one_class
                            else f"max validation {THRESHOLD_RULE}"}
    val_videos = M.video_level(val, "prob_fake")
    payload["val"] = {"frame": M.binary_metrics(y_val, val.prob_fake, threshold),
                      "video": M.binary_metrics(val_videos.label, val_videos.prob_fake, threshold)}
    return out, payload
