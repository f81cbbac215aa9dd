"""helpers.predict on dataset roots: real/fake folders and FaceForensics++ trees scored with their labels, AUC after the table."""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from helpers import layouts, predict
from helpers.predict import (Predictor, dataset_layout, dataset_summary, format_summary, make_untrained_run,
                             score_dataset)
from tests.test_predict import FRAMES, demo_videos  # noqa: F401 - fixture: the tiny demo
from tests.videos import write_video

# predict's command line with the fixture predictor's settings, so both score every item alike
CLI = ["--frames", str(FRAMES), "--detect-every", "2", "--threads", "2"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """An untrained MesoNet at 32 px whose face settings search the demo's 160 px frames down to 20 px faces."""
    return make_untrained_run(tmp_path_factory.mktemp("runs") / "meso4-full-s0", "meso4", 32,
                              face_settings={"min_face_size": 20})


@pytest.fixture(scope="module")
def predictor(run_dir) -> Predictor:
    return Predictor(run_dir, frames=FRAMES, detect_every=2, threads=2)


@pytest.fixture(scope="module")
def demo(demo_videos):  # noqa: F811
    """The demo's two REAL videos and, for each, its fakes (paths), from its metadata.json."""
    [meta_path] = demo_videos.rglob("metadata.json")
    meta = json.loads(meta_path.read_text())
    reals = sorted(name for name, v in meta.items() if v["label"] == "REAL")
    fakes = {real: sorted(name for name, v in meta.items() if v["original"] == real) for real in reals}
    return {"reals": [meta_path.parent / r for r in reals], "fakes": {meta_path.parent / r: [meta_path.parent / f for f in fs]
                                                                      for r, fs in fakes.items()}}


@pytest.fixture(scope="module")
def folders_root(tmp_path_factory, demo):
    """real/ (two videos, a frame as an image, a stray .txt), fake/<method>/ (two methods), a broken fake, a loose video."""
    root = tmp_path_factory.mktemp("folders") / "my_set"
    (root / "real").mkdir(parents=True)
    for i, real in enumerate(demo["reals"]):
        shutil.copy(real, root / "real" / f"r{i}.mp4")
        for method, fake in zip(("Deepfakes", "FaceSwap"), demo["fakes"][real]):
            (root / "fake" / method).mkdir(parents=True, exist_ok=True)
            shutil.copy(fake, root / "fake" / method / f"r{i}.mp4")
    cap = cv2.VideoCapture(str(demo["reals"][0]))
    ok, frame = cap.read()
    cap.release()
    assert ok and cv2.imwrite(str(root / "real" / "still.jpg"), frame)
    (root / "real" / "labels.txt").write_text("stray")
    (root / "fake" / "broken.mp4").write_bytes(b"not a video" * 40)
    shutil.copy(demo["fakes"][demo["reals"][1]][2], root / "loose.mp4")  # in no label folder
    return root


@pytest.fixture(scope="module")
def ffpp_root(tmp_path_factory, demo):
    """FF++ at c23: the two REAL videos as youtube 000 and 001, each swapped with the other by two methods, strays."""
    root = tmp_path_factory.mktemp("ffpp") / "FaceForensics++"
    originals = root / "original_sequences" / "youtube" / "c23" / "videos"
    originals.mkdir(parents=True)
    for (target, source), real in zip((("000", "001"), ("001", "000")), demo["reals"]):
        shutil.copy(real, originals / f"{target}.mp4")
        for method, fake in zip(("Deepfakes", "FaceSwap"), demo["fakes"][real]):
            folder = root / "manipulated_sequences" / method / "c23" / "videos"
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy(fake, folder / f"{target}_{source}.mp4")
    deepfakes = root / "manipulated_sequences" / "Deepfakes" / "c23" / "videos"
    (deepfakes / "notes.txt").write_text("downloaded 2024")
    (deepfakes / "002_003.mp4").write_bytes(b"not a video" * 40)
    return root


def check_summary(table: pd.DataFrame, summary: pd.DataFrame) -> None:
    """Every summary row's AUC and counts, recomputed from the scored rows with sklearn."""
    used = table[(table.status == "ok") & table.label.isin(["REAL", "FAKE"])]
    reals = used[used.label == "REAL"]
    for row in summary.to_dict("records"):
        fakes = used[used.label == "FAKE"]
        if row["method"] != predict.ALL_METHODS:
            fakes = fakes[fakes.method == row["method"]]
        assert (row["n_real"], row["n_fake"]) == (len(reals), len(fakes))
        y = [0] * len(reals) + [1] * len(fakes)
        assert row["auc"] == pytest.approx(roc_auc_score(y, [*reals.prob_fake, *fakes.prob_fake]))


def test_a_folders_root_is_scored_with_its_labels_and_strays_keep_their_status(folders_root, predictor):
    table = score_dataset(folders_root, predictor=predictor)
    assert table.attrs["layout"] == "folders" and list(table.columns[:5]) == list(predict.ITEM_COLUMNS)
    rows = table.set_index("video_id")
    assert set(rows.index) == {"real__r0", "real__r1", "real__still", "real__labels.txt", "fake__Deepfakes__r0",
                               "fake__Deepfakes__r1", "fake__FaceSwap__r0", "fake__FaceSwap__r1", "fake__broken", "loose"}
    videos = rows.loc[["real__r0", "real__r1", "fake__Deepfakes__r0", "fake__Deepfakes__r1", "fake__FaceSwap__r0",
                       "fake__FaceSwap__r1"]]
    assert set(videos.status) <= {"ok", "no_face"} and (videos.n_frames_sampled == FRAMES).all()
    assert videos.prob_fake.dropna().between(0, 1).all() and (videos.prob_fake.notna() == (videos.status == "ok")).all()
    assert rows.loc["fake__Deepfakes__r0", ["label", "method"]].tolist() == ["FAKE", "Deepfakes"]
    assert rows.loc["real__still", "kind"] == "image" and rows.loc["real__still", "status"] in ("ok", "no_face")
    assert rows.loc["real__labels.txt", "status"] == "unsupported" and pd.isna(rows.loc["real__labels.txt", "prob_fake"])
    assert rows.loc["fake__broken", "status"] == "unreadable" and "broken.mp4" in rows.loc["fake__broken", "reason"]
    loose = rows.loc["loose"]  # scored, but without a label: in no AUC, and the listing says why
    assert loose.kind == "video" and pd.isna(loose.label) and "no real/ or fake/ folder" in loose.reason

    summary = dataset_summary(table)
    assert summary.method.tolist() == ["all", "Deepfakes", "FaceSwap"] and (summary.dataset == "my_set").all()
    check_summary(table, summary)
    assert summary.n_real.iloc[0] >= 1 and summary.n_fake.iloc[0] >= 1 and pd.notna(summary.auc.iloc[0])
    # the stray, the broken and the loose video at least, and whatever had no face
    assert summary.n_not_used.iloc[0] == len(table) - summary.n_real.iloc[0] - summary.n_fake.iloc[0] >= 3
    text = format_summary(summary)
    assert text.startswith(f"my_set: AUC {summary.auc.iloc[0]:.3f}") and "\n  FaceSwap: AUC" in text


def test_an_ffpp_root_gets_an_auc_per_method(ffpp_root, predictor):
    table = score_dataset(ffpp_root, layout="ffpp", predictor=predictor)
    rows = table.set_index("video_id")
    assert rows.loc["Deepfakes_000_001", ["label", "method", "dataset"]].tolist() == [
        "FAKE", "Deepfakes", "FaceForensics++-c23"]
    assert rows.loc["notes.txt", "status"] == "unsupported" and "not a video" in rows.loc["notes.txt", "reason"]
    assert rows.loc["Deepfakes_002_003", "status"] == "unreadable"
    scored = rows.drop(["notes.txt", "Deepfakes_002_003"])
    assert len(scored) == 6 and set(scored.status) <= {"ok", "no_face"}
    summary = dataset_summary(table)
    assert summary.method.tolist() == ["all", "Deepfakes", "FaceSwap"]
    check_summary(table, summary)
    assert summary.n_not_used.iloc[0] == 8 - summary.n_real.iloc[0] - summary.n_fake.iloc[0] >= 2
    ok_fakes = rows[(rows.label == "FAKE") & (rows.status == "ok")].groupby("method").size()
    assert summary.n_not_used.iloc[1] == 4 - ok_fakes.get("Deepfakes", 0)  # its two fakes, the stray, the broken
    as_json = json.loads(json.dumps(predict._records(table)))  # what --json prints: plain values, None for NaN
    assert as_json[0].keys() >= {"dataset", "method", "label", "split", "path", "status", "prob_fake", "timing"}
    assert {r["video_id"]: r["prob_fake"] for r in as_json}["notes.txt"] is None


def test_the_command_line_prints_the_auc_after_the_table(ffpp_root, demo, run_dir, predictor, capsys):
    code = predict.main([str(ffpp_root), str(demo["reals"][0]), "--run", str(run_dir), *CLI])
    out, err = capsys.readouterr()
    assert code == 0
    assert "is read as layout 'ffpp' (found original_sequences/ and manipulated_sequences/)" in err
    table, _, summary = out.partition("9 input(s): ")  # the tree's eight items and the plain video
    assert "label" in table.splitlines()[0] and "unsupported" in table and "unreadable" in table
    counts, *after = summary.splitlines()
    assert "1 unreadable" in counts and "1 unsupported" in counts
    expected = format_summary(dataset_summary(score_dataset(ffpp_root, predictor=predictor)))
    assert after == expected.splitlines() and len(after) == 3
    assert after[0].startswith("FaceForensics++-c23: AUC ") and "other listed item(s) not in it" in after[0]
    assert after[1].startswith("  Deepfakes: AUC ") and after[2].startswith("  FaceSwap: AUC ")


def test_layout_none_and_a_layout_that_does_not_fit(ffpp_root, demo, run_dir, capsys):
    code = predict.main([str(ffpp_root), "--run", str(run_dir), *CLI, "--json", "--layout", "none"])
    out, err = capsys.readouterr()
    results = json.loads(out)
    assert code == 0 and "AUC" not in err and "AUC" not in out
    assert len(results) == 7 and not any("label" in r for r in results)  # the media files, as before layouts
    code = predict.main([str(ffpp_root), str(demo["reals"][0]), "--run", str(run_dir), *CLI, "--json",
                         "--layout", "celebdf"])
    out, err = capsys.readouterr()
    results = json.loads(out)
    assert code == 0 and [r["status"] for r in results] == ["unsupported", "ok"]  # the file is still scored
    assert "not a Celeb-DF tree" in results[0]["reason"] and "not a Celeb-DF tree" in err


def test_a_tree_of_two_layouts_is_scored_as_plain_files_and_says_so(ffpp_root, run_dir, tmp_path, capsys):
    both = tmp_path / "both"
    shutil.copytree(ffpp_root, both)
    write_video(both / "extra" / "real" / "x.mp4", n_frames=3)
    code = predict.main([str(both), "--run", str(run_dir), *CLI, "--json"])
    out, err = capsys.readouterr()
    assert code == 0 and len(json.loads(out)) == 8 and "AUC" not in err  # its seven media files and x.mp4
    assert "marks of 2 layouts" in err and "--layout ffpp or --layout folders" in err and "without labels" in err


def test_which_folders_are_dataset_roots(ffpp_root, folders_root, demo_videos, tmp_path):  # noqa: F811
    """auto: a folder with one layout's marks; a folder of videos with none stays plain files (not unlabelled DFDC)."""
    assert dataset_layout(ffpp_root) == ("ffpp", "found original_sequences/ and manipulated_sequences/")
    assert dataset_layout(folders_root)[0] == "folders" and dataset_layout(demo_videos)[0] == "dfdc"
    assert dataset_layout(ffpp_root, "none") == (None, "--layout none")
    assert dataset_layout(folders_root / "loose.mp4") == (None, "not a folder")
    plain = tmp_path / "clips"
    plain.mkdir()
    shutil.copy(folders_root / "loose.mp4", plain / "a.mp4")
    assert dataset_layout(plain) == (None, "it carries no layout's marks")  # not read as unlabelled DFDC
    with pytest.raises(layouts.LayoutError, match="not read as a dataset root"):
        score_dataset(plain, run_dir="unused")
    assert dataset_layout(plain, "folders") == ("folders", "--layout says so")
    with pytest.raises(layouts.LayoutError, match="no real/ or fake/ folder"):
        score_dataset(plain, layout="folders", predictor=object())  # refused before anything is scored
    both = tmp_path / "both"
    shutil.copytree(ffpp_root, both)
    (both / "extra" / "real").mkdir(parents=True)
    with pytest.raises(layouts.LayoutError, match="marks of 2 layouts.*--layout ffpp or --layout folders"):
        dataset_layout(both)
    with pytest.raises(ValueError, match="--layout must be one of"):
        dataset_layout(plain, "kaggle")


def test_an_auc_needs_both_classes():
    table = pd.DataFrame({"dataset": "d", "method": ["Deepfakes", "Deepfakes", "real"], "video_id": ["a", "b", "c"],
                          "label": ["FAKE", "FAKE", "REAL"], "status": ["ok", "ok", "no_face"],
                          "prob_fake": [0.2, 0.9, np.nan]})
    summary = dataset_summary(table)
    assert summary[["method", "n_real", "n_fake", "n_not_used"]].values.tolist() == [["all", 0, 2, 1]]
    assert pd.isna(summary.auc.iloc[0])
    assert format_summary(summary) == ("d: AUC undefined (no REAL item scored): 0 REAL and 2 FAKE item(s); "
                                       "1 other listed item(s) not in it (see their status)")
