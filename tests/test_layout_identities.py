"""A layout's identities (FF++, Celeb-DF) reach notebook 03's split through frames.csv, without an IDENTITY_CSV."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from helpers import frames, splits
from helpers.faces import COLUMNS as FACE_COLUMNS
from tests.test_layouts import celebdf_dir, ffpp_dir  # noqa: F401 - fixtures
from tests.videos import write_video

PAIRS = 6  # FF++ people 2k and 2k+1 swapped both ways: six identity groups of two originals and two fakes


@pytest.fixture
def ffpp_pairs(tmp_path) -> Path:
    """FF++ at c23: twelve YouTube originals, Deepfakes of each pair both ways, and an actor pair (DeepFakeDetection)."""
    root = tmp_path / "FaceForensics++"
    for i in range(2 * PAIRS):
        write_video(root / "original_sequences" / "youtube" / "c23" / "videos" / f"{i:03d}.mp4", n_frames=3)
    for k in range(PAIRS):
        a, b = f"{2 * k:03d}", f"{2 * k + 1:03d}"
        for name in (f"{a}_{b}", f"{b}_{a}"):
            write_video(root / "manipulated_sequences" / "Deepfakes" / "c23" / "videos" / f"{name}.mp4", n_frames=3)
    actors = root / "original_sequences" / "actors" / "c23" / "videos"
    write_video(actors / "01__walking.mp4", n_frames=3)
    write_video(actors / "02__walking.mp4", n_frames=3)
    write_video(root / "manipulated_sequences" / "DeepFakeDetection" / "c23" / "videos" / "01_02__walking__ABCD1234.mp4",
                n_frames=3)
    return root


def faces_from_frames(frames_csv: Path, folder: Path) -> Path:
    """faces.csv as notebook 02 writes it (no identity columns): one face per usable frame, a distinct crop per video."""
    table = frames.read_frames_manifest(frames_csv)
    rows = []
    for i, frame in enumerate(table[table.status == "ok"].to_dict("records")):
        crop = cv2.resize(np.random.default_rng(i).integers(0, 256, (8, 8, 3), dtype=np.uint8), (64, 64),
                          interpolation=cv2.INTER_CUBIC)
        path = folder / "faces" / f"{frame['video_id']}_{frame['frame_index']}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), crop)
        rows.append({**{k: frame[k] for k in ("video_id", "part", "label", "original", "frame_index", "frame_path")},
                     "face_index": 0, "face_path": str(path), "box_source": "detected", "status": "ok", "reason": ""})
    path = folder / "faces.csv"
    pd.DataFrame(rows).reindex(columns=FACE_COLUMNS).to_csv(path, index=False)
    return path


def sampled(root: Path, out: Path, layout: str) -> tuple[Path, Path]:
    """(frames.csv, faces.csv) of a dataset root: notebook 01's real sampling, a hand-made notebook 02."""
    frames.sample_frames(root, out / "frames", frames_per_video=1, workers=1, layout=layout)
    return out / "frames" / "frames.csv", faces_from_frames(out / "frames" / "frames.csv", out / "faces")


def split_once(faces_csv: Path, out: Path, frames_csv: Path | str = "", seed: int = 447, **kwargs):
    return splits.make_split(faces_csv, out, val_fraction=0.25, test_fraction=0.25, seed=seed, progress=False,
                             embedding_threshold=0, frames_csv=frames_csv, **kwargs)  # random crops are not faces


def identities_spanning_splits(split: pd.DataFrame, listing: pd.DataFrame) -> list[str]:
    """The people of the layout's listing (as target or source) whose videos lie in more than one split."""
    people = listing.melt(id_vars="video_id", value_vars=["identity", "source_identity"]).dropna()
    where = people.merge(split[["video_id", "split"]].drop_duplicates(), on="video_id")
    per_person = where.groupby("value").split.nunique()
    return sorted(per_person.index[per_person > 1])


def test_faces_csv_drops_the_identities_so_make_split_takes_them_from_frames_csv(ffpp_pairs, tmp_path):
    frames_csv, faces_csv = sampled(ffpp_pairs, tmp_path, "ffpp")
    assert {"identity", "source_identity"} <= set(frames.read_frames_manifest(frames_csv).columns)
    assert "identity" not in pd.read_csv(faces_csv).columns  # notebook 02 keeps FACE_COLUMNS only

    split, audit = split_once(faces_csv, tmp_path / "split", frames_csv)
    written = splits.read_split(tmp_path / "split" / "split.csv")
    assert "identity" in written and written.set_index("video_id").loc["Deepfakes_000_001", "source_identity"] == \
        "youtube:001"
    # six swapped pairs and the actor pair: no more groups (nothing lost), no fewer (nothing wrongly merged)
    assert written.group.nunique() == PAIRS + 1 and written.video_id.nunique() == 4 * PAIRS + 3
    group = written.drop_duplicates("video_id").set_index("video_id").group
    assert group["000"] == group["001"] == group["Deepfakes_000_001"] == group["Deepfakes_001_000"]
    assert group["000"] != group["002"]
    assert group["01__walking"] == group["02__walking"] == group["DeepFakeDetection_01_02__walking__ABCD1234"]
    listing = frames.list_videos(ffpp_pairs, layout="ffpp")
    assert identities_spanning_splits(written, listing) == []
    assert audit["links_crossing_splits"] == 0 and audit["identity_csv"] == ""
    assert audit["links"]["identities_from"] == ["FRAMES_CSV"]
    assert audit["links"]["videos_with_identity"] == 4 * PAIRS + 3
    assert "Without actor ids" not in audit["guarantee"]
    assert set(written.split) == set(splits.SPLITS)


