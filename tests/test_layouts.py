"""Dataset layouts on tiny trees: FaceForensics++, Celeb-DF, real/fake folders, auto-detection and stray items."""
from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pandas as pd
import pytest

from helpers import frames, layouts, splits
from tests.videos import write_part, write_video


def said(caplog, pattern: str) -> bool:
    """Whether a helpers logger said something matching `pattern` (data problems are logged, not warned)."""
    return any(r.name.startswith("helpers.") and re.search(pattern, r.getMessage()) for r in caplog.records)


def by_id(table: pd.DataFrame) -> pd.DataFrame:
    return table.set_index("video_id")


@pytest.fixture
def ffpp_dir(tmp_path):
    """FF++ at c23: four YouTube originals, one actor, three methods, DeepFakeDetection, strays and splits."""
    root = tmp_path / "FaceForensics++"
    youtube = root / "original_sequences" / "youtube" / "c23" / "videos"
    for name in ("000", "001", "002", "003"):
        write_video(youtube / f"{name}.mp4", n_frames=10)
    write_video(root / "original_sequences" / "actors" / "c23" / "videos" / "01__exit_phone_room.mp4", n_frames=10)
    manipulated = root / "manipulated_sequences"
    for method, names in {"Deepfakes": ("000_001", "001_000", "002_003"), "Face2Face": ("000_001",),
                          "DeepFakeDetection": ("01_02__exit_phone_room__YVGY8LOK",)}.items():
        for name in names:
            write_video(manipulated / method / "c23" / "videos" / f"{name}.mp4", n_frames=10)
    # strays: a text file and an image among the videos, a video that is not one, a method without c23
    (manipulated / "Deepfakes" / "c23" / "videos" / "notes.txt").write_text("downloaded 2024")
    assert cv2.imwrite(str(youtube / "thumb.png"), np.zeros((8, 8, 3), np.uint8))
    (manipulated / "Deepfakes" / "c23" / "videos" / "002_003.mp4").write_bytes(b"not a video" * 50)
    write_video(manipulated / "FaceSwap" / "c40" / "videos" / "000_001.mp4", n_frames=10)
    (root / "splits").mkdir()
    (root / "splits" / "train.json").write_text(json.dumps([["000", "001"]]))
    (root / "splits" / "test.json").write_text(json.dumps([["002", "003"]]))
    return root


@pytest.fixture
def celebdf_dir(tmp_path):
    """Celeb-DF v2: two celebrities, a YouTube video, two swaps, and a test list with a missing and a wrong entry."""
    root = tmp_path / "Celeb-DF-v2"
    for folder, name in (("Celeb-real", "id0_0000"), ("Celeb-real", "id1_0000"), ("YouTube-real", "00000"),
                         ("Celeb-synthesis", "id0_id1_0000"), ("Celeb-synthesis", "id1_id0_0000")):
        write_video(root / folder / f"{name}.mp4", n_frames=10)
    (root / "Celeb-synthesis" / "readme.txt").write_text("stray")
    (root / layouts.CELEBDF_TEST_LIST).write_text(
        "1 Celeb-real/id0_0000.mp4\n0 Celeb-synthesis/id0_id1_0000.mp4\n1 YouTube-real/00001.mp4\n"
        "1 Celeb-synthesis/id1_id0_0000.mp4\nnot a line\n")
    return root


@pytest.fixture
def folders_dir(tmp_path):
    """real/ and fake/ folders at two depths and in two cases, videos and images, strays inside and outside."""
    root = tmp_path / "my_set"
    write_video(root / "Train" / "REAL" / "a.mp4", n_frames=10)
    write_video(root / "Train" / "Fake" / "Deepfakes" / "a.mp4", n_frames=10)
    write_video(root / "test" / "fake" / "b.mp4", n_frames=10)
    image = np.zeros((40, 60, 3), np.uint8)
    image[:, :30] = 200
    (root / "test" / "real").mkdir(parents=True)
    assert cv2.imwrite(str(root / "test" / "real" / "c.png"), image)
    assert cv2.imwrite(str(root / "test" / "fake" / "d.jpg"), image)
    (root / "test" / "real" / "labels.txt").write_text("stray")
    write_video(root / "loose.mp4", n_frames=10)  # in no label folder
    (root / "README.md").write_text("not an item")  # outside the label folders: not listed
    return root


# --- FaceForensics++ ----------------------------------------------------------------------------------------

