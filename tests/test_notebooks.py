"""Every notebook, in order, executed by the runner with papermill on a tiny demo (the demo profile, shrunk).

The profile is params/demo.yaml with every path moved into a temporary folder and the budgets cut
down, so the test runs the real parameter names through the real runner. Each test runs one notebook
and checks what it promises; a later test needs the earlier ones' outputs.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers import demo, pipeline
from helpers.notebook import project_root

pytestmark = [pytest.mark.notebook, pytest.mark.slow]
ROOT = project_root()

# What the tiny run changes beside the paths: budgets small enough for a few minutes on 2 cores.
SHRINK = {
    "01_frame_sampling": {"FRAMES_PER_VIDEO": 3},
    "02_face_cropping": {"FACE_SIZE": 64},
    "03_split": {"VAL_FRACTION": 0.2, "TEST_FRACTION": 0.2},
    "04_vit": {"IMAGE_SIZE": 32, "EPOCHS": 2, "DEPTH": 2, "N_BOOT": 100},
    "05_resnet": {"IMAGE_SIZE": 32, "EPOCHS": 1, "N_BOOT": 100},
    "06_crop_study": {"MODELS": ["meso4", "resnet50"], "IMAGE_SIZE": 32, "EPOCHS": 1, "N_BOOT": 100},
    "07_results": {"N_EXPLAIN": 4, "N_BAND_FACES": 8},
}


def relocate(value, tmp: Path):
    """Move a repository-relative data/figures/report path into `tmp`."""
    if isinstance(value, str) and value.split("/")[0] in ("data", "figures", "report"):
        return str(tmp / value)
    if isinstance(value, list):
        return [relocate(v, tmp) for v in value]
    return value


def tiny_profile(tmp: Path) -> Path:
    blocks = yaml.safe_load((ROOT / "params" / "demo.yaml").read_text())
    declared = {p.stem: pipeline.notebook_parameters(p) for p in pipeline.list_notebooks(ROOT)}
    out = {}
    for name, block in blocks.items():
        runs = block if isinstance(block, list) else [block]
        shrunk = []
        for params in runs:
            params = {k: relocate(v, tmp) for k, v in params.items()}
            params.update({k: v for k, v in SHRINK.get(name, {}).items() if k in declared[name]})
            for key in ("FIGURES_DIR", "TABLES_DIR"):
                if key in declared[name] and key not in params:
                    params[key] = relocate(declared[name][key]["default"].strip("\"'"), tmp)
            shrunk.append(params)
        out[name] = shrunk if isinstance(block, list) else shrunk[0]
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(out))
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tiny_project")
    demo.make_demo_dataset(tmp / "data" / "demo" / "videos", identities=8, frames=8, progress=False)
    return tmp, tiny_profile(tmp)


def run(project, notebook: str) -> Path:
    tmp, profile = project
    outputs = pipeline.run_pipeline(str(profile), only=[notebook], out_dir=tmp / "build")
    assert outputs, f"{notebook} did not run"
    return tmp


def test_every_notebook_follows_the_house_rules():
    import nbformat

    for path in pipeline.list_notebooks(ROOT):
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: {len(tagged)} parameters cells"
        assert not any(c.outputs for c in code), f"{path.name} is committed with outputs"
        assert not any(line.startswith(("def ", "class ")) for c in code for line in c.source.splitlines()), path.name
        assert pipeline.notebook_parameters(path), f"{path.name}: papermill sees no parameters"


def test_01_frame_sampling(project):
    tmp = run(project, "01")
    frames = pd.read_csv(tmp / "data/interim/01_frames/frames.csv")
    assert (frames.status == "ok").sum() == 16 * 3
    assert set(frames.label) == {"REAL", "FAKE"}
    assert (tmp / "figures" / "01_frame_grid.png").exists()


def test_02_face_cropping(project):
    tmp = run(project, "02")
    faces = pd.read_csv(tmp / "data/interim/02_faces/faces.csv")
    assert (faces.status == "ok").mean() >= 0.9
    assert {"eyes_path", "lower_path", "eyes_lower_path"} <= set(faces.columns)
    assert (faces.box_source == "original").any()  # fakes reused their original's boxes
    assert (tmp / "figures" / "02_faces_landmarks.png").exists()


def test_03_split(project):
    tmp = run(project, "03")
    split = pd.read_csv(tmp / "data/interim/03_split/split.csv")
    assert set(split.split) == {"train", "val", "test"}
    assert split.groupby("group").split.nunique().max() == 1
    audit = json.loads((tmp / "data/interim/03_split/split_audit.json").read_text())
    assert audit["groups_spanning_splits"] == 0


def test_04_vit(project):
    tmp = run(project, "04")
    run_dir = tmp / "data/processed/runs/vit-full-s0"
    for name in ("config.json", "history.csv", "predictions.csv", "metrics.json", "model.pt"):
        assert (run_dir / name).exists(), name
    assert len(pd.read_csv(run_dir / "history.csv")) == 2


def test_05_resnet(project):
    tmp = run(project, "05")
    for model in ("resnet50", "resnet101"):
        metrics = json.loads((tmp / f"data/processed/runs/{model}-full-s0/metrics.json").read_text())
        assert {"frame", "video", "baseline"} <= set(metrics)
    assert (tmp / "build" / "05_resnet-resnet101.ipynb").exists()


def test_06_crop_study(project):
    tmp = run(project, "06")
    table = pd.read_csv(tmp / "report/tables/06_crop_study.csv")
    assert list(table.Model) == ["MesoNet (Meso4)", "ResNet50"]
    assert table["McNemar p"].notna().all() and table.Verdict.notna().all()
    assert (tmp / "figures" / "06_crop_study.png").exists()


def test_07_results(project):
    tmp = run(project, "07")
    for name in ("07_roc", "07_confusion", "07_training_curves", "07_reliability", "07_right"):
        assert (tmp / "figures" / f"{name}.png").exists(), name
    headline = json.loads((tmp / "report/tables/headline.json").read_text())
    assert headline["best_run"] and "AUC" in headline["text"]
    board = pd.read_csv(tmp / "report/tables/07_leaderboard_frame.csv")
    assert board.run.iloc[-1] == "majority-class baseline"


def test_report_renders_every_figure_and_table(project):
    from helpers import report

    tmp, _ = project
    paths = report.render_report("tiny", out_dir=tmp / "report", build_dir=tmp / "build")
    page = paths["html"].read_text()
    for heading in ("Leaderboard", "Beside the original studies", "ROC curves", "Training curves",
                    "The crop study", "Calibration", "Where do the models look", "right and wrong",
                    "Appendix", "01 · Frame sampling", "03 · "):
        assert heading in page, heading
    assert page.count("<img") >= 15  # figures are embedded, not linked
    assert "Contents" in page and "<table" in page
    assert "def " not in page and "import " not in page  # no code
    from pypdf import PdfReader

    pdf = PdfReader(paths["pdf"])
    assert len(pdf.pages) >= 5
    text = " ".join(page.extract_text() for page in pdf.pages[:3])
    assert "Leaderboard" in text
