"""Packaging that tells the truth: what the code imports is what pyproject.toml declares, and the reverse.

The imports are read with `ast` from helpers/, bench/, scripts/ and tests/; an import name is mapped to the
distribution that provides it with `importlib.metadata`. An import inside `try: ... except ImportError`
or through `pytest.importorskip` is optional (the code runs without it) and need not be declared.
"""
from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "deepfake-study"

# Declared but imported nowhere, and why they are declared all the same.
NOT_IMPORTED = {
    "lz4": "joblib needs it to read the mtcnn wheel's .lz4 weight pickles (helpers.mtcnn_torch)",
    "tabulate": "pandas.DataFrame.to_markdown imports it (the report tables)",
    "ipykernel": "the notebooks' kernel, which papermill and Jupyter start",
    "jupyter": "the Jupyter front end the README opens the notebooks in",
    "ruff": "a command-line tool, run by make lint",
    "pytest-xdist": "a pytest plugin: make test and make test-fast spread the test files over the cores (-n)",
}

# helpers modules that a core install (`pip install .`) cannot import: they are for the extras named here.
EXTRA_ONLY_MODULES = {"helpers.report": ("report",)}

# Calls that import a module named by a string: (function name, whether the code runs without it).
IMPORT_CALLS = {"importorskip": True, "import_module": False, "find_spec": False}


@dataclass(frozen=True)
class Import:
    name: str        # top-level module name: "sklearn" for `from sklearn.metrics import roc_auc_score`
    full: str        # the whole dotted name
    path: Path
    line: int
    lazy: bool       # inside a function: only runs when it is called
    optional: bool   # guarded by `except ImportError`, or pytest.importorskip
    names: tuple[str, ...] = ()  # what `from X import a, b` takes from X

    def where(self) -> str:
        path = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{path}:{self.line}"


def canonical(name: str) -> str:
    """A distribution name as PyPI compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def source_files() -> list[Path]:
    """The Python files whose imports must be declared."""
    return sorted([*(ROOT / "helpers").rglob("*.py"), *(ROOT / "bench").glob("*.py"),
                   *(ROOT / "scripts").glob("*.py"), *(ROOT / "tests").glob("*.py")])


def local_modules() -> set[str]:
    """Top-level names that are this project's own: the package, the tests, scripts put on sys.path."""
    return {"helpers", "tests", *(p.stem for d in ("bench", "scripts", "tests") for p in (ROOT / d).glob("*.py"))}


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    names = {t.id if isinstance(t, ast.Name) else t.attr if isinstance(t, ast.Attribute) else None for t in types}
    return bool(names & {"ImportError", "ModuleNotFoundError"})


def read_imports(path: Path) -> list[Import]:
    """Every absolute import in a file: statements, and import calls with a literal module name."""
    found: list[Import] = []

    def record(full: str, node: ast.AST, lazy: bool, optional: bool, names: tuple[str, ...] = ()) -> None:
        found.append(Import(full.split(".")[0], full, path, node.lineno, lazy, optional, names))

    def visit(node: ast.AST, lazy: bool, optional: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                record(alias.name, node, lazy, optional)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            record(node.module, node, lazy, optional, tuple(a.name for a in node.names))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            if func in IMPORT_CALLS:
                record(node.args[0].value, node, lazy, optional or IMPORT_CALLS[func])
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            lazy = True
        if isinstance(node, ast.Try):
            guarded = optional or any(_catches_import_error(h) for h in node.handlers)
            for statement in node.body:
                visit(statement, lazy, guarded)
            for part in (*node.handlers, *node.orelse, *node.finalbody):
                visit(part, lazy, optional)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, lazy, optional)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)), False, False)
    return found


