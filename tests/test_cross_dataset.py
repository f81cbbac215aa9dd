"""Cross-dataset evaluation: per-method rows against all reals, intervals, units, runs, the shortcut, the demo FF++ tree."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from helpers import cross_dataset as X
from helpers import faces, frames, layouts, predict, shortcut

FACE_SETTINGS = faces.face_settings(face_size=64, detect_max_side=0)


def make_run(folder: Path, slope: float = 2.0, intercept: float = -0.5, threshold: float = 0.4) -> Path:
    """A run folder results.find_runs accepts: an untrained Meso4 with calibration, threshold and stub history."""
    run = predict.make_untrained_run(folder, "meso4", 32, face_settings=FACE_SETTINGS, metrics_json={
        "calibration": {"method": "platt", "slope": slope, "intercept": intercept}, "threshold": {"value": threshold},
        "val": {"frame": {"auc": 0.7}}, "frame": {}, "video": {"auc": {"value": 0.9}}})
    pd.DataFrame([{"epoch": 0}]).to_csv(run / "history.csv", index=False)
    pd.DataFrame(columns=["video_id", "label", "split", "prob_fake"]).to_csv(run / "predictions.csv", index=False)
    return run


def synthetic_predictions(seed: int = 0) -> pd.DataFrame:
    """Faces of 12 real videos and 12 fakes each of methods A (easy) and B (hard), 3 faces per video, 6 identities."""
    rng = np.random.default_rng(seed)
    rows = []
    for method, label, shift in (("real", "REAL", 0.0), ("A", "FAKE", 0.9), ("B", "FAKE", 0.2)):
        for v in range(12):
            for f in range(3):
                rows.append({"video_id": f"{method}{v:02d}", "label": label, "method": method,
                             "prob_fake": float(1 / (1 + np.exp(-(rng.normal(shift, 1.0))))), "unit": f"id{v % 6}"})
    return pd.DataFrame(rows)


# --- metrics --------------------------------------------------------------------------------------------

def test_each_method_is_scored_against_all_reals_with_intervals_at_both_levels():
    predictions = synthetic_predictions()
    rows = pd.DataFrame(X.metrics_rows(predictions, "run-a", "set", threshold=0.5, n_boot=200, unit="identity group"),
                        columns=X.COLUMNS)
    assert list(rows.columns) == X.COLUMNS
    assert sorted(zip(rows.level, rows.method)) == sorted((lv, m) for lv in X.LEVELS for m in ("A", "B", X.ALL))
    reals = predictions[predictions.label == "REAL"]
    for (level, method), row in rows.set_index(["level", "method"]).iterrows():
        fakes = predictions[predictions.label == "FAKE"]
        data = pd.concat([reals, fakes if method == X.ALL else fakes[fakes.method == method]])
        if level == "video":
            data = data.groupby("video_id").agg(label=("label", "first"), prob_fake=("prob_fake", "mean"))
        assert row.auc == pytest.approx(roc_auc_score(data.label == "FAKE", data.prob_fake))
        assert row.auc_low <= row.auc <= row.auc_high and row.auc_high - row.auc_low > 0
        assert row.n_real_videos == 12 and row.n_fake_videos == (24 if method == X.ALL else 12)
        assert row.n_faces == 3 * row.n_videos and row.n_units == 6 and row.unit == "identity group"
    video = rows[rows.level == "video"].set_index("method")
    assert video.loc["A", "auc"] > video.loc["B", "auc"]  # the easy method is easier
    assert np.isfinite(rows[["log_loss", "eer", "ap", "tpr_at_1fpr", "balanced_accuracy"]].to_numpy()).all()


def test_a_method_without_reals_to_rank_against_gets_empty_metrics():
    predictions = synthetic_predictions()
    rows = X.metrics_rows(predictions[predictions.label == "FAKE"], "r", "set", 0.5, n_boot=20)
    assert rows and all(np.isnan(r["auc"]) and r["n_real_videos"] == 0 for r in rows)


def test_units_are_identity_groups_else_targets_else_videos(tmp_path):
    listing = pd.DataFrame({"video_id": [f"{i:03d}" for i in range(12)] + [f"F_{i:03d}_{i + 1:03d}" for i in range(0, 12, 2)],
                            "original": [None] * 12 + [f"{i:03d}" for i in range(0, 12, 2)],
                            "status": "ok"})
    listing["identity"] = ["youtube:" + (v if pd.isna(o) else o) for v, o in zip(listing.video_id, listing.original)]
    listing["source_identity"] = listing.identity
    listing.loc[12:, "source_identity"] = [f"youtube:{i + 1:03d}" for i in range(0, 12, 2)]
    scored = set(listing.video_id)
    units, kind = X.bootstrap_units(listing, scored, min_units=6)
    assert kind == "identity group" and units.nunique() == 6 and units["000"] == units["001"] == units["F_000_001"]
    units, kind = X.bootstrap_units(listing, scored, min_units=7)  # only 6 pairs: each target on its own
    assert kind == "target identity" and units.nunique() == 12 and units["F_000_001"] == units["000"]
    units, kind = X.bootstrap_units(listing.drop(columns=["identity", "source_identity"]).assign(original=None), scored,
                                    min_units=100)
    assert kind == "video" and units.nunique() == len(listing)


# --- selecting videos ---------------------------------------------------------------------------------------

def test_split_and_per_method_budget_keep_strays_and_prefer_fakes_of_kept_reals():
    rows = [{"video_id": f"{i:03d}", "label": "REAL", "method": "real", "original": None, "split": s, "status": "ok"}
            for i, s in enumerate(["test", "test", "train", None, "test", "test"])]
    rows += [{"video_id": f"D_{i:03d}", "label": "FAKE", "method": "Deepfakes", "original": f"{i:03d}", "split": "test",
              "status": "ok"} for i in (0, 1, 4, 5)]
    rows += [{"video_id": "notes.txt", "label": "FAKE", "method": "Deepfakes", "original": None, "split": None,
              "status": "unsupported"}]
    table = pd.DataFrame(rows)
    kept = X.keep_split(table, "test")
    assert "002" not in set(kept.video_id) and "003" in set(kept.video_id)  # no split file covers 003
    assert X.keep_split(table, "") is table
    chosen = X.select_per_method(kept, 2, seed=1)
    reals = chosen[(chosen.label == "REAL")]
    fakes = chosen[(chosen.label == "FAKE") & (chosen.status == "ok")]
    assert len(reals) == 2 and len(fakes) == 2 and "notes.txt" in set(chosen.video_id)
    covered = {o for o in fakes.original} & set(reals.video_id)
    assert len(covered) == min(2, len({"000", "001", "004", "005"} & set(reals.video_id)))
    with pytest.raises(ValueError, match="SPLIT must be one of"):
        X.prepare_dataset("nowhere", "out", split="testing")


# --- runs -------------------------------------------------------------------------------------------------------

def test_runs_are_found_scored_or_said_why_not(tmp_path):
    make_run(tmp_path / "runs" / "meso4-full-s0")
    bare = tmp_path / "runs" / "old-run"
    bare.mkdir(parents=True)
    for name, content in (("config.json", {"model": "vit"}), ("metrics.json", {})):
        (bare / name).write_text(json.dumps(content))
    (bare / "history.csv").write_text("epoch\n0\n")
    (bare / "predictions.csv").write_text("video_id,label,split,prob_fake\n")
    shortcut_dir = tmp_path / "runs" / "shortcut"
    shortcut_dir.mkdir()
    for name in ("history.csv", "predictions.csv"):
        (shortcut_dir / name).write_text((bare / name).read_text())
    (shortcut_dir / "config.json").write_text(json.dumps({"model": "shortcut", "run_name": "shortcut"}))
    (shortcut_dir / "metrics.json").write_text("{}")
    runs, table = X.scorable_runs([tmp_path / "runs", tmp_path / "absent"])
    assert [r.name for r in runs] == ["meso4-full-s0"]
    run = runs[0]
    assert run.platt == (2.0, -0.5) and run.threshold == 0.4 and run.face_settings == FACE_SETTINGS
    why = table.set_index("run").why
    assert "model.pt is absent" in why["old-run"] and "features.csv" in why["shortcut"]
    assert "does not exist" in why[str(tmp_path / "absent")]


def face_crops(folder: Path, n: int = 8, seed: int = 0) -> pd.DataFrame:
    """n JPEG face crops of two kinds (bright and dark), as faces.csv rows with face_path and label."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = "FAKE" if i % 2 else "REAL"
        image = np.clip(rng.normal(150 if label == "FAKE" else 90, 20 + 3 * i, (40, 40, 3)), 0, 255).astype(np.uint8)
        path = folder / f"face{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 60 + 4 * i])
        rows.append({"video_id": f"v{i}", "label": label, "face_path": str(path), "method": "real" if i % 2 == 0 else "X"})
    return pd.DataFrame(rows)


