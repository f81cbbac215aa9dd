"""Seconds per video for `helpers.predict`, split into decoding, detection and classification, beside a naive pipeline.

(a) predict: `Predictor.predict_path` as the CLI runs it (32 uniformly sampled frames decoded in one pass,
    MTCNN on downscaled key frames and small squares around the face between them, one classifier batch);
(b) naive: what a first attempt writes: `cv2.VideoCapture.read()` on every frame, `mtcnn.MTCNN().detect_faces`
    at full resolution on the same 32 frames one at a time, the largest face cropped as predict crops it,
    and the classifier on one face at a time.

Both run in one process, after a warm-up video, video by video in turn, so load from other processes hits
them alike; start-up (imports, model load, detector build) is reported apart. Without --run a throwaway run
folder holds an untrained model of --model at --image-size (the classifier's cost does not depend on its
weights). Agreement: the share of frames where the naive pipeline finds a face (confidence >= 0.9) in which
predict scores the same face (IoU >= 0.5), and the frames where predict finds a face the naive one does not.

    python bench/predict_latency.py [--run RUN_DIR | --model resnet50 --image-size 128] [--frames 32] [VIDEO ...]
"""
from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from helpers.faces import Face, select_faces  # noqa: E402
from helpers.frames import frame_indices  # noqa: E402
from helpers.predict import Predictor, box_iou, make_untrained_run  # noqa: E402
from helpers.runtime import cpu_count  # noqa: E402

IMPORT_SECONDS = time.perf_counter() - STARTED
DFDC_SAMPLE = ROOT.parent / "shared" / "data" / "dfdc_sample"
DEMO_VIDEOS = ROOT / "data" / "demo" / "videos"
MIN_IOU = 0.5


def default_videos() -> list[Path]:
    """The DFDC sample's videos, else the demo's."""
    for folder, pattern in ((DFDC_SAMPLE, "*/*.mp4"), (DEMO_VIDEOS, "*/*.mp4")):
        videos = sorted(folder.glob(pattern))
        if videos:
            return videos
    return []


def timed(fn):
    """fn()'s result, wall seconds and process CPU seconds (all threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def naive_largest(detector, image: np.ndarray, min_confidence: float) -> Face | None:
    """mtcnn's defaults on the full frame, JSON output, the largest confident face."""
    faces = [Face(box=np.asarray(f["box"], dtype=np.float64), confidence=float(f["confidence"]),
                  landmarks=np.array([f["keypoints"][k] for k in ("left_eye", "right_eye", "nose", "mouth_left",
                                                                   "mouth_right")], dtype=np.float64))
             for f in detector.detect_faces(image)]
    selected = select_faces(faces, "largest", min_confidence)
    return selected[0] if selected else None


def naive_pipeline(path: Path, predictor: Predictor, detector) -> dict:
    """Decode every frame, detect at full resolution one frame at a time, classify one face at a time."""
    timing, clock = {}, time.perf_counter()
    cap = cv2.VideoCapture(str(path))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    wanted = set(frame_indices(n, predictor.frames, "uniform", 0, str(path)))
    frames, index = [], 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if index in wanted:
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        index += 1
    cap.release()
    timing["decode"] = time.perf_counter() - clock
    clock = time.perf_counter()
    faces = [naive_largest(detector, frame, predictor.min_confidence) for frame in frames]
    timing["detect"] = time.perf_counter() - clock
    clock = time.perf_counter()
    probs = [float(predictor.classify([frame], [face])[0]) for frame, face in zip(frames, faces) if face is not None]
    timing["classify"] = time.perf_counter() - clock
    return {"frames": frames, "faces": faces, "timing": timing, "n_faces": len(probs),
            "prob_fake": float(np.mean(probs)) if probs else None}


