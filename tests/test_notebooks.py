"""Every notebook, in order, executed by the runner with papermill on a tiny demo (the demo profile, shrunk).

The profile is params/demo.yaml with every path moved into a temporary folder and the budgets cut
down, so the test runs the real parameter names through the real runner. Each test runs one notebook
and checks what it promises; a later test needs the earlier ones' outputs.
"""
from __future__ import annotations

import ast
import json
import shutil
import subprocess
from pathlib import Path

import nbformat
import pandas as pd
import papermill
import pytest
import yaml

from helpers import demo, display, pipeline
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
    "06_crop_study": {"MODELS": ["meso4", "resnet50"], "IMAGE_SIZE": 32, "EPOCHS": 1, "MODEL_BUDGETS": {}, "N_BOOT": 100},
    "07_results": {"N_EXPLAIN": 4, "N_BAND_FACES": 8},
    "08_cross_dataset": {"FRAMES_PER_VIDEO": 2, "MAX_VIDEOS_PER_METHOD": 2, "N_BOOT": 100},
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
    for name in declared:  # every notebook, also one the profile leaves to its defaults
        block = blocks.get(name, {})
        runs = block if isinstance(block, list) else [block]
        shrunk = []
        for params in runs:
            params = {k: relocate(v, tmp) for k, v in params.items()}
            params.update({k: v for k, v in SHRINK.get(name, {}).items() if k in declared[name]})
            for key, spec in declared[name].items():  # no default path may point into the real project
                default = ast.literal_eval(spec["default"])
                if key not in params and relocate(default, tmp) != default:
                    params[key] = relocate(default, tmp)
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


def demo_videos(tmp: Path) -> int:
    """How many videos the tiny demo holds (from its metadata.json files)."""
    return sum(len(json.loads(p.read_text())) for p in (tmp / "data" / "demo" / "videos").rglob("metadata.json"))


def committed_versions(path: Path) -> list[tuple[str, str]]:
    """(where, text) of a notebook as git holds it (HEAD and the index), or the working copy outside git."""
    relative = path.relative_to(ROOT).as_posix()
    versions = []
    if shutil.which("git") and (ROOT / ".git").exists():
        for where, spec in (("committed", f"HEAD:{relative}"), ("staged", f":{relative}")):
            shown = subprocess.run(["git", "show", spec], cwd=ROOT, capture_output=True, text=True)
            if shown.returncode == 0:
                versions.append((where, shown.stdout))
    return versions or [("working copy", path.read_text(encoding="utf-8"))]


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
        assert not any(line.startswith(("def ", "class ")) for c in code for line in c.source.splitlines()), path.name
        assert pipeline.notebook_parameters(path), f"{path.name}: papermill sees no parameters"


def test_no_notebook_is_committed_with_outputs():
    """Jupyter saves outputs into the file; the nbstrip git filter (make setup) keeps them out of git."""
    for path in pipeline.list_notebooks(ROOT):
        for where, text in committed_versions(path):
            nb = nbformat.reads(text, as_version=4)
            code = [c for c in nb.cells if c.cell_type == "code"]
            assert not any(c.outputs for c in code), f"{path.name} is {where} with outputs: run `make setup`"
            assert not any(c.execution_count for c in code), f"{path.name} is {where} with execution counts"
            assert "widgets" not in nb.metadata, f"{path.name} is {where} with widget state"


def test_01_frame_sampling(project):
    tmp = run(project, "01")
    frames = pd.read_csv(tmp / "data/interim/01_frames/frames.csv")
    assert (frames.status == "ok").sum() == demo_videos(tmp) * 3
    assert set(frames.label) == {"REAL", "FAKE"}
    assert (tmp / "figures" / "01_frame_grid.png").exists()


def execute_in_notebooks_folder(notebook: str, out: Path, **parameters) -> Path:
    """Execute one notebook as Jupyter does, with the kernel started in notebooks/ (setup() moves to the root)."""
    papermill.execute_notebook(str(ROOT / "notebooks" / f"{notebook}.ipynb"), str(out), parameters=parameters,
                               cwd=str(ROOT / "notebooks"), kernel_name="python3", progress_bar=False,
                               extra_arguments=["--IPKernelApp.log_level=ERROR"])
    return out


