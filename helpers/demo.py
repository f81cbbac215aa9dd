"""The embedded demo dataset: a DFDC-layout folder of REAL and face-swapped FAKE videos, made offline.

The study must run end to end (`make report`, the notebook tests) without a DFDC download, so the
faces come from the 100 real LFW faces in `skimage.data.lfw_subset()` (its last 100 images are
non-faces and are never used).

- Each 25 px LFW face is upscaled to a 120 px portrait with a fixed per-identity skin grain at two
  scales, per pixel and in 3 px blobs that survive the resize to the demo models' 48-64 px (so a swap
  rendered at lower resolution loses detail its surroundings keep) and a per-identity skin tint (so
  colour matching is something a swap can get wrong); MTCNN finds its five landmarks (98 of the 100;
  the rest are skipped).
- A REAL video moves the portrait through a scene drawn from the seed: smooth background, drift,
  zoom, tilt, a lighting ramp, sensor noise, JPEG per frame, then MPEG-4 (`mp4v`). Each identity has
  `reals_per_identity` REAL videos in different scenes, as DFDC's actors recur in many videos.
- A FAKE warps identity B's face onto A's portrait (similarity transform on the landmarks) and is
  rendered in exactly the scene of its REAL original, so the face is the only difference. Each REAL
  has `fakes_per_real` fakes, each with a different recipe of RECIPES, from "easiest" (rectangle
  paste, hard seam, no colour matching, face at 0.16-0.2x resolution, 3-5 px / 3-5 deg / 4-6 % warp
  error, strong blur or sharpening) to "hardest" (landmark hull, wide feather, full colour matching,
  0.35-0.4x resolution, sub-pixel alignment, almost no filtering). `videos.csv` records every factor.
- Faces are swapped only within pairs of identities (a trio when the count is odd), as DFDC paired
  actors filmed together: identity groups (connected over fake -> original and fake -> source
  identity) are the pairs, so an identity-disjoint split and group-resampled intervals have many.
  An identity is an LFW image: lfw_subset repeats a few people (see helpers.identity), which only
  face embeddings can join.
- All randomness comes from Generators seeded by (seed, purpose, identity, ...): the same arguments
  give byte-identical files, in any order and with any number of workers.

Defaults (98 identities with landmarks, 1 REAL video each, 5 fakes per REAL, 16 frames of 160 px):
588 videos, 98 REAL and 490 FAKE (83.3 % FAKE, DFDC's share), each recipe on 98 fakes (20 %), 49
identity groups (pairs) of 12 videos each; a 20% test split holds about 118 videos. With
`reals_per_identity=2` (two scenes per actor, as DFDC's actors recur): 1176 videos, 49 groups of
24 videos. Measured on the default 588-video build (format 5), MTCNN as the tests run it
(helpers.faces.FaceDetector, detect_max_side=0, confidence >= 0.9) on every second frame of the REAL
videos finds a face on 97.5 % of 784 frames (a coarse grain of sigma 8 gave 95.7 %, so 6 it is); fakes
are cropped with their original's boxes in training and detected on themselves in val/test, where the
easiest (a fifth of the resolution, blurred) lose the most. The build takes 12-17 s on the 2-core
machine (`time python -m helpers.demo --out /tmp/demo_check/videos`).

Layout under `out_dir`: `dfdc_demo_part_<i>/` with the videos and DFDC's `metadata.json` (a fake sits
in its original's part), `identities.csv` (video, identity, source_identity: target A and source B for
a FAKE, the same identity twice for a REAL), `videos.csv` (one row per video, with the recipe) and
`demo.json` (arguments and counts: a later call with the same arguments reuses the build).

    python -m helpers.demo --out data/demo/videos [--identities 100] [--seed 0] [--frames 16] [--size 160]
"""
from __future__ import annotations

import argparse
import json
import shutil
import string
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from helpers import runtime

N_FACES = 100          # lfw_subset() holds 100 faces followed by 100 non-faces
PORTRAIT_PX = 120      # faces are detected, swapped and stored at this size
FORMAT_VERSION = 5     # bump when the rendering changes, so old builds are not reused
PART_PREFIX = "dfdc_demo_part_"
GRAIN = (3.0, 6.0)     # sigma of the fine and the coarse skin grain (0..255 scale)
COLOUR_MATCH = {"none": 0.0, "partial": 0.5, "full": 1.0}  # how far the swap's colours move to the target's

