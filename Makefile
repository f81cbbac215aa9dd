# The study in two commands: `make report` and `make test`. `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= demo
# make test runs the test files on this many pytest-xdist workers (one per core here; 1 runs them in order).
# --dist loadfile keeps a file's tests, and the module fixtures they share, on one worker.
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile
# The stamp is newer than pyproject.toml once the venv holds what pyproject asks for: the library and
# every extra (`.[all]`: notebooks, report, test, lint); `pip install .` alone is the library and predictor.
STAMP := $(VENV)/.installed

export PYTHONDONTWRITEBYTECODE := 1
# TensorFlow's C++ logs go to stderr before Python can silence them; 2 keeps errors only.
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: help setup git-filter demo notebooks report test test-fast lint bench clean clean-all

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

# The full environment is about 8 GB; pip needs room for it and its unpacked wheels besides.
MIN_FREE_GB ?= 9

$(STAMP): pyproject.toml
	@free=$$(df -Pk $(dir $(abspath $(VENV))) | awk 'NR==2 {print int($$4/1048576)}'); \
	if [ "$$free" -lt "$(MIN_FREE_GB)" ]; then \
		echo "make setup: only $$free GB free on the disk holding $(abspath $(VENV)); the environment needs about $(MIN_FREE_GB) GB." >&2; \
		echo "Free some space (or set VENV to a folder on a larger disk, or MIN_FREE_GB=0 to try anyway)." >&2; \
		exit 1; \
	fi
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing the environment into $(VENV) (about 2 minutes the first time) ..."
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip 2>&1 | grep -v "is ignored: it is neither" || true
	@set -o pipefail; $(PY) -m pip install --quiet --disable-pip-version-check -e '.[all]' 2>&1 \
		| { grep -v "is ignored: it is neither" || true; }
	@$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@$(MAKE) --no-print-directory git-filter
	@touch $(STAMP)

setup: $(STAMP) git-filter ## create .venv and install the project (done by report and test when needed)

# Notebooks saved in Jupyter carry their outputs; this clean filter (see .gitattributes) commits them without.
git-filter: ## install the git filter that strips notebook outputs on commit (python -m helpers.notebook strip)
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
		git config filter.nbstrip.clean "$(PY) -m helpers.notebook strip" && \
		git config filter.nbstrip.smudge cat && \
		echo "git filter nbstrip installed: notebooks are committed without outputs"; \
	fi

demo: $(STAMP) ## build the embedded demo dataset in data/demo (offline, from the LFW faces in scikit-image)
	$(PY) -m helpers.demo --out data/demo/videos

notebooks: demo ## run every notebook headless with papermill (PROFILE=demo by default)
	$(PY) -m helpers.pipeline --profile $(PROFILE)

report: notebooks ## set up, build the demo, run all notebooks and render report/ (HTML and PDF)
	$(PY) -m helpers.report --profile $(PROFILE)

test: $(STAMP) ## run the test suite on TEST_WORKERS cores (realdata tests skip where ../shared/data is absent)
	$(PYTEST)

test-fast: $(STAMP) ## the quick tests: no notebooks, no slow or realdata tests (under a minute on 2 cores)
	$(PYTEST) -m "not slow and not notebook and not realdata"

lint: $(STAMP) ## ruff over helpers, tests, bench, scripts and notebooks (rules in pyproject.toml [tool.ruff])
	$(PY) -m ruff check .

bench: $(STAMP) ## run the benchmarks under bench/ (side-by-side ratios)
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean: ## remove generated data, executed notebooks, figures and the rendered report (keeps .venv)
	rm -rf build data/demo/* data/interim/* data/processed/* figures/*.png report/report.html report/report.pdf report/tables

clean-all: clean ## also remove .venv
	rm -rf $(VENV)
