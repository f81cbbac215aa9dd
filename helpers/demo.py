"""The embedded demo dataset: a small DFDC-layout folder of REAL and face-swapped FAKE videos, made offline.

The study must run end to end (`make report`, the notebook tests) without a DFDC download, so the
faces come from the 100 real LFW faces in `skimage.data.lfw_subset()` (its last 100 images are
non-faces and are never used).

- Each face is upscaled to a 120 px portrait with a per-identity skin tint (so colour matching is
  something a swap can get wrong); MTCNN finds its five landmarks (98 of the 100; the rest are skipped).
- A REAL video moves the portrait through a scene drawn from the seed: smooth background, drift,
  zoom, tilt, a lighting ramp, sensor noise, JPEG per frame, then MPEG-4 (`mp4v`).
- A FAKE warps identity B's face onto A's portrait (similarity transform on the landmarks, feathered
  mask) and is rendered in exactly the scene of A's REAL video, so the face is the only difference.
  Mask shape, feathering, colour matching, blend and blur vary per fake (`videos.csv` records them).
- All randomness comes from Generators seeded by (seed, purpose, identity): the same arguments give
  the same files, and REAL videos do not depend on how many identities are asked for.

Layout under `out_dir`: `dfdc_demo_part_<i>/` with the videos and DFDC's `metadata.json` (a fake sits
in its original's part), `identities.csv` (video, identity, source_identity: target A and source B for
a FAKE, the same identity twice for a REAL), `videos.csv` (one row per video, with the recipe) and
`demo.json` (arguments and counts: a later call with the same arguments reuses the build).

    python -m helpers.demo --out data/demo/videos [--identities 100] [--seed 0] [--frames 32] [--size 160]
"""
from __future__ import annotations

import argparse
import json
import shutil
import string
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from helpers import runtime

N_FACES = 100          # lfw_subset() holds 100 faces followed by 100 non-faces
PORTRAIT_PX = 120      # faces are detected, swapped and stored at this size
FORMAT_VERSION = 2     # bump when the rendering changes, so old builds are not reused
PART_PREFIX = "dfdc_demo_part_"
COLUMNS = ["video", "part", "label", "split", "original", "identity", "source_identity", "mask",
           "colour_match", "blend", "blur", "jpeg_quality"]

# Each purpose gets its own random stream, so adding a draw to one never shifts another.
_NAME, _TINT, _SCENE, _SOURCE, _RECIPE = range(5)


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

    Detected on the grey portraits, before tinting, so the set of usable identities does not depend
    on the seed. Cached per process: the answer never changes and a build calls this every time.
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
    """An RGB float32 portrait: the grey face times a per-identity skin tint (red above green above blue)."""
    rng = _rng(seed, _TINT, identity)
    tint = np.array([1.0, rng.uniform(0.72, 0.9), rng.uniform(0.5, 0.78)]) * rng.uniform(0.85, 1.15)
    return np.clip(grey[..., None] * tint[None, None, :].astype(np.float32), 0, 255)


# ---------------------------------------------------------------------------------------------------------
# The swap

@dataclass(frozen=True)
class SwapRecipe:
    """How one fake is blended: what varies between fakes so that some are easier to spot than others."""

    mask: str            # "hull" (expanded convex hull of the landmarks) or "ellipse"
    grow: float          # how far the mask reaches past the landmarks, as a fraction of the face size
    morph: int           # pixels to dilate (>0) or erode (<0) the mask by
    feather: float       # Gaussian sigma of the mask's edge, pixels
    colour_match: bool   # mean/std transfer in LAB inside the mask
    blend: float         # 1 = the source face replaces the target, less lets the target show through
    blur: float          # Gaussian sigma applied to the source (0 = none)

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "SwapRecipe":
        """A random recipe."""
        return cls(mask=str(rng.choice(["hull", "ellipse"])), grow=float(rng.uniform(0.0, 0.25)),
                   morph=int(rng.integers(-4, 5)), feather=float(rng.uniform(1.5, 6.0)),
                   colour_match=bool(rng.random() < 0.6), blend=float(rng.uniform(0.7, 1.0)),
                   blur=float(0.0 if rng.random() < 0.5 else rng.uniform(0.6, 1.6)))


