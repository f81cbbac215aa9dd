"""Face detection with MTCNN, face crops and region crops.

Two MTCNN backends give the same faces (tests/test_mtcnn_torch.py), chosen by name with `make_detector`
(notebook 02's DETECTOR): "mtcnn-torch", helpers.mtcnn_torch's PyTorch port of the `mtcnn` package
(batched, CPU or GPU, 3-4x the TensorFlow path on a CPU: bench/README.md), and "mtcnn-tf", the package
itself on TensorFlow (`FaceDetector`). TensorFlow is imported only when "mtcnn-tf" is asked for: in this
venv `import tensorflow` followed by torchvision, torch._dynamo or triton segfaults (tests/test_detectors.py).

Landmarks come in MTCNN's order: left eye, right eye, nose, mouth left, mouth right (image
coordinates, so the "left eye" is the one on the image's left).

The extraction stage (`extract_faces`, notebook 02) writes faces.csv and, beside it, settings.json with
every setting that shaped the crops; `read_settings` reads them back as extract_faces's keyword
arguments, for the plots, the predictor (via a run's config.json "face_settings") and for extracting
more faces the same way. faces.csv statuses, matched exactly: ok (a kept face), no_face (none above
MIN_CONFIDENCE; the reason gives the best confidence and, where the frame was shrunk for MTCNN, the
smallest face that copy could show), unreadable (the frame file cannot be decoded, or is truncated).
`box_source` says where an ok row's box came from: "detected" on this frame, or "original" (the box
found on the original's frame at the same index, reused for its fake).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from helpers.frames import group_key, read_frames_manifest, write_jpeg
from helpers.frames import read_settings as read_frame_settings
from helpers.manifest import (EmptyStageError, ManifestSpec, check_float, check_int, file_fingerprint, fingerprint,
                              parse_shard, read_manifest, read_settings_record, run_stage)
from helpers.runtime import cpu_count, import_tensorflow, worker_count

logger = logging.getLogger(__name__)

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass
class Face:
    """One detected face: box as x, y, w, h (pixels of the input image), confidence, 5x2 landmarks."""

    box: np.ndarray
    confidence: float
    landmarks: np.ndarray = field(repr=False)

    @property
    def area(self) -> float:
        return float(self.box[2] * self.box[3])


def to_rgb(image: np.ndarray, channel_order: str = "RGB") -> np.ndarray:
    """A uint8 HxWx3 RGB copy of a grey (HxW or HxWx1), RGB/BGR or RGBA/BGRA image.

    `channel_order` says how a colour input is ordered ("RGB" or "BGR", as OpenCV reads files);
    float images in [0, 1] are scaled to 0..255.
    """
    if channel_order not in ("RGB", "BGR"):
        raise ValueError(f"channel_order must be 'RGB' or 'BGR', got {channel_order!r}")
    image = np.asarray(image)
    if image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating) and image.size and image.max() <= 1.0:
            image = image * 255.0
        image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2RGB)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected a grey, RGB or RGBA image, got an array of shape {image.shape}")
    if image.shape[2] == 4:
        code = cv2.COLOR_BGRA2RGB if channel_order == "BGR" else cv2.COLOR_RGBA2RGB
        return cv2.cvtColor(image, code)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if channel_order == "BGR" else np.ascontiguousarray(image)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def detection_scale(shape: tuple, max_side: int) -> float:
    """The scale `downscale` applies to an image of `shape` (1.0 when it is not shrunk)."""
    longest = max(shape[:2])
    return 1.0 if not max_side or longest <= max_side else max_side / longest


def shrink_hint(shape: tuple, max_side: int) -> str:
    """Why a face may be lost on the copy MTCNN sees, or "" when the image is not shrunk."""
    scale = detection_scale(shape, max_side)
    if scale >= 1.0:
        return ""
    height, width = shape[:2]
    return (f"; MTCNN saw a copy shrunk to {max(1, round(width * scale))}x{max(1, round(height * scale))} px "
            f"(DETECT_MAX_SIDE {max_side}), where faces under about {12 / scale:.0f} px of this {width}x{height} "
            "image cannot be found: DETECT_MAX_SIDE 0 detects at full size")


def downscale(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Shrink `image` so its longer side is at most `max_side` (0 = never); returns it and the scale used."""
    height, width = image.shape[:2]
    longest = max(height, width)
    if not max_side or longest <= max_side:
        return image, 1.0
    scale = max_side / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def map_back(faces: list[Face], scale: float) -> list[Face]:
    """Boxes and landmarks found on a copy shrunk by `scale`, in the original image's pixels."""
    if scale == 1.0:
        return faces
    return [Face(box=f.box / scale, confidence=f.confidence, landmarks=f.landmarks / scale) for f in faces]


