"""Issue 13's hostile inputs, one test per numbered case: data never lost or stale, and a clear message for each.

Cases: 1 write failures (full disk), 2 settings-keyed journal, 3 two writers, 4 extensions in journal keys,
5 no orphan workers, 6 a fake with a null original, 7 symlinked folders in predict, 8 exact statuses and
integer columns, 9 corrupt model.pt, 10 EXIF orientation, 11 odd folders and names, 12 hand-edited
manifests, 13 parameter types in the runner, 14 empty results.
"""
from __future__ import annotations

import csv
import errno
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
import unicodedata
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from helpers import faces, frames, manifest, pipeline, predict
from tests.videos import write_part, write_video

ROOT = Path(__file__).resolve().parents[1]


def make_videos(root: Path, pairs: int = 3, n_frames: int = 30) -> Path:
    """One part with `pairs` REAL videos, each with one FAKE made from it."""
    videos = {}
    for i in range(pairs):
        videos[f"real{i:06d}.mp4"] = {"label": "REAL"}
        videos[f"fake{i:06d}.mp4"] = {"label": "FAKE", "original": f"real{i:06d}.mp4"}
    write_part(root / "part_a", videos, n_frames=n_frames)
    return root


def relative(frame: pd.DataFrame, folder: Path) -> pd.DataFrame:
    """A manifest with its output paths made relative to `folder`, to compare runs in different folders."""
    out = frame.copy()
    for column in [c for c in out.columns if c.endswith("_path") and c != "video_path"]:
        out[column] = out[column].map(lambda p: os.path.relpath(p, folder) if isinstance(p, str) else p)
    return out


def journal_entries(out_dir: Path, stage: str = "frames") -> list[dict]:
    entries = []
    for path in sorted((out_dir / manifest.JOURNAL_DIR).glob(f"{stage}*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return entries


@pytest.fixture
def videos(tmp_path) -> Path:
    return make_videos(tmp_path / "videos")


@pytest.fixture(scope="module")
def detector():
    """One MTCNN for the module at full resolution (the first one costs seconds)."""
    return faces.FaceDetector(detect_max_side=0, threads=2)


@pytest.fixture
def shared_detector(detector, monkeypatch):
    """extract_faces builds its MTCNN in _init_detector; hand it this module's, at the stage's DETECT_MAX_SIDE."""
    import copy

    def init(detect_max_side, *_):
        other = copy.copy(detector)
        other.detect_max_side = detect_max_side
        monkeypatch.setattr(faces, "_detector", other)

    monkeypatch.setattr(faces, "_init_detector", init)


def lfw_canvas(shape=(270, 480), at=(100, 60), size=120, index=0) -> np.ndarray:
    """A grey frame with LFW face `index` (scikit-image) pasted in at `at`, `size` px."""
    from skimage.data import lfw_subset

    grey = (lfw_subset()[index] * 255).astype(np.uint8)
    image = np.full((*shape, 3), 128, np.uint8)
    x, y = at
    image[y:y + size, x:x + size] = faces.to_rgb(cv2.resize(grey, (size, size), interpolation=cv2.INTER_CUBIC))
    return image


def frames_csv_for(folder: Path, images: dict[str, np.ndarray], label: str = "REAL") -> Path:
    """A frames.csv (as notebook 01 writes it) with one frame per image, the images written as JPEG."""
    rows = []
    for video_id, image in images.items():
        path = folder / "frames" / "p" / f"{video_id}_00000.jpg"
        frames.write_jpeg(path, image, 95)
        rows.append({"video_id": video_id, "part": "p", "video_path": f"videos/p/{video_id}.mp4", "label": label,
                     "original": None, "frame_index": 0, "n_frames": 30, "fps": 10.0, "width": image.shape[1],
                     "height": image.shape[0], "frame_path": str(path), "status": "ok", "reason": ""})
    path = folder / "frames.csv"
    pd.DataFrame(rows, columns=frames.COLUMNS).to_csv(path, index=False)
    return path


# --- 1. A failed write stops the stage, is not journaled, and a resume completes -----------------------------

@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "the disk is full"), (errno.EACCES, "Make OUT_DIR writable")])
def test_01_a_failed_write_stops_the_stage_and_is_never_journaled(videos, tmp_path, monkeypatch, code, words):
    reference = frames.sample_frames(videos, tmp_path / "ref", frames_per_video=3, workers=1)
    real_write = frames.write_output
    calls = []

    def failing(path, data):
        calls.append(path)
        if len(calls) > 7:  # two videos and a bit: the third video fails half-way
            raise manifest.output_error(OSError(code, os.strerror(code), str(path)), path)  # as write_output does
        real_write(path, data)

    monkeypatch.setattr(frames, "write_output", failing)
    out = tmp_path / "out"
    with pytest.raises(manifest.OutputError, match=words) as err:
        frames.sample_frames(videos, out, frames_per_video=3, workers=1)
    assert str(out) in str(err.value) and "finished items are kept" in str(err.value)
    entries = journal_entries(out)
    assert len(entries) == 2 and all(row["status"] == "ok" for e in entries for row in e["rows"])
    assert not (out / "frames.csv").exists()
    assert len(list((out / "frames").rglob("*.jpg"))) == 6  # the failed video's first frame was removed

    monkeypatch.setattr(frames, "write_output", real_write)  # space freed
    resumed = frames.sample_frames(videos, out, frames_per_video=3, workers=1)
    assert (resumed.status == "ok").all() and resumed.video_id.nunique() == 6
    pd.testing.assert_frame_equal(relative(resumed, out), relative(reference, tmp_path / "ref"))


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (root only); skipped where it cannot be mounted."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_01_full_disk_then_a_resume_completes_every_video(small_disk, tmp_path):
    videos = make_videos(tmp_path / "videos", pairs=5)
    reference = frames.sample_frames(videos, tmp_path / "ref", frames_per_video=3, workers=1)
    stats = os.statvfs(small_disk)
    free = stats.f_bavail * stats.f_frsize
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (free - 48 * 1024))  # room for settings, journal and a few frames only
    out = small_disk / "out"
    with pytest.raises(manifest.OutputError, match="the disk is full") as err:
        frames.sample_frames(videos, out, frames_per_video=3, workers=1)
    assert err.value.errno == errno.ENOSPC
    before = journal_entries(out)
    assert all(row["status"] == "ok" for e in before for row in e["rows"]), "a write failure was journaled as bad input"
    assert len(before) < 10

    filler.unlink()  # space freed
    resumed = frames.sample_frames(videos, out, frames_per_video=3, workers=1)
    assert (resumed.status == "ok").all() and resumed.video_id.nunique() == 10
    pd.testing.assert_frame_equal(relative(resumed, out), relative(reference, tmp_path / "ref"))
    keys = [e["key"] for e in journal_entries(out)]
    assert sorted(keys) == sorted(set(keys)), "a finished video was sampled again"