@functools.lru_cache(maxsize=1)
def module_distributions() -> dict[str, frozenset[str]]:
    """Import name -> the installed distributions (canonical names) that provide it."""
    mapping: dict[str, set[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        mapping.setdefault(module, set()).update(map(canonical, dists))
    # Also from each distribution's files: a top_level.txt can be incomplete (dlib-bin's names only
    # `_dlib_pybind11`, not the `dlib` package it installs beside it).
    for dist in importlib.metadata.distributions():
        name = canonical(dist.metadata["Name"])
        for top in {f.parts[0] if len(f.parts) > 1 else f.name.split(".")[0] for f in dist.files or ()}:
            if top.isidentifier() and top != "__pycache__":
                mapping.setdefault(top, set()).add(name)
    return {module: frozenset(dists) for module, dists in mapping.items()}


def declared_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[tuple[Requirement, str]]:
    """Every requirement of pyproject.toml with where it is declared ("dependencies" or "extra NAME")."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    found = [(Requirement(r), "dependencies") for r in project.get("dependencies", [])]
    for extra, requirements in project.get("optional-dependencies", {}).items():
        found += [(Requirement(r), f"extra {extra}") for r in requirements]
    return [(r, where) for r, where in found if canonical(r.name) != PROJECT]  # `all` names the project's extras


def undeclared_imports(paths: list[Path], declared: set[str]) -> list[str]:
    """One line per third-party import in these files whose distribution is not among `declared`."""
    mapping, local = module_distributions(), local_modules()
    problems = []
    for path in paths:
        for imp in read_imports(path):
            if imp.optional or imp.name in local or imp.name in sys.stdlib_module_names or imp.name == "__future__":
                continue
            dists = mapping.get(imp.name)
            if not dists and canonical(imp.name) in declared:
                continue  # declared under its import name for another platform or Python (tomli on 3.10)
            if not dists:
                problems.append(f"{imp.where()} imports {imp.full}, which no installed distribution provides: declare "
                                f"the package that does in pyproject.toml and run make setup")
            elif not dists & declared:
                problems.append(f"{imp.where()} imports {imp.full} (distribution {', '.join(sorted(dists))}), which "
                                f"pyproject.toml does not declare: add it to [project] dependencies, or to an extra")
    return problems


def test_every_third_party_import_is_declared():
    declared = {canonical(r.name) for r, _ in declared_requirements()}
    problems = undeclared_imports(source_files(), declared)
    assert not problems, "\n".join(problems)


def test_the_checker_reports_an_undeclared_import(tmp_path):
    stray = tmp_path / "stray.py"
    stray.write_text(
        "import os\n"                        # stdlib
        "import numpy as np\n"               # declared
        "from helpers import metrics\n"      # the project's own
        "from . import sibling\n"            # relative: the project's own
        "import pluggy\n"                    # installed (pytest needs it) but not declared
        "try:\n"
        "    import iniconfig\n"             # optional: the code runs without it
        "except ImportError:\n"
        "    iniconfig = None\n"
        "\n"
        "def later():\n"
        "    import no_such_package_here\n"  # lazy still counts, and nothing provides it
    )
    declared = {canonical(r.name) for r, _ in declared_requirements()}
    problems = undeclared_imports([stray], declared)
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"{stray}:5 imports pluggy (distribution pluggy)")
    assert "does not declare" in problems[0]
    assert problems[1].startswith(f"{stray}:12 imports no_such_package_here, which no installed distribution")
    # and declaring the package silences it
    assert undeclared_imports([stray], declared | {"pluggy"}) == [problems[1]]


def unused_declarations(requirements: list[tuple[Requirement, str]], imported: set[str],
                        not_imported: dict[str, str]) -> list[str]:
    """One line per requirement installed here whose modules nothing imports, unless `not_imported` says why."""
    modules_of: dict[str, set[str]] = {}
    for module, dists in module_distributions().items():
        for dist in dists:
            modules_of.setdefault(dist, set()).add(module)
    problems = []
    for requirement, where in requirements:
        name = canonical(requirement.name)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue  # not for this platform (tensorflow vs tensorflow-cpu, tomli): its modules are not here
        try:
            importlib.metadata.distribution(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{requirement} ({where}) is declared but not installed here: run make setup")
            continue
        modules = modules_of.get(name, set())  # none for a metapackage such as jupyter
        if not modules & imported and name not in not_imported:
            problems.append(f"{requirement} ({where}) is declared, but nothing imports its modules "
                            f"({', '.join(sorted(modules)) or 'it has none'}): remove it from pyproject.toml, or add "
                            f"it to NOT_IMPORTED in {Path(__file__).name} with the reason it is needed")
        elif modules & imported and name in not_imported:
            problems.append(f"{name} is imported now: remove it from NOT_IMPORTED in {Path(__file__).name}")
    declared = {canonical(r.name) for r, _ in requirements}
    problems += [f"NOT_IMPORTED names {name}, which pyproject.toml does not declare" for name in not_imported
                 if name not in declared]
    return problems


def test_every_declared_distribution_is_imported_or_says_why_not():
    imported = {imp.name for path in source_files() for imp in read_imports(path)}
    problems = unused_declarations(declared_requirements(), imported, NOT_IMPORTED)
    assert not problems, "\n".join(problems)


def test_the_checker_reports_an_unused_declaration():
    requirements = [(Requirement("numpy>=2"), "dependencies"), (Requirement("pluggy"), "extra test"),
                    (Requirement("tabulate"), "dependencies"),
                    (Requirement("no-such-distribution; sys_platform == 'nowhere'"), "dependencies")]
    problems = unused_declarations(requirements, {"numpy", "os"}, {"tabulate": "used by name", "lz4": "stale"})
    assert len(problems) == 2, problems
    assert problems[0].startswith("pluggy (extra test) is declared, but nothing imports its modules (pluggy)")
    assert problems[1] == "NOT_IMPORTED names lz4, which pyproject.toml does not declare"
    # a reason that no longer holds is reported too
    assert unused_declarations(requirements[:1], {"numpy"}, {"numpy": "old reason"}) == [
        f"numpy is imported now: remove it from NOT_IMPORTED in {Path(__file__).name}"]


def module_name(path: Path, root: Path = ROOT) -> str:
    """helpers/models/zoo.py -> helpers.models.zoo; helpers/models/__init__.py -> helpers.models."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def extra_imports_at_load(files: dict[str, Path], requirements: list[tuple[Requirement, str]],
                          extra_only: dict[str, tuple[str, ...]]) -> list[str]:
    """One line per helpers module that, on import, runs an import of a package only an extra installs.

    Imports inside functions do not count (they run when the function does), and neither do optional
    ones; imports of other helpers modules are followed, since they load that module's imports too.
    """
    core = {canonical(r.name) for r, where in requirements if where == "dependencies"}
    extra_of = {canonical(r.name): where.removeprefix("extra ") for r, where in requirements if where != "dependencies"}
    mapping = module_distributions()
    eager = {module: [i for i in read_imports(path) if not i.lazy and not i.optional] for module, path in files.items()}

    def needs(module: str, seen: set[str]) -> list[tuple[Import, str]]:
        seen.add(module)
        found = []
        for imp in eager[module]:
            if imp.name == "helpers":
                # `from helpers.models import zoo` loads helpers, helpers.models and helpers.models.zoo
                parts = imp.full.split(".")
                targets = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
                targets += [f"{imp.full}.{name}" for name in imp.names]
                found += [x for t in targets if t in eager and t not in seen for x in needs(t, seen)]
                continue
            dists = mapping.get(imp.name, frozenset())
            if not dists & core:
                found += [(imp, d) for d in sorted(dists) if d in extra_of]
        return found

    problems = []
    for module in sorted(files):
        for imp, dist in needs(module, set()):
            if extra_of[dist] not in extra_only.get(module, ()):
                problems.append(f"{imp.where()} imports {imp.full} when {module} loads, but {dist} is only in the "
                                f"'{extra_of[dist]}' extra, so `pip install .` cannot import {module}: import it "
                                f"inside the function that needs it, or list {module} in EXTRA_ONLY_MODULES")
    return problems


def test_a_core_install_can_import_the_library():
    """Module-level imports of helpers need only the core dependencies, except in the extras' own modules."""
    files = {module_name(p): p for p in (ROOT / "helpers").rglob("*.py")}
    problems = extra_imports_at_load(files, declared_requirements(), EXTRA_ONLY_MODULES)
    assert not problems, "\n".join(problems)


def test_the_checker_reports_an_extra_imported_at_load(tmp_path):
    package = tmp_path / "helpers"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "render.py").write_text("import numpy\nimport weasyprint\n")            # an extra, at the top
    (package / "lazy.py").write_text("def pdf():\n    import weasyprint\n")           # an extra, lazily: fine
    (package / "user.py").write_text("from helpers.render import something\n")        # loads render's imports
    files = {module_name(p, tmp_path): p for p in package.glob("*.py")}
    requirements = [(Requirement("numpy"), "dependencies"), (Requirement("weasyprint"), "extra report")]
    problems = extra_imports_at_load(files, requirements, {})
    assert [p.split(" when ")[1].split(" loads")[0] for p in problems] == ["helpers.render", "helpers.user"]
    assert problems[0].startswith(f"{package / 'render.py'}:2 imports weasyprint")
    assert "only in the 'report' extra" in problems[0]
    assert extra_imports_at_load(files, requirements, {"helpers.render": ("report",)}) == [problems[1]]