def test_scores_are_the_runs_platt_calibrated_logits(tmp_path):
    make_run(tmp_path / "runs" / "meso4-full-s0", slope=2.0, intercept=-0.5)
    (run,), _ = X.scorable_runs(tmp_path / "runs")
    crops = face_crops(tmp_path / "crops")
    scored = X.score_faces(run, crops, device="cpu")
    assert len(scored) == len(crops) and np.isfinite(scored.logit).all()
    assert np.allclose(scored.prob_fake, 1 / (1 + np.exp(-(2.0 * scored.logit - 0.5))))
    assert X.score_faces(run, crops.iloc[:0]).empty


def test_the_shortcut_is_reapplied_exactly_as_fitted(tmp_path):
    from tests.test_datasets import make_split

    split_csv = make_split(tmp_path / "faces")
    run_dir = shortcut.fit_and_test(split_csv, tmp_path / "runs", n_boot=20, progress=False)
    (run,), table = X.scorable_runs(tmp_path / "runs")
    assert run.kind == "shortcut" and table.scored.tolist() == ["yes"]
    split = pd.read_csv(split_csv)
    test = split[split.split == "test"].reset_index(drop=True)
    fitted = pd.read_csv(run_dir / "predictions.csv")
    fitted = fitted[fitted.split == "test"].reset_index(drop=True)
    assert list(fitted.face_path) == list(test.face_path)
    assert np.allclose(X.shortcut_logits(run, test), fitted.logit, atol=1e-9)
    scored = X.score_faces(run, test)
    assert np.allclose(scored.prob_fake, fitted.prob_fake, atol=1e-9)  # the same Platt fit as its own test scores


