# The two commands a new user runs: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(CURDIR)/$(VENV)/bin
PYTHON ?= python3
CHROMIUM := /usr/bin/chromium

.PHONY: install run test bench lint chromium screenshot clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test,sb3]"
	touch $@

# Browser tests drive Debian's Chromium; never a downloaded browser.
chromium:
	@test -x $(CHROMIUM) || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

run: install
	PATH="$(BIN):$$PATH" $(BIN)/honcho start

test: install chromium
	PATH="$(BIN):$$PATH" $(PY) -m pytest

# The peers (tensorboardX, MLflow, wandb, trackio) come from the `bench` extra only.
$(VENV)/.bench-installed: $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[test,sb3,bench]"
	touch $@

bench: $(VENV)/.bench-installed
	PATH="$(BIN):$$PATH" $(PY) bench/run.py $(BENCH_ARGS)

# The README's screenshot: collector + demo trainers + ui on free ports, seen by Chromium.
screenshot: install chromium
	PATH="$(BIN):$$PATH" $(PY) scripts/screenshot.py

# mypy cannot follow setuptools' editable finder through the package-dir mapping, so it checks
# a tree of symlinks laid out the way `pip install .` lays out site-packages:
# build/typecheck/traindash/producer -> producer/, and so on (errors name those paths).
TYPECHECK := build/typecheck
SERVICES := producer collector ui alerts cli

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	rm -rf $(TYPECHECK) && mkdir -p $(TYPECHECK)/traindash
	ln -s $(addprefix ../../../,$(filter-out %/__pycache__,$(wildcard traindash/*))) $(TYPECHECK)/traindash/
	for d in $(SERVICES); do ln -s ../../../$$d $(TYPECHECK)/traindash/$$d; done
	ln -s ../../nexlify $(TYPECHECK)/nexlify
	$(PY) -m mypy $(TYPECHECK)/traindash $(TYPECHECK)/nexlify

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
