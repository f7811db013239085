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

.PHONY: train test setup data clean

train: setup
ifeq ($(DATA_DIR),)
	@bash scripts/ensure_data.sh
	$(PY) -m experiments.train --workdir=$(WORKDIR) $(ARGS)
else
	$(PY) -m experiments.train --workdir=$(WORKDIR) --config.data_dir=$(DATA_DIR) $(ARGS)
endif

# Two pytest workers, each taking whole test files, so that a file's shared
# training run (a module fixture) is computed once.
test: setup
	@bash scripts/ensure_data.sh --optional
	$(PY) -m pytest -q -n 2 --dist loadfile tests

setup: $(STAMP)

$(STAMP): constraints.txt setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	@touch $@

data:
	@bash scripts/ensure_data.sh

clean:
	rm -rf $(VENV) .pytest_cache
