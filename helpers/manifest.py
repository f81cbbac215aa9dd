"""Resumable, parallel stages that write a manifest: the shared engine behind frames and faces.

A stage is a list of tasks and a function that turns one task into rows. Each task has a unique "key"
(frames: `part/name.ext`, faces: the fake/original group), a "group" (tasks of one group land in the same
shard) and an "input" fingerprint (what the task reads: the video's path, size and mtime, or the group's
frame files). Finished tasks are appended to a journal, one JSON line each
(`{"key", "settings", "input", "rows"}`, flushed and fsynced at once), so a killed run loses at most the
tasks in flight. The manifest is written from the journals, sorted, so an interrupted-and-resumed run
gives the same file as an uninterrupted one.

Reuse rule: the journal keys every item by its settings.
- Before any item runs, the stage's settings (every value that shapes an item's rows or files) are
  written to `OUT_DIR/settings.json` (see `write_settings` for the schema). A later run into the same
  OUT_DIR with other settings is refused before anything runs, naming the settings that differ
  (`SettingsChanged`); `fresh=True` (FRESH in the notebooks) deletes the stage's journals, manifest,
  settings.json and output folders and starts again.
- A journal line is reused only when its key, its settings hash and its input fingerprint all match this
  run's task. A task whose input changed (another video under the same name, frames sampled again) is
  redone, its old files removed, and the stage says how many (a warning on the `helpers.manifest` logger).

Failures:
- bad input is the work function's to record as rows (status, reason), never to raise;
- a failure to write our own output (`OutputError`: disk full, no permission) stops the stage with a
  message saying so; the item is not journaled, so a resume after freeing space redoes it;
- setting errors are raised by the stage before `run_stage` is called, so they are never journaled.

Concurrency: manifests and settings.json are written to a unique temporary file and renamed into place
(atomic); journal lines are appended with one `write` each. A per-stage lock (`fcntl.flock` on
`OUT_DIR/_journal/<stage>.lock`) serialises the settings check and the manifest write, and each shard
holds an exclusive lock on its own journal while it runs, so a second process on the same shard is
refused (`StageBusy`). Merge rule for shards on one OUT_DIR: every shard, when it finishes, writes the
manifest from all journals under the lock, so the file always parses, and once every shard is done it
equals a single writer's. (flock works on local disks; on NFS it depends on the mount.)
Pool workers die with their parent: `prctl(PR_SET_PDEATHSIG)` on Linux plus a parent-pid check every
second (`die_with_parent`).
"""
from __future__ import annotations

import ctypes
import errno as errno_
import fcntl
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import zlib
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from helpers.runtime import progress

logger = logging.getLogger(__name__)

JOURNAL_DIR = "_journal"
SETTINGS_FILE = "settings.json"
# Integer columns of the study's manifests: written as integers ("37", not "37.0") wherever they appear.
INT_COLUMNS = ("frame_index", "face_index", "n_frames", "width", "height")


class OutputError(OSError):
    """A stage could not write its own output (disk full, no permission): the stage stops, nothing is journaled."""


class SettingsChanged(ValueError):
    """OUT_DIR holds results made with other settings (or by another stage)."""


class StageBusy(RuntimeError):
    """Another process is running the same stage and shard on this OUT_DIR."""


class ManifestError(ValueError):
    """A manifest that cannot be used: unreadable, a missing column, a bad value (the message says which)."""


class EmptyStageError(ValueError):
    """A stage finished with no usable row at all (the manifest says why for each item)."""


# --- small shared helpers -----------------------------------------------------------------------------

def stable_hash(text: str) -> int:
    """A hash of `text` that is the same in every process and on every machine (unlike `hash`)."""
    if not isinstance(text, str):
        raise TypeError(f"stable_hash takes a str, got {type(text).__name__} {text!r}")
    return zlib.crc32(text.encode("utf-8"))


def is_missing(value) -> bool:
    """None, NaN, pd.NA or "": the ways a manifest or metadata says "no value"."""
    if value is None or value is pd.NA:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return isinstance(value, str) and value == ""