PLATFORMS = {
    "linux x86_64": {"sys_platform": "linux", "platform_machine": "x86_64", "platform_system": "Linux"},
    "linux aarch64": {"sys_platform": "linux", "platform_machine": "aarch64", "platform_system": "Linux"},
    "macos arm64": {"sys_platform": "darwin", "platform_machine": "arm64", "platform_system": "Darwin"},
    "windows": {"sys_platform": "win32", "platform_machine": "AMD64", "platform_system": "Windows"},
}


@pytest.mark.parametrize("platform", PLATFORMS)
def test_exactly_one_tensorflow_on_every_platform(platform):
    """tensorflow-cpu where it has wheels (Linux x86_64, Windows), tensorflow elsewhere: one, never both."""
    tensorflows = [r for r, where in declared_requirements() if where == "dependencies"
                   and canonical(r.name) in {"tensorflow", "tensorflow-cpu"}]
    chosen = [canonical(r.name) for r in tensorflows if r.marker is None or r.marker.evaluate(PLATFORMS[platform])]
    assert chosen == (["tensorflow-cpu"] if platform in ("linux x86_64", "windows") else ["tensorflow"])


def test_make_setup_installs_every_extra():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (everything,) = extras["all"]
    assert Requirement(everything).extras == set(extras) - {"all"}, "the `all` extra must list every other extra"
    assert "-e '.[all]'" in (ROOT / "Makefile").read_text()
    assert "-e .[all]" in (ROOT / "environment.yml").read_text()
