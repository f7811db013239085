# The README's two commands: `make train` and `make test`. Both set up what is
# missing first: a virtual environment with pinned packages, and the data.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WORKDIR ?= runs/$(shell date +%Y%m%d-%H%M%S)
# Set DATA_DIR=... to train on IDX files elsewhere (skips the Debian package).
DATA_DIR ?=
ARGS ?=

.PHONY: train test test-fast lint docs setup data clean

train: setup
ifeq ($(DATA_DIR),)
	@bash scripts/ensure_data.sh
	$(PY) -m experiments.train --workdir=$(WORKDIR) $(ARGS)
else
	$(PY) -m experiments.train --workdir=$(WORKDIR) --config.data_dir=$(DATA_DIR) $(ARGS)
endif

# Lint, format and types first (seconds), the docs site built strictly,
# then two pytest workers, each taking whole test files, so that a file's
# shared training run (a module fixture) is computed once.
test: setup lint docs
	@bash scripts/ensure_data.sh --optional
	$(PY) -m pytest -q -n 2 --dist loadfile tests

# ruff (pyproject.toml's rules and format) and mypy on vae_jax/.
lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

# The documentation site (mkdocs.yml, docs/) into site/. --strict: a broken
# link, cross-reference or docstring, or a page left out of the navigation,
# fails the build (and `make test`).
docs: setup
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet

# The fast tier, for the edit-test loop: the suite less the tests marked
# `slow` (launcher subprocesses, kill/resume, notebooks, sweeps, device
# meshes, training runs, statistical checks; tests/conftest.py), meant to
# take under a minute on an idle 2-core machine (about 80 s of CPU time over
# the two workers). It keeps the math, the objectives, the train step, the
# models and one tiny in-process run. With a core taken by a training run,
# `$(PY) -m pytest -q -m "not slow" tests` (one process) is quicker.
# `make test` (what CI runs) still runs everything.
test-fast: setup
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not slow" tests

setup: $(STAMP)

$(STAMP): constraints.txt setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test,docs]'
	@touch $@

data:
	@bash scripts/ensure_data.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache site
