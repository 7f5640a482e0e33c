# Two commands for a fresh machine: `make train` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# A new run directory for every `make train`, so no earlier run is ever overwritten.
NAME ?= cvae-$(shell date +%Y%m%d-%H%M%S)
TRAIN_ARGS ?=

.PHONY: train test demo setup data browser clean-venv

# The demo extra too: tests/test_demo.py drives the page in a browser.
$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[test,demo]"
	touch $@

setup: $(VENV)/.installed

data: setup
	@bash scripts/ensure_data.sh

# Debian's Chromium, which tests/test_demo.py drives (installed as root, else a message).
browser:
	@bash scripts/ensure_browser.sh

# The quick recipe (the shipped one from scratch in 12 epochs); TRAIN_ARGS="--recipe cvae"
# trains the shipped model itself (docs/training.md).
train: setup data
	$(PY) -m pipelines.train --recipe quick --name $(NAME) $(TRAIN_ARGS)

# Two worker processes (pytest-xdist), one test file each at a time, so each file's trained
# fixtures are built once; TEST_WORKERS=0 runs the suite in this process alone.
TEST_WORKERS ?= 2
test: setup data browser
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=10 $(PYTEST_ARGS)

# The demo page on http://127.0.0.1:7860 (docs/demo.md); DEMO_ARGS="--port 8000" and the like.
demo: setup
	$(PY) -m pipelines.demo --model saved_models/cvae $(DEMO_ARGS)

clean-venv:
	rm -rf $(VENV)