def agreement(reference: list[Face | None], candidate: list[Face | None]) -> dict:
    """How often `candidate` scores the face `reference` found, and faces only `candidate` found."""
    wanted = [(r, c) for r, c in zip(reference, candidate) if r is not None]
    same = sum(c is not None and box_iou(r.box, c.box) >= MIN_IOU for r, c in wanted)
    extra = sum(r is None and c is not None for r, c in zip(reference, candidate))
    return {"reference_faces": len(wanted), "same_face": same, "extra_faces": extra}


def median(values) -> float:
    return float(np.median(values)) if len(values) else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", nargs="*", type=Path,
                        help=f"videos (default: {DFDC_SAMPLE}/*/*.mp4 if present, else {DEMO_VIDEOS}/*/*.mp4)")
    parser.add_argument("--run", type=Path, help="a trained run folder (default: a throwaway untrained one)")
    parser.add_argument("--model", default="resnet50", help="architecture of the throwaway run (default resnet50)")
    parser.add_argument("--image-size", type=int, default=128, help="input size of the throwaway run (default 128)")
    parser.add_argument("--frames", type=int, default=32, help="frames sampled per video (default 32)")
    parser.add_argument("--detect-every", type=int, default=4, help="Predictor's key-frame spacing (default 4)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = every core)")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive pipeline")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "predict_latency.json")
    args = parser.parse_args(argv)

    videos = args.videos or default_videos()
    if not videos:
        parser.error(f"no videos: pass some, or run `make demo` to build {DEMO_VIDEOS}")
    threads = args.threads or cpu_count()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        run_dir = args.run
        if run_dir is None:
            kwargs = {"size": "tiny"} if args.model == "vit" else {}
            run_dir = make_untrained_run(Path(tmp) / f"untrained-{args.model}", args.model, args.image_size, kwargs)
        started = time.perf_counter()
        predictor = Predictor(run_dir, frames=args.frames, detect_every=args.detect_every, threads=threads)
        startup = {"imports": IMPORT_SECONDS, "model": predictor.startup["model"],
                   "detector": predictor.startup["detector"], "predictor": time.perf_counter() - started}
        startup["total"] = startup["imports"] + startup["predictor"]
        naive = None
        if not args.no_naive:
            import mtcnn  # noqa: PLC0415 - TensorFlow was configured by the Predictor's FaceDetector

            naive = mtcnn.MTCNN(device=predictor.detector.detector.device)
        model = {"run": str(args.run) if args.run else None, "model": predictor.settings["model"],
                 "image_size": predictor.image_size, "variant": predictor.variant,
                 "model_kwargs": predictor.settings["model_kwargs"], "trained": args.run is not None}
        print(f"{len(videos)} videos, {args.frames} frames each, {threads} threads (OMP_WAIT_POLICY "
              f"{os.environ.get('OMP_WAIT_POLICY')}); model {model['model']} at "
              f"{model['image_size']} px ({'trained' if args.run else 'untrained'}); load average {load_before[0]:.1f}")
        print(f"start-up {startup['total']:.1f} s: imports {startup['imports']:.1f} s, model {startup['model']:.1f} s, "
              f"detector {startup['detector']:.1f} s (TensorFlow, MTCNN, warm-up)")

        warm = predictor.predict_path(videos[0])  # first-call costs of every new frame size and batch shape
        if naive is not None:
            naive_largest(naive, np.zeros((360, 640, 3), np.uint8), 0.9)
        print(f"warm-up on {videos[0].name}: {warm['seconds']:.1f} s ({warm['status']})")

        rows = []
        header = (f"{'video':<16}{'size':>10}{'seconds':>9}{'decode':>8}{'detect':>8}{'classify':>9}{'CPU s':>7}"
                  f"{'faces':>7}{'naive s':>9}{'n.decode':>9}{'n.detect':>9}{'n.classify':>11}{'ratio':>7}{'same':>8}")
        print(header)
        for path in videos:
            result, wall, cpu = timed(lambda: predictor.predict_path(path))
            cap = cv2.VideoCapture(str(path))
            size = f"{int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))}x{int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))}"
            cap.release()
            row = {"video": str(path), "size": size, "predict": {**{k: result[k] for k in (
                "status", "reason", "prob_fake", "n_frames_sampled", "n_faces", "seconds", "timing")}, "cpu_s": cpu}}
            line = (f"{path.stem:<16}{size:>10}{result['seconds']:>9.2f}{result['timing']['decode']:>8.2f}"
                    f"{result['timing']['detect']:>8.2f}{result['timing']['classify']:>9.2f}{cpu:>7.1f}"
                    f"{result['n_faces']:>4}/{result['n_frames_sampled']:<2}")
            if naive is not None and result["status"] == "ok":
                out, n_wall, n_cpu = timed(lambda: naive_pipeline(path, predictor, naive))
                ours = predictor.locate_faces(out["frames"])  # the faces predict scored (deterministic), untimed
                row["naive"] = {"seconds": n_wall, "cpu_s": n_cpu, "timing": out["timing"], "n_faces": out["n_faces"],
                                "prob_fake": out["prob_fake"]}
                row["agreement"] = agreement(out["faces"], ours)
                row["ratio"] = n_wall / result["seconds"]
                a, t = row["agreement"], out["timing"]
                line += (f"{n_wall:>9.1f}{t['decode']:>9.2f}{t['detect']:>9.1f}{t['classify']:>11.2f}"
                         f"{row['ratio']:>6.1f}x{a['same_face']:>4}/{a['reference_faces']:<3}")
            print(line, flush=True)
            rows.append(row)

    ok = [r for r in rows if r["predict"]["status"] == "ok"]
    summary = {
        "median_seconds": median([r["predict"]["seconds"] for r in ok]),
        "median_cpu_s": median([r["predict"]["cpu_s"] for r in ok]),
        "median_timing": {k: median([r["predict"]["timing"][k] for r in ok]) for k in ("decode", "detect", "classify")},
    }
    compared = [r for r in ok if "naive" in r]
    if compared:
        same = sum(r["agreement"]["same_face"] for r in compared)
        reference = sum(r["agreement"]["reference_faces"] for r in compared)
        summary.update({
            "naive_median_seconds": median([r["naive"]["seconds"] for r in compared]),
            "naive_median_cpu_s": median([r["naive"]["cpu_s"] for r in compared]),
            "naive_median_timing": {k: median([r["naive"]["timing"][k] for r in compared])
                                    for k in ("decode", "detect", "classify")},
            "median_ratio": median([r["ratio"] for r in compared]),
            "same_face_share": same / reference if reference else float("nan"),
            "extra_faces": sum(r["agreement"]["extra_faces"] for r in compared),
        })
    load_after = os.getloadavg()
    t = summary["median_timing"]
    print(f"\npredict: median {summary['median_seconds']:.2f} s per video (decode {t['decode']:.2f}, detect "
          f"{t['detect']:.2f}, classify {t['classify']:.2f}; CPU {summary['median_cpu_s']:.1f} s) "
          f"over {len(ok)} videos")
    if compared:
        t = summary["naive_median_timing"]
        print(f"naive:   median {summary['naive_median_seconds']:.1f} s per video (decode {t['decode']:.2f}, detect "
              f"{t['detect']:.1f}, classify {t['classify']:.2f}; CPU {summary['naive_median_cpu_s']:.1f} s); "
              f"predict is {summary['median_ratio']:.1f}x faster (median of per-video ratios)")
        print(f"same face as the naive pipeline in {summary['same_face_share']:.1%} of its face frames; "
              f"{summary['extra_faces']} frames where only predict found a face")
    print(f"start-up (once per process): {startup['total']:.1f} s; load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after, on {os.cpu_count()} CPUs")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"videos": [str(v) for v in videos], "frames": args.frames, "detect_every": args.detect_every,
               "threads": threads, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "cpus": os.cpu_count(),
               "load_average_before": load_before,
               "load_average_after": load_after, "model": model, "startup": startup, **summary, "per_video": rows}
    args.out.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
