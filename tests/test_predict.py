"""helpers.predict: demo videos, images, bad inputs, folders, region variants, the command line, real DFDC videos."""
from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest

from helpers import predict
from helpers.faces import Face, mtcnn_min_face, square_crop
from helpers.predict import Predictor, expected_boxes, from_roi, make_untrained_run

FRAMES = 4  # sampled per video: enough for key frames and tracked frames (detect_every=2)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder with an untrained MesoNet at 32 px: predict's whole path, none of training's cost."""
    return make_untrained_run(tmp_path_factory.mktemp("runs") / "meso4-full-s0", "meso4", 32)


@pytest.fixture(scope="module")
def predictor(run_dir) -> Predictor:
    return Predictor(run_dir, frames=FRAMES, detect_every=2, threads=2)


@pytest.fixture(scope="module")
def demo_videos(tmp_path_factory):
    from helpers.demo import make_demo_dataset

    out = tmp_path_factory.mktemp("demo") / "videos"
    make_demo_dataset(out, identities=2, frames=8, progress=False)
    return out


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, demo_videos):
    """A face image (a demo frame), a flat grey image, a corrupt and an empty video, a text file."""
    folder = tmp_path_factory.mktemp("inputs")
    video = sorted(demo_videos.rglob("*.mp4"))[0]
    cap = cv2.VideoCapture(str(video))
    ok, frame = cap.read()
    cap.release()
    assert ok
    cv2.imwrite(str(folder / "face.jpg"), frame)
    cv2.imwrite(str(folder / "grey.jpg"), np.full((160, 160, 3), 128, np.uint8))
    (folder / "corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.txt").write_text("not a video")
    return folder


def test_scores_every_demo_video(predictor, demo_videos):
    videos = sorted(demo_videos.rglob("*.mp4"))
    results = predictor.predict_paths([demo_videos])  # a DFDC-layout folder: videos one level down
    assert [r["path"] for r in results] == [str(v) for v in videos]
    # The demo's easiest fakes are pasted at a fifth of their resolution and blurred: MTCNN can miss such a
    # face in all 4 sampled frames, and then the video says so (no_face, naming it) instead of a score.
    missed = [r for r in results if r["status"] == "no_face"]
    assert all(str(r["path"]) in r["reason"] for r in missed) and len(missed) <= len(results) // 6, missed
    for r in results:
        if r in missed:
            continue
        assert r["kind"] == "video" and r["status"] == "ok", r["reason"]
        assert 0.0 <= r["prob_fake"] <= 1.0
        assert r["n_frames_sampled"] == FRAMES and 1 <= r["n_faces"] <= FRAMES
        assert set(r["timing"]) == {"decode", "detect", "classify"}
        assert r["seconds"] >= sum(r["timing"].values()) > 0


def test_face_image_is_scored(predictor, inputs):
    r = predictor.predict_path(inputs / "face.jpg")
    assert (r["kind"], r["status"], r["n_frames_sampled"], r["n_faces"]) == ("image", "ok", 1, 1)
    assert 0.0 <= r["prob_fake"] <= 1.0


def test_no_face_image(predictor, inputs):
    r = predictor.predict_path(inputs / "grey.jpg")
    assert (r["status"], r["prob_fake"], r["n_faces"]) == ("no_face", None, 0)
    assert "grey.jpg" in r["reason"] and "no face" in r["reason"]


@pytest.mark.parametrize("name, words", [("corrupt.mp4", "cannot open"), ("empty.mp4", "empty")])
def test_unreadable_video(predictor, inputs, name, words):
    r = predictor.predict_path(inputs / name)
    assert (r["kind"], r["status"], r["prob_fake"]) == ("video", "unreadable", None)
    assert name in r["reason"] and words in r["reason"]


