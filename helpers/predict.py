"""Score videos and images with a trained run: sample frames, find the face, classify, average per input.

    python -m helpers.predict PATH [PATH...] --run RUN_DIR [--frames 32] [--detector mtcnn-torch] [--json]
                              [--layout auto|none|dfdc|ffpp|celebdf|folders] [--compression c23]

A PATH that is a dataset root (--layout "auto", the default: a folder carrying the marks of exactly one
layout of helpers.layouts, i.e. parts with a metadata.json, FaceForensics++'s original_sequences/ and
manipulated_sequences/, Celeb-DF's folders, or real/ and fake/ folders; or any folder with --layout
naming one) is read with `frames.list_videos`, so every item's label and method are known: each usable
item (status ok, or unlabelled) is scored, every other listed item (missing, unsupported, bad_label,
duplicate_id) is a row with the listing's status and reason, and after the table each root gets its
AUC with the numbers of REAL and FAKE items scored (per method too, a method's fakes against all the
reals, when there are several; `score_dataset`, `dataset_summary`; with --json the rows carry dataset,
method, video_id, label and split, and the AUC lines go to stderr). A root that does not fit the layout
named is one unsupported row saying why. A folder with no layout's marks (or two, which is said), a
file, or any PATH with --layout none is scored as follows, without labels.

A PATH may be a video, an image or a folder; a folder is searched recursively, following symlinked
sub-folders as frame sampling does (a DFDC-layout folder keeps its videos one level down, in its
parts), and its videos and images are scored in sorted order; other files in it (metadata.json, CSVs)
are ignored. Every input gets one result, whatever happens to it: `status` is ok, unreadable (missing,
empty, corrupt or truncated), no_face, unsupported (not a video or image by its extension, or a folder
with none inside) or error (an unexpected failure, named in `reason`, so one bad file never stops the
rest). The command exits 1 when no input could be scored, 2 when the run cannot be loaded.

Faces are found and cropped as notebook 02 did for the run's training data: the run's
config.json["face_settings"] (notebook 02's settings.json, copied there by training) gives FACE_SIZE,
MARGIN, MIN_CONFIDENCE, MIN_FACE_SIZE, DETECT_MAX_SIDE, SCALE_FACTOR, JPEG_QUALITY, KEEP and DETECTOR
(the MTCNN backend: "mtcnn-torch" where the run does not say, and with it TensorFlow is never imported;
"mtcnn-tf" is the `mtcnn` package on TensorFlow); without it predict falls back to its own defaults and
says so. The crop is cut to the run's region variant if it has one, fitted to the run's image size and
normalised as in training. Each face's logit is
calibrated with the run's metrics.json["calibration"] (Platt: sigmoid(slope * logit + intercept)) when
present; a video's prob_fake is `helpers.metrics.aggregate_face_scores` of its faces' probabilities
(their mean), and `call` is FAKE when prob_fake > metrics.json["threshold"]["value"] (0.5 without one).

Only decoding, detection and the classifier cost time, so:
- a video's sampled frames are decoded in one forward pass (`frames.read_frames`): DFDC videos have so
  few keyframes that 32 seeks took 35-55 s on a 1080p clip, against 2-4 s for grabbing all 300 frames;
- MTCNN searches the whole (downscaled) frame only on key frames, every DETECT_EVERY-th sampled
  frame and the last; in the frames between, it searches a small square around where the face is
  expected (the key frames' boxes interpolated; all squares in one batch, and with mtcnn-torch a pyramid
  starting at ROI_MIN_FACE), which costs a few percent of a whole-frame search and still gives that
  frame's own box and landmarks (see bench/predict_latency.py for the effect);
- all the faces of an input go through the classifier in one batch.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

# Before torch loads OpenMP (no effect once it has): idle OpenMP threads otherwise spin, and on a machine
# whose cores are busy with other work that made a batch of 32 faces 2-5x slower (bench/predict_latency.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from helpers import layouts, metrics  # noqa: E402
from helpers.datasets import VARIANT_COLUMNS, fit_square, to_tensor  # noqa: E402
from helpers.faces import (DETECTORS, Face, box_iou, check_detector, crop_regions, make_detector,  # noqa: E402
                           read_image, select_faces, shrink_hint, square_crop, to_crop_coords)
from helpers.frames import VIDEO_EXTENSIONS, frame_indices, list_videos, open_video, read_frames  # noqa: E402
from helpers.runtime import cpu_count, progress, set_torch_threads  # noqa: E402
from helpers.training import load_model, predict_logits  # noqa: E402

logger = logging.getLogger("helpers.predict")  # not __name__: under `python -m` that is __main__, outside the helpers logger

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
STATUSES = ("ok", "unreadable", "no_face", "unsupported", "error")
# What predict uses when a run's config.json has no face_settings (runs trained before they were recorded).
DEFAULT_FACE_SETTINGS = {"face_size": 224, "margin": 1.3, "min_confidence": 0.9, "min_face_size": 60,
                         "detect_max_side": 640, "scale_factor": 0.709, "jpeg_quality": 95, "keep": "largest",
                         "detector": "mtcnn-torch"}
DEFAULT_THRESHOLD = 0.5
# --layout: a layout of helpers.layouts, "auto" (a folder with exactly one layout's marks) or "none" (plain files).
LAYOUT_CHOICES = ("auto", "none", "dfdc", "ffpp", "celebdf", "folders")
SCORED_STATUSES = ("ok", "unlabelled")  # listed items that are scored; the others keep the listing's status
ITEM_COLUMNS = ("dataset", "method", "video_id", "label", "split")  # what a dataset row adds to predict_path's
ALL_METHODS = "all"


# The square searched around a face's expected place between key frames: ROI_MARGIN x the expected
# box's longer side, resized to ROI_SIZE px, so the face is ~ROI_SIZE / ROI_MARGIN px for MTCNN.
ROI_MARGIN = 2.0
ROI_SIZE = 160
# The smallest face searched for in that square (mtcnn-torch, whose `search` can start the pyramid there):
# half the expected size. mtcnn-tf cannot (mtcnn 1.0 would fail, see faces.mtcnn_min_face) and searches
# down to ~20 px, 4x the PNet pixels.
ROI_MIN_FACE = ROI_SIZE / ROI_MARGIN / 2


def kind_of(path: Path) -> str | None:
    """'video' or 'image' by the file's extension, None for anything else."""
    suffix = path.suffix.lower()
    return "video" if suffix in VIDEO_EXTENSIONS else "image" if suffix in IMAGE_EXTENSIONS else None