def mtcnn_min_face(min_side: int, wanted: float, scale_factor: float) -> int:
    """The largest MTCNN min_face_size, at most `wanted` (and at least 12), that mtcnn 1.0 can run on this image.

    mtcnn 1.0 counts its pyramid levels as if the pyramid started at scale 1, whatever min_face_size
    says, so a larger min_face_size pushes the last level below PNet's 12 px input and detect_faces
    raises "The convolution operation resulted in an empty output" (for 0.709, anything above 20 can).
    """
    levels = round(-(np.log(min_side / 12) / np.log(scale_factor) + 1))  # as mtcnn's build_scale_pyramid
    size = max(12, round(wanted))
    while size > 12 and min_side * (12 / size) * scale_factor ** (levels - 1) < 12:
        size -= 1
    return size


def shrink_by_shape(images: list[np.ndarray], max_side: int) -> tuple[list[np.ndarray], list[float], dict[tuple, list[int]]]:
    """Every detector's first step: checked RGB images shrunk to `max_side`, their scales, and positions by shape.

    Images of one shape go through the network as one batch (both MTCNN backends batch that way).
    """
    small, scales = [], []
    for image in images:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"detect() takes RGB uint8 HxWx3 images (see faces.to_rgb), got {image.dtype} {image.shape}")
        copy, scale = downscale(image, max_side)
        small.append(copy)
        scales.append(scale)
    by_shape: dict[tuple, list[int]] = {}
    for i, copy in enumerate(small):
        by_shape.setdefault(copy.shape, []).append(i)
    return small, scales, by_shape


class FaceDetector:
    """MTCNN (the `mtcnn` package, TensorFlow) that stays quiet, bounds its threads, and detects on a downscaled copy.

    detect_max_side: the longer side of the copy MTCNN sees (0 = full resolution). A 1080p frame
    shrunk to 640 px shows DFDC faces at 35+ px; note that MTCNN cannot search below 12 px of the copy,
    so on a 1080p frame shrunk to 640 px faces under about 36 px are not found, whatever min_face_size.
    min_face_size: the smallest face to search for, in pixels of the full image; larger is faster.
    scale_factor: the ratio between MTCNN's pyramid levels (its default 0.709; 0.6 runs fewer levels).
    """

    name = "mtcnn-tf"

    def __init__(self, detect_max_side: int = 640, min_face_size: int = 20, threads: int | None = None,
                 device: str | None = None, scale_factor: float = 0.709):
        tf = import_tensorflow(threads)
        from mtcnn import MTCNN  # noqa: PLC0415 - TensorFlow must be configured first

        if device is None:
            device = "GPU:0" if tf.config.list_physical_devices("GPU") else "CPU:0"
        self.detector = MTCNN(device=device)
        self.detect_max_side = int(detect_max_side)
        self.min_face_size = int(min_face_size)
        # Ratio between MTCNN's pyramid levels (mtcnn's default 0.709); 0.6 runs fewer, coarser levels.
        self.scale_factor = float(scale_factor)

    def detect(self, images: list[np.ndarray]) -> list[list[Face]]:
        """Faces in each RGB uint8 image, most confident first; images of equal size go in one batch."""
        results: list[list[Face]] = [[] for _ in images]
        small, scales, by_shape = shrink_by_shape(images, self.detect_max_side)
        for indices in by_shape.values():
            batch = [small[i] for i in indices]
            # MTCNN's minimum face size is in pixels of the copy it sees.
            min_size = mtcnn_min_face(min(batch[0].shape[:2]), self.min_face_size * min(scales[i] for i in indices),
                                      self.scale_factor)
            rows = self.detector.detect_faces(batch, output_type="numpy", box_format="xyxy", min_face_size=min_size,
                                               scale_factor=self.scale_factor)
            rows = np.asarray(rows, dtype=np.float64).reshape(-1, 16)
            for row in rows:
                i = indices[int(row[0])]
                x1, y1, x2, y2 = row[1:5]
                # mtcnn's numpy rows hold the five x coordinates, then the five y coordinates
                face = Face(box=np.array([x1, y1, x2 - x1, y2 - y1]), confidence=float(row[5]),
                            landmarks=np.stack([row[6:11], row[11:16]], axis=1))
                results[i].append(face)
        for i in range(len(images)):
            results[i] = sorted(map_back(results[i], scales[i]), key=lambda f: -f.confidence)
        return results

    def detect_one(self, image: np.ndarray) -> list[Face]:
        return self.detect([image])[0]


