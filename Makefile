# The two commands a new user runs: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(CURDIR)/$(VENV)/bin
PYTHON ?= python3
CHROMIUM := /usr/bin/chromium

.PHONY: install run test pytest bench lint chromium tmux screenshot clean

# Two stamps: `make run` installs what running needs (no torch, SB3 or test tools); `make test`
# adds those on top. Neither reinstalls what the other already installed.
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

# torch==2.13.0 first: the CPU build; a looser pin lets pip fetch a CUDA build of several GB.
$(VENV)/.test-installed: $(VENV)/.installed
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test,sb3,ray]"
	touch $@

# Browser tests drive Debian's Chromium; never a downloaded browser.
chromium:
	@test -x $(CHROMIUM) || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

# Terminal views are tested in a real tmux.
tmux:
	@command -v tmux >/dev/null || { \
	  echo "installing Debian's tmux for the terminal tests"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq tmux; }

run: install
	PATH="$(BIN):$$PATH" $(BIN)/honcho start

test: lint pytest

# Two workers (pytest-xdist): most tests wait on real processes, sockets and a browser, so two
# share two cores well (about 7 minutes here instead of 11). `make pytest PYTEST_ARGS=` runs serially.
PYTEST_ARGS ?= -n 2

# Exit status 5 (nothing collected) fails like any other: a suite that runs no test is broken.
pytest: $(VENV)/.test-installed chromium tmux
	PATH="$(BIN):$$PATH" $(PY) -m pytest $(PYTEST_ARGS) || { rc=$$?; \
	  [ $$rc != 5 ] || echo "pytest collected no tests (exit status 5): failing" >&2; exit $$rc; }

# The peers (tensorboardX, MLflow, wandb, trackio) come from the `bench` extra only.
$(VENV)/.bench-installed: $(VENV)/.test-installed
	$(PY) -m pip install --quiet -e ".[test,sb3,bench]"
	touch $@

bench: $(VENV)/.bench-installed
	PATH="$(BIN):$$PATH" $(PY) bench/run.py $(BENCH_ARGS)

# The README's screenshot: collector + demo trainers + ui on free ports, seen by Chromium.
screenshot: $(VENV)/.test-installed chromium
	PATH="$(BIN):$$PATH" $(PY) scripts/screenshot.py

# mypy cannot follow setuptools' editable finder through the package-dir mapping, so it checks
# a tree of symlinks laid out the way `pip install .` lays out site-packages:
# build/typecheck/traindash/producer -> producer/, and so on (errors name those paths).
TYPECHECK := build/typecheck
SERVICES := producer collector ui alerts cli

lint: $(VENV)/.test-installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	rm -rf $(TYPECHECK) && mkdir -p $(TYPECHECK)/traindash
	ln -s $(addprefix ../../../,$(filter-out %/__pycache__,$(wildcard traindash/*))) $(TYPECHECK)/traindash/
	for d in $(SERVICES); do ln -s ../../../$$d $(TYPECHECK)/traindash/$$d; done
	ln -s ../../nexlify $(TYPECHECK)/nexlify
	$(PY) -m mypy $(TYPECHECK)/traindash $(TYPECHECK)/nexlify

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
