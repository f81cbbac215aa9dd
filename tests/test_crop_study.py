"""The crop study's table, paired test and reference rows, on fixed predictions whose answers are known."""
from __future__ import annotations

import math
import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from helpers import crop_study, plots

FAKE_PROBS = [0.9, 0.8, 0.7, 0.6, 0.4]   # the last fake is missed
REAL_PROBS = [0.1, 0.2, 0.3, 0.35, 0.45]  # every real is right
LABELS = ["FAKE"] * 5 + ["REAL"] * 5


def run_frame(model: str, variant: str, probs, seed: int = 0, labels=LABELS, videos=None) -> pd.DataFrame:
    """Test predictions of one run on faces face_00.jpg ... (face_path is the full face whatever the variant)."""
    n = len(probs)
    return pd.DataFrame({
        "model": model, "variant": variant, "seed": seed, "run": crop_study.run_name(model, variant, seed),
        "face_path": [f"faces/face_{i:02d}.jpg" for i in range(n)],
        "video_id": videos if videos is not None else [f"v{i:02d}" for i in range(n)],
        "label": labels, "prob_fake": probs, "logit": np.log(np.asarray(probs) / (1 - np.asarray(probs))),
        "split": "test",
    })


def pairwise_auc(labels, probs) -> float:
    """AUC by its definition: the share of (fake, real) pairs ranked right, ties counting one half."""
    fakes = [p for l, p in zip(labels, probs) if l == "FAKE"]
    reals = [p for l, p in zip(labels, probs) if l == "REAL"]
    return sum((f > r) + 0.5 * (f == r) for f in fakes for r in reals) / (len(fakes) * len(reals))


# Normal: 9/10 right. Cropped: 5/10 right, including face 4 the normal run missed, so b = 5 and c = 1.
NORMAL = FAKE_PROBS + REAL_PROBS
CROPPED = [0.9, 0.3, 0.2, 0.1, 0.6] + [0.1, 0.2, 0.3, 0.7, 0.8]


@pytest.fixture
def one_seed() -> pd.DataFrame:
    return pd.concat([run_frame("meso4", "full", NORMAL), run_frame("meso4", "eyes_lower", CROPPED)], ignore_index=True)


def test_table_balanced_accuracy_auc_and_mcnemar_match_hand_computed_values(one_seed):
    table = crop_study.crop_study_table(one_seed, n_boot=200, seed=0)
    row = table.iloc[0]
    assert row["Model"] == "MesoNet (Meso4)" and row["Test faces"] == 10 and row["n_seeds"] == 1
    # normal: 4 of 5 fakes and 5 of 5 reals; cropped: 2 of 5 fakes and 3 of 5 reals
    assert row["balanced_accuracy_full"] == pytest.approx(0.9)
    assert row["balanced_accuracy_eyes_lower"] == pytest.approx(0.5)
    assert row["auc_full"] == pytest.approx(pairwise_auc(LABELS, NORMAL)) == pytest.approx(0.96)
    assert row["auc_eyes_lower"] == pytest.approx(pairwise_auc(LABELS, CROPPED))
    for metric in ("balanced_accuracy", "auc"):
        for variant in ("full", "eyes_lower"):
            assert row[f"{metric}_{variant}_lo"] <= row[f"{metric}_{variant}"] <= row[f"{metric}_{variant}_hi"]
    assert row["Balanced acc. (normal image)"].startswith("0.900 [")
    assert row["Balanced acc. (cropped image)"].startswith("0.500 [")
    # the paired difference is cropped - normal, on the same resamples
    assert row["auc_diff"] == pytest.approx(pairwise_auc(LABELS, CROPPED) - 0.96)
    assert row["auc_diff_lo"] <= row["auc_diff"] <= row["auc_diff_hi"] < 0.1
    # McNemar stays as a secondary column: exact binomial 2 * P(X <= 1), X ~ Bin(6, 1/2) = 2 * 7/64
    assert (row["b"], row["c"]) == (5, 1) and row["mcnemar_p"] == pytest.approx(14 / 64)
    assert row["McNemar b / c"] == "5 / 1" and row["McNemar p"] == "0.22"
    assert row["Verdict"].startswith(("cropped worse (ΔAUC", "no significant difference (ΔAUC"))
    assert crop_study.display_columns(table)[:5] == ["Model", "Test faces", "Balanced acc. (normal image)",
                                                      "Balanced acc. (cropped image)", "AUC (normal image)"]


