"""Frame sampling in a child process, for the kill and two-writer tests: `python -m tests.stage_worker VIDEOS OUT`.

With STAGE_WORKER_SLOW=<seconds> each video waits that long first (and, with STAGE_WORKER_PIDS=<dir>, the
process doing it leaves a file named by its pid there), so a test can kill the run while work is in flight.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from helpers import frames

_sample_video = frames.sample_video


def slow_sample_video(task: dict) -> list[dict]:
    """frames.sample_video after noting this process's pid and waiting STAGE_WORKER_SLOW seconds."""
    folder = os.environ.get("STAGE_WORKER_PIDS")
    if folder:
        Path(folder, str(os.getpid())).touch()
    time.sleep(float(os.environ.get("STAGE_WORKER_SLOW", "0")))
    return _sample_video(task)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("videos")
    parser.add_argument("out")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--shard", default="")
    parser.add_argument("--frames", type=int, default=2)
    args = parser.parse_args(argv)
    if os.environ.get("STAGE_WORKER_SLOW"):
        # sample_frames hands run_stage whatever frames.sample_video is at call time; workers unpickle it by name
        frames.sample_video = slow_sample_video
    frames.sample_frames(args.videos, args.out, frames_per_video=args.frames, workers=args.workers, shard=args.shard,
                         allow_empty=True)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