# One row per recipe, easiest to spot first; each fake of one original gets a different row. Pairs are
# uniform ranges, tuples of names are choices. `face_scale`: the swapped face is rendered at this
# fraction of its resolution and upscaled back, as an autoencoder's output is; `shift`, `rotate` and
# `scale_error`: how far the warp misses the target's landmarks (px, degrees, fraction); `filter`: the
# sigma of a blur or the amount of an unsharp mask applied to the pasted face.
RECIPES = {
    "easiest": dict(masks=("rectangle",), feather=(0.0, 0.0), colour=("none",), face_scale=(0.16, 0.2),
                    shift=(3.0, 5.0), rotate=(3.0, 5.0), scale_error=(0.04, 0.06), filter=(1.2, 1.8)),
    "easy": dict(masks=("rectangle", "hull"), feather=(0.5, 1.0), colour=("none", "partial"), face_scale=(0.2, 0.25),
                 shift=(2.0, 3.0), rotate=(2.0, 3.0), scale_error=(0.03, 0.04), filter=(0.8, 1.2)),
    "medium": dict(masks=("ellipse", "hull"), feather=(1.5, 2.5), colour=("partial",), face_scale=(0.25, 0.3),
                   shift=(1.0, 2.0), rotate=(1.0, 2.0), scale_error=(0.02, 0.03), filter=(0.5, 0.8)),
    "hard": dict(masks=("ellipse", "hull"), feather=(3.0, 4.5), colour=("partial", "full"), face_scale=(0.3, 0.35),
                 shift=(0.5, 1.0), rotate=(0.5, 1.0), scale_error=(0.01, 0.02), filter=(0.2, 0.5)),
    "hardest": dict(masks=("hull",), feather=(4.5, 6.0), colour=("full",), face_scale=(0.35, 0.4),
                    shift=(0.0, 0.5), rotate=(0.0, 0.5), scale_error=(0.0, 0.01), filter=(0.0, 0.2)),
}
RECIPE_FIELDS = ["recipe", "difficulty", "mask", "grow", "feather", "colour_match", "face_scale", "shift_x",
                 "shift_y", "rotate_deg", "scale_error", "blur", "sharpen"]
COLUMNS = ["video", "part", "label", "split", "original", "identity", "source_identity", *RECIPE_FIELDS,
           "jpeg_quality"]

# Each purpose gets its own random stream, so adding a draw to one never shifts another.
_NAME, _TINT, _SCENE, _SOURCE, _RECIPE, _GRAIN = range(6)


def _rng(seed: int, *keys: int) -> np.random.Generator:
    """A Generator for one purpose of one identity: independent of the order things are built in."""
    return np.random.default_rng([int(seed), *(int(k) for k in keys)])


# ---------------------------------------------------------------------------------------------------------
# Faces and landmarks

def _plausible(landmarks: np.ndarray) -> bool:
    """Whether 5 landmarks look like an upright face: eyes above nose above mouth, left before right."""
    eyes_y, mouth_y = landmarks[:2, 1].mean(), landmarks[3:, 1].mean()
    return bool(landmarks[0, 0] < landmarks[1, 0] and landmarks[3, 0] < landmarks[4, 0]
                and eyes_y < landmarks[2, 1] < mouth_y)


def _ordered_landmarks(landmarks: np.ndarray) -> np.ndarray | None:
    """The landmarks as (left_eye, right_eye, nose, mouth_left, mouth_right) rows, or None if implausible."""
    landmarks = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    return landmarks if _plausible(landmarks) else None


def _grey_portraits() -> np.ndarray:
    """The 100 LFW faces upscaled to PORTRAIT_PX, float32 grey in 0..255."""
    from skimage import data  # noqa: PLC0415 - only the demo needs scikit-image's sample data

    faces = data.lfw_subset()[:N_FACES]
    return np.stack([cv2.resize(f.astype(np.float32) * 255.0, (PORTRAIT_PX, PORTRAIT_PX),
                                interpolation=cv2.INTER_CUBIC) for f in faces]).clip(0, 255)


_LANDMARKS: dict[int, np.ndarray | None] = {}


def detect_landmarks(detector=None) -> dict[int, np.ndarray | None]:
    """Five landmarks for each of the 100 LFW portraits (None where MTCNN finds no usable face).

    Detected on the grey portraits, before grain and tint, so the set of usable identities does not
    depend on the seed. Cached per process: the answer never changes and a build calls this every time.
    """
    if not _LANDMARKS:
        from helpers.faces import FaceDetector, to_rgb  # noqa: PLC0415 - loads TensorFlow

        detector = detector or FaceDetector(detect_max_side=0)
        grey = _grey_portraits()
        found = detector.detect([to_rgb(g.astype(np.uint8)) for g in grey])
        for identity, faces in enumerate(found):
            _LANDMARKS[identity] = _ordered_landmarks(faces[0].landmarks) if faces else None
    return dict(_LANDMARKS)


