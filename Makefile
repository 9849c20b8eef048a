# Every target installs what it needs first; see README.md.
SHELL := bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Slow builds (Go binaries, tools) are cached outside the work tree so fresh clones reuse them.
CACHE ?= $(HOME)/.cache/carbon-aware-scheduler
export CARBON_E2E_CACHE ?= $(CACHE)/controlplane
export CARBON_TOOLS_BIN ?= $(CACHE)/tools/bin

.PHONY: demo test lint unit e2e tools controlplane kindcheck bench bench-smoke venv clean

demo: venv
	$(PY) -m extender.demo

test: venv tools controlplane kindcheck lint
	$(PY) -m pytest

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

unit: venv
	$(PY) -m pytest tests/unit tests/integration

e2e: venv tools controlplane
	$(PY) -m pytest tests/e2e

tools:
	hack/install-tools.sh >/dev/null

controlplane:
	hack/build-controlplane.sh >/dev/null

# kind's own kubeadm-config rendering and kubeadm, for validating the kind guide (tests/deploy).
kindcheck:
	hack/build-kindcheck.sh >/dev/null

bench: venv
	$(PY) -m bench

bench-smoke: venv
	$(PY) -m bench --quick

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@echo "[venv] creating $(VENV) and installing the project with its dev extras"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,trace,bench]'
	touch $@

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache
