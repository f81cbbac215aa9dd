"""What every notebook calls: work from the project root, quiet logs, sane threads; inputs checked, a changed
setting handled, and the git filter that keeps notebooks without outputs."""
from __future__ import annotations

import importlib
import inspect
import json
import logging
import os
import sys
import warnings
from pathlib import Path

from helpers.runtime import configure_logging, cpu_count, headless, quiet_tensorflow

logger = logging.getLogger("helpers.notebook")  # not __name__: under `python -m` that is __main__, outside the helpers logger


def project_root() -> Path:
    """The folder holding pyproject.toml, notebooks/ and helpers/."""
    here = Path(__file__).resolve().parents[1]
    if (here / "pyproject.toml").exists():
        return here
    for folder in [Path.cwd(), *Path.cwd().parents]:  # a non-editable install: look around the cwd
        if (folder / "pyproject.toml").exists() and (folder / "notebooks").is_dir():
            return folder
    raise FileNotFoundError("cannot find the project root (a folder with pyproject.toml and notebooks/)")


def show_notices_plainly() -> None:
    """In Jupyter, the helpers loggers' messages as plain "Note: ..." lines under the cell, not a red stderr block;
    headless runs keep them on stderr (LEVEL name: message), which the report leaves out."""
    if not headless():
        configure_logging(stream="stdout", fmt="Note: %(message)s")


def setup(threads: int | None = None) -> Path:
    """Make paths in parameters relative to the project root, whether run in Jupyter or by papermill."""
    root = project_root()
    os.chdir(root)
    quiet_tensorflow()
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")  # Lightning on 2-core machines
    show_notices_plainly()
    os.environ.setdefault("OMP_NUM_THREADS", str(threads or cpu_count()))
    try:
        import pandas as pd  # noqa: PLC0415

        # A raw DataFrame never runs off the page: helpers.display shows the columns that matter.
        pd.set_option("display.max_columns", 10)
        pd.set_option("display.width", 120)
        pd.set_option("display.max_colwidth", 60)
    except ImportError:  # pragma: no cover
        pass
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.rcParams.update({"figure.dpi": 100, "savefig.dpi": 120, "savefig.bbox": "tight"})
    except ImportError:  # pragma: no cover
        pass
    return root


# --- Inputs a notebook needs -------------------------------------------------------------------------------

