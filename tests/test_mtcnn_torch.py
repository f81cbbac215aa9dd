"""The torch MTCNN: weight layout, mtcnn 1.0's geometry and NMS, the detector's contract, no TensorFlow, parity.

The parity tests run the mtcnn package itself (helpers.faces.FaceDetector, TensorFlow) beside it.
"""
from __future__ import annotations

import glob
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

# torch before TensorFlow (the parity tests import both): the other order has crashed torch's extensions.
from helpers import mtcnn_torch as mt
from helpers.faces import Face, box_iou, read_image

ROOT = Path(__file__).resolve().parents[1]
PORTRAIT_PX = 120


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One torch thread here: torch loaded before OMP_WAIT_POLICY=PASSIVE (as pytest does) spins its idle
    OpenMP threads, and beside TensorFlow's threads on 2 cores that made the parity tests 3-5x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def detector() -> mt.TorchMTCNNDetector:
    return mt.TorchMTCNNDetector(detect_max_side=0, device="cpu")


@pytest.fixture(scope="module")
def portraits() -> np.ndarray:
    """Two LFW faces (scikit-image's offline sample) side by side on a grey 360 x 240 RGB frame."""
    from skimage import data  # noqa: PLC0415

    frame = np.full((240, 360, 3), 110, np.uint8)
    for k, face in enumerate(data.lfw_subset()[[0, 5]]):
        big = cv2.resize((face * 255).astype(np.float32), (PORTRAIT_PX, PORTRAIT_PX), interpolation=cv2.INTER_CUBIC)
        x0 = 40 + k * 160
        frame[60:60 + PORTRAIT_PX, x0:x0 + PORTRAIT_PX] = big.clip(0, 255).astype(np.uint8)[..., None]
    return frame


# --- weights ----------------------------------------------------------------------------------------

def test_weights_load_from_the_wheel_with_keras_layouts():
    pnet, rnet, onet = mt.load_networks()
    keras = mt.load_keras_weights(mt.weights_dir() / "onet.lz4")
    # conv kernel (kh, kw, in, out) -> (out, in, kh, kw); dense (in, out) -> (out, in); PReLU (1, 1, C) -> (C,)
    np.testing.assert_array_equal(onet.conv1.weight.numpy(), keras[0].transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(onet.prelu1.weight.numpy(), keras[2].reshape(-1))
    np.testing.assert_array_equal(onet.fc5.weight.numpy(), keras[12].T)
    np.testing.assert_array_equal(onet.fc6_3.bias.numpy(), keras[-1])
    assert pnet.conv4_2.weight.shape == (2, 32, 1, 1) and rnet.fc4.weight.shape == (128, 576)
    assert not any(p.requires_grad for net in (pnet, rnet, onet) for p in net.parameters())


def test_missing_weights_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="pnet.lz4"):
        mt.load_networks(tmp_path)


def test_flatten_follows_keras_permute_then_flatten():
    nhwc = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    keras = nhwc.transpose(0, 2, 1, 3).reshape(2, -1)  # Permute((2, 1, 3)) then Flatten
    ours = mt._flatten_keras(torch.from_numpy(nhwc).permute(0, 3, 1, 2))
    np.testing.assert_array_equal(ours.numpy(), keras)


# --- geometry ---------------------------------------------------------------------------------------

def test_pyramid_scales_and_level_sizes_follow_mtcnn():
    scales = mt.pyramid_scales(360, 640, min_face_size=16, scale_factor=0.6)
    np.testing.assert_allclose(scales, 0.75 * 0.6 ** np.arange(6))
    # 360 x 0.44999999999999996 is 161.99999999999997: TensorFlow truncates it to 161
    assert [mt.level_size(360, 640, s) for s in scales[:3]] == [(270, 480), (161, 288), (97, 172)]


@pytest.mark.parametrize("size", [(7, 11), (3, 5), (161, 288)])
def test_area_resize_matches_opencv(size):
    image = np.random.default_rng(0).uniform(-1, 1, (322, 577, 3)).astype(np.float32)
    expected = cv2.resize(image, size[::-1], interpolation=cv2.INTER_AREA)
    ours = mt.resize_area(torch.from_numpy(image).permute(2, 0, 1)[None], size)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    np.testing.assert_allclose(mt.area_matrix(577, size[1]).sum(axis=1), 1.0)


