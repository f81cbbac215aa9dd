"""Run the study's notebooks headless, in order, with papermill and a parameter profile.

    python -m helpers.pipeline --profile demo              # every notebook
    python -m helpers.pipeline --profile dfdc --from 03    # resume a GPU-server run at the split
    python -m helpers.pipeline --only 01,02

    python -m helpers.pipeline --profile dfdc --set 04_vit.EPOCHS=1 --set 05.IMAGE_SIZE=64

A profile, `params/<name>.yaml`, holds one block of parameters per notebook, keyed by the notebook's
name without `.ipynb` (a list of blocks runs the notebook once per block, each block naming its run
with `_run`). Executed copies go to `build/<profile>/`. Papermill only warns on a misspelled
parameter; we refuse it before anything runs, and we check each value against the type its notebook
declares (`VAR: int = 1`): an int where a float is declared is fine, a bool is not an int, the string
"0.15" is not a float, null is refused unless the annotation allows None (`str | None`).

Overrides (`--set`, repeatable) change a profile's value without editing the file:
    --set NOTEBOOK.PARAM=VALUE         NOTEBOOK: its full name (04_vit) or its number (04)
    --set NOTEBOOK[RUN].PARAM=VALUE    one entry of a list block, by its _run name or 0-based position
VALUE is parsed as YAML (1 -> int, 0.5 -> float, true -> bool, [a, b] -> list, "1" -> str). Without
[RUN], an override applies to every entry of a list block; a notebook without a block gets one.
Overrides are checked like the profile: names against the notebook's parameters, values against their
types.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from helpers.notebook import project_root

logger = logging.getLogger("helpers.pipeline")  # not __name__: under `python -m` that is __main__, outside the helpers logger

RUN_KEY = "_run"
OVERRIDE = re.compile(r"^(?P<notebook>[^.\[\]=]+)(?:\[(?P<run>[^\]]*)\])?\.(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$",
                      re.DOTALL)


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


# --- parameter types ------------------------------------------------------------------------------------

_SCALARS = {"int": "a whole number (int)", "float": "a number (float)", "str": "a string (str)",
            "bool": "true or false (bool)", "list": "a list", "dict": "a mapping (dict)", "tuple": "a list"}


def _split_top(text: str, sep: str) -> list[str]:
    """Split `text` on `sep` outside brackets."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char == "["
        depth -= char == "]"
        if char == sep and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


def type_problem(value, annotation: str | None) -> str | None:
    """Why `value` does not fit a parameter annotated `annotation` (papermill's inferred_type_name), or None.

    Known: int, float (an int is fine), str, bool, list / list[T] / List[T], dict, tuple, Optional[T],
    `T | None`, Union[...]. Anything else (no annotation, a custom type) is not checked.
    """
    text = (annotation or "").strip().replace("typing.", "")
    if not text or text in ("None", "Any", "object"):
        return None
    options = [t.strip() for t in _split_top(text, "|")]
    if len(options) == 1:
        match = re.fullmatch(r"(Optional|Union)\[(.*)\]", text)
        if match:
            inner = [t.strip() for t in _split_top(match.group(2), ",")]
            options = inner + (["None"] if match.group(1) == "Optional" else [])
    if len(options) > 1:
        if value is None and "None" in options:
            return None
        problems = [type_problem(value, option) for option in options if option != "None"]
        if any(p is None for p in problems):
            return None
        wanted = " or ".join(_SCALARS.get(o, o) for o in options)
        return f"must be {wanted}"
    match = re.fullmatch(r"(list|List|tuple|Tuple|Sequence)\[(.*)\]", text)
    base, item = (match.group(1).lower(), match.group(2).strip()) if match else (text, None)
    base = {"sequence": "list", "tuple": "list"}.get(base, base)
    checks = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
              "str": lambda v: isinstance(v, str),
              "bool": lambda v: isinstance(v, bool),
              "list": lambda v: isinstance(v, list),
              "dict": lambda v: isinstance(v, dict)}
    if base not in checks:
        return None
    if not checks[base](value):
        hint = ""
        if base == "float" and isinstance(value, str):
            hint = " (YAML reads 1e-3 and quoted numbers as strings: write 0.001 or 1.0e-3, unquoted)"
        elif value is None:
            hint = " (YAML null: write \"\" for an empty string)" if base == "str" else ""
        return f"must be {_SCALARS[base]}{hint}"
    if base == "list" and item:
        for i, element in enumerate(value):
            problem = type_problem(element, item)
            if problem:
                return f"item {i} ({element!r}) {problem}"
    return None