def test_pairing_is_by_face_path_not_by_row_order(one_seed):
    shuffled = one_seed.sample(frac=1, random_state=3)
    a = crop_study.crop_study_table(one_seed, n_boot=50)
    b = crop_study.crop_study_table(shuffled, n_boot=50)
    assert (a.loc[0, "b"], a.loc[0, "c"]) == (b.loc[0, "b"], b.loc[0, "c"]) == (5, 1)
    assert a.loc[0, "auc_full"] == b.loc[0, "auc_full"] and a.loc[0, "auc_diff_lo"] == b.loc[0, "auc_diff_lo"]


@pytest.mark.parametrize("swap, word", [(False, "worse"), (True, "better")])
def test_significant_differences_get_a_direction(swap, word):
    rng = np.random.default_rng(0)
    labels = ["FAKE"] * 40 + ["REAL"] * 40
    y = np.array([1] * 40 + [0] * 40)
    good = np.clip(0.5 + 0.35 * (2 * y - 1) + rng.normal(0, 0.1, 80), 0.01, 0.99)  # AUC about 1
    weak = np.clip(0.5 + 0.05 * (2 * y - 1) + rng.normal(0, 0.2, 80), 0.01, 0.99)  # AUC about 0.6
    a, b = (weak, good) if swap else (good, weak)
    frame = pd.concat([run_frame("vgg19", "full", a, labels=labels),
                       run_frame("vgg19", "eyes_lower", b, labels=labels)], ignore_index=True)
    table = crop_study.crop_study_table(frame, n_boot=200)
    row = table.iloc[0]
    assert row["Verdict"].startswith(f"cropped {word} (ΔAUC")
    assert row["auc_p_holm"] == pytest.approx(row["auc_p"])  # one model: Holm changes nothing
    summary = crop_study.summarize(table)
    assert f"holds for {0 if swap else 1} of 1 compared model(s)" in summary


def test_holm_adjusts_across_models_and_untrained_models_are_not_compared(one_seed):
    frames = [one_seed]
    for model in ("vgg19", "resnet50"):
        frames += [run_frame(model, "full", NORMAL), run_frame(model, "eyes_lower", CROPPED)]
    frame = pd.concat(frames, ignore_index=True)
    frame.loc[frame.model == "resnet50", "trained"] = False  # its validation AUC was at chance
    tests = crop_study.paired_tests(frame, n_boot=100)
    trained = tests[tests.trained]
    assert len(trained) == 2
    assert np.allclose(trained.auc_p_holm, np.minimum(1, 2 * trained.auc_p))  # two equal p-values: x2
    assert np.isnan(tests.loc[~tests.trained, "auc_p_holm"]).all()
    table = crop_study.crop_study_table(frame, n_boot=100)
    verdict = table.set_index("model").loc["resnet50", "Verdict"]
    assert verdict.startswith("did not train")
    assert "ResNet50 did not train" in crop_study.summarize(table)


def test_several_seeds_are_pooled_by_a_hierarchical_bootstrap():
    right = np.array([0.9] * 5 + [0.1] * 5)
    frames = []
    for seed, missed in enumerate(([0, 1], [0], [])):  # normal balanced accuracy 0.8, 0.9, 1.0
        normal = right.copy()
        normal[missed] = 0.45
        cropped = right.copy()
        cropped[5:] = 0.8                          # every real called FAKE: 0.5 in each seed
        frames += [run_frame("meso4", "full", normal, seed), run_frame("meso4", "eyes_lower", cropped, seed)]
    frame = pd.concat(frames, ignore_index=True)
    row = crop_study.crop_study_table(frame, n_boot=100).iloc[0]
    assert row["n_seeds"] == 3
    assert row["balanced_accuracy_full"] == pytest.approx(0.9)  # the mean over seeds
    assert row["Balanced acc. (normal image)"].startswith("0.900 [") and row["Balanced acc. (normal image)"].endswith(
        "(3 seeds)")
    assert row["balanced_accuracy_eyes_lower"] == pytest.approx(0.5)
    assert row["balanced_accuracy_full_lo"] <= 0.9 <= row["balanced_accuracy_full_hi"]
    # McNemar on the seed ensemble: normal 10/10 right, cropped wrong on the 5 reals
    assert (row["b"], row["c"]) == (5, 0)