def test_every_input_gets_a_result(predictor, inputs, tmp_path):
    (tmp_path / "empty_folder").mkdir()
    paths = [inputs, inputs / "notes.txt", tmp_path / "absent.mp4", tmp_path / "empty_folder"]
    results = predictor.predict_paths(paths)
    # the folder gives its media files, sorted, and ignores notes.txt; the rest stay as given
    names = [r["path"].rsplit("/", 1)[-1] for r in results]
    assert names == ["corrupt.mp4", "empty.mp4", "face.jpg", "grey.jpg", "notes.txt", "absent.mp4", "empty_folder"]
    status = dict(zip(names, (r["status"] for r in results)))
    assert status == {"corrupt.mp4": "unreadable", "empty.mp4": "unreadable", "face.jpg": "ok", "grey.jpg": "no_face",
                      "notes.txt": "unsupported", "absent.mp4": "unreadable", "empty_folder": "unsupported"}
    assert all(r["reason"] for r in results if r["status"] != "ok")
    table = predict.format_table(results)
    assert "no_face" in table and "unsupported" in table and "7 input(s): 1 ok" in table


def test_region_variant(run_dir, predictor, demo_videos, tmp_path):
    """An eyes-only run gets the eyes band cut from each crop, as notebook 02 wrote it for training."""
    eyes = make_untrained_run(tmp_path / "meso4-eyes-s0", "meso4", 32, variant="eyes")
    r = Predictor(eyes, frames=2, detector=predictor.detector).predict_path(sorted(demo_videos.rglob("*.mp4"))[0])
    assert r["status"] == "ok" and r["n_faces"] >= 1


def test_expected_boxes():
    boxes = {0: np.array([0.0, 0, 10, 10]), 4: np.array([4.0, 0, 10, 10]), 8: np.array([100.0, 0, 10, 10])}
    np.testing.assert_allclose(expected_boxes(1, [0, 4, 8], boxes)[0], [1, 0, 10, 10])  # same face: interpolated
    assert len(expected_boxes(6, [0, 4, 8], boxes)) == 2  # apart: look around both
    np.testing.assert_allclose(expected_boxes(9, [0, 4, 8], boxes)[0], [100, 0, 10, 10])  # past the end: nearest


def test_from_roi_undoes_square_crop():
    image = np.zeros((100, 200, 3), np.uint8)
    _, square = square_crop(image, [150, 60, 40, 30], 2.0, 160)  # runs past the border: padded, not shifted
    inside = Face(box=np.array([40.0, 40, 80, 80]), confidence=1.0, landmarks=np.array([[80.0, 80]] * 5))
    face = from_roi(inside, square, 160)
    np.testing.assert_allclose(face.box, [150, 55, 40, 40])
    np.testing.assert_allclose(face.landmarks[0], [170, 75])


def test_mtcnn_min_face_keeps_the_pyramid_runnable():
    """mtcnn 1.0 sizes its pyramid as if min_face_size were 12; a larger one must not shrink a level below 12 px."""
    from mtcnn.utils.images import build_scale_pyramid

    for scale_factor in (0.6, 0.709, 0.8):
        for side in range(24, 2000, 37):
            for wanted in (12, 20, 30, 60):
                size = mtcnn_min_face(side, wanted, scale_factor)
                assert 12 <= size <= wanted
                pyramid = build_scale_pyramid(side, side, size, scale_factor)
                assert len(pyramid) == 0 or side * pyramid[-1] >= 12  # empty: too small for any level


def test_large_min_face_on_a_720p_frame(predictor):
    """predict's 60 px minimum face is 30 px on a 720p frame's 640 px copy: mtcnn used to raise there."""
    assert predictor.detector.detect([np.zeros((720, 1280, 3), np.uint8)]) == [[]]


def test_cli_json(run_dir, demo_videos, inputs, capsys):
    video = sorted(demo_videos.rglob("*.mp4"))[0]
    code = predict.main([str(video), str(inputs / "corrupt.mp4"), "--run", str(run_dir), "--frames", "2", "--json",
                         "--threads", "2", "--detector", "mtcnn-torch"])
    assert code == 0  # a bad file is a result, not a failure
    results = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in results] == ["ok", "unreadable"]
    assert results[0]["n_frames_sampled"] == 2 and results[1]["prob_fake"] is None