# --- 2. The journal keys each item by its settings ------------------------------------------------------------

def test_02_other_frame_settings_are_refused_and_fresh_redoes_them(videos, tmp_path):
    out = tmp_path / "out"
    first = frames.sample_frames(videos, out, frames_per_video=3, strategy="random", workers=1)
    assert frames.read_settings(out) == {"frames_per_video": 3, "strategy": "random", "seed": 447, "jpeg_quality": 95}
    with pytest.raises(manifest.SettingsChanged) as err:
        frames.sample_frames(videos, out, frames_per_video=5, strategy="uniform", workers=1)
    message = str(err.value)
    assert "FRAMES_PER_VIDEO 3 there, 5 now" in message and "STRATEGY 'random' there, 'uniform' now" in message
    assert "FRESH = True" in message
    pd.testing.assert_frame_equal(frames.read_frames_manifest(out / "frames.csv"), first)  # nothing lost

    again = frames.sample_frames(videos, out, frames_per_video=5, strategy="uniform", workers=1, fresh=True)
    assert (again.groupby("video_id").size() == 5).all()
    assert sorted(set(again.frame_index)) == [3, 9, 15, 21, 27]  # uniform, centred in fifths of 30 frames
    assert len(list((out / "frames").rglob("*.jpg"))) == len(again)  # the old frames went with FRESH
    assert frames.read_settings(out)["strategy"] == "uniform"


def test_02_a_bad_value_is_refused_before_anything_is_journaled(videos, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="FRAMES_PER_VIDEO must be >= 1, got 0"):
        frames.sample_frames(videos, out, frames_per_video=0, workers=1)
    assert not out.exists()
    result = frames.sample_frames(videos, out, frames_per_video=1, workers=1)
    assert (result.status == "ok").all() and len(result) == 6


def test_02_a_changed_video_is_redone(videos, tmp_path, caplog):
    out = tmp_path / "out"
    frames.sample_frames(videos, out, frames_per_video=2, workers=1)
    write_video(videos / "part_a" / "real000000.mp4", n_frames=12)  # replaced under the same name
    caplog.clear()
    result = frames.sample_frames(videos, out, frames_per_video=2, workers=1)
    assert any(r.name == "helpers.manifest" and r.levelname == "WARNING" and re.search(r"1 item\(s\) .* other input",
                                                                                       r.getMessage())
               for r in caplog.records)
    assert (result[result.video_id == "real000000"].n_frames == 12).all()


