"""helpers.shortcut: face statistics on known images, and the baseline's run folder on tiny synthetic splits.

The splits are written here with cv2.imwrite: identity groups of one REAL and one FAKE video, a few
frames each, every face a 32 px texture crop of a small frame file. In the "blur" split the FAKE faces
are blurred (the shortcut to find); in the "none" split both classes come from one distribution.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from helpers import results, shortcut
from helpers.shortcut import FEATURES, IMAGE_FEATURES, face_features, features_table, fit_and_test, main

N_BOOT = 200


def write_image(path: Path, rgb: np.ndarray, quality: int = 95) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return path


def texture(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """A face-sized crop of smooth blobs plus fine detail, in a random base colour."""
    base = rng.integers(80, 180, size=3).astype(np.float64)
    coarse = cv2.resize(rng.normal(0, 30, (8, 8, 3)), (size, size), interpolation=cv2.INTER_CUBIC)
    image = base + coarse + rng.normal(0, 15, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def make_split(root: Path, signal: str = "blur", groups: int = 20, frames: int = 3, seed: int = 0) -> Path:
    """split.csv under `root`: groups 0..g-9 train, the next 4 val, the last 4 test."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(groups):
        split = "train" if g < groups - 8 else ("val" if g < groups - 4 else "test")
        for video, label in ((f"real{g:02d}", "REAL"), (f"fake{g:02d}", "FAKE")):
            for f in range(frames):
                face = texture(rng)
                if label == "FAKE" and signal == "blur":
                    face = cv2.GaussianBlur(face, (0, 0), 1.5)
                stem = f"{video}_{f:03d}"
                frame_path = write_image(root / "frames" / f"{stem}.jpg", np.full((72, 96, 3), 100, np.uint8))
                w, h = rng.uniform(15, 30, size=2)
                x, y = rng.uniform(0, 96 - w), rng.uniform(0, 72 - h)
                rows.append({"video_id": video, "label": label, "frame_index": f, "face_index": 0,
                             "frame_path": str(frame_path), "x": x, "y": y, "w": w, "h": h,
                             "face_path": str(write_image(root / "faces" / f"{stem}_f0.jpg", face)),
                             "status": "ok", "reason": "", "group": f"g{g:02d}", "split": split, "weight": 1.0})
    path = root / "split.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def blur_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("blur")
    return fit_and_test(make_split(root, "blur"), root / "runs", n_boot=N_BOOT, progress=False)


@pytest.fixture(scope="module")
def null_split(tmp_path_factory) -> Path:
    return make_split(tmp_path_factory.mktemp("null"), "none", groups=24, seed=1)


@pytest.fixture(scope="module")
def null_run(null_split) -> Path:
    return fit_and_test(null_split, null_split.parent / "runs", n_boot=N_BOOT, progress=False)


# --- features on known images ----------------------------------------------------------------------

def test_flat_grey_image_has_no_spread_sharpness_or_blocking(tmp_path):
    path = tmp_path / "grey.png"
    cv2.imwrite(str(path), np.full((32, 32, 3), 128, np.uint8))
    f = face_features(path)
    assert list(f) == list(IMAGE_FEATURES)  # no row: no box features
    assert [f[f"mean_{c}"] for c in "rgb"] == [128.0] * 3
    assert [f[f"std_{c}"] for c in "rgb"] == [0.0] * 3
    assert f["log_laplacian_var"] == 0.0 and f["blockiness"] == 0.0
    assert f["jpeg_quality"] == 100.0  # a PNG is lossless


def test_channel_means_of_a_known_colour(tmp_path):
    path = tmp_path / "colour.png"
    write_image(path, np.tile(np.array([200, 100, 50], np.uint8), (16, 24, 1)))
    f = face_features(path)
    assert (f["mean_r"], f["mean_g"], f["mean_b"]) == (200.0, 100.0, 50.0)


