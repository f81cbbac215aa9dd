#!/usr/bin/env bash
# The library and predictor alone: `pip install .` (no extras) into a fresh venv, then `deepfake-study demo` and
# `deepfake-study predict` on a demo video, with no Jupyter, papermill or WeasyPrint installed; prints
# the install size of that venv beside the full one (`make setup`, .venv: every extra).
#
#   bash bench/minimal_install.sh            # about 2 minutes here; WORK=<dir> keeps the venv, KEEP=1 leaves it
#   DRY_RUN=1 bash bench/minimal_install.sh  # print the steps only
#
# The run folder is an untrained MesoNet (helpers.predict.make_untrained_run): what is checked is that the
# predictor's whole path (decode, MTCNN in torch, crop, model, aggregate) runs on a core install, not its score.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
WORK=${WORK:-$(mktemp -d /tmp/minimal_install.XXXXXX)}
V="$WORK/venv/bin"

run() {
    echo "+ $*"
    if [[ -z "${DRY_RUN:-}" ]]; then "$@"; fi
}

run "$PYTHON" -m venv "$WORK/venv"
run "$V/pip" install --quiet --disable-pip-version-check "$ROOT"
run "$V/deepfake-study" demo --out "$WORK/videos" --identities 2 --frames 8 --quiet
run "$V/python" -c "from helpers.predict import make_untrained_run; make_untrained_run('$WORK/run', 'meso4', 32)"
if [[ -n "${DRY_RUN:-}" ]]; then
    echo "+ $V/deepfake-study predict --run $WORK/run --frames 4 --json <the first REAL demo video>"
    exit 0
fi
video=$("$V/python" -c "import pandas as pd; v = pd.read_csv('$WORK/videos/videos.csv'); r = v[v.label == 'REAL'].iloc[0]; print(f'$WORK/videos/{r.part}/{r.video}')")
"$V/deepfake-study" predict --run "$WORK/run" --frames 4 --json "$video" > "$WORK/predict.json"
"$V/python" - "$WORK/predict.json" <<'EOF'
import json
import sys

[result] = json.load(open(sys.argv[1]))
assert result["status"] == "ok" and 0 <= result["prob_fake"] <= 1, result
print("predict on a core install:", {k: result.get(k) for k in ("path", "prob_fake", "status", "faces")})
# the core install holds none of the extras' packages, and predicting imported no TensorFlow
missing = []
for module in ("papermill", "jupyter", "weasyprint", "nbconvert", "pytest", "ruff"):
    try:
        __import__(module)
        missing.append(module)
    except ImportError:
        pass
assert not missing, f"a core install should not hold {missing}"
print("not installed (extras only): papermill, jupyter, weasyprint, nbconvert, pytest, ruff")
EOF
size() { du -sh "$1" 2>/dev/null | cut -f1; }
printf '\n%-28s %s\n' "environment" "size"
printf '%-28s %s\n' "pip install . (core)" "$(size "$WORK/venv")"
if [[ -d "$ROOT/.venv" ]]; then printf '%-28s %s\n' "make setup (.[all])" "$(size "$ROOT/.venv")"; fi
if [[ -z "${KEEP:-}" && "$WORK" == /tmp/minimal_install.* ]]; then rm -rf "$WORK"; fi