def _describe(value) -> str:
    return "null" if value is None else f"{value!r} ({type(value).__name__})"


def check_parameters(params: dict, declared: dict, where: str, notebook: str) -> None:
    """Refuse unknown names and values of the wrong type, naming `where` (the profile) and the notebook."""
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise PipelineError(f"{where}, notebook {notebook}: unknown parameter(s) {unknown}; "
                            f"{notebook}.ipynb declares {sorted(declared)}")
    for name, value in params.items():
        annotation = declared[name].get("inferred_type_name")
        problem = type_problem(value, annotation)
        if problem:
            raise PipelineError(f"{where}, notebook {notebook}: {name} {problem}, got {_describe(value)}; "
                                f"{notebook}.ipynb declares {name}: {annotation} = {declared[name].get('default')}")


# --- overrides -------------------------------------------------------------------------------------------

def parse_override(text: str) -> tuple[str, str | None, str, object]:
    """`NOTEBOOK[RUN].PARAM=VALUE` as (notebook, run or None, param, YAML-parsed value)."""
    match = OVERRIDE.match(text.strip())
    if not match:
        raise PipelineError(f"--set {text!r}: expected NOTEBOOK.PARAM=VALUE or NOTEBOOK[RUN].PARAM=VALUE, "
                            "e.g. --set 04_vit.EPOCHS=1 or --set 05_resnet[resnet50].EPOCHS=1")
    try:
        value = yaml.safe_load(match["value"]) if match["value"].strip() else ""
    except yaml.YAMLError as err:
        raise PipelineError(f"--set {text!r}: the value is not valid YAML ({err})") from None
    return match["notebook"].strip(), match["run"], match["name"], value


def apply_overrides(blocks: dict, overrides: list[str], resolve) -> dict:
    """The profile's blocks with each --set applied (a copy); `resolve` maps a notebook prefix to its name."""
    blocks = {k: ([dict(e) if isinstance(e, dict) else e for e in v] if isinstance(v, list)
                  else dict(v) if isinstance(v, dict) else v) for k, v in blocks.items()}
    for text in overrides or []:
        prefix, run, name, value = parse_override(text)
        notebook = resolve(prefix)
        if name == RUN_KEY:
            raise PipelineError(f"--set {text!r}: {RUN_KEY} names a run; it cannot be overridden")
        block = blocks.get(notebook)
        if block is None:
            block = blocks[notebook] = [] if run is not None else {}
        if isinstance(block, list):
            if run is None:
                targets = [e for e in block if isinstance(e, dict)]
            else:
                targets = [e for i, e in enumerate(block) if isinstance(e, dict)
                           and (str(e.get(RUN_KEY, "")) == run or (run.isdigit() and int(run) == i))]
                if not targets:
                    names = [str(e.get(RUN_KEY, i)) for i, e in enumerate(block) if isinstance(e, dict)]
                    raise PipelineError(f"--set {text!r}: notebook {notebook} has no run {run!r}; its runs: {names}")
            for entry in targets:
                entry[name] = value
        elif isinstance(block, dict):
            if run is not None:
                raise PipelineError(f"--set {text!r}: notebook {notebook} runs once (its block is not a list), so "
                                    f"[{run}] names nothing; write --set {notebook}.{name}=...")
            block[name] = value
    return blocks


