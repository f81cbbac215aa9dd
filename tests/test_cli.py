"""The `deepfake-study` console script: its help, its forwarding to each module's main, and its errors."""
from __future__ import annotations

import ast
import importlib
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import cli

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_help_lists_every_command_on_one_line(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, (_, text) in cli.COMMANDS.items():
        assert [line for line in out.splitlines() if line.split()[:1] == [name]] == [f"  {name:<8}  {text}"]
    assert set(cli.COMMANDS) == {"pipeline", "report", "train", "predict", "demo", "seeds"}


def test_no_command_prints_the_usage_and_fails(capsys):
    assert cli.main([]) == 2
    assert "usage: deepfake-study COMMAND" in capsys.readouterr().err


def test_an_unknown_command_is_refused_naming_the_commands(capsys):
    assert cli.main(["trian", "--config", "run.yaml"]) == 2
    err = capsys.readouterr().err
    assert "'trian'" in err and "train" in err and "predict" in err


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_command_help_is_the_module_own_help(command, capsys):
    module = importlib.import_module(cli.COMMANDS[command][0])
    with pytest.raises(SystemExit) as own:
        module.main(["--help"])
    expected = capsys.readouterr().out
    with pytest.raises(SystemExit) as forwarded:
        cli.main([command, "--help"])
    assert forwarded.value.code == own.value.code == 0
    assert capsys.readouterr().out == expected
    assert expected.startswith(f"usage: python -m {module.__name__}")


def test_predict_help_shows_predict_options(capsys):
    with pytest.raises(SystemExit):
        cli.main(["predict", "--help"])
    out = capsys.readouterr().out
    assert "--run RUN_DIR" in out and "--frames" in out


def test_arguments_and_exit_status_are_forwarded(capsys):
    assert cli.main(["train", "--dump", "--set", "epochs=3", "model=vit"]) == 0
    out = capsys.readouterr().out
    assert "epochs: 3" in out.splitlines() and "model: vit" in out.splitlines()
    # training's own refusal (a KEY=VALUE without "=") comes back as its status, 2
    assert cli.main(["train", "--set", "epochs"]) == 2
    assert capsys.readouterr().err.startswith("training:")


def test_a_missing_extra_is_named(monkeypatch, capsys):
    if cli.extra_providing("nbformat") is None:
        pytest.skip("the project's metadata is not installed (make setup, or pip install -e .)")
    # A core install: nbformat (the report extra) cannot be imported, and helpers.report is not loaded yet.
    monkeypatch.setitem(sys.modules, "nbformat", None)
    monkeypatch.delitem(sys.modules, "helpers.report", raising=False)
    assert cli.main(["report", "--no-pdf"]) == 1
    err = capsys.readouterr().err
    assert "'nbformat'" in err and "pip install '.[report]'" in err


def test_a_missing_module_of_no_extra_is_not_hidden(monkeypatch):
    monkeypatch.setitem(sys.modules, "yaml", None)  # a core dependency: a broken install, not a missing extra
    monkeypatch.delitem(sys.modules, "helpers.pipeline", raising=False)
    with pytest.raises(ModuleNotFoundError, match="yaml"):
        cli.main(["pipeline", "--help"])


def test_extra_providing_reads_the_extras():
    if cli.extra_providing("weasyprint") is None:
        pytest.skip("the project's metadata is not installed (make setup, or pip install -e .)")
    assert cli.extra_providing("weasyprint") == "report"
    assert cli.extra_providing("papermill") == "notebooks"
    assert cli.extra_providing("numpy") is None  # a core dependency
    assert cli.extra_providing(None) is None


def test_the_console_script_is_declared_and_installed():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"deepfake-study": "helpers.cli:main"}
    installed = importlib.metadata.entry_points(group="console_scripts", name="deepfake-study")
    if not installed:
        pytest.skip("the project's metadata is not installed (make setup, or pip install -e .)")
    assert next(iter(installed)).load() is cli.main


def test_python_m_helpers_cli_runs_without_loading_torch_or_papermill():
    code = ("import sys, helpers.cli; helpers.cli.main(['--help']); "
            "print(sorted(m for m in ('torch', 'tensorflow', 'papermill', 'nbformat') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("[]")
    result = subprocess.run([sys.executable, "-m", "helpers.cli", "--help"], capture_output=True, text=True,
                            cwd=ROOT, timeout=60)
    assert result.returncode == 0 and "predict" in result.stdout, result.stderr


def _logger_names(path: Path) -> list[ast.expr]:
    """The arguments of the module-level `logging.getLogger(...)` calls in `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [node.value.args[0] for node in tree.body if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call) and ast.unparse(node.value.func) == "logging.getLogger"
            and node.value.args]


def test_modules_run_with_python_m_log_under_the_helpers_logger():
    """Under `python -m helpers.X`, __name__ is __main__: a getLogger(__name__) there would miss the helpers
    handler and its messages (the pipeline's progress, predict's start-up) would vanish from the console."""
    root = Path(__file__).resolve().parents[1] / "helpers"
    checked = 0
    for path in sorted(root.rglob("*.py")):
        module = ".".join(path.relative_to(root.parent).with_suffix("").parts)
        runs_as_main = "__name__ == \"__main__\"" in path.read_text(encoding="utf-8")
        for arg in _logger_names(path):
            checked += 1
            if isinstance(arg, ast.Constant):
                assert arg.value == module, f"{path.name}: getLogger({arg.value!r}) should name its module {module!r}"
            else:
                assert not runs_as_main, f"{path.name} runs with python -m: name its logger {module!r}, not __name__"
    assert checked >= 8

