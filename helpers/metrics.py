"""Honest metrics for a binary deepfake detector: ones a majority-class guess cannot fake.

Labels: 1 = FAKE (the positive class), 0 = REAL; `prob` is the predicted probability of FAKE. A face
counts as called FAKE when `prob > threshold`, the rule torchmetrics uses, so the accuracy here
agrees with the `val/acc` logged during training.

Every metric is a weighted sum over items, so one code path (`_weighted_metrics`) serves both the
point estimate (all weights 1) and the bootstrap (weights = how often each item was drawn), and a
thousand resamples are a few matrix products instead of a thousand Python loops (scikit-learn scores one
resample per call; the tests check the metrics against it, EER by hand, and the interval against scipy). The
same weights serve the paired comparison of two detectors (`paired_bootstrap`) and the pooling of training seeds
(`hierarchical_bootstrap`), so every interval in the study resamples the same independent units.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
from scipy import optimize, special, stats
from sklearn.metrics import roc_curve

METRICS = (
    "accuracy", "balanced_accuracy", "auc", "log_loss", "eer", "tpr_at_1fpr", "ap", "n", "n_fake", "n_real",
)
# The metrics `paired_bootstrap` and `hierarchical_paired_bootstrap` compare.
PAIRED_METRICS = ("auc", "balanced_accuracy")
# tpr_at_1fpr: the operating point a screening service cares about, few real videos flagged.
FPR_LIMIT = 0.01
INTERVAL_METHOD = "percentile bootstrap"
THRESHOLD_RULES = ("balanced_accuracy", "accuracy")
# Platt scaling adds PLATT_RIDGE * (slope^2 + intercept^2) / 2 to the summed log loss: a prior too
# weak to matter on real data, but it keeps separable or one-class validation sets finite.
PLATT_RIDGE = 1e-3
PROB_CLIP = 1e-7
# Bootstrap resamples are processed in blocks of about this many (resample, item) cells, so a
# block's weight matrix stays near 16 MB whatever n_boot and the number of items are.
BLOCK_CELLS = 2_000_000
# A resample missing a class is drawn again at most this often before it is given up (AUC/EER NaN).
MAX_REDRAWS = 100
# Below this many discordant pairs McNemar's chi-square approximation is poor; use the exact test.
EXACT_BELOW = 25

_LABEL_NAMES = {"REAL": 0, "FAKE": 1, "0": 0, "1": 1}


def labels_to_int(labels: Iterable) -> np.ndarray:
    """Labels as 0/1 ints (0 = REAL, 1 = FAKE), from 0/1, booleans or "REAL"/"FAKE" (any case)."""
    arr = labels.to_numpy() if isinstance(labels, pd.Series) else np.asarray(labels)
    if arr.dtype.kind not in "biuf":
        # Mixed lists become strings under np.asarray ("True"); keep each value as it was given.
        arr = np.asarray(list(labels), dtype=object)
    arr = arr.ravel()
    if arr.dtype.kind in "biuf":
        ok = (arr == 0) | (arr == 1)
        out = (arr == 1).astype(np.int64)
    else:
        def to_number(v):
            if isinstance(v, str):
                return _LABEL_NAMES.get(v.strip().upper(), math.nan)
            if isinstance(v, (bool, np.bool_, int, np.integer, float, np.floating)):
                return float(v)
            return math.nan

        numeric = np.array([to_number(v) for v in arr], dtype=np.float64)
        ok = (numeric == 0) | (numeric == 1)
        out = (numeric == 1).astype(np.int64)
    if not ok.all():
        shown = sorted({repr(v) for v in arr[~ok]})[:5]
        raise ValueError(
            f"{int((~ok).sum())} label(s) are neither 0/1 nor 'REAL'/'FAKE' (e.g. {', '.join(shown)}); "
            "fix or drop those rows before computing metrics"
        )
    return out


def _probs(prob: Iterable, n: int) -> np.ndarray:
    p = np.asarray(prob, dtype=np.float64).ravel()
    if n == 0:
        raise ValueError("no items to score: the labels are empty (did a filter on split remove every row?)")
    if p.shape[0] != n:
        raise ValueError(f"got {n} labels but {p.shape[0]} probabilities; they must be paired item by item")
    if not np.all(np.isfinite(p)):
        raise ValueError(
            f"{int((~np.isfinite(p)).sum())} probabilities are NaN or infinite; "
            "drop or re-score those items before computing metrics"
        )
    if p.size and (p.min() < 0 or p.max() > 1):
        raise ValueError("probabilities must lie in [0, 1]; pass sigmoid(logits), not the logits")
    return p


class _Sorted:
    """Items sorted by falling score, with the runs of tied scores ("levels") that ROC and AUC need."""

    def __init__(self, y: np.ndarray, prob: np.ndarray, threshold: float):
        # Falling order, so a running sum over levels is the ROC as the threshold is lowered.
        order = np.argsort(-prob, kind="stable")
        self.order = order
        self.y = y[order].astype(np.float64)
        self.prob = prob[order]
        pred = self.prob > threshold
        self.correct = (pred == (self.y == 1)).astype(np.float64)
        self.tp_item = (pred & (self.y == 1)).astype(np.float64)
        self.tn_item = (~pred & (self.y == 0)).astype(np.float64)
        p = np.clip(self.prob, PROB_CLIP, 1 - PROB_CLIP)
        self.nll = -(self.y * np.log(p) + (1 - self.y) * np.log1p(-p))
        self.starts = np.flatnonzero(np.r_[True, self.prob[1:] != self.prob[:-1]])


def _weighted_metrics(s: _Sorted, w: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric for each row of weights `w` (rows = resamples, columns = items in score order)."""
    total = w.sum(axis=1)
    pos = w @ s.y
    neg = total - pos
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = (w @ s.correct) / total
        tpr = (w @ s.tp_item) / pos
        tnr = (w @ s.tn_item) / neg
        # With one class present, average the recall of the classes that are, as scikit-learn does.
        balanced = np.where(pos == 0, tnr, np.where(neg == 0, tpr, 0.5 * (tpr + tnr)))
        log_loss = (w @ s.nll) / total

        pos_l = w * s.y
        if len(s.starts) == len(s.y):  # no tied scores: every item is its own level
            neg_l = w - pos_l
        else:
            pos_l = np.add.reduceat(pos_l, s.starts, axis=1)
            neg_l = np.add.reduceat(w, s.starts, axis=1) - pos_l
        tp = np.cumsum(pos_l, axis=1)
        fp = np.cumsum(neg_l, axis=1)
        # AUC = P(score of a fake > score of a real), ties counting one half (the Mann-Whitney form):
        # the reals below level j weigh neg - fp_j, the reals tied with it neg_l_j.
        above_or_tied = np.einsum("ij,ij->i", pos_l, fp) - 0.5 * np.einsum("ij,ij->i", pos_l, neg_l)
        auc = 1 - above_or_tied / (pos * neg)
        eer = _eer(tp, fp, pos, neg)
        # TP only grows as the threshold falls, so the best TPR within the FPR limit is the TPR at the
        # last ROC point inside it; the point (0, 0) before the first level is always inside.
        inside = fp <= FPR_LIMIT * neg[:, None] * (1 + 1e-12)
        tpr_at_fpr = np.where(inside, tp, 0.0).max(axis=1) / pos
        # Average precision as scikit-learn defines it: the precision at each level, weighted by the
        # recall the level adds (no interpolation); levels not yet holding any weight add nothing.
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        ap = np.einsum("ij,ij->i", pos_l, precision) / pos
    undefined = (pos == 0) | (neg == 0)
    for values in (auc, eer, tpr_at_fpr, ap):
        values[undefined] = np.nan
    return {
        "accuracy": accuracy, "balanced_accuracy": balanced, "auc": auc, "log_loss": log_loss, "eer": eer,
        "tpr_at_1fpr": tpr_at_fpr, "ap": ap, "n": total, "n_fake": pos, "n_real": neg,
    }