def plan_runs(profile: str, only: list[str] | None = None, start: str | None = None,
              root: Path | None = None, overrides: list[str] | None = None) -> list[Run]:
    """The runs a profile asks for (with `overrides`, see --set), after checking every notebook, name and type."""
    root = root or project_root()
    notebooks = {p.stem: p for p in list_notebooks(root)}
    blocks = load_profile(profile, root)
    where = f"profile {profile!r}"

    def resolve(prefix: str) -> str:
        matches = [name for name in notebooks if name == prefix or name.split("_", 1)[0] == prefix]
        if len(matches) != 1:
            raise PipelineError(f"no notebook matches {prefix!r}; notebooks: {', '.join(notebooks)}")
        return matches[0]

    unknown_notebooks = [name for name in blocks if name not in notebooks]
    if unknown_notebooks:
        raise PipelineError(f"{where} has blocks for unknown notebooks {unknown_notebooks}; "
                            f"notebooks: {', '.join(notebooks)}")
    blocks = apply_overrides(blocks, overrides or [], resolve)
    if overrides:
        where += " with --set " + " ".join(overrides)
    selected = list(notebooks)
    if only:
        wanted = {resolve(p) for p in only}
        selected = [n for n in selected if n in wanted]
    if start:
        first = resolve(start)
        selected = [n for n in selected if n >= first]

    # Every block is checked, not only the selected ones: a typo found after hours of training helps no one.
    runs = []
    for name in notebooks:
        block = blocks.get(name)
        if block is None:
            block = {}
        if not isinstance(block, (dict, list)):
            raise PipelineError(f"{where}, notebook {name}: the block must be a mapping of parameters (or a list of "
                                f"them), got {_describe(block)}")
        if name not in blocks and name not in selected:
            continue
        declared = notebook_parameters(notebooks[name])
        entries = block if isinstance(block, list) else [block]
        for i, params in enumerate(entries):
            if not isinstance(params, dict):
                raise PipelineError(f"{where}, notebook {name}: entry {i} of its list is {_describe(params)}, not a "
                                    "mapping of parameters (write `- _run: name` then `  PARAM: value` lines)")
            params = dict(params)
            run_name = str(params.pop(RUN_KEY, "") or "") or (str(i) if isinstance(block, list) else "")
            check_parameters(params, declared, where, name)
            if name in selected:
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
                 out_dir: Path | None = None, root: Path | None = None,
                 overrides: list[str] | None = None) -> list[Path]:
    """Run the profile's notebooks in order (with --set `overrides`); stop at the first failure.

    Returns the executed copies.
    """
    root = root or project_root()
    out_dir = Path(out_dir or root / "build" / Path(profile).stem)
    runs = plan_runs(profile, only, start, root, overrides)
    log_path = out_dir / "pipeline.json"
    log = json.loads(log_path.read_text()) if log_path.exists() else {}
    outputs = []
    for run in runs:
        logger.info(f"[{time.strftime('%H:%M:%S')}] {run.name} ...")
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
        logger.info(f"[{time.strftime('%H:%M:%S')}] {run.name} done in {time.time() - started:.0f} s")
    return outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.pipeline", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Overrides" + __doc__.split("Overrides", 1)[1])
    parser.add_argument("--profile", default="demo", help="params/<profile>.yaml, or a path to a YAML file (default: demo)")
    parser.add_argument("--only", help="comma-separated notebooks to run, e.g. 01,02")
    parser.add_argument("--from", dest="start", help="start at this notebook, e.g. 03")
    parser.add_argument("--out", type=Path, help="folder for executed copies (default: build/<profile>)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="NOTEBOOK[RUN].PARAM=VALUE",
                        help="override one parameter (repeatable), e.g. --set 04_vit.EPOCHS=1 or "
                             "--set 05_resnet[resnet50].EPOCHS=1; VALUE is YAML; without [RUN] every entry of a "
                             "list block gets it")
    args = parser.parse_args(argv)
    only = [p.strip() for p in args.only.split(",")] if args.only else None
    try:
        outputs = run_pipeline(args.profile, only, args.start, args.out, overrides=args.overrides)
    except PipelineError as err:
        print(f"pipeline stopped: {err}", file=sys.stderr)
        return 1
    print(f"{len(outputs)} notebook(s) executed; copies in {outputs[0].parent if outputs else '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
