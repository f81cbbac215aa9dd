"""Identity-disjoint splits: link structures (property-based), DFDC/FF++/identity links, balancing, the audit."""
from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import pipeline, splits
from helpers.faces import COLUMNS as FACE_COLUMNS

ROOT = Path(__file__).resolve().parents[1]


def faces_frame(videos: list[dict]) -> pd.DataFrame:
    """A faces table with `faces` rows per video (default 1); other keys become columns."""
    rows = []
    for video in videos:
        video = {"original": None, "status": "ok", "faces": 1, **video}
        for k in range(video.pop("faces")):
            rows.append({**video, "frame_index": k, "face_index": 0})
    return pd.DataFrame(rows)


def split_of(split: pd.DataFrame) -> dict[str, str]:
    """video_id -> its split (asserting a video never spans two)."""
    per_video = split.groupby("video_id").split.unique()
    assert (per_video.map(len) == 1).all()
    return per_video.map(lambda s: s[0]).to_dict()


def components(faces: pd.DataFrame, columns=("identity", "source_identity")) -> list[set]:
    """Connected videos found by a plain graph search: the reference for the union-find."""
    graph = defaultdict(set)
    for row in faces.drop_duplicates("video_id").to_dict("records"):
        video = f"video:{row['video_id']}"
        graph[video].add(video)
        nodes = []
        if isinstance(row.get("original"), str):
            nodes.append(f"video:{row['original']}")
        nodes += [f"identity:{row[c]}" for c in columns if isinstance(row.get(c), str)]
        match = re.fullmatch(splits.NAME_PATTERN, row["video_id"])
        nodes += [f"name:{t}" for t in (match.groups() if match else ()) if t]
        for node in nodes:
            graph[video].add(node)
            graph[node].add(video)
    seen, result = set(), []
    for start in list(graph):
        if start in seen or not start.startswith("video:"):
            continue
        stack, found = [start], set()
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            found.add(node)
            stack.extend(graph[node] - seen)
        present = {n[6:] for n in found if n.startswith("video:")} & set(faces.video_id)
        if present:
            result.append(present)
    return result


# --- Property-based: random link structures ---------------------------------------------------------

@st.composite
def link_structures(draw):
    n_real = draw(st.integers(0, 10))
    n_fake = draw(st.integers(0 if n_real else 1, 16))
    n_ff = draw(st.integers(0, 4))
    pool = [f"p{i}" for i in range(draw(st.integers(1, 8)))]
    maybe_identity = st.one_of(st.none(), st.none(), st.sampled_from(pool))
    originals = [f"real{i:02d}" for i in range(n_real)] + [f"gone{i}" for i in range(draw(st.integers(0, 3)))]
    videos = []
    for i in range(n_real):
        videos.append({"video_id": f"real{i:02d}", "label": "REAL", "identity": draw(maybe_identity)})
    for i in range(n_fake):
        original = draw(st.one_of(st.none(), st.sampled_from(originals))) if originals else None
        videos.append({"video_id": f"fake{i:02d}", "label": "FAKE", "original": original,
                       "identity": draw(maybe_identity), "source_identity": draw(maybe_identity)})
    for i in range(n_ff):  # FaceForensics++-style names among a few people
        a, b = draw(st.integers(0, 5)), draw(st.integers(0, 5))
        name, label = (f"{a:03d}", "REAL") if a == b else (f"{a:03d}_{b:03d}", "FAKE")
        if name not in {v["video_id"] for v in videos}:
            videos.append({"video_id": name, "label": label})
    for video in videos:
        video["faces"] = draw(st.integers(1, 4))
        video["status"] = draw(st.sampled_from(["ok", "ok", "ok", "no_face"]))
    faces = faces_frame(videos)
    faces = faces.reindex(columns=list(dict.fromkeys([*faces.columns, "identity", "source_identity"])))
    if not (faces.status == "ok").any():
        faces.loc[0, "status"] = "ok"
    val = draw(st.sampled_from([0.0, 0.1, 0.15, 0.2, 0.3]))
    test = draw(st.sampled_from([0.1, 0.15, 0.2, 0.3]))
    return faces, {"train": 1 - val - test, "val": val, "test": test}, draw(st.integers(0, 2**31 - 1))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(link_structures())