def test_sharper_image_has_higher_laplacian_variance(tmp_path):
    sharp = texture(np.random.default_rng(0), 64)
    a = face_features(write_image(tmp_path / "sharp.png", sharp))
    b = face_features(write_image(tmp_path / "blurred.png", cv2.GaussianBlur(sharp, (0, 0), 2.0)))
    grey = cv2.cvtColor(sharp, cv2.COLOR_RGB2GRAY)
    assert a["log_laplacian_var"] == pytest.approx(np.log1p(cv2.Laplacian(grey, cv2.CV_64F).var()))
    assert b["log_laplacian_var"] < a["log_laplacian_var"] - 1


@pytest.mark.parametrize("quality", [30, 95])
def test_jpeg_quality_estimate_is_close_to_the_truth(tmp_path, quality):
    path = write_image(tmp_path / f"q{quality}.jpg", texture(np.random.default_rng(0), 64), quality)
    assert abs(face_features(path)["jpeg_quality"] - quality) <= 2


def test_low_jpeg_quality_estimates_lower_and_blocks_more(tmp_path):
    image = texture(np.random.default_rng(0), 64)
    low = face_features(write_image(tmp_path / "q30.jpg", image, 30))
    high = face_features(write_image(tmp_path / "q95.jpg", image, 95))
    assert low["jpeg_quality"] < high["jpeg_quality"]
    assert low["blockiness"] > high["blockiness"]


def test_quality_from_tables_reads_zigzag_order_too():
    luma, chroma = shortcut._QUALITY_TABLES[42]
    zz = shortcut._ZIGZAG
    assert zz[:6].tolist() == [0, 1, 8, 16, 9, 2]  # the JPEG zigzag scan
    assert shortcut.quality_from_tables({0: luma, 1: chroma}) == 42
    assert shortcut.quality_from_tables({0: luma[zz], 1: chroma[zz]}) == 42


def test_box_size_and_position_from_a_known_row(tmp_path):
    frame = tmp_path / "frame.png"
    cv2.imwrite(str(frame), np.zeros((100, 200, 3), np.uint8))  # 200 wide, 100 high
    face = write_image(tmp_path / "face.jpg", texture(np.random.default_rng(0)))
    row = pd.Series({"face_path": str(face), "frame_path": str(frame), "x": 10.0, "y": 20.0, "w": 30.0, "h": 40.0})
    f = face_features(face, row)
    assert list(f) == list(FEATURES)
    assert f["box_area_frac"] == pytest.approx(30 * 40 / (200 * 100))
    assert (f["box_cx"], f["box_cy"]) == (pytest.approx(25 / 200), pytest.approx(40 / 100))
    table = features_table(pd.DataFrame([row, row]), progress=False)
    assert list(table.columns) == list(FEATURES) and len(table) == 2
    assert table.iloc[0].to_dict() == pytest.approx(f)


def test_unreadable_files_raise_naming_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="broken.jpg"):
        face_features(bad)
    face = write_image(tmp_path / "face.jpg", texture(np.random.default_rng(0)))
    row = {"frame_path": str(tmp_path / "gone.jpg"), "x": 1, "y": 1, "w": 5, "h": 5}
    with pytest.raises(ValueError, match="gone.jpg"):
        face_features(face, row)


# --- the baseline ----------------------------------------------------------------------------------

