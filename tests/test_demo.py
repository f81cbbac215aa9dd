"""The embedded demo dataset: layout, labels, determinism, decodable videos, real swaps, detectable faces."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from helpers import demo

# Small but real: 5 identities (LFW face 4 has no landmarks, so one is skipped on the way), two parts.
SMALL = dict(identities=5, seed=3, frames=6, size=160, part_size=4)


@pytest.fixture(scope="module")
def detector():
    from helpers.faces import FaceDetector

    return FaceDetector(detect_max_side=0, threads=2)


@pytest.fixture(scope="module")
def small(tmp_path_factory, detector) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("demo") / "videos"
    return out, demo.make_demo_dataset(out, detector=detector, progress=False, **SMALL)


def read_frames(path: Path) -> np.ndarray:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return np.array(frames)


def load_metadata(root: Path) -> dict[str, dict]:
    """Every part's metadata, keyed by part then video."""
    return {p.name: json.loads((p / "metadata.json").read_text()) for p in sorted(root.glob("dfdc_demo_part_*"))}


def test_layout_and_labels(small):
    root, videos = small
    meta = load_metadata(root)
    assert len(meta) >= 2, "part_size=4 should spread 5 identities over several parts"
    for part, entries in meta.items():
        assert sorted(entries) == sorted(p.name for p in (root / part).glob("*.mp4"))
        for name, entry in entries.items():
            assert len(name) == 14 and name[:10].isalpha() and name[:10].islower()
            assert set(entry) == {"label", "split", "original"} and entry["split"] == "train"
            if entry["label"] == "REAL":
                assert entry["original"] is None
            else:
                assert entry["label"] == "FAKE"
                assert entries[entry["original"]]["label"] == "REAL", f"{name}: original not a REAL in {part}"
    assert (videos.label == "REAL").sum() == (videos.label == "FAKE").sum() == 5
    assert videos.attrs["skipped_identities"] == 1


def test_identities_file(small):
    root, videos = small
    ids = pd.read_csv(root / "identities.csv")
    assert list(ids.columns) == ["video", "identity", "source_identity"]
    by_video = ids.set_index("video")
    for _, row in videos.iterrows():
        if row.label == "REAL":
            assert by_video.loc[row.video, "source_identity"] == by_video.loc[row.video, "identity"]
        else:
            original = by_video.loc[row.original]
            assert by_video.loc[row.video, "identity"] == original.identity
            assert by_video.loc[row.video, "source_identity"] != original.identity
    assert 4 not in set(ids.identity) | set(ids.source_identity), "LFW face 4 has no landmarks and must be skipped"


def test_videos_decode_with_requested_shape(small):
    root, videos = small
    for _, row in videos.iterrows():
        frames = read_frames(root / row.part / row.video)
        assert frames.shape == (SMALL["frames"], SMALL["size"], SMALL["size"], 3), row.video


def test_fakes_differ_only_in_the_face(small):
    root, videos = small
    border = 10  # the portrait never reaches this close to the frame's edge
    for _, row in videos[videos.label == "FAKE"].iterrows():
        fake = read_frames(root / row.part / row.video).astype(np.float32)
        real = read_frames(root / row.part / row.original).astype(np.float32)
        diff = np.abs(fake - real).mean(axis=(0, 3))
        centre = diff[50:110, 50:110].mean()
        edge = np.concatenate([diff[:border].ravel(), diff[-border:].ravel(),
                               diff[:, :border].ravel(), diff[:, -border:].ravel()]).mean()
        assert centre > 4, f"{row.video} barely differs from {row.original} in the face ({centre:.2f})"
        # Not exactly 0: the MPEG-4 encoder's rate control spreads a changed face over the whole frame.
        assert edge < 2.0, f"{row.video} differs from {row.original} far from the face ({edge:.2f})"


def test_fake_and_real_render_the_same_scene():
    grey = demo._grey_portraits()
    real = demo.tint_portrait(grey[0], 0, 0)
    face = real.copy()
    face[40:80, 40:80] = 0  # any change confined to the portrait
    scene = demo.Scene.draw(np.random.default_rng(1))
    a, b = demo.render_video(real, scene, 3, 160), demo.render_video(face, scene, 3, 160)
    # JPEG works in 8x8 blocks (16x16 for colour), so pixels a block away from the face are untouched.
    assert np.array_equal(a[:, :16], b[:, :16]) and np.array_equal(a[:, -16:], b[:, -16:])
    assert not np.array_equal(a[:, 60:100, 60:100], b[:, 60:100, 60:100])


def test_same_seed_same_dataset_other_seed_differs(small, tmp_path, detector):
    root, videos = small
    again = demo.make_demo_dataset(tmp_path / "again", detector=detector, progress=False, **SMALL)
    assert load_metadata(tmp_path / "again") == load_metadata(root)
    for name in ("identities.csv", "videos.csv"):
        assert (tmp_path / "again" / name).read_bytes() == (root / name).read_bytes()
    pd.testing.assert_frame_equal(again, videos)
    fake = videos[videos.label == "FAKE"].iloc[0]
    np.testing.assert_array_equal(read_frames(tmp_path / "again" / fake.part / fake.video),
                                  read_frames(root / fake.part / fake.video))

    other = demo.make_demo_dataset(tmp_path / "other", detector=detector, progress=False, **{**SMALL, "seed": 4})
    assert set(other.video).isdisjoint(videos.video)
    first = lambda v: read_frames(next((tmp_path / "other").glob(f"*/{v}")))[0]  # noqa: E731
    assert not np.array_equal(first(other.video.iloc[0]), read_frames(root / videos.part.iloc[0] / videos.video.iloc[0])[0])


