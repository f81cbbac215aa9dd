"""Face detection (both backends) and extraction (the default, mtcnn-torch) on real photos and DFDC frames from
../shared/data (skipped where absent)."""
from __future__ import annotations

import pandas as pd
import pytest

from helpers import faces, frames

pytestmark = pytest.mark.realdata

MIN_CONFIDENCE = 0.9


@pytest.fixture(scope="module")
def photos(shared_data) -> pd.DataFrame:
    """expected.csv: per photo, how many faces mtcnn (default settings, full resolution) finds at >= 0.9."""
    expected = pd.read_csv(shared_data / "faces" / "expected.csv").rename(columns={"faces_mtcnn_conf_ge_0.9": "faces"})
    return expected.assign(path=[str(shared_data / "faces" / name) for name in expected.file])


@pytest.fixture(scope="module", params=faces.DETECTORS)
def detector(request):
    """Each backend at full resolution (mtcnn-tf is the mtcnn package whose counts expected.csv holds)."""
    return faces.make_detector(request.param, detect_max_side=0, threads=2)


def count_faces(detector, photos: pd.DataFrame) -> dict[str, int]:
    found = {}
    for row in photos.itertuples():
        image = faces.read_image(row.path)  # the RGBA PNG comes back as RGB
        assert image.ndim == 3 and image.shape[2] == 3, row.file
        found[row.file] = sum(f.confidence >= MIN_CONFIDENCE for f in detector.detect_one(image))
    return found


@pytest.mark.slow
def test_face_counts_match_mtcnn_at_full_resolution(photos, detector):
    expected = dict(zip(photos.file, photos.faces))
    assert count_faces(detector, photos) == expected


def test_face_counts_match_with_the_default_downscaling(photos):
    """The default detector and detect_max_side (mtcnn-torch, 640) find the same faces in these photos (up to 2280 px wide)."""
    expected = dict(zip(photos.file, photos.faces))
    assert count_faces(faces.make_detector("mtcnn-torch", threads=2), photos) == expected


@pytest.mark.slow
def test_extract_faces_on_photos_records_faceless_ones(photos, tmp_path):
    rows = [{"video_id": row.file.rsplit(".", 1)[0], "part": "faces", "video_path": row.path, "label": "REAL",
             "original": None, "frame_index": 0, "n_frames": 1, "fps": 0.0, "width": None, "height": None,
             "frame_path": row.path, "status": "ok", "reason": ""} for row in photos.itertuples()]
    frames_csv = tmp_path / "frames.csv"
    pd.DataFrame(rows, columns=frames.COLUMNS).to_csv(frames_csv, index=False)
    result = faces.extract_faces(frames_csv, tmp_path / "out", face_size=64, keep="all", detect_max_side=0)
    ok = result[result.status == "ok"].groupby("video_id").size()
    expected = dict(zip(photos.file.str.rsplit(".", n=1).str[0], photos.faces))
    assert {v: int(ok.get(v, 0)) for v in expected} == expected
    faceless = result[result.status != "ok"]
    assert set(faceless.video_id) == {v for v, n in expected.items() if n == 0}
    assert (faceless.status == "no_face").all() and (faceless.reason != "").all()


@pytest.mark.slow
def test_dfdc_sample_frames_mostly_give_a_face(shared_data, tmp_path):
    sampled = frames.sample_frames(shared_data / "dfdc_sample", tmp_path / "frames", frames_per_video=4, workers=1)
    usable = frames.usable(sampled)
    result = faces.extract_faces(tmp_path / "frames" / "frames.csv", tmp_path / "faces")
    assert len(result) == len(usable)  # KEEP="largest": one row per frame
    assert set(result.status) <= {"ok", "no_face"}
    found = (result.status == "ok").mean()
    assert found >= 0.9, result.loc[result.status != "ok", ["video_id", "frame_index", "reason"]].to_string()
    ok = result[result.status == "ok"]
    assert (ok.confidence >= MIN_CONFIDENCE).all() and ok.face_path.map(lambda p: pd.notna(p)).all()
