"""Seconds per video for `helpers.predict`, split into decoding, detection and classification, per MTCNN backend,
beside a naive pipeline.

(a) predict: `Predictor.predict_path` as the CLI runs it (32 uniformly sampled frames decoded in one pass,
    MTCNN on downscaled key frames and small squares around the face between them, one classifier batch),
    once per `--detectors` backend: mtcnn-torch (helpers.mtcnn_torch) and mtcnn-tf (the mtcnn package);
(b) naive: what a first attempt writes: `cv2.VideoCapture.read()` on every frame, `mtcnn.MTCNN().detect_faces`
    at full resolution on the same 32 frames one at a time, the largest face cropped as predict crops it,
    and the classifier on one face at a time.

All run in one process, after a warm-up video, video by video in turn, so load from other processes hits
them alike; start-up (imports, model load, detector build) is reported apart. The torch Predictor is built
first: helpers.predict loads torchvision before anything loads TensorFlow (the other order segfaults in
this venv). Without --run a throwaway run folder holds an untrained model of --model at --image-size (the
classifier's cost does not depend on its weights). Agreement: the share of frames where the naive pipeline
finds a face (confidence >= 0.9) in which predict scores the same face (IoU >= 0.5), and the frames where
predict finds a face the naive one does not; between the backends, the share of frames where both score
the same face. `--detectors mtcnn-torch --no-naive` never imports TensorFlow.

    python bench/predict_latency.py [--run RUN_DIR | --model resnet50 --image-size 128] [--frames 32]
        [--detectors mtcnn-torch mtcnn-tf] [--no-naive] [VIDEO ...]
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

from helpers.faces import DETECTORS, Face, FaceDetector, select_faces  # noqa: E402
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


def summarise(rows: list[dict], name: str) -> dict:
    """Medians of one backend's per-video figures (videos it scored)."""
    ok = [r[name] for r in rows if r[name]["status"] == "ok"]
    return {"videos": len(ok), "median_seconds": median([r["seconds"] for r in ok]),
            "median_cpu_s": median([r["cpu_s"] for r in ok]),
            "median_timing": {k: median([r["timing"][k] for r in ok]) for k in ("decode", "detect", "classify")}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", nargs="*", type=Path,
                        help=f"videos (default: {DFDC_SAMPLE}/*/*.mp4 if present, else {DEMO_VIDEOS}/*/*.mp4)")
    parser.add_argument("--run", type=Path, help="a trained run folder (default: a throwaway untrained one)")
    parser.add_argument("--model", default="resnet50", help="architecture of the throwaway run (default resnet50)")
    parser.add_argument("--image-size", type=int, default=128, help="input size of the throwaway run (default 128)")
    parser.add_argument("--frames", type=int, default=32, help="frames sampled per video (default 32)")
    parser.add_argument("--detect-every", type=int, default=4, help="Predictor's key-frame spacing (default 4)")
    parser.add_argument("--detectors", nargs="+", choices=DETECTORS, default=list(DETECTORS),
                        help="MTCNN backends to time side by side (default: both)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = every core)")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive pipeline")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "predict_latency.json")
    args = parser.parse_args(argv)

    videos = args.videos or default_videos()
    if not videos:
        parser.error(f"no videos: pass some, or run `make demo` to build {DEMO_VIDEOS}")
    names = sorted(set(args.detectors), key=DETECTORS.index)  # mtcnn-torch first: no TensorFlow before torchvision
    threads = args.threads or cpu_count()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        run_dir = args.run
        if run_dir is None:
            kwargs = {"size": "tiny"} if args.model == "vit" else {}
            run_dir = make_untrained_run(Path(tmp) / f"untrained-{args.model}", args.model, args.image_size, kwargs)
        predictors, startup = {}, {"imports": IMPORT_SECONDS}
        for name in names:
            started = time.perf_counter()
            predictors[name] = Predictor(run_dir, frames=args.frames, detect_every=args.detect_every,
                                         threads=threads, detector=name)
            startup[name] = {"model": predictors[name].startup["model"],
                             "detector": predictors[name].startup["detector"],
                             "predictor": time.perf_counter() - started}
        first = predictors[names[0]]
        naive = None
        if not args.no_naive:  # the mtcnn package itself, TensorFlow configured as FaceDetector does it
            tf = predictors.get("mtcnn-tf")
            naive = tf.detector.detector if tf is not None else FaceDetector(threads=threads).detector
        model = {"run": str(args.run) if args.run else None, "model": first.settings["model"],
                 "image_size": first.image_size, "variant": first.variant,
                 "model_kwargs": first.settings["model_kwargs"], "trained": args.run is not None}
        print(f"{len(videos)} videos, {args.frames} frames each, detect every {args.detect_every}, {threads} threads "
              f"(OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY')}); model {model['model']} at "
              f"{model['image_size']} px ({'trained' if args.run else 'untrained'}); load average {load_before[0]:.1f}")
        print(f"start-up: imports {IMPORT_SECONDS:.1f} s; " + "; ".join(
            f"{n}: model {startup[n]['model']:.1f} s, detector {startup[n]['detector']:.1f} s (build + warm-up)"
            for n in names))

        for name in names:  # first-call costs of every new frame size and batch shape
            warm = predictors[name].predict_path(videos[0])
            print(f"warm-up of {name} on {videos[0].name}: {warm['seconds']:.1f} s ({warm['status']})")
        if naive is not None:
            naive_largest(naive, np.zeros((360, 640, 3), np.uint8), 0.9)

        rows = []
        header = (f"{'video':<12}{'size':>10} {'detector':<12}{'seconds':>8}{'decode':>8}{'detect':>8}{'classify':>9}"
                  f"{'CPU s':>7}{'faces':>7}{'same':>9}")
        print(header)
        for path in videos:
            cap = cv2.VideoCapture(str(path))
            size = f"{int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))}x{int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))}"
            cap.release()
            row = {"video": str(path), "size": size}
            for name in names:
                result, wall, cpu = timed(lambda: predictors[name].predict_path(path))
                row[name] = {**{k: result[k] for k in ("status", "reason", "prob_fake", "n_frames_sampled", "n_faces",
                                                       "seconds", "timing")}, "cpu_s": cpu}
            out = None
            if naive is not None and any(row[n]["status"] == "ok" for n in names):
                out, n_wall, n_cpu = timed(lambda: naive_pipeline(path, first, naive))
                row["naive"] = {"seconds": n_wall, "cpu_s": n_cpu, "timing": out["timing"], "n_faces": out["n_faces"],
                                "prob_fake": out["prob_fake"]}
            frames = out["frames"] if out is not None else first.read_video(path)
            scored = {n: predictors[n].locate_faces(frames) for n in names}  # the faces predict scored, untimed
            for name in names:
                if out is not None:
                    row[name]["agreement"] = agreement(out["faces"], scored[name])
                    row[name]["ratio"] = row["naive"]["seconds"] / row[name]["seconds"]
                r, t = row[name], row[name]["timing"]
                same = (f"{r['agreement']['same_face']:>4}/{r['agreement']['reference_faces']:<3}"
                        if "agreement" in r else "")
                print(f"{path.stem:<12}{size:>10} {name:<12}{r['seconds']:>8.2f}{t['decode']:>8.2f}{t['detect']:>8.2f}"
                      f"{t['classify']:>9.2f}{r['cpu_s']:>7.1f}{r['n_faces']:>4}/{r['n_frames_sampled']:<2}{same:>9}",
                      flush=True)
            if len(names) == 2:
                row["backends_agree"] = agreement(scored[names[1]], scored[names[0]])
            if out is not None:
                t = row["naive"]["timing"]
                print(f"{path.stem:<12}{size:>10} {'naive':<12}{row['naive']['seconds']:>8.1f}{t['decode']:>8.2f}"
                      f"{t['detect']:>8.1f}{t['classify']:>9.2f}{row['naive']['cpu_s']:>7.1f}"
                      f"{out['n_faces']:>4}/{len(out['frames']):<2}", flush=True)
            rows.append(row)

    summary = {name: summarise(rows, name) for name in names}
    compared = [r for r in rows if "naive" in r]
    print()
    for name in names:
        s = summary[name]
        t = s["median_timing"]
        print(f"{name}: median {s['median_seconds']:.2f} s per video (decode {t['decode']:.2f}, detect "
              f"{t['detect']:.2f}, classify {t['classify']:.2f}; CPU {s['median_cpu_s']:.1f} s) over {s['videos']} videos",
              end="")
        mine = [r for r in compared if r[name]["status"] == "ok"]
        if mine:
            same = sum(r[name]["agreement"]["same_face"] for r in mine)
            reference = sum(r[name]["agreement"]["reference_faces"] for r in mine)
            s.update(median_ratio=median([r[name]["ratio"] for r in mine]),
                     same_face_share=same / reference if reference else float("nan"),
                     extra_faces=sum(r[name]["agreement"]["extra_faces"] for r in mine))
            print(f"; {s['median_ratio']:.1f}x the naive pipeline, the naive pipeline's face in "
                  f"{s['same_face_share']:.1%} of its face frames, {s['extra_faces']} frames only predict has a face",
                  end="")
        print()
    if len(names) == 2:
        ratios = [r[names[1]]["seconds"] / r[names[0]]["seconds"] for r in rows
                  if r[names[0]]["status"] == r[names[1]]["status"] == "ok"]
        detect = [r[names[1]]["timing"]["detect"] / r[names[0]]["timing"]["detect"] for r in rows
                  if r[names[0]]["status"] == r[names[1]]["status"] == "ok"]
        same = sum(r["backends_agree"]["same_face"] for r in rows)
        reference = sum(r["backends_agree"]["reference_faces"] for r in rows)
        summary["torch_vs_tf"] = {"median_ratio": median(ratios), "median_detect_ratio": median(detect),
                                  "same_face": same, "tf_face_frames": reference}
        print(f"{names[0]} against {names[1]}: {median(ratios):.2f}x per video, {median(detect):.1f}x in detection "
              f"(medians of per-video ratios); the same face in {same}/{reference} of {names[1]}'s face frames")
    if compared:
        n = [r["naive"] for r in compared]
        t = {k: median([x["timing"][k] for x in n]) for k in ("decode", "detect", "classify")}
        summary["naive"] = {"median_seconds": median([x["seconds"] for x in n]),
                            "median_cpu_s": median([x["cpu_s"] for x in n]), "median_timing": t}
        print(f"naive: median {summary['naive']['median_seconds']:.1f} s per video (decode {t['decode']:.2f}, detect "
              f"{t['detect']:.1f}, classify {t['classify']:.2f}; CPU {summary['naive']['median_cpu_s']:.1f} s)")
    load_after = os.getloadavg()
    print(f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after, on {os.cpu_count()} CPUs")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"videos": [str(v) for v in videos], "frames": args.frames, "detect_every": args.detect_every,
               "detectors": names, "threads": threads, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
               "cpus": os.cpu_count(), "load_average_before": load_before, "load_average_after": load_after,
               "model": model, "startup": startup, "summary": summary, "per_video": rows}
    args.out.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