def test_02_other_face_settings_are_refused(tmp_path, shared_detector):
    frames_csv = frames_csv_for(tmp_path, {"facea00000": lfw_canvas()})
    out = tmp_path / "faces"
    first = faces.extract_faces(frames_csv, out, face_size=32, detect_max_side=0)
    assert first.status.tolist() == ["ok"]
    for change, words in [({"face_size": 64}, "FACE_SIZE 32 there, 64 now"), ({"keep": "all"}, "KEEP 'largest' there"),
                          ({"min_confidence": 0.999}, "MIN_CONFIDENCE 0.9 there, 0.999 now")]:
        with pytest.raises(manifest.SettingsChanged, match=words):
            faces.extract_faces(frames_csv, out, **{"face_size": 32, "detect_max_side": 0, **change})
    bigger = faces.extract_faces(frames_csv, out, face_size=64, detect_max_side=0, fresh=True)
    assert cv2.imread(bigger.face_path[0]).shape == (64, 64, 3)
    assert faces.read_settings(out)["face_size"] == 64


def test_settings_json_schema_and_readers(videos, tmp_path, shared_detector):
    frames.sample_frames(videos, tmp_path / "frames", frames_per_video=1, workers=1)
    record = json.loads((tmp_path / "frames" / "settings.json").read_text())
    assert set(record) == {"stage", "written_by", "settings", "settings_hash", "inputs"}
    assert record["stage"] == "frames" and record["inputs"]["videos_dir"] == str(videos)
    assert frames.read_settings(tmp_path / "frames" / "frames.csv") == record["settings"]

    frames_csv = frames_csv_for(tmp_path / "in", {"facea00000": lfw_canvas()})
    faces.extract_faces(frames_csv, tmp_path / "faces", face_size=32, detect_max_side=0)
    settings = faces.read_settings(tmp_path / "faces" / "faces.csv")
    assert settings == {"face_size": 32, "margin": 1.3, "min_confidence": 0.9, "detect_max_side": 0,
                        "min_face_size": 20, "scale_factor": 0.709, "keep": "largest",
                        "regions": ["eyes", "lower", "eyes_lower"], "reuse_original_boxes": True, "jpeg_quality": 95,
                        "detector": "mtcnn-torch"}
    # the same settings, as keyword arguments, crop the same way elsewhere
    again = faces.extract_faces(frames_csv, tmp_path / "again", **settings)
    assert again.x.tolist() == faces.read_faces_manifest(tmp_path / "faces" / "faces.csv").x.tolist()
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere" / "settings.json")):
        faces.read_settings(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="stage 'frames', not 'faces'"):
        faces.read_settings(tmp_path / "frames")


def test_faces_of_a_frames_subset_are_detected_on_themselves(tmp_path, shared_detector):
    """What splits does for held-out fakes: a DataFrame subset in, its own faces.csv out, boxes not reused."""
    frames_csv = frames_csv_for(tmp_path, {"facea00000": lfw_canvas(), "faceb00000": lfw_canvas(index=2)})
    table = frames.read_frames_manifest(frames_csv)
    subset = table[table.video_id == "faceb00000"].assign(label="FAKE", original="facea00000")
    settings = {**faces.face_settings(face_size=32, detect_max_side=0), "reuse_original_boxes": False}
    result = faces.extract_faces(subset[list(faces.FRAME_COLUMNS)], tmp_path / "heldout", **settings)
    assert result.video_id.tolist() == ["faceb00000"] and result.status.tolist() == ["ok"]
    assert result.box_source.tolist() == ["detected"]
    record = json.loads((tmp_path / "heldout" / "settings.json").read_text())
    assert record["inputs"]["frames"] == "a DataFrame of 1 frame rows"
    assert not record["settings"]["reuse_original_boxes"]


# --- 3. Two writers on one OUT_DIR ----------------------------------------------------------------------------

def child(videos: Path, out: Path, *args: str, env: dict | None = None) -> tuple[subprocess.Popen, Path]:
    """tests.stage_worker in a child process, and the file its output goes to (an orphan holding a pipe would
    hang the test instead of failing it)."""
    log = out.parent / f"{out.name}-{len(list(out.parent.glob(out.name + '-*.log')))}.log"
    with open(log, "w") as fh:
        run = subprocess.Popen([sys.executable, "-m", "tests.stage_worker", str(videos), str(out), *args], cwd=ROOT,
                               env={**os.environ, **(env or {})}, stdout=fh, stderr=subprocess.STDOUT, text=True)
    return run, log