def test_ffpp_labels_originals_methods_identities_and_official_split(ffpp_dir, caplog):
    table = frames.list_videos(ffpp_dir, layout="ffpp")
    assert said(caplog, "FaceSwap.*c40")
    assert table.attrs["layout"] == "ffpp"
    videos = by_id(table[table.status == "ok"])
    assert videos.index.is_unique  # every method's 000_001 has its own id
    assert set(videos.index) == {"000", "001", "002", "003", "01__exit_phone_room", "Deepfakes_000_001",
                                 "Deepfakes_001_000", "Deepfakes_002_003", "Face2Face_000_001",
                                 "DeepFakeDetection_01_02__exit_phone_room__YVGY8LOK"}  # 002_003 breaks only when read
    assert (videos.loc[["000", "001", "01__exit_phone_room"], "label"] == "REAL").all()
    assert (videos.loc[["000", "01__exit_phone_room"], "method"] == "real").all()
    fake = videos.loc["Deepfakes_000_001"]
    assert (fake.label, fake.method, fake.original, fake.identity, fake.source_identity) == (
        "FAKE", "Deepfakes", "000", "youtube:000", "youtube:001")
    assert videos.loc["Face2Face_000_001", "method"] == "Face2Face"
    dfd = videos.loc["DeepFakeDetection_01_02__exit_phone_room__YVGY8LOK"]
    assert (dfd.original, dfd.identity, dfd.source_identity) == ("01__exit_phone_room", "actors:01", "actors:02")
    assert videos.loc["01__exit_phone_room", "identity"] == "actors:01"
    assert videos.loc["000", "identity"] == videos.loc["000", "source_identity"] == "youtube:000"
    assert videos.loc["000", "split"] == "train" and videos.loc["003", "split"] == "test"
    assert videos.loc["Deepfakes_001_000", "split"] == "train"  # [000, 001] covers both directions
    assert pd.isna(dfd.split) and pd.isna(videos.loc["01__exit_phone_room", "split"])  # in no split file
    assert "FaceSwap" not in set(table.part)  # no c23 there


def test_ffpp_stray_items_are_recorded_with_a_reason_and_the_run_goes_on(ffpp_dir, tmp_path):
    result = frames.sample_frames(ffpp_dir, tmp_path / "out", frames_per_video=2, workers=1, layout="ffpp")
    per_video = result.drop_duplicates(["part", "video_id"]).set_index("video_id")
    assert per_video.loc["notes.txt", "status"] == "unsupported" and "not a video" in per_video.loc["notes.txt", "reason"]
    assert per_video.loc["thumb.png", "status"] == "unsupported"
    assert "an image in original_sequences/youtube/c23/videos/" in per_video.loc["thumb.png", "reason"]
    assert per_video.loc["Deepfakes_002_003", "status"] == "unreadable"
    assert "002_003.mp4" in per_video.loc["Deepfakes_002_003", "reason"]
    ok = result[result.status == "ok"]
    assert ok.video_id.nunique() == 9 and (ok.groupby("video_id").size() == 2).all()
    # a fake shares its original's frames, as in DFDC
    assert list(ok[ok.video_id == "Deepfakes_000_001"].frame_index) == list(ok[ok.video_id == "000"].frame_index)
    assert list(result.columns[:len(frames.COLUMNS)]) == frames.COLUMNS
    assert {"dataset", "method", "identity", "source_identity", "split"} <= set(result.columns)
    on_disk = frames.read_frames_manifest(tmp_path / "out" / "frames.csv")
    assert on_disk.loc[on_disk.video_id == "000", "identity"].iloc[0] == "youtube:000"
    assert frames.read_layout(tmp_path / "out")["layout"] == "ffpp"
    identities = splits.read_identity_csv(tmp_path / "out" / "identities.csv")  # what notebook 03's IDENTITY_CSV reads
    assert identities.set_index("video_id").loc["Deepfakes_000_001", "source_identity"] == "youtube:001"
    assert "identities.csv; notebook 03 keeps them apart through FRAMES_CSV" in frames.layout_note(tmp_path / "out")
    assert "read as layout 'ffpp', compression c23" in frames.layout_note(tmp_path / "out" / "frames.csv")


def test_ffpp_identities_keep_pairs_together_in_notebook_03s_grouping(ffpp_dir):
    table = frames.list_videos(ffpp_dir, layout="ffpp")
    ok = table[table.status == "ok"]
    groups = splits.group_videos(ok, splits.IDENTITY_COLUMNS, name_pattern="")
    assert groups["000"] == groups["001"] == groups["Deepfakes_001_000"] == groups["Face2Face_000_001"]
    assert groups["002"] != groups["000"]
    assert groups["01__exit_phone_room"] == groups["DeepFakeDetection_01_02__exit_phone_room__YVGY8LOK"]