def test_crop_and_resize_follows_tensorflow():
    image = torch.arange(1, 5 * 5 * 2 + 1, dtype=torch.float32).reshape(1, 5, 5, 2)
    # The whole image sampled at its own size comes back unchanged (TF samples y1 (h - 1) .. y2 (h - 1)).
    whole = mt.crop_and_resize(image, torch.tensor([[0, 0, 0, 5, 5, 1.0]]), 5)
    assert whole.shape == (1, 2, 5, 5)
    np.testing.assert_allclose(whole[0].permute(1, 2, 0).numpy(), image[0].numpy(), atol=1e-5)
    wide = torch.rand(2, 7, 9, 3)
    for box in [(1.5, 0.2, 7.9, 6.1), (-6, -5, 6, 5), (3, 2, 14, 12)]:
        ours = mt.crop_and_resize(wide, torch.tensor([[1, *box, 1.0]]), 4)[0].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(ours, _tf_reference(wide[1].numpy(), box, 4), atol=1e-5)
    # Samples past the border are 0 (grey before normalisation), not the edge pixel.
    shifted = mt.crop_and_resize(image, torch.tensor([[0, -5, -5, 5, 5, 1.0]]), 5)[0].permute(1, 2, 0).numpy()
    assert (shifted[:2] == 0).all() and (shifted[:, :2] == 0).all()
    np.testing.assert_allclose(shifted[2:, 2:], image[0, ::2, ::2].numpy())  # samples at 0, 2, 4


def _tf_reference(image: np.ndarray, box, size: int) -> np.ndarray:
    """tf.image.crop_and_resize's loop (crop_and_resize_op.cc), written out for one box."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = box
    y1, y2, x1, x2 = y1 / height, y2 / height, x1 / width, x2 / width
    out = np.zeros((size, size, image.shape[2]), np.float64)
    for i in range(size):
        in_y = y1 * (height - 1) + i * (y2 - y1) * (height - 1) / (size - 1)
        if not 0 <= in_y <= height - 1:
            continue
        top, bottom, fy = int(np.floor(in_y)), int(np.ceil(in_y)), in_y - np.floor(in_y)
        for j in range(size):
            in_x = x1 * (width - 1) + j * (x2 - x1) * (width - 1) / (size - 1)
            if not 0 <= in_x <= width - 1:
                continue
            left, right, fx = int(np.floor(in_x)), int(np.ceil(in_x)), in_x - np.floor(in_x)
            upper = image[top, left] + (image[top, right] - image[top, left]) * fx
            lower = image[bottom, left] + (image[bottom, right] - image[bottom, left]) * fx
            out[i, j] = upper + (lower - upper) * fy
    return out


def test_square_and_regression_follow_mtcnn():
    rows = torch.tensor([[0, 10, 20, 30, 60, 0.9]], dtype=torch.float64)
    np.testing.assert_allclose(mt.to_square(rows)[0, 1:5].numpy(), [0, 20, 40, 60])
    moved = mt.regress(rows, torch.tensor([[0.1, 0.0, -0.1, 0.5]], dtype=torch.float64))
    np.testing.assert_allclose(moved[0, 1:5].numpy(), [12.1, 20, 27.9, 80.5])  # offsets x (w + 1, h + 1)


class FixedONet(torch.nn.Module):
    """ONet's outputs fixed: offsets (0.1, 0, 0, -0.2), every landmark at (0.25, 0.5) of the box, probability 0.95."""

    def forward(self, x):
        n = len(x)
        marks = torch.tensor([0.25] * 5 + [0.5] * 5).repeat(n, 1)
        return torch.tensor([[0.1, 0.0, 0.0, -0.2]]).repeat(n, 1), marks, torch.full((n,), 0.95)


