"""Frame sampling from a dataset's videos (and images): the first stage of the study.

A DFDC-layout folder holds parts (`dfdc_train_part_0/`, ...), each with videos and a `metadata.json`
mapping `video.mp4 -> {"label": "REAL"|"FAKE", "split": ..., "original": "source.mp4"|null}`. Other
layouts (FaceForensics++, Celeb-DF, plain real/fake folders) are read by helpers.layouts; `list_videos`
takes a LAYOUT ("auto" detects it and says which) and gives every layout the same columns plus
`dataset`, `method` ("real" for REAL) and, where the layout has them, `identity`, `source_identity`
and the official `split`. `sample_frames` writes JPEG frames and a manifest, `frames.csv`, with one row
per frame, or one row per video that could not be used (its `status` and `reason` say why), and
`settings.json` beside it (the settings that shaped the frames; `read_settings` reads them back), and
`layout.json` (how the dataset root was read; `layout_note` says it in a sentence) and, where the
layout knows identities, `identities.csv` (video_id, identity, source_identity; notebook 03 reads the same
columns from FRAMES_CSV, so IDENTITY_CSV is not needed for them). An image (the folders layout)
is a one-frame item: frame_index 0, n_frames 1.

Statuses (matched exactly, lower case; a hand-edited "OK" is refused on read): ok (a sampled frame),
missing (listed in metadata.json, absent), unlabelled (present, in no usable metadata), bad_label (label
not REAL/FAKE), unreadable (cannot be opened or decoded, or a folder named like a video),
duplicate_id (two files of one part share a name without extension, e.g. clip.mp4 and clip.avi: the
video id would be ambiguous, so neither is used; rename one) and unsupported (a stray item in another
layout's video folder: a .txt, an image where videos belong, a sub-folder; see helpers.layouts).

Names are compared in Unicode NFC, so a name stored decomposed (NFD, as macOS writes it) on disk
matches its metadata entry; the video is read from its path on disk.
"""
from __future__ import annotations

import json
import logging
import unicodedata
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from helpers.manifest import (EmptyStageError, ManifestSpec, OutputError, atomic_write_text, check_int,
                              file_fingerprint, fingerprint, is_missing, parse_shard, read_manifest,
                              read_settings_record, run_stage, stable_hash, validate_manifest, write_output)
from helpers.runtime import worker_count

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm"}
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
STRATEGIES = ("random", "uniform")
COLUMNS = [
    "video_id", "part", "video_path", "label", "original", "frame_index", "n_frames", "fps",
    "width", "height", "frame_path", "status", "reason",
]
STATUSES = ("ok", "missing", "unlabelled", "bad_label", "unreadable", "duplicate_id", "unsupported")
# Columns a listing may carry beyond COLUMNS (helpers.layouts.EXTRA_COLUMNS); frames.csv keeps them after COLUMNS.
EXTRA_COLUMNS = ("dataset", "method", "identity", "source_identity", "split")
LAYOUT_FILE = "layout.json"
# video_id -> identity, source_identity, beside frames.csv when the layout knows them (a readable copy: notebook 03
# takes them from frames.csv itself).
IDENTITIES_FILE = "identities.csv"
IDENTITY_COLUMNS = ("identity", "source_identity")
WRITTEN_BY = "notebook 01 (frame sampling)"
SPEC = ManifestSpec(name="frames.csv", written_by=WRITTEN_BY, columns=tuple(COLUMNS),
                    sort_by=("part", "video_id", "frame_index"),
                    int_columns=("frame_index", "n_frames", "width", "height"), statuses=STATUSES,
                    output_columns=("frame_path",))
# Beyond this many frames ahead we seek (jump to a keyframe, decode forward) instead of grabbing every
# frame. DFDC clips (300 frames, few keyframes) gain nothing from seeking: measured on the sample, frame
# 250 costs 1.46 s by seeking and 1.42 s by grabbing, two frames 1.81 s vs 1.42 s. Long videos do gain.
SEEK_GAP = 300


