"""helpers.notebook: inputs that say what makes them, a changed setting that takes effect, notebooks stripped for git."""
from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys

import pytest

from helpers import frames, manifest
from helpers.notebook import MissingInput, project_root, redo_on_change, require, strip_outputs, stripped_text
from tests.videos import write_part

ROOT = project_root()


def test_require_names_the_parameter_and_what_makes_it(tmp_path):
    (tmp_path / "here.csv").write_text("x\n")
    require("never raised", PRESENT=str(tmp_path / "here.csv"), EMPTY="")
    with pytest.raises(MissingInput) as err:
        require("run `make demo` in the project root", VIDEOS_DIR="data/nowhere/videos")
    message = str(err.value)
    assert "VIDEOS_DIR = 'data/nowhere/videos' does not exist" in message and "run `make demo`" in message
    assert "relative to the project root" in message
    assert err.value._render_traceback_() == [f"MissingInput: {message}"]  # IPython shows this, not the frames
    assert isinstance(err.value, FileNotFoundError)


@pytest.fixture
def videos(tmp_path):
    videos = {"a.mp4": {"label": "REAL"}, "b.mp4": {"label": "FAKE", "original": "a.mp4"},
              "c.mp4": {"label": "REAL"}}
    write_part(tmp_path / "videos" / "part_0", videos, n_frames=30)
    return tmp_path / "videos"


def test_a_changed_setting_is_redone_and_the_same_settings_resume(videos, tmp_path, caplog):
    out = tmp_path / "frames"
    first = redo_on_change(frames.sample_frames, videos, out, frames_per_video=2, workers=1)
    assert (first[first.status == "ok"].groupby("video_id").size() == 2).all()
    journal = sorted((out / "_journal").glob("frames*.jsonl"))[0]
    before = journal.read_text()

    again = redo_on_change(frames.sample_frames, videos, out, frames_per_video=2, workers=1)
    assert journal.read_text() == before  # same settings: every video reused, none sampled again
    assert again.equals(first)

    changed = redo_on_change(frames.sample_frames, videos, out, frames_per_video=3, strategy="uniform", workers=1)
    said = " ".join(r.getMessage() for r in caplog.records if r.name == "helpers.notebook")
    assert "FRAMES_PER_VIDEO 2 there, 3 now" in said and "STRATEGY 'random' there, 'uniform' now" in said
    assert "deleted and made again" in said
    assert frames.read_settings(out)["frames_per_video"] == 3 and frames.read_settings(out)["strategy"] == "uniform"
    table = frames.read_frames_manifest(out / "frames.csv")
    assert (table[table.status == "ok"].groupby("video_id").size() == 3).all()
    assert sorted(set(table.frame_index.dropna())) == [5, 15, 25]  # uniform: centred in thirds of 30 frames
    assert len(list((out / "frames").rglob("*.jpg"))) == (table.status == "ok").sum()  # the old frames are gone
    assert changed.equals(table)


def test_helpers_messages_reach_the_console_once_plainly_in_jupyter(monkeypatch, capsys):
    from helpers.notebook import show_notices_plainly
    from helpers.runtime import configure_logging

    package, root = logging.getLogger("helpers"), logging.getLogger()
    before = list(root.handlers)
    log = logging.getLogger("helpers.frames")
    try:
        configure_logging()  # what `import helpers` did; again changes nothing
        assert len(package.handlers) == 1 and root.handlers == before
        log.warning("a data problem")
        log.info("a stage's progress")
        out, err = capsys.readouterr()
        assert out == "" and err == "WARNING helpers.frames: a data problem\nINFO helpers.frames: a stage's progress\n"

        monkeypatch.setenv("HELPERS_HEADLESS", "1")  # papermill under helpers.pipeline: stderr, left out of the report
        show_notices_plainly()
        log.warning("headless")
        assert capsys.readouterr() == ("", "WARNING helpers.frames: headless\n")

        monkeypatch.delenv("HELPERS_HEADLESS")  # a live Jupyter session: one plain line under the cell
        show_notices_plainly()
        log.warning("in Jupyter")
        assert capsys.readouterr() == ("Note: in Jupyter\n", "")
        assert len(package.handlers) == 1 and root.handlers == before
    finally:
        configure_logging()


