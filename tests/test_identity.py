"""Identity embeddings and clusters: dlib descriptors, video means, sparse average linkage, threshold, audit."""
from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist

from helpers import faces as face_helpers
from helpers import identity
from helpers.identity import EMBEDDING_COLUMNS


def same_partition(a, b) -> bool:
    """Whether two label arrays group the items identically (label values aside)."""
    a, b = np.asarray(a), np.asarray(b)
    return len(set(zip(a, b))) == len(set(a)) == len(set(b))


def write_image(path, image) -> str:
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return str(path)


def smooth_face_like(size: int = 96, seed: int = 0) -> np.ndarray:
    """A smooth RGB image with two dark 'eyes' and a 'mouth': any input runs through dlib, this one is plausible."""
    rng = np.random.default_rng(seed)
    image = np.full((size, size, 3), 170, np.uint8) + rng.integers(0, 20, (1, 1, 3)).astype(np.uint8)
    for x, y, r in [(0.35, 0.42, 0.06), (0.65, 0.42, 0.06), (0.5, 0.72, 0.05)]:
        cv2.circle(image, (int(x * size), int(y * size)), int(r * size), (60, 40, 40), -1)
    return cv2.GaussianBlur(image, (5, 5), 0)


# --- Descriptors -------------------------------------------------------------------------------------

def test_model_files_are_found_without_importing_the_package():
    paths = identity.model_paths()
    assert set(paths) == {"shape_predictor", "recognition"}
    assert all(p.is_file() and p.stat().st_size > 1_000_000 for p in paths.values())


def test_embed_faces_records_unreadable_files_and_keeps_positions(tmp_path):
    good = write_image(tmp_path / "good.jpg", smooth_face_like())
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not a jpeg at all")
    missing = str(tmp_path / "missing.jpg")
    tiny = write_image(tmp_path / "tiny.jpg", smooth_face_like(8))
    blank = write_image(tmp_path / "blank.jpg", np.zeros((64, 64, 3), np.uint8))
    emb, failed = identity.embed_faces([good, str(corrupt), missing, good, tiny, blank], progress=False)
    assert emb.shape == (6, identity.DIM) and emb.dtype == np.float32
    assert np.isfinite(emb[[0, 3]]).all() and np.isnan(emb[[1, 2, 4, 5]]).all()
    np.testing.assert_array_equal(emb[0], emb[3])  # the same crop gives the same descriptor
    assert 1.0 < np.linalg.norm(emb[0]) < 2.0  # raw dlib descriptors, not unit vectors
    assert [p for p, _ in failed] == [1, 2, 4, 5]
    reasons = dict(failed)
    assert str(corrupt) in reasons[1] and "cannot be decoded" in reasons[1]
    assert missing in reasons[2] and "does not exist" in reasons[2]
    assert tiny in reasons[4] and "too small" in reasons[4]
    assert blank in reasons[5] and "flat colour" in reasons[5]


def test_embed_faces_checks_its_arguments(tmp_path):
    with pytest.raises(ValueError, match="landmarks has 1 rows for 2 paths"):
        identity.embed_faces(["a.jpg", "b.jpg"], landmarks=np.zeros((1, 5, 2)), progress=False)
    with pytest.raises(ValueError, match="margin"):
        identity.embed_faces(["a.jpg"], margin=0.5, progress=False)


def test_landmarks_move_the_face_rectangle(tmp_path):
    image = smooth_face_like(128)
    path = write_image(tmp_path / "face.jpg", image)
    # landmarks far to the left put the rectangle, hence the aligned chip and its descriptor, elsewhere
    left = np.array([[0.1, 0.3], [0.3, 0.3], [0.2, 0.45], [0.12, 0.6], [0.28, 0.6]])
    emb, failed = identity.embed_faces([path, path, path], landmarks=np.stack([left, np.full((5, 2), np.nan), left]),
                                       progress=False)
    assert not failed
    np.testing.assert_array_equal(emb[0], emb[2])
    assert np.linalg.norm(emb[0] - emb[1]) > 1e-3


