# Set-up and entry points. `make demo` and `make test` install everything they need into .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RESULTS ?= results

.PHONY: install demo test test-fast lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements/ci.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements/ci.txt torch torchvision
	$(PY) -m pip install --quiet -c requirements/ci.txt -e '.[test]'
	touch $@

demo: install
	$(PY) -m softcfg.demo --results $(RESULTS)/demo

lint: install
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

test-fast: install
	$(PY) -m pytest -q

test: lint test-fast
	$(PY) -m pytest -q -m slow

bench: install
	$(PY) benchmarks/sampler_speed.py

clean:
	rm -rf $(RESULTS) .pytest_cache .ruff_cache