def nfc(name: str) -> str:
    """A file name in Unicode NFC, the form names are compared in."""
    return unicodedata.normalize("NFC", name)


def video_id_of(name: str | None) -> str | None:
    """DFDC names videos `abcdefghij.mp4`; we key them by the stem (in NFC); None, NaN and "" give None."""
    if is_missing(name):
        return None
    return nfc(Path(str(name)).stem)


def _listdir(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError as err:
        logger.warning(f"cannot list {folder} ({err.strerror or err}): its videos are skipped")
        return []


def find_parts(videos_dir: str | Path) -> list[Path]:
    """Folders under `videos_dir` holding videos or a metadata.json (or `videos_dir` itself)."""
    root = Path(videos_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"VIDEOS_DIR {root} does not exist or is not a folder; point it at a DFDC-layout folder")

    def is_part(folder: Path) -> bool:
        return (folder / "metadata.json").exists() or any(
            p.suffix.lower() in VIDEO_EXTENSIONS for p in _listdir(folder) if p.is_file()
        )

    parts = [p for p in _listdir(root) if p.is_dir() and is_part(p)]
    if is_part(root):
        parts.insert(0, root)
    return parts


def read_metadata(part: Path) -> tuple[dict | None, str]:
    """A part's metadata.json as a dict, or None and the reason it cannot be used."""
    path = part / "metadata.json"
    if not path.exists():
        return None, f"{path} does not exist: the part's videos have no labels"
    if not path.is_file():
        return None, f"{path} is a folder, not a file: the part's videos have no labels"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        return None, f"{path} is not valid JSON ({err})"
    except OSError as err:
        return None, f"{path} cannot be read ({err.strerror or err})"
    if not isinstance(meta, dict):
        return None, f"{path} should map video names to {{label, original}}, found a {type(meta).__name__}"
    return {nfc(str(name)): entry for name, entry in meta.items()}, ""


def list_videos(videos_dir: str | Path, layout: str = "auto", compression: str = "c23") -> pd.DataFrame:
    """Every item of a dataset root in `layout` (helpers.layouts.LAYOUTS; "auto" detects it), with its label and status.

    Columns: video_id, part, video_path, label, original, status, reason, key, dataset, method, and
    identity, source_identity and split where the layout has them (see helpers.layouts). The frame's
    attrs hold "layout" (the one used) and "layout_reason" (why). `compression` is FaceForensics++'s
    (c23, raw, c40). For the dfdc layout, status is "ok" (labelled and present), "missing" (listed but
    absent), "unlabelled" (present but in no metadata, or in a part without a usable metadata.json),
    "bad_label" (label not REAL/FAKE), "unreadable" (a folder named like a video) or "duplicate_id" (see
    the module docstring); `dataset` is the root's folder name and `method` "real" or "fake".
    """
    from helpers import layouts  # noqa: PLC0415 - layouts builds on this module

    layouts.check_layout(layout)
    layouts.check_compression(compression)
    root = Path(videos_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"VIDEOS_DIR {root} does not exist or is not a folder; point it at a dataset root "
                                f"({layouts.expected_text()})")
    name, why = layouts.resolve_layout(root, layout)
    if layout == "auto":
        logger.info(f"{root} is read as layout {name!r} ({why}); set LAYOUT to choose another")
    if name == "dfdc":
        videos = list_dfdc(root)
        videos = videos.assign(dataset=root.name or str(root),
                               method=[layouts.REAL_METHOD if label == "REAL" else layouts.FAKE_METHOD if label == "FAKE"
                                       else None for label in videos.label])
    else:
        videos = layouts.LISTERS[name](root, compression) if name == "ffpp" else layouts.LISTERS[name](root)
        videos = mark_duplicate_ids(videos)
    videos.attrs.update(layout=name, layout_reason=why, compression=compression if name == "ffpp" else None)
    return videos


def list_dfdc(videos_dir: str | Path) -> pd.DataFrame:
    """Every video that a metadata.json lists or that lies in a part, with its label and status (the dfdc layout)."""
    records = []
    for part in find_parts(videos_dir):
        meta, problem = read_metadata(part)
        entries = [p for p in _listdir(part) if p.suffix.lower() in VIDEO_EXTENSIONS]
        present = {nfc(p.name): p for p in entries if p.is_file()}
        folders = {nfc(p.name): p for p in entries if p.is_dir()}
        listed = meta or {}
        for name in sorted(set(present) | set(listed) | set(folders)):
            entry = listed.get(name) if isinstance(listed.get(name), dict) else {}
            label = str(entry.get("label", "")).upper() or None
            record = {
                "video_id": video_id_of(name),
                "part": part.name,
                "video_path": str(present.get(name) or folders.get(name) or part / name),
                "label": label,
                "original": video_id_of(entry.get("original")),
                "status": "ok",
                "reason": "",
            }
            if name in folders:
                record.update(status="unreadable", reason=f"{folders[name]} is a folder, not a video file")
            elif name not in present:
                record.update(status="missing", reason=f"listed in {part / 'metadata.json'} but the file is absent")
            elif name not in listed:
                record.update(status="unlabelled", reason=problem or f"not listed in {part / 'metadata.json'}")
            elif label not in ("REAL", "FAKE"):
                record.update(status="bad_label", reason=f"label {entry.get('label')!r} in {part / 'metadata.json'} is not REAL or FAKE")
            record["name"] = name
            records.append(record)
    videos = pd.DataFrame(records, columns=["video_id", "part", "video_path", "label", "original", "status", "reason",
                                            "name"])
    videos = videos.assign(key=[f"{p}/{n}" for p, n in zip(videos.part, videos.name)]).drop(columns="name")
    return mark_duplicate_ids(videos)


def mark_duplicate_ids(videos: pd.DataFrame) -> pd.DataFrame:
    """Usable items of one part sharing a video id (clip.mp4 and clip.avi) become duplicate_id: neither is used.

    They would share a video id, and with it frame file names and every manifest's key.
    """
    videos = videos.copy()
    usable_ = videos[videos.status == "ok"]
    for (part, video_id), group in usable_.groupby(["part", "video_id"]):
        if len(group) > 1:
            names = " and ".join(sorted(group.key))
            videos.loc[group.index, ["status", "reason"]] = [
                "duplicate_id", f"{names} share the video id {video_id!r} (the name without extension), which names a "
                "video in every manifest: rename one"]
    return videos


def group_key(video_id: str, label: str | None, original: str | None) -> str:
    """The key a fake shares with its original, so both get the same frames (and the same shard).

    A fake without an original (None, NaN or "", as in hand-made folders) is its own group.
    """
    return str(original) if label == "FAKE" and not is_missing(original) else str(video_id)


def frame_indices(n_frames: int, count: int, strategy: str, seed: int, key: str) -> list[int]:
    """Which frames to take from a video of `n_frames`; the draw depends only on (seed, key, n_frames)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"STRATEGY must be one of {STRATEGIES}, got {strategy!r}")
    if count < 1:
        raise ValueError(f"FRAMES_PER_VIDEO must be >= 1, got {count}")
    if n_frames <= 0:
        return []
    count = min(count, n_frames)
    if strategy == "uniform":
        # Centre each pick in its slice of the video: 1 frame -> the middle, as the DFDC winners did.
        return sorted({int((i + 0.5) * n_frames / count) for i in range(count)})
    rng = np.random.default_rng([seed, stable_hash(key)])
    return sorted(int(i) for i in rng.choice(n_frames, size=count, replace=False))


def open_video(path: str | Path) -> tuple[cv2.VideoCapture, dict]:
    """Open a video and read its header; raises ValueError with the reason when it cannot be read."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise ValueError("the file is empty (0 bytes)")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError("OpenCV/FFmpeg cannot open it: not a video, or its header is corrupt or truncated")
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    info = {"n_frames": n, "fps": float(cap.get(cv2.CAP_PROP_FPS) or 0.0)}
    if n <= 0:
        cap.release()
        raise ValueError("the container reports no frames")
    return cap, info


def read_frames(cap: cv2.VideoCapture, indices: list[int]):
    """Yield (index, RGB frame) for the sorted `indices`, decoding only what is needed.

    Nearby frames are reached by grabbing (no colour conversion); far ones by seeking.
    Raises ValueError naming the first frame that cannot be decoded (a truncated file).
    """
    position = 0  # index of the next frame grab() would return
    for index in indices:
        if index - position > SEEK_GAP:
            cap.set(cv2.CAP_PROP_POS_FRAMES, index)
            position = int(cap.get(cv2.CAP_PROP_POS_FRAMES))
            if position != index:  # the backend could not seek exactly: fall back to grabbing from the start
                cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                position = 0
        while position < index:
            if not cap.grab():
                raise ValueError(f"frame {position} cannot be decoded (truncated or corrupt stream)")
            position += 1
        ok, frame = cap.read()
        position += 1
        if not ok or frame is None:
            raise ValueError(f"frame {index} cannot be decoded (truncated or corrupt stream)")
        yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def _frame_path(out_dir: Path, part: str, video_id: str, index: int) -> Path:
    return out_dir / "frames" / part / f"{video_id}_{index:05d}.jpg"


def write_jpeg(path: str | Path, rgb: np.ndarray, quality: int) -> None:
    """Save an RGB image as JPEG; OutputError (disk full, no permission) when the file cannot be written."""
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"OpenCV cannot encode a {rgb.shape} image as JPEG for {path}")
    write_output(path, buffer.tobytes())


