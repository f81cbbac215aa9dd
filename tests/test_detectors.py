"""DETECTOR: choosing the MTCNN backend, what it records, which processes load TensorFlow, and the import-order crash.

TensorFlow is only ever loaded in subprocesses here: in this venv `import tensorflow` followed by
torchvision, torch._dynamo or triton segfaults, and this pytest process goes on to other tests.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from helpers import faces, frames
from helpers.manifest import SettingsChanged

ROOT = Path(__file__).resolve().parents[1]
FRAME = (270, 480)
FACE_SIZE = 64


def portrait(index: int, size: int = 120) -> np.ndarray:
    """LFW face `index` (scikit-image's offline sample, 25 x 25 grey) as a `size` px RGB portrait."""
    from skimage.data import lfw_subset  # noqa: PLC0415

    grey = (lfw_subset()[index] * 255).astype(np.uint8)
    return faces.to_rgb(cv2.resize(grey, (size, size), interpolation=cv2.INTER_CUBIC))


def write_frame(path: Path, portraits=()) -> str:
    """A grey frame with LFW portraits (index, x, y) pasted in, written as a JPEG."""
    image = np.full((*FRAME, 3), 128, np.uint8)
    for index, x, y in portraits:
        image[y:y + 120, x:x + 120] = portrait(index)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return str(path)


@pytest.fixture
def frames_csv(tmp_path) -> Path:
    """Three frames of a REAL video (two with a face, one grey) and its fake's frame 0 (reuses the boxes)."""
    folder = tmp_path / "frames" / "part_a"
    specs = [("realaaaaaa", "REAL", None, 0, ((0, 100, 60),)), ("realaaaaaa", "REAL", None, 1, ((2, 300, 100),)),
             ("realaaaaaa", "REAL", None, 2, ()), ("fakeaaaaaa", "FAKE", "realaaaaaa", 0, ((3, 100, 60),))]
    rows = [{"video_id": video, "part": "part_a", "video_path": f"videos/part_a/{video}.mp4", "label": label,
             "original": original, "frame_index": index, "n_frames": 30, "fps": 10.0, "width": FRAME[1],
             "height": FRAME[0], "frame_path": write_frame(folder / f"{video}_{index:05d}.jpg", pasted),
             "status": "ok", "reason": ""} for video, label, original, index, pasted in specs]
    path = tmp_path / "frames" / "frames.csv"
    pd.DataFrame(rows, columns=frames.COLUMNS).to_csv(path, index=False)
    return path


def run_python(code: str, *args, timeout: int = 600) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter from the project root, with `args` as sys.argv[1:]."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def last_json(done: subprocess.CompletedProcess) -> dict:
    """The JSON object a subprocess printed last, or a failure showing its output."""
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def ok_rows(table: pd.DataFrame) -> dict:
    return {r.frame_path: r for r in table[table.status == "ok"].itertuples()}


# --- choosing a backend ---------------------------------------------------------------------------------

def test_make_detector_builds_the_torch_backend_with_the_settings():
    detector = faces.make_detector("mtcnn-torch", detect_max_side=320, min_face_size=24, scale_factor=0.6,
                                   threads=None, device="cpu")
    assert detector.name == "mtcnn-torch" and type(detector).__module__ == "helpers.mtcnn_torch"
    assert (detector.detect_max_side, detector.min_face_size, detector.scale_factor) == (320, 24, 0.6)
    assert str(detector.device) == "cpu"
    assert faces.DETECTORS == ("mtcnn-torch", "mtcnn-tf")


def test_an_unknown_detector_is_refused_before_any_work(frames_csv, tmp_path):
    with pytest.raises(ValueError, match="DETECTOR must be one of 'mtcnn-torch', 'mtcnn-tf', got 'dlib'"):
        faces.make_detector("dlib")
    with pytest.raises(ValueError, match="DETECTOR must be one of"):
        faces.extract_faces(frames_csv, tmp_path / "out", detector="dlib")
    assert not (tmp_path / "out").exists()


def test_device_names_for_tensorflow_and_bad_devices():
    assert [faces.tf_device(d) for d in ("", None, "cpu", "cuda", "cuda:1", "GPU:0")] == [
        None, None, "CPU:0", "GPU:0", "GPU:1", "GPU:0"]
    with pytest.raises(ValueError, match="DEVICE 'tpu9' is not a torch device"):
        faces.resolve_device("tpu9")
    import torch  # noqa: PLC0415

    if torch.cuda.is_available():
        assert faces.resolve_device("") == "cuda"
    else:
        assert faces.resolve_device("") == "cpu"
        with pytest.raises(ValueError, match="no CUDA GPU"):
            faces.resolve_device("cuda")


# --- what settings.json records ----------------------------------------------------------------------------

def test_detector_is_a_setting_and_device_is_not(frames_csv, tmp_path, monkeypatch):
    out = tmp_path / "faces"
    first = faces.extract_faces(frames_csv, out, face_size=FACE_SIZE, detector="mtcnn-torch", device="cpu")
    record = json.loads((out / "settings.json").read_text())
    assert record["settings"]["detector"] == "mtcnn-torch" and "device" not in record["settings"]
    settings = faces.read_settings(out)
    assert settings["detector"] == "mtcnn-torch" and "device" not in settings

    def no_work(task):
        raise AssertionError(f"{task['key']} was detected again")

    monkeypatch.setattr(faces, "extract_group", no_work)
    again = faces.extract_faces(frames_csv, out, face_size=FACE_SIZE, device="")  # another device resumes
    pd.testing.assert_frame_equal(again, first)
    with pytest.raises(SettingsChanged, match="DETECTOR 'mtcnn-torch' there, 'mtcnn-tf' now"):
        faces.extract_faces(frames_csv, out, face_size=FACE_SIZE, detector="mtcnn-tf")  # refused before TF loads
    monkeypatch.undo()

    # the held-out re-detection's round trip: read_settings' dict back into extract_faces crops the same way
    other = faces.extract_faces(frames_csv, tmp_path / "other", **faces.read_settings(out))
    assert faces.read_settings(tmp_path / "other") == settings
    assert len(other) == len(first)


def test_a_settings_json_from_before_detector_was_recorded_reads_as_mtcnn_tf(frames_csv, tmp_path):
    out = tmp_path / "faces"
    faces.extract_faces(frames_csv, out, face_size=FACE_SIZE)
    record = json.loads((out / "settings.json").read_text())
    del record["settings"]["detector"]
    (out / "settings.json").write_text(json.dumps(record))
    assert faces.read_settings(out)["detector"] == "mtcnn-tf"  # TensorFlow was the only backend then
    with pytest.raises(SettingsChanged, match="DETECTOR '<unset>' there, 'mtcnn-torch' now"):
        faces.extract_faces(frames_csv, out, face_size=FACE_SIZE)


@pytest.mark.gpu
def test_on_a_gpu_one_worker_does_the_work(frames_csv, tmp_path, caplog):
    result = faces.extract_faces(frames_csv, tmp_path / "gpu", face_size=FACE_SIZE, device="cuda", workers=2)
    assert any(r.name == "helpers.faces" and "WORKERS 2 -> 1" in r.getMessage() for r in caplog.records)
    assert (result.status == "ok").sum() == 3


# --- which processes load TensorFlow ---------------------------------------------------------------------

TORCH_ENTRY_POINTS = """
    import json, sys
    from pathlib import Path
    from helpers import faces
    frames_csv, out, image = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    table = faces.extract_faces(frames_csv, out / "faces", face_size=64)  # DETECTOR's default
    from helpers.predict import Predictor, make_untrained_run
    run = make_untrained_run(out / "run", "meso4", 32, face_settings=faces.read_settings(out / "faces"))
    predictor = Predictor(run, frames=2, threads=1)  # the detector named in the run's face_settings
    scored = predictor.predict_path(image)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras")
                    or m == "mtcnn.mtcnn")
    import torchvision, torch._dynamo  # what segfaults after `import tensorflow`
    print(json.dumps({"loaded": loaded, "faces": int((table.status == "ok").sum()), "status": scored["status"],
                      "detector": predictor.detector.name, "n_faces": scored["n_faces"]}))
"""


@pytest.mark.slow
def test_the_torch_detector_never_loads_tensorflow(frames_csv, tmp_path):
    """extract_faces and Predictor with mtcnn-torch (the default) in a fresh process: no TensorFlow, so the
    imports that crash after it (torchvision, torch._dynamo) are safe there."""
    image = pd.read_csv(frames_csv).frame_path[0]
    report = last_json(run_python(TORCH_ENTRY_POINTS, frames_csv, tmp_path, image))
    assert report["loaded"] == [], f"TensorFlow modules loaded: {report['loaded']}"
    assert report["detector"] == "mtcnn-torch" and report["faces"] == 3
    assert report["status"] == "ok" and report["n_faces"] == 1


TF_ENTRY_POINTS = """
    import json, sys
    from pathlib import Path
    import helpers.predict  # torchvision and torch._dynamo before TensorFlow, as in a predict process: the safe order
    from helpers import faces
    from helpers.manifest import SettingsChanged
    frames_csv, out, image = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    try:
        faces.extract_faces(frames_csv, out, face_size=64, detector="mtcnn-tf")  # out holds mtcnn-torch's crops
        refused = ""
    except SettingsChanged as err:
        refused = str(err)
    loaded_by_refusal = "tensorflow" in sys.modules
    table = faces.extract_faces(frames_csv, out, face_size=64, detector="mtcnn-tf", fresh=True)
    run = helpers.predict.make_untrained_run(out.parent / "run_tf", "meso4", 32, face_settings=faces.read_settings(out))
    predictor = helpers.predict.Predictor(run, frames=2, threads=1)
    scored = predictor.predict_path(image)
    print(json.dumps({"refused": refused, "loaded_by_refusal": loaded_by_refusal,
                      "loaded": "tensorflow" in sys.modules, "detector": predictor.detector.name,
                      "status": scored["status"], "settings": faces.read_settings(out)}))
"""


@pytest.mark.slow
def test_mtcnn_tf_loads_tensorflow_finds_the_same_faces_and_is_not_resumed_from_torch(frames_csv, tmp_path):
    """The same frames through both backends: the same faces (boxes IoU >= 0.9, landmarks within 2 px); the
    torch results are refused to a run asking for mtcnn-tf (SettingsChanged) until fresh."""
    out = tmp_path / "faces"
    torch_table = faces.extract_faces(frames_csv, out, face_size=FACE_SIZE, detector="mtcnn-torch")
    image = pd.read_csv(frames_csv).frame_path[0]
    report = last_json(run_python(TF_ENTRY_POINTS, frames_csv, out, image))
    assert "DETECTOR 'mtcnn-torch' there, 'mtcnn-tf' now" in report["refused"]
    assert not report["loaded_by_refusal"], "the refusal came after TensorFlow was loaded"
    assert report["loaded"] and report["detector"] == "mtcnn-tf" and report["status"] == "ok"
    assert report["settings"]["detector"] == "mtcnn-tf"

    tf_table = faces.read_faces_manifest(out / "faces.csv")
    assert dict(zip(tf_table.frame_path, tf_table.status)) == dict(zip(torch_table.frame_path, torch_table.status))
    ours, theirs = ok_rows(torch_table), ok_rows(tf_table)
    assert len(ours) == 3
    for path, a in theirs.items():
        b = ours[path]
        assert faces.box_iou(np.array([a.x, a.y, a.w, a.h]), np.array([b.x, b.y, b.w, b.h])) >= 0.9, path
        marks = [np.array([getattr(r, c) for c in faces.LANDMARK_COLUMNS]).reshape(5, 2) for r in (a, b)]
        assert np.linalg.norm(marks[0] - marks[1], axis=1).max() <= 2.0, path
        assert abs(a.confidence - b.confidence) < 1e-3 and a.box_source == b.box_source


# --- the import-order crash ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_tensorflow_before_torchvision_crashes():
    """`import tensorflow` then `import torchvision` is killed by SIGSEGV in this venv (exit -11 here; the same
    for torch._dynamo and triton, while loading libtriton). torchvision first survives (the mtcnn-tf test's
    process loads helpers.predict, so torchvision and torch._dynamo, before TensorFlow). This is why
    mtcnn-torch is the default and only "mtcnn-tf" imports TensorFlow (test_the_torch_detector_never_loads_tensorflow)."""
    crash = run_python("import tensorflow\nimport torchvision\nprint('survived')")
    if crash.returncode == 0:
        pytest.skip("`import tensorflow; import torchvision` no longer crashes in this venv; the guarantee that "
                    "mtcnn-torch never loads TensorFlow is still tested")
    assert crash.returncode == -signal.SIGSEGV, f"exit {crash.returncode}: {crash.stderr[-2000:]}"
    assert "survived" not in crash.stdout
