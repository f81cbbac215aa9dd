"""Face extraction: the two MTCNN backends side by side, beside the naive loop, on the same frames.

(a) naive: `mtcnn.MTCNN().detect_faces(frame)` on every full-resolution frame, one at a time;
(b) mtcnn-tf: `helpers.faces.FaceDetector` (the mtcnn package on TensorFlow; detects on a copy
    downscaled to detect_max_side, one batch per video), timed without and with reuse of the
    original's boxes for its fakes (frames paired by index);
(c) mtcnn-torch: `helpers.mtcnn_torch.TorchMTCNNDetector`, the same pipeline in torch (`--device`),
    timed the same way,
each at every `--settings` (detect_max_side:min_face_size:scale_factor; by default the dfdc profile's
640:48:0.6 and FaceDetector's defaults 640:20:0.709).

Everything runs in one process with the same CPU threads, warmed up once, interleaved group by group
so that load from other processes hits all alike; frames/s is wall time, CPU s/frame counts every
thread of the process (steadier on a busy machine).

recall: the share of the naive loop's faces (confidence >= 0.9) that a method finds (at any confidence
MTCNN reports, IoU >= 0.5); "large" counts only faces whose shorter side is >= --large-face-px; "largest"
is the share of frames where it and the naive loop pick the same largest face (what KEEP="largest" crops).
The row "naive, frame shifted 1 px" runs the naive loop on each frame minus its first row and column:
how far MTCNN's own output moves under a change no one would call a different frame.
The backend table compares torch with TensorFlow at each setting: each one's recall of the other's
faces at confidence >= 0.9 (matched at IoU >= 0.9 with confidence >= 0.9), the lowest IoU and the
largest landmark distance of the matches.

    python bench/face_extraction.py [--videos DIR] [--frames-per-video 8] [--device cuda] [--no-naive] [--sweep]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

# Before torch loads OpenMP: spinning idle threads made torch 2-3x slower in CPU time on busy cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# torch before TensorFlow: the other order has crashed torch's extensions in this venv (issue 12).
import helpers.mtcnn_torch  # noqa: E402, F401
from helpers.faces import Face, box_iou, make_detector, read_image  # noqa: E402
from helpers.frames import group_key, sample_frames, usable  # noqa: E402
from helpers.runtime import cpu_count, import_tensorflow  # noqa: E402

DFDC_SAMPLE = ROOT.parent / "shared" / "data" / "dfdc_sample"
DEMO_VIDEOS = ROOT / "data" / "demo" / "videos"
MIN_CONFIDENCE = 0.9
MIN_IOU = 0.5
SAME_FACE_IOU = 0.9  # the parity test's bar for "the same face"
TARGET_RECALL = 0.98
LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
BACKENDS = ("mtcnn-tf", "mtcnn-torch")


def load_frames(videos_dir: Path, work_dir: Path, frames_per_video: int) -> list[dict]:
    """Sample frames (uniform) into `work_dir` and load them as RGB, with their video, label and group."""
    manifest = usable(sample_frames(videos_dir, work_dir, frames_per_video=frames_per_video, strategy="uniform",
                                    workers=1))
    frames = []
    for row in manifest.to_dict("records"):
        original = row["original"] if isinstance(row["original"], str) else None
        frames.append({"video": f"{row['part']}/{row['video_id']}", "label": row["label"],
                       "group": group_key(row["video_id"], row["label"], original),
                       "frame_index": int(row["frame_index"]), "image": read_image(row["frame_path"])})
    return frames


def naive_detect(detector, image: np.ndarray) -> list[Face]:
    """The loop a first attempt writes: mtcnn's defaults on the full frame, JSON output."""
    faces = []
    for f in detector.detect_faces(image):
        landmarks = np.array([f["keypoints"][name] for name in LANDMARKS], dtype=np.float64)
        faces.append(Face(box=np.asarray(f["box"], dtype=np.float64), confidence=float(f["confidence"]),
                          landmarks=landmarks))
    return faces


