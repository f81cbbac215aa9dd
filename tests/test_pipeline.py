"""The papermill runner: profiles, refusal of unknown names, stopping at the first failing notebook."""
from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_notebook

from helpers import pipeline

ROOT = Path(__file__).resolve().parents[1]


def make_project(tmp_path: Path, notebooks: dict[str, tuple[str, str]]) -> Path:
    """A throwaway project: notebooks/<name>.ipynb with a parameters cell and a body cell."""
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "params").mkdir()
    for name, (params, body) in notebooks.items():
        nb = new_notebook(cells=[new_code_cell(params, metadata={"tags": ["parameters"]}), new_code_cell(body)])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, tmp_path / "notebooks" / f"{name}.ipynb")
    return tmp_path


def write_profile(root: Path, name: str, blocks: dict) -> None:
    (root / "params" / f"{name}.yaml").write_text(yaml.safe_dump(blocks))


def test_unknown_parameter_is_refused_before_anything_runs(tmp_path):
    root = make_project(tmp_path, {"01_a": ("X: int = 1", "open('ran', 'w')")})
    write_profile(root, "p", {"01_a": {"X": 2, "Y_TYPO": 3}})
    with pytest.raises(pipeline.PipelineError, match=r"unknown parameter\(s\) \['Y_TYPO'\]"):
        pipeline.run_pipeline("p", root=root)
    assert not (root / "ran").exists()


def test_real_profiles_name_only_declared_parameters():
    for profile in sorted((ROOT / "params").glob("*.yaml")):
        runs = pipeline.plan_runs(profile.stem, root=ROOT)
        assert runs, f"{profile} plans no run"


def test_profile_for_an_unknown_notebook_is_refused(tmp_path):
    root = make_project(tmp_path, {"01_a": ("X: int = 1", "")})
    write_profile(root, "p", {"09_nope": {"X": 2}})
    with pytest.raises(pipeline.PipelineError, match="unknown notebooks"):
        pipeline.plan_runs("p", root=root)


def test_missing_profile_lists_known_ones(tmp_path):
    root = make_project(tmp_path, {"01_a": ("X: int = 1", "")})
    write_profile(root, "known", {})
    with pytest.raises(pipeline.PipelineError, match="known profiles: known"):
        pipeline.plan_runs("nope", root=root)


def test_runs_in_order_with_parameters_and_stops_at_the_first_failure(tmp_path):
    root = make_project(tmp_path, {
        "01_write": ("VALUE: int = 0", "open('out01.txt', 'w').write(str(VALUE))"),
        "02_fail": ("N: int = 0", "raise ValueError(f'bad input N={N}')"),
        "03_never": ("Z: int = 0", "open('out03.txt', 'w').write('ran')"),
    })
    write_profile(root, "p", {"01_write": {"VALUE": 7}, "02_fail": {"N": 5}})
    with pytest.raises(pipeline.PipelineError) as err:
        pipeline.run_pipeline("p", root=root)
    message = str(err.value)
    assert "02_fail.ipynb" in message and "ValueError" in message and "bad input N=5" in message
    assert (root / "out01.txt").read_text() == "7"  # ran in the project root, with the profile's value
    assert not (root / "out03.txt").exists()
    assert (root / "build" / "p" / "02_fail.ipynb").exists()
    status = yaml.safe_load((root / "build" / "p" / "pipeline.json").read_text())
    assert status["01_write"]["status"] == "ok" and status["02_fail"]["status"] == "failed"

    # --from resumes at the failed notebook, --only picks notebooks
    runs = pipeline.plan_runs("p", start="03", root=root)
    assert [r.name for r in runs] == ["03_never"]
    runs = pipeline.plan_runs("p", only=["01", "03_never"], root=root)
    assert [r.name for r in runs] == ["01_write", "03_never"]