def sample_video(task: dict) -> list[dict]:
    """Sample one video (a task from `sample_frames`) into JPEG files; returns its manifest rows.

    A video that cannot be read is a row (status unreadable); a frame that cannot be written raises
    OutputError, which stops the stage (our disk, not the video, is at fault). An image (IMAGE_EXTENSIONS)
    is a one-frame item: frame 0, whatever frames_per_video says. The listing's EXTRA_COLUMNS (dataset,
    method, identities, split) are carried into every row.
    """
    base = {k: task[k] for k in ("video_id", "part", "video_path", "label", "original")}
    base.update({k: task[k] for k in EXTRA_COLUMNS if k in task})
    if task["status"] != "ok":
        return [{**base, "status": task["status"], "reason": task["reason"]}]
    if Path(str(task["video_path"])).suffix.lower() in IMAGE_EXTENSIONS:
        return sample_image(task, base)
    try:
        cap, info = open_video(task["video_path"])
    except (ValueError, OSError) as err:
        return [{**base, "status": "unreadable", "reason": f"{task['video_path']}: {err}"}]
    out_dir = Path(task["out_dir"])
    rows = []
    try:
        key = group_key(task["video_id"], task["label"], task["original"])
        indices = frame_indices(info["n_frames"], task["frames_per_video"], task["strategy"], task["seed"], key)
        try:
            for index, rgb in read_frames(cap, indices):
                path = _frame_path(out_dir, task["part"], task["video_id"], index)
                write_jpeg(path, rgb, task["jpeg_quality"])
                rows.append({**base, **info, "frame_index": index, "width": rgb.shape[1], "height": rgb.shape[0],
                             "frame_path": str(path), "status": "ok", "reason": ""})
        except BaseException as err:
            for row in rows:  # a video is used whole or not at all, so pairs stay comparable
                Path(row["frame_path"]).unlink(missing_ok=True)
            if isinstance(err, (ValueError, cv2.error)) or (isinstance(err, OSError) and not isinstance(err, OutputError)):
                return [{**base, **info, "status": "unreadable", "reason": f"{task['video_path']}: {err}"}]
            raise
    finally:
        cap.release()
    return rows


