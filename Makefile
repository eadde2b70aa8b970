# Set-up and the two entry points a newcomer needs (see README.md).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup train test
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU torch wheel goes in first: an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $@

train: setup
	$(VENV)/bin/raygrow train jobs/plans/tiny.yaml

test: setup
	$(VENV)/bin/pytest -q -p no:cacheprovider