# --- tables and figures ---------------------------------------------------------------------------------------

def test_heatmap_annotates_every_cell_and_says_n_a_where_nothing_was_scored():
    import matplotlib.pyplot as plt

    table = pd.DataFrame({"run": ["r1", "r1", "r1", "r2", "r2"], "dataset": ["d"] * 5, "level": ["video"] * 5,
                          "method": ["A", "B", "all", "A", "all"], "auc": [0.91, 0.42, 0.66, 0.5, 0.55]})
    fig = X.heatmap(table)
    ax, colour_bar = fig.axes
    shown = ax.collections[0].get_array().filled(np.nan).reshape(2, 3)
    assert np.allclose(shown, [[0.91, 0.42, 0.66], [0.5, np.nan, 0.55]], equal_nan=True)
    cells = {(round(t.get_position()[0], 6), round(t.get_position()[1], 6)): t.get_text() for t in ax.texts}
    assert cells == {(0.5, 0.5): "0.91", (1.5, 0.5): "0.42", (2.5, 0.5): "0.66",
                     (0.5, 1.5): "0.50", (1.5, 1.5): "n/a", (2.5, 1.5): "0.55"}
    assert {t.get_color() for t in ax.texts} == {"black"}
    assert [t.get_text() for t in ax.get_xticklabels()] == ["A", "B", "all"] and list(ax.get_xticks()) == [0.5, 1.5, 2.5]
    assert [(t.get_text(), t.get_rotation()) for t in ax.get_yticklabels()] == [("r1", 0), ("r2", 0)]
    assert ax.yaxis_inverted() and colour_bar.get_ylabel() == "video-level AUC"
    assert ax.collections[0].get_clim() == (0.0, 1.0)  # chance sits mid-scale
    plt.close(fig)


