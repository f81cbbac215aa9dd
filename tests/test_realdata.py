"""Real inputs from ../shared/data (skipped where the folder is absent)."""
from __future__ import annotations

import cv2
import pytest

from helpers import frames

pytestmark = pytest.mark.realdata


@pytest.mark.parametrize("strategy", ["random", "uniform"])
def test_dfdc_sample_every_present_video_gets_frames(shared_data, tmp_path, strategy):
    videos_dir = shared_data / "dfdc_sample"
    present = {p.stem for p in videos_dir.glob("*/*.mp4")}
    result = frames.sample_frames(videos_dir, tmp_path / "out", frames_per_video=2, strategy=strategy, workers=2)
    ok = frames.usable(result)
    assert set(ok.video_id) == present and (ok.groupby("video_id").size() == 2).all()
    missing = result[result.status == "missing"]
    assert len(missing) == 4  # listed in metadata.json, absent from the folder
    assert set(missing.video_id) == {"awnfpubqmo", "aagfhgtpmv", "aapnvogymq", "abarnvbtwb"}
    portrait = ok[ok.video_id == "brtujopkby"]
    assert (portrait.width == 1080).all() and (portrait.height == 1920).all()
    assert cv2.imread(portrait.frame_path.iloc[0]).shape[:2] == (1920, 1080)
    landscape = ok[ok.video_id == "widuwuoiur"]
    assert (landscape.width == 1920).all() and (landscape.height == 1080).all()
    assert (ok.n_frames >= 300).all() and (ok.fps > 29).all()