def test_cli_refuses_an_unknown_detector(run_dir, capsys):
    with pytest.raises(SystemExit) as exit_:
        predict.main(["x.mp4", "--run", str(run_dir), "--detector", "dlib"])
    assert exit_.value.code == 2 and "invalid choice: 'dlib'" in capsys.readouterr().err


def test_cli_missing_run(tmp_path, capsys):
    assert predict.main([str(tmp_path), "--run", str(tmp_path / "no_such_run")]) == 2
    assert "no_such_run does not exist" in capsys.readouterr().err
    assert predict.main([str(tmp_path), "--run", str(tmp_path)]) == 2  # a folder without model.pt
    assert "model.pt does not exist" in capsys.readouterr().err


@pytest.mark.realdata
@pytest.mark.slow
def test_dfdc_sample(predictor, shared_data):
    """Every present DFDC video (portrait, landscape, 720p with two people, a dark scene) gets a score."""
    folder = shared_data / "dfdc_sample"
    videos = sorted(folder.glob("*/*.mp4"))
    results = predictor.predict_paths([folder])
    assert [r["path"] for r in results] == [str(v) for v in videos]
    for r in results:
        assert r["status"] == "ok" and r["prob_fake"] is not None and r["n_faces"] >= 1, r


# --- the run's face settings, calibration and threshold ----------------------------------------------------------

FACE_SETTINGS = {"face_size": 96, "margin": 1.5, "min_confidence": 0.8, "detect_max_side": 320, "min_face_size": 24,
                 "scale_factor": 0.6, "keep": "largest", "regions": ["eyes"], "reuse_original_boxes": True,
                 "jpeg_quality": 90}


def test_face_settings_come_from_config_json(tmp_path, predictor):
    run = make_untrained_run(tmp_path / "run", "meso4", 32, face_settings=FACE_SETTINGS)
    p = Predictor(run, warm_up=False, threads=2)  # builds its own MTCNN from the face settings
    assert (p.face_size, p.margin, p.min_confidence, p.jpeg_quality, p.keep) == (96, 1.5, 0.8, 90, "largest")
    assert (p.detector.detect_max_side, p.detector.min_face_size, p.detector.scale_factor) == (320, 24, 0.6)
    assert p.face_settings_source.endswith("config.json face_settings")
    assert p.detector.name == p.face_settings["detector"] == "mtcnn-torch"  # face_settings without one: the default
    over = Predictor(run, warm_up=False, detector=predictor.detector, margin=1.2, face_size=64)
    assert (over.margin, over.face_size, over.min_confidence) == (1.2, 64, 0.8)  # arguments win, the rest stays


def test_the_detector_comes_from_face_settings_and_a_bad_one_is_named(tmp_path):
    run = make_untrained_run(tmp_path / "run", "meso4", 32, face_settings={**FACE_SETTINGS, "detector": "mtcnn-torch"})
    p = Predictor(run, warm_up=False, threads=2, device="cpu")
    assert type(p.detector).__module__ == "helpers.mtcnn_torch" and str(p.detector.device) == "cpu"
    named = Predictor(run, warm_up=False, threads=2, detector="mtcnn-torch")
    assert named.detector.detect_max_side == 320  # a name is built with the run's other face settings
    bad = make_untrained_run(tmp_path / "bad", "meso4", 32, face_settings={**FACE_SETTINGS, "detector": "dlib"})
    with pytest.raises(ValueError, match="DETECTOR must be one of 'mtcnn-torch', 'mtcnn-tf'.*bad/config.json"):
        Predictor(bad, warm_up=False)