def _media_files(folder: Path) -> list[Path]:
    """Media files under `folder`, recursively, following symlinked folders (each real folder once)."""
    found, seen = [], set()
    for top, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:  # a symlink loop, or a folder linked twice
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            path = Path(top) / name
            # a broken symlink stays, so it is reported (unreadable) rather than dropped
            if not name.startswith(".") and kind_of(path) and (path.is_file() or path.is_symlink()):
                found.append(path)
    return sorted(found)


def expand_paths(paths) -> list[Path]:
    """The inputs behind PATH arguments: files as given, folders replaced by their media files (recursive,
    following symlinked sub-folders, sorted)."""
    out = []
    for path in map(Path, paths):
        if path.is_dir():
            out.extend(_media_files(path) or [path])  # an empty folder stays, to be reported
        else:
            out.append(path)
    return out


def load_run_model(run_dir: Path):
    """A run's model and saved settings, with a clear error for a bad model.pt (training.load_model checks it)."""
    return load_model(run_dir)


def read_run_json(run_dir: Path, name: str) -> dict:
    """A run's config.json or metrics.json as a dict ({} when absent); ValueError naming a broken one."""
    path = run_dir / name
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} cannot be read as JSON ({err}): restore it from the run") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} should hold a JSON object, found a {type(data).__name__}")
    return data