DETECTORS = ("mtcnn-torch", "mtcnn-tf")


def check_detector(name) -> str:
    """A DETECTOR name from DETECTORS; ValueError listing the choices for anything else."""
    if name not in DETECTORS:
        raise ValueError(f"DETECTOR must be one of {', '.join(repr(d) for d in DETECTORS)}, got {name!r}")
    return name


def tf_device(device: str | None) -> str | None:
    """A torch-style DEVICE ("cpu", "cuda", "cuda:1") as TensorFlow names it ("CPU:0", "GPU:1"); "" = None."""
    if not device:
        return None
    kind, _, index = str(device).partition(":")
    names = {"cpu": "CPU", "cuda": "GPU", "gpu": "GPU"}
    return f"{names[kind.lower()]}:{index or 0}" if kind.lower() in names else str(device)


def make_detector(name: str, detect_max_side: int = 640, min_face_size: int = 20, scale_factor: float = 0.709,
                  threads: int | None = None, device: str | None = None):
    """The MTCNN backend `name` (see DETECTORS) with these settings; both have the same detect(images) -> faces.

    device: torch's name ("cpu", "cuda"; None or "" = cuda when available); for "mtcnn-tf" it becomes
    TensorFlow's ("CPU:0", "GPU:0"; None = GPU:0 when TensorFlow sees one). Only "mtcnn-tf" imports TensorFlow.
    """
    if check_detector(name) == "mtcnn-torch":
        from helpers.mtcnn_torch import TorchMTCNNDetector  # noqa: PLC0415 - torch only where it is asked for

        return TorchMTCNNDetector(detect_max_side=detect_max_side, min_face_size=min_face_size, threads=threads,
                                  device=device or None, scale_factor=scale_factor)
    return FaceDetector(detect_max_side=detect_max_side, min_face_size=min_face_size, threads=threads,
                        device=tf_device(device), scale_factor=scale_factor)


def resolve_device(device: str | None) -> str:
    """The torch device mtcnn-torch will run on ("" = cuda when available, else cpu); ValueError for a bad one."""
    import torch  # noqa: PLC0415 - only the torch detector needs it

    try:
        resolved = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"DEVICE {device!r} is not a torch device ({err}): use \"cpu\", \"cuda\", \"cuda:1\" or \"\"") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"DEVICE {device!r} asks for a GPU, but torch sees no CUDA GPU here: use DEVICE \"\" "
                         "(cuda when present) or \"cpu\"")
    return str(resolved)


# --- Crops ------------------------------------------------------------------------------------