def tint_portrait(grey: np.ndarray, seed: int, identity: int) -> np.ndarray:
    """An RGB float32 portrait: the grey face plus a fixed skin grain, times a per-identity skin tint."""
    # The upscaled 25 px faces have no fine detail at all; without the grain a swap rendered at a
    # lower resolution would look exactly like the real face around it.
    # Two scales: a fine one (per pixel) and a coarse one (3 px blobs) that survives the resize of a face
    # crop to the 64 px the demo's models see.
    noise = _rng(seed, _GRAIN, identity)
    fine = noise.standard_normal(grey.shape, dtype=np.float32) * GRAIN[0]
    blobs = noise.standard_normal((grey.shape[0] // 3, grey.shape[1] // 3), dtype=np.float32)
    coarse = cv2.resize(blobs, grey.shape[::-1], interpolation=cv2.INTER_LINEAR) * GRAIN[1]
    grain = fine + coarse
    rng = _rng(seed, _TINT, identity)
    tint = np.array([1.0, rng.uniform(0.72, 0.9), rng.uniform(0.5, 0.78)]) * rng.uniform(0.85, 1.15)
    return np.clip((grey + grain)[..., None] * tint[None, None, :].astype(np.float32), 0, 255)


# ---------------------------------------------------------------------------------------------------------
# The swap

@dataclass(frozen=True)
class SwapRecipe:
    """How one fake is made: what varies between fakes so that some are far easier to spot than others."""

    recipe: str          # the row of RECIPES this was drawn from
    mask: str            # "rectangle", "ellipse" or "hull" (expanded convex hull of the landmarks)
    grow: float          # how far the mask reaches past the landmarks, as a fraction of the face size
    feather: float       # Gaussian sigma of the mask's edge, pixels (0 = a hard seam)
    colour_match: str    # a key of COLOUR_MATCH: LAB mean/std transfer inside the mask, none to full
    face_scale: float    # the swapped face is downscaled to this fraction and upscaled back (1 = untouched)
    shift_x: float       # warp error: pixels the pasted face lands off the target's landmarks
    shift_y: float
    rotate_deg: float    # warp error: rotation about the face centre, degrees
    scale_error: float   # warp error: relative scale, e.g. 0.05 = 5 % too large
    blur: float          # Gaussian sigma applied to the pasted face (0 = none)
    sharpen: float       # unsharp-mask amount applied to the pasted face (0 = none)

    @property
    def difficulty(self) -> int:
        """1 for the easiest recipe to spot up to len(RECIPES) for the hardest."""
        return list(RECIPES).index(self.recipe) + 1

    @classmethod
    def draw(cls, rng: np.random.Generator, recipe: str) -> "SwapRecipe":
        """A random recipe within the ranges of RECIPES[recipe]."""
        ranges = RECIPES[recipe]

        def uniform(name):
            return float(rng.uniform(*ranges[name]))

        def signed(name):
            return uniform(name) * float(rng.choice([-1.0, 1.0]))

        shift, direction = uniform("shift"), rng.uniform(0, 2 * np.pi)
        amount = uniform("filter")
        sharpen = bool(rng.random() < 0.5)
        return cls(recipe=recipe, mask=str(rng.choice(ranges["masks"])), grow=float(rng.uniform(0.0, 0.2)),
                   feather=uniform("feather"), colour_match=str(rng.choice(ranges["colour"])),
                   face_scale=uniform("face_scale"), shift_x=float(shift * np.cos(direction)),
                   shift_y=float(shift * np.sin(direction)), rotate_deg=signed("rotate"),
                   scale_error=signed("scale_error"), blur=0.0 if sharpen else amount,
                   sharpen=amount if sharpen else 0.0)


def swap_mask(landmarks: np.ndarray, recipe: SwapRecipe, size: int = PORTRAIT_PX) -> np.ndarray:
    """A float32 mask in [0, 1] covering the inner face given by `landmarks`, shaped by `recipe`."""
    eyes, nose, mouth = landmarks[:2], landmarks[2], landmarks[3:]
    eye_mid, mouth_mid = eyes.mean(0), mouth.mean(0)
    across = np.linalg.norm(eyes[1] - eyes[0])
    down = np.linalg.norm(mouth_mid - eye_mid)
    side = (eyes[1] - eyes[0]) / max(across, 1e-6)
    up = (eye_mid - mouth_mid) / max(down, 1e-6)
    mask = np.zeros((size, size), np.uint8)
    if recipe.mask == "hull":
        reach = 0.3 + recipe.grow
        # Landmarks stop at the eyes and the mouth corners; push them out to take in brows, cheeks and chin.
        points = np.vstack([
            eyes + up * reach * 1.6 * down, eyes[0] - side * reach * across, eyes[1] + side * reach * across,
            mouth - up * reach * down, mouth[0] - side * reach * across, mouth[1] + side * reach * across, nose,
        ])
        cv2.fillConvexPoly(mask, cv2.convexHull(np.round(points).astype(np.int32)), 1)
    elif recipe.mask == "rectangle":
        # A box square to the eyes, brows to chin: the crude paste of a cut-out face.
        top, bottom = eye_mid + up * (0.75 + recipe.grow) * down, mouth_mid - up * (0.35 + recipe.grow) * down
        half = side * (0.8 + recipe.grow) * across
        corners = np.array([top - half, top + half, bottom + half, bottom - half])
        cv2.fillConvexPoly(mask, np.round(corners).astype(np.int32), 1)
    elif recipe.mask == "ellipse":
        centre = (eye_mid + mouth_mid) / 2 + (eye_mid - mouth_mid) * 0.1
        axes = ((0.95 + recipe.grow) * across, (1.05 + recipe.grow) * down)
        angle = np.degrees(np.arctan2(*(eyes[1] - eyes[0])[::-1]))
        cv2.ellipse(mask, tuple(int(v) for v in np.round(centre)), tuple(int(v) for v in np.round(axes)),
                    float(angle), 0, 360, 1, -1)
    else:
        raise ValueError(f"unknown mask {recipe.mask!r}: use 'hull', 'ellipse' or 'rectangle'")
    mask = mask.astype(np.float32)
    return cv2.GaussianBlur(mask, (0, 0), recipe.feather) if recipe.feather > 0 else mask


def _match_colour(source: np.ndarray, target: np.ndarray, weight: np.ndarray, amount: float) -> np.ndarray:
    """`source` with its LAB mean and std moved `amount` (0..1) of the way to `target`'s, inside `weight`."""
    inside = weight > 0.5
    if inside.sum() < 16 or amount <= 0:
        return source
    src = cv2.cvtColor(np.clip(source, 0, 255).astype(np.uint8), cv2.COLOR_RGB2LAB).astype(np.float32)
    tgt = cv2.cvtColor(np.clip(target, 0, 255).astype(np.uint8), cv2.COLOR_RGB2LAB).astype(np.float32)
    s_mean, s_std = src[inside].mean(0), src[inside].std(0) + 1e-3
    t_mean, t_std = tgt[inside].mean(0), tgt[inside].std(0) + 1e-3
    mean, std = s_mean + amount * (t_mean - s_mean), s_std + amount * (t_std - s_std)
    matched = np.clip((src - s_mean) / s_std * std + mean, 0, 255).astype(np.uint8)
    return cv2.cvtColor(matched, cv2.COLOR_LAB2RGB).astype(np.float32)


def swap_face(target: np.ndarray, target_landmarks: np.ndarray, source: np.ndarray,
              source_landmarks: np.ndarray, recipe: SwapRecipe) -> np.ndarray:
    """The target portrait with the source's face warped onto it (RGB float32, same size as the target)."""
    matrix, _ = cv2.estimateAffinePartial2D(source_landmarks.astype(np.float32), target_landmarks.astype(np.float32))
    centre = target_landmarks.mean(0)
    error = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), recipe.rotate_deg, 1 + recipe.scale_error)
    error[:, 2] += (recipe.shift_x, recipe.shift_y)
    matrix = error @ np.vstack([matrix, [0, 0, 1]])  # the landmark fit, then the recipe's misalignment
    height, width = target.shape[:2]
    warped = cv2.warpAffine(source, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    if recipe.face_scale < 1:
        small = (max(1, round(width * recipe.face_scale)), max(1, round(height * recipe.face_scale)))
        warped = cv2.resize(cv2.resize(warped, small, interpolation=cv2.INTER_AREA), (width, height),
                            interpolation=cv2.INTER_LINEAR)
    if recipe.blur:
        warped = cv2.GaussianBlur(warped, (0, 0), recipe.blur)
    if recipe.sharpen:
        warped = warped + recipe.sharpen * (warped - cv2.GaussianBlur(warped, (0, 0), 1.0))
    mask = swap_mask(target_landmarks, recipe, height)
    warped = _match_colour(warped, target, mask, COLOUR_MATCH[recipe.colour_match])
    alpha = mask[..., None]
    return np.clip(target * (1 - alpha) + warped * alpha, 0, 255)


# ---------------------------------------------------------------------------------------------------------
# The scene

@dataclass(frozen=True)
class Scene:
    """Everything about a video except the face: a REAL video and its fakes share one Scene."""

    seed: int             # the background and the sensor noise are drawn from this
    face_frac: float      # the portrait's side as a fraction of the frame's side
    start: tuple          # the portrait centre's offset from the frame centre at the first frame (fractions)
    end: tuple            # ... and at the last frame
    wobble: float         # amplitude of a slow sway on top of the drift (fraction of the frame)
    zoom: tuple           # scale at the first and the last frame
    tilt: tuple           # rotation in degrees at the first and the last frame
    pan: tuple            # background offset at the last frame, as a fraction of its margin (-1..1)
    contrast: tuple       # contrast at the first and the last frame
    brightness: tuple     # brightness offset (0..255 scale) at the first and the last frame
    noise: float          # sensor noise sigma (0..255 scale)
    jpeg_quality: int     # each frame is JPEG-compressed at this quality before the MPEG-4 encoder

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "Scene":
        """A random scene in which MTCNN still finds the face in nearly every frame."""
        def pair(low, high):
            return tuple(float(v) for v in rng.uniform(low, high, 2))

        # Drift stays within a few pixels of the centre: the portrait must remain inside the frame.
        return cls(seed=int(rng.integers(2**31)), face_frac=float(rng.uniform(0.7, 0.78)),
                   start=pair(-0.05, 0.05), end=pair(-0.05, 0.05), wobble=float(rng.uniform(0.0, 0.015)),
                   zoom=(float(rng.uniform(0.95, 1.0)), float(rng.uniform(1.0, 1.05))), tilt=pair(-4.0, 4.0),
                   pan=pair(-1.0, 1.0), contrast=pair(0.85, 1.15), brightness=pair(-18.0, 18.0),
                   noise=float(rng.uniform(1.0, 3.0)), jpeg_quality=int(rng.integers(60, 91)))


def draw_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth RGB float32 background of `size` x `size`: a colour gradient plus low-frequency blobs."""
    ramp = np.linspace(-1, 1, size, dtype=np.float32)
    xx, yy = np.meshgrid(ramp, ramp)
    angle = rng.uniform(0, 2 * np.pi)
    along = (np.cos(angle) * xx + np.sin(angle) * yy)[..., None]
    base, slope = rng.uniform(50, 200, 3), rng.uniform(-50, 50, 3)
    cells = int(rng.integers(3, 7))
    blobs = cv2.resize(rng.normal(0, 25, (cells, cells, 3)).astype(np.float32), (size, size),
                       interpolation=cv2.INTER_CUBIC)
    return np.clip(base + slope * along + blobs, 0, 255).astype(np.float32)


def _portrait_alpha(size: int = PORTRAIT_PX) -> np.ndarray:
    """A square with a thin soft edge, so the portrait shows no aliased frame against the background.

    Only a thin one: the LFW crops end at the cheeks and chin, and a wide fade costs MTCNN the face
    outline (it then misses about 4% of the faces instead of under 1%).
    """
    alpha = np.zeros((size, size), np.float32)
    alpha[2:-2, 2:-2] = 1.0
    return cv2.GaussianBlur(alpha, (0, 0), 1.5)


def _render_bgr(portraits: list[np.ndarray], scene: Scene, frames: int, size: int) -> list[np.ndarray]:
    """`render_videos` in BGR, the order JPEG and the video writer want."""
    rng = _rng(scene.seed)
    pad = int(np.ceil(size * 0.12))
    background = np.ascontiguousarray(draw_background(rng, size + 2 * pad)[..., ::-1])
    alpha = cv2.cvtColor(_portrait_alpha(portraits[0].shape[0]), cv2.COLOR_GRAY2BGR)
    faces = [np.ascontiguousarray(p[..., ::-1]) for p in portraits]
    half = portraits[0].shape[0] / 2
    out = [np.empty((frames, size, size, 3), np.uint8) for _ in portraits]
    for index in range(frames):
        t = index / max(frames - 1, 1)
        ease = t * t * (3 - 2 * t)  # drift starts and stops gently, like a handheld camera settling

        def at(pair, u=t):
            return pair[0] + (pair[1] - pair[0]) * u

        sway = scene.wobble * np.sin(2 * np.pi * t + scene.seed % 7)
        centre = size / 2 + size * np.array([at((scene.start[0], scene.end[0]), ease) + sway,
                                             at((scene.start[1], scene.end[1]), ease)])
        scale = scene.face_frac * size / portraits[0].shape[0] * at(scene.zoom)
        matrix = cv2.getRotationMatrix2D((half, half), at(scene.tilt), scale)
        matrix[:, 2] += centre - half  # getRotationMatrix2D keeps (half, half) fixed; move it to `centre`
        weight = cv2.warpAffine(alpha, matrix, (size, size), flags=cv2.INTER_LINEAR)
        shift = np.round(pad + pad * np.array(scene.pan) * t).astype(int)
        back = np.ascontiguousarray(background[shift[1]:shift[1] + size, shift[0]:shift[0] + size])
        contrast = at(scene.contrast)
        noise = rng.standard_normal((size, size, 3), dtype=np.float32) * np.float32(scene.noise)
        # (back + (face - back) * weight) * contrast + offset + noise: all but the face term is shared
        shared = cv2.add(cv2.multiply(back, contrast), 128 * (1 - contrast) + at(scene.brightness)) + noise
        for face, video in zip(faces, out):
            warped = cv2.warpAffine(face, matrix, (size, size), flags=cv2.INTER_LINEAR)
            frame = cv2.add(shared, cv2.multiply(cv2.subtract(warped, back), weight, scale=contrast),
                            dtype=cv2.CV_8U)  # rounds and saturates to 0..255
            _, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, scene.jpeg_quality])
            video[index] = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
    return out


def render_videos(portraits: list[np.ndarray], scene: Scene, frames: int, size: int) -> list[np.ndarray]:
    """The frames (F x size x size x 3 RGB uint8) of each portrait moving through the same `scene`.

    One pass for a REAL video and all its fakes: the background, the motion and the sensor noise are
    drawn once, so they are identical in all of them (and cost a sixth).
    """
    return [np.ascontiguousarray(video[..., ::-1]) for video in _render_bgr(portraits, scene, frames, size)]


def render_video(portrait: np.ndarray, scene: Scene, frames: int, size: int) -> np.ndarray:
    """The frames (F x size x size x 3 RGB uint8) of `portrait` moving through `scene`."""
    return render_videos([portrait], scene, frames, size)[0]


# ---------------------------------------------------------------------------------------------------------
# The dataset

def video_name(seed: int, identity: int, key: tuple[int, int], taken: set[str]) -> str:
    """A DFDC-style name (10 lowercase letters + .mp4) for video `key` = (original, fake) of `identity`."""
    rng = _rng(seed, _NAME, identity, *key)
    while True:
        name = "".join(string.ascii_lowercase[i] for i in rng.integers(0, 26, 10)) + ".mp4"
        if name not in taken:
            taken.add(name)
            return name


def cast_pairs(usable: list[int], seed: int) -> list[list[int]]:
    """The identities in shuffled pairs (a trio at the end when the count is odd): fakes swap within one."""
    order = list(usable)
    _rng(seed, _SOURCE).shuffle(order)
    casts = [order[i:i + 2] for i in range(0, len(order), 2)]
    if len(casts) > 1 and len(casts[-1]) < 2:
        casts[-2].extend(casts.pop())
    return casts


def recipe_order(seed: int, identity: int, original: int, fakes: int) -> list[str]:
    """The recipe of each fake of one original: all different while there are enough, in a random order."""
    names = list(RECIPES)
    rng = _rng(seed, _RECIPE, identity, original)
    order = []
    while len(order) < fakes:  # more fakes than recipes: another round, each recipe once more
        order.extend(names[i] for i in rng.permutation(len(names)))
    return order[:fakes]


def plan_videos(landmarks: dict[int, np.ndarray | None], identities: int, seed: int, fakes_per_real: int = 5,
                part_size: int = 40, reals_per_identity: int = 1) -> tuple[list[dict], int]:
    """One record per video (each REAL, then its fakes) and the number of LFW faces skipped on the way."""
    usable = [i for i in range(N_FACES) if landmarks.get(i) is not None][:identities]
    if not usable:
        raise ValueError("no LFW face has landmarks: check that MTCNN runs (helpers.faces.FaceDetector)")
    if fakes_per_real and len(usable) < 2:
        raise ValueError(f"fakes need at least 2 identities (a fake's face comes from another identity); "
                         f"got {len(usable)}: ask for more identities or fakes_per_real=0")
    skipped = sum(landmarks.get(i) is None for i in range(usable[-1] + 1))
    per_part = max(1, part_size // (1 + fakes_per_real))
    # Fakes swap faces within pairs (as DFDC paired actors filmed together), never across the whole
    # pool: random sources would link nearly every identity into one group through the fakes, and
    # neither an identity-disjoint split nor an interval that resamples identity groups would work.
    cast_of = {member: cast for cast in cast_pairs(usable, seed) for member in cast}
    records, taken, position = [], set(), 0
    for target in usable:
        partners = [i for i in cast_of[target] if i != target]
        for original in range(reals_per_identity):
            part = f"{PART_PREFIX}{position // per_part}"
            position += 1
            real = video_name(seed, target, (original, 0), taken)
            scene = Scene.draw(_rng(seed, _SCENE, target, original))  # shared by the REAL video and its fakes
            records.append({"video": real, "part": part, "label": "REAL", "split": "train", "original": None,
                            "identity": target, "source_identity": target, "scene": scene, "recipe": None})
            sources = _rng(seed, _SOURCE, target, original).choice(partners, size=fakes_per_real) if partners else []
            recipes = recipe_order(seed, target, original, fakes_per_real)
            for k, (source, recipe) in enumerate(zip(sources, recipes), start=1):
                records.append({"video": video_name(seed, target, (original, k), taken), "part": part,
                                "label": "FAKE", "split": "train", "original": real, "identity": target,
                                "source_identity": int(source), "scene": scene,
                                "recipe": SwapRecipe.draw(_rng(seed, _RECIPE, target, original, k), recipe)})
    return records, skipped


def count_groups(records: list[dict]) -> int:
    """Connected components over videos, joined by fake -> original and video -> identity / source identity."""
    parent: dict = {}

    def find(node):
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for r in records:
        for other in (("id", r["identity"]), ("id", r["source_identity"]), ("video", r["original"] or r["video"])):
            parent[find(("video", r["video"]))] = find(other)
    return len({find(node) for node in list(parent)})


def write_video(frames: np.ndarray, path: Path, fps: float) -> None:
    """Write RGB frames to an MPEG-4 (`mp4v`) file, atomically: a file that exists is complete."""
    _write_bgr(frames[..., ::-1], path, fps)


def _write_bgr(frames: np.ndarray, path: Path, fps: float) -> None:
    """`write_video` for BGR frames."""
    partial = path.parent.parent / "_partial" / path.name
    partial.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {partial} with the mp4v codec; install opencv-python-headless "
                           "(its wheels include FFmpeg)")
    for frame in frames:
        writer.write(np.ascontiguousarray(frame))
    writer.release()
    partial.replace(path)


def _arguments(identities, seed, frames, size, fps, fakes_per_real, reals_per_identity, part_size) -> dict:
    return {"format": FORMAT_VERSION, "identities": int(identities), "seed": int(seed), "frames": int(frames),
            "size": int(size), "fps": float(fps), "fakes_per_real": int(fakes_per_real),
            "reals_per_identity": int(reals_per_identity), "part_size": int(part_size)}


def read_videos(out_dir: str | Path) -> pd.DataFrame:
    """The demo's `videos.csv`: one row per video with its label, identities and swap recipe."""
    path = Path(out_dir) / "videos.csv"
    return pd.read_csv(path, dtype={"video": str, "part": str, "label": str, "original": str, "recipe": str,
                                    "mask": str, "colour_match": str})


def _is_complete(out_dir: Path, arguments: dict) -> bool:
    """Whether `out_dir` holds a finished build made with exactly these arguments."""
    try:
        stamp = json.loads((out_dir / "demo.json").read_text(encoding="utf-8"))
        videos = read_videos(out_dir)
    except (OSError, ValueError):
        return False
    return (stamp.get("arguments") == arguments and stamp.get("complete") is True
            and (out_dir / "identities.csv").exists()
            and all((out_dir / p / v).is_file() for p, v in zip(videos.part, videos.video)))


def _clear(out_dir: Path) -> None:
    """Remove what an earlier build with other arguments left (only the demo's own files)."""
    for part in out_dir.glob(f"{PART_PREFIX}*"):
        if part.is_dir():
            shutil.rmtree(part)
    for name in ("identities.csv", "videos.csv", "demo.json"):
        (out_dir / name).unlink(missing_ok=True)
    shutil.rmtree(out_dir / "_partial", ignore_errors=True)


def _render_original(group: list[dict], out_dir: Path, grey: np.ndarray, landmarks: dict, seed: int,
                     frames: int, size: int, fps: float) -> None:
    """Render and write one REAL video and its fakes (the ones not on disk yet)."""
    real = group[0]
    target = real["identity"]
    portrait = tint_portrait(grey[target], seed, target)
    faces = []
    for record in group:
        face = portrait
        if record["label"] == "FAKE":
            source = record["source_identity"]
            face = swap_face(portrait, landmarks[target], tint_portrait(grey[source], seed, source),
                             landmarks[source], record["recipe"])
        faces.append(face)
    paths = [out_dir / r["part"] / r["video"] for r in group]
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    for video, path in zip(_render_bgr(faces, real["scene"], frames, size), paths):
        if not path.is_file():
            _write_bgr(video, path, fps)


def make_demo_dataset(out_dir: str | Path, identities: int = 100, seed: int = 0, frames: int = 16, size: int = 160,
                      fps: float = 10.0, fakes_per_real: int = 5, reals_per_identity: int = 1, part_size: int = 40,
                      workers: int = 0, detector=None, progress: bool = True) -> pd.DataFrame:
    """Build (or reuse) the demo dataset in `out_dir`; returns `videos.csv`, one row per video.

    identities: how many LFW identities with landmarks to use (at most 98). reals_per_identity: REAL
    videos of each identity, each in its own scene. fakes_per_real: fakes made from each REAL video,
    each with its pair partner's face and a different recipe. part_size: about how many videos per
    part. workers: rendering threads (0 = one per core; the files do not depend on it). detector: a
    `helpers.faces.FaceDetector` to reuse. The frame has `attrs` "reused" (True when an identical
    earlier build was found) and the counts of `demo.json`.
    """
    if (frames < 1 or size < 32 or fps <= 0 or identities < 1 or fakes_per_real < 0 or reals_per_identity < 1
            or workers < 0):
        raise ValueError(f"make_demo_dataset needs frames >= 1, size >= 32, fps > 0, identities >= 1, "
                         f"fakes_per_real >= 0, reals_per_identity >= 1 and workers >= 0; got frames={frames}, "
                         f"size={size}, fps={fps}, identities={identities}, fakes_per_real={fakes_per_real}, "
                         f"reals_per_identity={reals_per_identity}, workers={workers}")
    out_dir = Path(out_dir)
    arguments = _arguments(identities, seed, frames, size, fps, fakes_per_real, reals_per_identity, part_size)
    if _is_complete(out_dir, arguments):
        videos = read_videos(out_dir)
        videos.attrs.update(reused=True, **json.loads((out_dir / "demo.json").read_text(encoding="utf-8"))["counts"])
        return videos

    out_dir.mkdir(parents=True, exist_ok=True)
    stamp_path = out_dir / "demo.json"
    try:
        stamp = json.loads(stamp_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        stamp = {}
    if stamp.get("arguments") != arguments:
        _clear(out_dir)  # different arguments: nothing already there can be reused
    # Written first, so an interrupted build with the same arguments resumes instead of starting over.
    stamp_path.write_text(json.dumps({"arguments": arguments, "complete": False}, indent=2) + "\n", encoding="utf-8")

    landmarks = detect_landmarks(detector)
    records, skipped = plan_videos(landmarks, identities, seed, fakes_per_real, part_size, reals_per_identity)
    grey = _grey_portraits()
    originals: list[list[dict]] = []
    for record in records:
        if record["label"] == "REAL":
            originals.append([])
        originals[-1].append(record)
    todo = [g for g in originals if not all((out_dir / r["part"] / r["video"]).is_file() for r in g)]
    # Threads, not processes: OpenCV and NumPy release the GIL for the heavy work, and nothing is copied.
    with runtime.progress(total=len(records), desc="demo videos", unit="video", disable=not progress) as bar, \
            ThreadPoolExecutor(max_workers=runtime.worker_count(workers)) as pool:
        bar.update(len(records) - sum(len(g) for g in todo))
        jobs = [(pool.submit(_render_original, g, out_dir, grey, landmarks, seed, frames, size, fps), len(g))
                for g in todo]
        for job, count in jobs:
            job.result()
            bar.update(count)
    shutil.rmtree(out_dir / "_partial", ignore_errors=True)

    for part in sorted({r["part"] for r in records}):
        meta = {r["video"]: {"label": r["label"], "split": r["split"], "original": r["original"]}
                for r in sorted(records, key=lambda r: r["video"]) if r["part"] == part}
        (out_dir / part / "metadata.json").write_text(json.dumps(meta, indent=1) + "\n",
                                                      encoding="utf-8")
    rows = []
    for r in records:
        recipe = {**asdict(r["recipe"]), "difficulty": r["recipe"].difficulty} if r["recipe"] else {}
        rows.append({**{k: r[k] for k in COLUMNS if k in r}, **{k: recipe.get(k) for k in RECIPE_FIELDS},
                     "jpeg_quality": r["scene"].jpeg_quality})
    table = pd.DataFrame(rows, columns=COLUMNS).astype({"difficulty": "Int64"})
    table[["video", "identity", "source_identity"]].to_csv(out_dir / "identities.csv", index=False)
    table.to_csv(out_dir / "videos.csv", index=False, float_format="%.4f")
    fakes = table[table.label == "FAKE"]
    counts = {"videos": len(table), "real": int((table.label == "REAL").sum()), "fake": len(fakes),
              "identities": int(table.identity.nunique()), "groups": count_groups(records),
              "parts": int(table.part.nunique()), "skipped_identities": int(skipped),
              "recipes": {name: int((fakes.recipe == name).sum()) for name in RECIPES}}
    stamp_path.write_text(json.dumps({"arguments": arguments, "complete": True, "counts": counts}, indent=2) + "\n",
                          encoding="utf-8")
    videos = read_videos(out_dir)
    videos.attrs.update(reused=False, **counts)
    return videos


def main(argv: list[str] | None = None) -> int:
    """Command line: build the demo dataset and print a one-line summary."""
    parser = argparse.ArgumentParser(prog="python -m helpers.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to write the DFDC-layout dataset into")
    parser.add_argument("--identities", type=int, default=100, help="LFW identities to use (at most 98 have landmarks)")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same dataset")
    parser.add_argument("--frames", type=int, default=16, help="frames per video")
    parser.add_argument("--size", type=int, default=160, help="frame side in pixels (square frames)")
    parser.add_argument("--fps", type=float, default=10.0, help="frames per second written to the files")
    parser.add_argument("--reals-per-identity", type=int, default=1, help="REAL videos of each identity")
    parser.add_argument("--fakes-per-real", type=int, default=5, help="fakes made from each REAL video")
    parser.add_argument("--workers", type=int, default=0, help="rendering threads (0 = one per core)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    videos = make_demo_dataset(args.out, identities=args.identities, seed=args.seed, frames=args.frames,
                               size=args.size, fps=args.fps, fakes_per_real=args.fakes_per_real,
                               reals_per_identity=args.reals_per_identity, workers=args.workers,
                               progress=not args.quiet)
    a = videos.attrs
    print(f"demo dataset in {args.out}: {a['videos']} videos ({a['real']} REAL, {a['fake']} FAKE) in {a['parts']} parts "
          f"from {a['identities']} identities in {a['groups']} identity groups; {a['skipped_identities']} LFW faces "
          "skipped (no landmarks)" + ("; already built, reused" if a["reused"] else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