def run_calibration(run_dir: Path, metrics_json: dict) -> tuple[tuple[float, float] | None, float, str]:
    """(Platt slope and intercept or None, the FAKE/REAL threshold, where the threshold came from)."""
    path = run_dir / "metrics.json"
    calibration = metrics_json.get("calibration")
    platt = None
    if calibration is not None:
        if not isinstance(calibration, dict) or calibration.get("method") != "platt":
            method = calibration.get("method") if isinstance(calibration, dict) else calibration
            raise ValueError(f"{path}: calibration method {method!r} is not supported (predict applies \"platt\")")
        try:
            platt = (float(calibration["slope"]), float(calibration["intercept"]))
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}: calibration needs numeric \"slope\" and \"intercept\", got {calibration}") from None
    threshold = metrics_json.get("threshold")
    if threshold is None:
        return platt, DEFAULT_THRESHOLD, "default"
    value = threshold.get("value") if isinstance(threshold, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{path}: threshold.value must be a probability in 0..1, got {threshold!r}")
    return platt, float(value), str(path)


def expected_boxes(index: int, keys: list[int], boxes: dict[int, np.ndarray]) -> list[np.ndarray]:
    """Where to look for the face at `index`, from the key frames around it that have one.

    One box, linear between the two keys, when their boxes overlap (the same face, moving); both
    keys' boxes when they do not (the largest face changed, e.g. two people); the nearest key's box
    at either end.
    """
    before = [k for k in keys if k < index]
    after = [k for k in keys if k > index]
    if not before or not after:
        return [boxes[before[-1] if before else after[0]]]
    a, b = before[-1], after[0]
    if box_iou(boxes[a], boxes[b]) < 0.2:
        return [boxes[a], boxes[b]]
    t = (index - a) / (b - a)
    return [(1 - t) * boxes[a] + t * boxes[b]]


def from_roi(face: Face, square: np.ndarray, size: int) -> Face:
    """A face found in a square_crop of `size` px (its square x0, y0, side) in the frame's pixels."""
    x0, y0, side = square
    s = side / size
    box = np.array([face.box[0] * s + x0, face.box[1] * s + y0, face.box[2] * s, face.box[3] * s])
    return Face(box=box, confidence=face.confidence, landmarks=face.landmarks * s + [x0, y0])


class Predictor:
    """A run's best model and one MTCNN, loaded once, scoring any number of videos and images.

    Face settings (face_size, margin, min_confidence, min_face_size, detect_max_side, scale_factor,
    jpeg_quality, keep, detector) come from run_dir/config.json["face_settings"], the settings notebook 02 cropped
    the run's training faces with; an argument given here overrides its value; without face_settings
    the DEFAULT_FACE_SETTINGS apply and a warning says so once. `self.face_settings` holds what is
    used and `self.face_settings_source` where it came from. Calibration and threshold come from
    run_dir/metrics.json (see the module docstring).

    frames: frames sampled uniformly per video. detect_every: key-frame spacing (1 = search every
    frame whole; KEEP "all" always searches every frame whole). min_face_size: smallest face searched
    for, in input pixels. jpeg_quality: crops pass through JPEG like notebook 02's files (0 = off). The
    run's variant (model.pt's, as training.save_weights wrote it) picks the crop: the face, or its
    eyes/lower/eyes_lower region. threads: CPU threads for torch and TensorFlow (0 = every core).
    device: torch device of the model and of mtcnn-torch (None = cuda when available). detector: a
    DETECTORS name, or a built detector to share (FaceDetector, TorchMTCNNDetector; the other face
    settings then do not rebuild it). A model.pt that cannot be loaded raises
    ValueError saying why (empty, truncated, refused as unsafe, not a helpers.training model).
    """

    def __init__(self, run_dir: str | Path, frames: int = 32, min_confidence: float | None = None,
                 margin: float | None = None, face_size: int | None = None, detect_max_side: int | None = None,
                 min_face_size: int | None = None, detect_every: int = 4, jpeg_quality: int | None = None,
                 threads: int = 0, device: str | None = None, detector=None,
                 warm_up: bool = True, scale_factor: float | None = None, keep: str | None = None):
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise FileNotFoundError(f"run folder {run_dir} does not exist: pass --run a folder written by "
                                    "helpers.training (data/processed/runs/<run>, from notebooks 04-05)")
        if frames < 1 or detect_every < 1:
            raise ValueError(f"frames and detect_every must be >= 1, got {frames} and {detect_every}")
        started = time.perf_counter()
        self.model, self.settings = load_run_model(run_dir)
        self.variant, self.image_size = self.settings["variant"], int(self.settings["image_size"])
        if self.variant not in VARIANT_COLUMNS:
            raise ValueError(f"{run_dir / 'model.pt'}: unknown face variant {self.variant!r}")
        self.face_settings, self.face_settings_source = self._face_settings(run_dir, {
            "face_size": face_size, "margin": margin, "min_confidence": min_confidence,
            "min_face_size": min_face_size, "detect_max_side": detect_max_side, "scale_factor": scale_factor,
            "jpeg_quality": jpeg_quality, "keep": keep,
            "detector": detector if detector is None or isinstance(detector, str) else getattr(detector, "name", None)})
        self.platt, self.threshold, self.threshold_source = run_calibration(run_dir, read_run_json(run_dir, "metrics.json"))
        self.threads = threads or cpu_count()
        set_torch_threads(self.threads)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        # channels_last: oneDNN runs the CNNs' convolutions faster in NHWC (ResNet50 -23%, Meso4 -45% CPU time
        # for 32 faces here; the ViT is unchanged); logits move by float noise (~1e-5).
        self.model.to(self.device, memory_format=torch.channels_last)
        model_seconds = time.perf_counter() - started
        fs = self.face_settings
        if detector is None or isinstance(detector, str):
            detector = make_detector(fs["detector"], detect_max_side=fs["detect_max_side"],
                                     min_face_size=fs["min_face_size"], scale_factor=fs["scale_factor"],
                                     threads=self.threads, device=str(self.device))
        self.detector = detector
        self.run_dir, self.frames, self.detect_every = run_dir, int(frames), int(detect_every)
        self.min_confidence, self.margin, self.face_size = float(fs["min_confidence"]), float(fs["margin"]), int(fs["face_size"])
        self.jpeg_quality, self.keep = int(fs["jpeg_quality"]), fs["keep"]
        if warm_up:  # TensorFlow and torch build their kernels on the first call: keep that out of per-file times
            self.detector.detect([np.zeros((ROI_SIZE, ROI_SIZE, 3), np.uint8)])
            self.classify([np.zeros((self.face_size, self.face_size, 3), np.uint8)], [None])
        self.startup = {"model": model_seconds, "detector": time.perf_counter() - started - model_seconds}

    @staticmethod
    def _face_settings(run_dir: Path, given: dict) -> tuple[dict, str]:
        """The face settings to use: the arguments given, else config.json's face_settings, else the defaults."""
        config_path = run_dir / "config.json"
        recorded = read_run_json(run_dir, "config.json").get("face_settings")
        if recorded is not None and not isinstance(recorded, dict):
            raise ValueError(f"{config_path}: face_settings should be a mapping (notebook 02's settings.json), "
                             f"got {recorded!r}")
        if recorded is None:
            missing = [k for k, v in given.items() if v is None]
            if missing:
                logger.warning(f"{config_path} has no face_settings (the run predates them): predict crops with "
                               f"its defaults {', '.join(f'{k}={DEFAULT_FACE_SETTINGS[k]}' for k in missing)}, which "
                               "may differ from how the training faces were cut")
            source, base = "defaults", DEFAULT_FACE_SETTINGS
        else:
            source = f"{config_path} face_settings"
            base = {**DEFAULT_FACE_SETTINGS, **{k: recorded[k] for k in DEFAULT_FACE_SETTINGS if k in recorded}}
        settings = {k: (base[k] if v is None else v) for k, v in given.items()}
        if settings["keep"] not in ("largest", "all"):
            raise ValueError(f"KEEP must be 'largest' or 'all', got {settings['keep']!r} (from {source})")
        try:
            check_detector(settings["detector"])
        except ValueError as err:
            raise ValueError(f"{err} (from {source})") from None
        return settings, source

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Fake probability of each face logit, calibrated with the run's Platt scaling when it has one."""
        logits = np.asarray(logits, dtype=np.float64)
        if self.platt is not None:
            return metrics.apply_platt(logits, *self.platt)
        return 1 / (1 + np.exp(-logits))

    # --- faces -------------------------------------------------------------------------------------

    def largest(self, faces: list[Face]) -> Face | None:
        selected = select_faces(faces, "largest", self.min_confidence)
        return selected[0] if selected else None

    def all_faces(self, frames: list[np.ndarray]) -> list[list[Face]]:
        """Every face to score in each frame (KEEP "all": no tracking, each frame searched whole)."""
        return [select_faces(faces, "all", self.min_confidence) for faces in self.detector.detect(frames)]

    def locate_faces(self, frames: list[np.ndarray]) -> list[Face | None]:
        """The face to score in each frame (None where there is none), searching whole frames only on key frames."""
        n = len(frames)
        keys = sorted(set(range(0, n, self.detect_every)) | {n - 1})
        found: dict[int, Face | None] = {}
        for i, faces in zip(keys, self.detector.detect([frames[i] for i in keys])):
            found[i] = self.largest(faces)
        rest = [i for i in range(n) if i not in found]
        tracked = [k for k in keys if found[k] is not None]
        if rest and not tracked:  # nothing to follow: search the other frames whole
            for i, faces in zip(rest, self.detector.detect([frames[i] for i in rest])):
                found[i] = self.largest(faces)
        elif rest:
            boxes = {k: found[k].box for k in tracked}
            searches = [(i, box) for i in rest for box in expected_boxes(i, tracked, boxes)]
            rois = [square_crop(frames[i], box, ROI_MARGIN, ROI_SIZE) for i, box in searches]
            search = getattr(self.detector, "search", None)
            crops = [roi for roi, _ in rois]
            found_in = search(crops, ROI_MIN_FACE) if search else self.detector.detect(crops)  # one batch
            best: dict[int, tuple] = {}
            for (i, box), (_, square), faces in zip(searches, rois, found_in):
                for face in (from_roi(f, square, ROI_SIZE) for f in faces if f.confidence >= self.min_confidence):
                    # the largest face where one was expected; one at the square's edge only when there is no such face
                    score = (box_iou(face.box, box) >= 0.3, face.area)
                    if i not in best or score > best[i][0]:
                        best[i] = (score, face)
            found.update({i: best[i][1] if i in best else None for i in rest})
        return [found[i] for i in range(n)]

    def crop(self, image: np.ndarray, face: Face) -> np.ndarray:
        """The model's input for one face: crop (and region) as notebook 02 wrote it, fitted to the image size."""
        crop, square = square_crop(image, face.box, self.margin, self.face_size)
        if self.variant != "full":
            local = to_crop_coords(face.landmarks, square, self.face_size)
            crop = crop_regions(crop, local, [self.variant])[self.variant]
        if self.jpeg_quality:
            _, buffer = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR),
                                      [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
            crop = cv2.cvtColor(cv2.imdecode(buffer, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        return fit_square(crop, self.image_size)

    def classify(self, images: list[np.ndarray], faces: list[Face | None]) -> np.ndarray:
        """Fake probability of each face (one batch, calibrated); a None face is the whole image (warm-up only)."""
        crops = [self.crop(image, face) if face is not None else fit_square(image, self.image_size)
                 for image, face in zip(images, faces)]
        batch = torch.stack([to_tensor(c) for c in crops]).contiguous(memory_format=torch.channels_last)
        logits = predict_logits(self.model, [(batch, None, None)], self.device)
        return self.probabilities(logits)

    # --- inputs ------------------------------------------------------------------------------------

    def predict_path(self, path: str | Path) -> dict:
        """Score one video or image; never raises for a bad file (see `status` and `reason`).

        Returns path, kind (video | image | None), status, reason, prob_fake (aggregate_face_scores of
        the faces' calibrated probabilities, None without a face), call ("FAKE" when prob_fake >
        threshold, else "REAL"; None without a score), threshold, n_frames_sampled, n_faces (faces
        scored), seconds and timing (decode, detect, classify seconds; cropping counts as classify).
        """
        path = Path(path)
        result = {"path": str(path), "kind": kind_of(path), "status": "ok", "reason": "", "prob_fake": None,
                  "call": None, "threshold": self.threshold, "n_frames_sampled": 0, "n_faces": 0, "seconds": 0.0,
                  "timing": {"decode": 0.0, "detect": 0.0, "classify": 0.0}}
        started = time.perf_counter()
        try:
            if path.is_dir():
                result.update(status="unsupported", reason=f"{path}: the folder holds no videos or images "
                              f"({', '.join(sorted(VIDEO_EXTENSIONS | IMAGE_EXTENSIONS))})")
            elif not path.exists():
                result.update(status="unreadable", reason=f"{path}: does not exist")
            elif result["kind"] is None:
                result.update(status="unsupported", reason=f"{path}: {path.suffix or 'no extension'} is neither a "
                              "video nor an image extension; convert it or rename it if it is one")
            else:
                self._score(path, result)
        except Exception as err:  # noqa: BLE001 - one input's failure must not stop the others
            result.update(status="error", reason=f"{path}: {type(err).__name__}: {err}", prob_fake=None, call=None)
        result["seconds"] = time.perf_counter() - started
        return result

    def predict_paths(self, paths, show_progress: bool = False) -> list[dict]:
        """Results for every input behind `paths` (folders expanded), in order."""
        inputs = expand_paths(paths)
        return [self.predict_path(p) for p in progress(inputs, desc="scoring", unit="file",
                                                        disable=not show_progress)]

    def _score(self, path: Path, result: dict) -> None:
        timing = result["timing"]
        clock = time.perf_counter()
        try:
            if result["kind"] == "image":
                frames = [read_image(str(path))]
            else:
                frames = self.read_video(path)
        except (ValueError, OSError, cv2.error) as err:
            message = str(err)
            reason = message if message.startswith(str(path)) else f"{path}: {message}"  # read_image names it
            result.update(status="unreadable", reason=reason)
            return
        finally:
            timing["decode"] = time.perf_counter() - clock
        result["n_frames_sampled"] = len(frames)

        clock = time.perf_counter()
        all_faces = None
        if result["kind"] == "image":
            all_faces = self.detector.detect(frames)[0]
            chosen = select_faces(all_faces, self.keep, self.min_confidence)
            used = [(frames[0], face) for face in chosen]
        elif self.keep == "all":
            used = [(frame, face) for frame, faces in zip(frames, self.all_faces(frames)) for face in faces]
        else:
            used = [(frame, face) for frame, face in zip(frames, self.locate_faces(frames)) if face is not None]
        timing["detect"] = time.perf_counter() - clock

        if not used:
            where = "the image" if result["kind"] == "image" else f"any of the {len(frames)} sampled frames"
            best = max((f.confidence for f in all_faces), default=None) if all_faces is not None else None
            detail = f" (best confidence {best:.2f})" if best is not None else ""
            hint = shrink_hint(frames[0].shape, self.detector.detect_max_side) if frames else ""
            result.update(status="no_face", reason=f"{path}: no face with confidence >= {self.min_confidence} "
                          f"in {where}{detail}{hint}")
            return
        clock = time.perf_counter()
        probs = self.classify([frame for frame, _ in used], [face for _, face in used])
        timing["classify"] = time.perf_counter() - clock
        prob = metrics.aggregate_face_scores(probs)
        result.update(prob_fake=prob, call="FAKE" if prob > self.threshold else "REAL", n_faces=len(used))

    def read_video(self, path: Path) -> list[np.ndarray]:
        """The sampled frames of a video (uniform), decoded in one pass; ValueError saying why it cannot be read."""
        cap, info = open_video(path)
        try:
            indices = frame_indices(info["n_frames"], self.frames, "uniform", 0, str(path))
            return [frame for _, frame in read_frames(cap, indices)]
        finally:
            cap.release()


# --- dataset roots --------------------------------------------------------------------------------------

def dataset_layout(path: str | Path, layout: str = "auto") -> tuple[str | None, str]:
    """(layout, why) to read PATH as a dataset root with, or (None, why not) when its files are scored as they are.

    "auto" takes a folder carrying the marks of exactly one layout (helpers.layouts.layout_signals): a
    folder of videos without any, which detect_layout would read as unlabelled DFDC, stays plain files;
    one carrying two layouts' marks raises LayoutError naming them.
    """
    if layout not in LAYOUT_CHOICES:
        raise ValueError(f"--layout must be one of {', '.join(repr(c) for c in LAYOUT_CHOICES)}, got {layout!r}")
    path = Path(path)
    if layout == "none" or not path.is_dir():
        return None, "--layout none" if layout == "none" else "not a folder"
    if layout != "auto":
        return layout, "--layout says so"
    found = layouts.layout_signals(path)
    if len(found) == 1:
        (name, why), = found.items()
        return name, f"found {why}"
    if not found:
        return None, "it carries no layout's marks"
    marks = "; ".join(f"{name} ({why})" for name, why in found.items())
    raise layouts.LayoutError(f"{path} carries the marks of {len(found)} layouts ({marks}): pass --layout "
                              f"{' or --layout '.join(found)} to read it as one of them")


def _unscored(path: str, status: str, reason: str, threshold: float) -> dict:
    """predict_path's result for an item that is not scored (a listed item that is missing, stray or refused)."""
    return {"path": path, "kind": kind_of(Path(path)), "status": status, "reason": reason, "prob_fake": None,
            "call": None, "threshold": threshold, "n_frames_sampled": 0, "n_faces": 0, "seconds": 0.0,
            "timing": {"decode": 0.0, "detect": 0.0, "classify": 0.0}}


def score_dataset(root: str | Path, run_dir: str | Path | None = None, layout: str = "auto", compression: str = "c23",
                  predictor: Predictor | None = None, show_progress: bool = False, **predictor_kwargs) -> pd.DataFrame:
    """Every item of a dataset root in `layout`, one row each: ITEM_COLUMNS, then predict_path's result.

    `layout` is a helpers.layouts layout or "auto" (dataset_layout; a root without exactly one layout's
    marks raises LayoutError); `compression` is FaceForensics++'s. Items listed ok or unlabelled are
    scored (an unlabelled one keeps the listing's reason); every other item keeps the listing's status
    and reason, unscored. The frame's attrs hold the root, the layout and why. `predictor` (else one built
    from run_dir and predictor_kwargs) does the scoring.
    """
    name, why = dataset_layout(root, layout)
    if name is None:
        raise layouts.LayoutError(f"{root} is not read as a dataset root ({why}); expected one of: "
                                  f"{layouts.expected_text()}. Pass a layout, or score its files with "
                                  "Predictor.predict_paths")
    if predictor is None:
        if run_dir is None:
            raise ValueError("score_dataset needs a run_dir or a predictor")
        predictor = Predictor(run_dir, **predictor_kwargs)
    listing = list_videos(root, name, compression)
    rows = []
    for item in progress(listing.to_dict("records"), desc=f"scoring {Path(root).name}", unit="item",
                         disable=not show_progress):
        item = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in item.items()}
        if item["status"] in SCORED_STATUSES:
            result = predictor.predict_path(item["video_path"])
            if item["status"] != "ok":  # scored, but the listing's word on it (no label) must stay visible
                result["reason"] = "; ".join(r for r in (result["reason"], item["reason"]) if r)
        else:
            result = _unscored(str(item["video_path"]), item["status"], item["reason"], predictor.threshold)
        rows.append({**{k: item.get(k) for k in ITEM_COLUMNS}, **result})
    columns = [*ITEM_COLUMNS, *_unscored("", "ok", "", 0.0)]
    table = pd.DataFrame(rows, columns=columns)
    table.attrs.update(root=str(root), layout=name, layout_reason=why,
                       compression=listing.attrs.get("compression"))
    return table


def _auc(reals: pd.Series, fakes: pd.Series) -> float | None:
    """ROC AUC of FAKE against REAL scores; None when either class has none."""
    from sklearn.metrics import roc_auc_score  # noqa: PLC0415

    if not len(reals) or not len(fakes):
        return None
    y = np.r_[np.zeros(len(reals)), np.ones(len(fakes))]
    return float(roc_auc_score(y, np.r_[reals.to_numpy(float), fakes.to_numpy(float)]))


def dataset_summary(scored: pd.DataFrame) -> pd.DataFrame:
    """AUC with n REAL and n FAKE scored per dataset, and per method (its fakes against all reals) when there are several.

    Columns: dataset, method (ALL_METHODS for every fake), n_real, n_fake, n_not_used (listed items of the
    row not in its AUC: not scored, no face, no label) and auc (NaN without both classes).
    """
    rows = []
    for dataset, part in scored.groupby("dataset", sort=False, dropna=False):
        used = part[part.status.eq("ok") & part.label.isin(["REAL", "FAKE"]) & part.prob_fake.notna()]
        reals, fakes = used[used.label == "REAL"], used[used.label == "FAKE"]
        methods = sorted(fakes.method.dropna().unique())
        for method in [ALL_METHODS, *(methods if len(methods) > 1 else [])]:
            mine = fakes if method == ALL_METHODS else fakes[fakes.method == method]
            listed = len(part) if method == ALL_METHODS else int((part.method == method).sum())
            rows.append({"dataset": dataset, "method": method, "n_real": len(reals), "n_fake": len(mine),
                         "n_not_used": listed - len(mine) - (len(reals) if method == ALL_METHODS else 0),
                         "auc": _auc(reals.prob_fake, mine.prob_fake)})
    table = pd.DataFrame(rows, columns=["dataset", "method", "n_real", "n_fake", "n_not_used", "auc"])
    return table.astype({"auc": float})


def format_summary(summary: pd.DataFrame) -> str:
    """One line per dataset (and per method under it): the AUC and what it was computed on."""
    lines = []
    for row in summary.to_dict("records"):
        auc = (f"AUC {row['auc']:.3f} over" if pd.notna(row["auc"])
               else f"AUC undefined (no {'REAL' if not row['n_real'] else 'FAKE'} item scored):")
        if row["method"] == ALL_METHODS:
            rest = f"; {row['n_not_used']} other listed item(s) not in it (see their status)" if row["n_not_used"] else ""
            lines.append(f"{row['dataset']}: {auc} {row['n_real']} REAL and {row['n_fake']} FAKE item(s){rest}")
        else:
            lines.append(f"  {row['method']}: {auc} its {row['n_fake']} FAKE against the {row['n_real']} REAL")
    return "\n".join(lines)


def _records(table: pd.DataFrame) -> list[dict]:
    """A scored table's rows as predict_path-like dicts (NaN -> None), for the table and --json."""
    return [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
            for row in table.to_dict("records")]


def make_untrained_run(run_dir: str | Path, model: str = "resnet50", image_size: int = 128,
                       model_kwargs: dict | None = None, variant: str = "full", seed: int = 0,
                       face_settings: dict | None = None, metrics_json: dict | None = None) -> Path:
    """A run folder holding a randomly initialised model (model.pt as training.save_weights writes it, config.json).

    For tests and benchmarks, which need predict's whole path and its real cost but no trained weights.
    face_settings goes into config.json (as training copies notebook 02's settings.json there) and
    metrics_json, when given, is written as metrics.json (calibration, threshold).
    """
    from helpers.models import build_model  # noqa: PLC0415

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    net = build_model(model, image_size=image_size, **(model_kwargs or {}))
    settings = {"model": model, "image_size": int(image_size), "model_kwargs": dict(model_kwargs or {}),
                "variant": variant}
    torch.save({"state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}, **settings},
               run_dir / "model.pt")
    config = {**settings, "run_name": run_dir.name, "untrained": True}
    if face_settings is not None:
        config["face_settings"] = dict(face_settings)
    (run_dir / "config.json").write_text(json.dumps(config, indent=2))
    if metrics_json is not None:
        (run_dir / "metrics.json").write_text(json.dumps(metrics_json, indent=2))
    return run_dir


# --- command line ------------------------------------------------------------------------------------

def _short(text: str, width: int) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3):]


def format_table(results: list[dict]) -> str:
    """Fixed-width table, one line per input, then a count by status."""
    width = min(60, max([4] + [len(r["path"]) for r in results]))
    status_width = max([11] + [len(r["status"]) for r in results])
    labelled = any("label" in r for r in results)  # rows of a dataset root: its label is known
    label_head = f"{'label':<5}  " if labelled else ""
    header = (f"{'path':<{width}}  {'kind':<5}  {label_head}{'status':<{status_width}}  {'p(fake)':>7}  {'call':<4}  "
              f"{'faces':>7}  {'seconds':>7}  {'decode':>6}  {'detect':>6}  {'classify':>8}  reason")
    lines = [header, "-" * len(header)]
    for r in results:
        prob = f"{r['prob_fake']:.3f}" if r["prob_fake"] is not None else "-"
        faces = f"{r['n_faces']}/{r['n_frames_sampled']}"
        t = r["timing"]
        label = f"{r.get('label') or '-':<5}  " if labelled else ""
        lines.append(f"{_short(r['path'], width):<{width}}  {r['kind'] or '-':<5}  {label}{r['status']:<{status_width}}  "
                     f"{prob:>7}  {r.get('call') or '-':<4}  {faces:>7}  {r['seconds']:>7.2f}  {t['decode']:>6.2f}  "
                     f"{t['detect']:>6.2f}  {t['classify']:>8.2f}  {r['reason']}".rstrip())
    # a dataset root's listing adds its own statuses (missing, bad_label ...): counted after predict's
    seen = [*STATUSES, *sorted({r["status"] for r in results} - set(STATUSES))]
    counts = {s: sum(r["status"] == s for r in results) for s in seen}
    lines.append(f"{len(results)} input(s): " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.predict",
                                     description="Fake probability of videos and images, from a trained run.")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="videos, images or folders of them (recursive)")
    parser.add_argument("--run", required=True, type=Path, metavar="RUN_DIR",
                        help="a run folder with model.pt (data/processed/runs/<run>)")
    parser.add_argument("--frames", type=int, default=32, help="frames sampled uniformly per video (default 32)")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.add_argument("--detect-every", type=int, default=4,
                        help="search whole frames on every k-th sampled frame, near the face between (1 = all)")
    parser.add_argument("--detect-max-side", type=int, default=None,
                        help="MTCNN sees frames shrunk to this side (default: the run's face_settings)")
    parser.add_argument("--min-confidence", type=float, default=None,
                        help="MTCNN confidence below which a face is ignored (default: the run's face_settings)")
    parser.add_argument("--detector", choices=DETECTORS, default=None,
                        help="MTCNN backend (default: the run's face_settings, else mtcnn-torch; only mtcnn-tf "
                             "imports TensorFlow)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = every core)")
    parser.add_argument("--layout", choices=LAYOUT_CHOICES, default="auto",
                        help="read a folder PATH as a dataset root of this layout, with its labels, and print the "
                             "AUC (auto: a folder with one layout's marks; none: plain files, no labels)")
    parser.add_argument("--compression", choices=layouts.COMPRESSIONS, default="c23",
                        help="FaceForensics++ compression to read (default c23)")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.detect_every < 1:
        parser.error("--frames and --detect-every must be >= 1")
    started = time.perf_counter()
    try:
        predictor = Predictor(args.run, frames=args.frames, detect_every=args.detect_every,
                              detect_max_side=args.detect_max_side, min_confidence=args.min_confidence,
                              threads=args.threads, detector=args.detector)
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as err:
        print(f"predict: {err}", file=sys.stderr)
        return 2
    logger.info(f"start-up {time.perf_counter() - started:.1f} s (model {predictor.startup['model']:.1f} s, "
                f"detector {predictor.startup['detector']:.1f} s, {predictor.face_settings['detector'] or 'given'}); "
                f"faces cut with {predictor.face_settings_source}; {'Platt-calibrated, ' if predictor.platt else ''}"
                f"FAKE above {predictor.threshold:g} ({predictor.threshold_source})")
    show = not args.json and sys.stderr.isatty()
    results, summaries = [], []
    for path in args.paths:
        try:
            name, why = dataset_layout(path, args.layout)
        except layouts.LayoutError as err:  # two layouts' marks: say so, then score its files as before
            logger.warning(f"{err}; its files are scored without labels")
            name = None
        if name is None:
            results += predictor.predict_paths([path], show_progress=show)
            continue
        logger.info(f"{path} is read as layout {name!r} ({why})")
        try:
            table = score_dataset(path, layout=name, compression=args.compression, predictor=predictor,
                                  show_progress=show)
        except (layouts.LayoutError, FileNotFoundError, ValueError) as err:  # a root that does not fit its layout
            logger.warning(str(err))
            results.append(_unscored(str(path), "unsupported", str(err), predictor.threshold))
            continue
        results += _records(table)
        summaries.append(dataset_summary(table))
    summary = format_summary(pd.concat(summaries, ignore_index=True)) if summaries else ""
    if args.json:
        print(json.dumps(results, indent=2))
        if summary:
            print(summary, file=sys.stderr)
    else:
        print(format_table(results))
        if summary:
            print(summary)
    if not any(r["status"] == "ok" for r in results):
        print(f"predict: none of the {len(results)} input(s) could be scored (see each reason)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