def test_groups_are_the_resampled_unit_and_unequal_seeds_pair(one_seed):
    videos = [f"v{i // 2}" for i in range(10)]  # two faces per identity group
    frame = one_seed.assign(group=videos * 2)
    scores = crop_study.variant_scores(frame, n_boot=100, seed=1)
    assert set(scores["variant"]) == {"full", "eyes_lower"} and (scores["n"] == 10).all()
    assert (scores["groups"] == 5).all()
    # a seed trained on one variant only still pairs: each variant's own seeds are resampled
    extra = run_frame("meso4", "full", NORMAL, seed=1)
    assert crop_study.paired_tests(pd.concat([one_seed, extra]), n_boot=20).n_seeds.tolist() == [2]
    with pytest.raises(ValueError, match="add it to VARIANTS"):
        crop_study.crop_study_table(one_seed[one_seed.variant == "full"], n_boot=10)


def test_reference_rows_are_shown_untested(one_seed):
    reference = run_frame("Meso4_DF (published)", "full", NORMAL)
    table = crop_study.crop_study_table(one_seed, n_boot=50, reference=reference)
    ref = table.iloc[1]
    assert ref["Model"] == "Meso4_DF (published)" and ref["Balanced acc. (cropped image)"] == "n/a"
    assert ref["Verdict"].startswith("reference") and math.isnan(ref["p_value"])
    text = crop_study.summarize(table)
    assert "MesoNet (Meso4): AUC 0.960 →" in text and "Reference: Meso4_DF (published)" in text


def test_save_table_writes_csv_and_markdown(one_seed, tmp_path):
    table = crop_study.crop_study_table(one_seed, n_boot=50)
    table.loc[0, "Model"] = "Meso|4"  # a pipe must not break the Markdown row
    csv_path, md_path = crop_study.save_table(table, tmp_path / "tables", "06_crop_study")
    back = pd.read_csv(csv_path)
    assert back.loc[0, "balanced_accuracy_full"] == pytest.approx(0.9) and back.loc[0, "b"] == 5
    lines = md_path.read_text().splitlines()
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines[:3]]
    assert cells[0][:4] == ["Model", "Test faces", "Balanced acc. (normal image)", "Balanced acc. (cropped image)"]
    assert cells[0][-3:] == ["Verdict", "McNemar b / c", "McNemar p"]
    assert all(set(c) <= {"-", ":"} for c in cells[1])
    assert cells[2][0] == "Meso\\|4" and cells[2][2].startswith("0.900 [") and len(cells[2]) == len(cells[0])
    assert "Normal image: full face" in md_path.read_text()


def test_bar_chart_has_one_bar_per_model_and_variant(one_seed):
    frame = pd.concat([one_seed, run_frame("vgg19", "full", NORMAL), run_frame("vgg19", "eyes_lower", NORMAL)])
    table = crop_study.crop_study_table(frame, n_boot=50)
    fig = plots.crop_study_bars(table, metrics=("balanced_accuracy", "auc"))
    accuracy_axis, auc_axis = fig.axes[:2]
    assert len(accuracy_axis.patches) == 4 and len(auc_axis.patches) == 4
    assert [t.get_text() for t in accuracy_axis.get_xticklabels()] == ["MesoNet (Meso4)", "VGG19"]
    plots.plt.close(fig)


def test_plan_runs_gives_every_model_the_same_budget():
    configs = crop_study.plan_runs(["meso4", "vgg19"], ["full", "eyes_lower"], range(2), epochs=50, batch_size=16,
                                   lr=0.002, optimizer="adam", image_size=64, pretrained=True, out_dir="out")
    assert len(configs) == 8
    assert configs[0]["run_name"] == "crop-meso4-full-s0" and configs[-1]["run_name"] == "crop-vgg19-eyes_lower-s1"
    budget = {(c["epochs"], c["batch_size"], c["lr"], c["optimizer"], c["image_size"], c["out_dir"]) for c in configs}
    assert budget == {(50, 16, 0.002, "adam", 64, "out")}
    # MesoNet has no ImageNet weights: it trains from scratch whatever PRETRAINED says
    assert {c["model"]: c["pretrained"] for c in configs} == {"meso4": False, "vgg19": True}
    with pytest.raises(ValueError, match="unknown model"):
        crop_study.plan_runs(["mesonet"], ["full"], [0])
    with pytest.raises(ValueError, match="unknown face variant"):
        crop_study.plan_runs(["meso4"], ["mouth"], [0])
    with pytest.raises(ValueError, match="sets \\['variant'\\] itself"):
        crop_study.plan_runs(["meso4"], ["full"], [0], variant="eyes")