def test_face_rectangle_from_geometry_and_from_landmarks():
    rect = identity.face_rectangle(224, 224, margin=1.3)
    box = 224 / 1.3  # the face box is the central 1/margin of the crop
    assert rect.width() == pytest.approx(identity.BOX_SIDE * box, abs=2)
    assert rect.center().x == pytest.approx(112, abs=1)
    assert rect.center().y == pytest.approx(112 + identity.BOX_SHIFT * box, abs=1)
    points = np.array([[80, 100], [140, 100], [110, 130], [85, 160], [135, 160]], dtype=float)
    rect = identity.face_rectangle(224, 224, 1.3, points)
    assert rect.width() == pytest.approx(identity.LANDMARK_SIDE * 60, abs=2)  # eyes to mouth: 60 px
    assert (rect.center().x, rect.center().y) == pytest.approx(tuple(points.mean(0)), abs=1)
    # landmarks on top of each other (or NaN) fall back to the geometry
    degenerate = identity.face_rectangle(224, 224, 1.3, np.full((5, 2), 50.0))
    assert degenerate.width() == identity.face_rectangle(224, 224, 1.3).width()


def test_landmark_fractions_agree_with_crop_landmarks():
    points = [(40, 50), (70, 50), (55, 65), (45, 80), (66, 81)]
    row = {f"{n}_{a}": v for n, (x, y) in zip(face_helpers.LANDMARK_NAMES, points) for a, v in (("x", x), ("y", y))}
    row.update(crop_x0=10.0, crop_y0=20.0, crop_side=100.0)
    table = pd.DataFrame([row, {**row, "left_eye_x": np.nan}])
    fractions = identity.landmark_fractions(table)
    assert fractions.shape == (2, 5, 2)
    np.testing.assert_allclose(fractions[0] * 128, face_helpers.crop_landmarks(table.iloc[0], 128))
    assert np.isnan(fractions[1, 0, 0]) and np.isfinite(fractions[1, 1:]).all()
    with pytest.raises(KeyError, match="crop_side"):
        identity.landmark_fractions(table.drop(columns="crop_side"))


# --- Videos ------------------------------------------------------------------------------------------

def test_video_embeddings_mean_rescaled_to_the_faces_norm():
    e = np.zeros((5, identity.DIM))
    e[0, 0], e[1, 1] = 1.5, 1.5      # video b: two faces at right angles, both of norm 1.5
    e[2, 0] = 1.2                    # video a: one face
    e[3] = np.nan                    # video a: an unreadable crop
    e[4] = np.nan                    # video c: nothing readable
    faces = pd.DataFrame({"video_id": ["b", "b", "a", "a", "c"], "label": ["FAKE", "FAKE", "REAL", "REAL", "REAL"],
                          "original": ["a", "a", None, None, None]})
    table = identity.video_embeddings(faces, e)
    assert table.video_id.tolist() == ["a", "b", "c"]
    assert table.n_faces.tolist() == [1, 2, 0]
    assert table.label.tolist() == ["REAL", "FAKE", "REAL"] and table.original.iloc[1] == "a"
    x = table[EMBEDDING_COLUMNS].to_numpy(float)
    np.testing.assert_allclose(x[0, :2], [1.2, 0.0], atol=1e-6)
    # the plain mean would have norm 1.06; rescaled, it keeps its faces' 1.5
    np.testing.assert_allclose(x[1, :2], [1.5 / np.sqrt(2)] * 2, atol=1e-6)
    assert np.isnan(x[2]).all()
    with pytest.raises(ValueError, match="one row per faces row"):
        identity.video_embeddings(faces, e[:4])


# --- Clustering ----------------------------------------------------------------------------------------

def test_radius_pairs_match_brute_force_across_chunks():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 5)) * 0.5
    i, j, d2 = identity.radius_pairs(x, 0.8, max_cells=100)  # 100 cells: many chunks of one or two rows
    full = np.linalg.norm(x[:, None] - x[None], axis=2)
    expected = {(a, b) for a in range(60) for b in range(a + 1, 60) if full[a, b] <= 0.8}
    assert set(zip(i.tolist(), j.tolist())) == expected and len(i) == len(expected)
    np.testing.assert_allclose(d2, full[i, j] ** 2)


@pytest.mark.parametrize("seed", range(6))
def test_average_linkage_is_exact_upgma_on_squared_distances(seed):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, 8))
    x = centres[rng.integers(0, 6, 80)] + rng.normal(size=(80, 8)) * 0.35
    threshold = float(rng.uniform(0.6, 1.6))
    ours = identity.cluster_identities(x, threshold, "average")
    reference = fcluster(linkage(pdist(x, "sqeuclidean"), "average"), threshold ** 2, "distance")
    assert same_partition(ours, reference)
    assert 1 < len(set(ours)) < len(x)  # the case is neither trivial nor all singletons


