"""Metrics against scikit-learn and hand-worked cases; bootstrap, baselines, McNemar and calibration."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from helpers import metrics as M


def scored(n: int, seed: int = 0, decimals: int | None = 2) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities of a middling detector, rounded (by default) so that tied scores occur."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(rng.normal(0.4 + 0.2 * y, 0.2), 1e-3, 1 - 1e-3)
    return y, (p if decimals is None else p.round(decimals))


@pytest.mark.parametrize("decimals", [2, None], ids=["ties", "distinct"])
def test_binary_metrics_match_sklearn(decimals):
    y, p = scored(500, decimals=decimals)
    m = M.binary_metrics(y, p)
    pred = (p > 0.5).astype(int)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, np.clip(p, 1e-7, 1 - 1e-7)))
    assert (m["n"], m["n_fake"], m["n_real"]) == (500, int(y.sum()), int(500 - y.sum()))


def test_labels_accept_strings_and_ints():
    assert M.labels_to_int(["REAL", "fake", 0, 1, True]).tolist() == [0, 1, 0, 1, 1]
    assert M.labels_to_int(pd.Series(["FAKE", "REAL"])).tolist() == [1, 0]
    with pytest.raises(ValueError, match="neither 0/1 nor"):
        M.labels_to_int(["REAL", "maybe"])


def test_threshold_is_strict_like_torchmetrics():
    # prob == threshold is called REAL, as torchmetrics' `preds > threshold` does.
    assert M.binary_metrics([0, 1], [0.5, 0.5])["accuracy"] == 0.5
    assert M.binary_metrics([0, 1], [0.5, 0.6], threshold=0.5)["accuracy"] == 1.0


def test_roc_points_match_sklearn():
    y, p = scored(300, seed=1)
    fpr, tpr, thr = M.roc_points(y, p)
    sk_fpr, sk_tpr, sk_thr = skm.roc_curve(y, p, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_allclose(thr[1:], sk_thr[1:])
    assert thr[0] == np.inf


@pytest.mark.parametrize(
    "y, prob, expected",
    [
        # One fake and one real on the wrong side of 0.5: FPR = FNR = 1/4 at threshold 0.6.
        ([0, 0, 0, 0, 1, 1, 1, 1], [0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9], 0.25),
        ([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9], 0.5),
        # A tie makes the ROC jump from (0, 0) to (1/2, 1): FPR = t/2 meets FNR = 1 - t at t = 2/3.
        ([1, 0, 0], [0.5, 0.5, 0.1], 1 / 3),
    ],
)
def test_eer_known_by_hand(y, prob, expected):
    assert M.binary_metrics(y, prob)["eer"] == pytest.approx(expected)


def test_perfect_classifier():
    y = np.array([0, 0, 0, 1, 1])
    m = M.binary_metrics(y, [0.0, 0.1, 0.2, 0.9, 1.0])
    assert (m["accuracy"], m["balanced_accuracy"], m["auc"], m["eer"]) == (1.0, 1.0, 1.0, 0.0)
    assert m["log_loss"] < 0.1


def test_random_classifier_is_near_chance():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 20_000)
    m = M.binary_metrics(y, rng.random(20_000))
    for key in ("balanced_accuracy", "auc", "eer"):
        assert m[key] == pytest.approx(0.5, abs=0.02)


def test_single_class_auc_is_nan():
    m = M.binary_metrics([1, 1, 1], [0.2, 0.7, 0.9])
    assert math.isnan(m["auc"]) and math.isnan(m["eer"])
    assert m["accuracy"] == pytest.approx(2 / 3)


def test_bad_probabilities_are_reported():
    with pytest.raises(ValueError, match="NaN"):
        M.binary_metrics([0, 1], [0.1, float("nan")])
    with pytest.raises(ValueError, match="logits"):
        M.binary_metrics([0, 1], [-2.0, 3.0])
    with pytest.raises(ValueError, match="empty"):
        M.binary_metrics([], [])


def test_bootstrap_contains_point_and_is_deterministic():
    y, p = scored(400, seed=2)
    a = M.bootstrap_ci(y, p, n_boot=300, seed=7)
    b = M.bootstrap_ci(y, p, n_boot=300, seed=7)
    assert a == b
    assert a != M.bootstrap_ci(y, p, n_boot=300, seed=8)
    assert set(a) == set(M.METRICS)
    for key, ci in a.items():
        assert ci["lo"] <= ci["value"] <= ci["hi"], key
    assert a["auc"]["value"] == M.binary_metrics(y, p)["auc"]


def test_bootstrap_narrows_with_more_data():
    small = M.bootstrap_ci(*scored(200, seed=4), n_boot=300)
    large = M.bootstrap_ci(*scored(5000, seed=4), n_boot=300)
    for key in ("accuracy", "auc", "eer", "log_loss"):
        assert large[key]["hi"] - large[key]["lo"] < 0.5 * (small[key]["hi"] - small[key]["lo"]), key


def test_cluster_bootstrap_resamples_whole_videos():
    # 20 identical faces per video carry no more information than one face each: the cluster
    # bootstrap should see 100 videos, the item bootstrap wrongly sees 2,000 independent faces.
    y, p = scored(100, seed=5)
    faces_y, faces_p = np.repeat(y, 20), np.repeat(p, 20)
    video = np.repeat([f"v{i:03d}" for i in range(100)], 20)
    items = M.bootstrap_ci(faces_y, faces_p, n_boot=400, seed=0)
    clusters = M.bootstrap_ci(faces_y, faces_p, n_boot=400, seed=0, groups=video)
    per_video = M.bootstrap_ci(y, p, n_boot=400, seed=0)
    width = lambda ci, k: ci[k]["hi"] - ci[k]["lo"]  # noqa: E731
    for key in ("accuracy", "auc"):
        assert width(clusters, key) > 2 * width(items, key), key
        assert width(clusters, key) == pytest.approx(width(per_video, key), rel=0.35), key
    # Every resample draws 100 whole videos of 20 faces.
    assert clusters["n"] == {"value": 2000, "lo": 2000.0, "hi": 2000.0}


def test_bootstrap_redraws_resamples_missing_a_class():
    # With one fake in ten items about a third of plain resamples hold no fake at all.
    y = np.array([1] + [0] * 9)
    p = np.linspace(0.9, 0.0, 10)
    ci = M.bootstrap_ci(y, p, n_boot=200)
    assert all(np.isfinite([ci[k]["lo"], ci[k]["hi"]]).all() for k in ("auc", "eer"))
    assert ci["n_fake"]["lo"] >= 1


def test_bootstrap_one_class_data_gives_nan_auc():
    ci = M.bootstrap_ci([0, 0, 0, 0], [0.1, 0.2, 0.6, 0.3], n_boot=50)
    assert math.isnan(ci["auc"]["value"]) and math.isnan(ci["auc"]["lo"])
    assert ci["accuracy"]["value"] == 0.75


def test_video_level_averages_faces():
    df = pd.DataFrame({
        "face_path": ["a0", "a1", "b0", "c0", "c1", "c2"],
        "video_id": ["a", "a", "b", "c", "c", "c"],
        "label": ["FAKE", "FAKE", "REAL", "FAKE", "FAKE", "FAKE"],
        "prob_fake": [0.2, 0.6, 0.1, 0.9, 0.6, 0.3],
        "split": ["test"] * 6,
    })
    v = M.video_level(df)
    assert v["video_id"].tolist() == ["a", "b", "c"]
    np.testing.assert_allclose(v["prob_fake"], [0.4, 0.1, 0.6])
    assert v["label"].tolist() == ["FAKE", "REAL", "FAKE"]
    assert v["n_faces"].tolist() == [2, 1, 3]
    assert v["split"].tolist() == ["test"] * 3
    with pytest.raises(ValueError, match="both REAL and FAKE"):
        M.video_level(df.assign(label=["FAKE", "REAL", "REAL", "FAKE", "FAKE", "FAKE"]))
    with pytest.raises(ValueError, match="no video_id"):
        M.video_level(df.assign(video_id=["a", None, "b", "c", "c", "c"]))


def test_majority_baseline_scores_chance():
    y_train = [1] * 7 + [0] * 3
    y_test = np.array([1, 1, 1, 0, 0, 1, 0, 1])
    m = M.majority_baseline(y_train, y_test)
    assert m["accuracy"] == pytest.approx(y_test.mean())
    assert (m["balanced_accuracy"], m["auc"], m["eer"]) == (0.5, 0.5, 0.5)
    assert m["log_loss"] == pytest.approx(skm.log_loss(y_test, np.full(8, 0.7)))


def test_evaluate_payload_is_json_ready():
    rng = np.random.default_rng(6)
    videos = [f"v{i}" for i in range(30)]
    labels = rng.integers(0, 2, 30)
    rows = [
        {"face_path": f"{v}_{j}.jpg", "video_id": v, "label": "FAKE" if lab else "REAL",
         "prob_fake": float(np.clip(0.3 + 0.4 * lab + rng.normal(0, 0.2), 0, 1)), "split": "test"}
        for v, lab in zip(videos, labels) for j in range(3)
    ]
    out = M.evaluate(pd.DataFrame(rows), n_boot=100, seed=1)
    assert out["frame"]["n"]["value"] == 90 and out["video"]["n"]["value"] == 30
    assert out["baseline"]["video"]["balanced_accuracy"] == 0.5
    assert out["baseline_prevalence_from"] == "test"
    assert (out["n_boot"], out["alpha"]) == (100, 0.05)
    json.dumps(M.to_jsonable(out), allow_nan=False)
    trained = M.evaluate(pd.DataFrame(rows), n_boot=20, y_train=[1, 1, 1, 0])
    assert trained["baseline_prevalence_from"] == "train"
    assert trained["baseline"]["frame"]["accuracy"] == pytest.approx(labels.mean())


def test_to_jsonable_turns_nan_into_null():
    obj = {"a": np.float64("nan"), "b": np.int64(3), "c": [np.float32(0.5), np.inf], "d": np.array([1, 2])}
    assert json.loads(json.dumps(M.to_jsonable(obj))) == {"a": None, "b": 3, "c": [0.5, None], "d": [1, 2]}


def test_mcnemar_exact_small_table():
    a = np.array([True] * 10 + [True] * 5)
    b = np.array([False] * 10 + [True] * 5)
    r = M.mcnemar(a, b)
    assert (r["b"], r["c"], r["method"]) == (10, 0, "exact binomial")
    assert r["p_value"] == pytest.approx(2 * 0.5**10)
    # b=3, c=5: p = 2 * P(X <= 3 | n=8, 1/2) = 2 * (1 + 8 + 28 + 56) / 256.
    r = M.mcnemar([True] * 3 + [False] * 5, [False] * 3 + [True] * 5)
    assert r["p_value"] == pytest.approx(186 / 256)


def test_mcnemar_chi_square_large_table():
    a = np.r_[np.ones(40, bool), np.zeros(20, bool), np.ones(100, bool)]
    b = np.r_[np.zeros(40, bool), np.ones(20, bool), np.ones(100, bool)]
    r = M.mcnemar(a, b)
    stat = (abs(40 - 20) - 1) ** 2 / 60
    assert r["method"].startswith("chi-square")
    assert r["statistic"] == pytest.approx(stat)
    # The chi-square survival function with one degree of freedom is erfc(sqrt(x / 2)).
    assert r["p_value"] == pytest.approx(math.erfc(math.sqrt(stat / 2)))


def test_mcnemar_identical_predictions():
    r = M.mcnemar([True, False, True], [True, False, True])
    assert (r["b"], r["c"], r["p_value"]) == (0, 0, 1.0)


def test_calibration_error_of_calibrated_and_overconfident():
    rng = np.random.default_rng(8)
    p = rng.random(100_000)
    y = (rng.random(100_000) < p).astype(int)
    assert M.expected_calibration_error(y, p) < 0.01
    overconfident = M.apply_temperature(M.logit(p), 0.3)
    assert M.expected_calibration_error(y, overconfident) > 0.1
    curve = M.reliability_curve(y, p, n_bins=10)
    assert list(curve.columns[:3]) == ["bin", "lo", "hi"]
    assert curve["count"].sum() == 100_000
    np.testing.assert_allclose(curve["frac_fake"], curve["mean_prob"], atol=0.02)


def test_fit_temperature_recovers_a_known_temperature():
    rng = np.random.default_rng(9)
    true_logits = rng.normal(0, 2, 20_000)
    y = (rng.random(20_000) < M.apply_temperature(true_logits, 1.0)).astype(int)
    logits = 2.5 * true_logits  # an overconfident model: its logits are 2.5 times too large
    T = M.fit_temperature(logits, y)
    assert T == pytest.approx(2.5, abs=0.2)
    before = skm.log_loss(y, M.apply_temperature(logits, 1.0))
    after = skm.log_loss(y, M.apply_temperature(logits, T))
    assert after < before


def test_logit_is_safe_at_the_edges():
    z = M.logit([0.0, 0.5, 1.0])
    assert np.isfinite(z).all() and z[1] == 0.0
    np.testing.assert_allclose(M.apply_temperature(M.logit([0.2, 0.9]), 1.0), [0.2, 0.9])


labelled = st.lists(
    st.tuples(st.integers(0, 1), st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0])), min_size=2, max_size=40
).filter(lambda rows: len({r[0] for r in rows}) == 2)


@settings(max_examples=60, deadline=None)
@given(labelled, st.randoms(use_true_random=False))
def test_metrics_are_invariant_to_order(rows, rnd):
    shuffled = rows[:]
    rnd.shuffle(shuffled)
    a = M.binary_metrics(*zip(*rows))
    b = M.binary_metrics(*zip(*shuffled))
    assert a == pytest.approx(b)
    y, p = zip(*rows)
    assert a["auc"] == pytest.approx(skm.roc_auc_score(y, p))


@settings(max_examples=60, deadline=None)
@given(labelled, st.floats(0, 1))
def test_constant_predictions_have_chance_balanced_accuracy(rows, c):
    y = [r[0] for r in rows]
    m = M.binary_metrics(y, [c] * len(y))
    assert (m["balanced_accuracy"], m["auc"], m["eer"]) == (0.5, 0.5, 0.5)
