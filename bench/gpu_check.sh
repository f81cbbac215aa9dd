#!/usr/bin/env bash
# The prepared GPU check: one short script (under 8 minutes on one GPU) that proves the GPU-server path.
#
#   bash bench/gpu_check.sh                 # everything under $OUT (default bench/results/gpu_check)
#   DRY_RUN=1 bash bench/gpu_check.sh       # print the steps without running them (the tests do this)
#
# 1. the GPU, torch and CUDA versions;
# 2. ResNet50 at 224 px under bf16: the real cached pipeline against synthetic GPU-resident data
#    (images/s and the ratio; target >= 80%), bench/training_throughput.py --gpu;
# 3. torch MTCNN frames/s on the GPU and on the CPU, beside TensorFlow MTCNN on the CPU, on the DFDC
#    sample clips (bench/face_extraction.py);
# 4. the dfdc profile itself, shrunk to the sample clips, with ACCELERATOR gpu and PRECISION bf16-mixed
#    (bench/shrunk_dfdc.py), notebooks 01-07 and the report;
# then one summary table (summary.md). A failing step is reported and the next one still runs.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-bench/results/gpu_check}
VIDEOS=${VIDEOS:-../shared/data/dfdc_sample}
export OUT
mkdir -p "$OUT"
: > "$OUT/steps.tsv"

step() {  # step NAME COMMAND...: run it, log it, record status and seconds
  local name=$1; shift
  if [ -n "${DRY_RUN:-}" ]; then echo "[$name] $*"; return 0; fi
  local start=$SECONDS status=ok
  echo "== $name: $*"
  "$@" > "$OUT/$name.log" 2>&1 || status="failed (exit $?, see $OUT/$name.log)"
  printf '%s\t%s\t%s\n' "$name" "$status" "$((SECONDS - start))" >> "$OUT/steps.tsv"
  tail -n 15 "$OUT/$name.log"
}

step versions "$PY" -c "import torch, platform; print('python', platform.python_version()); print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version()); print('gpu', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'NONE', 'bf16', torch.cuda.is_available() and torch.cuda.is_bf16_supported())"
step nvidia_smi nvidia-smi
step resnet50_bf16 "$PY" bench/training_throughput.py --gpu --num-workers 8 --steps 30 --faces 2048 \
    --out "$OUT/training_throughput.json"
step mtcnn_gpu "$PY" bench/face_extraction.py --videos "$VIDEOS" --frames-per-video 8 --backends mtcnn-torch \
    --device cuda --no-naive --out "$OUT/face_extraction_gpu.json"
step mtcnn_cpu "$PY" bench/face_extraction.py --videos "$VIDEOS" --frames-per-video 8 --no-naive \
    --out "$OUT/face_extraction_cpu.json"
step shrunk_dfdc "$PY" bench/shrunk_dfdc.py --videos "$VIDEOS" --work "$OUT/shrunk_dfdc" --accelerator gpu \
    --precision bf16-mixed

[ -n "${DRY_RUN:-}" ] && exit 0
"$PY" - <<'PY' | tee "$OUT/summary.md"
import json, os
from pathlib import Path

out = Path(os.environ["OUT"])
def load(name):
    try:
        return json.loads((out / name).read_text())
    except (OSError, ValueError):
        return {}
rows = [("step", "status", "seconds", "result")]
results = {}
train = load("training_throughput.json").get("gpu") or {}
if train:
    shares = train.get("share_of_compute_bound", {})
    results["resnet50_bf16"] = ", ".join(f"{k}: {v:.0%} of the synthetic bound" for k, v in shares.items())
def fps(name):
    methods = load(name).get("methods", {})
    return ", ".join(f"{k}: {v['frames_per_s']:.1f} frames/s" for k, v in methods.items() if "+reuse" not in k)
results["mtcnn_gpu"], results["mtcnn_cpu"] = fps("face_extraction_gpu.json"), fps("face_extraction_cpu.json")
shrunk = load("shrunk_dfdc/summary.json")
if shrunk:
    results["shrunk_dfdc"] = shrunk.get("text", "")
for line in (out / "steps.tsv").read_text().splitlines():
    name, status, seconds = line.split("\t")
    rows.append((name, status, seconds, results.get(name, "")))
print("| " + " | ".join(rows[0]) + " |\n|" + "---|" * 4)
for row in rows[1:]:
    print("| " + " | ".join(str(c).replace("|", "/") for c in row) + " |")
PY