@pytest.mark.slow
def test_03_two_shards_finishing_at_once_leave_the_single_writers_manifest(tmp_path):
    videos = make_videos(tmp_path / "videos", pairs=6)
    single = frames.sample_frames(videos, tmp_path / "single", frames_per_video=2, workers=1)
    shared = tmp_path / "shared"
    runs = [child(videos, shared, "--shard", f"{i}/2") for i in range(2)]
    for run, log in runs:
        assert run.wait(timeout=300) == 0, log.read_text()
    on_disk = frames.read_frames_manifest(shared / "frames.csv")  # parses
    pd.testing.assert_frame_equal(relative(on_disk, shared), relative(single, tmp_path / "single"))
    assert not list(shared.glob("*.tmp")) and not list(shared.glob(".*.tmp"))


def test_03_concurrent_manifest_writes_never_leave_a_broken_file(tmp_path):
    rows = [{"video_id": f"v{i:05d}", "part": "p", "frame_index": i, "status": "ok", "reason": "x" * 50}
            for i in range(3000)]
    path = tmp_path / "frames.csv"
    errors = []

    def writer():
        try:
            for _ in range(5):
                manifest.write_manifest(rows, path, ["video_id", "part", "frame_index", "status", "reason"],
                                        ["video_id"])
        except Exception as err:  # noqa: BLE001 - collected for the assertion
            errors.append(err)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(pd.read_csv(path)) == 3000 and not list(tmp_path.glob(".*.tmp"))


def test_03_a_second_process_on_the_same_shard_is_refused(videos, tmp_path):
    out = tmp_path / "out"
    fd = manifest.open_journal(manifest.journal_path(out, "frames", (0, 1)))  # as a running process would hold it
    try:
        with pytest.raises(manifest.StageBusy, match="another process is running this stage"):
            frames.sample_frames(videos, out, workers=1)
    finally:
        os.close(fd)
    assert len(frames.sample_frames(videos, out, workers=1)) == 6


# --- 4. The journal key holds the extension ------------------------------------------------------------------

def test_04_clip_mp4_and_clip_avi_are_both_recorded(tmp_path):
    part = tmp_path / "videos" / "part_a"
    write_part(part, {"clipaaaaaa.mp4": {"label": "REAL"}, "clipaaaaaa.avi": {"label": "REAL"},
                      "otheraaaaa.mp4": {"label": "REAL"}, "onlyaaaaaa.mp4": {"label": "REAL"}})
    write_video(part / "onlyaaaaaa.avi")  # present but unlabelled: no clash with the labelled .mp4
    result = frames.sample_frames(tmp_path / "videos", tmp_path / "out", workers=1)
    rows = {Path(p).name: g for p, g in result.groupby("video_path")}
    assert set(rows) == {"clipaaaaaa.mp4", "clipaaaaaa.avi", "otheraaaaa.mp4", "onlyaaaaaa.mp4", "onlyaaaaaa.avi"}
    for name in ("clipaaaaaa.mp4", "clipaaaaaa.avi"):
        row = rows[name].iloc[0]
        assert row.status == "duplicate_id"
        assert "part_a/clipaaaaaa.avi and part_a/clipaaaaaa.mp4 share the video id 'clipaaaaaa'" in row.reason
    assert rows["onlyaaaaaa.mp4"].status.iloc[0] == "ok" and rows["onlyaaaaaa.avi"].status.iloc[0] == "unlabelled"
    keys = {e["key"] for e in journal_entries(tmp_path / "out")}
    assert {"part_a/clipaaaaaa.mp4", "part_a/clipaaaaaa.avi"} <= keys
    assert not list((tmp_path / "out" / "frames").rglob("clipaaaaaa_*.jpg"))


# --- 5. No worker outlives a killed run --------------------------------------------------------------------------