def ours_detect(detector, frames: list[dict], reuse: bool) -> tuple[list[list[Face]], int]:
    """Faces per frame of one group as extract_faces finds them: one batch per video, boxes reused if asked."""
    reference = {f["frame_index"]: i for i, f in enumerate(frames) if f["label"] == "REAL"} if reuse else {}

    def reference_of(i: int) -> int | None:
        ref = reference.get(frames[i]["frame_index"])
        if frames[i]["label"] == "FAKE" and ref is not None and frames[ref]["image"].shape == frames[i]["image"].shape:
            return ref
        return None

    results: list[list[Face] | None] = [None] * len(frames)
    by_video: dict[str, list[int]] = {}
    for i, f in enumerate(frames):
        if reference_of(i) is None:
            by_video.setdefault(f["video"], []).append(i)
    for indices in by_video.values():
        for i, faces in zip(indices, detector.detect([frames[i]["image"] for i in indices])):
            results[i] = faces
    reused = [i for i in range(len(frames)) if results[i] is None]
    for i in reused:
        results[i] = results[reference_of(i)]
    return results, len(reused)


def compare(reference: list[list[Face]], candidate: list[list[Face]], large_px: float) -> dict:
    """Recall of `candidate` against the confident faces of `reference`, and landmark errors of the matches."""
    wanted = matched = wanted_large = matched_large = frames = same_largest = 0
    distances = []
    for ref_faces, cand_faces in zip(reference, candidate):
        refs = sorted((f for f in ref_faces if f.confidence >= MIN_CONFIDENCE), key=lambda f: -f.area)
        # A match may have any confidence MTCNN reports (the issue's definition): a borderline face at
        # 0.88 here and 0.91 there is found by both; KEEP's threshold is judged by "largest" below.
        ours = sorted(cand_faces, key=lambda f: -f.area)
        confident = [f for f in ours if f.confidence >= MIN_CONFIDENCE]
        if refs:
            frames += 1
            same_largest += int(bool(confident) and box_iou(refs[0].box, confident[0].box) >= MIN_IOU)
        for ref in refs:
            large = int(min(ref.box[2], ref.box[3]) >= large_px)
            wanted += 1
            wanted_large += large
            scores = [box_iou(ref.box, f.box) for f in ours]
            if not scores or max(scores) < MIN_IOU:
                continue
            matched += 1
            matched_large += large
            best = ours.pop(int(np.argmax(scores)))
            distances.append(float(np.linalg.norm(best.landmarks - ref.landmarks, axis=1).mean()))
    ratio = lambda a, b: a / b if b else float("nan")  # noqa: E731
    return {"faces": wanted, "matched": matched, "recall": ratio(matched, wanted),
            "faces_large": wanted_large, "recall_large": ratio(matched_large, wanted_large),
            "largest_agreement": ratio(same_largest, frames),
            "landmark_px": float(np.mean(distances)) if distances else float("nan"),
            "landmark_px_max": float(np.max(distances)) if distances else float("nan")}


def same_faces(reference: list[list[Face]], candidate: list[list[Face]]) -> dict:
    """The confident faces of `reference` that `candidate` also finds confidently (IoU >= SAME_FACE_IOU)."""
    wanted = matched = 0
    ious, landmark_px = [], []
    for ref_faces, cand_faces in zip(reference, candidate):
        ours = [f for f in cand_faces if f.confidence >= MIN_CONFIDENCE]
        for ref in (f for f in ref_faces if f.confidence >= MIN_CONFIDENCE):
            wanted += 1
            scores = [box_iou(ref.box, f.box) for f in ours]
            if not scores or max(scores) < SAME_FACE_IOU:
                continue
            matched += 1
            best = ours.pop(int(np.argmax(scores)))
            ious.append(max(scores))
            landmark_px.append(float(np.linalg.norm(best.landmarks - ref.landmarks, axis=1).max()))
    return {"faces": wanted, "matched": matched, "recall": matched / wanted if wanted else float("nan"),
            "min_iou": min(ious, default=float("nan")), "max_landmark_px": max(landmark_px, default=float("nan"))}


