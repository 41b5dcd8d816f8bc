# `make serve` installs ModelPort and starts the gateway; `make test` sets up a fresh machine for the suite
# and runs all of it (what .ci/run calls). Both use the Python scripts/python picks: the one on PATH, or
# ./.venv where the system Python refuses pip installs (PEP 668).
.PHONY: test serve bench

PYTHON := $(or $(shell scripts/python),$(error no usable Python: see the line above))

test:
	PYTHON=$(PYTHON) bash scripts/setup-test-env
	$(PYTHON) -m pytest

serve:
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e . && $(PYTHON) -m modelport serve $(ARGS)

bench:
	$(PYTHON) bench/run.py