def test_between_key_frames_the_torch_detector_searches_from_roi_min_face(predictor, demo_videos, monkeypatch):
    """mtcnn-torch's search() runs the squares around the face in one batch, from ROI_MIN_FACE px up."""
    calls = []
    real = predictor.detector.search
    monkeypatch.setattr(predictor.detector, "search",
                        lambda crops, min_face: (calls.append((len(crops), crops[0].shape, min_face)), real(crops, min_face))[1])
    r = predictor.predict_path(sorted(demo_videos.rglob("*.mp4"))[0])
    assert r["status"] == "ok" and r["n_faces"] >= FRAMES - 1
    assert calls == [(1, (predict.ROI_SIZE, predict.ROI_SIZE, 3), predict.ROI_MIN_FACE)]  # frame 1 of 0..3 (keys 0, 2, 3)


def test_without_face_settings_the_defaults_apply_and_it_says_so(tmp_path, predictor, caplog):
    run = make_untrained_run(tmp_path / "run", "meso4", 32)
    p = Predictor(run, warm_up=False, detector=predictor.detector)
    said = [r for r in caplog.records if r.name == "helpers.predict" and r.levelname == "WARNING"]
    assert len(said) == 1 and re.search("has no face_settings.*face_size=224, margin=1.3", said[0].getMessage())
    assert p.face_settings == predict.DEFAULT_FACE_SETTINGS and p.face_settings_source == "defaults"
    assert p.threshold == 0.5 and p.platt is None


def test_platt_calibration_and_the_threshold_come_from_metrics_json(tmp_path, predictor, inputs):
    plain = make_untrained_run(tmp_path / "plain", "meso4", 32, face_settings=FACE_SETTINGS)
    calibrated = make_untrained_run(tmp_path / "calibrated", "meso4", 32, face_settings=FACE_SETTINGS, metrics_json={
        "calibration": {"method": "platt", "slope": 2.0, "intercept": -1.0}, "threshold": {"value": 0.7}})
    a = Predictor(plain, warm_up=False, detector=predictor.detector)
    b = Predictor(calibrated, warm_up=False, detector=predictor.detector)
    assert b.platt == (2.0, -1.0) and b.threshold == 0.7
    np.testing.assert_allclose(b.probabilities(np.array([0.0, 0.5])), 1 / (1 + np.exp(-np.array([-1.0, 0.0]))))
    ra, rb = a.predict_path(inputs / "face.jpg"), b.predict_path(inputs / "face.jpg")
    assert ra["status"] == rb["status"] == "ok" and ra["n_faces"] == rb["n_faces"] == 1
    logit = np.log(ra["prob_fake"] / (1 - ra["prob_fake"]))
    assert rb["prob_fake"] == pytest.approx(1 / (1 + np.exp(-(2.0 * logit - 1.0))), rel=1e-6)
    assert rb["call"] == ("FAKE" if rb["prob_fake"] > 0.7 else "REAL") and rb["threshold"] == 0.7
    assert ra["call"] == ("FAKE" if ra["prob_fake"] > 0.5 else "REAL")


def test_a_video_score_is_the_aggregate_of_its_face_scores(predictor, demo_videos, monkeypatch):
    from helpers import metrics

    seen = []
    real = metrics.aggregate_face_scores
    monkeypatch.setattr(metrics, "aggregate_face_scores", lambda probs: (seen.append(np.asarray(probs)), real(probs))[1])
    r = predictor.predict_path(sorted(demo_videos.rglob("*.mp4"))[0])
    assert len(seen) == 1 and len(seen[0]) == r["n_faces"] and r["prob_fake"] == pytest.approx(seen[0].mean())


@pytest.mark.parametrize("metrics_json, words", [
    ({"calibration": {"method": "isotonic"}}, "calibration method 'isotonic' is not supported"),
    ({"calibration": {"method": "platt", "slope": "a"}}, "needs numeric \"slope\" and \"intercept\""),
    ({"threshold": {"value": 1.5}}, "threshold.value must be a probability"),
])
def test_a_bad_metrics_json_is_named(tmp_path, predictor, metrics_json, words):
    run = make_untrained_run(tmp_path / "run", "meso4", 32, face_settings=FACE_SETTINGS, metrics_json=metrics_json)
    with pytest.raises(ValueError, match="metrics.json") as err:
        Predictor(run, warm_up=False, detector=predictor.detector)
    assert words in str(err.value)
