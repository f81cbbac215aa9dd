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
    assert len(np.unique(p)) < len(p)  # tied scores
    fpr, tpr, thr = M.roc_points(y, p)
    sk_fpr, sk_tpr, sk_thr = skm.roc_curve(y, p, drop_intermediate=False)
    np.testing.assert_array_equal(fpr, sk_fpr)
    np.testing.assert_array_equal(tpr, sk_tpr)
    np.testing.assert_array_equal(thr, sk_thr)
    assert len(thr) == len(np.unique(p)) + 1


def test_roc_points_on_ties_known_by_hand():
    # Scores 0.9 (fake), 0.5 (a fake and a real, tied), 0.2 (real): the tie is one step, up and right at once.
    fpr, tpr, thr = M.roc_points(["FAKE", "FAKE", "REAL", "REAL"], [0.9, 0.5, 0.5, 0.2])
    assert fpr.tolist() == [0.0, 0.0, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 1.0, 1.0]
    assert thr.tolist() == [np.inf, 0.9, 0.5, 0.2]


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


@pytest.mark.parametrize("b, c", [(10, 0), (3, 5), (12, 12), (7, 17), (40, 20), (13, 30), (100, 85)])
def test_mcnemar_agrees_with_statsmodels(b, c):
    from statsmodels.stats.contingency_tables import mcnemar

    # b items only A gets right, c only B, plus 50 both get right and 30 neither.
    a = np.r_[np.ones(b, bool), np.zeros(c, bool), np.ones(50, bool), np.zeros(30, bool)]
    b_ = np.r_[np.zeros(b, bool), np.ones(c, bool), np.ones(50, bool), np.zeros(30, bool)]
    ours = M.mcnemar(a, b_)
    exact = ours["method"] == "exact binomial"
    assert exact == (b + c < M.EXACT_BELOW)
    # statsmodels' table: rows = A right / wrong, columns = B right / wrong.
    ref = mcnemar([[50, b], [c, 30]], exact=exact, correction=True)
    assert ours["statistic"] == pytest.approx(ref.statistic)
    assert ours["p_value"] == pytest.approx(ref.pvalue)


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


# --- TPR at 1% FPR and average precision ---------------------------------------------------------


@pytest.mark.parametrize("decimals", [2, None], ids=["ties", "distinct"])
def test_tpr_at_1fpr_and_ap_match_sklearn(decimals):
    y, p = scored(2000, seed=11, decimals=decimals)
    m = M.binary_metrics(y, p)
    fpr, tpr, _ = skm.roc_curve(y, p, drop_intermediate=False)
    assert m["tpr_at_1fpr"] == pytest.approx(tpr[fpr <= 0.01].max())
    assert m["ap"] == pytest.approx(skm.average_precision_score(y, p))


def test_tpr_at_1fpr_known_by_hand():
    # 100 reals at 0, 0.01, ..., 0.99: one of them (0.99) may be passed at FPR = 1%, not the next
    # (0.98). So the fakes above 0.98 count (0.995, 0.995, 0.985), those at 0.975 and 0.5 do not.
    reals = np.arange(100) / 100
    fakes = np.array([0.995, 0.995, 0.985, 0.975, 0.5])
    y = np.r_[np.zeros(100, int), np.ones(5, int)]
    p = np.r_[reals, fakes]
    assert M.binary_metrics(y, p)["tpr_at_1fpr"] == pytest.approx(3 / 5)
    # A 101st real above every fake uses up the 1% (1/101); only the fakes above 0.99 count.
    assert M.binary_metrics(np.r_[y, 0], np.r_[p, 0.999])["tpr_at_1fpr"] == pytest.approx(2 / 5)
    # Two more: FPR is 2/102 before any fake is passed.
    assert M.binary_metrics(np.r_[y, 0, 0], np.r_[p, 0.999, 0.998])["tpr_at_1fpr"] == 0.0