def test_ffpp_other_compression_and_a_bad_one(ffpp_dir):
    table = frames.list_videos(ffpp_dir, layout="ffpp", compression="c40")
    assert set(table.video_id) == {"FaceSwap_000_001"}
    assert table.dataset.iloc[0] == "FaceForensics++-c40"
    with pytest.raises(layouts.LayoutError, match="no FaceForensics\\+\\+ folder holds compression 'raw'.*found c23, c40"):
        frames.list_videos(ffpp_dir, layout="ffpp", compression="raw")
    with pytest.raises(ValueError, match="COMPRESSION must be one of 'c23', 'raw', 'c40'"):
        frames.list_videos(ffpp_dir, compression="c35")


def test_ffpp_without_split_files_has_no_split_column(ffpp_dir):
    for path in (ffpp_dir / "splits").iterdir():
        path.unlink()
    assert "split" not in frames.list_videos(ffpp_dir, layout="ffpp").columns


def test_a_broken_split_file_is_said_and_ignored(ffpp_dir, caplog):
    (ffpp_dir / "splits" / "test.json").write_text("{not json")
    table = frames.list_videos(ffpp_dir, layout="ffpp")
    assert said(caplog, "test.json cannot be used")
    assert by_id(table).loc["000", "split"] == "train" and pd.isna(by_id(table).loc["003", "split"])


# --- Celeb-DF ------------------------------------------------------------------------------------------------

def test_celebdf_labels_originals_identities_and_the_test_list(celebdf_dir, caplog):
    table = frames.list_videos(celebdf_dir, layout="celebdf")
    assert said(caplog, "1 line")
    videos = by_id(table)
    swap = videos.loc["id0_id1_0000"]
    assert (swap.label, swap.method, swap.original, swap.identity, swap.source_identity, swap.split) == (
        "FAKE", "Celeb-synthesis", "id0_0000", "id0", "id1", "test")
    real = videos.loc["id0_0000"]
    assert (real.label, real.method, real.identity, real.split, real.status) == ("REAL", "real", "id0", "test", "ok")
    assert videos.loc["id1_0000", "split"] == "train"  # not in the test list
    assert pd.isna(videos.loc["00000", "identity"]) and videos.loc["00000", "label"] == "REAL"
    assert videos.loc["00001", "status"] == "missing" and "List_of_testing_videos.txt" in videos.loc["00001", "reason"]
    assert videos.loc["id1_id0_0000", "status"] == "bad_label"
    assert "lists Celeb-synthesis/id1_id0_0000.mp4 as REAL" in videos.loc["id1_id0_0000", "reason"]
    assert videos.loc["readme.txt", "status"] == "unsupported"
    assert table.attrs["layout"] == "celebdf" and (table.dataset == "Celeb-DF-v2").all()


def test_celebdf_without_a_test_list_has_no_split(celebdf_dir):
    (celebdf_dir / layouts.CELEBDF_TEST_LIST).unlink()
    table = frames.list_videos(celebdf_dir, layout="celebdf")
    assert "split" not in table.columns and (table.status[table.video_id != "readme.txt"] == "ok").all()


# --- real/ and fake/ folders -----------------------------------------------------------------------------------

def test_folders_labels_methods_splits_images_and_strays(folders_dir, tmp_path):
    table = frames.list_videos(folders_dir, layout="folders")
    videos = by_id(table)
    assert videos.loc["Train__REAL__a", ["label", "method", "split"]].tolist() == ["REAL", "real", "train"]
    assert videos.loc["Train__Fake__Deepfakes__a", ["label", "method"]].tolist() == ["FAKE", "Deepfakes"]
    assert videos.loc["test__fake__b", ["label", "method", "split"]].tolist() == ["FAKE", "fake", "test"]
    assert videos.loc["test__real__c", "label"] == "REAL" and videos.loc["test__fake__d", "status"] == "ok"
    assert videos.loc["test__real__labels.txt", "status"] == "unsupported"
    assert videos.loc["loose", "status"] == "unlabelled" and "no real/ or fake/ folder" in videos.loc["loose", "reason"]
    assert "README" not in " ".join(table.video_id)
    result = frames.sample_frames(folders_dir, tmp_path / "out", frames_per_video=3, workers=1, layout="folders")
    images = result[result.video_id.isin(["test__real__c", "test__fake__d"])]
    assert len(images) == 2 and (images.frame_index == 0).all() and (images.n_frames == 1).all()
    assert (images.width == 60).all() and (images.height == 40).all()
    assert cv2.imread(images.frame_path.iloc[0]).shape == (40, 60, 3)
    assert (result[result.video_id == "test__fake__b"].frame_index.tolist()) == sorted(
        result[result.video_id == "test__fake__b"].frame_index.tolist()) and (result.video_id == "test__fake__b").sum() == 3