def square_crop(image: np.ndarray, box, margin: float = 1.3, size: int = 224) -> tuple[np.ndarray, np.ndarray]:
    """A `size` x `size` crop centred on `box` (x, y, w, h), its side `margin` x the box's longer side.

    Where the square runs past the image border it is padded with black rather than shifted, so the
    face stays centred and its scale does not depend on where it sits in the frame. Returns the crop
    and the square in frame pixels as (x0, y0, side).
    """
    x, y, w, h = (float(v) for v in box)
    side = max(w, h) * margin
    if side < 1:
        raise ValueError(f"box {box} is empty")
    x0, y0 = x + w / 2 - side / 2, y + h / 2 - side / 2
    # The affine map samples exactly the square (sub-pixel included) and fills outside with black.
    # warpAffine has no area filter (it runs INTER_AREA as INTER_LINEAR), so a big face shrunk in one
    # step aliases. Sample at k x the output size (k = the shrink rounded up) and average k x k blocks,
    # shifted so each block is centred where the one-step map would sample (to_crop_coords holds).
    scale = size / side
    k = max(1, int(np.ceil(1 / scale - 1e-9)))
    fine, shift = scale * k, (k - 1) / 2
    matrix = np.array([[fine, 0, shift - x0 * fine], [0, fine, shift - y0 * fine]], dtype=np.float64)
    crop = cv2.warpAffine(image, matrix, (size * k, size * k), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if k > 1:
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return crop, np.array([x0, y0, side])


def to_crop_coords(points: np.ndarray, square: np.ndarray, size: int) -> np.ndarray:
    """Frame coordinates -> coordinates in a crop made by square_crop with that square and size."""
    x0, y0, side = square
    return (np.asarray(points, dtype=np.float64) - [x0, y0]) * (size / side)


# Region geometry, in units of the inter-ocular distance d (between the two eye landmarks) and of
# m, the vertical distance from the eyes' mean height to the mouth corners' mean height:
#   eyes : x from the left eye - 0.55 d to the right eye + 0.55 d, y from the eyes - 0.45 d to + 0.45 d
#          (brows, lids and the top of the nose bridge: where blending seams and blinking show)
#   lower: x from the left mouth corner - 0.45 d to the right corner + 0.45 d, y from halfway between
#          nose and mouth down to the mouth + 0.75 m (upper lip, mouth, chin: lip-sync artefacts)
REGION_GEOMETRY = {
    "eyes": {"pad_x": 0.55, "half_height": 0.45},
    "lower": {"pad_x": 0.45, "top_nose_mouth": 0.5, "below_mouth": 0.75},
}
REGIONS = ("eyes", "lower", "eyes_lower")


def region_boxes(landmarks: np.ndarray, size: int) -> dict[str, tuple[int, int, int, int]]:
    """The eyes band and the lower-face band as (x0, y0, x1, y1) pixel boxes in a `size` crop.

    `landmarks` are the five points in the crop's coordinates; see REGION_GEOMETRY for the rules.
    Boxes are clipped to the crop.
    """
    left_eye, right_eye, nose, mouth_left, mouth_right = np.asarray(landmarks, dtype=np.float64)
    d = max(float(np.hypot(*(right_eye - left_eye))), 1.0)
    eye_y = (left_eye[1] + right_eye[1]) / 2
    mouth_y = (mouth_left[1] + mouth_right[1]) / 2
    m = max(mouth_y - eye_y, 1.0)
    eyes, lower = REGION_GEOMETRY["eyes"], REGION_GEOMETRY["lower"]
    boxes = {
        "eyes": (min(left_eye[0], right_eye[0]) - eyes["pad_x"] * d, eye_y - eyes["half_height"] * d,
                 max(left_eye[0], right_eye[0]) + eyes["pad_x"] * d, eye_y + eyes["half_height"] * d),
        "lower": (min(mouth_left[0], mouth_right[0]) - lower["pad_x"] * d,
                  nose[1] + lower["top_nose_mouth"] * (mouth_y - nose[1]),
                  max(mouth_left[0], mouth_right[0]) + lower["pad_x"] * d, mouth_y + lower["below_mouth"] * m),
    }
    clipped = {}
    for name, (x0, y0, x1, y1) in boxes.items():
        x0, y0 = int(np.clip(np.floor(x0), 0, size - 1)), int(np.clip(np.floor(y0), 0, size - 1))
        x1, y1 = int(np.clip(np.ceil(x1), x0 + 1, size)), int(np.clip(np.ceil(y1), y0 + 1, size))
        clipped[name] = (x0, y0, x1, y1)
    return clipped


def crop_regions(face: np.ndarray, landmarks: np.ndarray, regions=REGIONS) -> dict[str, np.ndarray]:
    """The region variants of a face crop (see REGION_GEOMETRY).

    eyes, lower: the band cut out (its own shape); eyes_lower: the whole crop with everything outside
    the two bands blacked out, so it keeps the face's size and layout.
    """
    unknown = set(regions) - set(REGIONS)
    if unknown:
        raise ValueError(f"unknown region variant(s) {sorted(unknown)}; choose from {REGIONS}")
    boxes = region_boxes(landmarks, face.shape[0])
    out = {}
    for name in regions:
        if name == "eyes_lower":
            masked = np.zeros_like(face)
            for band in ("eyes", "lower"):
                x0, y0, x1, y1 = boxes[band]
                masked[y0:y1, x0:x1] = face[y0:y1, x0:x1]
            out[name] = masked
        else:
            x0, y0, x1, y1 = boxes[name]
            out[name] = face[y0:y1, x0:x1].copy()
    return out


def select_faces(faces: list[Face], keep: str = "largest", min_confidence: float = 0.9) -> list[Face]:
    """The faces to crop: above `min_confidence`, the largest only or all (largest first)."""
    if keep not in ("largest", "all"):
        raise ValueError(f"KEEP must be 'largest' or 'all', got {keep!r}")
    confident = sorted((f for f in faces if f.confidence >= min_confidence), key=lambda f: -f.area)
    return confident[:1] if keep == "largest" else confident


# --- The extraction stage ------------------------------------------------------------------------

LANDMARK_COLUMNS = [f"{name}_{axis}" for name in LANDMARK_NAMES for axis in ("x", "y")]
COLUMNS = ["video_id", "part", "label", "original", "frame_index", "frame_path", "face_index", "x", "y", "w", "h",
           "confidence", *LANDMARK_COLUMNS, "crop_x0", "crop_y0", "crop_side", "face_path",
           *[f"{r}_path" for r in REGIONS], "box_source", "status", "reason"]
STATUSES = ("ok", "no_face", "unreadable")
BOX_SOURCES = ("detected", "original")
WRITTEN_BY = "notebook 02 (face cropping)"
SPEC = ManifestSpec(name="faces.csv", written_by=WRITTEN_BY, columns=tuple(COLUMNS),
                    sort_by=("part", "video_id", "frame_index", "face_index"), int_columns=("frame_index", "face_index"),
                    statuses=STATUSES, output_columns=("face_path", *[f"{r}_path" for r in REGIONS]))
# The frames.csv columns this stage reads (a frames DataFrame handed in needs only these).
FRAME_COLUMNS = ("video_id", "part", "label", "original", "frame_index", "frame_path", "status")
OUTPUT_FOLDERS = ("faces", *REGIONS)

_detector = None  # this process's detector (FaceDetector or TorchMTCNNDetector), set by _init_detector
_built: tuple | None = None  # (its arguments, the detector): a second extract_faces in one process reuses it


def _init_detector(detect_max_side: int, threads: int, min_face_size: int = 20, scale_factor: float = 0.709,
                   detector: str = "mtcnn-torch", device: str | None = None) -> None:
    global _detector, _built
    cv2.setNumThreads(1)
    key = (detector, detect_max_side, threads, min_face_size, scale_factor, device)
    if _built is None or _built[0] != key:
        _built = (key, make_detector(detector, detect_max_side=detect_max_side, min_face_size=min_face_size,
                                     scale_factor=scale_factor, threads=threads, device=device))
    _detector = _built[1]


def jpeg_is_complete(data: bytes) -> bool:
    """Whether JPEG bytes reach the end-of-image marker after the image's first scan (a cut file does not).

    OpenCV decodes a JPEG cut to a third without an error (grey below the cut), so this is checked
    by hand: the marker segments are walked to the first start-of-scan, and in scan data FF D9 can only
    be the end-of-image marker.
    """
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:  # start of scan: the rest must hold the end-of-image marker
            return data.find(b"\xff\xd9", pos + 2) != -1
        if marker == 0xD9:
            return False
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
            continue
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return False


def read_image(path: str | Path) -> np.ndarray:
    """An image file as RGB uint8, turned upright by its EXIF orientation (phone photos).

    Grey, 16-bit and RGBA files become 8-bit RGB (alpha dropped). Raises ValueError naming the file when
    it is missing, cannot be decoded, or is a truncated JPEG or PNG.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise ValueError(f"{path}: cannot be read ({err.strerror or err})") from None
    if not data:
        raise ValueError(f"{path}: the file is empty (0 bytes)")
    if data[:2] == b"\xff\xd8" and not jpeg_is_complete(data):
        raise ValueError(f"{path}: the JPEG is truncated (it ends before its end-of-image marker); copy it again")
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data.rfind(b"IEND") == -1:
        raise ValueError(f"{path}: the PNG is truncated (no IEND chunk); copy it again")
    # IMREAD_COLOR applies the EXIF orientation (IMREAD_UNCHANGED would not) and scales 16 bits to 8.
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: cannot be decoded as an image (corrupt, or not an image)")
    return to_rgb(image, channel_order="BGR")


def _face_rows(base: dict, image: np.ndarray, faces: list[Face], source: str, settings: dict) -> list[dict]:
    selected = select_faces(faces, settings["keep"], settings["min_confidence"])
    if not selected:
        best = max((f.confidence for f in faces), default=None)
        reason = (f"no face with confidence >= {settings['min_confidence']} (best {best:.2f})" if best is not None
                  else "MTCNN found no face")
        reason += shrink_hint(image.shape, settings["detect_max_side"])
        return [{**base, "box_source": source, "status": "no_face", "reason": reason}]
    rows = []
    out_dir, size = settings["out_dir"], settings["face_size"]
    stem = f"{base['part']}/{Path(base['frame_path']).stem}"
    for k, face in enumerate(selected):
        crop, square = square_crop(image, face.box, settings["margin"], size)
        paths = {"face_path": out_dir / "faces" / f"{stem}_f{k}.jpg"}
        local = to_crop_coords(face.landmarks, square, size)
        for name, region in crop_regions(crop, local, settings["regions"]).items():
            paths[f"{name}_path"] = out_dir / name / f"{stem}_f{k}.jpg"
            write_jpeg(paths[f"{name}_path"], region, settings["jpeg_quality"])
        write_jpeg(paths["face_path"], crop, settings["jpeg_quality"])
        rows.append({**base, "face_index": k, **dict(zip("xywh", map(float, face.box))),
                     "confidence": face.confidence, **dict(zip(LANDMARK_COLUMNS, map(float, face.landmarks.ravel()))),
                     "crop_x0": square[0], "crop_y0": square[1], "crop_side": square[2],
                     **{k_: str(v) for k_, v in paths.items()}, "box_source": source, "status": "ok", "reason": ""})
    return rows


def extract_group(task: dict) -> list[dict]:
    """Detect and crop the faces of one fake/original group of frames (a task of extract_faces).

    A frame that cannot be read is a row (unreadable); a crop that cannot be written raises OutputError.
    """
    settings = {**task["settings"], "out_dir": Path(task["settings"]["out_dir"])}
    rows, images = [], {}
    for frame in task["frames"]:
        base = {k: frame.get(k) for k in ("video_id", "part", "label", "original", "frame_index", "frame_path")}
        try:
            images[frame["frame_path"]] = read_image(frame["frame_path"])
        except ValueError as err:
            rows.append({**base, "status": "unreadable", "reason": str(err)})
    frames = [f for f in task["frames"] if f["frame_path"] in images]
    # The DFDC winner's trick: a fake differs from its original only inside the face, so boxes found
    # on the original's frame serve its fakes at the same frame index (and frame size).
    reference = {}
    if settings["reuse_original_boxes"]:
        reference = {f["frame_index"]: f["frame_path"] for f in frames if f["label"] == "REAL"}

    def reusable(f) -> bool:
        ref = reference.get(f["frame_index"])
        return (f["label"] == "FAKE" and ref is not None
                and images[ref].shape == images[f["frame_path"]].shape)

    to_detect = [f for f in frames if not reusable(f)]
    found = dict(zip((f["frame_path"] for f in to_detect), _detector.detect([images[f["frame_path"]] for f in to_detect])))
    for f in frames:
        base = {k: f.get(k) for k in ("video_id", "part", "label", "original", "frame_index", "frame_path")}
        if f["frame_path"] in found:
            rows += _face_rows(base, images[f["frame_path"]], found[f["frame_path"]], "detected", settings)
        else:
            rows += _face_rows(base, images[f["frame_path"]], found[reference[f["frame_index"]]], "original", settings)
    return rows


def face_tasks(frames: pd.DataFrame, settings: dict) -> list[dict]:
    """One task per fake/original group, holding the group's usable frames and a fingerprint of them."""
    # one row per frame file, even from a table with a row per face (split.csv, faces.csv with KEEP "all")
    usable = frames[frames.status == "ok"].drop_duplicates("frame_path")
    groups: dict[str, list[dict]] = {}
    for frame in usable.to_dict("records"):
        frame = {k: (None if pd.isna(v) else v) for k, v in frame.items() if k in FRAME_COLUMNS}
        frame["frame_index"] = int(frame["frame_index"]) if frame["frame_index"] is not None else None
        groups.setdefault(group_key(frame["video_id"], frame["label"], frame["original"]), []).append(frame)
    tasks = []
    for key, members in sorted(groups.items()):
        described = [[f[c] for c in FRAME_COLUMNS] + file_fingerprint(f["frame_path"]) for f in members]
        tasks.append({"key": key, "group": key, "frames": members, "settings": settings,
                      "input": fingerprint(described)})
    return tasks


def face_settings(face_size: int = 224, margin: float = 1.3, min_confidence: float = 0.9, detect_max_side: int = 640,
                  min_face_size: int = 20, scale_factor: float = 0.709, keep: str = "largest", regions=REGIONS,
                  reuse_original_boxes: bool = True, jpeg_quality: int = 95, detector: str = "mtcnn-torch") -> dict:
    """The checked settings that shape the crops (what settings.json records); ValueError naming a bad one."""
    if keep not in ("largest", "all"):
        raise ValueError(f"KEEP must be 'largest' or 'all', got {keep!r}")
    if isinstance(regions, str) or not all(isinstance(r, str) for r in regions):
        raise ValueError(f"REGIONS must be a list of region names from {REGIONS}, got {regions!r}")
    unknown = sorted(set(regions) - set(REGIONS))
    if unknown:
        raise ValueError(f"unknown region variant(s) {unknown}; choose from {REGIONS}")
    if not isinstance(reuse_original_boxes, (bool, np.bool_)):
        raise ValueError(f"REUSE_ORIGINAL_BOXES must be true or false, got {reuse_original_boxes!r}")
    face_size = check_int("FACE_SIZE", face_size)
    if face_size < 16:
        raise ValueError(f"FACE_SIZE must be at least 16 px, got {face_size}")
    return {"face_size": face_size,
            "margin": check_float("MARGIN", margin, 0.5, 10.0),
            "min_confidence": check_float("MIN_CONFIDENCE", min_confidence, 0.0, 1.0),
            "detect_max_side": check_int("DETECT_MAX_SIDE", detect_max_side, 0),
            "min_face_size": check_int("MIN_FACE_SIZE", min_face_size, 1),
            "scale_factor": check_float("SCALE_FACTOR", scale_factor, 0.1, 0.95),
            "keep": keep,
            "regions": [r for r in REGIONS if r in regions],
            "reuse_original_boxes": bool(reuse_original_boxes),
            "jpeg_quality": check_int("JPEG_QUALITY", jpeg_quality, 1, 100),
            # The backend is a setting: its faces match the other's only to float noise, and which faces
            # pass MIN_CONFIDENCE, so which crops exist, may differ at the margin.
            "detector": check_detector(detector)}


def extract_faces(
    frames_csv: str | Path | pd.DataFrame,
    out_dir: str | Path,
    face_size: int = 224,
    margin: float = 1.3,
    min_confidence: float = 0.9,
    detect_max_side: int = 640,
    min_face_size: int = 20,
    scale_factor: float = 0.709,
    keep: str = "largest",
    regions=REGIONS,
    reuse_original_boxes: bool = True,
    workers: int = 1,
    shard: str = "",
    jpeg_quality: int = 95,
    detector: str = "mtcnn-torch",
    device: str = "",
    fresh: bool = False,
    allow_empty: bool = False,
) -> pd.DataFrame:
    """Detect, crop and save the faces of every usable frame; returns and writes out_dir/faces.csv.

    frames_csv: frames.csv from notebook 01, or a DataFrame of frames rows (a subset: only the columns
    in FRAME_COLUMNS are needed), e.g. held-out fakes to detect on themselves with
    `reuse_original_boxes=False` into their own out_dir, with `**read_settings(<02's OUT_DIR>)`.
    Writes out_dir/settings.json first (the settings above, except workers, shard and device; see
    `read_settings`). Resumable like sample_frames: finished groups are journaled under out_dir/_journal
    and reused only under the same settings and the same frame files; other settings are refused
    (SettingsChanged) unless `fresh`, which deletes this stage's earlier results. Every setting is
    checked before any frame is read; a crop that cannot be written (disk full) stops the stage with an
    OutputError. Raises EmptyStageError when no frame gave a face (after writing faces.csv; `allow_empty`
    or a SHARD only warn).
    workers: processes, each with its own MTCNN (0 = one per core); the CPU threads are shared out.
    detector: the MTCNN backend, "mtcnn-torch" or "mtcnn-tf" (DETECTORS); recorded in settings.json, so
    results of the other backend are not resumed. device: where mtcnn-torch runs ("cpu", "cuda", "" =
    cuda when available, else cpu); not a setting, since it moves boxes only by float noise, so a
    journal made on the CPU is resumed on a GPU. On a GPU one worker does all the work: each worker
    would hold its own CUDA context, and one process already keeps the GPU busy with whole batches.
    """
    settings = face_settings(face_size, margin, min_confidence, detect_max_side, min_face_size, scale_factor, keep,
                             regions, reuse_original_boxes, jpeg_quality, detector)
    workers = worker_count(check_int("WORKERS", workers, 0))
    if detector == "mtcnn-torch":
        device = resolve_device(device)
        if device.startswith("cuda") and workers > 1:
            logger.info(f"WORKERS {workers} -> 1: DEVICE {device} runs the torch MTCNN in one process (each worker "
                        "would hold its own CUDA context; one process keeps the GPU busy with whole batches)")
            workers = 1
    else:
        device = device or None
    shard_ = parse_shard(shard)
    out_dir = Path(out_dir)
    frames = read_frames_manifest(frames_csv, required=FRAME_COLUMNS)
    if isinstance(frames_csv, pd.DataFrame):
        inputs = {"frames_csv": None, "frames": f"a DataFrame of {len(frames)} frame rows", "frames_settings": None}
    else:
        try:
            frames_settings = read_frame_settings(frames_csv)
        except (FileNotFoundError, ValueError):
            frames_settings = None
        inputs = {"frames_csv": str(frames_csv), "frames_settings": frames_settings}
    threads = max(1, cpu_count() // workers)
    task_settings = {**settings, "out_dir": str(out_dir)}
    manifest = run_stage(face_tasks(frames, task_settings), extract_group, out_dir=out_dir, stage="faces",
                         settings=settings, spec=SPEC, shard=shard_, workers=workers, desc="extracting faces",
                         initializer=_init_detector,
                         initargs=(settings["detect_max_side"], threads, settings["min_face_size"],
                                   settings["scale_factor"], settings["detector"], device),
                         fresh=fresh, outputs=OUTPUT_FOLDERS, inputs=inputs)
    if not (manifest.status == "ok").any():
        counts = manifest.status.value_counts()
        message = (f"no frame gave a face ({', '.join(f'{n} {s}' for s, n in counts.items()) or 'no usable frames'}): "
                   f"{out_dir / SPEC.name} gives the reason for each frame")
        if not (allow_empty or shard_[1] > 1):
            raise EmptyStageError(message)
        logger.warning(message)
    return manifest


def read_faces_manifest(path: str | Path) -> pd.DataFrame:
    """Read and check faces.csv: every column (ManifestError naming the missing ones), ids as strings,
    integer columns as integers, statuses exactly as in STATUSES."""
    return read_manifest(path, SPEC)


def read_settings(path: str | Path) -> dict:
    """The settings that shaped a faces stage's crops, from settings.json beside its faces.csv.

    `path` is the OUT_DIR, its faces.csv or the settings.json itself. The dict holds exactly
    extract_faces's keyword arguments face_size, margin, min_confidence, detect_max_side, min_face_size,
    scale_factor, keep, regions, reuse_original_boxes, jpeg_quality and detector (not device: see
    extract_faces), so `extract_faces(frames, other_dir, **read_settings(dir))` crops the same way. A
    settings.json from before DETECTOR was recorded says "mtcnn-tf": TensorFlow was the only backend then.
    Raises FileNotFoundError naming the file when it is absent (results from before settings were
    recorded: rerun notebook 02 with FRESH = True).
    """
    settings = read_settings_record(path, "faces", WRITTEN_BY)["settings"]
    return {**settings, "detector": settings.get("detector", "mtcnn-tf")}


# --- Summaries for the notebook --------------------------------------------------------------------

def crop_landmarks(row, face_size: int) -> np.ndarray:
    """A faces.csv row's five landmarks in its face crop's pixels."""
    points = np.array([[row[f"{n}_x"], row[f"{n}_y"]] for n in LANDMARK_NAMES], dtype=np.float64)
    return to_crop_coords(points, np.array([row["crop_x0"], row["crop_y0"], row["crop_side"]]), face_size)


def detection_rate(faces: pd.DataFrame) -> pd.DataFrame:
    """Share of readable frames with at least one kept face, by part and label."""
    per_frame = faces.groupby(["part", "label", "frame_path"]).status.agg(lambda s: (s == "ok").any())
    table = per_frame.groupby(["part", "label"]).agg(frames="size", with_face="sum")
    table["rate"] = (table.with_face / table.frames).round(3)
    total = table[["frames", "with_face"]].sum()
    table.loc[("all", ""), :] = [total.frames, total.with_face, round(total.with_face / max(total.frames, 1), 3)]
    return table.astype({"frames": int, "with_face": int})


def frames_without_face(faces: pd.DataFrame) -> pd.DataFrame:
    """Frames that gave no face crop, with the reason."""
    return faces[faces.status != "ok"][["part", "video_id", "label", "frame_index", "frame_path", "status", "reason"]]