def test_onet_places_landmarks_in_the_box_it_saw_and_boxes_are_fitted(detector, monkeypatch):
    rows = torch.tensor([[0, -10, 20, 29, 59, 0.8]])  # a 40 px box (w + 1 = 40) running past the left border
    monkeypatch.setattr(detector, "onet", FixedONet())
    monkeypatch.setattr(detector, "stage_pnet", lambda *args: rows)
    monkeypatch.setattr(detector, "stage_rnet", lambda images, r: r)
    [[face]] = detector.detect_batch([np.zeros((100, 120, 3), np.uint8)], 20)
    # adjust_landmarks: (w + 1) x fraction + x1 - 1, on the box before ONet's regression
    np.testing.assert_allclose(face.landmarks, [[-10 + 40 * 0.25 - 1, 20 + 40 * 0.5 - 1]] * 5)
    # regressed by (w + 1, h + 1) x offsets, then fitted to the image (x1 = -6 -> 0); landmarks are not
    np.testing.assert_allclose(face.box, [0, 20, 29, 59 - 8 - 20])
    assert face.confidence == pytest.approx(0.95)


# --- NMS --------------------------------------------------------------------------------------------

def rows_of(boxes, scores, images=None) -> torch.Tensor:
    images = images or [0] * len(boxes)
    return torch.tensor([[i, *b, s] for i, b, s in zip(images, boxes, scores)], dtype=torch.float32)


def test_nms_drops_a_box_overlapped_by_a_dropped_box():
    """mtcnn's NMS is not greedy: C goes because B overlaps it, though B itself went (A overlaps B)."""
    boxes = [[0, 0, 10, 10], [3, 0, 13, 10], [6, 0, 16, 10]]  # A-B and B-C IoU 0.54, A-C 0.25
    kept = mt.nms_by_image(rows_of(boxes, [0.9, 0.8, 0.7]), 0.5)
    assert kept[:, 1].tolist() == [0]  # greedy NMS (torchvision's) would keep A and C


def test_nms_keeps_images_apart_and_groups_by_image(monkeypatch):
    boxes = [[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [50, 50, 60, 60]]
    rows = rows_of(boxes, [0.6, 0.95, 0.9, 0.99], images=[1, 1, 0, 1])
    kept = mt.nms_by_image(rows, 0.5)
    assert kept[:, 0].tolist() == [0, 1, 1] and kept[:, 5].tolist() == pytest.approx([0.9, 0.99, 0.95])
    monkeypatch.setattr(mt, "NMS_MATRIX_ROWS", 1)  # the image-by-image path for long inputs
    assert torch.equal(mt.nms_by_image(rows, 0.5), kept)


def test_nms_min_divides_by_the_smaller_box():
    boxes = [[0, 0, 20, 20], [0, 0, 10, 10]]  # IoU 0.25, but the small box lies inside the big one
    assert len(mt.nms_by_image(rows_of(boxes, [0.9, 0.8]), 0.7, method="union")) == 2
    assert len(mt.nms_by_image(rows_of(boxes, [0.9, 0.8]), 0.7, method="min")) == 1


def test_tied_scores_keep_numpy_order():
    scores = np.array([1.0, 0.5, 1.0, 1.0, 0.7, 1.0], np.float32)
    rows = rows_of([[k, 0, k + 1, 1] for k in range(6)], scores.tolist())
    expected = np.argsort(scores.astype(np.float64))[::-1]
    assert mt.by_falling_score(rows)[:, 1].long().tolist() == expected.tolist()


# --- the detector -----------------------------------------------------------------------------------

def test_finds_the_faces_where_they_are(detector, portraits):
    faces = [f for f in detector.detect_one(portraits) if f.confidence >= 0.9]
    assert len(faces) == 2
    for face in faces:
        assert isinstance(face, Face) and face.box.shape == (4,) and face.landmarks.shape == (5, 2)
        x, y, w, h = face.box
        assert 50 <= y and y + h <= 190 and PORTRAIT_PX * 0.4 < w < PORTRAIT_PX * 1.1
        inside = (face.landmarks >= [x, y]) & (face.landmarks <= [x + w, y + h])
        assert inside.all()
        left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
        assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
        assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    assert sorted(f.box[0] < 180 for f in faces) == [False, True]  # one face on each side


def test_a_blank_frame_has_no_face(detector):
    assert detector.detect([np.full((100, 120, 3), 90, np.uint8)]) == [[]]


def test_batches_give_what_single_frames_give(detector, portraits):
    flipped = np.ascontiguousarray(portraits[:, ::-1])
    small = cv2.resize(portraits, (180, 120), interpolation=cv2.INTER_AREA)
    batch = detector.detect([portraits, small, flipped, portraits])
    for image, faces in zip([portraits, small, flipped, portraits], batch):
        alone = detector.detect_one(image)
        assert len(faces) == len(alone) > 0
        for a, b in zip(faces, alone):
            np.testing.assert_allclose(a.box, b.box, atol=1e-3)
            np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-3)


