# The two commands a newcomer runs on a fresh machine:
#   make demo   - installs into .venv (if needed) and runs the whole pipeline on the embedded world
#   make test   - installs with test extras and runs the default test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A local CPU wheel of torch (the pinned version) is used when this folder exists.
WHEELS ?= /opt/wheels
PIP_OPTS := $(if $(wildcard $(WHEELS)/*.whl),--find-links $(WHEELS),)
DEMO_ARGS ?=
TEST_ARGS ?=

.PHONY: demo test install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch is installed first, on its own, so that pip never resolves a CUDA build for it.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(PIP_OPTS) "torch==2.13.0"
	$(BIN)/pip install --quiet $(PIP_OPTS) -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet $(PIP_OPTS) -e ".[test,real,attacks]"
	# the fake third-party plugin, so the method conformance suite covers an entry-point method too
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e tests/plugin_pkg
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: install
	$(BIN)/unlearnbench demo $(DEMO_ARGS)

test: install-test
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -q $(TEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