def children_of(pid: int) -> set[int]:
    """Live processes whose parent is `pid` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has died; only its exit status waits for a parent that reaps it


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the workers")
def test_05_sigkill_leaves_no_worker_alive_and_a_resume_finishes(tmp_path):
    videos = make_videos(tmp_path / "videos", pairs=6)
    out, pids = tmp_path / "out", tmp_path / "pids"
    pids.mkdir()
    run, log = child(videos, out, "--workers", "2", env={"STAGE_WORKER_PIDS": str(pids), "STAGE_WORKER_SLOW": "0.5"})
    deadline = time.time() + 180
    while time.time() < deadline and not (len(list(pids.iterdir())) >= 2 and journal_entries(out)):
        assert run.poll() is None, log.read_text()
        time.sleep(0.1)
    workers = children_of(run.pid) | {int(p.name) for p in pids.iterdir()}
    assert len(workers) >= 2, "the run did not start two workers"
    run.send_signal(signal.SIGKILL)
    run.wait()
    deadline = time.time() + 20
    while time.time() < deadline and any(alive(p) for p in workers):
        time.sleep(0.1)
    survivors = [p for p in workers if alive(p)]
    for pid in survivors:  # do not leave them behind when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not survivors, "pool workers outlived their killed parent"

    finished = {e["key"] for e in journal_entries(out)}
    assert 0 < len(finished) < 12
    resumed = frames.sample_frames(videos, out, frames_per_video=2, workers=2)
    reference = frames.sample_frames(videos, tmp_path / "ref", frames_per_video=2, workers=1)
    pd.testing.assert_frame_equal(relative(resumed, out), relative(reference, tmp_path / "ref"))
    keys = [e["key"] for e in journal_entries(out)]
    assert sorted(keys) == sorted(set(keys)) and len(keys) == 12, "a finished video was sampled again"


def test_05_the_parent_pid_check_ends_an_orphan(tmp_path):
    """The fallback without prctl: a worker whose parent dies notices within a second and exits."""
    script = (
        "import os, subprocess, sys\n"
        "code = 'import os, sys, time; from helpers.manifest import die_with_parent; '"
        " \"die_with_parent(int(sys.argv[1]), interval=0.1, use_prctl=False); print(os.getpid(), flush=True); "
        "time.sleep(60)\"\n"
        "p = subprocess.Popen([sys.executable, '-c', code, str(os.getpid())], stdout=subprocess.PIPE, text=True)\n"
        "print(p.stdout.readline().strip(), flush=True)\n"
        "os._exit(0)\n"
    )
    parent = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    orphan = int(parent.stdout.strip())
    deadline = time.time() + 10
    while time.time() < deadline and alive(orphan):
        time.sleep(0.05)
    assert not alive(orphan)


# --- 6. A fake whose original is null --------------------------------------------------------------------------

def test_06_a_fake_with_a_null_original_is_its_own_group(tmp_path):
    part = tmp_path / "videos" / "part_a"
    write_part(part, {"realaaaaaa.mp4": {"label": "REAL"}, "fakeaaaaaa.mp4": {"label": "FAKE", "original": None},
                      "fakebbbbbb.mp4": {"label": "FAKE", "original": "realaaaaaa.mp4"}})
    meta = json.loads((part / "metadata.json").read_text())
    meta["fakeccccc.mp4"] = {"label": "FAKE"}  # no "original" key at all
    write_video(part / "fakeccccc.mp4")
    (part / "metadata.json").write_text(json.dumps(meta))
    result = frames.sample_frames(tmp_path / "videos", tmp_path / "out", frames_per_video=2, workers=1)
    assert (result.status == "ok").all() and result.video_id.nunique() == 4
    assert result[result.video_id == "fakeaaaaaa"].original.isna().all()
    assert frames.group_key("fakeaaaaaa", "FAKE", float("nan")) == "fakeaaaaaa"
    assert frames.group_key("fakeaaaaaa", "FAKE", pd.NA) == "fakeaaaaaa"
    tasks = faces.face_tasks(frames.read_frames_manifest(tmp_path / "out" / "frames.csv"), {})
    assert sorted(t["key"] for t in tasks) == ["fakeaaaaaa", "fakeccccc", "realaaaaaa"]


# --- 7. predict follows symlinked folders ---------------------------------------------------------------------

def test_07_predict_follows_symlinked_folders_once(tmp_path):
    real = tmp_path / "elsewhere" / "part_b"
    write_video(real / "linkedaaaa.mp4")
    top = tmp_path / "inputs"
    write_video(top / "part_a" / "plainaaaaa.mp4")
    (top / "part_b").symlink_to(real, target_is_directory=True)
    (top / "part_a" / "loop").symlink_to(top, target_is_directory=True)  # a loop must not hang or repeat
    (top / "part_a" / "gone.mp4").symlink_to(tmp_path / "deleted.mp4")  # a broken link is kept, to be reported
    found = predict.expand_paths([top])
    names = [p.name for p in found]
    assert names.count("plainaaaaa.mp4") == 1 and names.count("linkedaaaa.mp4") == 1 and "gone.mp4" in names
    assert len(found) == 3


# --- 8. Exact statuses and integer columns ----------------------------------------------------------------------

def test_08_an_upper_case_status_is_refused_with_the_rule(tmp_path):
    frames_csv = frames_csv_for(tmp_path, {"facea00000": lfw_canvas(), "faceb00000": lfw_canvas()})
    table = pd.read_csv(frames_csv)
    table.loc[1, "status"] = "OK"
    table.to_csv(frames_csv, index=False)
    with pytest.raises(manifest.ManifestError) as err:
        faces.extract_faces(frames_csv, tmp_path / "faces")
    message = str(err.value)
    assert str(frames_csv) in message and "['OK']" in message and "line 3" in message
    assert "matched exactly (lower case)" in message
    assert not (tmp_path / "faces").exists()


def test_08_integer_columns_are_written_as_integers(tmp_path):
    part = tmp_path / "videos" / "part_a"
    write_part(part, {"realaaaaaa.mp4": {"label": "REAL"}, "goneaaaaaa.mp4": {"label": "REAL"}},
               present={"realaaaaaa.mp4"})
    frames.sample_frames(tmp_path / "videos", tmp_path / "out", frames_per_video=2, workers=1)
    with open(tmp_path / "out" / "frames.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        for column in ("frame_index", "n_frames", "width", "height"):
            assert row[column] == "" or row[column].isdigit(), (column, row[column])
    assert {r["width"] for r in rows if r["status"] == "ok"} == {"64"}
    assert [r["frame_index"] for r in rows if r["status"] != "ok"] == [""]


# --- 9. A corrupt or foreign model.pt ----------------------------------------------------------------------------

class Payload:
    def __reduce__(self):
        return (os.system, ("echo this would run",))


def corrupt(run_dir: Path, how: str) -> None:
    path = run_dir / "model.pt"
    data = path.read_bytes()
    if how == "random":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "pickle":
        path.write_bytes(pickle.dumps(Payload()))
    elif how == "malicious":
        torch.save({"model": Payload()}, path)
    elif how == "foreign":
        torch.save({"foo": 1}, path)


@pytest.mark.parametrize("how, words", [
    ("random", "not a checkpoint torch.save wrote"), ("truncated", "not a checkpoint torch.save wrote"),
    ("empty", "empty (0 bytes)"), ("pickle", "not a checkpoint torch.save wrote"),
    ("malicious", "was refused: it holds Python objects"), ("foreign", "holds no model that helpers.training"),
])
def test_09_a_bad_model_pt_gets_a_clear_message(tmp_path, capsys, how, words):
    run_dir = predict.make_untrained_run(tmp_path / "run", "meso4", 32)
    corrupt(run_dir, how)
    with pytest.raises(ValueError, match=re.escape(words)):
        predict.Predictor(run_dir, warm_up=False, detector=object())
    assert predict.main([str(tmp_path), "--run", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("predict: ") and str(run_dir / "model.pt") in err and words in err
    assert "Traceback" not in err and "weights_only=False" not in err and "weights_only` set to `False" not in err


# --- 10. EXIF orientation -----------------------------------------------------------------------------------------

def test_10_a_rotated_phone_photo_is_read_upright_and_its_face_found(tmp_path, shared_detector):
    from PIL import Image

    upright = lfw_canvas(shape=(320, 240), at=(60, 100))
    stored = np.ascontiguousarray(np.rot90(upright, k=1))  # the sensor's pixels; EXIF 6 says "turn 90 degrees CW"
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6
    photo = tmp_path / "frames" / "p" / "phoneaaaaa_00000.jpg"
    photo.parent.mkdir(parents=True)
    image.save(photo, exif=exif.tobytes(), quality=95)
    read = faces.read_image(photo)
    assert read.shape == upright.shape
    assert np.abs(read.astype(int) - upright.astype(int)).mean() < 3

    frames_csv = tmp_path / "frames.csv"
    row = {"video_id": "phoneaaaaa", "part": "p", "video_path": "", "label": "REAL", "original": None,
           "frame_index": 0, "n_frames": 1, "fps": 0.0, "width": 240, "height": 320, "frame_path": str(photo),
           "status": "ok", "reason": ""}
    pd.DataFrame([row], columns=frames.COLUMNS).to_csv(frames_csv, index=False)
    result = faces.extract_faces(frames_csv, tmp_path / "faces", face_size=32, detect_max_side=0)
    assert result.status.tolist() == ["ok"] and result.confidence[0] > 0.95
    assert 60 <= result.x[0] + result.w[0] / 2 <= 180 and 100 <= result.y[0] + result.h[0] / 2 <= 220


# --- 11. Odd folders and names --------------------------------------------------------------------------------------

def test_11_odd_folders_and_names_are_recorded_and_nothing_stops(tmp_path):
    root = tmp_path / "videos"
    (root / "part_dir" / "metadata.json").mkdir(parents=True)  # a folder named metadata.json
    write_video(root / "part_dir" / "orphanaaaa.mp4")
    write_part(root / "part_ok", {"realaaaaaa.mp4": {"label": "REAL"}, "folderaaaa.mp4": {"label": "REAL"}},
               present={"realaaaaaa.mp4"})
    (root / "part_ok" / "folderaaaa.mp4").mkdir()  # a folder named like a video
    nfd = unicodedata.normalize("NFD", "café00000.mp4")
    nfc = unicodedata.normalize("NFC", "café00000.mp4")
    assert nfd != nfc
    write_video(root / "part_ok" / nfd)
    meta = json.loads((root / "part_ok" / "metadata.json").read_text())
    meta[nfc] = {"label": "REAL"}
    (root / "part_ok" / "metadata.json").write_text(json.dumps(meta, ensure_ascii=False))

    result = frames.sample_frames(root, tmp_path / "out", workers=1)
    videos = result.drop_duplicates(["part", "video_id"]).set_index("video_id")
    assert videos.loc["orphanaaaa", "status"] == "unlabelled"
    assert "metadata.json is a folder, not a file" in videos.loc["orphanaaaa", "reason"]
    assert videos.loc["folderaaaa", "status"] == "unreadable"
    assert "folderaaaa.mp4 is a folder, not a video file" in videos.loc["folderaaaa", "reason"]
    cafe = result[result.video_id == unicodedata.normalize("NFC", "café00000")]
    assert len(cafe) == 1 and cafe.status.iloc[0] == "ok" and Path(cafe.video_path.iloc[0]).name == nfd
    assert videos.loc["realaaaaaa", "status"] == "ok"


# --- 12. Hand-edited manifests ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("edit, words", [
    (lambda t: t.drop(columns=["frame_path"]), "lacks column(s) ['frame_path'] that notebook 01 (frame sampling) writes"),
    (lambda t: t.drop(columns=["status", "label"]), "lacks column(s) ['label', 'status']"),
    (lambda t: t.assign(frame_index=["abc", "0"]), "column 'frame_index' must hold whole numbers, but holds 'abc' on line 2"),
    (lambda t: t.assign(frame_index=[1.5, 0]), "holds 1.5 on line 2"),
])
def test_12_a_hand_edited_frames_csv_is_checked_on_read(tmp_path, edit, words):
    frames_csv = frames_csv_for(tmp_path, {"facea00000": lfw_canvas(), "faceb00000": lfw_canvas()})
    edit(pd.read_csv(frames_csv)).to_csv(frames_csv, index=False)
    with pytest.raises(manifest.ManifestError, match=re.escape(words)):
        faces.extract_faces(frames_csv, tmp_path / "faces")


def test_12_a_hand_edited_faces_csv_names_notebook_02(tmp_path):
    path = tmp_path / "faces.csv"
    pd.DataFrame([{"video_id": "a", "label": "REAL", "status": "ok"}]).to_csv(path, index=False)
    with pytest.raises(manifest.ManifestError, match="lacks column.*that notebook 02 \\(face cropping\\) writes"):
        faces.read_faces_manifest(path)
    path.write_text("")
    with pytest.raises(manifest.ManifestError, match="is empty"):
        faces.read_faces_manifest(path)


# --- 13. Parameter types in the runner ----------------------------------------------------------------------------------

@pytest.mark.parametrize("notebook, block, words", [
    ("01_frame_sampling", {"FRAMES_PER_VIDEO": "two"}, "FRAMES_PER_VIDEO must be a whole number (int), got 'two' (str)"),
    ("01_frame_sampling", {"FRAMES_PER_VIDEO": 2.7}, "FRAMES_PER_VIDEO must be a whole number (int), got 2.7 (float)"),
    ("01_frame_sampling", {"WORKERS": True}, "WORKERS must be a whole number (int), got True (bool)"),
    ("01_frame_sampling", {"VIDEOS_DIR": None}, "VIDEOS_DIR must be a string (str) (YAML null"),
    ("03_split", {"VAL_FRACTION": "0.15"}, "VAL_FRACTION must be a number (float)"),
    ("05_resnet", [{"_run": "resnet50", "EPOCHS": 1}, "resnet101"], "entry 1 of its list is 'resnet101' (str), not a mapping"),
    ("02_face_cropping", 5, "the block must be a mapping of parameters"),
])
def test_13_bad_parameter_types_are_refused_before_anything_runs(tmp_path, notebook, block, words):
    profile = tmp_path / "hostile.yaml"
    profile.write_text(yaml.safe_dump({notebook: block}))
    with pytest.raises(pipeline.PipelineError) as err:
        pipeline.run_pipeline(str(profile), out_dir=tmp_path / "build", root=ROOT)
    message = str(err.value)
    assert words in message and str(profile) in message and notebook in message
    assert not (tmp_path / "build").exists()


def test_13_an_int_is_fine_for_a_float():
    assert pipeline.type_problem(1, "float") is None
    assert pipeline.type_problem(1.0, "int") is not None
    assert pipeline.type_problem(None, "str | None") is None and pipeline.type_problem(None, "Optional[int]") is None
    assert pipeline.type_problem(["a", 1], "list[str]") == "item 1 (1) must be a string (str)"
    assert pipeline.type_problem("x", "SomethingElse") is None  # not ours to judge


# --- 14. Empty results say so -------------------------------------------------------------------------------------------

def test_14_an_empty_or_wrong_videos_dir_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "wrong" / "docs").mkdir(parents=True)
    (tmp_path / "wrong" / "docs" / "readme.txt").write_text("no videos here")
    for folder in ("empty", "wrong"):
        with pytest.raises(ValueError, match="holds no videos .* and no metadata.json"):
            frames.sample_frames(tmp_path / folder, tmp_path / "out", workers=1)
    with pytest.raises(ValueError, match="VIDEOS_DIR and OUT_DIR must name folders, got ''"):
        frames.sample_frames("", tmp_path / "out", workers=1)  # Path("") would be the current folder


def test_14_negative_max_videos_is_refused(videos, tmp_path):
    with pytest.raises(ValueError, match="MAX_VIDEOS must be >= 0, got -1"):
        frames.sample_frames(videos, tmp_path / "out", max_videos=-1)


def test_14_one_label_only_and_no_frame_at_all_say_so(tmp_path, caplog):
    write_part(tmp_path / "reals" / "p", {"realaaaaaa.mp4": {"label": "REAL"}, "realbbbbbb.mp4": {"label": "REAL"}})
    frames.sample_frames(tmp_path / "reals", tmp_path / "out1", workers=1)
    # a data problem reaches the helpers logger (shown by its handler), not Python's warnings
    said = [(r.name, r.levelname) for r in caplog.records if "every usable video is REAL" in r.getMessage()]
    assert said == [("helpers.frames", "WARNING")]
    write_part(tmp_path / "broken" / "p", {"badaaaaaaa.mp4": {"label": "REAL"}}, present=set())
    (tmp_path / "broken" / "p" / "badaaaaaaa.mp4").write_bytes(b"not a video")
    with pytest.raises(manifest.EmptyStageError, match="no video gave a frame \\(1 unreadable\\)"):
        frames.sample_frames(tmp_path / "broken", tmp_path / "out2", workers=1)
    assert frames.read_frames_manifest(tmp_path / "out2" / "frames.csv").status.tolist() == ["unreadable"]


def test_14_a_long_thin_frame_says_where_its_face_went(tmp_path, shared_detector):
    wide = np.full((100, 10000, 3), 128, np.uint8)
    wide[:, 5000:5100] = cv2.resize(lfw_canvas(shape=(120, 120), at=(0, 0)), (100, 100))
    frames_csv = frames_csv_for(tmp_path, {"wideaaaaaa": wide})
    with pytest.raises(manifest.EmptyStageError, match="no frame gave a face \\(1 no_face\\)"):
        faces.extract_faces(frames_csv, tmp_path / "faces", face_size=32, detect_max_side=640)
    reason = faces.read_faces_manifest(tmp_path / "faces" / "faces.csv").reason[0]
    assert "shrunk to 640x6 px (DETECT_MAX_SIDE 640)" in reason and "DETECT_MAX_SIDE 0 detects at full size" in reason


def test_14_a_truncated_jpeg_is_unreadable(tmp_path, shared_detector):
    # texture, so that a third of the file ends inside the image data (OpenCV then decodes it without an error)
    texture = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (270, 480, 3), dtype=np.uint8), (5, 5), 2)
    textured = np.where(lfw_canvas() == 128, texture, lfw_canvas()).astype(np.uint8)
    frames_csv = frames_csv_for(tmp_path, {"facea00000": lfw_canvas(), "cutaaaaaaa": textured})
    table = pd.read_csv(frames_csv)
    cut = Path(table.frame_path[table.video_id == "cutaaaaaaa"].iloc[0])
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match="the JPEG is truncated"):
        faces.read_image(cut)
    result = faces.extract_faces(frames_csv, tmp_path / "faces", face_size=32, detect_max_side=0).set_index("video_id")
    assert result.loc["cutaaaaaaa", "status"] == "unreadable" and "truncated" in result.loc["cutaaaaaaa", "reason"]
    assert result.loc["facea00000", "status"] == "ok"
    assert faces.jpeg_is_complete(data) and not faces.jpeg_is_complete(data[:-2])


@pytest.mark.slow  # builds MTCNN (TensorFlow) through the command line
def test_14_predict_exits_non_zero_when_every_input_failed(tmp_path, capsys):
    run_dir = predict.make_untrained_run(tmp_path / "run", "meso4", 32)
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    (tmp_path / "notes.txt").write_text("text")
    code = predict.main([str(tmp_path / "bad.mp4"), str(tmp_path / "notes.txt"), "--run", str(run_dir), "--json",
                         "--threads", "2"])
    captured = capsys.readouterr()
    assert code == 1 and "none of the 2 input(s) could be scored" in captured.err
    assert [r["status"] for r in json.loads(captured.out)] == ["unreadable", "unsupported"]