def test_random_link_structures_never_leak(case):
    faces, fractions, seed = case
    split = splits.split_by_identity(faces, fractions, seed)
    usable = faces[faces.status == "ok"]

    # every usable face is assigned exactly once, to a known split
    assert split.index.equals(usable.index)
    assert split.split.isin(splits.SPLITS).all() and split.group.notna().all()

    # groups are exactly the connected components of the link graph, and none spans two splits
    expected = sorted(sorted(c) for c in components(usable))
    found = sorted(sorted(g) for g in split.groupby("group").video_id.unique().map(set))
    assert found == expected
    assert (split.groupby("group").split.nunique() == 1).all()
    where = split_of(split)
    for row in usable.to_dict("records"):
        if row["original"] in where:
            assert where[row["original"]] == where[row["video_id"]]
    for column in ("identity", "source_identity"):
        values = split.dropna(subset=[column])
        for value, videos in values.groupby(column).video_id.unique().items():
            other = split[(split.identity == value) | (split.source_identity == value)]
            assert other.split.nunique() == 1, f"identity {value} spans splits"

    # fractions within the stated tolerance whenever the greedy pass filled every split itself
    notes = split.attrs["assignment"]
    sizes = split.groupby("group").size()
    active = [s for s in splits.SPLITS if fractions[s] > 0]
    assert notes["tolerance"] == pytest.approx((len(active) - 1) * sizes.max() / sizes.sum())
    share = split.split.value_counts(normalize=True).reindex(splits.SPLITS, fill_value=0)
    if len(sizes) >= len(active) and not notes["forced"]:
        for s in splits.SPLITS:
            assert abs(share[s] - fractions[s]) <= notes["tolerance"] + 1e-9, (s, share[s], fractions[s])
    if len(sizes) >= len(active):  # every split asked for gets a group
        assert set(active) <= set(split.split)
    assert not set(split.split) - set(active) or len(sizes) < len(active)

    # same seed, same split, whatever the row order
    again = splits.split_by_identity(faces.sample(frac=1, random_state=seed % 1000), fractions, seed)
    assert again.sort_index()[["group", "split"]].equals(split[["group", "split"]])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 30), st.integers(0, 30)), min_size=3, max_size=120), st.integers(0, 1000))
def test_many_groups_meet_fractions_and_keep_the_label_balance(sizes, seed):
    groups = pd.DataFrame([{"faces": n + f, "fakes": f} for n, f in sizes if n + f],
                          index=[f"g{i:03d}" for i, (n, f) in enumerate(sizes) if n + f])
    if len(groups) < 3:
        return
    fractions = {"train": 0.7, "val": 0.15, "test": 0.15}
    where, notes = splits.assign_groups(groups, fractions, seed)
    assert set(where) == set(splits.SPLITS)
    share = groups.faces.groupby(where).sum() / groups.faces.sum()
    if not notes["forced"]:
        for s in splits.SPLITS:
            assert abs(share[s] - fractions[s]) <= notes["tolerance"] + 1e-9
    assert where.equals(splits.assign_groups(groups, fractions, seed)[0])


def test_fake_share_per_split_is_close_on_a_dfdc_like_set():
    rng = np.random.default_rng(3)
    videos = []
    for i in range(300):  # an original with 0-9 fakes, or fakes of an original that is absent
        present = rng.random() < 0.8
        if present:
            videos.append({"video_id": f"o{i:03d}", "label": "REAL"})
        videos += [{"video_id": f"o{i:03d}f{j}", "label": "FAKE", "original": f"o{i:03d}"}
                   for j in range(rng.integers(0 if present else 1, 10))]
    split = splits.split_by_identity(faces_frame(videos), (0.7, 0.15, 0.15), seed=0)
    overall = split.label.eq("FAKE").mean()
    per_split = split.groupby("split").label.agg(lambda s: s.eq("FAKE").mean())
    assert (abs(per_split - overall) < 0.01).all(), per_split
    share = split.split.value_counts(normalize=True)
    assert abs(share["test"] - 0.15) < 0.01 and abs(share["val"] - 0.15) < 0.01


