# The two README commands: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: run test lint typecheck pytest bench demo clean system-deps-run system-deps-test venv \
	node-deps

run: system-deps-run venv
	@scripts/run.sh

test: system-deps-test venv node-deps lint typecheck pytest

system-deps-run:
	@scripts/install-system-deps.sh run

system-deps-test:
	@scripts/install-system-deps.sh test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

venv: $(VENV)/.installed

# setuptools says "Editable installation." on every editable install through a UserWarning of
# its InformationOnly kind (it has no other channel to pip, pypa/packaging-problems#558); it is
# not a problem of the package, so only that note is filtered, by its text.
$(VENV)/.installed: setup.cfg pyproject.toml | $(BIN)/python
	PYTHONWARNINGS="ignore:Editable installation:UserWarning" $(BIN)/pip install -q -e '.[test]'
	touch $@

# The independent ML-KEM / ML-DSA reader the tests hold our output against (issue 14 point 4):
# node comes with the machine, its packages from the npm registry, pinned by the lock file.
PQCJS := tests/interop/pqc-js
node-deps: $(PQCJS)/node_modules/.installed

$(PQCJS)/node_modules/.installed: $(PQCJS)/package.json $(PQCJS)/package-lock.json
	npm ci --prefix $(PQCJS) --no-audit --no-fund --loglevel=error
	touch $@

lint: venv
	$(BIN)/ruff check smimegate tests bench

typecheck: venv
	$(BIN)/mypy smimegate

pytest: venv
	@scripts/run-tests.sh $(PYTEST_ARGS)

# Benchmarks print figures beside a baseline measured in the same run; they never assert.
# postfix_bench.py needs root (it runs a private Postfix).
bench: system-deps-test venv
	$(BIN)/python bench/smime_bench.py
	$(BIN)/python bench/pqc_bench.py
	$(BIN)/python bench/cost_bench.py
	$(BIN)/python bench/gateway_bench.py
	$(BIN)/python bench/milter_bench.py
	$(BIN)/python bench/store_bench.py
	$(BIN)/python bench/startup_bench.py
	$(BIN)/python bench/trust_bench.py
	$(BIN)/python bench/ocsp_bench.py
	$(BIN)/python bench/crl_bench.py
	$(BIN)/python bench/postfix_bench.py

demo: system-deps-test venv
	@scripts/demo.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