def test_baseline_finds_blurrier_fakes_and_loads_as_a_run(blur_run):
    run = results.load_run(blur_run)
    assert run.metrics["frame"]["auc"]["value"] > 0.95
    assert run.metrics["video"]["auc"]["value"] > 0.95
    assert 0.95 < run.val_auc <= 1.0
    assert run.val_auc == run.metrics["val"]["frame"]["auc"]
    assert run.config["model"] == run.metrics["model"] == "shortcut"
    assert run.config["variant"] == "full" and run.config["features"] == list(FEATURES)
    assert run.config["C"] in run.config["C_grid"]
    assert run.config["data"]["train"] == {"faces": 72, "fake": 36, "real": 36}
    assert run.config["data"]["test"]["faces"] == len(run.test) == 24
    # the curve code reads epoch and val/auc, train/auc from history.csv
    assert run.history.epoch.tolist() == [0] and {"val/auc", "train/auc", "val/acc"} <= set(run.history.columns)
    assert run.history["val/auc"].iloc[0] == pytest.approx(run.metrics["best_val_auc"])
    for column in ("face_path", "video_id", "group", "label", "logit", "prob_raw", "prob_fake", "split",
                   "variant_path"):
        assert column in run.predictions.columns
    assert (run.predictions.variant_path == run.predictions.face_path).all()
    assert set(run.metrics["coefficients"]) == set(FEATURES)
    assert run.metrics["parameters"] == len(FEATURES) + 1
    assert run.metrics["best_epoch"] == 0 and run.metrics["epochs_trained"] == 0
    assert run.metrics["evaluated_on"] == "split.csv's val and test faces"
    # the results notebook's tables take it beside the networks
    assert "shortcut" in results.leaderboard([run]).index
    assert len(results.calibration_table([run])) == 1


def test_logit_is_the_decision_function_of_the_saved_features(blur_run):
    run = results.load_run(blur_run)
    table = pd.read_csv(blur_run / "features.csv")
    train, test = table[table.split == "train"], table[table.split == "test"]
    model = shortcut.make_model(run.config["C"]).fit(train[list(FEATURES)].to_numpy(), train.label.eq("FAKE"))
    np.testing.assert_allclose(model.decision_function(test[list(FEATURES)].to_numpy()), run.test.logit, rtol=1e-6)
    # the blur lowers the sharpness of FAKE faces: the model leans on it
    assert model[-1].coef_[0][FEATURES.index("log_laplacian_var")] < 0


def test_no_signal_gives_an_auc_interval_that_includes_chance(null_run):
    run = results.load_run(null_run)
    for level in ("frame", "video"):
        auc = run.metrics[level]["auc"]
        assert auc["lo"] < 0.5 < auc["hi"]
    assert results.at_chance(run)


def test_C_is_chosen_on_validation_and_test_rows_do_not_move_it(null_split, null_run, tmp_path):
    first = results.load_run(null_run)
    search = first.config["C_search"]
    assert len({round(s["val_auc"], 9) for s in search}) > 1  # the choice is not a tie
    best = max(s["val_auc"] for s in search)
    assert first.config["C"] == min(s["C"] for s in search if s["val_auc"] == best)
    # the recorded validation AUC is the one of split.csv's val faces at that C
    table = pd.read_csv(null_run / "features.csv")
    train, val = table[table.split == "train"], table[table.split == "val"]
    model = shortcut.make_model(first.config["C"]).fit(train[list(FEATURES)].to_numpy(), train.label.eq("FAKE"))
    assert roc_auc_score(val.label.eq("FAKE"), model.decision_function(val[list(FEATURES)].to_numpy())) == \
        pytest.approx(best)

    # change only the test rows: swap every test video's label and move its boxes
    split = pd.read_csv(null_split)
    test = split.split == "test"
    split.loc[test, "label"] = split.loc[test, "label"].map({"REAL": "FAKE", "FAKE": "REAL"})
    split.loc[test, ["x", "y"]] = split.loc[test, ["x", "y"]] * 0.5
    changed = tmp_path / "split.csv"
    split.to_csv(changed, index=False)
    second = results.load_run(fit_and_test(changed, tmp_path / "runs", n_boot=N_BOOT, progress=False))
    assert second.config["C"] == first.config["C"]
    assert second.config["C_search"] == search
    assert second.metrics["frame"]["auc"]["value"] != pytest.approx(first.metrics["frame"]["auc"]["value"])


def test_a_fixed_C_is_used_as_given(null_split, tmp_path):
    run = results.load_run(fit_and_test(null_split, tmp_path, run_name="fixed", n_boot=20, C=0.5, progress=False))
    assert run.config["C"] == 0.5 and run.config["C_grid"] == [0.5] and run.config["C_chosen_by"] == "given"