def test_a_different_seed_gives_a_different_split():
    videos = [{"video_id": f"v{i:03d}", "label": "REAL" if i % 3 else "FAKE"} for i in range(60)]
    a = splits.split_by_identity(faces_frame(videos), (0.6, 0.2, 0.2), seed=1)
    b = splits.split_by_identity(faces_frame(videos), (0.6, 0.2, 0.2), seed=2)
    assert not a.split.equals(b.split)


# --- Few groups ------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_groups, expected", [(1, {"test"}), (2, {"test", "train"}), (3, {"train", "val", "test"})])
def test_few_groups_fill_test_then_train_and_say_so(n_groups, expected):
    videos = [{"video_id": f"v{i}", "label": "REAL", "faces": 10 * (i + 1)} for i in range(n_groups)]
    split = splits.split_by_identity(faces_frame(videos), (0.7, 0.15, 0.15), seed=0)
    assert set(split.split) == expected
    warnings = " ".join(split.attrs["assignment"]["warnings"])
    assert ("only %d identity group" % n_groups in warnings) == (n_groups < 3)
    if n_groups == 2:
        assert split_of(split) == {"v0": "test", "v1": "train"}  # the smaller group is the test set


def test_a_zero_fraction_split_stays_empty():
    videos = [{"video_id": f"v{i}", "label": "REAL"} for i in range(10)]
    split = splits.split_by_identity(faces_frame(videos), {"train": 0.8, "val": 0.0, "test": 0.2}, seed=0)
    assert set(split.split) == {"train", "test"}


def test_no_usable_face_gives_an_empty_split():
    split = splits.split_by_identity(faces_frame([{"video_id": "a", "label": "REAL", "status": "no_face"}]),
                                     (0.7, 0.15, 0.15), 0)
    assert split.empty and {"group", "split"} <= set(split.columns)


@pytest.mark.parametrize("fractions", [(0.5, 0.3, 0.3), (0.0, 0.5, 0.5), (1.2, -0.1, -0.1), {"train": 0.5, "tst": 0.5}])
def test_bad_fractions_are_refused(fractions):
    with pytest.raises(ValueError, match="fraction|splits"):
        splits.parse_fractions(fractions)


# --- DFDC, FaceForensics++ and user identities ---------------------------------------------------------

def groups_of(split: pd.DataFrame) -> list[set]:
    return sorted((set(v) for v in split.groupby("group").video_id.unique()), key=min)


def test_dfdc_fakes_join_their_original_present_or_absent():
    split = splits.split_by_identity(faces_frame([
        {"video_id": "aaaaaaaaaa", "label": "REAL"},
        {"video_id": "bbbbbbbbbb", "label": "FAKE", "original": "aaaaaaaaaa"},
        {"video_id": "cccccccccc", "label": "FAKE", "original": "aaaaaaaaaa"},
        # two fakes of an original that is not in the folder
        {"video_id": "dddddddddd", "label": "FAKE", "original": "zzzzzzzzzz"},
        {"video_id": "eeeeeeeeee", "label": "FAKE", "original": "zzzzzzzzzz"},
        {"video_id": "ffffffffff", "label": "REAL"},
    ]), (0.5, 0.25, 0.25), seed=0)
    assert groups_of(split) == [{"aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc"}, {"dddddddddd", "eeeeeeeeee"},
                                {"ffffffffff"}]
    # a group is named after its smallest present video, so the name never depends on the seed
    assert set(split.group) == {"g-aaaaaaaaaa", "g-dddddddddd", "g-ffffffffff"}
    assert len(set(split.split)) == 3


