# `make test` sets up a fresh machine for the suite and runs all of it (what .ci/run calls).
.PHONY: test serve bench

test:
	bash scripts/setup-test-env
	python -m pytest

serve:
	pip install -e . && modelport serve

bench:
	python bench/run.py
