# Two commands on a fresh machine: `make study` and `make test`. Both create .venv when missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
PARAMS ?= params/demo.yaml

.PHONY: study test lab bench clean-outputs

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Stamps re-run pip only when pyproject.toml changes.
# The export extra (phone-format converters) is part of both: the study exports every format and the tests
# check every converter.
$(VENV)/.core: pyproject.toml | $(PY)
	$(PIP) install -q -e '.[export]'
	touch $@

$(VENV)/.dev: pyproject.toml | $(PY)
	$(PIP) install -q -e '.[dev,export]'
	touch $@ $(VENV)/.core

$(VENV)/.lab: pyproject.toml | $(PY)
	$(PIP) install -q -e '.[lab,export]'
	touch $@ $(VENV)/.core

study: $(VENV)/.core
	$(VENV)/bin/petface study $(PARAMS)

test: $(VENV)/.dev
	$(PY) -m pytest

lab: $(VENV)/.lab
	$(PY) -m ipykernel install --sys-prefix --name petface-study --display-name "petface-study (.venv)"
	$(VENV)/bin/jupyter lab notebooks/

clean-outputs:
	rm -rf outputs reports/*/

bench: $(VENV)/.core
	$(PY) benchmarks/run_all.py