def test_rebuild_only_when_arguments_change(small, detector):
    root, videos = small
    stamp = json.loads((root / "demo.json").read_text())
    assert stamp["complete"] and stamp["counts"]["videos"] == len(videos)
    mtimes = {p: p.stat().st_mtime_ns for p in root.glob("*/*.mp4")}
    reused = demo.make_demo_dataset(root, detector=detector, progress=False, **SMALL)
    assert reused.attrs["reused"]
    assert {p: p.stat().st_mtime_ns for p in root.glob("*/*.mp4")} == mtimes


def test_rebuild_replaces_a_build_with_other_arguments(tmp_path, detector):
    out = tmp_path / "videos"
    demo.make_demo_dataset(out, identities=3, frames=2, size=96, detector=detector, progress=False)
    fewer = demo.make_demo_dataset(out, identities=2, frames=3, size=96, detector=detector, progress=False)
    assert not fewer.attrs["reused"] and len(fewer) == 4
    names = {p.name for p in out.glob("*/*.mp4")}
    assert names == set(fewer.video), "videos of the earlier build must be removed"
    assert all(len(read_frames(p)) == 3 for p in out.glob("*/*.mp4"))


def test_interrupted_build_resumes(tmp_path, detector):
    out = tmp_path / "videos"
    built = demo.make_demo_dataset(out, identities=2, frames=2, size=96, detector=detector, progress=False)
    kept = out / built.part[0] / built.video[0]
    lost = out / built.part[1] / built.video[1]
    stamp = json.loads((out / "demo.json").read_text())
    (out / "demo.json").write_text(json.dumps({**stamp, "complete": False}))  # as if killed mid-build
    lost.unlink()
    before = kept.stat().st_mtime_ns
    resumed = demo.make_demo_dataset(out, identities=2, frames=2, size=96, detector=detector, progress=False)
    assert not resumed.attrs["reused"] and lost.is_file() and kept.stat().st_mtime_ns == before


def test_mtcnn_finds_the_faces(small, detector):
    root, videos = small
    frames = [frame for _, row in videos.iterrows() for frame in read_frames(root / row.part / row.video)]
    found = [bool(faces) for faces in detector.detect(frames)]
    assert np.mean(found) >= 0.95, f"MTCNN found a face in only {np.mean(found):.0%} of {len(found)} demo frames"


def test_only_upright_landmarks_are_accepted():
    upright = np.array([[40, 40], [80, 40], [60, 65], [45, 90], [75, 90]], dtype=float)
    assert np.array_equal(demo._ordered_landmarks(upright), upright)
    # scrambled points (e.g. x1..x5, y1..y5 read as (5, 2) rows) must not be used for a swap
    assert demo._ordered_landmarks(upright.T.reshape(5, 2)) is None
    assert demo._ordered_landmarks(upright[::-1]) is None


def test_swap_face_stays_inside_the_mask():
    rng = np.random.default_rng(0)
    target = np.full((demo.PORTRAIT_PX,) * 2 + (3,), 100, np.float32)
    source = rng.uniform(0, 255, target.shape).astype(np.float32)
    landmarks = np.array([[40, 45], [80, 45], [60, 65], [45, 88], [75, 88]], dtype=float)
    recipe = demo.SwapRecipe(mask="ellipse", grow=0.1, morph=0, feather=2.0, colour_match=False, blend=1.0, blur=0.0)
    swapped = demo.swap_face(target, landmarks, source, landmarks, recipe)
    assert np.abs(swapped[60, 60] - source[60, 60]).max() < 1e-3
    assert np.array_equal(swapped[:5, :5], target[:5, :5])


def test_command_line(tmp_path, capsys, detector):
    demo.detect_landmarks(detector)  # the landmarks are cached: the CLI does not start a second MTCNN
    args = ["--out", str(tmp_path / "cli"), "--identities", "2", "--frames", "2", "--size", "96", "--quiet"]
    assert demo.main(args) == 0
    line = capsys.readouterr().out.strip()
    assert "4 videos (2 REAL, 2 FAKE)" in line and "reused" not in line
    assert len(load_metadata(tmp_path / "cli")["dfdc_demo_part_0"]) == 4
    assert demo.main(args) == 0
    assert "already built, reused" in capsys.readouterr().out


def test_fakes_swap_within_small_casts_so_identity_groups_stay_small():
    landmarks = {i: np.zeros((5, 2)) for i in range(20)}
    records, _ = demo.plan_videos(landmarks, identities=20, seed=3)
    links = {(r["identity"], r["source_identity"]) for r in records if r["label"] == "FAKE"}
    group = {i: {i} for i in range(20)}
    for a, b in links:  # merge the two identities' groups
        merged = group[a] | group[b]
        for member in merged:
            group[member] = merged
    sizes = {frozenset(g) for g in group.values()}
    assert all(2 <= len(g) <= 3 for g in sizes)  # pairs, and one trio when the count is odd
    assert len(sizes) == 10
