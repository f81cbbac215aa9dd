"""The dfdc profile itself, shrunk: params/dfdc.yaml run from notebook 01 to 07 and the report on a few real clips.

Nothing is copied from the profile: the runner gets `--profile dfdc` and `--set` overrides only for
where files go (every data/, figures/ and report/ path moved under --work), which videos to read, and
size and device (one epoch, small images, few frames). So what runs is the file a researcher runs.

    python bench/shrunk_dfdc.py --videos ../shared/data/dfdc_sample --work /tmp/shrunk   # CPU, about 4 min
    python bench/shrunk_dfdc.py ... --accelerator gpu --precision bf16-mixed           # on a GPU server

Writes <work>/summary.json (the seconds of each notebook, the headline sentence) and the report under
<work>/report/. The realdata test (tests/test_shrunk_dfdc.py) and bench/gpu_check.sh call it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from helpers import pipeline  # noqa: E402
from helpers.report import render_report  # noqa: E402

PROFILE = "dfdc"
# Size and device only: what a 6-clip CPU run can afford. ACCELERATOR and PRECISION come from the command line.
SHRINK = {
    "01_frame_sampling": {"FRAMES_PER_VIDEO": 2, "WORKERS": 1},
    "02_face_cropping": {"FACE_SIZE": 64, "WORKERS": 1},
    "03_split": {"TEST_FRAMES_PER_VIDEO": 3, "WORKERS": 1, "VAL_FRACTION": 0.25, "TEST_FRACTION": 0.25},
    "04_vit": {"IMAGE_SIZE": 32, "VIT_SIZE": "tiny", "PATCH_SIZE": 8, "DEPTH": 2, "EPOCHS": 1, "WARMUP_EPOCHS": 0.0,
               "BATCH_SIZE": 8, "NUM_WORKERS": 0, "N_BOOT": 50},
    "05_resnet": {"IMAGE_SIZE": 32, "EPOCHS": 1, "BATCH_SIZE": 8, "NUM_WORKERS": 0, "PRETRAINED": False, "N_BOOT": 50},
    "06_crop_study": {"IMAGE_SIZE": 32, "EPOCHS": 1, "BATCH_SIZE": 8, "NUM_WORKERS": 0, "PRETRAINED": False,
                      "N_SEEDS": 1, "N_BOOT": 50, "VARIANTS": ["full", "eyes_lower"]},
    "07_results": {"N_EXPLAIN": 2, "N_BAND_FACES": 4},
    "08_cross_dataset": {"FRAMES_PER_VIDEO": 2, "N_BOOT": 50, "WORKERS": 1},
}
DEVICE_KEYS = ("ACCELERATOR", "PRECISION")


def relocate(value, work: Path):
    """A repository-relative data/, figures/ or report/ path moved under `work` (lists item by item)."""
    if isinstance(value, str) and value.split("/")[0] in ("data", "figures", "report"):
        return str(work / value)
    if isinstance(value, list):
        return [relocate(v, work) for v in value]
    return value


def overrides(work: Path, videos: Path, accelerator: str, precision: str, mesonet: Path | None) -> list[str]:
    """The --set list: paths under `work`, the videos, SHRINK, and the device, for every notebook of the profile."""
    blocks = pipeline.load_profile(PROFILE, ROOT)
    declared = {p.stem: pipeline.notebook_parameters(p) for p in pipeline.list_notebooks(ROOT)}
    out = []
    for notebook, block in blocks.items():
        entries = block if isinstance(block, list) else [block]
        for i, entry in enumerate(entries):
            target = f"{notebook}[{entry.get(pipeline.RUN_KEY, i)}]" if isinstance(block, list) else notebook
            values = {k: relocate(v, work) for k, v in entry.items() if k != pipeline.RUN_KEY and relocate(v, work) != v}
            values.update(SHRINK.get(notebook, {}))
            if notebook == "01_frame_sampling":
                values["VIDEOS_DIR"] = str(videos)
            if notebook == "06_crop_study":
                values["MESONET_WEIGHTS_DIR"] = str(mesonet) if mesonet else ""
            for key, value in (("ACCELERATOR", accelerator), ("PRECISION", precision)):
                if key in declared[notebook]:
                    values[key] = value
            out += [f"{target}.{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
                    for k, v in values.items()]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=Path, default=ROOT.parent / "shared" / "data" / "dfdc_sample",
                        help="a DFDC-layout folder of a few clips")
    parser.add_argument("--work", type=Path, required=True, help="everything the run writes goes under this folder")
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--precision", default="32-true", help="Lightning precision (bf16-mixed on a GPU)")
    parser.add_argument("--mesonet", type=Path, default=ROOT.parent / "shared" / "data" / "models" / "mesonet",
                        help="the published MesoNet weights folder (skipped when absent)")
    parser.add_argument("--print", action="store_true", help="print the --set overrides and exit")
    args = parser.parse_args(argv)
    if not args.videos.is_dir():
        print(f"shrunk_dfdc: --videos {args.videos} does not exist: point it at a DFDC-layout folder of clips",
              file=sys.stderr)
        return 2
    work = args.work.resolve()
    mesonet = args.mesonet if args.mesonet.is_dir() else None
    sets = overrides(work, args.videos.resolve(), args.accelerator, args.precision, mesonet)
    if args.print:
        print("\n".join(sets))
        return 0
    started = time.time()
    pipeline.run_pipeline(PROFILE, out_dir=work / "build", root=ROOT, overrides=sets)
    paths = render_report(PROFILE, out_dir=work / "report", root=ROOT, build_dir=work / "build")
    log = json.loads((work / "build" / "pipeline.json").read_text())
    headline = json.loads((work / "report" / "dfdc" / "tables" / "headline.json").read_text()) \
        if (work / "report" / "dfdc" / "tables" / "headline.json").exists() else {}
    summary = {"seconds": {k: v["seconds"] for k, v in log.items()}, "total_seconds": round(time.time() - started, 1),
               "accelerator": args.accelerator, "precision": args.precision, "report": {k: str(v) for k, v in paths.items()},
               "text": headline.get("text", "")}
    (work / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