def test_new_metrics_have_intervals():
    y, p = scored(600, seed=12)
    ci = M.bootstrap_ci(y, p, n_boot=300, seed=0, groups=np.arange(600) // 3)
    for key in ("tpr_at_1fpr", "ap"):
        assert ci[key]["lo"] < ci[key]["value"] < ci[key]["hi"], key
    assert ci["ap"]["value"] == pytest.approx(skm.average_precision_score(y, p))


@pytest.mark.slow
def test_weighted_bootstrap_agrees_with_scipy_bootstrap():
    # Same data, item resampling, percentile method; each draws its own resamples, so the intervals
    # agree up to Monte Carlo error (about 0.002 for scipy's 2,000 resamples, less for our 20,000).
    from scipy import stats

    y, p = scored(300, seed=13, decimals=None)
    ours = M.bootstrap_ci(y, p, n_boot=20_000, seed=0)["auc"]
    ref = stats.bootstrap((y, p), lambda a, b: skm.roc_auc_score(a, b), paired=True, vectorized=False,
                          n_resamples=2000, method="percentile", random_state=0).confidence_interval
    assert ours["lo"] == pytest.approx(ref.low, abs=0.01)
    assert ours["hi"] == pytest.approx(ref.high, abs=0.01)


# --- Platt scaling ------------------------------------------------------------------------------


def bayes_logits(rng: np.random.Generator, n: int, prevalence: float = 0.83, d: float = 1.5):
    """Labels and the log-odds of the true posterior for x | y ~ N(+-d/2, 1), FAKE share `prevalence`."""
    y = (rng.random(n) < prevalence).astype(int)
    x = rng.normal(np.where(y == 1, d / 2, -d / 2), 1.0)
    return y, math.log(prevalence / (1 - prevalence)) + d * x


def test_platt_removes_a_pos_weight_shift_that_temperature_cannot():
    rng = np.random.default_rng(14)
    y_train, _ = bayes_logits(rng, 20_000)
    # pos_weight = n_real / n_fake trains a model whose logits are the Bayes logits plus this shift.
    shift = math.log((y_train == 0).sum() / (y_train == 1).sum())
    y_val, z_val = bayes_logits(rng, 20_000)
    y_test, z_test = bayes_logits(rng, 20_000)
    slope, intercept = M.fit_platt(z_val + shift, y_val)
    assert (slope, intercept) == (pytest.approx(1.0, abs=0.05), pytest.approx(-shift, abs=0.1))
    bayes = skm.log_loss(y_test, M.apply_temperature(z_test, 1.0))
    platt = skm.log_loss(y_test, M.apply_platt(z_test + shift, slope, intercept))
    temperature = skm.log_loss(y_test, M.apply_temperature(z_test + shift, M.fit_temperature(z_val + shift, y_val)))
    assert abs(platt - bayes) < 0.02
    assert temperature > bayes + 0.1
    summary = M.calibration_summary(z_val + shift, y_val, z_test + shift, y_test)
    assert summary["log_loss_platt"] == pytest.approx(platt)
    assert summary["log_loss_temperature"] == pytest.approx(temperature)
    assert summary["ece_platt"] < 0.02 < 0.1 < summary["ece_temperature"]


def test_calibration_summary_keys_keep_the_old_ones():
    rng = np.random.default_rng(15)
    y, z = bayes_logits(rng, 2_000, prevalence=0.5)
    summary = M.calibration_summary(z[:1000], y[:1000], 3 * z[1000:], y[1000:])
    assert set(summary) == {
        "temperature", "platt_slope", "platt_intercept", "ece_before", "ece_temperature", "ece_platt",
        "log_loss_before", "log_loss_temperature", "log_loss_platt", "ece_after", "log_loss_after",
    }
    assert (summary["ece_after"], summary["log_loss_after"]) == (summary["ece_temperature"], summary["log_loss_temperature"])


@pytest.mark.parametrize(
    "logits, y",
    [([-1.0, -0.5, 0.5, 1.0], [0, 0, 1, 1]), ([1.0, 2.0, 3.0], [1, 1, 1]), ([0.0, 0.0], [0, 1])],
    ids=["separable", "one-class", "constant"],
)
def test_platt_is_finite_on_degenerate_validation(logits, y):
    slope, intercept = M.fit_platt(logits, y)
    assert math.isfinite(slope) and math.isfinite(intercept)
    # The calibrated probabilities still order and side the items as the labels do.
    p = M.apply_platt(logits, slope, intercept)
    assert np.all(np.isfinite(p))
    if len(set(y)) == 2 and len(set(logits)) > 1:
        assert M.binary_metrics(y, p)["accuracy"] == 1.0


def test_platt_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN or infinity"):
        M.fit_platt([0.0, np.inf], [0, 1])
    with pytest.raises(ValueError, match="2 logits but 3 labels"):
        M.fit_platt([0.0, 1.0], [0, 1, 1])


# --- threshold chosen on validation ---------------------------------------------------------------


def test_choose_threshold_known_by_hand():
    y = [0, 0, 0, 0, 1, 0, 1, 1]
    p = [0.1, 0.2, 0.3, 0.4, 0.45, 0.5, 0.7, 0.9]
    # Calling FAKE above 0.4: TPR 3/3, TNR 4/5, balanced accuracy 0.9, the best; midpoint of [0.4, 0.45).
    assert M.choose_threshold(y, p) == pytest.approx(0.425)
    # Accuracy ties at 7/8 above 0.4 and above 0.5; the wider interval [0.5, 0.7) wins.
    assert M.choose_threshold(y, p, rule="accuracy") == pytest.approx(0.6)
    # Two best intervals, [0.2, 0.3) and [0.4, 0.6): the wider one.
    assert M.choose_threshold([0, 0, 1, 0, 1, 1], [0.1, 0.2, 0.3, 0.4, 0.6, 0.8]) == pytest.approx(0.5)
    # Perfect separation: the middle of the gap, not the edge of either class.
    assert M.choose_threshold([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == pytest.approx(0.5)
    assert M.choose_threshold([0, 0, 1, 1], [0.1, 0.3, 0.4, 0.9]) == pytest.approx(0.35)


def test_choose_threshold_does_not_merge_touching_intervals():
    # Passing the tied level 0.5 (one fake, one real of two each) trades TPR for TNR at equal
    # balanced accuracy, 0.75 on [0.2, 0.5) and on [0.5, 0.8). Merged, the midpoint would be the
    # score 0.5 itself; the lower of the two equally wide intervals is taken instead.
    y, p = [0, 1, 0, 1], [0.2, 0.5, 0.5, 0.8]
    assert M.choose_threshold(y, p) == pytest.approx(0.35)
    assert M.binary_metrics(y, p, 0.35)["balanced_accuracy"] == 0.75


def test_choose_threshold_rejects_bad_rules_and_one_class():
    with pytest.raises(ValueError, match="unknown threshold rule"):
        M.choose_threshold([0, 1], [0.2, 0.8], rule="f1")
    with pytest.raises(ValueError, match="one class"):
        M.choose_threshold([1, 1], [0.2, 0.8])


@settings(max_examples=40, deadline=None)
@given(labelled, st.sampled_from(M.THRESHOLD_RULES))
def test_choose_threshold_is_optimal_among_all_thresholds(rows, rule):
    y, p = map(np.asarray, zip(*rows))
    t = M.choose_threshold(y, p, rule)
    # Every distinct set of calls: all FAKE, and FAKE above each distinct score.
    candidates = np.r_[-1.0, np.unique(p)]
    best = max(M.binary_metrics(y, p, c)[rule] for c in candidates)
    assert M.binary_metrics(y, p, t)[rule] == pytest.approx(best)
    # Strictly between scores, never on one; 1.0, which calls nothing FAKE, is the top edge.
    assert t == 1.0 or not np.any(p == t)


# --- video scores, groups and evaluate -------------------------------------------------------------


def grouped_predictions(n_groups: int = 12, fakes: int = 3, faces: int = 2, seed: int = 16) -> pd.DataFrame:
    """Faces of an original (REAL) and its fakes per group, scores sharing a group effect."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        effect = rng.normal(0, 0.15)
        for v in range(fakes + 1):
            label = "REAL" if v == 0 else "FAKE"
            for f in range(faces):
                prob = float(np.clip(0.35 + 0.3 * (v > 0) + effect + rng.normal(0, 0.15), 0, 1))
                rows.append({"face_path": f"g{g}v{v}f{f}.jpg", "video_id": f"g{g}v{v}", "label": label,
                             "prob_fake": prob, "split": "test", "group": f"id{g:02d}"})
    return pd.DataFrame(rows)


def test_aggregate_face_scores_is_the_video_score():
    assert M.aggregate_face_scores([0.2, 0.6, 0.7]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no face scores"):
        M.aggregate_face_scores([])
    df = grouped_predictions()
    v = M.video_level(df)
    expected = df.groupby("video_id")["prob_fake"].apply(M.aggregate_face_scores)
    np.testing.assert_allclose(v.set_index("video_id")["prob_fake"], expected)


def test_video_level_carries_one_group_per_video():
    df = grouped_predictions()
    v = M.video_level(df)
    assert list(v.columns) == ["video_id", "prob_fake", "label", "split", "group", "n_faces"]
    assert v.set_index("video_id").loc["g3v2", "group"] == "id03"
    mixed = df.copy()
    mixed.loc[1, "group"] = "id99"  # the second face of video g0v0
    with pytest.raises(ValueError, match="more than one 'group' value"):
        M.video_level(mixed)
    assert "group" not in M.video_level(df.drop(columns="group")).columns


def test_evaluate_resamples_groups_at_both_levels():
    df = grouped_predictions()
    out = M.evaluate(df, n_boot=200, seed=3)
    videos = M.video_level(df)
    assert out["frame"] == M.bootstrap_ci(M.labels_to_int(df.label), df.prob_fake, 200, 3, groups=df.group)
    assert out["video"] == M.bootstrap_ci(M.labels_to_int(videos.label), videos.prob_fake, 200, 3, groups=videos.group)
    assert out["interval"] == {"method": "percentile bootstrap", "unit": "group", "n_units": 12, "n_boot": 200,
                               "alpha": 0.05}
    # Without the column, frames resample videos and videos resample themselves, as before.
    plain = M.evaluate(df.drop(columns="group"), n_boot=200, seed=3)
    assert plain["frame"] == M.bootstrap_ci(M.labels_to_int(df.label), df.prob_fake, 200, 3, groups=df.video_id)
    assert plain["video"] == M.bootstrap_ci(M.labels_to_int(videos.label), videos.prob_fake, 200, 3)
    assert plain["interval"]["unit"] == "video" and plain["interval"]["n_units"] == 48
    assert M.evaluate(df, n_boot=200, seed=3, group_column=None) == plain
    # Another column name works the same way.
    renamed = M.evaluate(df.rename(columns={"group": "identity"}), n_boot=200, seed=3, group_column="identity")
    assert renamed["video"] == out["video"] and renamed["interval"]["unit"] == "identity"
    with pytest.raises(ValueError, match="have no 'group'"):
        M.evaluate(df.assign(group=[None] + df.group.tolist()[1:]), n_boot=10)


def test_evaluate_threshold_and_prevalence():
    df = grouped_predictions()
    y = M.labels_to_int(df.label)
    out = M.evaluate(df, n_boot=50, threshold=0.7, prevalence=0.4)
    assert out["threshold"] == 0.7
    assert out["frame"]["accuracy"]["value"] == M.binary_metrics(y, df.prob_fake, 0.7)["accuracy"]
    videos = M.video_level(df)
    assert out["video"]["balanced_accuracy"]["value"] == M.binary_metrics(videos.label, videos.prob_fake, 0.7)["balanced_accuracy"]
    # prevalence 0.4 < 0.5: the baseline guesses REAL, right on the quarter of items that are REAL.
    assert out["baseline_prevalence_from"] == "train before balancing"
    assert out["baseline_prevalence"] == {"frame": 0.4, "video": 0.4}
    assert out["baseline"]["frame"]["accuracy"] == pytest.approx(0.25)
    assert out["baseline"]["video"]["log_loss"] == pytest.approx(skm.log_loss(M.labels_to_int(videos.label), np.full(48, 0.4)))
    # prevalence wins over y_train; y_train wins over the test share.
    assert M.evaluate(df, n_boot=10, y_train=[1, 1, 1], prevalence=0.4)["baseline"]["frame"]["accuracy"] == pytest.approx(0.25)
    trained = M.evaluate(df, n_boot=10, y_train=[0, 0, 1])
    assert trained["baseline_prevalence_from"] == "train" and trained["baseline"]["frame"]["accuracy"] == pytest.approx(0.25)
    assert M.evaluate(df, n_boot=10)["baseline_prevalence"]["frame"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        M.evaluate(df, n_boot=10, prevalence=1.5)


def test_evaluate_keys():
    out = M.evaluate(grouped_predictions(), n_boot=20)
    assert set(out) == {"frame", "video", "baseline", "baseline_prevalence_from", "baseline_prevalence", "threshold",
                        "interval", "n_boot", "alpha"}
    for level in ("frame", "video"):
        assert set(out[level]) == set(M.METRICS) and "tpr_at_1fpr" in out[level]
        assert set(out["baseline"][level]) == set(M.METRICS)
    json.dumps(M.to_jsonable(out), allow_nan=False)


# --- paired comparisons and Holm -------------------------------------------------------------------


def two_detectors(n_groups: int = 80, seed: int = 17, gain: float = 0.8):
    """Labels, groups and two detectors sharing a group effect; b separates the classes `gain` better."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_groups), 5)
    y = np.tile([0, 1, 1, 1, 1], n_groups)
    shared = rng.normal(0, 1, n_groups)[groups] + rng.normal(0, 1, len(y))
    a = special_expit(1.0 * y + shared + rng.normal(0, 0.5, len(y)))
    b = special_expit((1.0 + gain) * y + shared + rng.normal(0, 0.5, len(y)))
    return y, groups, a, b


def special_expit(x):
    return 1 / (1 + np.exp(-x))


def test_paired_bootstrap_finds_a_real_gain():
    y, groups, a, b = two_detectors()
    r = M.paired_bootstrap(y, a, b, groups, n_boot=500, seed=1)
    assert set(r) == {"auc", "balanced_accuracy"}
    for key, res in r.items():
        assert set(res) == {"a", "b", "diff", "lo", "hi", "p_value"}
        assert res["a"] == M.binary_metrics(y, a)[key] and res["b"] == M.binary_metrics(y, b)[key]
        assert res["diff"] == pytest.approx(res["b"] - res["a"])
    assert 0 < r["auc"]["lo"] < r["auc"]["diff"] < r["auc"]["hi"]
    assert r["auc"]["p_value"] == pytest.approx(1 / 500)  # no resample favours a: the floor
    # Swapping the detectors flips the difference and keeps the p-value.
    s = M.paired_bootstrap(y, b, a, groups, n_boot=500, seed=1)
    assert s["auc"]["diff"] == pytest.approx(-r["auc"]["diff"])
    assert (s["auc"]["lo"], s["auc"]["hi"]) == pytest.approx((-r["auc"]["hi"], -r["auc"]["lo"]))
    assert s["auc"]["p_value"] == r["auc"]["p_value"]


def test_paired_bootstrap_pairs_the_resamples():
    y, groups, a, _ = two_detectors()
    same = M.paired_bootstrap(y, a, a, groups, n_boot=200)
    assert same["auc"] == {"a": same["auc"]["a"], "b": same["auc"]["a"], "diff": 0.0, "lo": 0.0, "hi": 0.0, "p_value": 1.0}
    # A tiny change to a: pairing cancels the group effects, so the difference is far narrower
    # than either detector's own interval.
    rng = np.random.default_rng(2)
    nudged = np.clip(a + rng.normal(0, 0.01, len(a)), 0, 1)
    r = M.paired_bootstrap(y, a, nudged, groups, n_boot=300)["auc"]
    own = M.bootstrap_ci(y, a, 300, groups=groups)["auc"]
    assert r["hi"] - r["lo"] < 0.2 * (own["hi"] - own["lo"])
    assert r["p_value"] > 0.05
    # Per-detector thresholds reach balanced accuracy.
    t = M.paired_bootstrap(y, a, a, groups, threshold_a=0.5, threshold_b=0.9, n_boot=50)["balanced_accuracy"]
    assert t["b"] == M.binary_metrics(y, a, 0.9)["balanced_accuracy"]


def test_holm_by_hand():
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04 -> running max 0.06.
    assert M.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert M.holm([0.5, 0.6]) == [1.0, 1.0]
    assert M.holm([0.02]) == [0.02]
    assert M.holm([]) == []
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        M.holm([0.1, 1.2])


def test_holm_matches_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = np.random.default_rng(18).random(12) ** 3
    np.testing.assert_allclose(M.holm(p), multitest.multipletests(p, method="holm")[1])


# --- seeds pooled hierarchically -------------------------------------------------------------------


def test_hierarchical_bootstrap_with_one_seed_is_the_group_bootstrap():
    y, groups, a, b = two_detectors()
    assert M.hierarchical_bootstrap(y, a[None, :], groups, n_boot=300, seed=4) == M.bootstrap_ci(
        y, a, 300, 4, groups=groups)
    assert M.hierarchical_bootstrap(y, a, groups, n_boot=300, seed=4, threshold=[0.6]) == M.bootstrap_ci(
        y, a, 300, 4, groups=groups, threshold=0.6)
    assert M.hierarchical_paired_bootstrap(y, a[None, :], b[None, :], groups, n_boot=300, seed=4) == M.paired_bootstrap(
        y, a, b, groups, n_boot=300, seed=4)


def test_hierarchical_bootstrap_pools_seeds():
    y, groups, a, _ = two_detectors()
    # Identical seeds change nothing.
    copies = M.hierarchical_bootstrap(y, np.stack([a, a, a]), groups, n_boot=300, seed=4)
    single = M.bootstrap_ci(y, a, 300, 4, groups=groups)
    for key in ("auc", "balanced_accuracy"):
        assert copies[key] == pytest.approx(single[key])
    # Seeds that disagree: the value is their mean, the interval holds the seed spread as well.
    rng = np.random.default_rng(5)
    logits = M.logit(a)
    seeds = np.stack([special_expit(logits + rng.normal(0, 1.5, len(a))) for _ in range(4)])
    pooled = M.hierarchical_bootstrap(y, seeds, groups, n_boot=400, seed=4, threshold=[0.5, 0.5, 0.5, 0.4])
    points = [M.binary_metrics(y, s, t) for s, t in zip(seeds, [0.5, 0.5, 0.5, 0.4])]
    assert pooled["auc"]["value"] == pytest.approx(np.mean([m["auc"] for m in points]))
    assert pooled["accuracy"]["value"] == pytest.approx(np.mean([m["accuracy"] for m in points]))
    mean_seed = M.bootstrap_ci(y, seeds.mean(axis=0), 400, 4, groups=groups)["auc"]
    assert pooled["auc"]["lo"] < pooled["auc"]["value"] < pooled["auc"]["hi"]
    assert pooled["auc"]["hi"] - pooled["auc"]["lo"] > mean_seed["hi"] - mean_seed["lo"]
    with pytest.raises(ValueError, match="2 values for 4 seeds"):
        M.hierarchical_bootstrap(y, seeds, groups, n_boot=10, threshold=[0.5, 0.5])


def test_hierarchical_paired_bootstrap_compares_seed_sets():
    y, groups, a, b = two_detectors()
    rng = np.random.default_rng(6)
    seeds_a = np.stack([special_expit(M.logit(a) + rng.normal(0, 0.3, len(a))) for _ in range(3)])
    seeds_b = np.stack([special_expit(M.logit(b) + rng.normal(0, 0.3, len(b))) for _ in range(2)])
    r = M.hierarchical_paired_bootstrap(y, seeds_a, seeds_b, groups, n_boot=400, seed=1)
    auc = lambda s: np.mean([M.binary_metrics(y, p)["auc"] for p in s])  # noqa: E731
    assert r["auc"]["a"] == pytest.approx(auc(seeds_a)) and r["auc"]["b"] == pytest.approx(auc(seeds_b))
    assert 0 < r["auc"]["lo"] < r["auc"]["diff"] < r["auc"]["hi"]
    assert r["auc"]["p_value"] < 0.01


# --- coverage of the group bootstrap ----------------------------------------------------------------

COVERAGE_GROUPS, COVERAGE_SHIFT, IDENTITY_SD, FAKE_SD = 150, 1.5, 0.5, 1.5


def correlated_groups(rng: np.random.Generator):
    """DFDC-like test set: per group a REAL original and 1 + Poisson(4) fakes sharing random effects.

    Score = 1.5 * y + identity effect (shared by the group's videos) + fake effect (shared by the
    group's fakes: fakes of one original are about equally hard) + N(0, 1) noise.
    """
    k = 1 + rng.poisson(4, COVERAGE_GROUPS)
    groups = np.repeat(np.arange(COVERAGE_GROUPS), k + 1)
    y = np.concatenate([np.r_[0, np.ones(n, int)] for n in k])
    identity = rng.normal(0, IDENTITY_SD, COVERAGE_GROUPS)[groups]
    fake = rng.normal(0, FAKE_SD, COVERAGE_GROUPS)[groups]
    score = COVERAGE_SHIFT * y + identity + y * fake + rng.normal(0, 1, len(y))
    return y, special_expit(score), groups


@pytest.mark.slow
def test_group_bootstrap_covers_the_true_auc():
    from scipy import stats

    # The AUC of the process: a fake and a real from independent groups differ by
    # N(1.5, 2 * 0.5^2 + 1.5^2 + 2); a million such pairs agree.
    truth = stats.norm.cdf(COVERAGE_SHIFT / math.sqrt(2 * IDENTITY_SD**2 + FAKE_SD**2 + 2))
    rng = np.random.default_rng(19)
    n = 1_000_000
    fake = COVERAGE_SHIFT + rng.normal(0, IDENTITY_SD, n) + rng.normal(0, FAKE_SD, n) + rng.normal(0, 1, n)
    real = rng.normal(0, IDENTITY_SD, n) + rng.normal(0, 1, n)
    assert np.mean(fake > real) == pytest.approx(truth, abs=0.002)
    # 200 repetitions estimate a coverage to +-1.5 points (one SD), so a correct 95% interval would
    # land outside 93-97% about one run in five (the first 200 here gave 92.0%); 1,000 give +-0.7.
    # Outside the suite, 3,000 repetitions at 500 resamples covered 93.9% (BCa 94.1% on 2,000, a
    # cluster-DeLong bootstrap-t no better): with 150 originals the bootstrap SD of the AUC is ~2%
    # below its true SD. These 1,000 cover 93.4%, so a change that narrows the interval fails here.
    reps, n_boot = 1000, 250
    covered = {"groups": 0, "items": 0}
    for r in range(reps):
        y, p, groups = correlated_groups(np.random.default_rng(r))
        ci = M.bootstrap_ci(y, p, n_boot=n_boot, seed=r, groups=groups)["auc"]
        covered["groups"] += ci["lo"] <= truth <= ci["hi"]
        if r < 200:
            ci = M.bootstrap_ci(y, p, n_boot=n_boot, seed=r)["auc"]
            covered["items"] += ci["lo"] <= truth <= ci["hi"]
    assert 0.93 <= covered["groups"] / reps <= 0.97, covered
    # Ignoring the groups treats the ~5 fakes of an original as independent: too narrow.
    assert covered["items"] / 200 < 0.88, covered


def test_p_at_chance_is_the_share_of_resampled_aucs_at_or_below_one_half():
    assert M.p_at_chance(np.array([0.4, 0.5, 0.6, 0.7, np.nan])) == 0.5
    assert M.p_at_chance(np.array([0.8, 0.9, 0.7, 0.6])) == 0.25  # never below 1/n
    assert np.isnan(M.p_at_chance(np.array([])))


def test_bootstrap_ci_records_the_p_of_auc_at_chance():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(40), np.ones(40)]
    separable = M.bootstrap_ci(y, np.r_[rng.uniform(0, 0.4, 40), rng.uniform(0.6, 1, 40)], n_boot=200)["auc"]
    assert separable["p_chance"] == pytest.approx(1 / 200)
    noise = [M.bootstrap_ci(y, rng.uniform(size=80), n_boot=200, seed=s)["auc"]["p_chance"] for s in range(20)]
    assert 0.2 < np.mean(noise) < 0.8  # about uniform under the null