def _eer(tp: np.ndarray, fp: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Where FPR = FNR on each ROC row, interpolating linearly along the segment that crosses.

    Column j of `tp`/`fp` is the ROC point after j + 1 levels; the point before the first is (0, 0).
    """
    fpr = fp / neg[:, None]
    d = fpr + tp / pos[:, None] - 1  # FPR - FNR: rises from -1 at (0, 0) to +1 at (1, 1)
    rows = np.arange(d.shape[0])
    k = np.minimum((d < 0).sum(axis=1), d.shape[1] - 1)  # first point with FPR >= FNR
    prev = np.maximum(k - 1, 0)
    d1, f1 = d[rows, k], fpr[rows, k]
    d0 = np.where(k == 0, -1.0, d[rows, prev])
    f0 = np.where(k == 0, 0.0, fpr[rows, prev])
    t = np.where(d1 > d0, -d0 / (d1 - d0), 0.0)
    return f0 + t * (f1 - f0)


def _scalar(value: float, integer: bool = False):
    value = float(value)
    if integer and math.isfinite(value):
        return int(round(value))
    return value


def binary_metrics(y_true: Iterable, prob: Iterable, threshold: float = 0.5) -> dict:
    """Accuracy, balanced accuracy, ROC AUC, log loss, EER, TPR at 1% FPR, average precision and counts."""
    y = labels_to_int(y_true)
    p = _probs(prob, len(y))
    s = _Sorted(y, p, threshold)
    m = _weighted_metrics(s, np.ones((1, len(y))))
    return {k: _scalar(v[0], integer=k.startswith("n")) for k, v in m.items()}


def roc_points(y_true: Iterable, prob: Iterable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) of the ROC, one point per distinct score plus (0, 0) at threshold inf."""
    y = labels_to_int(y_true)
    p = _probs(prob, len(y))
    # drop_intermediate=False keeps the collinear points too: one point per distinct score.
    return roc_curve(y, p, pos_label=1, drop_intermediate=False)


def _draw_weights(rng: np.random.Generator, rows: int, n: int, codes: np.ndarray | None, n_groups: int) -> np.ndarray:
    """How often each item is drawn in `rows` resamples: items, or whole groups, with replacement."""
    units = n if codes is None else n_groups
    idx = rng.integers(0, units, size=(rows, units))
    idx += np.arange(rows)[:, None] * units
    counts = np.bincount(idx.ravel(), minlength=rows * units).reshape(rows, units).astype(np.float64)
    return counts if codes is None else counts[:, codes]


def _group_codes(groups: Iterable | None, n: int) -> tuple[np.ndarray | None, int]:
    """Integer codes (sorted group order) of one group id per item, and the number of groups."""
    if groups is None:
        return None, n
    g = pd.Series(list(groups) if not isinstance(groups, (pd.Series, np.ndarray)) else groups)
    if len(g) != n:
        raise ValueError(f"got {n} labels but {len(g)} group ids; pass one group id per item")
    if g.isna().any():
        raise ValueError(f"{int(g.isna().sum())} group ids are missing; every item needs one")
    codes, uniques = pd.factorize(g, sort=True)
    return codes, len(uniques)


def _weight_blocks(rng: np.random.Generator, y: np.ndarray, n_boot: int, codes: np.ndarray | None, n_groups: int):
    """Yield blocks of resample weights (columns in the order of `y`), redrawing resamples that lack a class.

    Every metric is then computed on the same resamples, each holding both classes as the data do.
    """
    n = len(y)
    both_classes = 0 < y.sum() < n
    block = max(1, BLOCK_CELLS // n)
    for start in range(0, n_boot, block):
        rows = min(block, n_boot - start)
        w = _draw_weights(rng, rows, n, codes, n_groups)
        if both_classes:
            for _ in range(MAX_REDRAWS):
                pos = w @ y
                bad = np.flatnonzero((pos == 0) | (pos == w.sum(axis=1)))
                if not bad.size:
                    break
                w[bad] = _draw_weights(rng, bad.size, n, codes, n_groups)
        yield w


def _percentiles(values: np.ndarray, alpha: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if not values.size:
        return math.nan, math.nan
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def bootstrap_ci(
    y_true: Iterable,
    prob: Iterable,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    groups: Iterable | None = None,
    threshold: float = 0.5,
) -> dict[str, dict]:
    """Percentile-bootstrap intervals, `{metric: {"value", "lo", "hi"}}`, resampling groups when given;
    the AUC also holds `p_chance`, the one-sided bootstrap p of AUC <= 0.5 (`p_at_chance`).

    With `groups` (e.g. video ids) whole groups are resampled, because the faces of one video are not
    independent draws and an item bootstrap would give intervals that are too narrow. A resample that
    lacks a class is drawn again (up to MAX_REDRAWS times); if the data themselves hold one class,
    AUC, EER, TPR at 1% FPR and AP are NaN, and so are their intervals. On a DFDC-like simulation
    (150 originals, ~5 fakes each, shared group effects) the 95% group interval of the AUC covers
    the true AUC ~94% of the time; BCa and a studentised (cluster DeLong) interval did no better,
    so the plain percentile interval is kept (tests/test_metrics.py::test_group_bootstrap_covers_the_true_auc).
    """
    y = labels_to_int(y_true)
    p = _probs(prob, len(y))
    s = _Sorted(y, p, threshold)
    point = binary_metrics(y, p, threshold)
    codes, n_groups = _group_codes(groups, len(y))
    # Weights are drawn directly in score order (the codes follow the items there).
    codes = None if codes is None else codes[s.order]
    rng = np.random.default_rng(seed)
    blocks = [_weighted_metrics(s, w) for w in _weight_blocks(rng, s.y, n_boot, codes, n_groups)]
    out = {}
    for key in METRICS:
        values = np.concatenate([b[key] for b in blocks]) if blocks else np.array([])
        lo, hi = _percentiles(values, alpha)
        out[key] = {"value": point[key], "lo": lo, "hi": hi}
    out["auc"]["p_chance"] = p_at_chance(np.concatenate([b["auc"] for b in blocks]) if blocks else np.array([]))
    return out


def p_at_chance(auc_resamples: np.ndarray) -> float:
    """One-sided bootstrap p-value of "AUC <= 0.5": the share of resampled AUCs at or below chance.

    At least 1/n (n finite resamples), since a bootstrap cannot show a smaller p; NaN without resamples.
    With several networks tested on one test set, adjust these (`holm`) before calling any above chance.
    """
    values = np.asarray(auc_resamples, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not values.size:
        return math.nan
    return float(max(np.mean(values <= 0.5), 1 / values.size))


def _seed_probs(y: np.ndarray, probs, name: str) -> np.ndarray:
    """`probs` as an (n_seeds, n_items) array of checked probabilities."""
    arr = np.asarray(probs, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"{name} must be (n_seeds, n_items) probabilities; got shape {arr.shape}")
    return np.stack([_probs(row, len(y)) for row in arr])


def _seed_thresholds(threshold, n_seeds: int, name: str) -> list[float]:
    t = np.atleast_1d(np.asarray(threshold, dtype=np.float64))
    if t.size == 1:
        return [float(t[0])] * n_seeds
    if t.size != n_seeds:
        raise ValueError(f"{name} has {t.size} values for {n_seeds} seeds; give one threshold or one per seed")
    return [float(v) for v in t]


def _seed_resamples(
    y: np.ndarray, seed_sets: list[tuple[np.ndarray, list[float]]], groups, n_boot: int, seed: int
) -> list[dict[str, np.ndarray]]:
    """For each set of seeds, every metric on each resample of groups, averaged over seeds drawn with replacement.

    All sets share the group weights (a paired comparison); each set draws its own seeds, because
    two set-ups' training runs share nothing but the test items. With one seed the seed draw is a
    no-op and this is the plain group bootstrap, on the same random stream as `bootstrap_ci`.
    """
    codes, n_groups = _group_codes(groups, len(y))
    sorted_sets = [[_Sorted(y, p, t) for p, t in zip(probs, thresholds)] for probs, thresholds in seed_sets]
    rng = np.random.default_rng(seed)
    # A second stream for the seeds keeps the group draws identical whatever the number of seeds.
    seed_rng = np.random.default_rng([seed, 1])
    out: list[dict[str, list]] = [{k: [] for k in METRICS} for _ in seed_sets]
    for w in _weight_blocks(rng, y.astype(np.float64), n_boot, codes, n_groups):
        for acc, runs in zip(out, sorted_sets):
            drawn = _draw_weights(seed_rng, w.shape[0], len(runs), None, len(runs))
            total = {k: np.zeros(w.shape[0]) for k in METRICS}
            for j, s in enumerate(runs):
                m = _weighted_metrics(s, w[:, s.order])
                for k in METRICS:
                    # A seed drawn zero times adds nothing, even where its metric is NaN.
                    total[k] += np.where(drawn[:, j] > 0, drawn[:, j] * m[k], 0.0)
            for k in METRICS:
                acc[k].append(total[k] / len(runs))
    return [{k: np.concatenate(v) if v else np.array([]) for k, v in acc.items()} for acc in out]


def _seed_point(y: np.ndarray, probs: np.ndarray, thresholds: list[float]) -> dict[str, float]:
    runs = [binary_metrics(y, p, t) for p, t in zip(probs, thresholds)]
    return {k: float(np.mean([r[k] for r in runs])) for k in METRICS}


def hierarchical_bootstrap(
    y_true: Iterable,
    probs,
    groups: Iterable | None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    threshold: float | Iterable[float] = 0.5,
) -> dict[str, dict]:
    """Seeds pooled: `{metric: {"value", "lo", "hi"}}` over (n_seeds, n_items) `probs` on the same items
    (and the AUC's `p_chance`, as in `bootstrap_ci`).

    Each resample draws groups with replacement and seeds with replacement and averages each metric
    over the drawn seeds, so the interval holds both the test-set and the training-seed variation.
    `value` is the mean over seeds of the point metric; `threshold` is one value or one per seed.
    """
    y = labels_to_int(y_true)
    p = _seed_probs(y, probs, "probs")
    t = _seed_thresholds(threshold, len(p), "threshold")
    point = _seed_point(y, p, t)
    boot = _seed_resamples(y, [(p, t)], groups, n_boot, seed)[0]
    out = {}
    for k in METRICS:
        lo, hi = _percentiles(boot[k], alpha)
        out[k] = {"value": point[k], "lo": lo, "hi": hi}
    out["auc"]["p_chance"] = p_at_chance(boot["auc"])
    return out


def _bootstrap_p(diff: np.ndarray, n_boot: int) -> float:
    """Two-sided bootstrap p-value of a difference: 2 * the smaller tail share beyond 0, at least 1 / n_boot."""
    diff = diff[np.isfinite(diff)]
    if not diff.size:
        return math.nan
    tail = min(float(np.mean(diff <= 0)), float(np.mean(diff >= 0)))
    return float(min(1.0, max(2 * tail, 1 / max(n_boot, 1))))


def hierarchical_paired_bootstrap(
    y_true: Iterable,
    probs_a,
    probs_b,
    groups: Iterable | None,
    threshold_a: float | Iterable[float] = 0.5,
    threshold_b: float | Iterable[float] = 0.5,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, dict]:
    """Detector b against a (each (n_seeds, n_items), seed counts may differ): diff = b - a per PAIRED_METRICS.

    Returns `{metric: {"a", "b", "diff", "lo", "hi", "p_value"}}`: seed-mean point values, the
    percentile interval of b - a and its two-sided bootstrap p-value, with groups resampled alike
    for a and b and each detector's seeds drawn with replacement.
    """
    y = labels_to_int(y_true)
    pa, pb = _seed_probs(y, probs_a, "probs_a"), _seed_probs(y, probs_b, "probs_b")
    ta, tb = _seed_thresholds(threshold_a, len(pa), "threshold_a"), _seed_thresholds(threshold_b, len(pb), "threshold_b")
    point_a, point_b = _seed_point(y, pa, ta), _seed_point(y, pb, tb)
    boot_a, boot_b = _seed_resamples(y, [(pa, ta), (pb, tb)], groups, n_boot, seed)
    out = {}
    for k in PAIRED_METRICS:
        diff = boot_b[k] - boot_a[k]
        lo, hi = _percentiles(diff, alpha)
        out[k] = {"a": point_a[k], "b": point_b[k], "diff": point_b[k] - point_a[k], "lo": lo, "hi": hi,
                  "p_value": _bootstrap_p(diff, n_boot)}
    return out


def paired_bootstrap(
    y_true: Iterable,
    prob_a: Iterable,
    prob_b: Iterable,
    groups: Iterable | None,
    threshold_a: float = 0.5,
    threshold_b: float = 0.5,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, dict]:
    """Detector b against detector a on the same items: `{metric: {"a", "b", "diff", "lo", "hi", "p_value"}}`.

    diff = b - a; both are scored on the same resamples of whole groups (items when `groups` is
    None), so what the two share cancels; p_value is the two-sided bootstrap p of the difference.
    """
    return hierarchical_paired_bootstrap(
        y_true, np.asarray(prob_a, dtype=np.float64).ravel()[None, :], np.asarray(prob_b, dtype=np.float64).ravel()[None, :],
        groups, threshold_a, threshold_b, n_boot, seed, alpha,
    )


def holm(p_values: Iterable[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given: monotone in the raw p, capped at 1."""
    p = np.asarray(list(p_values), dtype=np.float64)
    if not p.size:
        return []
    if np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError(f"p-values must lie in [0, 1]; got {p.tolist()}")
    order = np.argsort(p, kind="stable")
    m = p.size
    stepped = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    adjusted = np.empty(m)
    adjusted[order] = stepped
    return adjusted.tolist()


def aggregate_face_scores(probs: Iterable) -> float:
    """A video's score from its faces' P(FAKE) over all its frames: their mean (the one place that says so)."""
    p = np.asarray(probs, dtype=np.float64).ravel()
    if not p.size:
        raise ValueError("a video with no face scores cannot be scored; drop it or score its faces first")
    return float(p.mean())


def _one_per_video(df: pd.DataFrame, column: str, what: str) -> None:
    counts = df.groupby("video_id")[column].nunique(dropna=False)
    if (counts > 1).any():
        raise ValueError(
            f"{int((counts > 1).sum())} video(s) have faces with more than one {what} "
            f"(e.g. {list(counts[counts > 1].index[:3])}); a video has one {what}, fix the manifest"
        )


def video_level(predictions: pd.DataFrame, score: str = "prob_fake", group_column: str | None = "group") -> pd.DataFrame:
    """One row per `video_id`: the aggregated face score, the label (split and group when present), `n_faces`."""
    missing = [c for c in ("video_id", "label", score) if c not in predictions.columns]
    if missing:
        raise ValueError(f"predictions lack column(s) {missing}; expected video_id, label and {score}")
    if predictions["video_id"].isna().any():
        raise ValueError(
            f"{int(predictions['video_id'].isna().sum())} row(s) have no video_id; "
            "every face must name its video, or it would be dropped from the video-level scores"
        )
    df = predictions.assign(_y=labels_to_int(predictions["label"]))
    mixed = df.groupby("video_id")["_y"].nunique()
    if (mixed > 1).any():
        raise ValueError(
            f"{int((mixed > 1).sum())} video(s) have faces labelled both REAL and FAKE "
            f"(e.g. {list(mixed[mixed > 1].index[:3])}); a video has one label, fix the manifest"
        )
    carried = [c for c in ("split", group_column) if c is not None and c in df.columns]
    if group_column in carried:
        # The group decides what a bootstrap resamples; a video split across two would be counted twice.
        _one_per_video(df, group_column, f"'{group_column}' value")
    agg = {score: (score, aggregate_face_scores), "label": ("label", "first")}
    agg.update({c: (c, "first") for c in carried})
    agg["n_faces"] = (score, "size")
    out = df.groupby("video_id", sort=True).agg(**agg).reset_index()
    return out[["video_id", score, "label", *carried, "n_faces"]]


def _prevalence(y_train) -> float:
    y = labels_to_int(y_train)
    if not len(y):
        raise ValueError("y_train is empty; the majority baseline needs training labels")
    return float(y.mean())


def majority_baseline(y_train: Iterable | None, y_test: Iterable, prevalence: float | None = None) -> dict:
    """Metrics of always guessing the training majority (probability = training share of FAKE).

    `prevalence`, when given, is that share (e.g. counted before class balancing) and `y_train` is ignored.
    """
    y_test = labels_to_int(y_test)
    if prevalence is None:
        prevalence = _prevalence(y_train)
    elif not 0 <= float(prevalence) <= 1:
        raise ValueError(f"prevalence is the training share of FAKE, a number in [0, 1]; got {prevalence}")
    # A constant prob equal to the prevalence is called FAKE exactly when FAKE is the majority
    # (prob > 0.5; a 50/50 tie guesses REAL), and it is the best constant for log loss, so one
    # vector serves every metric.
    return binary_metrics(y_test, np.full(len(y_test), float(prevalence)))


def _video_train_labels(y_train) -> Any:
    if isinstance(y_train, pd.DataFrame) and "video_id" in y_train.columns:
        return y_train.groupby("video_id", sort=True)["label"].first()
    if isinstance(y_train, pd.DataFrame):
        return y_train["label"]
    return y_train


def evaluate(
    predictions: pd.DataFrame,
    n_boot: int = 1000,
    seed: int = 0,
    y_train=None,
    alpha: float = 0.05,
    group_column: str | None = "group",
    threshold: float = 0.5,
    prevalence: float | None = None,
) -> dict:
    """The `metrics.json` payload: frame- and video-level bootstrap intervals and majority baselines.

    `predictions` has columns face_path, video_id, label, prob_fake (split, and `group_column` when
    known); every row is scored, so filter to the test split first. Intervals resample independent
    units: the groups of `group_column` (e.g. an original and its fakes) at both levels when that
    column exists, otherwise (or with group_column=None) videos. `threshold` (prob > threshold
    calls FAKE) shapes accuracy and balanced accuracy at both levels. The majority baseline guesses
    `prevalence` (the training FAKE share before balancing) when given, else the share in `y_train`
    (training labels, or a training manifest with `video_id` and `label` whose videos give the
    video-level share), else the test share, which flatters the baseline: it could not know that
    share in advance.
    """
    if len(predictions) == 0:
        raise ValueError("predictions is empty; nothing to evaluate")
    grouped = group_column is not None and group_column in predictions.columns
    if grouped and predictions[group_column].isna().any():
        raise ValueError(
            f"{int(predictions[group_column].isna().sum())} prediction row(s) have no '{group_column}'; "
            f"fill it for every face (from split.csv) or drop the column to resample videos instead"
        )
    y = labels_to_int(predictions["label"])
    videos = video_level(predictions, "prob_fake", group_column if grouped else None)
    y_video = labels_to_int(videos["label"])
    frame_groups = predictions[group_column] if grouped else predictions["video_id"]
    video_groups = videos[group_column] if grouped else None
    if prevalence is not None:
        train_frame = train_video = None
        source = "train before balancing"
    elif y_train is not None:
        train_frame = y_train["label"] if isinstance(y_train, pd.DataFrame) else y_train
        train_video = _video_train_labels(y_train)
        source = "train"
    else:
        train_frame, train_video, source = y, y_video, "test"
    frame_base = majority_baseline(train_frame, y, prevalence)
    video_base = majority_baseline(train_video, y_video, prevalence)
    return {
        "frame": bootstrap_ci(y, predictions["prob_fake"], n_boot, seed, alpha, groups=frame_groups, threshold=threshold),
        "video": bootstrap_ci(y_video, videos["prob_fake"], n_boot, seed, alpha, groups=video_groups, threshold=threshold),
        "baseline": {"frame": frame_base, "video": video_base},
        "baseline_prevalence_from": source,
        "baseline_prevalence": {
            "frame": float(prevalence) if prevalence is not None else _prevalence(train_frame),
            "video": float(prevalence) if prevalence is not None else _prevalence(train_video),
        },
        "threshold": float(threshold),
        "interval": {
            "method": INTERVAL_METHOD,
            "unit": group_column if grouped else "video",
            "n_units": int(pd.Series(frame_groups).nunique()),
            "n_boot": int(n_boot),
            "alpha": float(alpha),
        },
        "n_boot": int(n_boot),
        "alpha": float(alpha),
    }


def mcnemar(correct_a: Iterable, correct_b: Iterable) -> dict:
    """McNemar's paired test of two classifiers on the same items (exact binomial for few discordant pairs)."""
    a = np.asarray(correct_a, dtype=bool).ravel()
    b_ = np.asarray(correct_b, dtype=bool).ravel()
    if a.shape != b_.shape:
        raise ValueError(f"correct_a has {a.size} items and correct_b {b_.size}; the test needs the same items")
    b = int((a & ~b_).sum())
    c = int((~a & b_).sum())
    if b + c < EXACT_BELOW:
        statistic = float(min(b, c))
        p_value = 1.0 if b + c == 0 else min(1.0, 2 * float(stats.binom.cdf(min(b, c), b + c, 0.5)))
        method = "exact binomial"
    else:
        statistic = (abs(b - c) - 1) ** 2 / (b + c)
        p_value = float(stats.chi2.sf(statistic, df=1))
        method = "chi-square with continuity correction"
    return {"b": b, "c": c, "statistic": float(statistic), "p_value": p_value, "method": method, "n": int(a.size)}


def _bin_index(p: np.ndarray, n_bins: int) -> np.ndarray:
    return np.minimum((p * n_bins).astype(np.int64), n_bins - 1)


def reliability_curve(y: Iterable, prob: Iterable, n_bins: int = 10) -> pd.DataFrame:
    """Per equal-width probability bin (empty bins left out): mean predicted prob, share FAKE, count."""
    yy = labels_to_int(y)
    p = _probs(prob, len(yy))
    idx = _bin_index(p, n_bins)
    count = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_prob = np.bincount(idx, weights=p, minlength=n_bins) / count
        frac_fake = np.bincount(idx, weights=yy, minlength=n_bins) / count
    edges = np.linspace(0, 1, n_bins + 1)
    df = pd.DataFrame({
        "bin": np.arange(n_bins), "lo": edges[:-1], "hi": edges[1:],
        "mean_prob": mean_prob, "frac_fake": frac_fake, "count": count,
    })
    return df[df["count"] > 0].reset_index(drop=True)


def expected_calibration_error(y: Iterable, prob: Iterable, n_bins: int = 15) -> float:
    """ECE: the count-weighted mean gap between predicted probability and share FAKE over equal-width bins."""
    curve = reliability_curve(y, prob, n_bins)
    if curve.empty:
        return math.nan
    gap = (curve["frac_fake"] - curve["mean_prob"]).abs()
    return float((gap * curve["count"]).sum() / curve["count"].sum())


def logit(p: Iterable) -> np.ndarray:
    """log(p / (1 - p)), with p clipped to [1e-7, 1 - 1e-7] so 0 and 1 give finite logits."""
    q = np.clip(np.asarray(p, dtype=np.float64), PROB_CLIP, 1 - PROB_CLIP)
    return np.log(q) - np.log1p(-q)


def apply_temperature(logits: Iterable, T: float) -> np.ndarray:
    """Calibrated probabilities sigmoid(logits / T)."""
    return special.expit(np.asarray(logits, dtype=np.float64) / T)


def _nll(z: np.ndarray, y: np.ndarray) -> float:
    # log(1 + exp(-z)) for fakes and log(1 + exp(z)) for reals, without overflow.
    return float(np.mean(np.logaddexp(0.0, np.where(y == 1, -z, z))))


def _logits_labels(logits: Iterable, y: Iterable) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(logits, dtype=np.float64).ravel()
    yy = labels_to_int(y)
    if len(z) != len(yy):
        raise ValueError(f"got {len(z)} logits but {len(yy)} labels")
    if not len(z):
        raise ValueError("no logits to calibrate on: the validation set is empty")
    if not np.all(np.isfinite(z)):
        raise ValueError("logits contain NaN or infinity; compute them with metrics.logit on clipped probabilities")
    return z, yy


def fit_temperature(logits: Iterable, y: Iterable) -> float:
    """The T > 0 minimising the log loss of sigmoid(logits / T) (temperature scaling, Guo et al. 2017)."""
    z, yy = _logits_labels(logits, y)
    # Searching log T keeps T positive and treats halving and doubling alike.
    res = optimize.minimize_scalar(
        lambda log_t: _nll(z / math.exp(log_t), yy), bounds=(math.log(1e-2), math.log(1e2)), method="bounded",
        options={"xatol": 1e-6},
    )
    return float(math.exp(res.x))


def fit_platt(logits: Iterable, y: Iterable) -> tuple[float, float]:
    """(slope, intercept) minimising the log loss of sigmoid(slope * logit + intercept) (Platt scaling).

    Unlike a temperature, the intercept removes a constant offset, such as the log(n_real / n_fake)
    a class-weighted loss (`pos_weight`) adds to every logit. A ridge of PLATT_RIDGE * (slope^2 +
    intercept^2) / 2 on the summed log loss keeps the answer finite when validation is separable or
    holds one class; the fit is Newton's method (trust region) with the exact gradient and Hessian.
    """
    z, yy = _logits_labels(logits, y)
    x = np.column_stack([z, np.ones_like(z)])
    n = len(z)

    def loss(theta):
        t = x @ theta
        return (np.logaddexp(0.0, np.where(yy == 1, -t, t)).sum() + 0.5 * PLATT_RIDGE * theta @ theta) / n

    def grad(theta):
        return (x.T @ (special.expit(x @ theta) - yy) + PLATT_RIDGE * theta) / n

    def hess(theta):
        q = special.expit(x @ theta)
        return ((x * (q * (1 - q))[:, None]).T @ x + PLATT_RIDGE * np.eye(2)) / n

    res = optimize.minimize(loss, np.array([1.0, 0.0]), jac=grad, hess=hess, method="trust-exact",
                            options={"gtol": 1e-9})
    slope, intercept = (float(v) for v in res.x)
    if not (math.isfinite(slope) and math.isfinite(intercept)):  # pragma: no cover - the ridge prevents it
        raise RuntimeError(f"Platt scaling did not converge ({res.message}); check the validation logits")
    return slope, intercept


def apply_platt(logits: Iterable, slope: float, intercept: float) -> np.ndarray:
    """Calibrated probabilities sigmoid(slope * logits + intercept)."""
    return special.expit(slope * np.asarray(logits, dtype=np.float64) + intercept)


def choose_threshold(y_val: Iterable, prob_val: Iterable, rule: str = "balanced_accuracy") -> float:
    """The threshold maximising validation balanced accuracy (Youden's J) or accuracy; `prob > t` calls FAKE.

    Every threshold between two adjacent distinct scores makes the same calls, so the answer is the
    midpoint of the best such interval (0 and 1 close the outer ones); among tied intervals the
    widest wins, then the lowest. Tied neighbours are not merged: a merged midpoint could land on a score.
    """
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"unknown threshold rule {rule!r}; use one of {THRESHOLD_RULES}")
    y = labels_to_int(y_val)
    p = _probs(prob_val, len(y))
    n_fake = y.sum()
    n_real = len(y) - n_fake
    if rule == "balanced_accuracy" and (n_fake == 0 or n_real == 0):
        raise ValueError("the validation set holds one class; balanced accuracy cannot choose a threshold")
    levels = np.unique(p)
    at = np.searchsorted(levels, p)
    # Candidate k calls FAKE the items at levels >= k: k = 0 calls all FAKE, k = len(levels) none.
    tp = n_fake - np.r_[0.0, np.cumsum(np.bincount(at, weights=y, minlength=len(levels)))]
    fp = n_real - np.r_[0.0, np.cumsum(np.bincount(at, weights=1 - y, minlength=len(levels)))]
    if rule == "balanced_accuracy":
        score = 0.5 * (tp / n_fake + (n_real - fp) / n_real)
    else:
        score = (tp + n_real - fp) / len(y)
    lower = np.r_[0.0 if levels[0] > 0 else -PROB_CLIP, levels]
    upper = np.r_[levels, 1.0]
    widths = np.where(score >= score.max() - 1e-12, upper - lower, -np.inf)
    # The first of the widest, with a tolerance so 0.8 - 0.5 and 0.5 - 0.2 count as equal.
    i = int(np.flatnonzero(widths >= widths.max() - 1e-12)[0])
    return float(0.5 * (lower[i] + upper[i]))


def to_jsonable(obj: Any) -> Any:
    """`obj` with numpy/pandas types made plain and NaN/inf turned into None, ready for json.dump."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, pd.DataFrame):
        return [to_jsonable(r) for r in obj.to_dict(orient="records")]
    if isinstance(obj, (pd.Series, np.ndarray)):
        return [to_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, str):
        return obj
    if obj is pd.NA or obj is pd.NaT:
        return None
    return str(obj)


def calibration_summary(val_logits, val_y, test_logits, test_y, n_bins: int = 15) -> dict:
    """Temperature and Platt scaling fitted on validation; test ECE and log loss before and after each.

    `ece_after` and `log_loss_after` repeat the temperature rows (the keys of earlier reports).
    """
    temperature = fit_temperature(val_logits, val_y)
    slope, intercept = fit_platt(val_logits, val_y)
    y = labels_to_int(test_y)
    probs = {
        "before": apply_temperature(test_logits, 1.0),
        "temperature": apply_temperature(test_logits, temperature),
        "platt": apply_platt(test_logits, slope, intercept),
    }
    out: dict[str, float] = {"temperature": temperature, "platt_slope": slope, "platt_intercept": intercept}
    for name, prob in probs.items():
        out[f"ece_{name}"] = expected_calibration_error(y, prob, n_bins)
    for name, prob in probs.items():
        out[f"log_loss_{name}"] = binary_metrics(y, prob)["log_loss"]
    out["ece_after"], out["log_loss_after"] = out["ece_temperature"], out["log_loss_temperature"]
    return out
