"""Face detection with MTCNN (the `mtcnn` package on TensorFlow), face crops and region crops.

Landmarks come in MTCNN's order: left eye, right eye, nose, mouth left, mouth right (image
coordinates, so the "left eye" is the one on the image's left).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from helpers.runtime import import_tensorflow

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
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2RGB)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected a grey, RGB or RGBA image, got an array of shape {image.shape}")
    if image.shape[2] == 4:
        code = cv2.COLOR_BGRA2RGB if channel_order == "BGR" else cv2.COLOR_RGBA2RGB
        return cv2.cvtColor(image, code)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if channel_order == "BGR" else np.ascontiguousarray(image)


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


class FaceDetector:
    """MTCNN that stays quiet, bounds its threads, and detects on a downscaled copy.

    detect_max_side: the longer side of the copy MTCNN sees (0 = full resolution). A 1080p frame
    shrunk to 640 px still shows DFDC faces at 100+ px, far above MTCNN's 20 px minimum.
    """

    def __init__(self, detect_max_side: int = 640, min_face_size: int = 20, threads: int | None = None,
                 device: str | None = None):
        tf = import_tensorflow(threads)
        from mtcnn import MTCNN  # noqa: PLC0415 - TensorFlow must be configured first

        if device is None:
            device = "GPU:0" if tf.config.list_physical_devices("GPU") else "CPU:0"
        self.detector = MTCNN(device=device)
        self.detect_max_side = int(detect_max_side)
        self.min_face_size = int(min_face_size)

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
            min_size = max(12, round(self.min_face_size * min(scales[i] for i in indices)))
            rows = self.detector.detect_faces(batch, output_type="numpy", box_format="xyxy", min_face_size=min_size)
            rows = np.asarray(rows, dtype=np.float64).reshape(-1, 16)
            for row in rows:
                i = indices[int(row[0])]
                x1, y1, x2, y2 = row[1:5]
                face = Face(box=np.array([x1, y1, x2 - x1, y2 - y1]), confidence=float(row[5]),
                            landmarks=row[6:16].reshape(5, 2).copy())
                results[i].append(face)
        for i in range(len(images)):
            results[i] = sorted(map_back(results[i], scales[i]), key=lambda f: -f.confidence)
        return results

    def detect_one(self, image: np.ndarray) -> list[Face]:
        return self.detect([image])[0]
