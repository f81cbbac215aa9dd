"""Tiny synthetic videos for tests: frame i shows i in binary as black/white columns, so a decoded frame names its index."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

BITS = 8  # columns of the frame, one per bit; the frame must be at least BITS * 4 px wide


def write_video(path: Path, n_frames: int = 30, size: tuple[int, int] = (64, 48), fps: float = 10.0) -> Path:
    """An mp4 of `n_frames` flat frames (width, height = size)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened(), f"cannot write {path}"
    for i in range(n_frames):
        writer.write(_pattern(i, size))
    writer.release()
    return path


def _pattern(index: int, size: tuple[int, int]) -> np.ndarray:
    width, height = size
    frame = np.zeros((height, width, 3), np.uint8)
    step = width // BITS
    for bit in range(BITS):
        if index >> bit & 1:
            frame[:, bit * step:(bit + 1) * step] = 255
    return frame


def frame_level_index(image: np.ndarray) -> int:
    """Which frame a decoded image is (inverse of write_video's pattern)."""
    step = image.shape[1] // BITS
    # the middle of each column: codecs smear the edges between black and white
    return sum(1 << bit for bit in range(BITS) if image[:, bit * step + step // 4:(bit + 1) * step - step // 4].mean() > 127)


def write_part(folder: Path, videos: dict[str, dict], n_frames: int = 30, present: set[str] | None = None) -> Path:
    """A DFDC part: metadata.json for `videos` (name -> {label, original}) and the videos in `present`."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = {name: {"label": v["label"], "split": "train", "original": v.get("original")} for name, v in videos.items()}
    (folder / "metadata.json").write_text(json.dumps(meta))
    for name in videos if present is None else present:
        write_video(folder / name, n_frames=n_frames)
    return folder
