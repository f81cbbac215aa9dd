"""The dfdc profile itself (params/dfdc.yaml), shrunk by --set overrides, from notebook 01 to 07 and the report."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.realdata, pytest.mark.slow, pytest.mark.notebook]


def test_the_dfdc_profile_runs_end_to_end_on_the_real_sample_clips(shared_data, tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    import shrunk_dfdc

    assert shrunk_dfdc.main(["--videos", str(shared_data / "dfdc_sample"), "--work", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    notebooks = {name.split("-")[0] for name in summary["seconds"]}
    assert notebooks == {"01_frame_sampling", "02_face_cropping", "03_split", "04_vit", "05_resnet", "06_crop_study",
                         "07_results", "08_cross_dataset"}
    assert {"05_resnet-resnet50", "05_resnet-resnet101"} <= set(summary["seconds"])  # the profile's list block
    assert (tmp_path / "report" / "report.html").stat().st_size > 10_000
    assert (tmp_path / "report" / "report.pdf").stat().st_size > 10_000
    # the real clips went through: frames of every present video, faces, a split, the runs
    frames = (tmp_path / "data" / "interim" / "dfdc" / "01_frames" / "frames.csv").read_text()
    for video in ("brtujopkby", "widuwuoiur", "yhffcuhhjy", "abofeumbvv", "abqwwspghj", "lynaeydofd"):
        assert video in frames
    assert "awnfpubqmo" in frames  # listed in metadata.json but absent: recorded, not dropped
    runs = sorted(p.parent.name for p in (tmp_path / "data" / "processed" / "dfdc").rglob("metrics.json")
                  if "_tuning" not in p.parts)
    assert "vit-full-s0" in runs and "resnet101-full-s0" in runs and "crop-meso4-full-s0" in runs
    assert summary["text"]  # the headline was written
    # the profile under test is the file users run: only paths, videos, size and device were overridden
    profile = (ROOT / "params" / "dfdc.yaml").read_text()
    assert "VIDEOS_DIR: data/raw/dfdc" in profile
