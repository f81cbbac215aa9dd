"""Run the study's notebooks headless, in order, with papermill and a parameter profile.

    python -m helpers.pipeline --profile demo              # every notebook
    python -m helpers.pipeline --profile dfdc --from 03    # resume a GPU-server run at the split
    python -m helpers.pipeline --only 01,02

A profile, `params/<name>.yaml`, holds one block of parameters per notebook, keyed by the notebook's
name without `.ipynb` (a list of blocks runs the notebook once per block, each block naming its run
with `_run`). Executed copies go to `build/<profile>/`. Papermill only warns on a misspelled
parameter; we refuse it before anything runs.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from helpers.notebook import project_root

RUN_KEY = "_run"


class PipelineError(RuntimeError):
    """A profile that cannot run, or a notebook that failed (the message says which and why)."""


@dataclass
class Run:
    notebook: Path  # the source notebook
    name: str  # the executed copy's name, without .ipynb
    parameters: dict


def list_notebooks(root: Path | None = None) -> list[Path]:
    """The numbered notebooks (`NN_name.ipynb`) in run order."""
    folder = (root or project_root()) / "notebooks"
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def load_profile(profile: str, root: Path | None = None) -> dict:
    """The parameter blocks of `params/<profile>.yaml`, by notebook name."""
    root = root or project_root()
    path = Path(profile) if profile.endswith((".yaml", ".yml")) else root / "params" / f"{profile}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in (root / "params").glob("*.yaml"))
        raise PipelineError(f"profile {path} does not exist; known profiles: {', '.join(known) or 'none'}")
    try:
        blocks = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise PipelineError(f"profile {path} is not valid YAML: {err}") from None
    if not isinstance(blocks, dict):
        raise PipelineError(f"profile {path} must map notebook names to parameter blocks")
    return blocks


def notebook_parameters(path: Path) -> dict:
    """The parameters a notebook declares in its `parameters` cell (via papermill)."""
    import papermill  # noqa: PLC0415 - slow import, only where needed

    return papermill.inspect_notebook(str(path))


def plan_runs(profile: str, only: list[str] | None = None, start: str | None = None,
              root: Path | None = None) -> list[Run]:
    """The runs a profile asks for, after checking every notebook and parameter name in it."""
    root = root or project_root()
    notebooks = {p.stem: p for p in list_notebooks(root)}
    blocks = load_profile(profile, root)

    def resolve(prefix: str) -> str:
        matches = [name for name in notebooks if name == prefix or name.split("_", 1)[0] == prefix]
        if len(matches) != 1:
            raise PipelineError(f"no notebook matches {prefix!r}; notebooks: {', '.join(notebooks)}")
        return matches[0]

    unknown_notebooks = [name for name in blocks if name not in notebooks]
    if unknown_notebooks:
        raise PipelineError(f"profile {profile!r} has blocks for unknown notebooks {unknown_notebooks}; "
                            f"notebooks: {', '.join(notebooks)}")
    selected = list(notebooks)
    if only:
        wanted = {resolve(p) for p in only}
        selected = [n for n in selected if n in wanted]
    if start:
        first = resolve(start)
        selected = [n for n in selected if n >= first]

    runs = []
    for name in selected:
        declared = notebook_parameters(notebooks[name])
        block = blocks.get(name) or {}
        for i, params in enumerate(block if isinstance(block, list) else [block]):
            params = dict(params or {})
            run_name = str(params.pop(RUN_KEY, "")) or (str(i) if isinstance(block, list) else "")
            unknown = sorted(set(params) - set(declared))
            if unknown:
                raise PipelineError(
                    f"profile {profile!r}, notebook {name}: unknown parameter(s) {unknown}; "
                    f"{name}.ipynb declares {sorted(declared)}")
            runs.append(Run(notebooks[name], f"{name}-{run_name}" if run_name else name, params))
    return runs


def execute(run: Run, out_dir: Path, root: Path) -> Path:
    """Execute one run with papermill; raises PipelineError naming the notebook and the error."""
    import papermill  # noqa: PLC0415
    from papermill.exceptions import PapermillExecutionError  # noqa: PLC0415

    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / f"{run.name}.ipynb"
    # the kernel inherits this: progress bars (tqdm, Lightning) would only clutter the executed copy
    os.environ["HELPERS_HEADLESS"] = "1"
    try:
        papermill.execute_notebook(str(run.notebook), str(output), parameters=run.parameters, cwd=str(root),
                                   kernel_name="python3", progress_bar=False, report_mode=False,
                                   # ipykernel warns about its local TCP socket on every start: noise here
                                   extra_arguments=["--IPKernelApp.log_level=ERROR"])
    except PapermillExecutionError as err:
        raise PipelineError(f"notebook {run.notebook.name} ({run.name}) failed in cell {err.exec_count}: "
                            f"{err.ename}: {err.evalue}\n  executed copy with the traceback: {output}") from None
    return output


def run_pipeline(profile: str = "demo", only: list[str] | None = None, start: str | None = None,
                 out_dir: Path | None = None, root: Path | None = None) -> list[Path]:
    """Run the profile's notebooks in order; stop at the first failure. Returns the executed copies."""
    root = root or project_root()
    out_dir = Path(out_dir or root / "build" / Path(profile).stem)
    runs = plan_runs(profile, only, start, root)
    log_path = out_dir / "pipeline.json"
    log = json.loads(log_path.read_text()) if log_path.exists() else {}
    outputs = []
    for run in runs:
        print(f"[{time.strftime('%H:%M:%S')}] {run.name} ...", flush=True)
        started = time.time()
        try:
            outputs.append(execute(run, out_dir, root))
            status = "ok"
        except PipelineError:
            status = "failed"
            raise
        finally:
            log[run.name] = {"status": status, "seconds": round(time.time() - started, 1),
                             "parameters": run.parameters, "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
            out_dir.mkdir(parents=True, exist_ok=True)
            log_path.write_text(json.dumps(log, indent=2, default=str))
        print(f"[{time.strftime('%H:%M:%S')}] {run.name} done in {time.time() - started:.0f} s", flush=True)
    return outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="demo", help="params/<profile>.yaml, or a path to a YAML file (default: demo)")
    parser.add_argument("--only", help="comma-separated notebooks to run, e.g. 01,02")
    parser.add_argument("--from", dest="start", help="start at this notebook, e.g. 03")
    parser.add_argument("--out", type=Path, help="folder for executed copies (default: build/<profile>)")
    args = parser.parse_args(argv)
    only = [p.strip() for p in args.only.split(",")] if args.only else None
    try:
        outputs = run_pipeline(args.profile, only, args.start, args.out)
    except PipelineError as err:
        print(f"pipeline stopped: {err}", file=sys.stderr)
        return 1
    print(f"{len(outputs)} notebook(s) executed; copies in {outputs[0].parent if outputs else '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
