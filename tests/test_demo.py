"""The embedded demo dataset: layout, labels, recipes, identity groups, determinism, decodable videos, real swaps."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from helpers import demo

# Small but real: 5 identities (LFW face 4 has no landmarks, so one is skipped on the way), so two
# pairs and a trio; 2 REAL videos each with 5 fakes; several parts.
SMALL = dict(identities=5, seed=3, frames=6, size=160, part_size=12)
FAKES, REALS = 5, 1  # the defaults of make_demo_dataset


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


def components(records: list[dict]) -> list[set]:
    """Identity groups by breadth-first search: videos linked to their original, identity and source identity."""
    neighbours: dict = {}
    for r in records:
        links = [("id", r["identity"]), ("id", r["source_identity"])] + ([("video", r["original"])] if r["original"] else [])
        for other in links:
            neighbours.setdefault(("video", r["video"]), set()).add(other)
            neighbours.setdefault(other, set()).add(("video", r["video"]))
    seen, groups = set(), []
    for start in neighbours:
        if start in seen:
            continue
        group, todo = set(), [start]
        while todo:
            node = todo.pop()
            if node not in group:
                group.add(node)
                todo.extend(neighbours[node] - group)
        seen |= group
        groups.append({n[1] for n in group if n[0] == "id"})
    return groups


def test_layout_and_labels(small):
    root, videos = small
    meta = load_metadata(root)
    assert len(meta) >= 2, "part_size=12 should spread 5 identities over several parts"
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
    assert videos.attrs["skipped_identities"] == 1
    assert videos.attrs["identities"] == 5 and videos.attrs["groups"] == 2  # a pair and a trio


def test_class_share_is_dfdcs(small):
    _, videos = small
    real, fake = (videos.label == "REAL").sum(), (videos.label == "FAKE").sum()
    assert real == 5 * REALS and fake == 5 * REALS * FAKES
    assert fake / len(videos) == pytest.approx(5 / 6)
    assert (videos[videos.label == "FAKE"].groupby("original").size() == FAKES).all()
    assert (videos[videos.label == "REAL"].groupby("identity").size() == REALS).all()


def test_recipes_spread_from_easiest_to_hardest(small):
    _, videos = small
    fakes = videos[videos.label == "FAKE"]
    assert set(fakes.recipe) == set(demo.RECIPES)
    # five fakes of one original, five recipes: each original's fakes span easiest to hardest
    assert (fakes.groupby("original").recipe.nunique() == FAKES).all()
    assert (fakes.difficulty == fakes.recipe.map({n: i + 1 for i, n in enumerate(demo.RECIPES)})).all()
    assert set(fakes[fakes.recipe == "easiest"]["mask"]) == {"rectangle"}
    assert set(fakes[fakes.recipe == "easiest"].colour_match) == {"none"}
    assert (fakes[fakes.recipe == "easiest"].feather == 0).all()
    assert set(fakes[fakes.recipe == "hardest"].colour_match) == {"full"}
    by_level = fakes.groupby("difficulty")
    assert by_level.face_scale.mean().is_monotonic_increasing and by_level.feather.mean().is_monotonic_increasing
    shift = np.hypot(fakes.shift_x, fakes.shift_y)
    assert shift.groupby(fakes.difficulty).mean().is_monotonic_decreasing
    assert (fakes.face_scale.between(0.16, 0.4)).all()
    assert ((fakes.blur == 0) | (fakes.sharpen == 0)).all()
    real = videos[videos.label == "REAL"]
    assert real.recipe.isna().all() and real.face_scale.isna().all()


def test_recipe_draws_stay_in_their_ranges():
    for name, ranges in demo.RECIPES.items():
        for k in range(40):
            r = demo.SwapRecipe.draw(np.random.default_rng(k), name)
            assert r.recipe == name and r.mask in ranges["masks"] and r.colour_match in ranges["colour"]
            assert ranges["face_scale"][0] <= r.face_scale <= ranges["face_scale"][1]
            assert ranges["shift"][0] - 1e-9 <= np.hypot(r.shift_x, r.shift_y) <= ranges["shift"][1] + 1e-9
            assert ranges["rotate"][0] <= abs(r.rotate_deg) <= ranges["rotate"][1]
            assert ranges["filter"][0] <= max(r.blur, r.sharpen) <= ranges["filter"][1] and min(r.blur, r.sharpen) == 0


def test_identities_file(small):
    root, videos = small
    ids = pd.read_csv(root / "identities.csv")
    assert list(ids.columns) == ["video", "identity", "source_identity"]
    by_video = ids.set_index("video")
    labels = videos.set_index("video").label
    for _, row in videos.iterrows():
        if row.label == "REAL":
            assert by_video.loc[row.video, "source_identity"] == by_video.loc[row.video, "identity"]
        else:
            assert labels[row.original] == "REAL"
            original = by_video.loc[row.original]
            assert by_video.loc[row.video, "identity"] == original.identity  # the original shows the target
            assert by_video.loc[row.video, "source_identity"] != original.identity
    assert 4 not in set(ids.identity) | set(ids.source_identity), "LFW face 4 has no landmarks and must be skipped"
    # small casts: each identity's fakes take faces from one partner (two in the trio)
    fakes = ids[ids.identity != ids.source_identity]
    assert fakes.groupby("identity").source_identity.nunique().max() <= 2


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
        assert centre > 4, f"{row.video} ({row.recipe}) barely differs from {row.original} in the face ({centre:.2f})"
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
    together = demo.render_videos([real, face], scene, 3, 160)  # one pass renders what two would
    assert np.array_equal(together[0], a) and np.array_equal(together[1], b)


def test_same_seed_same_bytes_other_seed_differs(small, tmp_path, detector):
    root, videos = small
    again = demo.make_demo_dataset(tmp_path / "again", detector=detector, progress=False, workers=1, **SMALL)
    files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file() and p.name != "demo.json")
    assert files == sorted(p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*")
                           if p.is_file() and p.name != "demo.json")
    for name in files:  # every video, metadata.json, identities.csv and videos.csv, whatever the thread count
        assert (tmp_path / "again" / name).read_bytes() == (root / name).read_bytes(), name
    pd.testing.assert_frame_equal(again, videos)

    other = demo.make_demo_dataset(tmp_path / "other", detector=detector, progress=False, **{**SMALL, "seed": 4})
    assert set(other.video).isdisjoint(videos.video)
    first = lambda v: read_frames(next((tmp_path / "other").glob(f"*/{v}")))[0]  # noqa: E731
    assert not np.array_equal(first(other.video.iloc[0]), read_frames(root / videos.part.iloc[0] / videos.video.iloc[0])[0])


def test_rebuild_only_when_arguments_change(small, detector):
    root, videos = small
    stamp = json.loads((root / "demo.json").read_text())
    assert stamp["complete"] and stamp["counts"]["videos"] == len(videos)
    assert stamp["counts"]["recipes"] == {name: 5 * REALS for name in demo.RECIPES}
    mtimes = {p: p.stat().st_mtime_ns for p in root.glob("*/*.mp4")}
    reused = demo.make_demo_dataset(root, detector=detector, progress=False, **SMALL)
    assert reused.attrs["reused"]
    assert {p: p.stat().st_mtime_ns for p in root.glob("*/*.mp4")} == mtimes


def test_rebuild_replaces_a_build_with_other_arguments(tmp_path, detector):
    out = tmp_path / "videos"
    tiny = dict(frames=2, size=96, reals_per_identity=1, detector=detector, progress=False)
    demo.make_demo_dataset(out, identities=3, fakes_per_real=2, **tiny)
    fewer = demo.make_demo_dataset(out, identities=2, fakes_per_real=1, **{**tiny, "frames": 3})
    assert not fewer.attrs["reused"] and len(fewer) == 4
    names = {p.name for p in out.glob("*/*.mp4")}
    assert names == set(fewer.video), "videos of the earlier build must be removed"
    assert all(len(read_frames(p)) == 3 for p in out.glob("*/*.mp4"))


def test_interrupted_build_resumes(tmp_path, detector):
    out = tmp_path / "videos"
    tiny = dict(identities=2, frames=2, size=96, fakes_per_real=1, reals_per_identity=1, detector=detector,
                progress=False)
    built = demo.make_demo_dataset(out, **tiny)
    kept = out / built.part[0] / built.video[0]
    lost = out / built.part[1] / built.video[1]
    stamp = json.loads((out / "demo.json").read_text())
    (out / "demo.json").write_text(json.dumps({**stamp, "complete": False}))  # as if killed mid-build
    lost_bytes, kept_time = lost.read_bytes(), kept.stat().st_mtime_ns
    lost.unlink()
    resumed = demo.make_demo_dataset(out, **tiny)
    assert not resumed.attrs["reused"] and lost.read_bytes() == lost_bytes
    assert kept.stat().st_mtime_ns == kept_time, "a finished video is not written again"


@pytest.mark.slow
def test_mtcnn_finds_the_faces_in_real_and_fake_frames(small, detector):
    root, videos = small
    for label in ("REAL", "FAKE"):
        rows = videos[videos.label == label]
        frames = [frame for _, row in rows.iterrows() for frame in read_frames(root / row.part / row.video)[::2]]
        # as notebook 02 keeps them: confidence at least MIN_CONFIDENCE 0.9
        found = np.mean([any(f.confidence >= 0.9 for f in faces) for faces in detector.detect(frames)])
        assert found >= 0.95, f"MTCNN found a face in only {found:.0%} of {len(frames)} {label} demo frames"


def test_only_upright_landmarks_are_accepted():
    upright = np.array([[40, 40], [80, 40], [60, 65], [45, 90], [75, 90]], dtype=float)
    assert np.array_equal(demo._ordered_landmarks(upright), upright)
    # scrambled points (e.g. x1..x5, y1..y5 read as (5, 2) rows) must not be used for a swap
    assert demo._ordered_landmarks(upright.T.reshape(5, 2)) is None
    assert demo._ordered_landmarks(upright[::-1]) is None


LANDMARKS = np.array([[40, 45], [80, 45], [60, 65], [45, 88], [75, 88]], dtype=float)


def plain_recipe(**changes) -> demo.SwapRecipe:
    """A recipe that changes nothing but the face: no warp error, no filter, full resolution."""
    fields = dict(recipe="hardest", mask="ellipse", grow=0.1, feather=2.0, colour_match="none", face_scale=1.0,
                  shift_x=0.0, shift_y=0.0, rotate_deg=0.0, scale_error=0.0, blur=0.0, sharpen=0.0)
    return demo.SwapRecipe(**{**fields, **changes})


def test_swap_face_stays_inside_the_mask():
    rng = np.random.default_rng(0)
    target = np.full((demo.PORTRAIT_PX,) * 2 + (3,), 100, np.float32)
    source = rng.uniform(0, 255, target.shape).astype(np.float32)
    for mask in ("hull", "ellipse", "rectangle"):
        swapped = demo.swap_face(target, LANDMARKS, source, LANDMARKS, plain_recipe(mask=mask))
        assert np.abs(swapped[60, 60] - source[60, 60]).max() < 1e-3, mask
        assert np.array_equal(swapped[:5, :5], target[:5, :5]), mask
    with pytest.raises(ValueError, match="unknown mask"):
        demo.swap_mask(LANDMARKS, plain_recipe(mask="star"))


def test_mask_shapes_and_seams():
    hard = demo.swap_mask(LANDMARKS, plain_recipe(mask="rectangle", feather=0.0))
    assert set(np.unique(hard)) == {0.0, 1.0}, "feather 0 is a hard seam"
    soft = demo.swap_mask(LANDMARKS, plain_recipe(mask="rectangle", feather=4.0))
    assert ((soft > 0.05) & (soft < 0.95)).sum() > 4 * ((hard > 0.05) & (hard < 0.95)).sum()
    rows = np.flatnonzero(hard.any(1))
    widths = hard[rows].sum(1)
    assert widths.max() - widths.min() <= 1, "an upright rectangle is as wide at the top as at the bottom"
    ellipse = demo.swap_mask(LANDMARKS, plain_recipe(mask="ellipse", feather=0.0))
    assert ellipse[np.flatnonzero(ellipse.any(1))[[0, -1]]].sum() < widths.mean() / 2, "an ellipse narrows"


def test_low_resolution_misalignment_and_colour():
    grey = demo._grey_portraits()
    target, source = demo.tint_portrait(grey[0], 0, 0), demo.tint_portrait(grey[1], 0, 1)
    sharp = demo.swap_face(target, LANDMARKS, source, LANDMARKS, plain_recipe(feather=0.0))
    low = demo.swap_face(target, LANDMARKS, source, LANDMARKS, plain_recipe(feather=0.0, face_scale=0.3))
    detail = lambda image: np.abs(image - cv2.GaussianBlur(image, (0, 0), 1.0))[50:80, 45:75].mean()  # noqa: E731
    assert detail(low) < 0.5 * detail(sharp), "a face rendered at 0.3x loses the fine detail"

    shifted = demo.swap_face(target, LANDMARKS, source, LANDMARKS, plain_recipe(feather=0.0, shift_x=4.0))
    assert np.allclose(shifted[55:75, 54:74], sharp[55:75, 50:70], atol=0.05), "the face lands 4 px off"

    inside = demo.swap_mask(LANDMARKS, plain_recipe(feather=0.0)) > 0.5
    gap = {match: np.abs(demo.swap_face(target, LANDMARKS, source, LANDMARKS,
                                        plain_recipe(feather=0.0, colour_match=match))[inside].mean(0)
                         - target[inside].mean(0)).sum() for match in demo.COLOUR_MATCH}
    # not to zero: the transfer works on 8-bit LAB, which rounds
    assert gap["full"] < gap["partial"] < gap["none"] and gap["full"] < 0.3 * gap["none"], gap


def test_plan_gives_dfdc_shares_and_many_small_identity_groups():
    landmarks = {i: LANDMARKS for i in range(demo.N_FACES)}
    for n in (2, 7, 20, 41):
        records, _ = demo.plan_videos(landmarks, identities=n, seed=n)
        groups = components(records)
        assert len(groups) == n // 2 == demo.count_groups(records), n  # pairs, and one trio when n is odd
        assert sorted(len(g) for g in groups) == [2] * (n // 2 - n % 2) + [3] * (n % 2)
    landmarks = {i: (None if i in (4, 57) else LANDMARKS) for i in range(demo.N_FACES)}  # 98 usable, as LFW
    records, skipped = demo.plan_videos(landmarks, identities=100, seed=0)
    labels = pd.Series([r["label"] for r in records])
    assert skipped == 2 and len(records) == 98 * REALS * (1 + FAKES) == 588
    assert (labels == "FAKE").mean() == pytest.approx(5 / 6)
    assert len(components(records)) == 49 >= 40
    assert 0.2 * len(records) >= 100, "the demo profile's 20 % test split holds at least 100 videos"


def test_plan_refuses_fakes_without_a_second_identity():
    with pytest.raises(ValueError, match="at least 2 identities"):
        demo.plan_videos({0: LANDMARKS}, identities=1, seed=0)
    records, _ = demo.plan_videos({0: LANDMARKS}, identities=1, seed=0, fakes_per_real=0)
    assert [r["label"] for r in records] == ["REAL"] * REALS


def test_command_line(tmp_path, capsys, detector):
    demo.detect_landmarks(detector)  # the landmarks are cached: the CLI does not start a second MTCNN
    args = ["--out", str(tmp_path / "cli"), "--identities", "2", "--frames", "2", "--size", "96",
            "--reals-per-identity", "1", "--fakes-per-real", "2", "--quiet"]
    assert demo.main(args) == 0
    line = capsys.readouterr().out.strip()
    assert "6 videos (2 REAL, 4 FAKE)" in line and "1 identity groups" in line and "reused" not in line
    assert len(load_metadata(tmp_path / "cli")["dfdc_demo_part_0"]) == 6
    assert demo.main(args) == 0
    assert "already built, reused" in capsys.readouterr().out