def test_tables_and_figures_from_a_table_and_from_nothing(tmp_path):
    rows = X.metrics_rows(synthetic_predictions(), "meso4-full-s0", "set-c23", 0.5, n_boot=50)
    table = pd.DataFrame(rows, columns=X.COLUMNS)
    paths = X.save_table(table, tmp_path / "tables")
    on_disk = pd.read_csv(paths["csv"])
    assert list(on_disk.columns) == X.COLUMNS and len(on_disk) == 6
    assert "0." in paths["md"].read_text()
    fig = X.heatmap(table)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["A", "B", "all"]
    assert X.heatmap(table.iloc[:0]) is not None
    assert X.display_table(table.iloc[:0]).empty
    shown = X.display_table(table, "frame")
    assert shown.index.names == ["run", "dataset", "method"] and len(shown.columns) + 3 <= 12  # fits a page
    assert shown.AUC.str.match(r"^0\.\d{3} \[0\.\d{3}, [01]\.\d{3}\]$").all()
    run = X.ScoredRun("meso4-full-s0", tmp_path, "network", {"model": "meso4", "image_size": 32}, {"val": {"frame": {"auc": 0.7}}},
                      FACE_SETTINGS, "test", None, 0.5, 0.7)
    comparison = X.published_table(table, [run], "the demo")
    assert len(comparison) == len(X.PUBLISHED) + 2  # ours: the chosen run's `all` rows at both levels
    ours = comparison[comparison.source.str.startswith("this study")]
    assert set(ours.level) == {"frame", "video"} and ours["what differs from ours"].str.startswith("not FF++ c23; ").all()
    assert (ours["trained on"] == "the demo").all()  # said once, in its own column
    # the intervals' unit: named in full unless it is the video the row counts
    assert ours["what differs from ours"].str.contains(r"the intervals' units|intervals over \d+ ", regex=True).all()
    assert (comparison.AUC.iloc[:len(X.PUBLISHED)] == [p["AUC"] for p in X.PUBLISHED]).all()


def test_nothing_to_evaluate_says_so(tmp_path, caplog):
    study = X.evaluate([], [tmp_path / "absent"], tmp_path / "out")
    assert study.table.empty and list(study.table.columns) == X.COLUMNS
    text = X.summary_text(study, [])
    assert "No external dataset was scored" in text and "absent does not exist" in text
    assert X.external_roots([], tmp_path / "out") == []
    assert [(r.name, r.levelname) for r in caplog.records if "EXTERNAL_DIRS is empty" in r.getMessage()] == [
        ("helpers.cross_dataset", "WARNING")]


# --- the whole path on the demo's external FF++ tree --------------------------------------------------------