def test_faceforensics_names_join_both_people():
    split = splits.split_by_identity(faces_frame([
        {"video_id": "000", "label": "REAL"}, {"video_id": "003", "label": "REAL"},
        {"video_id": "000_003", "label": "FAKE"},
        {"video_id": "004_005", "label": "FAKE"}, {"video_id": "005", "label": "REAL"},
        {"video_id": "006", "label": "REAL"},
        {"video_id": "abcdefghij", "label": "REAL"},  # a DFDC id matches no name pattern
    ]), (0.6, 0.2, 0.2), seed=0)
    assert groups_of(split) == [{"000", "000_003", "003"}, {"004_005", "005"}, {"006"}, {"abcdefghij"}]
    # "" turns name links off; a custom pattern reads Celeb-DF's id0_0001 / id0_id1_0001
    off = splits.split_by_identity(split, (0.6, 0.2, 0.2), seed=0, name_pattern="")
    assert off.group.nunique() == 7
    celeb = faces_frame([{"video_id": "id0_0001", "label": "REAL"}, {"video_id": "id1_0001", "label": "REAL"},
                         {"video_id": "id0_id2_0003", "label": "FAKE"}, {"video_id": "id2_0007", "label": "REAL"}])
    split = splits.split_by_identity(celeb, (0.6, 0.2, 0.2), 0, name_pattern=r"^(id\d+)_(?:(id\d+)_)?\d+$")
    assert groups_of(split) == [{"id0_0001", "id0_id2_0003", "id2_0007"}, {"id1_0001"}]


def test_identity_column_joins_unrelated_videos_of_one_actor():
    faces = faces_frame([
        {"video_id": "aaaaaaaaaa", "label": "REAL", "identity": "actor7"},
        {"video_id": "bbbbbbbbbb", "label": "REAL", "identity": "actor7"},   # same actor, another shoot
        {"video_id": "cccccccccc", "label": "FAKE", "original": "dddddddddd", "identity": "actor2",
         "source_identity": "actor9"},                                          # actor9's face on actor2
        {"video_id": "dddddddddd", "label": "REAL", "identity": "actor2"},
        {"video_id": "eeeeeeeeee", "label": "REAL", "identity": "actor9"},
        {"video_id": "ffffffffff", "label": "REAL", "identity": None},
        {"video_id": "gggggggggg", "label": "REAL"},
    ])
    split = splits.split_by_identity(faces, (0.6, 0.2, 0.2), seed=0)
    assert groups_of(split) == [{"aaaaaaaaaa", "bbbbbbbbbb"}, {"cccccccccc", "dddddddddd", "eeeeeeeeee"},
                                {"ffffffffff"}, {"gggggggggg"}]
    only_identity = splits.split_by_identity(faces, (0.6, 0.2, 0.2), seed=0, identity_columns=["identity"])
    assert {"cccccccccc", "dddddddddd"} in groups_of(only_identity)
    assert {"eeeeeeeeee"} in groups_of(only_identity)


def test_identity_csv_maps_video_file_names_and_numbers(tmp_path):
    path = tmp_path / "identities.csv"
    path.write_text("video,identity,source_identity\naaaaaaaaaa.mp4,3,3\nbbbbbbbbbb.mp4,5,3\ncccccccccc.mp4,5,5\n"
                    "dddddddddd.mp4,8,8\n")
    table = splits.read_identity_csv(path)
    assert list(table.video_id) == ["aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc", "dddddddddd"]
    # faces.csv may already carry an identity column (numbers read back as floats): they must agree
    faces = faces_frame([{"video_id": v, "label": "REAL", "identity": i}
                         for v, i in [("aaaaaaaaaa", 3.0), ("bbbbbbbbbb", np.nan), ("cccccccccc", 5.0),
                                      ("dddddddddd", 8.0), ("eeeeeeeeee", np.nan)]])
    merged = splits.add_identities(faces, table)
    split = splits.split_by_identity(merged, (0.6, 0.2, 0.2), seed=0)
    assert groups_of(split) == [{"aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc"}, {"dddddddddd"}, {"eeeeeeeeee"}]
    faces.loc[faces.video_id == "dddddddddd", "identity"] = 9.0
    with pytest.raises(ValueError, match="disagree for 1 video.*dddddddddd"):
        splits.add_identities(faces, table, "IDENTITY_CSV x")


