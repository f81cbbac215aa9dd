"""Face crops, region crops, colour handling, detection on a downscaled copy (FaceDetector, the mtcnn package), and
the extract_faces stage (with its default detector, mtcnn-torch; tests/test_detectors.py compares the backends)."""
from __future__ import annotations

import copy
import functools

import cv2
import numpy as np
import pandas as pd
import pytest

from helpers import faces, frames
from helpers.faces import Face

GREY = 128
# Synthetic landmarks in a 100 px crop: eyes 40 px apart at y=40, nose at y=55, mouth corners at y=70.
LANDMARKS = np.array([[30, 40], [70, 40], [50, 55], [35, 70], [65, 70]], dtype=np.float64)


@pytest.fixture(scope="module")
def detector():
    """One MTCNN for the module (building the first one costs seconds), at full resolution."""
    return faces.FaceDetector(detect_max_side=0, threads=2)


def with_side(detector: faces.FaceDetector, detect_max_side: int) -> faces.FaceDetector:
    """The same MTCNN, detecting on a copy with a different longer side."""
    other = copy.copy(detector)
    other.detect_max_side = detect_max_side
    return other


@functools.cache
def lfw_portrait(index: int, size: int = 120) -> np.ndarray:
    """LFW face `index` from scikit-image (25x25 grey), upscaled to a `size` px RGB portrait."""
    from skimage.data import lfw_subset

    grey = (lfw_subset()[index] * 255).astype(np.uint8)
    return faces.to_rgb(cv2.resize(grey, (size, size), interpolation=cv2.INTER_CUBIC))


def canvas(portraits=((0, 400, 200),), shape=(540, 960), size=120) -> np.ndarray:
    """A flat grey frame with LFW portraits (index, x, y) pasted in."""
    image = np.full((*shape, 3), GREY, np.uint8)
    for index, x, y in portraits:
        image[y:y + size, x:x + size] = lfw_portrait(index, size)
    return image


# --- square_crop --------------------------------------------------------------------------------------

