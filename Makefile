# Two commands on a fresh machine: `make study` and `make test`. Both create .venv when missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
PARAMS ?= params/demo.yaml
# The project's Jupyter kernel: the notebooks name it, so papermill and JupyterLab run them on this venv
# (with the reproducible-CPU pins in its environment).
KERNEL := $(VENV)/bin/petface kernel >/dev/null

.PHONY: study study-full test test-fast lint docs lab bench clean-outputs chromium

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Stamps re-run pip only when pyproject.toml changes.
# The export extra (phone-format converters) is part of both: the study exports every format and the tests
# check every converter.
$(VENV)/.core: pyproject.toml | $(PY)
	$(PIP) install -q -e '.[export]'
	$(KERNEL)
	touch $@

$(VENV)/.dev: pyproject.toml | $(PY)
	$(PIP) install -q -e '.[dev,export]'
	$(KERNEL)
	touch $@ $(VENV)/.core

$(VENV)/.lab: pyproject.toml | $(PY)
	$(PIP) install -q -e '.[lab,export]'
	$(KERNEL)
	touch $@ $(VENV)/.core

# The browser test needs Chromium: Debian's package (Playwright's own download cannot be fetched here).
# Installed when missing and we are root; otherwise the test is skipped with a line saying how to install it.
chromium:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } ; } || \
	  echo "Chromium not installed (needs root and apt-get): the JupyterLab browser test will be skipped"

study: $(VENV)/.core
	$(VENV)/bin/petface study $(PARAMS)

# The design's recipe at full length on the embedded data (<= 60 minutes on 2 cores): docs/results.md.
study-full: $(VENV)/.core
	$(VENV)/bin/petface study params/synthetic-full.yaml

# Everything: the unit tests, the slow ones (training, studies, scripts), the export converters, the browser.
test: $(VENV)/.dev chromium
	$(VENV)/bin/ruff check petlib tests benchmarks
	$(PY) -m pytest --durations=12

# The unit tests only (metrics, config, losses, models, data, layers): about a minute on 2 cores.
test-fast: $(VENV)/.dev
	$(PY) -m pytest -q -m "not slow and not export and not browser"

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check petlib tests benchmarks

# The generated references (tests/test_docs.py and tests/test_schema.py keep them current).
docs: $(VENV)/.core
	$(PY) -c "from petlib.config import params_markdown; print(params_markdown(), end='')" > docs/params.md
	$(PY) -c "from petlib.schema import schema_markdown; print(schema_markdown(), end='')" > docs/metrics.md

lab: $(VENV)/.lab
	cd notebooks && ../$(VENV)/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root)

clean-outputs:
	rm -rf outputs reports/*/

bench: $(VENV)/.core
	$(PY) benchmarks/run_all.py