def write_faces(folder, n: int) -> list[str]:
    """n small JPEG faces: smooth colour gradients with a dark blob, different per face."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        y, x = np.mgrid[0:40, 0:40]
        image = np.stack([x * 6, y * 6, np.full_like(x, 40 * (i % 6))], axis=-1).astype(np.uint8)
        cv2.circle(image, tuple(int(v) for v in rng.integers(10, 30, 2)), 6, (20, 20, 20), -1)
        path = folder / f"face_{i:02d}.jpg"
        cv2.imwrite(str(path), image)
        paths.append(str(path))
    return paths


@pytest.mark.slow
def test_train_all_trains_then_reuses_and_runs_pair_up(tmp_path):
    faces = write_faces(tmp_path / "faces", 12)
    crops = write_faces(tmp_path / "crops", 12)
    split = pd.DataFrame({"face_path": faces, "eyes_lower_path": crops, "video_id": [f"v{i}" for i in range(12)],
                          "label": ["FAKE", "REAL"] * 6, "split": ["train"] * 6 + ["val"] * 2 + ["test"] * 4})
    split.to_csv(tmp_path / "split.csv", index=False)
    configs = crop_study.plan_runs(["meso4"], ["full", "eyes_lower"], [0], split_csv=str(tmp_path / "split.csv"),
                                   out_dir=str(tmp_path / "runs"), image_size=32, epochs=1, batch_size=4,
                                   accelerator="cpu", cache_dir="", n_boot=20, augment=False, threads=1, resume=True)
    manifest = crop_study.train_all(configs)
    assert manifest["status"].tolist() == ["trained", "trained"]
    assert not any((Path(d) / "checkpoints").exists() for d in manifest.run_dir)  # model.pt holds the weights
    again = crop_study.train_all(configs)
    assert again["status"].tolist() == ["reused", "reused"]
    assert crop_study.changed_settings({**configs[0], "epochs": 2}, manifest.run_dir[0]) == ["epochs 1 -> 2"]
    split.to_csv(tmp_path / "split.csv", index=False)  # the same split rewritten: still reusable
    assert crop_study.changed_settings(configs[0], manifest.run_dir[0]) == []
    split.assign(split=["train"] * 5 + ["val"] * 3 + ["test"] * 4).to_csv(tmp_path / "split.csv", index=False)
    assert "another split" in crop_study.changed_settings(configs[0], manifest.run_dir[0])[0]
    predictions = crop_study.collect_predictions(manifest.run_dir)
    assert len(predictions) == 8 and set(predictions.face_path) == set(faces[8:])  # crops paired by their full face
    assert predictions.threshold.between(0, 1).all() and predictions.group.notna().all()
    row = crop_study.crop_study_table(predictions, n_boot=20).iloc[0]
    assert row["Test faces"] == 4 and row["b"] + row["c"] <= 4
    with pytest.raises(ValueError, match="two runs"):
        crop_study.collect_predictions([*manifest.run_dir, manifest.run_dir[0]])


@pytest.mark.slow
def test_recipes_are_chosen_on_validation_and_kept_out_of_the_report(tmp_path):
    from helpers import results

    faces = write_faces(tmp_path / "faces", 12)
    split = pd.DataFrame({"face_path": faces, "video_id": [f"v{i}" for i in range(12)],
                          "label": ["FAKE", "REAL"] * 6, "split": ["train"] * 6 + ["val"] * 2 + ["test"] * 4})
    split.to_csv(tmp_path / "split.csv", index=False)
    settings = dict(split_csv=str(tmp_path / "split.csv"), out_dir=str(tmp_path / "runs"), image_size=32, epochs=1,
                    batch_size=4, accelerator="cpu", cache_dir="", n_boot=20, augment=False, threads=1)
    recipes = [{"lr": 1e-4, "warmup_epochs": 0}, {"lr": 1e-2, "warmup_epochs": 0.5}]
    chosen, tuning = crop_study.choose_recipes(["meso4"], recipes, "full", 0, **settings)
    assert len(tuning) == 2 and tuning.chosen.sum() == 1
    best = tuning.loc[tuning.val_auc.idxmax()]
    assert chosen["meso4"] == recipes[int(best.recipe)]
    assert (tmp_path / "runs" / "_tuning" / "crop-tune-meso4-r1" / "metrics.json").exists()
    assert results.find_runs(tmp_path / "runs") == []  # tuning runs never reach the leaderboard
    configs = crop_study.plan_runs(["meso4"], ["full"], [0], chosen, **settings)
    assert configs[0]["lr"] == chosen["meso4"]["lr"]
    with pytest.raises(ValueError, match="may set only"):
        crop_study.choose_recipes(["meso4"], [{"lr": 1e-3, "epochs": 3}, {"lr": 1e-2}], **settings)


def test_reference_predictions_skip_when_no_folder_and_name_a_bad_one(tmp_path):
    assert crop_study.reference_predictions("", tmp_path / "unused.csv").empty
    with pytest.raises(FileNotFoundError, match="MESONET_WEIGHTS_DIR"):
        crop_study.score_published_mesonet(tmp_path, pd.DataFrame({"face_path": []}))


@pytest.mark.realdata
def test_published_mesonet_scores_are_the_loaded_models_fake_probability(shared_data, tmp_path):
    from helpers.datasets import load_crop
    from helpers.models import build_model, load_keras_weights

    weights = shared_data / "models" / "mesonet"
    paths = write_faces(tmp_path / "faces", 3)
    frame = pd.DataFrame({"face_path": paths, "video_id": ["a", "b", "c"], "label": ["FAKE", "REAL", "FAKE"]})
    scored = crop_study.score_published_mesonet(weights, frame, names=["Meso4_DF", "MesoInception_F2F"])
    assert scored["model"].unique().tolist() == ["Meso4_DF (published)", "MesoInception_F2F (published)"]
    assert scored["prob_fake"].between(0, 1).all() and (scored["variant"] == "full").all()
    model = load_keras_weights(build_model("meso4", image_size=256), weights / "Meso4_DF.h5").eval()
    images = np.stack([load_crop(p, 256) for p in paths]).astype(np.float32) / 255  # [0, 1], as the authors fed it
    with torch.no_grad():  # the loader negated the authors' P(REAL) output layer: sigmoid is P(FAKE)
        p_fake = torch.sigmoid(model(torch.from_numpy(images.transpose(0, 3, 1, 2).copy()))).double().numpy()
    meso4 = scored[scored["model"] == "Meso4_DF (published)"]
    np.testing.assert_allclose(meso4["prob_fake"], p_fake, atol=1e-6)
    np.testing.assert_allclose(1 / (1 + np.exp(-meso4["logit"])), meso4["prob_fake"], atol=1e-6)


def test_model_budgets_differ_between_models_never_between_variants():
    budgets = {"meso4": {"image_size": 64, "epochs": 24}, "vgg19": {"image_size": 32, "epochs": 8, "lr": 1e-4}}
    chosen, table = crop_study.choose_recipes(["meso4", "vgg19", "resnet50"], [{"lr": 1e-3, "warmup_epochs": 0.0}],
                                              budgets=budgets)
    configs = crop_study.plan_runs(["meso4", "vgg19", "resnet50"], ["full", "eyes_lower"], [0], chosen, budgets,
                                   image_size=48, epochs=3, lr=1e-3)
    by_model = {}
    for c in configs:
        by_model.setdefault(c["model"], set()).add((c["image_size"], c["epochs"], c["lr"]))
    # one budget per model, shared by its variants; a model without a budget takes the common settings
    assert by_model == {"meso4": {(64, 24, 1e-3)}, "vgg19": {(32, 8, 1e-4)}, "resnet50": {(48, 3, 1e-3)}}
    assert table.set_index("model").loc["vgg19", "lr"] == 1e-4  # the table shows the budget that trains
    with pytest.raises(ValueError, match="may set only"):
        crop_study.plan_runs(["meso4"], ["full"], [0], budgets={"meso4": {"optimizer": "sgd"}})
    with pytest.raises(ValueError, match="unknown model"):
        crop_study.plan_runs(["meso4"], ["full"], [0], budgets={"mesonet": {"epochs": 2}})