def sample_image(task: dict, base: dict) -> list[dict]:
    """An image item as its one frame (frame_index 0), re-encoded like a video frame; unreadable when it cannot be decoded."""
    from helpers.faces import read_image  # noqa: PLC0415 - faces builds on this module; its checks catch cut files

    try:
        rgb = read_image(task["video_path"])
    except ValueError as err:
        return [{**base, "status": "unreadable", "reason": str(err)}]
    path = _frame_path(Path(task["out_dir"]), task["part"], task["video_id"], 0)
    write_jpeg(path, rgb, task["jpeg_quality"])
    return [{**base, "n_frames": 1, "fps": None, "frame_index": 0, "width": rgb.shape[1], "height": rgb.shape[0],
             "frame_path": str(path), "status": "ok", "reason": ""}]


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already; more threads only fight over the cores


def select_videos(videos: pd.DataFrame, max_videos: int) -> pd.DataFrame:
    """At most `max_videos` listed, present videos (0 = all), whole fake/original groups at a time.

    Groups are taken in a fixed pseudo-random order, so the subset mixes parts and labels; a group
    that would overflow the budget is passed over for a smaller one.
    """
    if not max_videos:
        return videos
    usable = videos[videos.status == "ok"]
    groups = pd.Series([group_key(v, l, o) for v, l, o in zip(usable.video_id, usable.label, usable.original)],
                       index=usable.index)
    chosen, budget = [], max_videos
    for key in sorted(groups.unique(), key=lambda k: (stable_hash(k), k)):
        members = groups.index[groups == key]
        if len(members) <= budget:
            chosen.extend(members)
            budget -= len(members)
        if budget == 0:
            break
    return videos.loc[sorted(chosen)]