def test_without_the_layouts_identities_a_swap_source_would_leak(ffpp_pairs, tmp_path):
    """The control: faces.csv alone links a fake to its target only, so the source person lands anywhere."""
    frames_csv, faces_csv = sampled(ffpp_pairs, tmp_path, "ffpp")
    listing = frames.list_videos(ffpp_pairs, layout="ffpp")
    leaks = []
    for seed in range(5):
        split, audit = split_once(faces_csv, tmp_path / f"plain{seed}", seed=seed)
        assert split.group.nunique() == 2 * PAIRS + 2  # each original with its own fakes; actor 02 alone
        assert audit["links"]["identities_from"] == []
        leaks.append(identities_spanning_splits(split, listing))
        with_layout, _ = split_once(faces_csv, tmp_path / f"layout{seed}", frames_csv, seed=seed)
        assert identities_spanning_splits(with_layout, listing) == []
    assert any(leaks)  # some seed splits a pair's two people without them


def test_name_pattern_neither_breaks_nor_merges_layout_ids(ffpp_dir):  # noqa: F811
    """Layout fake ids (Deepfakes_000_001) no longer match NAME_PATTERN; originals do, and join nothing else."""
    ok = frames.list_videos(ffpp_dir, layout="ffpp").query("status == 'ok'")
    links = splits.identity_links(ok)
    assert set(links.video_id[links.kind == "name"]) == {"000", "001", "002", "003"}  # a node of their own each
    assert splits.group_videos(ok).equals(splits.group_videos(ok, name_pattern=""))


def test_the_layouts_identities_and_notebook_01s_identities_csv_agree(ffpp_pairs, tmp_path):
    frames_csv, faces_csv = sampled(ffpp_pairs, tmp_path, "ffpp")
    identities_csv = tmp_path / "frames" / frames.IDENTITIES_FILE
    both, audit = split_once(faces_csv, tmp_path / "both", frames_csv, identity_csv=identities_csv)
    alone, _ = split_once(faces_csv, tmp_path / "alone", frames_csv)
    assert both.group.nunique() == alone.group.nunique() == PAIRS + 1
    assert audit["links"]["identities_from"] == ["IDENTITY_CSV", "FRAMES_CSV"]
    assert not any("names none" in w for w in audit["warnings"])


def test_an_identity_csv_contradicting_the_layout_is_refused_naming_both(ffpp_pairs, tmp_path):
    frames_csv, faces_csv = sampled(ffpp_pairs, tmp_path, "ffpp")
    ids = tmp_path / "ids.csv"
    ids.write_text("video_id,identity\n000,someone-else\n")
    with pytest.raises(ValueError, match="IDENTITY_CSV .*ids.csv's 'identity' column and FRAMES_CSV .*frames.csv "
                                         r"\(the dataset layout's identities\) disagree for 1 video.*'000'"):
        split_once(faces_csv, tmp_path / "split", frames_csv, identity_csv=ids)


def test_celebdf_identities_join_a_swap_with_both_celebrities(celebdf_dir, tmp_path):  # noqa: F811
    frames_csv, faces_csv = sampled(celebdf_dir, tmp_path, "celebdf")
    split, audit = split_once(faces_csv, tmp_path / "split", frames_csv)
    group = split.drop_duplicates("video_id").set_index("video_id").group
    # id1_0000 is linked to the swap id0_id1_0000 only by its source_identity
    assert group["id0_0000"] == group["id1_0000"] == group["id0_id1_0000"] != group["00000"]
    assert split.group.nunique() == 2 and audit["links"]["identities_from"] == ["FRAMES_CSV"]
    plain, _ = split_once(faces_csv, tmp_path / "plain")
    assert plain.group.nunique() == 3  # without them id1_0000 stands alone


def test_a_layout_without_identities_leaves_the_split_as_before(tmp_path):
    root = tmp_path / "set"
    for i in range(4):
        write_video(root / "real" / f"r{i}.mp4", n_frames=3)
        write_video(root / "fake" / f"f{i}.mp4", n_frames=3)
    frames_csv, faces_csv = sampled(root, tmp_path, "folders")
    split, audit = split_once(faces_csv, tmp_path / "split", frames_csv)
    plain, _ = split_once(faces_csv, tmp_path / "plain")
    assert "identity" not in split.columns and audit["links"]["identities_from"] == []
    assert split.group.nunique() == plain.group.nunique() == 8
    assert split.sort_values("video_id").split.tolist() == plain.sort_values("video_id").split.tolist()