def expected_crop(image: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """The square (x0, y0, side) of `image` at scale 1, black wherever it leaves the image."""
    pad = side
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    return padded[y0 + pad:y0 + pad + side, x0 + pad:x0 + pad + side]


def test_square_crop_in_the_middle_is_the_exact_square():
    image = np.full((200, 300, 3), 60, np.uint8)
    image[50:90, 100:140] = 255  # the "face": box (100, 50, 40, 40)
    crop, square = faces.square_crop(image, (100, 50, 40, 40), margin=1.5, size=60)
    assert square.tolist() == [90, 40, 60]  # side 1.5 x 40, centred on (120, 70)
    np.testing.assert_array_equal(crop, image[40:100, 90:150])

    crop, _ = faces.square_crop(image, (100, 50, 40, 40), margin=1.5, size=120)  # scale 2
    assert crop.shape == (120, 120, 3)
    rows, cols = np.nonzero(crop[..., 0] > 200)
    assert rows.min() == cols.min() == 20 and abs(rows.max() - 99) <= 1 and abs(cols.max() - 99) <= 1

    crop, _ = faces.square_crop(image, (100, 50, 80, 40), margin=1.0, size=50)  # wide box: the longer side counts
    assert crop.shape == (50, 50, 3)


def test_shrinking_a_big_face_averages_instead_of_aliasing():
    stripes = np.zeros((900, 900, 3), np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes: any point sampling shows them, averaging gives grey
    crop, _ = faces.square_crop(stripes, (100, 100, 600, 600), margin=1.0, size=224)
    assert abs(crop.mean() - 127.5) < 2 and crop.std() < 30
    crop, _ = faces.square_crop(stripes, (100, 100, 448, 448), margin=1.0, size=224)  # exactly 2x
    assert np.abs(crop.astype(int) - 127.5).max() <= 1


def test_shrinking_keeps_the_face_where_to_crop_coords_says():
    image = np.zeros((900, 900, 3), np.uint8)
    image[395:406, 395:406] = 255  # a dot centred on (400, 400)
    crop, square = faces.square_crop(image, (100, 100, 600, 600), margin=1.0, size=224)
    rows, cols = np.indices(crop.shape[:2])
    weight = crop[..., 0].astype(float)
    centroid = [(cols * weight).sum() / weight.sum(), (rows * weight).sum() / weight.sum()]
    np.testing.assert_allclose(centroid, faces.to_crop_coords([[400, 400]], square, 224)[0], atol=0.05)


@pytest.mark.parametrize("centre", [(10, 50), (150, 50), (80, 5), (80, 95),  # left, right, top, bottom
                                    (10, 5), (150, 5), (10, 95), (150, 95)])  # the four corners
def test_square_crop_at_the_border_pads_black_and_keeps_the_face_centred(centre):
    image = np.full((100, 160, 3), 255, np.uint8)
    cx, cy = centre
    image[cy, cx] = (255, 0, 0)  # the face's centre
    crop, square = faces.square_crop(image, (cx - 20, cy - 20, 40, 40), margin=1.5, size=60)
    assert crop.shape == (60, 60, 3)
    assert square.tolist() == [cx - 30, cy - 30, 60]
    np.testing.assert_array_equal(crop, expected_crop(image, cx - 30, cy - 30, 60))
    assert (crop == 0).all(axis=2).any(), "the part outside the frame must be black"
    assert crop[30, 30].tolist() == [255, 0, 0]

    big, _ = faces.square_crop(image, (cx - 20, cy - 20, 40, 40), margin=1.5, size=224)
    assert big.shape == (224, 224, 3)


def test_a_box_larger_than_the_image_pads_all_round():
    image = np.full((40, 40, 3), 200, np.uint8)
    crop, square = faces.square_crop(image, (-10, -10, 60, 60), margin=1.0, size=60)
    assert square.tolist() == [-10, -10, 60]
    assert (crop[10:50, 10:50] == 200).all()
    inside = np.zeros((60, 60), bool)
    inside[10:50, 10:50] = True
    assert (crop[~inside] == 0).all()
    crop, _ = faces.square_crop(image, (0, 0, 40, 40), margin=1.3, size=224)
    assert crop.shape == (224, 224, 3) and (crop[0] == 0).all() and (crop[112, 112] == 200).all()


def test_an_empty_box_is_refused():
    with pytest.raises(ValueError, match="empty"):
        faces.square_crop(np.zeros((10, 10, 3), np.uint8), (5, 5, 0, 0))


def test_to_crop_coords_maps_the_box_centre_to_the_crop_centre():
    box = (37.3, 81.9, 50.2, 70.4)
    _, square = faces.square_crop(np.zeros((300, 300, 3), np.uint8), box, margin=1.3, size=224)
    centre = [box[0] + box[2] / 2, box[1] + box[3] / 2]
    np.testing.assert_allclose(faces.to_crop_coords([centre], square, 224), [[112, 112]])
    corners = [[square[0], square[1]], [square[0] + square[2], square[1] + square[2]]]
    np.testing.assert_allclose(faces.to_crop_coords(corners, square, 224), [[0, 0], [224, 224]])


# --- regions --------------------------------------------------------------------------------------------

def test_region_geometry_is_the_documented_one():
    assert faces.REGION_GEOMETRY == {"eyes": {"pad_x": 0.55, "half_height": 0.45},
                                     "lower": {"pad_x": 0.45, "top_nose_mouth": 0.5, "below_mouth": 0.75}}


def test_region_boxes_by_hand():
    # d = 40 (eye to eye), m = 30 (eyes to mouth). eyes: x 30 - 22 .. 70 + 22, y 40 - 18 .. 40 + 18.
    # lower: x 35 - 18 .. 65 + 18, y from 55 + 0.5 * 15 = 62.5 (floor 62) to 70 + 0.75 * 30 = 92.5 (ceil 93).
    assert faces.region_boxes(LANDMARKS, 100) == {"eyes": (8, 22, 92, 58), "lower": (17, 62, 83, 93)}


def test_region_boxes_are_clipped_to_the_crop():
    near_top_left = LANDMARKS - [20, 35]  # eyes at y = 5: the band starts above the crop
    assert faces.region_boxes(near_top_left, 100) == {"eyes": (0, 0, 72, 23), "lower": (0, 27, 63, 58)}
    # in a 60 px crop the right of both bands and the whole lower band run out: at least one pixel stays
    assert faces.region_boxes(LANDMARKS, 60) == {"eyes": (8, 22, 60, 58), "lower": (17, 59, 60, 60)}


def test_crop_regions_cut_and_mask_the_bands():
    face = np.random.default_rng(0).integers(1, 256, (100, 100, 3), dtype=np.uint8)  # no zeros: black = masked
    regions = faces.crop_regions(face, LANDMARKS)
    assert set(regions) == set(faces.REGIONS)
    np.testing.assert_array_equal(regions["eyes"], face[22:58, 8:92])
    np.testing.assert_array_equal(regions["lower"], face[62:93, 17:83])
    both = regions["eyes_lower"]
    assert both.shape == face.shape
    inside = np.zeros((100, 100), bool)
    inside[22:58, 8:92] = inside[62:93, 17:83] = True
    np.testing.assert_array_equal(both[inside], face[inside])
    assert (both[~inside] == 0).all()
    assert set(faces.crop_regions(face, LANDMARKS, ["eyes"])) == {"eyes"}


def test_unknown_region_is_refused():
    with pytest.raises(ValueError, match="unknown region.*mouth"):
        faces.crop_regions(np.zeros((100, 100, 3), np.uint8), LANDMARKS, ["eyes", "mouth"])


# --- colour ----------------------------------------------------------------------------------------------

def test_to_rgb_handles_grey_alpha_order_and_floats():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for image in (grey, grey[..., None]):
        rgb = faces.to_rgb(image)
        assert rgb.shape == (3, 4, 3) and rgb.dtype == np.uint8
        assert (rgb == grey[..., None]).all()
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 10, 99
    assert faces.to_rgb(rgba)[0, 0].tolist() == [10, 0, 0]
    assert faces.to_rgb(rgba, channel_order="BGR")[0, 0].tolist() == [0, 0, 10]  # BGRA as OpenCV reads it
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 0] = 200  # blue in OpenCV's order
    assert faces.to_rgb(bgr, channel_order="BGR")[0, 0].tolist() == [0, 0, 200]
    assert faces.to_rgb(bgr)[0, 0].tolist() == [200, 0, 0]
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    for dtype in (np.float64, np.float32):  # floats in 0..1 are scaled back to the same levels
        np.testing.assert_array_equal(faces.to_rgb((levels / 255).astype(dtype)), faces.to_rgb(levels))
    assert faces.to_rgb(np.full((2, 2, 3), 300.0))[0, 0].tolist() == [255, 255, 255]  # others are clipped


@pytest.mark.parametrize("bad", [np.zeros((2, 2, 2), np.uint8), np.zeros((2, 2, 3, 1), np.uint8)])
def test_to_rgb_refuses_other_shapes(bad):
    with pytest.raises(ValueError, match="shape"):
        faces.to_rgb(bad)


def test_to_rgb_refuses_an_unknown_channel_order():
    with pytest.raises(ValueError, match="channel_order"):
        faces.to_rgb(np.zeros((2, 2, 3), np.uint8), channel_order="GBR")


# --- detection on a downscaled copy ---------------------------------------------------------------------

def test_downscale_and_map_back_are_inverse():
    image = np.zeros((540, 960, 3), np.uint8)
    small, scale = faces.downscale(image, 320)
    assert small.shape == (180, 320, 3) and scale == pytest.approx(1 / 3)
    portrait, _ = faces.downscale(np.zeros((960, 540, 3), np.uint8), 320)
    assert portrait.shape == (320, 180, 3)
    for max_side in (0, 960, 2000):  # 0 = never; never upscaled
        same, one = faces.downscale(image, max_side)
        assert same is image and one == 1.0
    found = [Face(box=np.array([10.0, 20, 30, 40]), confidence=0.95, landmarks=LANDMARKS / 4)]
    back = faces.map_back(found, scale)
    np.testing.assert_allclose(back[0].box, [30, 60, 90, 120])
    np.testing.assert_allclose(back[0].landmarks, LANDMARKS * 3 / 4)
    assert back[0].confidence == 0.95 and back[0].area == pytest.approx(90 * 120)
    assert faces.map_back(found, 1.0) is found


def test_box_iou():
    assert faces.box_iou(np.array([0, 0, 10, 10]), np.array([0, 0, 10, 10])) == 1.0
    assert faces.box_iou(np.array([0, 0, 10, 10]), np.array([5, 0, 10, 10])) == pytest.approx(50 / 150)
    assert faces.box_iou(np.array([0, 0, 10, 10]), np.array([20, 20, 5, 5])) == 0.0


def test_detecting_on_a_downscaled_copy_maps_back_to_the_frame(detector):
    image = canvas()  # one 120 px face at (400, 200) in a 960 x 540 frame
    full = detector.detect_one(image)
    small = with_side(detector, 320).detect_one(image)
    assert len(full) == len(small) == 1
    a, b = full[0], small[0]
    assert a.confidence > 0.95 and b.confidence > 0.95
    assert 400 <= a.box[0] + a.box[2] / 2 <= 520 and 200 <= a.box[1] + a.box[3] / 2 <= 320
    assert faces.box_iou(a.box, b.box) >= 0.8
    assert np.linalg.norm(a.landmarks - b.landmarks, axis=1).max() < 5
    left_eye, right_eye, nose, mouth_left, mouth_right = a.landmarks  # image coordinates, MTCNN's order
    assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


@pytest.mark.parametrize("detect_max_side, min_face_size, scale_factor", [(0, 60, 0.709), (0, 60, 0.6),
                                                                          (640, 48, 0.6), (320, 100, 0.709)])
def test_a_large_min_face_size_still_finds_big_faces(detector, detect_max_side, min_face_size, scale_factor):
    """mtcnn 1.0's pyramid breaks on a large min_face_size ("empty output" or no face at all); ours must not."""
    other = with_side(detector, detect_max_side)
    other.min_face_size, other.scale_factor = min_face_size, scale_factor
    found = other.detect([canvas(), canvas(((2, 40, 30),), shape=(200, 300))])
    assert [len(f) for f in found] == [1, 1] and min(f[0].confidence for f in found) > 0.9


def test_detect_batches_frames_of_any_size(detector):
    images = [canvas(), canvas(((1, 40, 30),), shape=(200, 300)), canvas(((2, 700, 300),))]
    batched = with_side(detector, 480).detect(images)
    one_by_one = [with_side(detector, 480).detect_one(image) for image in images]
    assert [len(f) for f in batched] == [1, 1, 1]
    for a, b in zip(batched, one_by_one):
        np.testing.assert_allclose(a[0].box, b[0].box, atol=0.5)
    with pytest.raises(ValueError, match="RGB uint8"):
        detector.detect([np.zeros((20, 20), np.uint8)])


# --- select_faces ---------------------------------------------------------------------------------------

def face(w: float, confidence: float) -> Face:
    return Face(box=np.array([0.0, 0.0, w, w]), confidence=confidence, landmarks=np.zeros((5, 2)))


def test_select_faces():
    small, big, unsure = face(20, 0.99), face(50, 0.95), face(80, 0.7)
    found = [small, unsure, big]
    assert faces.select_faces(found) == [big]
    assert faces.select_faces(found, keep="all") == [big, small]
    assert faces.select_faces(found, keep="all", min_confidence=0.5) == [unsure, big, small]
    assert faces.select_faces(found, min_confidence=0.99) == [small]
    assert faces.select_faces([face(50, 0.5)]) == []
    with pytest.raises(ValueError, match="KEEP"):
        faces.select_faces(found, keep="biggest")


# --- extract_faces --------------------------------------------------------------------------------------

FACE_SIZE = 64
FRAME = (270, 480)


def write_frame(folder, name: str, image: np.ndarray) -> str:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return str(path)


def frame_row(video_id, label, original, index, path, shape=FRAME, status="ok", reason=""):
    return {"video_id": video_id, "part": "part_a", "video_path": f"videos/part_a/{video_id}.mp4", "label": label,
            "original": original, "frame_index": index, "n_frames": 30, "fps": 10.0, "width": shape[1],
            "height": shape[0], "frame_path": path, "status": status, "reason": reason}


@pytest.fixture
def frames_csv(tmp_path):
    """A REAL video with a fake (frame 10 the same size, frame 20 not), an unreadable frame, faceless frames."""
    folder = tmp_path / "frames" / "part_a"
    real10 = canvas(((0, 100, 60),), shape=FRAME)
    real20 = canvas(((0, 260, 80),), shape=FRAME)
    fake10 = canvas(((3, 100, 60),), shape=FRAME)  # the "swap": another face at the same place
    fake20 = canvas(((3, 200, 90),), shape=(300, 480))
    noise = np.random.default_rng(0).integers(0, 256, (*FRAME, 3), dtype=np.uint8)
    broken = folder / "brokenaaaa_00000.jpg"
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_bytes(b"not a jpeg at all")
    rows = [
        frame_row("realaaaaaa", "REAL", None, 10, write_frame(folder, "realaaaaaa_00010.jpg", real10)),
        frame_row("realaaaaaa", "REAL", None, 20, write_frame(folder, "realaaaaaa_00020.jpg", real20)),
        frame_row("fakeaaaaaa", "FAKE", "realaaaaaa", 10, write_frame(folder, "fakeaaaaaa_00010.jpg", fake10)),
        frame_row("fakeaaaaaa", "FAKE", "realaaaaaa", 20, write_frame(folder, "fakeaaaaaa_00020.jpg", fake20),
                  shape=(300, 480)),
        frame_row("brokenaaaa", "REAL", None, 0, str(broken)),
        frame_row("emptyaaaaa", "REAL", None, 0, write_frame(folder, "emptyaaaaa_00000.jpg",
                                                             np.full((*FRAME, 3), GREY, np.uint8))),
        frame_row("emptyaaaaa", "REAL", None, 1, write_frame(folder, "emptyaaaaa_00001.jpg", noise)),
        {**frame_row("goneaaaaaa", "FAKE", "realaaaaaa", None, None, status="missing",
                     reason="listed in metadata.json but the file is absent"),
         "n_frames": None, "fps": None, "width": None, "height": None},
    ]
    path = tmp_path / "frames" / "frames.csv"
    pd.DataFrame(rows, columns=frames.COLUMNS).to_csv(path, index=False)
    return path


def check_files(result: pd.DataFrame, face_size: int = FACE_SIZE) -> None:
    """Every crop of an ok row exists with the size its row implies."""
    for row in result[result.status == "ok"].itertuples():
        assert cv2.imread(row.face_path).shape == (face_size, face_size, 3)
        assert cv2.imread(row.eyes_lower_path).shape == (face_size, face_size, 3)
        landmarks = np.array([getattr(row, c) for c in faces.LANDMARK_COLUMNS]).reshape(5, 2)
        square = np.array([row.crop_x0, row.crop_y0, row.crop_side])
        boxes = faces.region_boxes(faces.to_crop_coords(landmarks, square, face_size), face_size)
        for name in ("eyes", "lower"):
            x0, y0, x1, y1 = boxes[name]
            assert cv2.imread(getattr(row, f"{name}_path")).shape == (y1 - y0, x1 - x0, 3)


def test_extract_faces_end_to_end(frames_csv, tmp_path):
    result = faces.extract_faces(frames_csv, tmp_path / "faces", face_size=FACE_SIZE)
    assert list(result.columns) == faces.COLUMNS
    by_frame = {(r.video_id, r.frame_index): r for r in result.itertuples()}
    assert len(result) == len(by_frame) == 7  # one row per frame: the missing video has no frame
    assert "goneaaaaaa" not in set(result.video_id)

    for key in [("realaaaaaa", 10), ("realaaaaaa", 20), ("fakeaaaaaa", 20)]:
        assert by_frame[key].status == "ok" and by_frame[key].box_source == "detected"
        assert by_frame[key].confidence >= 0.9 and by_frame[key].face_index == 0
    fake, real = by_frame[("fakeaaaaaa", 10)], by_frame[("realaaaaaa", 10)]
    assert fake.status == "ok" and fake.box_source == "original"
    assert (fake.x, fake.y, fake.w, fake.h, fake.crop_side) == (real.x, real.y, real.w, real.h, real.crop_side)
    assert 100 <= real.x + real.w / 2 <= 220 and 60 <= real.y + real.h / 2 <= 180  # where the face was pasted

    broken = by_frame[("brokenaaaa", 0)]
    assert broken.status == "unreadable" and "brokenaaaa_00000.jpg" in broken.reason
    assert "cannot be decoded" in broken.reason
    for index in (0, 1):
        empty = by_frame[("emptyaaaaa", index)]
        assert empty.status == "no_face" and empty.reason and pd.isna(empty.face_path)
    check_files(result)
    pd.testing.assert_frame_equal(faces.read_faces_manifest(tmp_path / "faces" / "faces.csv"), result)

    detected = faces.extract_faces(frames_csv, tmp_path / "no_reuse", face_size=FACE_SIZE, reuse_original_boxes=False)
    row = detected[(detected.video_id == "fakeaaaaaa") & (detected.frame_index == 10)].iloc[0]
    assert row.status == "ok" and row.box_source == "detected"


def test_keep_all_gives_one_row_per_face(tmp_path):
    two = canvas(((0, 40, 60), (2, 300, 100)), shape=FRAME)
    path = tmp_path / "frames.csv"
    pd.DataFrame([frame_row("twoaaaaaaa", "REAL", None, 0, write_frame(tmp_path, "p/twoaaaaaaa_00000.jpg", two))],
                 columns=frames.COLUMNS).to_csv(path, index=False)
    result = faces.extract_faces(path, tmp_path / "all", face_size=FACE_SIZE, keep="all", regions=["eyes"])
    assert result.status.tolist() == ["ok", "ok"] and result.face_index.tolist() == [0, 1]
    assert result.face_path.nunique() == 2 and result.eyes_lower_path.isna().all()
    assert sorted(result.x + result.w / 2) == [pytest.approx(100, abs=20), pytest.approx(360, abs=20)]
    largest = faces.extract_faces(path, tmp_path / "largest", face_size=FACE_SIZE)
    assert len(largest) == 1 and largest.x[0] == result.x[0]


@pytest.mark.parametrize("bad, match", [({"keep": "biggest"}, "KEEP"), ({"regions": ["nose"]}, "unknown region"),
                                        ({"face_size": 8}, "FACE_SIZE"), ({"shard": "2/2"}, "SHARD")])
def test_bad_settings_are_refused_before_any_work(frames_csv, tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        faces.extract_faces(frames_csv, tmp_path / "out", **bad)
    assert not (tmp_path / "out" / "faces.csv").exists()


def test_missing_frames_csv_says_which_notebook_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="notebook 01"):
        faces.extract_faces(tmp_path / "nope.csv", tmp_path / "out")


class Interrupt(BaseException):
    """Stands in for a kill: not an Exception, so nothing on the way catches it."""


def test_resume_after_interruption_finishes_without_redoing(frames_csv, tmp_path, monkeypatch):
    reference = faces.extract_faces(frames_csv, tmp_path / "ref", face_size=FACE_SIZE)

    calls = []
    real_extract = faces.extract_group

    def dying(task):
        if calls:
            raise Interrupt
        calls.append(task["key"])
        return real_extract(task)

    monkeypatch.setattr(faces, "extract_group", dying)
    with pytest.raises(Interrupt):
        faces.extract_faces(frames_csv, tmp_path / "run", face_size=FACE_SIZE)
    assert not (tmp_path / "run" / "faces.csv").exists()
    first = list(calls)

    calls.clear()
    monkeypatch.setattr(faces, "extract_group", lambda task: (calls.append(task["key"]), real_extract(task))[1])
    resumed = faces.extract_faces(frames_csv, tmp_path / "run", face_size=FACE_SIZE)
    assert first and not set(first) & set(calls), "a finished group was extracted again"
    assert sorted(first + calls) == ["brokenaaaa", "emptyaaaaa", "realaaaaaa"]  # a fake travels with its original
    path_columns = ["face_path", *[f"{r}_path" for r in faces.REGIONS]]
    normalise = lambda m, run: m.assign(**{c: m[c].str.replace(str(tmp_path / run), "", regex=False)  # noqa: E731
                                           for c in path_columns})
    pd.testing.assert_frame_equal(normalise(resumed, "run"), normalise(reference, "ref"))
    check_files(resumed)

    calls.clear()
    again = faces.extract_faces(frames_csv, tmp_path / "run", face_size=FACE_SIZE)
    assert calls == [] and len(again) == len(resumed)