def test_refuse_shard_and_another_stages_folder_keep_the_refusal(videos, tmp_path):
    out = tmp_path / "frames"
    redo_on_change(frames.sample_frames, videos, out, frames_per_video=2, workers=1)
    saved = (out / "frames.csv").read_text()
    with pytest.raises(manifest.SettingsChanged, match="FRAMES_PER_VIDEO 2 there, 4 now"):
        redo_on_change(frames.sample_frames, videos, out, on_change="refuse", frames_per_video=4, workers=1)
    with pytest.raises(manifest.SettingsChanged):  # a shard would delete the other shards' work
        redo_on_change(frames.sample_frames, videos, out, frames_per_video=4, workers=1, shard="0/2")
    assert (out / "frames.csv").read_text() == saved

    other = tmp_path / "faces_folder"
    other.mkdir()
    record = {"stage": "faces", "written_by": "notebook 02", "settings": {"face_size": 64}}
    (other / "settings.json").write_text(json.dumps(record))
    with pytest.raises(manifest.SettingsChanged, match="not 'frames'"):
        redo_on_change(frames.sample_frames, videos, other, frames_per_video=2, workers=1)
    assert json.loads((other / "settings.json").read_text()) == record  # another stage's folder is never cleared
    with pytest.raises(ValueError, match="ON_CHANGE must be one of"):
        redo_on_change(frames.sample_frames, videos, out, on_change="overwrite")


def notebook_with_outputs() -> dict:
    return {"cells": [
        {"cell_type": "markdown", "id": "m", "metadata": {}, "source": ["# Title"]},
        {"cell_type": "code", "id": "c", "execution_count": 7, "source": ["1 + 1"],
         "metadata": {"tags": ["parameters"], "execution": {"iopub.status.busy": "2025"}, "scrolled": True},
         "outputs": [{"output_type": "execute_result", "execution_count": 7, "metadata": {},
                      "data": {"text/plain": ["2"]}}]},
    ], "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                    "language_info": {"name": "python", "version": "3.12.1"}, "widgets": {"state": {}},
                    "papermill": {"duration": 3}}, "nbformat": 4, "nbformat_minor": 5}


def test_strip_outputs_leaves_what_git_should_hold():
    nb = strip_outputs(notebook_with_outputs())
    code = nb["cells"][1]
    assert code["outputs"] == [] and code["execution_count"] is None and code["metadata"] == {"tags": ["parameters"]}
    assert nb["metadata"] == {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                              "language_info": {"name": "python"}}
    text = stripped_text(json.dumps(notebook_with_outputs()))
    assert stripped_text(text) == text  # stable: a second pass changes nothing
    assert stripped_text("<<<<<<< not json") == "<<<<<<< not json"
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):  # the committed notebooks are already in this layout
        assert stripped_text(path.read_text(encoding="utf-8")) == path.read_text(encoding="utf-8"), path.name


@pytest.mark.skipif(shutil.which("git") is None or shutil.which("make") is None, reason="needs git and make")
def test_make_setup_installs_a_git_filter_that_commits_notebooks_without_outputs(tmp_path):
    def git(*args):
        return subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    shutil.copy(ROOT / ".gitattributes", tmp_path / ".gitattributes")
    subprocess.run(["make", "--no-print-directory", "git-filter", f"PY={sys.executable}"], cwd=tmp_path, check=True,
                   capture_output=True)
    assert "helpers.notebook strip" in git("config", "filter.nbstrip.clean")
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "01_x.ipynb").write_text(json.dumps(notebook_with_outputs(), indent=1))
    git("add", "notebooks/01_x.ipynb")
    staged = json.loads(git("show", ":notebooks/01_x.ipynb"))
    assert staged["cells"][1]["outputs"] == [] and "widgets" not in staged["metadata"]
    # the working copy keeps its outputs: only what git stores is stripped
    assert json.loads((tmp_path / "notebooks" / "01_x.ipynb").read_text())["cells"][1]["outputs"]