def outputs_text(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) + str(o.get("evalue", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def test_01_run_again_with_other_settings_takes_them(project, tmp_path):
    """The student's path: change FRAMES_PER_VIDEO and STRATEGY, Restart & Run All, and frames.csv has the new frames."""
    tmp, _ = project
    videos = str(tmp / "data" / "demo" / "videos")
    common = {"VIDEOS_DIR": videos, "OUT_DIR": str(tmp_path / "01_frames"), "FIGURES_DIR": str(tmp_path / "figures")}
    execute_in_notebooks_folder("01_frame_sampling", tmp_path / "first.ipynb", FRAMES_PER_VIDEO=2,
                                STRATEGY="random", **common)
    second = execute_in_notebooks_folder("01_frame_sampling", tmp_path / "second.ipynb", FRAMES_PER_VIDEO=3,
                                         STRATEGY="uniform", **common)
    frames = pd.read_csv(tmp_path / "01_frames" / "frames.csv")
    ok = frames[frames.status == "ok"]
    assert (ok.groupby("video_id").size() == 3).all() and ok.video_id.nunique() == demo_videos(tmp)
    assert sorted(set(ok.frame_index)) == [1, 4, 6]  # uniform thirds of the demo's 8-frame clips, every video alike
    settings = json.loads((tmp_path / "01_frames" / "settings.json").read_text())["settings"]
    assert settings["frames_per_video"] == 3 and settings["strategy"] == "uniform"
    said = outputs_text(second)
    assert "FRAMES_PER_VIDEO 2 there, 3 now" in said and "deleted and made again" in said

    # ON_CHANGE = "refuse" (the dfdc profile's choice) stops and names the change; nothing is lost
    with pytest.raises(papermill.PapermillExecutionError) as err:
        execute_in_notebooks_folder("01_frame_sampling", tmp_path / "refused.ipynb", FRAMES_PER_VIDEO=4,
                                    STRATEGY="uniform", ON_CHANGE="refuse", **common)
    assert err.value.ename == "SettingsChanged" and "FRAMES_PER_VIDEO 3 there, 4 now" in err.value.evalue
    assert pd.read_csv(tmp_path / "01_frames" / "frames.csv").equals(frames)


def test_01_without_the_demo_says_make_demo(tmp_path):
    with pytest.raises(papermill.PapermillExecutionError) as err:
        execute_in_notebooks_folder("01_frame_sampling", tmp_path / "missing.ipynb", VIDEOS_DIR=str(tmp_path / "none"),
                                    OUT_DIR=str(tmp_path / "out"), FIGURES_DIR=str(tmp_path / "figures"))
    assert err.value.ename == "MissingInput" and "make demo" in err.value.evalue
    assert len(err.value.traceback) == 1  # the message, not three frames of helpers code


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


def displayed_html(path: Path) -> list[str]:
    """The HTML of every displayed output (tables, markdown rendered as HTML by nbconvert aside) of a notebook."""
    nb = nbformat.read(path, as_version=4)
    return [str(o["data"]["text/html"]) for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if o.get("output_type") in ("display_data", "execute_result") and "text/html" in o.get("data", {})]


def test_08_cross_dataset(project):
    tmp = run(project, "08")
    assert (tmp / "report/tables/08_cross_dataset.csv").exists()
    assert (tmp / "figures" / "08_heatmap.png").exists()


def test_no_displayed_table_is_wide_or_holds_an_absolute_path(project):
    tmp, _ = project
    executed = sorted((tmp / "build").glob("*.ipynb"))
    assert len(executed) >= 8, "run after the notebook tests"
    for path in executed:
        for page in displayed_html(path):
            if "<table" not in page:
                continue
            assert display.widest_table(page) <= display.MAX_COLUMNS, f"{path.name}: a table of " \
                f"{display.widest_table(page)} columns:\n{page[:600]}"
            absolute = [cell for cell in display.table_cells(page) if display.is_absolute_path(cell)]
            assert not absolute and str(tmp) not in page, f"{path.name}: absolute paths {absolute[:3]}"
        text = outputs_text(path)
        assert "Empty DataFrame" not in text, f"{path.name} shows an empty table without saying what empty means"
        assert "<NA>" not in text and "{'" not in "".join(displayed_html(path)), f"{path.name} shows raw values"


def test_report_renders_every_figure_and_table(project):
    from helpers import report

    tmp, _ = project
    paths = report.render_report("tiny", out_dir=tmp / "report", build_dir=tmp / "build")
    page = paths["html"].read_text()
    assert display.widest_table(page) <= display.MAX_COLUMNS
    absolute = [cell for cell in display.table_cells(page) if display.is_absolute_path(cell)]
    assert not absolute, f"absolute paths in the report's tables: {absolute[:3]}"
    assert str(tmp) not in page
    # notebook 05 ran once per ResNet: its introduction appears once, each run under its own heading
    assert page.count("The first course study also fine-tuned") == 1
    assert "Run <code>resnet50</code>" in page and "Run <code>resnet101</code>" in page
    for heading in ("Leaderboard", "Beside the original studies", "ROC curves", "Training curves",
                    "The crop study", "Calibration", "Where do the models look", "right and wrong",
                    "Appendix", "01 · Frame sampling", "03 · "):
        assert heading in page, heading
    assert page.count("<img") >= 15  # figures are embedded, not linked
    assert "Contents" in page and "<table" in page
    assert "def " not in page and "import " not in page  # no code
    from pypdf import PdfReader

    pdf = PdfReader(paths["pdf"])
    assert 5 <= len(pdf.pages) < 20, f"{len(pdf.pages)} A4 pages"
    text = " ".join(page.extract_text() for page in pdf.pages[:3])
    assert "Leaderboard" in text