def test_identity_csv_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv does not exist"):
        splits.read_identity_csv(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("name,actor\na.mp4,1\n")
    with pytest.raises(ValueError, match="bad.csv needs a 'video_id' or 'video' column"):
        splits.read_identity_csv(bad)
    twice = tmp_path / "twice.csv"
    twice.write_text("video_id,identity\na,1\na,2\n")
    with pytest.raises(ValueError, match="twice.csv gives different identities to 1 video"):
        splits.read_identity_csv(twice)


def test_check_disjoint_fails_loudly_on_a_leaky_split():
    faces = faces_frame([{"video_id": "a", "label": "REAL", "faces": 2},
                         {"video_id": "b", "label": "FAKE", "original": "a"},
                         {"video_id": "c", "label": "REAL"}, {"video_id": "d", "label": "REAL"}])
    split = splits.split_by_identity(faces, (0.5, 0.25, 0.25), seed=0)
    assert splits.check_disjoint(split) == {"groups_spanning_splits": 0, "links_crossing_splits": 0}
    leaky = split.copy()
    leaky.loc[leaky.video_id == "b", "split"] = next(s for s in splits.SPLITS if s != split_of(split)["a"])
    with pytest.raises(splits.LeakageError, match="1 group.*span two splits"):
        splits.check_disjoint(leaky)
    regrouped = leaky.assign(group=leaky.video_id)  # even with wrong groups, the links themselves are checked
    with pytest.raises(splits.LeakageError, match="1 identity link"):
        splits.check_disjoint(regrouped)


# --- Balancing --------------------------------------------------------------------------------------

def unbalanced_split(seed=0) -> pd.DataFrame:
    videos = [{"video_id": f"r{i:02d}", "label": "REAL", "faces": 2} for i in range(12)]
    videos += [{"video_id": f"r{i:02d}f{j}", "label": "FAKE", "original": f"r{i:02d}", "faces": 2}
               for i in range(12) for j in range(5)]
    return splits.split_by_identity(faces_frame(videos), (0.6, 0.2, 0.2), seed)


def test_undersampling_drops_majority_faces_of_train_only():
    split = unbalanced_split()
    balanced, info = splits.balance_training(split, "undersample", seed=4)
    train = balanced[balanced.split == "train"].label.value_counts()
    assert train["REAL"] == train["FAKE"] == info["train_after"]["REAL"]
    assert info["dropped_faces"] == len(split) - len(balanced) == info["train_before"]["FAKE"] - train["FAKE"]
    for name in ("val", "test"):
        assert balanced[balanced.split == name].index.equals(split[split.split == name].index)
    again, _ = splits.balance_training(split, "undersample", seed=4)
    assert again.index.equals(balanced.index)
    assert (balanced.weight == 1).all() and info["unit"] == "face"


def test_weights_are_inverse_class_frequency_with_mean_one():
    split = unbalanced_split()
    weighted, info = splits.balance_training(split, "weights")
    train = weighted[weighted.split == "train"]
    assert train.weight.mean() == pytest.approx(1.0)
    totals = train.groupby("label").weight.sum()
    assert totals["REAL"] == pytest.approx(totals["FAKE"])
    assert (weighted[weighted.split != "train"].weight == 1).all() and len(weighted) == len(split)
    plain, info = splits.balance_training(split, "none")
    assert (plain.weight == 1).all() and info["dropped_faces"] == 0
    with pytest.raises(ValueError, match="BALANCE must be one of"):
        splits.balance_training(split, "oversample")


def test_one_class_in_train_is_left_alone_with_a_note():
    split = splits.split_by_identity(faces_frame([{"video_id": f"v{i}", "label": "FAKE"} for i in range(5)]),
                                     (0.6, 0.2, 0.2), 0)
    out, info = splits.balance_training(split, "weights")
    assert (out.weight == 1).all() and "one class" in info["note"]


# --- Perceptual hashes and near-duplicates ------------------------------------------------------------

def smooth_image(seed: int, size: int = 96) -> np.ndarray:
    """A random, face-sized RGB image with structure at several scales (unlike white noise)."""
    rng = np.random.default_rng(seed)
    image = np.zeros((size, size, 3), np.float32)
    for cells, weight in ((4, 1.0), (8, 0.5), (16, 0.25)):
        image += weight * cv2.resize(rng.random((cells, cells, 3)).astype(np.float32), (size, size),
                                     interpolation=cv2.INTER_CUBIC)
    image -= image.min()
    return (200 * image / image.max() + 20).astype(np.uint8)


def write_jpeg(path: Path, rgb: np.ndarray, quality: int = 90) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return str(path)


def test_perceptual_hash_survives_jpeg_and_brightness_but_not_another_image():
    image = smooth_image(0)
    h = splits.perceptual_hash(image)
    brighter = np.clip(image.astype(int) + 25, 0, 255).astype(np.uint8)
    recoded = cv2.imdecode(cv2.imencode(".jpg", brighter, [cv2.IMWRITE_JPEG_QUALITY, 60])[1], cv2.IMREAD_UNCHANGED)
    distance = lambda a, b: int(np.bitwise_count(np.uint64(a) ^ np.uint64(b)))  # noqa: E731
    assert distance(h, splits.perceptual_hash(recoded)) <= 4
    assert distance(h, splits.perceptual_hash(cv2.resize(image, (224, 224)))) <= 4
    others = [distance(h, splits.perceptual_hash(smooth_image(s))) for s in range(1, 20)]
    assert min(others) > 12, others


def hash_bits(h) -> np.ndarray:
    """A 64-bit hash as its 64 bits, first bit = first DCT coefficient (row-major), as imagehash stores them."""
    return np.unpackbits(np.array([h], ">u8").view(np.uint8)).astype(bool)


def test_perceptual_hash_agrees_with_imagehash_on_faces():
    # Ours resizes with OpenCV (area) and imagehash with PIL (Lanczos), so a bit near its median may
    # flip; the hashes should otherwise be the same bits in the same order, and so rank pairs alike.
    import imagehash
    from PIL import Image
    from scipy import stats
    from skimage import data

    faces = [(face * 255).round().astype(np.uint8) for face in data.lfw_subset()[:120]]  # 25x25 grey LFW faces
    faces = [cv2.resize(face, (96, 96), interpolation=cv2.INTER_CUBIC) for face in faces]  # crop-sized
    ours = np.array([hash_bits(splits.perceptual_hash(face)) for face in faces])
    ref = np.array([imagehash.phash(Image.fromarray(face)).hash.ravel() for face in faces])
    apart = (ours != ref).sum(axis=1)
    assert apart.max() <= 6 and np.median(apart) == 0, apart
    pairs = np.triu_indices(len(faces), 1)
    ours_pairs = (ours[:, None] != ours[None]).sum(axis=2)[pairs]
    ref_pairs = (ref[:, None] != ref[None]).sum(axis=2)[pairs]
    assert np.abs(ours_pairs - ref_pairs).mean() < 1
    assert stats.spearmanr(ours_pairs, ref_pairs).statistic > 0.95
    for photo in (data.astronaut(), data.chelsea(), data.coffee(), data.camera()):  # RGB and grey photos
        assert (hash_bits(splits.perceptual_hash(photo)) != imagehash.phash(Image.fromarray(photo)).hash.ravel()).sum() <= 2


def test_nearest_hamming_matches_brute_force_in_chunks():
    rng = np.random.default_rng(0)
    query = rng.integers(0, 2**63, 37, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, 37, dtype=np.uint64)
    reference = rng.integers(0, 2**63, 11, dtype=np.uint64)
    distance, position = splits.nearest_hamming(query, reference, chunk_cells=30)
    brute = np.array([[bin(int(q) ^ int(r)).count("1") for r in reference] for q in query])
    assert (distance == brute.min(axis=1)).all()
    assert (brute[np.arange(len(query)), position] == distance).all()
    empty_d, empty_p = splits.nearest_hamming(query, reference[:0])
    assert (empty_d == 65).all() and (empty_p == -1).all()


def planted_faces(tmp_path: Path) -> pd.DataFrame:
    """Six unrelated people; one test face is a brighter, re-encoded copy of a train face."""
    videos = []
    for i in range(6):
        videos.append({"video_id": f"v{i}", "label": "REAL" if i % 2 else "FAKE",
                       "face_path": write_jpeg(tmp_path / f"v{i}.jpg", smooth_image(100 + i))})
    faces = faces_frame(videos)
    faces["group"] = "g-" + faces.video_id
    faces["split"] = ["train", "train", "train", "val", "test", "test"]
    copy = np.clip(smooth_image(100).astype(int) + 20, 0, 255).astype(np.uint8)  # v0's face
    faces.loc[faces.video_id == "v5", "face_path"] = write_jpeg(tmp_path / "v5.jpg", copy, quality=70)
    return faces


def test_audit_catches_a_planted_near_duplicate(tmp_path):
    faces = planted_faces(tmp_path)
    distance, report = splits.find_near_duplicates(faces, threshold=6, progress=False)
    assert report["count"] == {"val": 0, "test": 1}
    [example] = report["examples"]
    assert example["face_path"].endswith("v5.jpg") and example["train_face_path"].endswith("v0.jpg")
    assert example["distance"] <= 6 and example["split"] == "test"
    assert distance[faces.split == "train"].isna().all()
    assert (distance[faces.video_id.isin(["v3", "v4"])] > 6).all()


def test_unreadable_crops_are_recorded_not_fatal(tmp_path):
    faces = planted_faces(tmp_path)
    (tmp_path / "v4.jpg").write_bytes(b"not a jpeg")
    faces.loc[faces.video_id == "v3", "face_path"] = str(tmp_path / "missing.jpg")
    distance, report = splits.find_near_duplicates(faces, threshold=6, progress=False)
    assert report["unreadable"]["count"] == 2
    assert any("missing.jpg" in e for e in report["unreadable"]["examples"])
    assert pd.isna(distance[faces.video_id == "v3"]).all() and report["count"]["test"] == 1
    with pytest.raises(ValueError, match="DUPLICATE_THRESHOLD"):
        splits.find_near_duplicates(faces, threshold=70, progress=False)


# --- The stage and the notebook -----------------------------------------------------------------------

def write_faces_csv(folder: Path, n_people: int = 8) -> Path:
    """A faces.csv as notebook 02 writes it: people with a REAL video and two fakes, crops on disk."""
    rows = []
    for i in range(n_people):
        original = f"real{i:04d}xx"
        for name, label in [(original, "REAL"), (f"fake{i:04d}aa", "FAKE"), (f"fake{i:04d}bb", "FAKE")]:
            for frame in range(2):
                crop = np.clip(smooth_image(i).astype(int) + (frame * 7 if label == "REAL" else 3), 0, 255)
                path = write_jpeg(folder / "faces" / f"{name}_{frame}.jpg", crop.astype(np.uint8))
                rows.append({"video_id": name, "part": "p0", "label": label,
                             "original": original if label == "FAKE" else None, "frame_index": frame,
                             "frame_path": f"frames/{name}_{frame}.jpg", "face_index": 0, "face_path": path,
                             "status": "ok", "reason": ""})
    rows.append({"video_id": "nofacexxxx", "part": "p0", "label": "REAL", "frame_index": 0,
                 "frame_path": "frames/noface.jpg", "status": "no_face", "reason": "MTCNN found no face"})
    path = folder / "faces.csv"
    pd.DataFrame(rows).reindex(columns=FACE_COLUMNS).to_csv(path, index=False)
    return path


def test_make_split_writes_split_csv_and_the_audit(tmp_path):
    faces_csv = write_faces_csv(tmp_path / "in")
    ids = tmp_path / "ids.csv"  # people 0 and 1 are one actor
    ids.write_text("video,identity\nreal0000xx.mp4,A\nreal0001xx.mp4,A\n")
    split, audit = splits.make_split(faces_csv, tmp_path / "out", val_fraction=0.2, test_fraction=0.2, seed=1,
                                     balance="weights", duplicate_threshold=6, identity_csv=ids, progress=False,
                                     embedding_threshold=0)  # synthetic crops are not faces
    written = splits.read_split(tmp_path / "out" / "split.csv")
    assert len(written) == len(split) == 48 and "nofacexxxx" not in set(written.video_id)
    assert list(written.columns[-4:]) == ["group", "split", "weight", "nearest_train_distance"]
    assert list(written.columns[:len(FACE_COLUMNS)]) == FACE_COLUMNS and "identity" in written
    assert written.groupby("group").split.nunique().max() == 1
    assert written.loc[written.video_id.str.startswith(("real0000", "real0001")), "group"].nunique() == 1
    on_disk = splits.read_audit(tmp_path / "out" / "split_audit.json")
    assert on_disk == json.loads(json.dumps(audit))
    assert audit["groups_spanning_splits"] == 0 and audit["links_crossing_splits"] == 0
    assert audit["rows"] == {"faces_csv": 49, "usable": 48, "not_usable": 1, "in_split_csv": 48}
    assert audit["groups"]["count"] == 7 and audit["links"]["original"] == 16 and audit["links"]["identity"] == 2
    assert audit["balance"]["mode"] == "weights" and audit["seed"] == 1
    assert {s: v["faces"] for s, v in audit["splits"].items()} == written.split.value_counts().to_dict()
    assert audit["near_duplicates"]["count"] == {"val": 0, "test": 0}
    assert written[written.split == "train"].weight.mean() == pytest.approx(1.0)
    assert audit["links"]["videos_with_identity"] == 2 and not audit["warnings"]
    table = splits.audit_table(audit)
    assert list(table.index) == list(splits.SPLITS) and table.faces.sum() == 48
    assert splits.duplicate_examples(audit).empty


def test_an_identity_csv_that_names_no_video_is_flagged(tmp_path):
    faces_csv = write_faces_csv(tmp_path / "in", n_people=4)
    ids = tmp_path / "ids.csv"
    ids.write_text("video,identity\nsomeothervideo.mp4,A\n")
    _, audit = splits.make_split(faces_csv, tmp_path / "out", identity_csv=ids, progress=False, embedding_threshold=0)
    assert any("names none of the videos" in w for w in audit["warnings"])


def test_make_split_refuses_a_manifest_without_usable_faces(tmp_path):
    path = tmp_path / "faces.csv"
    pd.DataFrame([{"video_id": "a", "label": "REAL", "status": "no_face"}]).reindex(columns=FACE_COLUMNS).to_csv(
        path, index=False)
    with pytest.raises(ValueError, match="faces.csv holds no usable face"):
        splits.make_split(path, tmp_path / "out", progress=False)
    with pytest.raises(FileNotFoundError, match="run notebook 02"):
        splits.make_split(tmp_path / "absent.csv", tmp_path / "out", progress=False)


@pytest.mark.notebook
@pytest.mark.slow
def test_notebook_03_runs_through_the_runner(tmp_path):
    faces_csv = write_faces_csv(tmp_path / "in", n_people=6)
    out_dir, figures = tmp_path / "03_split", tmp_path / "figures"
    demo = yaml.safe_load((ROOT / "params" / "demo.yaml").read_text())["03_split"]
    profile = tmp_path / "p.yaml"
    profile.write_text(yaml.safe_dump({"03_split": {**demo, "FACES_CSV": str(faces_csv), "OUT_DIR": str(out_dir),
                                                    "FIGURES_DIR": str(figures), "IDENTITY_CSV": "",
                                                    "FRAMES_CSV": "", "EMBEDDING_THRESHOLD": 0.0,
                                                    "TEST_FRAMES_PER_VIDEO": 0}}))
    pipeline.run_pipeline(str(profile), only=["03"], out_dir=tmp_path / "build")
    audit = splits.read_audit(out_dir / "split_audit.json")
    split = splits.read_split(out_dir / "split.csv")
    assert audit["groups_spanning_splits"] == 0 and set(split.split) == set(splits.SPLITS)
    assert {p.name for p in figures.glob("03_*.png")} >= {"03_split_sizes.png", "03_duplicate_distances.png"}