def test_a_truncated_image_is_unreadable(tmp_path):
    root = tmp_path / "set"
    ok, data = cv2.imencode(".jpg", np.full((32, 32, 3), 90, np.uint8))
    (root / "fake").mkdir(parents=True)
    (root / "fake" / "cut.jpg").write_bytes(data.tobytes()[: len(data) // 2])
    write_video(root / "real" / "r.mp4", n_frames=5)
    result = frames.sample_frames(root, tmp_path / "out", workers=1)
    cut = result[result.video_id == "fake__cut"].iloc[0]
    assert cut.status == "unreadable" and "truncated" in cut.reason


# --- auto-detection ---------------------------------------------------------------------------------------------

def test_auto_detects_each_layout_and_says_which(ffpp_dir, celebdf_dir, folders_dir, tmp_path, caplog):
    write_part(tmp_path / "dfdc" / "part_0", {"aaaaaaaaaa.mp4": {"label": "REAL"}})
    for root, name in ((ffpp_dir, "ffpp"), (celebdf_dir, "celebdf"), (folders_dir, "folders"),
                       (tmp_path / "dfdc", "dfdc")):
        assert layouts.detect_layout(root)[0] == name
        caplog.clear()
        assert frames.list_videos(root).attrs["layout"] == name
        assert said(caplog, f"read as layout '{name}'")


def test_an_ambiguous_tree_names_both_layouts(ffpp_dir, tmp_path):
    write_video(ffpp_dir / "extra" / "real" / "x.mp4", n_frames=5)
    with pytest.raises(layouts.LayoutError, match="ambiguous.*ffpp \\(original_sequences/ and manipulated_sequences/\\)"
                                                  ".*folders \\(extra/real/\\).*Set LAYOUT"):
        frames.sample_frames(ffpp_dir, tmp_path / "out", workers=1)
    assert frames.list_videos(ffpp_dir, layout="ffpp").attrs["layout"] == "ffpp"  # naming the layout settles it


def test_an_empty_tree_names_what_was_expected(tmp_path):
    (tmp_path / "empty" / "docs").mkdir(parents=True)
    with pytest.raises(layouts.LayoutError) as err:
        frames.sample_frames(tmp_path / "empty", tmp_path / "out", workers=1)
    for words in ("holds no videos", "original_sequences/", "Celeb-real/", "metadata.json", "real/ and fake/"):
        assert words in str(err.value)


@pytest.mark.parametrize("layout, words", [("ffpp", "not a FaceForensics\\+\\+ tree"), ("celebdf", "not a Celeb-DF tree"),
                                           ("folders", "no real/ or fake/ folder")])
def test_a_named_layout_that_does_not_fit_says_what_it_expects(tmp_path, layout, words):
    write_video(tmp_path / "videos" / "clip.mp4", n_frames=5)
    with pytest.raises(layouts.LayoutError, match=words):
        frames.list_videos(tmp_path / "videos", layout=layout)


def test_videos_without_metadata_are_still_dfdc_and_unlabelled(tmp_path):
    write_video(tmp_path / "videos" / "p" / "clipaaaaaa.mp4", n_frames=5)
    name, why = layouts.detect_layout(tmp_path / "videos")
    assert name == "dfdc" and "unlabelled" in why
    assert frames.list_videos(tmp_path / "videos").status.tolist() == ["unlabelled"]


def test_a_bad_layout_is_refused_before_anything_is_read(tmp_path):
    with pytest.raises(ValueError, match="LAYOUT must be one of 'auto', 'dfdc', 'ffpp', 'celebdf', 'folders'"):
        frames.sample_frames(tmp_path / "nope", tmp_path / "out", layout="kaggle")


def test_dfdc_rows_gain_dataset_and_method(tmp_path):
    write_part(tmp_path / "dfdc" / "p", {"realaaaaaa.mp4": {"label": "REAL"},
                                         "fakeaaaaaa.mp4": {"label": "FAKE", "original": "realaaaaaa.mp4"}}, n_frames=5)
    result = frames.sample_frames(tmp_path / "dfdc", tmp_path / "out", workers=1)
    assert set(zip(result.video_id, result.method)) == {("realaaaaaa", "real"), ("fakeaaaaaa", "fake")}
    assert (result.dataset == "dfdc").all() and "identity" not in result.columns
    assert not (tmp_path / "out" / "identities.csv").exists() and frames.read_layout(tmp_path / "out")["identities_csv"] is None