def timed(fn):
    """Run fn(); return its result, wall seconds and process CPU seconds (all threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def run(frames: list[dict], naive, ours: dict, noise_floor: bool) -> tuple[dict, dict]:
    """Time the naive loop (if any) and each of `ours` (with and without reuse) group by group, interleaved."""
    groups: dict[str, list[int]] = {}
    for i, f in enumerate(frames):
        groups.setdefault(f["group"], []).append(i)
    names = (["naive"] if naive is not None else []) + [f"{name}{suffix}" for name in ours
                                                        for suffix in ("", " +reuse")]
    clock = {name: np.zeros(2) for name in names}
    found = {name: [None] * len(frames) for name in names}
    reused = dict.fromkeys(names, 0)
    for indices in groups.values():
        members = [frames[i] for i in indices]
        if naive is not None:
            faces, wall, cpu = timed(lambda: [naive_detect(naive, f["image"]) for f in members])
            clock["naive"] += wall, cpu
            for i, f in zip(indices, faces):
                found["naive"][i] = f
        for name, detector in ours.items():
            for reuse, key in ((False, name), (True, f"{name} +reuse")):
                (faces, n_reused), wall, cpu = timed(lambda: ours_detect(detector, members, reuse))
                clock[key] += wall, cpu
                reused[key] += n_reused
                for i, f in zip(indices, faces):
                    found[key][i] = f
    if noise_floor and naive is not None:
        # One row and column fewer: every pixel keeps its value, the frame moves by one pixel.
        shifted = [naive_detect(naive, np.ascontiguousarray(f["image"][1:, 1:])) for f in frames]
        found["naive, frame shifted 1 px"] = [[Face(box=f.box + [1, 1, 0, 0], confidence=f.confidence,
                                                    landmarks=f.landmarks + 1) for f in faces] for faces in shifted]
    n = len(frames)
    results = {}
    for name in names:
        wall, cpu = clock[name]
        results[name] = {"frames": n, "wall_s": wall, "cpu_s": cpu, "frames_per_s": n / wall,
                         "cpu_s_per_frame": cpu / n, "reused_frames": reused[name]}
        if naive is not None:
            results[name].update(speedup=clock["naive"][0] / wall, speedup_cpu=clock["naive"][1] / cpu)
    return results, found


def print_table(results: dict, accuracy: dict) -> None:
    print(f"{'method':<44}{'frames/s':>9}{'CPU s/frame':>12}{'vs naive':>9}{'(CPU)':>7}{'recall':>8}"
          f"{'large':>7}{'largest':>8}{'landmark px':>12}{'reused':>7}")
    for name in list(results) + [n for n in accuracy if n not in results]:
        r, a = results.get(name, {}), accuracy.get(name)
        timing = f"{r['frames_per_s']:>9.2f}{r['cpu_s_per_frame']:>12.3f}" if "frames_per_s" in r else " " * 21
        timing += f"{r['speedup']:>8.2f}x{r['speedup_cpu']:>6.2f}x" if "speedup" in r else " " * 16
        quality = (f"{a['recall']:>8.1%}{a['recall_large']:>7.1%}{a['largest_agreement']:>8.1%}"
                   f"{a['landmark_px']:>12.2f}" if a else f"{'-':>8}{'-':>7}{'-':>8}{'-':>12}")
        print(f"{name:<44}{timing}{quality}{r.get('reused_frames', ''):>7}")


def print_backends(rows: list[dict]) -> None:
    print(f"\n{'setting (side:min face:step)':<30}{'tf f/s':>8}{'torch f/s':>10}{'torch/tf':>9}{'(CPU)':>7}"
          f"{'torch finds tf':>16}{'tf finds torch':>16}{'min IoU':>9}{'max lm px':>10}")
    for r in rows:
        print(f"{r['setting']:<30}{r['tf_frames_per_s']:>8.2f}{r['torch_frames_per_s']:>10.2f}{r['speedup']:>8.2f}x"
              f"{r['speedup_cpu']:>6.2f}x{r['torch_finds_tf']:>16}{r['tf_finds_torch']:>16}"
              f"{r['min_iou']:>9.4f}{r['max_landmark_px']:>10.3f}")


def setting_name(side: int, min_face: int, scale: float) -> str:
    return f"side={side} min={min_face} sf={scale:g}"


def parse_settings(values: list[str], parser: argparse.ArgumentParser) -> list[tuple[int, int, float]]:
    settings = []
    for value in values:
        try:
            side, min_face, scale = value.split(":")
            settings.append((int(side), int(min_face), float(scale)))
        except ValueError:
            parser.error(f"--settings takes side:min_face:scale_factor, e.g. 640:48:0.6, got {value!r}")
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=Path, default=None,
                        help=f"DFDC-layout folder (default: {DFDC_SAMPLE} if present, else {DEMO_VIDEOS})")
    parser.add_argument("--frames-per-video", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads of TensorFlow and torch (0 = every core)")
    parser.add_argument("--settings", nargs="+", default=["640:48:0.6", "640:20:0.709"],
                        help="detect_max_side:min_face_size:scale_factor to run each backend at (the first is the "
                             "summary's)")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--device", default="cpu", help="torch device of mtcnn-torch (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--sweep", action="store_true",
                        help="also time every combination of --sweep-sides and --sweep-fast")
    parser.add_argument("--sweep-sides", type=int, nargs="+", default=[480, 640, 960])
    parser.add_argument("--sweep-fast", type=str, nargs="+", default=["20:0.709", "48:0.6"],
                        help="min_face_size:scale_factor pairs to try with each side")
    parser.add_argument("--large-face-px", type=float, default=40.0,
                        help="faces at least this many px on their shorter side count as large")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive loop (and its noise floor)")
    parser.add_argument("--no-noise-floor", action="store_true", help="skip the naive loop on 1 px-shifted frames")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "face_extraction.json")
    args = parser.parse_args(argv)

    videos = args.videos or (DFDC_SAMPLE if DFDC_SAMPLE.is_dir() else DEMO_VIDEOS)
    if not videos.is_dir():
        parser.error(f"{videos} does not exist: pass --videos, or run `make demo` to build {DEMO_VIDEOS}")
    settings = parse_settings(args.settings, parser)
    if args.sweep:
        for side in args.sweep_sides:
            for pair in args.sweep_fast:
                min_face, scale = pair.split(":")
                if (side, int(min_face), float(scale)) not in settings:
                    settings.append((side, int(min_face), float(scale)))
    threads = args.threads or cpu_count()
    need_tf = "mtcnn-tf" in args.backends or not args.no_naive
    if need_tf:
        import_tensorflow(threads)  # before mtcnn, so the naive loop and FaceDetector run with these settings
        import mtcnn  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="bench_faces_") as tmp:
        print(f"Sampling {args.frames_per_video} frames per video from {videos} ...")
        frames = load_frames(videos, Path(tmp), args.frames_per_video)
    if not frames:
        parser.error(f"no usable frames under {videos}")
    sizes = sorted({f["image"].shape[:2] for f in frames})
    print(f"{len(frames)} frames from {len({f['video'] for f in frames})} videos, sizes (h, w) {sizes}; "
          f"{threads} CPU threads; mtcnn-torch on {args.device}")

    ours: dict[str, object] = {}
    for side, min_face, scale in settings:
        for backend in BACKENDS:  # built as DETECTOR builds them (notebook 02, helpers.predict)
            if backend in args.backends:
                ours[f"{backend} {setting_name(side, min_face, scale)}"] = make_detector(
                    backend, side, min_face, scale, threads, device=args.device if backend == "mtcnn-torch" else None)
    naive = None if args.no_naive else mtcnn.MTCNN(device="CPU:0")
    if naive is not None:
        naive_detect(naive, frames[0]["image"])  # warm-up: the first calls build TensorFlow's kernels
    for detector in ours.values():
        detector.detect([frames[0]["image"]])
        detector.detect([f["image"] for f in frames if f["video"] == frames[0]["video"]])  # the batch shape too

    results, found = run(frames, naive, ours, noise_floor=not args.no_noise_floor)
    accuracy = {}
    if naive is not None:
        accuracy = {name: compare(found["naive"], faces, args.large_face_px) for name, faces in found.items()
                    if name != "naive"}
        for name, a in accuracy.items():
            results.setdefault(name, {}).update(a)
    print_table(results, accuracy)
    if naive is not None:
        first = accuracy[next(iter(accuracy))]
        print(f"(naive loop: {first['faces']} faces with confidence >= {MIN_CONFIDENCE}, "
              f"{first['faces_large']} of them >= {args.large_face_px:g} px)")

    backends = []
    for side, min_face, scale in settings:
        tf_name, torch_name = (f"{b} {setting_name(side, min_face, scale)}" for b in BACKENDS)
        if tf_name not in results or torch_name not in results:
            continue
        forward, backward = same_faces(found[tf_name], found[torch_name]), same_faces(found[torch_name], found[tf_name])
        tf, pt = results[tf_name], results[torch_name]
        backends.append({
            "setting": f"{side}:{min_face}:{scale:g}", "tf_frames_per_s": tf["frames_per_s"],
            "torch_frames_per_s": pt["frames_per_s"], "speedup": pt["frames_per_s"] / tf["frames_per_s"],
            "speedup_cpu": tf["cpu_s_per_frame"] / pt["cpu_s_per_frame"],
            "speedup_with_reuse": results[tf_name + " +reuse"]["wall_s"] / results[torch_name + " +reuse"]["wall_s"],
            "torch_finds_tf": f"{forward['matched']}/{forward['faces']}",
            "tf_finds_torch": f"{backward['matched']}/{backward['faces']}",
            "recall_torch_vs_tf": forward["recall"], "recall_tf_vs_torch": backward["recall"],
            "min_iou": min(forward["min_iou"], backward["min_iou"]),
            "max_landmark_px": max(forward["max_landmark_px"], backward["max_landmark_px"])})
    if backends:
        print_backends(backends)

    summary = {"videos": str(videos), "frames": len(frames), "frame_sizes": [list(s) for s in sizes],
               "threads": threads, "device": args.device, "settings": [list(s) for s in settings],
               "backends": backends, "methods": results}
    if naive is not None:
        summary["naive_frames_per_s"] = results["naive"]["frames_per_s"]
        good = [(r["frames_per_s"], name) for name, r in results.items()
                if name != "naive" and not name.endswith("+reuse") and r.get("recall", 0) >= TARGET_RECALL]
        summary["fastest_with_recall_98"] = max(good)[1] if good else None
        print()
        for name in ours:
            r = results[name]
            print(f"{name}: {r['frames_per_s']:.2f} vs {summary['naive_frames_per_s']:.2f} frames/s, "
                  f"{r['speedup']:.2f}x the naive loop ({r['speedup_cpu']:.2f}x in CPU time; "
                  f"{results[name + ' +reuse']['speedup']:.2f}x with reuse), recall {r['recall']:.1%}, "
                  f"mean landmark distance {r['landmark_px']:.2f} px")
        if args.sweep:
            print(f"fastest setting with recall >= {TARGET_RECALL:.0%}: {summary['fastest_with_recall_98']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2, default=lambda value: value.item()))  # numpy scalars
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