def test_average_linkage_does_not_chain_where_single_linkage_does():
    # Two people, five videos each, 1.0 apart, and one fake halfway whose face is half of each: the
    # bridge is within 0.55 of both sides, so single linkage makes one person of all eleven.
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, identity.DIM)) * 0.005
    b = a[::-1] + np.eye(identity.DIM)[0] * 1.0
    bridge = np.eye(identity.DIM)[:1] * 0.5
    x = np.vstack([a, b, bridge])
    single = identity.cluster_identities(x, 0.55, "single")
    average = identity.cluster_identities(x, 0.55, "average")
    assert len(set(single)) == 1
    # The bridge joins one side (RMS distance 0.5 to it); the merged side is then 0.94 RMS from the other.
    assert len(set(average)) == 2
    assert len(set(average[:5])) == 1 and len(set(average[5:10])) == 1 and average[0] != average[5]
    assert average[10] in (average[0], average[5])


def test_videos_without_embeddings_are_clusters_of_their_own():
    x = np.zeros((4, identity.DIM))
    x[1] = np.nan
    x[3] = np.nan
    labels = identity.cluster_identities(pd.DataFrame(x, columns=EMBEDDING_COLUMNS), 0.5)
    assert labels[0] == labels[2] and len({labels[0], labels[1], labels[3]}) == 3
    assert sorted(set(labels.tolist())) == [0, 1, 2]


def test_cluster_identities_rejects_bad_settings():
    x = np.zeros((2, identity.DIM))
    with pytest.raises(ValueError, match="linkage must be one of"):
        identity.cluster_identities(x, 0.5, "ward")
    with pytest.raises(ValueError, match="threshold"):
        identity.cluster_identities(x, 0.0)
    with pytest.raises(KeyError, match="embedding columns"):
        identity.cluster_identities(pd.DataFrame({"video_id": ["a"]}), 0.5)


# --- Threshold and audit ---------------------------------------------------------------------------------

def line(*positions) -> np.ndarray:
    """Embeddings on one axis, at these positions."""
    x = np.zeros((len(positions), identity.DIM))
    x[:, 0] = positions
    return x


def test_choose_threshold_prefers_recall_within_the_false_merge_budget():
    # same-identity pairs at 0.3, 0.5, 0.5 and 0.8; the nearest different pair is 1.2 apart
    x = line(0.0, 0.3, 0.8, 2.0, 2.5, 4.0)
    labels = ["a", "a", "a", "b", "b", "c"]
    chosen, table = identity.choose_threshold(x, labels)
    assert chosen == 0.8 and table.loc[table.threshold == 0.8, "false_merge"].iloc[0] == 0
    assert table.attrs["same_pairs"] == 4 and table.attrs["different_pairs"] == 11
    assert identity.choose_threshold(x, labels, recall=0.75)[0] == 0.5  # three of the four pairs
    # a different pair 0.455 apart: reaching every same pair would merge it, so the largest threshold below it
    chosen, _ = identity.choose_threshold(line(0.0, 0.3, 0.8, 1.255), ["a", "a", "a", "b"])
    assert chosen == 0.45
    with pytest.raises(ValueError, match="same- and different-identity pairs"):
        identity.choose_threshold(line(0.0, 1.0), ["a", "b"])


def test_cross_split_matches_finds_the_nearest_train_video():
    video_emb = pd.DataFrame(line(0.0, 3.0, 0.1, 2.0, 6.0, 0.0), columns=EMBEDDING_COLUMNS)
    video_emb.loc[5, EMBEDDING_COLUMNS] = np.nan
    video_emb.insert(0, "video_id", ["t1", "t2", "v1", "s1", "s2", "v2"])
    split = pd.Series({"t1": "train", "t2": "train", "v1": "val", "s1": "test", "s2": "test", "v2": "val"})
    table = identity.cross_split_matches(video_emb, split, threshold=0.6)
    assert table.video_id.tolist() == ["v1", "s1", "s2", "v2"]  # closest first, no embedding last
    assert table.nearest_train.tolist()[:3] == ["t1", "t2", "t2"]
    np.testing.assert_allclose(table.distance.iloc[:3], [0.1, 1.0, 3.0])
    assert table.same_identity.tolist() == [True, False, False, False]
    assert pd.isna(table.distance.iloc[3]) and pd.isna(table.nearest_train.iloc[3])
    assert identity.cross_split_matches(video_emb, split).columns.tolist() == [
        "video_id", "split", "nearest_train", "distance", "same_identity"]


# --- Real photos ---------------------------------------------------------------------------------------

