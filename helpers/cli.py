"""`deepfake-study COMMAND [ARGS]`: one console script over the command lines the modules already have.

    deepfake-study pipeline --profile demo                      # python -m helpers.pipeline --profile demo
    deepfake-study predict clip.mp4 --run data/processed/runs/vit-full-s447
    deepfake-study predict --help                               # the command's own options

A command hands the rest of the line to its module's `main(argv)`, so `deepfake-study X` and
`python -m helpers.X` are one program. The module is imported only when its command runs: `--help` is
instant, and a core install (`pip install .`, no extras) runs `predict`, `train` and `demo`; `pipeline`
and `report`, which need an extra, say which one instead of failing with a bare ImportError.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import re
import sys

PROG = "deepfake-study"

# command: (module whose main(argv) runs it, one line for --help)
COMMANDS: dict[str, tuple[str, str]] = {
    "pipeline": ("helpers.pipeline", "run the notebooks headless with papermill, in order, from a profile"),
    "report": ("helpers.report", "render report/ (HTML and PDF) from the executed notebooks"),
    "train": ("helpers.training", "train and test one detector from a run.yaml (how multi-GPU runs go)"),
    "predict": ("helpers.predict", "fake probability of videos, images or dataset roots, from a trained run"),
    "demo": ("helpers.demo", "build the embedded demo dataset (DFDC layout, offline)"),
    "seeds": ("helpers.seed_spread", "retrain a finished run under other seeds: how far its numbers move"),
}


def usage() -> str:
    """The top-level help: every command with its one line."""
    width = max(map(len, COMMANDS))
    lines = [f"usage: {PROG} COMMAND [ARGS...]", "",
             "The deepfake-detection study from a shell. `" + PROG + " COMMAND --help` shows a command's options.",
             "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "`python -m helpers.pipeline` (and .report, .training, .predict, .demo, .seed_spread) runs the same commands."]
    return "\n".join(lines)


def extra_providing(module: str | None) -> str | None:
    """The extra of this project that installs `module` (an import name), read from the installed metadata."""
    if not module:
        return None
    try:
        requirements = importlib.metadata.requires(PROG) or []
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return None
    wanted = _canonical(module.split(".")[0])
    for requirement in requirements:
        # 'weasyprint>=60; extra == "report"'; the `all` extra only points back at the others
        found = re.match(r"\s*([A-Za-z0-9._-]+).*;.*\bextra\s*==\s*['\"]([^'\"]+)['\"]", requirement)
        if found and _canonical(found.group(1)) == wanted and found.group(2) != "all":
            return found.group(2)
    return None


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(argv: list[str] | None = None) -> int:
    """Run `deepfake-study COMMAND [ARGS]`: the command module's main(ARGS), returning its exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"{PROG}: unknown command {command!r}; the commands are {', '.join(COMMANDS)} "
              f"(`{PROG} --help` says what each does)", file=sys.stderr)
        return 2
    module_name = COMMANDS[command][0]
    try:
        # Imported here, not at the top: `predict` must not wait for papermill, nor `--help` for torch.
        module = importlib.import_module(module_name)
        return module.main(rest)
    except ModuleNotFoundError as err:
        extra = extra_providing(err.name)
        if extra is None:
            raise
        print(f"{PROG} {command}: needs the package {err.name!r}, which the core install leaves out; install the "
              f"'{extra}' extra from the project folder: pip install '.[{extra}]' (make setup installs every extra)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
