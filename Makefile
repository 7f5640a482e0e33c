# Two commands for a fresh machine: `make train` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# A new run directory for every `make train`, so no earlier run is ever overwritten.
NAME ?= cvae-$(shell date +%Y%m%d-%H%M%S)
TRAIN_ARGS ?=

.PHONY: train test setup data clean-venv

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[test]"
	touch $@

setup: $(VENV)/.installed

data: setup
	@bash scripts/ensure_data.sh

train: setup data
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pipelines.train --name $(NAME) $(TRAIN_ARGS)

test: setup data
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest -q $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
