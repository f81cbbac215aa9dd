"""What every notebook's first cell calls: work from the project root, quiet logs, sane threads."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

from helpers.runtime import cpu_count, quiet_tensorflow


def project_root() -> Path:
    """The folder holding pyproject.toml, notebooks/ and helpers/."""
    here = Path(__file__).resolve().parents[1]
    if (here / "pyproject.toml").exists():
        return here
    for folder in [Path.cwd(), *Path.cwd().parents]:  # a non-editable install: look around the cwd
        if (folder / "pyproject.toml").exists() and (folder / "notebooks").is_dir():
            return folder
    raise FileNotFoundError("cannot find the project root (a folder with pyproject.toml and notebooks/)")


def setup(threads: int | None = None) -> Path:
    """Make paths in parameters relative to the project root, whether run in Jupyter or by papermill."""
    root = project_root()
    os.chdir(root)
    quiet_tensorflow()
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")  # Lightning on 2-core machines
    os.environ.setdefault("OMP_NUM_THREADS", str(threads or cpu_count()))
    try:
        import pandas as pd  # noqa: PLC0415

        pd.set_option("display.max_columns", 30)
        pd.set_option("display.width", 160)
        pd.set_option("display.max_colwidth", 80)
    except ImportError:  # pragma: no cover
        pass
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.rcParams.update({"figure.dpi": 100, "savefig.dpi": 120, "savefig.bbox": "tight"})
    except ImportError:  # pragma: no cover
        pass
    return root