def test_search_starts_the_pyramid_at_its_minimum_face(detector, portraits):
    """search(): detect()'s faces where mtcnn 1.0's cap does not bite; none where the faces are below its minimum."""
    assert detector.min_face_size == 20 and mt.mtcnn_min_face(240, 20, 0.709) == 20  # detect() runs 20 px uncapped
    for a, b in zip(detector.search([portraits], 20)[0], detector.detect_one(portraits)):
        np.testing.assert_allclose(a.box, b.box, atol=1e-3)
        assert a.confidence == pytest.approx(b.confidence, abs=1e-5)
    # 60 px is past mtcnn 1.0's cap on a 240 px image (detect() would search from 20 px); search() does not cap
    found = [f for f in detector.search([portraits, portraits], 60)[1] if f.confidence >= 0.9]
    assert len(found) == 2 and all(f.box[2] >= 60 for f in found)
    assert all(f.confidence < 0.9 for f in detector.search([portraits], 200)[0])  # 120 px faces, 200 px minimum
    with pytest.raises(ValueError, match="RGB uint8"):
        detector.search([np.zeros((50, 50), np.uint8)], 40)


def test_the_gpu_resize_path_gives_the_cpu_faces(detector, portraits, monkeypatch):
    expected = detector.detect([portraits, portraits[:200]])
    monkeypatch.setattr(detector, "resize_on_device", True)  # matrix products instead of cv2
    for faces, ref in zip(detector.detect([portraits, portraits[:200]]), expected):
        assert len(faces) == len(ref) > 0
        for a, b in zip(faces, ref):
            assert abs(a.confidence - b.confidence) < 1e-4 and box_iou(a.box, b.box) > 0.999


def test_boxes_on_a_downscaled_copy_come_back_in_input_pixels(detector, portraits):
    big = cv2.resize(portraits, (720, 480), interpolation=cv2.INTER_CUBIC)
    shrunk = mt.TorchMTCNNDetector(detect_max_side=360, min_face_size=40, device="cpu")
    shrunk.pnet, shrunk.rnet, shrunk.onet = detector.pnet, detector.rnet, detector.onet
    on_big = [f for f in shrunk.detect_one(big) if f.confidence >= 0.9]
    on_small = [f for f in detector.detect_one(portraits) if f.confidence >= 0.9]
    assert len(on_big) == len(on_small) == 2
    for a, b in zip(sorted(on_big, key=lambda f: f.box[0]), sorted(on_small, key=lambda f: f.box[0])):
        assert box_iou(a.box / 2, b.box) > 0.8


def test_bad_input_is_refused(detector):
    with pytest.raises(ValueError, match="RGB uint8"):
        detector.detect([np.zeros((50, 50), np.uint8)])
    with pytest.raises(ValueError, match="scale_factor"):
        mt.TorchMTCNNDetector(scale_factor=1.2)