@pytest.mark.slow
def test_the_demo_external_set_is_an_ffpp_tree_scored_end_to_end(tmp_path):
    root = X.make_external_demo(tmp_path / "out" / "external_demo", identities=4, frames=4)
    assert layouts.detect_layout(root)[0] == "ffpp"
    originals = sorted(p.name for p in (root / "original_sequences" / "youtube" / "c23" / "videos").iterdir())
    methods = sorted(p.name for p in (root / "manipulated_sequences").iterdir())
    assert len(originals) == 4 and methods == ["1-easiest", "2-easy", "3-medium", "4-hard", "5-hardest"]
    assert json.loads((root / "splits" / "test.json").read_text())  # every pair is official test
    stamp = (root / "external_demo.json").stat().st_mtime_ns
    assert X.make_external_demo(root, identities=4, frames=4) == root
    assert (root / "external_demo.json").stat().st_mtime_ns == stamp  # the same arguments reuse the tree
    (root / "manipulated_sequences" / "1-easiest" / "c23" / "videos" / "notes.txt").write_text("stray")

    make_run(tmp_path / "runs" / "meso4-full-s0")
    runs, _ = X.scorable_runs(tmp_path / "runs")
    study = X.evaluate(runs, [root], tmp_path / "out", frames_per_video=2, n_boot=100)
    table = study.table
    assert list(table.columns) == X.COLUMNS and len(table) == 2 * (len(methods) + 1)
    assert set(table.method) == {*methods, X.ALL} and set(table.dataset) == {"external_demo-c23"}
    alls = table[table.method == X.ALL].set_index("level")
    assert alls.loc["video", "n_real_videos"] == 4 and alls.loc["video", "n_fake_videos"] == 20
    assert table.auc.notna().all() and (table.auc_low <= table.auc).all() and (table.auc <= table.auc_high).all()
    faces_ = study.predictions[("meso4-full-s0", "external_demo-c23")]
    videos = faces_.groupby("video_id").agg(label=("label", "first"), method=("method", "first"),
                                            prob_fake=("prob_fake", "mean"))
    for method in methods:
        part = videos[(videos.label == "REAL") | (videos.method == method)]
        row = table[(table.method == method) & (table.level == "video")].iloc[0]
        assert row.auc == pytest.approx(roc_auc_score(part.label == "FAKE", part.prob_fake))
    assert "notes.txt" in set(study.skipped.video_id)
    assert set(faces_.identity.dropna()) <= {f"youtube:{Path(o).stem}" for o in originals}
    sampled = frames.read_frames_manifest(tmp_path / "out" / "external_demo-c23" / "frames" / "frames.csv")
    assert (sampled[sampled.status == "ok"].split == "test").all()
    X.save_table(table, tmp_path / "tables")
    assert len(pd.read_csv(tmp_path / "tables" / "08_cross_dataset.csv")) == len(table)


def test_a_root_no_layout_reads_is_skipped_with_its_reason(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("no videos")
    study = X.evaluate([], [tmp_path / "docs"], tmp_path / "out")
    assert study.table.empty and any("skipped" in n and "holds no videos" in n for n in study.notes)


def test_the_chosen_run_is_the_networks_best_validation_auc_and_leads_the_summary(tmp_path):
    predictions = synthetic_predictions()
    def run(name, kind, val_auc):
        return X.ScoredRun(name, tmp_path, kind, {"model": "meso4", "variant": "full"},
                           {"video": {"auc": {"value": 0.91}}}, FACE_SETTINGS, "test", None, 0.5, val_auc)
    runs = [run("a", "network", 0.6), run("b", "network", 0.8), run("shortcut", "shortcut", 0.99)]
    assert X.chosen_run(runs) == "b"  # the shortcut is a yardstick, never chosen
    rows = [r for name in ("a", "b", "shortcut") for r in X.metrics_rows(predictions, name, "set", 0.5, n_boot=50)]
    study = X.CrossDataset(pd.DataFrame(rows, columns=X.COLUMNS), {}, pd.DataFrame(), pd.DataFrame(), [])
    text = X.summary_text(study, runs)
    assert "The network chosen on validation, b, reaches" in text and "against 0.910 on its own test split" in text
    assert "The shortcut baseline (shortcut" in text and "best on A" in text


def test_frames_of_other_settings_are_redone_or_refused_as_on_change_says(tmp_path):
    from helpers.manifest import SettingsChanged

    root = tmp_path / "set"
    for label in ("real", "fake"):
        (root / label).mkdir(parents=True)
        for i in range(2):
            assert cv2.imwrite(str(root / label / f"{i}.png"), np.full((20, 20, 3), 60 + 90 * (label == "fake"), np.uint8))
    first = X.prepare_dataset(root, tmp_path / "out", frames_per_video=2, seed=1)
    assert len(frames.usable(first.frames)) == 4 and first.layout == "folders"
    with pytest.raises(SettingsChanged, match="SEED 1 there, 2 now"):
        X.prepare_dataset(root, tmp_path / "out", frames_per_video=2, seed=2, on_change="refuse")
    again = X.prepare_dataset(root, tmp_path / "out", frames_per_video=2, seed=2)  # "redo": made again
    assert len(frames.usable(again.frames)) == 4
    with pytest.raises(ValueError, match="ON_CHANGE must be one of"):
        X.evaluate([], [root], tmp_path / "out", on_change="keep")
