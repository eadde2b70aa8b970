# Set-up and the two entry points a newcomer needs (see README.md).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup train test test-all
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

# The default run leaves out the tests marked slow (see README "Tests"); test-all runs everything.
test: setup
	$(VENV)/bin/pytest -q -p no:cacheprovider -m "not slow"

test-all: setup
	$(VENV)/bin/pytest -q -p no:cacheprovider