def frame_settings(frames_per_video: int = 1, strategy: str = "random", seed: int = 447,
                   jpeg_quality: int = 95) -> dict:
    """The checked settings that shape the sampled frames (what settings.json records); ValueError naming a bad one."""
    if strategy not in STRATEGIES:
        raise ValueError(f"STRATEGY must be one of {STRATEGIES}, got {strategy!r}")
    return {"frames_per_video": check_int("FRAMES_PER_VIDEO", frames_per_video, 1),
            "strategy": strategy,
            "seed": check_int("SEED", seed, 0),
            "jpeg_quality": check_int("JPEG_QUALITY", jpeg_quality, 1, 100)}


def sample_frames(
    videos_dir: str | Path,
    out_dir: str | Path,
    frames_per_video: int = 1,
    strategy: str = "random",
    seed: int = 447,
    workers: int = 0,
    jpeg_quality: int = 95,
    max_videos: int = 0,
    shard: str = "",
    fresh: bool = False,
    allow_empty: bool = False,
    videos: pd.DataFrame | None = None,
    layout: str = "auto",
    compression: str = "c23",
) -> pd.DataFrame:
    """Sample frames from every video (and image) under `videos_dir` into `out_dir`; returns and writes frames.csv.

    `layout`: how `videos_dir` is laid out, one of helpers.layouts.LAYOUTS ("auto" detects it and says
    which; a tree matching two layouts, or none, is refused naming what was expected); `compression`:
    FaceForensics++'s c23 (default), raw or c40. frames.csv gets list_videos's extra columns (dataset,
    method, and identity, source_identity and split where the layout has them) after COLUMNS, and
    out_dir/layout.json says how the root was read (`layout_note`).

    `videos`: a table of the videos to sample (list_videos's columns: video_id, part, video_path,
    label, original, status, reason, and any of EXTRA_COLUMNS; `key` defaults to part/file name) instead
    of listing `videos_dir` (the layout is then not looked at); notebook 03 uses it to sample its
    held-out videos again at more frames.

    Writes out_dir/settings.json first (frames_per_video, strategy, seed, jpeg_quality; see
    `read_settings`). Resumable: finished videos are journaled under `out_dir/_journal` and skipped on
    the next run with the same settings; a run with other settings is refused (SettingsChanged, naming
    them) unless `fresh`, which deletes this stage's earlier results first. Every setting is checked
    before any video is read. A frame that cannot be written (disk full) stops the stage with an
    OutputError; fix the disk and run again. Raises EmptyStageError when no video gave a frame (the
    manifest is written first, saying why for each; `allow_empty` or a SHARD only warn).
    """
    settings = frame_settings(frames_per_video, strategy, seed, jpeg_quality)
    max_videos = check_int("MAX_VIDEOS", max_videos, 0)
    workers = worker_count(check_int("WORKERS", workers, 0))
    shard_ = parse_shard(shard)
    from helpers import layouts  # noqa: PLC0415 - layouts builds on this module

    layouts.check_layout(layout)
    layouts.check_compression(compression)
    if is_missing(out_dir) or (videos is None and is_missing(videos_dir)):
        raise ValueError(f"VIDEOS_DIR and OUT_DIR must name folders, got {videos_dir!r} and {out_dir!r}")
    out_dir = Path(out_dir)
    read_as = None
    if videos is None:
        found = list_videos(videos_dir, layout, compression)
        read_as = {"videos_dir": str(videos_dir), "layout": found.attrs["layout"], "asked": layout,
                   "why": found.attrs["layout_reason"], "compression": found.attrs["compression"],
                   "extra_columns": [c for c in EXTRA_COLUMNS if c in found.columns]}
    else:
        found = videos.reset_index(drop=True)
        if "key" not in found:
            found["key"] = [f"{p}/{Path(v).name}" for p, v in zip(found.part, found.video_path)]
    if found.empty and read_as is not None and read_as["layout"] != "dfdc":
        raise ValueError(f"VIDEOS_DIR {videos_dir}, read as layout {read_as['layout']!r}, holds no videos or images in "
                         f"the places that layout expects: {layouts.EXPECTED[read_as['layout']]}")
    if found.empty:
        raise ValueError(f"VIDEOS_DIR {videos_dir} holds no videos ({', '.join(sorted(VIDEO_EXTENSIONS))}) and no "
                         "metadata.json, neither directly nor in its sub-folders: point it at a DFDC-layout folder "
                         "(parts with videos and metadata.json)")
    videos = select_videos(found, max_videos)
    tasks = []
    for video in videos.to_dict("records"):
        video = {k: (None if is_missing(v) and k != "reason" else v) for k, v in video.items()}
        described = {k: video[k] for k in ("video_id", "part", "label", "original", "status", "reason", *EXTRA_COLUMNS)
                     if k in video}
        tasks.append({**video, "group": group_key(video["video_id"], video["label"], video["original"]),
                      "input": fingerprint([described, file_fingerprint(video["video_path"])]),
                      "out_dir": str(out_dir), **settings})
    manifest = run_stage(tasks, sample_video, out_dir=out_dir, stage="frames", settings=settings, spec=SPEC,
                         shard=shard_, workers=workers, desc="sampling frames", initializer=_init_worker,
                         fresh=fresh, outputs=("frames",), inputs={"videos_dir": str(videos_dir),
                                                                   "max_videos": max_videos})
    if read_as is not None:
        known = [c for c in IDENTITY_COLUMNS if c in found.columns]
        read_as["identities_csv"] = str(out_dir / IDENTITIES_FILE) if known else None
        if known:
            table = found.loc[found.status == "ok", ["video_id", *known]].drop_duplicates("video_id")
            atomic_write_text(out_dir / IDENTITIES_FILE, table.to_csv(index=False))
        atomic_write_text(out_dir / LAYOUT_FILE, json.dumps(read_as, indent=2) + "\n")
    _check_result(manifest, out_dir, allow_empty or shard_[1] > 1)
    return manifest