# Who is who in ../shared/data/faces, decided by looking at the photos: each face by its centre as a
# fraction of the photo's width and height, and a person label. obama and biden as the file names say;
# A: the woman with dark hair pulled back (couple left, img1, the selfie's lower left); B: the man with
# swept-back fair hair (couple right, the selfie's right); C-H: the six people of the group photos
# multiface.jpg and t1.jpg, who are the same six in both, and C is also img12. Everyone else is seen
# once. obama_partial_face.jpg's second detection is a false positive (no face) and is left out.
PHOTO_FACES = {
    "32bit.png": [(0.53, 0.35, "obama")],
    "obama-240p.jpg": [(0.52, 0.23, "obama")],
    "obama_partial_face.jpg": [(0.20, 0.22, "obama")],
    "obama_and_biden.jpg": [(0.62, 0.34, "obama"), (0.42, 0.36, "biden"), (0.85, 0.80, "girl_beside_them")],
    "two_people.jpg": [(0.28, 0.19, "obama"), (0.77, 0.22, "biden")],
    "couple.jpg": [(0.29, 0.57, "A"), (0.76, 0.44, "B")],
    "img1.jpg": [(0.52, 0.31, "A")],
    "selfie-many-people.jpg": [(0.25, 0.61, "A"), (0.70, 0.33, "B"), (0.43, 0.31, "bearded_man_selfie"),
                               (0.06, 0.50, "woman_at_selfie_edge")],
    "img12.jpg": [(0.52, 0.38, "C")],
    "img25.jpg": [(0.52, 0.44, "man_with_glasses_img25")],
    "img27.jpg": [(0.52, 0.25, "woman_pink_background_img27")],
    "multiface.jpg": [(0.76, 0.79, "D"), (0.38, 0.30, "E"), (0.49, 0.16, "F"), (0.22, 0.48, "C"),
                      (0.55, 0.39, "G"), (0.63, 0.83, "H")],
    "t1.jpg": [(0.75, 0.15, "D"), (0.62, 0.46, "E"), (0.40, 0.38, "F"), (0.09, 0.37, "C"),
               (0.92, 0.38, "G"), (0.25, 0.24, "H")],
}
# In t1.jpg D is in near profile and H has her eyes closed and head tilted: 0.63 and 0.62 from their
# multiface.jpg faces, above DEFAULT_THRESHOLD (and dlib's 0.6), so those two stay apart.
HARD_POSE = {"D", "H"}


def crop_photo_faces(folder, out_dir) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The PHOTO_FACES faces cropped as notebook 02 does (MTCNN, square_crop): paths, landmark fractions, people."""
    detector = face_helpers.FaceDetector(detect_max_side=1024, threads=2)  # every face stays >= 50 px
    paths, fractions, people = [], [], []
    for name, expected in PHOTO_FACES.items():
        image = face_helpers.read_image(folder / name)
        height, width = image.shape[:2]
        found = face_helpers.select_faces(detector.detect_one(image), keep="all", min_confidence=0.9)
        centres = np.array([[(f.box[0] + f.box[2] / 2) / width, (f.box[1] + f.box[3] / 2) / height] for f in found])
        for k, (cx, cy, person) in enumerate(expected):
            gap = np.hypot(*(centres - [cx, cy]).T) if len(found) else np.array([np.inf])
            assert gap.min() < 0.06, f"{name}: MTCNN found no face near ({cx}, {cy}) for {person}"
            face = found[int(gap.argmin())]
            crop, square = face_helpers.square_crop(image, face.box, margin=1.3, size=224)
            paths.append(write_image(out_dir / f"{name}_{k}.jpg", crop))
            fractions.append(face_helpers.to_crop_coords(face.landmarks, square, 224) / 224)
            people.append(person)
    return paths, np.array(fractions), np.array(people)


@pytest.mark.realdata
@pytest.mark.slow
def test_real_photos_cluster_by_person(shared_data, tmp_path):
    paths, fractions, people = crop_photo_faces(shared_data / "faces", tmp_path)
    emb, failed = identity.embed_faces(paths, fractions, progress=False)
    assert not failed and np.isfinite(emb).all()

    same, different = identity.pair_distances(emb, people)
    assert len(same) == 23 and len(different) == 412
    assert different.min() > identity.DEFAULT_THRESHOLD  # different people apart, pair by pair
    assert np.median(same) < 0.5 < np.median(different)

    labels = identity.cluster_identities(emb, identity.DEFAULT_THRESHOLD)
    for cluster in set(labels.tolist()):
        assert len(set(people[labels == cluster])) == 1, f"cluster mixes {sorted(set(people[labels == cluster]))}"
    for person in set(people.tolist()) - HARD_POSE:
        assert len(set(labels[people == person])) == 1, f"{person}'s photos are split over clusters"
    assert len(set(labels.tolist())) == len(set(people.tolist())) + len(HARD_POSE)