class MissingInput(FileNotFoundError):
    """An input a notebook reads is absent; the message says what makes it."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows this instead of a traceback: the frames of helpers code would only hide the message.
        return [f"MissingInput: {self}"]


def require(fix: str, **paths) -> None:
    """Raise MissingInput unless every path (PARAMETER_NAME=path; "" skips one) exists; `fix` says what makes it."""
    for name, path in paths.items():
        if path and not Path(path).exists():
            raise MissingInput(f"{name} = {str(path)!r} does not exist (paths are relative to the project root, "
                               f"{project_root().name}/): {fix}")


# --- A changed setting in a data stage -------------------------------------------------------------------

ON_CHANGE = ("redo", "refuse")
# Each data stage and the function that turns its keyword arguments into the settings its settings.json records.
STAGE_SETTINGS = {"sample_frames": ("frames", "helpers.frames", "frame_settings"),
                  "extract_faces": ("faces", "helpers.faces", "face_settings")}


def _settings_record(out_dir: Path) -> dict | None:
    try:
        record = json.loads((Path(out_dir) / "settings.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("settings"), dict) else None


def _settings_now(stage, kwargs: dict) -> dict | None:
    """The settings a stage would record for `kwargs` (None when unknown): only used to say what changed."""
    entry = STAGE_SETTINGS.get(stage.__name__)
    if entry is None:
        return None
    function = getattr(importlib.import_module(entry[1]), entry[2])
    accepted = inspect.signature(function).parameters
    try:
        return json.loads(json.dumps(function(**{k: v for k, v in kwargs.items() if k in accepted}), default=str))
    except (TypeError, ValueError):
        return None


def redo_on_change(stage, videos_or_frames, out_dir, *, on_change: str = "redo", **kwargs):
    """Run a data stage (frames.sample_frames, faces.extract_faces) the way a notebook wants a changed setting handled.

    Same settings as OUT_DIR's settings.json: the stage resumes (finished items are reused). Other settings:
    with on_change "redo" the earlier results of this stage are deleted and made again (the notebook says
    which settings changed); with "refuse" the stage stops with SettingsChanged, naming them, so hours of
    DFDC extraction are never deleted by a typo (the dfdc profile's choice). A SHARD never redoes on its
    own: the other shards' work would go with it.
    """
    from helpers.manifest import SettingsChanged  # noqa: PLC0415 - manifest pulls in pandas

    if on_change not in ON_CHANGE:
        raise ValueError(f"ON_CHANGE must be one of {ON_CHANGE}, got {on_change!r}")
    try:
        return stage(videos_or_frames, out_dir, **kwargs)
    except SettingsChanged:
        entry = STAGE_SETTINGS.get(stage.__name__, (stage.__module__.rsplit(".", 1)[-1],))
        record = _settings_record(Path(out_dir))
        # Only results of this very stage, readable and made with other settings, are redone; anything else
        # (another stage's folder, a damaged settings.json, a shard) keeps the stage's own refusal.
        if on_change == "refuse" or kwargs.get("shard") or record is None or record.get("stage") != entry[0]:
            raise
    now = _settings_now(stage, kwargs)
    changed = "; ".join(f"{k.upper()} {record['settings'].get(k)!r} there, {now.get(k)!r} now"
                        for k in sorted(set(record["settings"]) | set(now or {}))
                        if now is not None and record["settings"].get(k) != now.get(k)) or "other settings"
    logger.info(f"{out_dir} held {entry[0]} made with other settings ({changed}): ON_CHANGE = \"redo\", so they are "
                "deleted and made again (ON_CHANGE = \"refuse\" would stop instead).")
    return stage(videos_or_frames, out_dir, **{**kwargs, "fresh": True})


# --- Notebooks without outputs in git ------------------------------------------------------------------

KEEP_CELL_METADATA = ("tags",)


def strip_outputs(nb: dict) -> dict:
    """The notebook (its JSON as a dict) without outputs, execution counts, widget state or run metadata."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        cell["metadata"] = {k: v for k, v in cell.get("metadata", {}).items() if k in KEEP_CELL_METADATA}
    metadata = {k: v for k, v in nb.get("metadata", {}).items() if k in ("kernelspec", "language_info")}
    if "language_info" in metadata:  # Jupyter records the Python version, which differs on every machine
        metadata["language_info"] = {"name": metadata["language_info"].get("name", "python")}
    nb["metadata"] = metadata
    return nb


def stripped_text(text: str) -> str:
    """A notebook file's text with its outputs stripped, laid out as Jupyter saves it; other text unchanged."""
    try:
        nb = json.loads(text)
    except ValueError:  # not JSON (a merge conflict in progress, say): git keeps it as it is
        return text
    if not isinstance(nb, dict) or "cells" not in nb:
        return text
    # nbformat's layout (sorted keys, one-space indent); plain json so that no cell id is invented.
    return json.dumps(strip_outputs(nb), sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """`python -m helpers.notebook strip [FILES]`: the git clean filter (stdin to stdout), or strip files in place."""
    import argparse  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="python -m helpers.notebook",
                                     description="Strip outputs from notebooks (the git filter `make setup` installs).")
    parser.add_argument("command", choices=["strip"])
    parser.add_argument("files", nargs="*", type=Path, help="notebooks to strip in place (none: stdin to stdout)")
    args = parser.parse_args(argv)
    if not args.files:
        sys.stdout.write(stripped_text(sys.stdin.read()))
        return 0
    for path in args.files:
        path.write_text(stripped_text(path.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