def read_layout(path: str | Path) -> dict | None:
    """How a frames stage read its dataset root (layout.json in its OUT_DIR, or beside frames.csv); None if unknown.

    Keys: videos_dir, layout (the one used), asked (LAYOUT as given), why, compression (ffpp only),
    extra_columns (the columns beyond COLUMNS the layout gave frames.csv) and identities_csv (the
    identities.csv written beside frames.csv, or None).
    """
    path = Path(path)
    file = path if path.name == LAYOUT_FILE else (path.parent if path.suffix == ".csv" else path) / LAYOUT_FILE
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def layout_note(path: str | Path) -> str:
    """One sentence saying how notebook 01 read its dataset root (from layout.json), for the notebook."""
    record = read_layout(path)
    if record is None:
        return f"{path} holds no {LAYOUT_FILE}: the videos were given as a table, or sampled before layouts were recorded"
    compression = f", compression {record['compression']}" if record.get("compression") else ""
    extra = ", ".join(record.get("extra_columns") or []) or "none"
    identities = (f" Each video's identities are in frames.csv and {_shown(record['identities_csv'])}; notebook 03 "
                  "keeps them apart through FRAMES_CSV."
                  if record.get("identities_csv") else "")
    return (f"{_shown(record['videos_dir'])} was read as layout {record['layout']!r}{compression} "
            f"({record['why']}); columns beyond the DFDC ones: {extra}.{identities}")


