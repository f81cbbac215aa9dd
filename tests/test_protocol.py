"""The evaluation protocol: choices on validation, numbers on test (helpers.protocol, helpers.results)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import metrics as M
from helpers import protocol, results, splits


def _dfdc_like(n_groups: int, rng: np.random.Generator, fakes_per_original: int = 5, shift: float = 0.0) -> pd.DataFrame:
    """Groups of one REAL video and its fakes (83% FAKE), Bayes logits of a known signal, shifted by `shift`."""
    rows = []
    for g in range(n_groups):
        for k in range(1 + fakes_per_original):
            label = "REAL" if k == 0 else "FAKE"
            x = rng.normal(1.0 if label == "FAKE" else 0.0, 1.0)
            prior = np.log(fakes_per_original)  # log-odds of FAKE at 5:1
            bayes = prior + x - 0.5  # the log-odds of FAKE given x for unit-variance classes 1 apart
            rows.append({"video_id": f"v{g}_{k}", "group": f"g{g}", "label": label, "logit": bayes + shift,
                         "bayes": bayes})
    return pd.DataFrame(rows)


def test_pos_weight_offset_is_removed_by_the_validation_fitted_calibration():
    rng = np.random.default_rng(0)
    n_real_over_fake = 1 / 5
    val = _dfdc_like(400, rng, shift=np.log(n_real_over_fake)).assign(split="val")
    test = _dfdc_like(400, rng, shift=np.log(n_real_over_fake)).assign(split="test")
    predictions, payload = protocol.evaluate_predictions(pd.concat([val, test], ignore_index=True), prevalence=5 / 6,
                                                         n_boot=50)
    y = M.labels_to_int(test.label)
    bayes = M.binary_metrics(y, 1 / (1 + np.exp(-test.bayes)))["log_loss"]
    raw = M.binary_metrics(y, 1 / (1 + np.exp(-test.logit)))["log_loss"]
    assert payload["frame"]["log_loss"]["value"] == pytest.approx(bayes, abs=0.02)
    assert raw > bayes + 0.05  # the shift really hurt before calibration
    assert payload["calibration"]["log_loss_platt"] == pytest.approx(payload["frame"]["log_loss"]["value"])
    assert payload["calibration"]["log_loss_temperature"] > payload["calibration"]["log_loss_platt"] + 0.02
    assert abs(payload["calibration"]["intercept"] - np.log(5)) < 0.4  # it undid the log(1/5) offset
    assert payload["threshold"]["chosen_on"] == "val"
    assert payload["interval"]["unit"] == "group"
    assert predictions.prob_raw.tolist() == pytest.approx((1 / (1 + np.exp(-predictions.logit))).tolist())


def test_threshold_comes_from_validation_not_test():
    rng = np.random.default_rng(1)
    val = _dfdc_like(100, rng).assign(split="val")
    test = _dfdc_like(100, rng).assign(split="test")
    _, payload = protocol.evaluate_predictions(pd.concat([val, test], ignore_index=True), 0.8, n_boot=20)
    # moving the test scores does not move the threshold; moving the validation scores does
    test2 = test.assign(logit=test.logit + 3)
    _, moved_test = protocol.evaluate_predictions(pd.concat([val, test2], ignore_index=True), 0.8, n_boot=20)
    assert moved_test["threshold"]["value"] == payload["threshold"]["value"]
    val2 = val.assign(logit=val.logit * 0.2 + 2)
    _, moved_val = protocol.evaluate_predictions(pd.concat([val2, test], ignore_index=True), 0.8, n_boot=20)
    assert moved_val["calibration"]["slope"] != pytest.approx(payload["calibration"]["slope"])


def test_baseline_uses_the_training_prevalence_before_undersampling(tmp_path):
    # 30 REAL and 70 FAKE training faces, undersampled to 30/30; 10 REAL and 10 FAKE test faces
    rows = [{"video_id": f"t{i}", "group": f"g{i}", "label": "FAKE" if i >= 30 else "REAL", "split": "train"}
            for i in range(100)]
    split = pd.DataFrame(rows)
    balanced, info = splits.balance_training(split, "undersample", seed=0)
    assert info["train_after"] == {"REAL": 30, "FAKE": 30}
    (tmp_path / "split_audit.json").write_text(json.dumps({"balance": info}))
    prevalence, source = protocol.train_prevalence(tmp_path / "split.csv", balanced[balanced.split == "train"])
    assert prevalence == pytest.approx(0.7) and source == "train before balancing"
    rng = np.random.default_rng(2)
    held = pd.concat([_dfdc_like(20, rng, 1).assign(split=s) for s in ("val", "test")], ignore_index=True)
    _, payload = protocol.evaluate_predictions(held, prevalence, source, n_boot=20)
    # a constant guess of 0.7 calls everything FAKE: accuracy = test FAKE share 0.5, log loss of p = 0.7
    assert payload["baseline"]["frame"]["accuracy"] == pytest.approx(0.5)
    assert payload["baseline"]["frame"]["log_loss"] == pytest.approx(-(np.log(0.7) + np.log(0.3)) / 2)
    assert payload["baseline_prevalence_from"] == "train before balancing"


def _run(name: str, val_auc: float, test_auc: float) -> results.Run:
    metrics = {"val": {"frame": {"auc": val_auc}}, "threshold": {"value": 0.5},
               "frame": {"auc": {"value": test_auc, "lo": test_auc - 0.1, "hi": test_auc + 0.1}},
               "video": {"auc": {"value": test_auc, "lo": test_auc - 0.1, "hi": test_auc + 0.1}}}
    return results.Run(Path(name), {"run_name": name}, pd.DataFrame(), pd.DataFrame(), metrics)


def test_the_best_run_is_chosen_on_validation_never_on_test():
    runs = [_run("high-test", val_auc=0.70, test_auc=0.95), _run("high-val", val_auc=0.80, test_auc=0.75)]
    assert results.best_run(runs).name == "high-val"
    assert "high-val" in results.choice_note(runs) and "validation AUC" in results.choice_note(runs)


def test_a_run_without_a_validation_auc_cannot_be_chosen():
    run = results.Run(Path("old"), {"run_name": "old"}, pd.DataFrame(), pd.DataFrame(), {"frame": {}})
    with pytest.raises(ValueError, match="validation AUC"):
        results.best_run([run])


def test_one_class_validation_and_test_splits_give_undefined_auc_not_a_crash():
    # a real-data smoke run (six DFDC clips) can leave a split with fakes only
    rng = np.random.default_rng(3)
    held = _dfdc_like(4, rng).assign(split=lambda d: np.where(np.arange(len(d)) < 12, "val", "test"))
    held = held[held.label == "FAKE"]
    _, payload = protocol.evaluate_predictions(held, 0.8, n_boot=20)
    assert payload["threshold"]["value"] == 0.5 and "one class" in payload["threshold"]["rule"]
    assert payload["frame"]["auc"]["value"] is None or np.isnan(payload["frame"]["auc"]["value"])


def _history(train_auc: list[float], val_auc: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"epoch": range(len(val_auc)), "train/auc": train_auc, "val/auc": val_auc})


def test_why_a_run_did_not_learn_is_read_from_its_own_history():
    def run(train, val):
        return results.Run(Path("r"), {"run_name": "r", "image_size": 48}, _history(train, val), pd.DataFrame(), {})

    underfit = results.why_not_learned(run([0.50, 0.55, 0.58], [0.50, 0.52, 0.51]))
    assert "did not fit even its training faces" in underfit and "3 epochs at 48 px" in underfit
    memorised = results.why_not_learned(run([0.7, 0.9, 0.99], [0.52, 0.55, 0.54]))
    assert "memorised" in memorised and "0.55" in memorised
    no_transfer = results.why_not_learned(run([0.7, 0.9, 0.99], [0.6, 0.8, 0.7]))
    assert "did not carry over" in no_transfer and "epoch 2 of 3" in no_transfer


def test_the_headline_names_each_network_at_chance_with_its_reason_and_those_above_it():
    learned = _run("learned", val_auc=0.9, test_auc=0.9)
    learned.metrics["video"]["auc"]["p_chance"] = 0.001
    chance = _run("chance", val_auc=0.55, test_auc=0.52)
    chance.history = _history([0.6, 0.65], [0.5, 0.55])
    lucky = _run("lucky", val_auc=0.5, test_auc=0.61)  # interval from 0.51: clears 0.5, not after Holm
    lucky.metrics["video"]["auc"]["p_chance"] = 0.03
    for r in (learned, chance, lucky):
        r.metrics.update(baseline={"frame": {"accuracy": 0.83}},
                         frame={**r.metrics["frame"], **{k: {"value": 0.5, "lo": 0.4, "hi": 0.6}
                                                         for k in ("balanced_accuracy", "log_loss", "accuracy")},
                                "n": {"value": 10}},
                         video={**r.metrics["video"], "n": {"value": 5}})
    text = results.headline([learned, chance, lucky])["text"]
    assert "1 of 3 networks did not learn" in text and "chance, because it did not fit even its training" in text
    assert "1 of 3 networks are above chance" in text and "Holm's correction for the 3 networks" in text
    assert "learned." in text
    assert "1 more clear 0.5 only before that correction (lucky: interval from 0.510, Holm p 0.06)" in text
    assert "about 0.1 such results by luck alone" in text


def test_above_chance_is_holm_adjusted_over_the_networks():
    def run(name, lo, p):
        r = _run(name, val_auc=0.6, test_auc=lo + 0.1)
        if p is not None:
            r.metrics["video"]["auc"]["p_chance"] = p
        return r

    verdicts = results.chance_verdicts([run("a", 0.7, 0.001), run("b", 0.52, 0.015), run("c", 0.45, 0.2),
                                        run("old", 0.6, None)])
    # Holm over 4: 0.001 * 4 = 0.004 < 0.05; 0.015 * 3 = 0.045 < 0.05; c's interval includes 0.5; "old" has no p
    assert {k: v["verdict"] for k, v in verdicts.items()} == {"a": "above", "b": "above", "c": "chance",
                                                               "old": "unadjusted"}
    assert verdicts["b"]["p_holm"] == pytest.approx(0.045)
    # one more network at chance makes b's 0.015 fail: 0.015 * 4 = 0.06
    more = results.chance_verdicts([run("a", 0.7, 0.001), run("b", 0.52, 0.015), run("c", 0.45, 0.2),
                                    run("d", 0.45, 0.3), run("old", 0.6, None)])
    assert more["b"]["verdict"] == "unadjusted"


def test_the_leaderboard_says_what_each_run_trained():
    def run(**config):
        return results.Run(Path("r"), {"run_name": "r", **config}, pd.DataFrame(), pd.DataFrame(), {})

    assert results.model_setup(run(model="vgg19", image_size=32, epochs=8)) == "vgg19 (pooled head), 32 px, 8 ep, from scratch"
    assert results.model_setup(run(model="vgg19", model_kwargs={"head": "classifier"}, image_size=224, epochs=5,
                                   pretrained=True)) == "vgg19, 224 px, 5 ep, ImageNet"
    assert results.model_setup(run(model="shortcut")) == "shortcut (logistic regression)"