def parse_shard(shard: str | None) -> tuple[int, int]:
    """Parse a SHARD parameter "i/n" (0 <= i < n); "" or None means the whole dataset, (0, 1)."""
    if not shard:
        return 0, 1
    try:
        i, n = (int(part) for part in str(shard).split("/"))
    except ValueError:
        raise ValueError(f"SHARD must look like 'i/n' with 0 <= i < n (e.g. '0/4'), got {shard!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"SHARD must look like 'i/n' with 0 <= i < n (e.g. '0/4'), got {shard!r}")
    return i, n


def in_shard(group_key: str, shard: tuple[int, int]) -> bool:
    """Whether a task whose group is `group_key` belongs to `shard`; a group never straddles shards."""
    i, n = shard
    return stable_hash(group_key) % n == i


def check_int(name: str, value, minimum: int | None = None, maximum: int | None = None) -> int:
    """`value` as an int, or a ValueError naming the setting (bools and non-integral numbers refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be a whole number, got {value!r} ({type(value).__name__})")
    value = int(value)
    if minimum is not None and value < minimum or maximum is not None and value > maximum:
        bounds = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise ValueError(f"{name} must be {bounds}, got {value}")
    return value


def check_float(name: str, value, minimum: float | None = None, maximum: float | None = None) -> float:
    """`value` as a float, or a ValueError naming the setting (strings and bools refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not np.isfinite(value) or minimum is not None and value < minimum or maximum is not None and value > maximum:
        bounds = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise ValueError(f"{name} must be a finite number {bounds}, got {value}")
    return value


def notice(message: str) -> None:
    """Tell the user about a data problem: a warning on the calling module's logger (helpers.layouts, ...)."""
    caller = sys._getframe(1).f_globals.get("__name__", __name__)
    logging.getLogger(caller).warning(message)


# --- writing our own output -----------------------------------------------------------------------------

def output_error(err: OSError, path: str | Path) -> OutputError:
    """An OSError met while writing `path`, as an OutputError whose message says what to do."""
    if isinstance(err, OutputError):
        return err
    code = err.errno or errno_.EIO
    if code in (errno_.ENOSPC, errno_.EDQUOT):
        why = (f"cannot write {path}: the disk is full ({os.strerror(code)}). Free space (or point OUT_DIR "
               "elsewhere) and run again: finished items are kept and only the rest is done")
    elif code in (errno_.EACCES, errno_.EPERM, errno_.EROFS):
        why = (f"cannot write {path}: {os.strerror(code)}. Make OUT_DIR writable (or choose another) and run "
               "again: finished items are kept")
    else:
        why = f"cannot write {path}: {err.strerror or err}. Fix the output folder and run again: finished items are kept"
    return OutputError(code, why, str(path))


def write_output(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` (parents made); any OSError becomes an OutputError naming the file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data)
    except OSError as err:
        raise output_error(err, path) from None


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` through a unique temporary file and an atomic rename."""
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise output_error(err, path) from None


# --- locks ------------------------------------------------------------------------------------------------

@contextmanager
def stage_lock(out_dir: str | Path, stage: str):
    """Hold the stage's lock on `out_dir` (blocking): settings checks and manifest writes go one at a time."""
    folder = Path(out_dir) / JOURNAL_DIR
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / f"{stage}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise output_error(err, folder / f"{stage}.lock") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def journal_path(out_dir: Path, stage: str, shard: tuple[int, int]) -> Path:
    i, n = shard
    suffix = "" if n == 1 else f"-shard{i}of{n}"
    return Path(out_dir) / JOURNAL_DIR / f"{stage}{suffix}.jsonl"


def open_journal(path: Path) -> int:
    """Open a shard's journal for appending and lock it; StageBusy when another process holds it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as err:
        raise output_error(err, path) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StageBusy(f"{path} is locked: another process is running this stage and shard on "
                        f"{path.parent.parent} right now. Wait for it to finish, or give this run another "
                        "OUT_DIR or SHARD") from None
    try:
        size = os.fstat(fd).st_size
        # A line cut short by a crash or a full disk: start a new line so the next entry stays readable.
        if size and os.pread(fd, 1, size - 1) != b"\n":
            _write_all(fd, b"\n")
    except OSError as err:
        os.close(fd)
        raise output_error(err, path) from None
    return fd


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _append(fd: int, path: Path, entry: dict) -> None:
    line = (json.dumps(entry, default=_jsonable) + "\n").encode("utf-8")
    try:
        _write_all(fd, line)
        os.fsync(fd)
    except OSError as err:
        raise output_error(err, path) from None


def _jsonable(value):
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if value is pd.NA:
        return None
    raise TypeError(f"cannot store {type(value).__name__} in a manifest")


def read_journals(out_dir: Path, stage: str) -> dict[str, dict]:
    """The journal entry of every finished task in every journal of `stage` (all shards), by task key.

    An entry is {"key", "settings", "input", "rows"}; a line cut short by a crash is ignored (its task runs
    again). Where a key appears twice, the later line wins.
    """
    done: dict[str, dict] = {}
    folder = Path(out_dir) / JOURNAL_DIR
    for path in sorted(folder.glob(f"{stage}*.jsonl")):
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(entry, dict) and isinstance(entry.get("key"), str) and isinstance(entry.get("rows"), list):
                    done[entry["key"]] = entry
    return done


# --- settings ---------------------------------------------------------------------------------------------

def _canonical(settings: dict) -> dict:
    return json.loads(json.dumps(settings, sort_keys=True, default=_jsonable))


def settings_hash(settings: dict) -> str:
    """A short hash of a stage's settings, stored with every journal line."""
    text = json.dumps(_canonical(settings), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def fingerprint(value) -> str:
    """A short hash of a task's input description (any JSON-able value)."""
    text = json.dumps(value, sort_keys=True, default=_jsonable)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def file_fingerprint(path: str | Path | None) -> list:
    """[path, size, mtime_ns] of a file, or [path, None, None] when it cannot be stat'ed."""
    if is_missing(path):
        return [None, None, None]
    try:
        st = os.stat(path)
    except OSError:
        return [str(path), None, None]
    return [str(path), st.st_size, st.st_mtime_ns]


def settings_path(path: str | Path) -> Path:
    """settings.json for a stage's OUT_DIR, its manifest, or the settings file itself."""
    path = Path(path)
    if path.name == SETTINGS_FILE:
        return path
    if path.suffix == ".csv" or (path.exists() and not path.is_dir()):
        return path.parent / SETTINGS_FILE
    return path / SETTINGS_FILE


def read_settings_record(path: str | Path, stage: str, written_by: str) -> dict:
    """The whole settings.json of a stage (see write_settings), checked to be that stage's."""
    file = settings_path(path)
    if not file.is_file():
        raise FileNotFoundError(
            f"{file} does not exist: run {written_by} first (results written before settings were recorded "
            "need a rerun with FRESH = True)")
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{file} cannot be read as JSON ({err}): rerun {written_by} with FRESH = True") from None
    if not isinstance(record, dict) or not isinstance(record.get("settings"), dict):
        raise ValueError(f"{file} has no \"settings\" mapping: rerun {written_by} with FRESH = True")
    if record.get("stage") != stage:
        raise ValueError(f"{file} holds the settings of stage {record.get('stage')!r}, not {stage!r}: "
                         f"is this the folder {written_by} writes?")
    return record


def write_settings(out_dir: Path, stage: str, settings: dict, written_by: str, inputs: dict | None = None) -> dict:
    """Write OUT_DIR/settings.json atomically and return what was written.

    Schema: {"stage": "frames" | "faces", "written_by": "notebook 0N (...)", "settings": {name: value, ...}
    (exactly the stage function's keyword arguments that shape its output), "settings_hash": "<16 hex>",
    "inputs": {...} (where the stage read from, for the record; not compared)}.
    """
    record = {"stage": stage, "written_by": written_by, "settings": _canonical(settings),
              "settings_hash": settings_hash(settings), "inputs": inputs or {}}
    atomic_write_text(Path(out_dir) / SETTINGS_FILE, json.dumps(record, indent=2, default=_jsonable) + "\n")
    return record


def describe_differences(old: dict, new: dict) -> str:
    """"FACE_SIZE 224 there, 64 now; KEEP ..." for the settings that differ."""
    parts = []
    for name in sorted(set(old) | set(new)):
        if old.get(name, "<unset>") != new.get(name, "<unset>"):
            parts.append(f"{name.upper()} {old.get(name, '<unset>')!r} there, {new.get(name, '<unset>')!r} now")
    return "; ".join(parts)


def _clear_stage(out_dir: Path, stage: str, spec: "ManifestSpec", outputs: Sequence[str]) -> None:
    """Delete a stage's journals, manifest, settings.json and output folders (FRESH)."""
    folder = out_dir / JOURNAL_DIR
    for journal in sorted(folder.glob(f"{stage}*.jsonl")):
        fd = os.open(journal, os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StageBusy(f"{journal} is in use by a running shard: FRESH cannot clear {out_dir} until "
                                "it stops") from None
            journal.unlink()
        finally:
            os.close(fd)
    for name in (spec.name, SETTINGS_FILE):
        (out_dir / name).unlink(missing_ok=True)
    for name in outputs:
        target = out_dir / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)


def claim_settings(out_dir: Path, stage: str, settings: dict, spec: "ManifestSpec", *, fresh: bool = False,
                   outputs: Sequence[str] = (), inputs: dict | None = None) -> None:
    """Check this run's settings against OUT_DIR/settings.json (refuse or, with fresh, clear), then record them.

    Call under stage_lock.
    """
    file = out_dir / SETTINGS_FILE
    if fresh:
        _clear_stage(out_dir, stage, spec, outputs)
    elif file.exists():
        try:
            record = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("settings"), dict):
            raise SettingsChanged(f"{file} cannot be read, so the results in {out_dir} cannot be trusted: rerun with "
                                  "FRESH = True (fresh=True) to delete them and start again, or choose another OUT_DIR")
        if record.get("stage") != stage:
            raise SettingsChanged(
                f"{out_dir} holds the results of stage {record.get('stage')!r} ({record.get('written_by', '?')}), "
                f"not {stage!r}: give {spec.written_by} its own OUT_DIR")
        if record["settings"] != _canonical(settings):
            raise SettingsChanged(
                f"{out_dir} holds results made with other settings ({describe_differences(record['settings'], _canonical(settings))}). "
                f"They are not reused: choose another OUT_DIR, or rerun with FRESH = True (fresh=True) to delete "
                f"them and start again")
        return
    elif (out_dir / spec.name).exists() or any(p.stat().st_size for p in (out_dir / JOURNAL_DIR).glob(f"{stage}*.jsonl")):
        logger.warning(f"{out_dir} holds {spec.name} or journals without {SETTINGS_FILE} (written before settings "
                       "were recorded): their items are redone under this run's settings")
    write_settings(out_dir, stage, settings, spec.written_by, inputs)


# --- manifests ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ManifestSpec:
    """What a stage's manifest holds: its file name, columns, sort order, types and allowed statuses."""

    name: str  # "frames.csv"
    written_by: str  # "notebook 01 (frame sampling)": named in errors about the file
    columns: tuple
    sort_by: tuple
    int_columns: tuple = ()
    str_columns: tuple = ()
    statuses: tuple = ()  # exact, lower-case values of the status column
    output_columns: tuple = ()  # columns naming files the stage wrote (removed when an item is redone)


def write_manifest(rows: Iterable[dict], path: Path, columns: Sequence[str], sort_by: Sequence[str],
                   int_columns: Sequence[str] = INT_COLUMNS) -> pd.DataFrame:
    """Write rows as a CSV with `columns` first, sorted so the file does not depend on run order.

    Integer columns are written as integers (empty where a row has none); the file is replaced
    atomically through a unique temporary file, so a reader never sees half of it.
    """
    frame = pd.DataFrame(list(rows))
    for column in columns:
        if column not in frame.columns:
            frame[column] = pd.NA
    extra = [c for c in frame.columns if c not in columns]
    frame = frame[list(columns) + extra]
    for column in int_columns:
        if column in frame and frame[column].notna().any():
            frame[column] = _as_int(frame[column], column, path, in_file=False)
    if len(frame):
        frame = frame.sort_values(list(sort_by), kind="mergesort", na_position="first").reset_index(drop=True)
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            frame.to_csv(fh, index=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)  # never leave a half-written manifest behind
    except OSError as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise output_error(err, path) from None
    return frame


def _where(index, in_file: bool) -> str:
    return f"line {index + 2}" if in_file and isinstance(index, (int, np.integer)) else f"row {index!r}"


def _as_int(series: pd.Series, column: str, source, in_file: bool = True) -> pd.Series:
    """A column as nullable integers; a ManifestError naming the first value that is not a whole number."""
    numbers = pd.to_numeric(series, errors="coerce").astype("float64")
    whole = numbers.notna() & np.isfinite(numbers) & (numbers == np.round(numbers))
    bad = series.notna() & ~whole
    if bad.any():
        first = bad.idxmax()
        value = series[first].item() if hasattr(series[first], "item") else series[first]
        raise ManifestError(f"{source}: column {column!r} must hold whole numbers, but holds {value!r} on "
                            f"{_where(first, in_file)} ({int(bad.sum())} such value(s)); fix or remove those rows")
    return numbers.astype("Int64")


ID_COLUMNS = ("video_id", "original", "part", "reason")


def read_manifest(path: str | Path, written_by: str | ManifestSpec, int_columns: Sequence[str] = (),
                  str_columns: Sequence[str] = (), *, required: Sequence[str] = (),
                  statuses: Sequence[str] = ()) -> pd.DataFrame:
    """Read and check a stage's manifest CSV: ids as strings, counts as nullable integers, empty reasons as "".

    `written_by` names the notebook to run when the file is missing (or is the stage's ManifestSpec,
    which then gives the required columns, the integer columns and the allowed statuses). Raises
    FileNotFoundError when the file is absent and ManifestError when it cannot be parsed, lacks a
    `required` column, holds a non-integer in an integer column or a status outside `statuses`
    (matched exactly: "OK" is not "ok").
    """
    if isinstance(written_by, ManifestSpec):
        spec = written_by
        written_by, required = spec.written_by, required or spec.columns
        int_columns, str_columns = int_columns or spec.int_columns, str_columns or spec.str_columns
        statuses = statuses or spec.statuses
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run {written_by} first")
    if path.is_dir():
        raise ManifestError(f"{path} is a folder, not a manifest: point at the CSV that {written_by} writes")
    try:
        frame = pd.read_csv(path, dtype={c: str for c in (*ID_COLUMNS, *str_columns)}, keep_default_na=True)
    except pd.errors.EmptyDataError:
        raise ManifestError(f"{path} is empty (not even a header): rerun {written_by}") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise ManifestError(f"{path} cannot be parsed as CSV ({str(err).strip()}): rerun {written_by}, or restore "
                            "the file") from None
    return validate_manifest(frame, path, written_by, int_columns, required, statuses, in_file=True)


def validate_manifest(frame: pd.DataFrame, source: str | Path, written_by: str, int_columns: Sequence[str] = (),
                      required: Sequence[str] = (), statuses: Sequence[str] = (), in_file: bool = False) -> pd.DataFrame:
    """Check and normalise a manifest already in memory (see read_manifest); `source` names it in errors."""
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ManifestError(f"{source} lacks column(s) {missing} that {written_by} writes: rerun {written_by}, "
                            "or restore the columns")
    frame = frame.copy()
    for column in int_columns:
        if column in frame:
            frame[column] = _as_int(frame[column], column, source, in_file)
    if "reason" in frame:
        frame["reason"] = frame["reason"].fillna("")
    if statuses and "status" in frame:
        bad = ~frame["status"].isin(statuses)
        if bad.any():
            values = sorted({str(v) for v in frame.loc[bad, "status"]})
            where = _where(bad.idxmax(), in_file)
            raise ManifestError(f"{source}: status value(s) {values} in {int(bad.sum())} row(s) (first on {where}) are not among "
                                f"{list(statuses)}; statuses are matched exactly (lower case): fix those rows or "
                                f"rerun {written_by}")
    return frame


# --- the stage ---------------------------------------------------------------------------------------------

def run_stage(
    tasks: Sequence[dict],
    work: Callable[[dict], list[dict]],
    *,
    out_dir: Path,
    stage: str,
    settings: dict,
    spec: ManifestSpec,
    shard: tuple[int, int] = (0, 1),
    workers: int = 1,
    desc: str | None = None,
    initializer: Callable | None = None,
    initargs: tuple = (),
    fresh: bool = False,
    outputs: Sequence[str] = (),
    inputs: dict | None = None,
) -> pd.DataFrame:
    """Run `work` over this shard's tasks not yet journaled under these settings; write and return the manifest.

    Each task needs a unique "key", a "group" (tasks of one group always land in the same shard) and an
    "input" fingerprint (see the module docstring for the reuse rule). The manifest covers every task of
    `tasks` finished under these settings, whichever shard's journal holds it, so the last shard to finish
    (on a shared disk) writes the whole manifest. `work` must be a module-level function (it is pickled to
    worker processes) that returns the task's rows, records bad input as rows, and raises OutputError when
    it cannot write its own files. With workers > 1 the tasks run in a process pool of spawned workers
    that die with this process; `initializer(*initargs)` prepares each worker. `outputs` are the
    sub-folders of out_dir the stage writes (deleted by fresh=True); `inputs` are recorded in settings.json.
    """
    out_dir = Path(out_dir)
    keys = [t["key"] for t in tasks]
    if len(set(keys)) != len(keys):
        raise ValueError(f"stage {stage}: task keys are not unique (a bug in the stage that built them)")
    digest = settings_hash(settings)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise output_error(err, out_dir) from None
    with stage_lock(out_dir, stage):
        claim_settings(out_dir, stage, settings, spec, fresh=fresh, outputs=outputs, inputs=inputs)
    path = journal_path(out_dir, stage, shard)
    fd = open_journal(path)
    try:
        done = read_journals(out_dir, stage)
        mine = [t for t in tasks if in_shard(t["group"], shard)]
        todo, stale = [], []
        for task in mine:
            entry = done.get(task["key"])
            if entry is None or entry.get("settings") != digest or entry.get("input") != task.get("input"):
                todo.append(task)
                if entry is not None:
                    stale.append(entry)
        if stale:
            logger.warning(f"{stage}: {len(stale)} item(s) journaled in {out_dir} were made from other input or "
                           f"settings (e.g. {stale[0]['key']}): redoing them")
            _remove_outputs(stale, spec.output_columns, out_dir)
        bar = progress(total=len(mine), initial=len(mine) - len(todo), desc=desc or stage, unit="item")
        try:
            def record(task: dict, rows: list[dict]) -> None:
                _append(fd, path, {"key": task["key"], "settings": digest, "input": task.get("input"), "rows": rows})
                bar.update()

            if workers <= 1 or len(todo) <= 1:
                if initializer is not None and todo:
                    initializer(*initargs)
                for task in todo:
                    record(task, work(task))
            else:
                _run_pool(todo, work, record, workers, initializer, initargs)
        finally:
            bar.close()
    finally:
        os.close(fd)
    with stage_lock(out_dir, stage):
        done = read_journals(out_dir, stage)
        rows = []
        for task in tasks:
            entry = done.get(task["key"])
            if entry is not None and entry.get("settings") == digest and entry.get("input") == task.get("input"):
                rows.extend(entry["rows"])
        write_manifest(rows, out_dir / spec.name, spec.columns, spec.sort_by, spec.int_columns or INT_COLUMNS)
    return read_manifest(out_dir / spec.name, spec)


def _remove_outputs(entries: list[dict], columns: Sequence[str], out_dir: Path) -> None:
    """Delete the files an outdated journal entry names (only those inside out_dir: never an input)."""
    root = out_dir.resolve()
    for entry in entries:
        for row in entry["rows"]:
            for column in columns:
                value = row.get(column)
                if is_missing(value):
                    continue
                file = Path(value)
                try:
                    if file.resolve().is_relative_to(root):
                        file.unlink(missing_ok=True)
                except OSError:
                    pass


def _run_pool(todo, work, record, workers, initializer, initargs) -> None:
    # Keep only a few tasks queued per worker so an interruption leaves little half-done work.
    pending = {}
    queue = iter(todo)
    # "spawn", not fork: a process that already runs TensorFlow, torch or OpenCV threads (a notebook
    # kernel, a test session) can hand a forked child a lock that no thread will ever release.
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_init_worker,
                               initargs=(os.getpid(), initializer, initargs), mp_context=context)
    try:
        def submit_next() -> bool:
            task = next(queue, None)
            if task is None:
                return False
            pending[pool.submit(work, task)] = task
            return True

        for _ in range(workers * 2):
            if not submit_next():
                break
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                task = pending.pop(future)
                record(task, future.result())
                submit_next()
    except BrokenProcessPool:
        raise RuntimeError("a worker process died (killed, perhaps by the out-of-memory killer, or its set-up failed: "
                           "see any traceback above): finished items are journaled; run again to resume, with fewer "
                           "WORKERS if memory is short") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _init_worker(parent_pid: int, initializer: Callable | None, initargs: tuple) -> None:
    die_with_parent(parent_pid)
    if initializer is not None:
        initializer(*initargs)


PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, interval: float = 1.0, use_prctl: bool = True) -> None:
    """Make this process exit when its parent `parent_pid` dies, even by SIGKILL.

    On Linux the kernel sends SIGKILL on the parent's death (prctl PR_SET_PDEATHSIG; strictly, when the
    parent thread that started this process ends: run_stage starts its workers from the calling thread,
    which outlives the pool); everywhere a daemon thread checks every `interval` s that the parent is
    still ours (an orphan is re-parented).
    """
    if use_prctl and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no libc prctl: the thread below still works
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid, interval), name="die-with-parent", daemon=True).start()


def _watch_parent(parent_pid: int, interval: float) -> None:
    while True:
        time.sleep(interval)
        if os.getppid() != parent_pid:
            os._exit(1)
