"""Frame sampling from DFDC-layout video folders: the first stage of the study.

A DFDC-layout folder holds parts (`dfdc_train_part_0/`, ...), each with videos and a `metadata.json`
mapping `video.mp4 -> {"label": "REAL"|"FAKE", "split": ..., "original": "source.mp4"|null}`.
`sample_frames` writes JPEG frames and a manifest, `frames.csv`, with one row per frame, or one row
per video that could not be used (its `status` and `reason` say why).
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from helpers.manifest import parse_shard, read_manifest, run_stage, stable_hash, write_manifest
from helpers.runtime import worker_count

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm"}
STRATEGIES = ("random", "uniform")
COLUMNS = [
    "video_id", "part", "video_path", "label", "original", "frame_index", "n_frames", "fps",
    "width", "height", "frame_path", "status", "reason",
]
# Beyond this many frames ahead we seek (jump to a keyframe, decode forward) instead of grabbing every
# frame. DFDC clips (300 frames, few keyframes) gain nothing from seeking: measured on the sample, frame
# 250 costs 1.46 s by seeking and 1.42 s by grabbing, two frames 1.81 s vs 1.42 s. Long videos do gain.
SEEK_GAP = 300


def video_id_of(name: str | None) -> str | None:
    """DFDC names videos `abcdefghij.mp4`; we key them by the stem."""
    if name is None or (isinstance(name, float) and np.isnan(name)) or name == "":
        return None
    return Path(str(name)).stem


def find_parts(videos_dir: str | Path) -> list[Path]:
    """Folders under `videos_dir` holding videos or a metadata.json (or `videos_dir` itself)."""
    root = Path(videos_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"VIDEOS_DIR {root} does not exist or is not a folder; point it at a DFDC-layout folder")

    def is_part(folder: Path) -> bool:
        return (folder / "metadata.json").exists() or any(
            p.suffix.lower() in VIDEO_EXTENSIONS for p in folder.iterdir() if p.is_file()
        )

    parts = [p for p in sorted(root.iterdir()) if p.is_dir() and is_part(p)]
    if is_part(root):
        parts.insert(0, root)
    return parts


def read_metadata(part: Path) -> tuple[dict | None, str]:
    """A part's metadata.json as a dict, or None and the reason it cannot be used."""
    path = part / "metadata.json"
    if not path.exists():
        return None, f"{path} does not exist: the part's videos have no labels"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        return None, f"{path} is not valid JSON ({err})"
    if not isinstance(meta, dict):
        return None, f"{path} should map video names to {{label, original}}, found a {type(meta).__name__}"
    return meta, ""


def list_videos(videos_dir: str | Path) -> pd.DataFrame:
    """Every video that a metadata.json lists or that lies in a part, with its label and status.

    status is "ok" (labelled and present), "missing" (listed but absent), "unlabelled" (present but in
    no metadata, or in a part without a usable metadata.json) or "bad_label" (label not REAL/FAKE).
    """
    records = []
    for part in find_parts(videos_dir):
        meta, problem = read_metadata(part)
        present = {p.name: p for p in sorted(part.iterdir()) if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS}
        listed = meta or {}
        for name in sorted(set(present) | set(listed)):
            entry = listed.get(name) if isinstance(listed.get(name), dict) else {}
            label = str(entry.get("label", "")).upper() or None
            record = {
                "video_id": video_id_of(name),
                "part": part.name,
                "video_path": str(part / name),
                "label": label,
                "original": video_id_of(entry.get("original")),
                "status": "ok",
                "reason": "",
            }
            if name not in present:
                record.update(status="missing", reason=f"listed in {part / 'metadata.json'} but the file is absent")
            elif name not in listed:
                record.update(status="unlabelled", reason=problem or f"not listed in {part / 'metadata.json'}")
            elif label not in ("REAL", "FAKE"):
                record.update(status="bad_label", reason=f"label {entry.get('label')!r} in {part / 'metadata.json'} is not REAL or FAKE")
            records.append(record)
    return pd.DataFrame(records, columns=["video_id", "part", "video_path", "label", "original", "status", "reason"])


def group_key(video_id: str, label: str | None, original: str | None) -> str:
    """The key a fake shares with its original, so both get the same frames (and the same shard)."""
    return original if label == "FAKE" and original else video_id


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


def sample_video(task: dict) -> list[dict]:
    """Sample one video (a task from `sample_frames`) into JPEG files; returns its manifest rows."""
    base = {k: task[k] for k in ("video_id", "part", "video_path", "label", "original")}
    if task["status"] != "ok":
        return [{**base, "status": task["status"], "reason": task["reason"]}]
    try:
        cap, info = open_video(task["video_path"])
    except (ValueError, OSError) as err:
        return [{**base, "status": "unreadable", "reason": f"{task['video_path']}: {err}"}]
    out_dir = Path(task["out_dir"])
    rows = []
    try:
        key = group_key(task["video_id"], task["label"], task["original"])
        indices = frame_indices(info["n_frames"], task["frames_per_video"], task["strategy"], task["seed"], key)
        params = [cv2.IMWRITE_JPEG_QUALITY, int(task["jpeg_quality"])]
        for index, rgb in read_frames(cap, indices):
            path = _frame_path(out_dir, task["part"], task["video_id"], index)
            path.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params):
                raise OSError(f"cannot write {path}")
            rows.append({**base, **info, "frame_index": index, "width": rgb.shape[1], "height": rgb.shape[0],
                         "frame_path": str(path), "status": "ok", "reason": ""})
    except (ValueError, OSError) as err:
        for row in rows:  # a video is used whole or not at all, so pairs stay comparable
            Path(row["frame_path"]).unlink(missing_ok=True)
        return [{**base, **info, "status": "unreadable", "reason": f"{task['video_path']}: {err}"}]
    finally:
        cap.release()
    return rows


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
) -> pd.DataFrame:
    """Sample frames from every video under `videos_dir` into `out_dir`; returns and writes frames.csv.

    Resumable: finished videos are journaled under `out_dir/_journal` and skipped on the next run.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"STRATEGY must be one of {STRATEGIES}, got {strategy!r}")
    if not 1 <= int(jpeg_quality) <= 100:
        raise ValueError(f"JPEG_QUALITY must be in 1..100, got {jpeg_quality}")
    shard_ = parse_shard(shard)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    videos = select_videos(list_videos(videos_dir), max_videos)
    tasks = []
    for video in videos.to_dict("records"):
        tasks.append({**video, "key": f"{video['part']}/{video['video_id']}",
                      "group": group_key(video["video_id"], video["label"], video["original"]), "out_dir": str(out_dir),
                      "frames_per_video": frames_per_video, "strategy": strategy, "seed": seed,
                      "jpeg_quality": jpeg_quality})
    rows = run_stage(tasks, sample_video, out_dir=out_dir, stage="frames", shard=shard_,
                     workers=worker_count(workers), desc="sampling frames", initializer=_init_worker)
    manifest = write_manifest(rows, out_dir / "frames.csv", COLUMNS, sort_by=["part", "video_id", "frame_index"])
    return read_frames_manifest(out_dir / "frames.csv") if len(manifest) else manifest


def read_frames_manifest(path: str | Path) -> pd.DataFrame:
    """Read frames.csv with its integer columns as integers (empty where a video was skipped)."""
    return read_manifest(path, "notebook 01 (frame sampling)", ("frame_index", "n_frames", "width", "height"))


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