def swap_mask(landmarks: np.ndarray, recipe: SwapRecipe, size: int = PORTRAIT_PX) -> np.ndarray:
    """A float32 mask in [0, 1] covering the inner face given by `landmarks`, shaped by `recipe`."""
    eyes, nose, mouth = landmarks[:2], landmarks[2], landmarks[3:]
    eye_mid, mouth_mid = eyes.mean(0), mouth.mean(0)
    across = np.linalg.norm(eyes[1] - eyes[0])
    down = np.linalg.norm(mouth_mid - eye_mid)
    mask = np.zeros((size, size), np.uint8)
    if recipe.mask == "hull":
        side = (eyes[1] - eyes[0]) / max(across, 1e-6)
        up = (eye_mid - mouth_mid) / max(down, 1e-6)
        reach = 0.3 + recipe.grow
        # Landmarks stop at the eyes and the mouth corners; push them out to take in brows, cheeks and chin.
        points = np.vstack([
            eyes + up * reach * 1.6 * down, eyes[0] - side * reach * across, eyes[1] + side * reach * across,
            mouth - up * reach * down, mouth[0] - side * reach * across, mouth[1] + side * reach * across, nose,
        ])
        cv2.fillConvexPoly(mask, cv2.convexHull(np.round(points).astype(np.int32)), 1)
    else:
        centre = (eye_mid + mouth_mid) / 2 + (eye_mid - mouth_mid) * 0.1
        axes = ((0.95 + recipe.grow) * across, (1.05 + recipe.grow) * down)
        angle = np.degrees(np.arctan2(*(eyes[1] - eyes[0])[::-1]))
        cv2.ellipse(mask, tuple(int(v) for v in np.round(centre)), tuple(int(v) for v in np.round(axes)),
                    float(angle), 0, 360, 1, -1)
    if recipe.morph:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(recipe.morph) + 1,) * 2)
        mask = (cv2.dilate if recipe.morph > 0 else cv2.erode)(mask, kernel)
    return cv2.GaussianBlur(mask.astype(np.float32), (0, 0), recipe.feather)