def test_a_list_block_runs_a_notebook_once_per_entry(tmp_path):
    root = make_project(tmp_path, {"05_model": ("MODEL: str = 'a'", "")})
    write_profile(root, "p", {"05_model": [{"_run": "r50", "MODEL": "resnet50"}, {"_run": "r101", "MODEL": "resnet101"}]})
    runs = pipeline.plan_runs("p", root=root)
    assert [(r.name, r.parameters) for r in runs] == [("05_model-r50", {"MODEL": "resnet50"}),
                                                      ("05_model-r101", {"MODEL": "resnet101"})]


def test_cli_reports_failure_with_exit_code(tmp_path, capsys, monkeypatch):
    root = make_project(tmp_path, {"01_a": ("X: int = 1", "")})
    write_profile(root, "p", {"01_a": {"NOPE": 1}})
    monkeypatch.setattr(pipeline, "project_root", lambda: root)
    assert pipeline.main(["--profile", "p"]) == 1
    assert "unknown parameter" in capsys.readouterr().err


# --- --set overrides and type checks -------------------------------------------------------------------------

def override_project(tmp_path: Path) -> Path:
    root = make_project(tmp_path, {
        "04_vit": ("EPOCHS: int = 8\nLR: float = 0.001\nNAME: str = 'x'", ""),
        "05_resnet": ("MODEL: str = 'a'\nEPOCHS: int = 4\nSIZES: list = []", ""),
    })
    write_profile(root, "p", {"04_vit": {"EPOCHS": 50},
                              "05_resnet": [{"_run": "resnet50", "MODEL": "resnet50", "EPOCHS": 20},
                                            {"_run": "resnet101", "MODEL": "resnet101", "EPOCHS": 20}]})
    return root


def params(runs) -> dict:
    return {r.name: r.parameters for r in runs}


def test_set_overrides_a_value_and_every_entry_of_a_list_block(tmp_path):
    root = override_project(tmp_path)
    runs = params(pipeline.plan_runs("p", root=root, overrides=["04_vit.EPOCHS=1", "05.EPOCHS=2", "04.LR=0.5",
                                                                "05.SIZES=[32, 64]"]))
    assert runs["04_vit"] == {"EPOCHS": 1, "LR": 0.5}
    assert runs["05_resnet-resnet50"] == {"MODEL": "resnet50", "EPOCHS": 2, "SIZES": [32, 64]}
    assert runs["05_resnet-resnet101"]["EPOCHS"] == 2
    assert yaml.safe_load((root / "params" / "p.yaml").read_text())["04_vit"] == {"EPOCHS": 50}  # the file is untouched


def test_set_one_entry_by_run_name_or_position(tmp_path):
    root = override_project(tmp_path)
    runs = params(pipeline.plan_runs("p", root=root, overrides=["05_resnet[resnet50].EPOCHS=1", "05[1].MODEL=other"]))
    assert runs["05_resnet-resnet50"]["EPOCHS"] == 1 and runs["05_resnet-resnet101"]["EPOCHS"] == 20
    assert runs["05_resnet-resnet101"]["MODEL"] == "other"


@pytest.mark.parametrize("override, words", [
    ("04_vit.EPOCH=1", "unknown parameter(s) ['EPOCH']"),
    ("04_vit.EPOCHS=1.5", "EPOCHS must be a whole number (int), got 1.5 (float)"),
    ("04_vit.LR='0.1'", "LR must be a number (float)"),
    ("05_resnet[resnet18].EPOCHS=1", "has no run 'resnet18'; its runs: ['resnet50', 'resnet101']"),
    ("04_vit[a].EPOCHS=1", "runs once"),
    ("09.EPOCHS=1", "no notebook matches '09'"),
    ("EPOCHS=1", "expected NOTEBOOK.PARAM=VALUE"),
    ("04_vit._run=x", "cannot be overridden"),
])
def test_a_bad_override_is_refused_before_anything_runs(tmp_path, override, words):
    root = override_project(tmp_path)
    with pytest.raises(pipeline.PipelineError) as err:
        pipeline.run_pipeline("p", root=root, overrides=[override])
    assert words in str(err.value)
    assert not (root / "build").exists()