def test_importing_and_running_it_never_loads_tensorflow():
    code = textwrap.dedent("""
        import sys
        import numpy as np
        import helpers.mtcnn_torch as mt
        image = np.random.default_rng(0).integers(0, 255, (80, 96, 3), dtype=np.uint8)
        # thresholds of 0 pass every proposal, so all three networks run
        faces = mt.TorchMTCNNDetector(device="cpu", thresholds=(0, 0, 0)).detect([image])[0]
        assert faces, "no face at thresholds 0: ONet did not run"
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras")
                        or m == "mtcnn.mtcnn")
        print(loaded)
        sys.exit(1 if loaded else 0)
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.gpu
def test_gpu_gives_the_cpu_faces(detector, portraits):
    gpu = mt.TorchMTCNNDetector(detect_max_side=0, device="cuda")
    for a, b in zip(gpu.detect([portraits, portraits])[0], detector.detect_one(portraits)):
        assert abs(a.confidence - b.confidence) < 1e-3 and box_iou(a.box, b.box) > 0.99


# --- parity with the mtcnn package ------------------------------------------------------------------

def assert_same_faces(tf_faces: list[Face], torch_faces: list[Face], where: str) -> None:
    """The same faces at confidence >= 0.9, boxes at IoU >= 0.9, landmarks within 2 px."""
    ref = [f for f in tf_faces if f.confidence >= 0.9]
    ours = [f for f in torch_faces if f.confidence >= 0.9]
    assert len(ours) == len(ref), f"{where}: mtcnn finds {len(ref)} faces at >= 0.9, torch {len(ours)}"
    for face in ref:
        ious = [box_iou(face.box, f.box) for f in ours]
        best = ours.pop(int(np.argmax(ious)))
        assert max(ious) >= 0.9, f"{where}: box IoU {max(ious):.3f}"
        distance = np.linalg.norm(best.landmarks - face.landmarks, axis=1).max()
        assert distance <= 2.0, f"{where}: landmark {distance:.2f} px away"


@pytest.fixture(scope="module")
def tf_detectors():
    from helpers.faces import FaceDetector  # noqa: PLC0415 - imports TensorFlow

    return {"photos": FaceDetector(threads=2),
            "dfdc": FaceDetector(detect_max_side=640, min_face_size=48, scale_factor=0.6, threads=2)}


@pytest.mark.slow
def test_networks_match_the_keras_models():
    """The package's Keras P-, R- and O-net and ours give the same outputs (layouts, pooling, flatten order)."""
    from helpers.runtime import import_tensorflow  # noqa: PLC0415

    import_tensorflow(2)
    from mtcnn.stages import StageONet, StagePNet, StageRNet  # noqa: PLC0415

    ours = mt.load_networks()
    rng = np.random.default_rng(0)
    for stage, net, shape in zip((StagePNet, StageRNet, StageONet), ours, [(2, 37, 53), (5, 24, 24), (5, 48, 48)]):
        x = rng.uniform(-1, 1, (*shape, 3)).astype(np.float32)
        keras = stage().model(x)
        with torch.inference_mode():
            mine = net(torch.from_numpy(x).permute(0, 3, 1, 2))
        keras = [k.numpy() for k in keras]
        if net is ours[0]:
            keras, mine = [keras[0], keras[1][..., 1]], [mine[0].permute(0, 2, 3, 1), mine[1]]
        else:
            keras[-1] = keras[-1][:, 1]
        for k, m in zip(keras, mine):
            np.testing.assert_allclose(m.numpy(), k, atol=1e-5)


@pytest.mark.realdata
@pytest.mark.slow
def test_parity_with_mtcnn_on_photos(shared_data, tf_detectors):
    """expected.csv's counts, and the package's own faces, boxes and landmarks, at the default 640 px."""
    import pandas as pd  # noqa: PLC0415

    detector = mt.TorchMTCNNDetector(device="cpu")
    expected = pd.read_csv(shared_data / "faces" / "expected.csv")
    for name, count in zip(expected.file, expected["faces_mtcnn_conf_ge_0.9"]):
        image = read_image(shared_data / "faces" / name)
        ours = detector.detect_one(image)
        assert sum(f.confidence >= 0.9 for f in ours) == count, name
        assert_same_faces(tf_detectors["photos"].detect_one(image), ours, name)


@pytest.mark.realdata
@pytest.mark.slow
def test_parity_with_mtcnn_on_dfdc_frames(shared_data, tf_detectors):
    """Frames 0 and 60 of each DFDC sample video, in one batch per video, at the dfdc profile's settings."""
    ours = mt.TorchMTCNNDetector(detect_max_side=640, min_face_size=48, scale_factor=0.6, device="cpu")
    videos = sorted(glob.glob(str(shared_data / "dfdc_sample" / "*" / "*.mp4")))
    assert videos, f"no DFDC sample videos under {shared_data / 'dfdc_sample'}"
    found = 0
    for video in videos:
        capture = cv2.VideoCapture(video)
        frames = []
        for index in range(61):
            if index in (0, 60):
                ok, frame = capture.read()
                if ok:
                    frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            else:
                capture.grab()
        capture.release()
        assert frames, f"{video}: no frame decoded"
        for k, (a, b) in enumerate(zip(tf_detectors["dfdc"].detect(frames), ours.detect(frames))):
            assert_same_faces(a, b, f"{Path(video).name} frame {k}")
            found += sum(f.confidence >= 0.9 for f in a)
    assert found >= len(videos)  # the comparison was not vacuous