def _shown(path: str) -> str:
    """A path as a reader wants it: relative to the working folder (the project root in notebooks) when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return Path(path).name


def _check_result(manifest: pd.DataFrame, out_dir: Path, only_warn: bool) -> None:
    """Say so when no video gave a frame, or when every usable video has one label."""
    ok = manifest[manifest.status == "ok"]
    if ok.empty:
        counts = manifest.drop_duplicates(["part", "video_id"]).status.value_counts()
        message = (f"no video gave a frame ({', '.join(f'{n} {s}' for s, n in counts.items()) or 'no videos'}): "
                   f"{out_dir / SPEC.name} lists the reason for each")
        if not only_warn:
            raise EmptyStageError(message)
        logger.warning(message)
        return
    labels = sorted(set(ok.label.dropna()))
    if len(labels) == 1:
        logger.warning(f"every usable video is {labels[0]}: a detector needs REAL and FAKE videos to learn from "
                       "(check the metadata.json labels, or MAX_VIDEOS)")


def read_frames_manifest(path: str | Path | pd.DataFrame, required=tuple(COLUMNS)) -> pd.DataFrame:
    """Read and check frames.csv (or check a frames DataFrame): the `required` columns (ManifestError naming
    the missing ones), integer columns as integers (empty where a video was skipped), exact statuses."""
    if isinstance(path, pd.DataFrame):
        return validate_manifest(path, "the frames DataFrame", WRITTEN_BY, SPEC.int_columns, required, STATUSES)
    return read_manifest(path, SPEC, required=required)


def read_settings(path: str | Path) -> dict:
    """The settings that shaped a frames stage's output, from settings.json in its OUT_DIR.

    `path` is the OUT_DIR, its frames.csv or the settings.json itself; the dict holds exactly
    sample_frames's keyword arguments frames_per_video, strategy, seed and jpeg_quality. Raises
    FileNotFoundError naming the file when it is absent.
    """
    return read_settings_record(path, "frames", WRITTEN_BY)["settings"]


def usable(manifest: pd.DataFrame) -> pd.DataFrame:
    """Rows with a frame on disk (status ok)."""
    return manifest[manifest.status == "ok"]


def summarize_videos(manifest: pd.DataFrame) -> pd.DataFrame:
    """Videos and frames per part and label, with how many videos were skipped."""
    per_video = manifest.drop_duplicates(["part", "video_id"])
    table = per_video.assign(label=per_video.label.fillna("?")).pivot_table(
        index="part", columns="label", values="video_id", aggfunc="count", fill_value=0)
    table["videos"] = table.sum(axis=1)
    table["skipped"] = per_video[per_video.status != "ok"].groupby("part").size().reindex(table.index, fill_value=0)
    table["frames"] = usable(manifest).groupby("part").size().reindex(table.index, fill_value=0)
    table.loc["total"] = table.sum()
    return table


def skipped_videos(manifest: pd.DataFrame) -> pd.DataFrame:
    """One row per video that gave no frames, with its status and reason."""
    skipped = manifest[manifest.status != "ok"].drop_duplicates(["part", "video_id"])
    return skipped[["part", "video_id", "label", "status", "reason"]].reset_index(drop=True)