def test_cli_set_reaches_the_notebook(tmp_path, monkeypatch, capsys):
    root = make_project(tmp_path, {"01_a": ("X: int = 1", "open('x.txt', 'w').write(str(X))")})
    write_profile(root, "p", {"01_a": {"X": 2}})
    monkeypatch.setattr(pipeline, "project_root", lambda: root)
    assert pipeline.main(["--profile", "p", "--set", "01.X=5"]) == 0
    assert (root / "x.txt").read_text() == "5"
    assert pipeline.main(["--profile", "p", "--set", "01.X=five"]) == 1
    assert "X must be a whole number (int), got 'five' (str)" in capsys.readouterr().err


def test_the_real_profiles_pass_the_type_checks_and_take_overrides():
    runs = pipeline.plan_runs("dfdc", only=["04", "05"], root=ROOT,
                              overrides=["04_vit.EPOCHS=1", "05_resnet[resnet50].IMAGE_SIZE=64"])
    by_name = {r.name: r.parameters for r in runs}
    assert by_name["04_vit"]["EPOCHS"] == 1
    assert by_name["05_resnet-resnet50"]["IMAGE_SIZE"] == 64 and by_name["05_resnet-resnet101"]["IMAGE_SIZE"] == 224


# --- the demo profile holds only the notebooks' defaults -----------------------------------------------------

def profile_differences(profile: str, root: Path) -> list[str]:
    """Where a profile's value differs from its notebook's default ("01_x.A: profile 2, notebook 1").

    A list block runs a notebook once per entry, so the values that differ between its entries (MODEL of
    05) are what the list is for and are left aside; a value every entry shares must equal the default.
    """
    notebooks = {p.stem: p for p in pipeline.list_notebooks(root)}
    differences = []
    for name, block in pipeline.load_profile(profile, root).items():
        declared = pipeline.notebook_parameters(notebooks[name])
        entries = block if isinstance(block, list) else [block]
        varying = {key for key in set().union(*entries) if len({repr(e.get(key)) for e in entries}) > 1} \
            if isinstance(block, list) else set()
        for entry in entries:
            for key, value in entry.items():
                if key == pipeline.RUN_KEY or key in varying:
                    continue
                default = ast.literal_eval(declared[key]["default"])
                if value != default or type(value) is bool and type(default) is not bool:
                    differences.append(f"{name}.{key}: {profile}.yaml {value!r}, notebook default {default!r}")
    return sorted(set(differences))


def test_the_demo_profile_holds_only_the_notebooks_defaults():
    """`make report` and a student stepping through the notebooks in Jupyter run the same settings.

    Change a demo budget in the notebook's parameters cell: params/demo.yaml may only repeat defaults
    (in practice the paths that wire the notebooks together).
    """
    differences = profile_differences("demo", ROOT)
    assert not differences, ("params/demo.yaml differs from the notebooks' defaults; move the value into the "
                             "notebook's parameters cell:\n  " + "\n  ".join(differences))


def test_profile_differences_finds_a_changed_value_and_leaves_list_entries_aside(tmp_path):
    root = make_project(tmp_path, {"01_a": ("X: int = 1\nP: str = 'data/x'", ""),
                                   "05_b": ("MODEL: str = 'r50'\nSIZE: int = 48", "")})
    write_profile(root, "p", {"01_a": {"X": 1, "P": "data/x"},
                              "05_b": [{"_run": "a", "MODEL": "r50", "SIZE": 48}, {"_run": "b", "MODEL": "r101", "SIZE": 48}]})
    assert profile_differences("p", root) == []
    write_profile(root, "p", {"01_a": {"X": 2},
                              "05_b": [{"_run": "a", "MODEL": "r50", "SIZE": 64}, {"_run": "b", "MODEL": "r101", "SIZE": 64}]})
    assert profile_differences("p", root) == ["01_a.X: p.yaml 2, notebook default 1",
                                              "05_b.SIZE: p.yaml 64, notebook default 48"]
