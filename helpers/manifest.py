"""Resumable, parallel stages that write a manifest: the shared engine behind frames and faces.

A stage is a list of tasks, each with a unique key, and a function that turns one task into rows.
Finished tasks are appended to a journal (one JSON line per task, flushed at once), so a run that is
killed loses at most the tasks in flight; the next run reads the journal and skips them. The final
manifest is written from the journal, sorted, so an interrupted-and-resumed run gives the same file
as an uninterrupted one.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import zlib
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Callable, Iterable, Sequence

import pandas as pd

from helpers.runtime import progress

JOURNAL_DIR = "_journal"


def stable_hash(text: str) -> int:
    """A hash of `text` that is the same in every process and on every machine (unlike `hash`)."""
    return zlib.crc32(text.encode("utf-8"))


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


def journal_path(out_dir: Path, stage: str, shard: tuple[int, int]) -> Path:
    i, n = shard
    suffix = "" if n == 1 else f"-shard{i}of{n}"
    return Path(out_dir) / JOURNAL_DIR / f"{stage}{suffix}.jsonl"


def read_journals(out_dir: Path, stage: str) -> dict[str, list[dict]]:
    """Rows of every finished task in every journal of `stage` (all shards), by task key.

    A line cut short by a crash is ignored: its task simply runs again.
    """
    done: dict[str, list[dict]] = {}
    folder = Path(out_dir) / JOURNAL_DIR
    for path in sorted(folder.glob(f"{stage}*.jsonl")):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                done[entry["key"]] = entry["rows"]
    return done


def _append(fh, key: str, rows: list[dict]) -> None:
    fh.write(json.dumps({"key": key, "rows": rows}, default=_jsonable) + "\n")
    fh.flush()
    os.fsync(fh.fileno())


def _jsonable(value):
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a manifest")


def run_stage(
    tasks: Sequence[dict],
    work: Callable[[dict], list[dict]],
    *,
    out_dir: Path,
    stage: str,
    shard: tuple[int, int] = (0, 1),
    workers: int = 1,
    desc: str | None = None,
    initializer: Callable | None = None,
    initargs: tuple = (),
) -> list[dict]:
    """Run `work` over this shard's tasks not yet in a journal; return the rows of all finished tasks.

    Each task needs a unique "key" and a "group" (tasks of one group always land in the same shard).
    The rows returned cover every finished task of `tasks`, whichever shard's journal holds it, so
    the last shard to finish (on a shared disk) writes the whole manifest.
    `work` must be a module-level function (it is pickled to worker processes) and must return the
    task's rows, recording failures as rows rather than raising. With workers > 1 the tasks run in a
    process pool; `initializer(*initargs)` prepares each worker.
    """
    out_dir = Path(out_dir)
    done = read_journals(out_dir, stage)
    mine = [t for t in tasks if in_shard(t["group"], shard)]
    todo = [t for t in mine if t["key"] not in done]
    path = journal_path(out_dir, stage, shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    bar = progress(total=len(mine), initial=len(mine) - len(todo), desc=desc or stage, unit="item")
    with open(path, "a", encoding="utf-8") as fh:
        if workers <= 1 or len(todo) <= 1:
            if initializer is not None and todo:
                initializer(*initargs)
            for task in todo:
                rows = work(task)
                _append(fh, task["key"], rows)
                done[task["key"]] = rows
                bar.update()
        else:
            _run_pool(todo, work, fh, done, bar, workers, initializer, initargs)
    bar.close()
    keys = {t["key"] for t in tasks}
    return [row for key, rows in done.items() if key in keys for row in rows]


def _run_pool(todo, work, fh, done, bar, workers, initializer, initargs) -> None:
    # Keep only a few tasks queued per worker so an interruption leaves little half-done work.
    pending = {}
    queue = iter(todo)
    # "spawn", not fork: a process that already runs TensorFlow, torch or OpenCV threads (a notebook
    # kernel, a test session) can hand a forked child a lock that no thread will ever release.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, initializer=initializer, initargs=initargs,
                             mp_context=context) as pool:
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
                rows = future.result()
                _append(fh, task["key"], rows)
                done[task["key"]] = rows
                bar.update()
                submit_next()


def write_manifest(rows: Iterable[dict], path: Path, columns: Sequence[str], sort_by: Sequence[str]) -> pd.DataFrame:
    """Write rows as a CSV with `columns` first, sorted so the file does not depend on run order."""
    frame = pd.DataFrame(list(rows))
    for column in columns:
        if column not in frame.columns:
            frame[column] = pd.NA
    extra = [c for c in frame.columns if c not in columns]
    frame = frame[list(columns) + extra]
    if len(frame):
        frame = frame.sort_values(list(sort_by), kind="mergesort", na_position="first").reset_index(drop=True)
    tmp = Path(path).with_suffix(".csv.tmp")
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)  # never leave a half-written manifest behind
    return frame


ID_COLUMNS = ("video_id", "original", "part", "reason")


def read_manifest(path: str | Path, written_by: str, int_columns: Sequence[str] = (),
                  str_columns: Sequence[str] = ()) -> pd.DataFrame:
    """Read a stage's manifest CSV: ids as strings, counts as nullable integers, empty reasons as "".

    `written_by` names the notebook to run when the file is missing.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run {written_by} first")
    frame = pd.read_csv(path, dtype={c: str for c in (*ID_COLUMNS, *str_columns)})
    for column in int_columns:
        if column in frame:
            frame[column] = frame[column].astype("Int64")
    if "reason" in frame:
        frame["reason"] = frame["reason"].fillna("")
    return frame