def _match_colour(source: np.ndarray, target: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """`source` with the LAB mean and std of `target`, both measured where `weight` is high."""
    inside = weight > 0.5
    if inside.sum() < 16:
        return source
    src = cv2.cvtColor(np.clip(source, 0, 255).astype(np.uint8), cv2.COLOR_RGB2LAB).astype(np.float32)
    tgt = cv2.cvtColor(np.clip(target, 0, 255).astype(np.uint8), cv2.COLOR_RGB2LAB).astype(np.float32)
    s_mean, s_std = src[inside].mean(0), src[inside].std(0) + 1e-3
    t_mean, t_std = tgt[inside].mean(0), tgt[inside].std(0) + 1e-3
    matched = np.clip((src - s_mean) / s_std * t_std + t_mean, 0, 255).astype(np.uint8)
    return cv2.cvtColor(matched, cv2.COLOR_LAB2RGB).astype(np.float32)


def swap_face(target: np.ndarray, target_landmarks: np.ndarray, source: np.ndarray,
              source_landmarks: np.ndarray, recipe: SwapRecipe) -> np.ndarray:
    """The target portrait with the source's face warped onto it (RGB float32, same size as the target)."""
    matrix, _ = cv2.estimateAffinePartial2D(source_landmarks.astype(np.float32), target_landmarks.astype(np.float32))
    size = target.shape[1], target.shape[0]
    warped = cv2.warpAffine(source, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    if recipe.blur:
        warped = cv2.GaussianBlur(warped, (0, 0), recipe.blur)
    mask = swap_mask(target_landmarks, recipe, target.shape[0])
    if recipe.colour_match:
        warped = _match_colour(warped, target, mask)
    alpha = (mask * recipe.blend)[..., None]
    return target * (1 - alpha) + warped * alpha


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


def render_video(portrait: np.ndarray, scene: Scene, frames: int, size: int) -> np.ndarray:
    """The frames (F x size x size x 3 RGB uint8) of `portrait` moving through `scene`."""
    rng = _rng(scene.seed)
    pad = int(np.ceil(size * 0.12))
    background = draw_background(rng, size + 2 * pad)
    alpha = _portrait_alpha(portrait.shape[0])
    half = portrait.shape[0] / 2
    out = np.empty((frames, size, size, 3), np.uint8)
    for index in range(frames):
        t = index / max(frames - 1, 1)
        ease = t * t * (3 - 2 * t)  # drift starts and stops gently, like a handheld camera settling

        def at(pair, u=t):
            return pair[0] + (pair[1] - pair[0]) * u

        sway = scene.wobble * np.sin(2 * np.pi * t + scene.seed % 7)
        centre = size / 2 + size * np.array([at((scene.start[0], scene.end[0]), ease) + sway,
                                             at((scene.start[1], scene.end[1]), ease)])
        scale = scene.face_frac * size / portrait.shape[0] * at(scene.zoom)
        matrix = cv2.getRotationMatrix2D((half, half), at(scene.tilt), scale)
        matrix[:, 2] += centre - half  # getRotationMatrix2D keeps (half, half) fixed; move it to `centre`
        face = cv2.warpAffine(portrait, matrix, (size, size), flags=cv2.INTER_LINEAR)
        weight = cv2.warpAffine(alpha, matrix, (size, size), flags=cv2.INTER_LINEAR)[..., None]
        shift = np.round(pad + pad * np.array(scene.pan) * t).astype(int)
        back = background[shift[1]:shift[1] + size, shift[0]:shift[0] + size]
        frame = back * (1 - weight) + face * weight
        frame = (frame - 128) * at(scene.contrast) + 128 + at(scene.brightness)
        frame += rng.normal(0, scene.noise, frame.shape).astype(np.float32)
        bgr = cv2.cvtColor(np.clip(frame, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
        _, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, scene.jpeg_quality])
        out[index] = cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return out


# ---------------------------------------------------------------------------------------------------------
# The dataset

def video_name(seed: int, identity: int, index: int, taken: set[str]) -> str:
    """A DFDC-style name (10 lowercase letters + .mp4) for video `index` of `identity`, not in `taken`."""
    rng = _rng(seed, _NAME, identity, index)
    while True:
        name = "".join(string.ascii_lowercase[i] for i in rng.integers(0, 26, 10)) + ".mp4"
        if name not in taken:
            taken.add(name)
            return name


def plan_videos(landmarks: dict[int, np.ndarray | None], identities: int, seed: int,
                fakes_per_real: int = 1, part_size: int = 40) -> tuple[list[dict], int]:
    """One record per video (REAL first, then its fakes) and the number of LFW faces skipped on the way."""
    usable = [i for i in range(N_FACES) if landmarks.get(i) is not None][:identities]
    if not usable:
        raise ValueError("no LFW face has landmarks: check that MTCNN runs (helpers.faces.FaceDetector)")
    if fakes_per_real and fakes_per_real > len(usable) - 1:
        raise ValueError(f"fakes_per_real={fakes_per_real} needs at least {fakes_per_real + 1} identities "
                         f"(a fake's source is another identity); got {len(usable)}")
    skipped = sum(landmarks.get(i) is None for i in range(usable[-1] + 1))
    per_part = max(1, part_size // (1 + fakes_per_real))
    # Fakes swap faces within small casts (as DFDC paired actors filmed together), never across the
    # whole pool: random sources would link nearly every identity into one group through the fakes,
    # and no identity-disjoint split would be possible.
    cast_size = fakes_per_real + 1
    order = list(usable)
    _rng(seed, _SOURCE).shuffle(order)
    casts = [order[i:i + cast_size] for i in range(0, len(order), cast_size)]
    if len(casts) > 1 and len(casts[-1]) < cast_size:
        casts[-2].extend(casts.pop())
    cast_of = {member: cast for cast in casts for member in cast}
    records, taken = [], set()
    for position, target in enumerate(usable):
        part = f"{PART_PREFIX}{position // per_part}"
        real = video_name(seed, target, 0, taken)
        scene = Scene.draw(_rng(seed, _SCENE, target))  # shared by the REAL video and its fakes
        records.append({"video": real, "part": part, "label": "REAL", "split": "train", "original": None,
                        "identity": target, "source_identity": target, "scene": scene, "recipe": None})
        others = [i for i in cast_of[target] if i != target]
        sources = _rng(seed, _SOURCE, target).choice(others, size=fakes_per_real, replace=False)
        for k, source in enumerate(sources, start=1):
            records.append({"video": video_name(seed, target, k, taken), "part": part, "label": "FAKE",
                            "split": "train", "original": real, "identity": target,
                            "source_identity": int(source), "scene": scene,
                            "recipe": SwapRecipe.draw(_rng(seed, _RECIPE, target, k))})
    return records, skipped


def write_video(frames: np.ndarray, path: Path, fps: float) -> None:
    """Write RGB frames to an MPEG-4 (`mp4v`) file, atomically: a file that exists is complete."""
    partial = path.parent.parent / "_partial" / path.name
    partial.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {partial} with the mp4v codec; install opencv-python-headless "
                           "(its wheels include FFmpeg)")
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    partial.replace(path)


def _arguments(identities, seed, frames, size, fps, fakes_per_real, part_size) -> dict:
    return {"format": FORMAT_VERSION, "identities": int(identities), "seed": int(seed), "frames": int(frames),
            "size": int(size), "fps": float(fps), "fakes_per_real": int(fakes_per_real), "part_size": int(part_size)}


def read_videos(out_dir: str | Path) -> pd.DataFrame:
    """The demo's `videos.csv`: one row per video with its label, identities and swap recipe."""
    path = Path(out_dir) / "videos.csv"
    return pd.read_csv(path, dtype={"video": str, "part": str, "label": str, "original": str, "mask": str})


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


def make_demo_dataset(out_dir: str | Path, identities: int = 100, seed: int = 0, frames: int = 32, size: int = 160,
                      fps: float = 10.0, fakes_per_real: int = 1, part_size: int = 40, detector=None,
                      progress: bool = True) -> pd.DataFrame:
    """Build (or reuse) the demo dataset in `out_dir`; returns `videos.csv`, one row per video.

    identities: how many LFW identities with landmarks to use (at most 98). fakes_per_real: fakes made
    from each REAL video, each with another identity's face. part_size: about how many videos per part.
    detector: a `helpers.faces.FaceDetector` to reuse. The frame has `attrs` "reused" (True when an
    identical earlier build was found) and "skipped_identities" (LFW faces without landmarks).
    """
    if frames < 1 or size < 32 or fps <= 0 or identities < 1 or fakes_per_real < 0:
        raise ValueError(f"make_demo_dataset needs frames >= 1, size >= 32, fps > 0, identities >= 1 and "
                         f"fakes_per_real >= 0; got frames={frames}, size={size}, fps={fps}, "
                         f"identities={identities}, fakes_per_real={fakes_per_real}")
    out_dir = Path(out_dir)
    arguments = _arguments(identities, seed, frames, size, fps, fakes_per_real, part_size)
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
    records, skipped = plan_videos(landmarks, identities, seed, fakes_per_real, part_size)
    grey = _grey_portraits()
    by_target: dict[int, list[dict]] = {}
    for record in records:
        by_target.setdefault(record["identity"], []).append(record)
    with runtime.progress(total=len(records), desc="demo videos", unit="video", disable=not progress) as bar:
        for target, group in by_target.items():
            paths = [out_dir / r["part"] / r["video"] for r in group]
            if all(p.is_file() for p in paths):
                bar.update(len(group))
                continue
            paths[0].parent.mkdir(parents=True, exist_ok=True)
            portrait = tint_portrait(grey[target], seed, target)
            for record, path in zip(group, paths):
                if not path.is_file():
                    face = portrait
                    if record["label"] == "FAKE":
                        source = record["source_identity"]
                        face = swap_face(portrait, landmarks[target], tint_portrait(grey[source], seed, source),
                                         landmarks[source], record["recipe"])
                    write_video(render_video(face, record["scene"], frames, size), path, fps)
                bar.update(1)
    shutil.rmtree(out_dir / "_partial", ignore_errors=True)

    for part in sorted({r["part"] for r in records}):
        meta = {r["video"]: {"label": r["label"], "split": r["split"], "original": r["original"]}
                for r in sorted(records, key=lambda r: r["video"]) if r["part"] == part}
        (out_dir / part / "metadata.json").write_text(json.dumps(meta, indent=1) + "\n",
                                                      encoding="utf-8")
    rows = []
    for r in records:
        recipe = asdict(r["recipe"]) if r["recipe"] else {}
        rows.append({**{k: r[k] for k in COLUMNS if k in r}, "mask": recipe.get("mask"),
                     "colour_match": recipe.get("colour_match"), "blend": recipe.get("blend"),
                     "blur": recipe.get("blur"), "jpeg_quality": r["scene"].jpeg_quality})
    table = pd.DataFrame(rows, columns=COLUMNS)
    table[["video", "identity", "source_identity"]].to_csv(out_dir / "identities.csv", index=False)
    table.to_csv(out_dir / "videos.csv", index=False, float_format="%.4f")
    counts = {"videos": len(table), "real": int((table.label == "REAL").sum()), "fake": int((table.label == "FAKE").sum()),
              "identities": int(table.identity.nunique()), "parts": int(table.part.nunique()),
              "skipped_identities": int(skipped)}
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
    parser.add_argument("--frames", type=int, default=32, help="frames per video")
    parser.add_argument("--size", type=int, default=160, help="frame side in pixels (square frames)")
    parser.add_argument("--fps", type=float, default=10.0, help="frames per second written to the files")
    parser.add_argument("--fakes-per-real", type=int, default=1, help="fakes made from each REAL video")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    videos = make_demo_dataset(args.out, identities=args.identities, seed=args.seed, frames=args.frames,
                               size=args.size, fps=args.fps, fakes_per_real=args.fakes_per_real,
                               progress=not args.quiet)
    a = videos.attrs
    print(f"demo dataset in {args.out}: {a['videos']} videos ({a['real']} REAL, {a['fake']} FAKE) in {a['parts']} parts "
          f"from {a['identities']} identities; {a['skipped_identities']} LFW faces skipped (no landmarks)"
          + ("; already built, reused" if a["reused"] else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
