"""Face detection with MTCNN (the `mtcnn` package on TensorFlow), face crops and region crops.

Landmarks come in MTCNN's order: left eye, right eye, nose, mouth left, mouth right (image
coordinates, so the "left eye" is the one on the image's left).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from helpers.frames import group_key, read_frames_manifest
from helpers.manifest import parse_shard, read_manifest, run_stage, write_manifest
from helpers.runtime import cpu_count, import_tensorflow, worker_count

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


class FaceDetector:
    """MTCNN that stays quiet, bounds its threads, and detects on a downscaled copy.

    detect_max_side: the longer side of the copy MTCNN sees (0 = full resolution). A 1080p frame
    shrunk to 640 px shows DFDC faces at 35+ px; note that MTCNN cannot search below 12 px of the copy,
    so on a 1080p frame shrunk to 640 px faces under about 36 px are not found, whatever min_face_size.
    min_face_size: the smallest face to search for, in pixels of the full image; larger is faster.
    scale_factor: the ratio between MTCNN's pyramid levels (its default 0.709; 0.6 runs fewer levels).
    """

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
        small, scales = [], []
        for image in images:
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"detect() takes RGB uint8 HxWx3 images (see to_rgb), got {image.dtype} {image.shape}")
            copy, scale = downscale(image, self.detect_max_side)
            small.append(copy)
            scales.append(scale)
        by_shape: dict[tuple, list[int]] = {}
        for i, copy in enumerate(small):
            by_shape.setdefault(copy.shape, []).append(i)
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

_detector: FaceDetector | None = None


def _init_detector(detect_max_side: int, threads: int, min_face_size: int = 20, scale_factor: float = 0.709) -> None:
    global _detector
    cv2.setNumThreads(1)
    _detector = FaceDetector(detect_max_side=detect_max_side, threads=threads, min_face_size=min_face_size,
                             scale_factor=scale_factor)


def read_image(path: str) -> np.ndarray:
    """An image file as RGB uint8; raises ValueError naming the file when it cannot be decoded."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"{path}: cannot be decoded as an image (missing, empty or corrupt)")
    if image.dtype == np.uint16:  # 16-bit PNGs
        image = (image // 257).astype(np.uint8)
    return to_rgb(image, channel_order="BGR")


def _face_rows(base: dict, image: np.ndarray, faces: list[Face], source: str, settings: dict) -> list[dict]:
    selected = select_faces(faces, settings["keep"], settings["min_confidence"])
    if not selected:
        best = max((f.confidence for f in faces), default=None)
        reason = (f"no face with confidence >= {settings['min_confidence']} (best {best:.2f})" if best is not None
                  else "MTCNN found no face")
        return [{**base, "box_source": source, "status": "no_face", "reason": reason}]
    rows = []
    out_dir, size = settings["out_dir"], settings["face_size"]
    params = [cv2.IMWRITE_JPEG_QUALITY, settings["jpeg_quality"]]
    stem = f"{base['part']}/{Path(base['frame_path']).stem}"
    for k, face in enumerate(selected):
        crop, square = square_crop(image, face.box, settings["margin"], size)
        paths = {"face_path": out_dir / "faces" / f"{stem}_f{k}.jpg"}
        local = to_crop_coords(face.landmarks, square, size)
        for name, region in crop_regions(crop, local, settings["regions"]).items():
            paths[f"{name}_path"] = out_dir / name / f"{stem}_f{k}.jpg"
            _write(paths[f"{name}_path"], region, params)
        _write(paths["face_path"], crop, params)
        rows.append({**base, "face_index": k, **dict(zip("xywh", map(float, face.box))),
                     "confidence": face.confidence, **dict(zip(LANDMARK_COLUMNS, map(float, face.landmarks.ravel()))),
                     "crop_x0": square[0], "crop_y0": square[1], "crop_side": square[2],
                     **{k_: str(v) for k_, v in paths.items()}, "box_source": source, "status": "ok", "reason": ""})
    return rows


def _write(path: Path, rgb: np.ndarray, params: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params):
        raise OSError(f"cannot write {path}")


def extract_group(task: dict) -> list[dict]:
    """Detect and crop the faces of one fake/original group of frames (a task of extract_faces)."""
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
    """One task per fake/original group, holding the group's usable frames."""
    usable = frames[frames.status == "ok"]
    groups: dict[str, list[dict]] = {}
    for frame in usable.to_dict("records"):
        frame = {k: (None if pd.isna(v) else v) for k, v in frame.items()}
        groups.setdefault(group_key(frame["video_id"], frame["label"], frame["original"]), []).append(frame)
    return [{"key": key, "group": key, "frames": members, "settings": settings} for key, members in sorted(groups.items())]


def extract_faces(
    frames_csv: str | Path,
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
) -> pd.DataFrame:
    """Detect, crop and save the faces of every usable frame in frames.csv; returns and writes faces.csv.

    Resumable like sample_frames: finished groups are journaled under `out_dir/_journal`.
    workers: processes, each with its own MTCNN (0 = one per core); TensorFlow's threads are shared out.
    """
    select_faces([], keep, min_confidence)  # validates KEEP before any work
    crop_regions(np.zeros((8, 8, 3), np.uint8), np.array([[2, 3], [6, 3], [4, 4], [3, 6], [5, 6]]), regions)
    if face_size < 16:
        raise ValueError(f"FACE_SIZE must be at least 16 px, got {face_size}")
    shard_ = parse_shard(shard)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = read_frames_manifest(frames_csv)
    settings = {"out_dir": str(out_dir), "face_size": int(face_size), "margin": float(margin),
                "min_confidence": float(min_confidence), "keep": keep, "regions": list(regions),
                "reuse_original_boxes": bool(reuse_original_boxes), "jpeg_quality": int(jpeg_quality)}
    workers = worker_count(workers)
    threads = max(1, cpu_count() // workers)
    rows = run_stage(face_tasks(frames, settings), extract_group, out_dir=out_dir, stage="faces", shard=shard_,
                     workers=workers, desc="extracting faces", initializer=_init_detector,
                     initargs=(detect_max_side, threads, min_face_size, scale_factor))
    write_manifest(rows, out_dir / "faces.csv", COLUMNS, sort_by=["part", "video_id", "frame_index", "face_index"])
    return read_faces_manifest(out_dir / "faces.csv")


def read_faces_manifest(path: str | Path) -> pd.DataFrame:
    """Read faces.csv with ids as strings and integer columns as integers."""
    return read_manifest(path, "notebook 02 (face cropping)", ("frame_index", "face_index"))


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