def test_eval_csv_faces_are_the_ones_scored(tmp_path):
    split_csv = make_split(tmp_path, "blur", groups=12, frames=2)
    split = pd.read_csv(split_csv)
    held_out = split[split.split.isin(["val", "test"])]
    second = [str(write_image(tmp_path / "eval" / f"{i}.jpg", texture(np.random.default_rng(i))))
              for i in range(len(held_out))]  # a second frame of every held-out video
    extra = held_out.assign(frame_index=held_out.frame_index + 10, face_path=second)
    pd.concat([held_out, extra]).to_csv(split_csv.with_name("eval.csv"), index=False)
    run = results.load_run(fit_and_test(split_csv, tmp_path / "runs", n_boot=20, progress=False))
    assert len(run.predictions) == 2 * len(held_out)
    assert set(run.predictions.face_path) == set(held_out.face_path) | set(extra.face_path)
    assert run.metrics["evaluated_on"].startswith("eval.csv")
    assert run.config["data"]["val"]["faces"] == int((split.split == "val").sum())  # C still chosen on split.csv's val


def test_rerun_replaces_the_run_folder(null_split, tmp_path):
    stale = tmp_path / "again" / "stale.txt"
    stale.parent.mkdir(parents=True)
    stale.write_text("from an earlier run")
    fit_and_test(null_split, tmp_path, run_name="again", n_boot=20, C=1.0, progress=False)
    assert not stale.exists() and (tmp_path / "again" / "metrics.json").is_file()


def test_a_one_class_validation_split_keeps_C_at_1_and_a_one_class_train_split_is_refused(tmp_path):
    split_csv = make_split(tmp_path, "blur", groups=10, frames=1)
    split = pd.read_csv(split_csv)
    split[~((split.split == "val") & (split.label == "FAKE"))].to_csv(split_csv, index=False)
    run = fit_and_test(split_csv, tmp_path / "runs", n_boot=20, progress=False)
    config = json.loads((run / "config.json").read_text())
    assert config["C"] == 1.0 and "one class" in config["C_chosen_by"]
    split[~((split.split == "train") & (split.label == "FAKE"))].to_csv(split_csv, index=False)
    with pytest.raises(ValueError, match=r"train split holds only \['REAL'\]"):
        fit_and_test(split_csv, tmp_path / "runs2", n_boot=20, progress=False)


# --- the command line ------------------------------------------------------------------------------

def test_cli_writes_the_run_folder(null_split, tmp_path, capsys):
    assert main(["--split-csv", str(null_split), "--out-dir", str(tmp_path), "--n-boot", "20", "--C", "1",
                 "--no-progress"]) == 0
    out = Path(capsys.readouterr().out.strip())
    assert out == tmp_path / "shortcut" and json.loads((out / "metrics.json").read_text())["model"] == "shortcut"


@pytest.mark.parametrize("args, message", [
    (["--split-csv", "nowhere/split.csv"], "does not exist"),
    (["--C", "-1"], "C must be a positive number"),
    (["--run-name", "../up"], "plain folder name"),
])
def test_cli_refuses_bad_input_with_exit_code_2(null_split, tmp_path, capsys, args, message):
    base = {"--split-csv": str(null_split), "--out-dir": str(tmp_path), "--n-boot": "20"}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    assert main([item for pair in base.items() for item in pair]) == 2
    err = capsys.readouterr().err
    assert err.startswith("shortcut: ") and message in err


def test_cli_refuses_a_broken_face_with_exit_code_2(tmp_path, capsys):
    split_csv = make_split(tmp_path, "blur", groups=10, frames=1)
    victim = pd.read_csv(split_csv).face_path.iloc[0]
    Path(victim).write_bytes(b"")
    assert main(["--split-csv", str(split_csv), "--out-dir", str(tmp_path / "runs"), "--no-progress"]) == 2
    assert Path(victim).name in capsys.readouterr().err
