# Two commands on a fresh machine:  make run   |   make test
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.raddino-installed
UV_VERSION := 0.13.9
# uv when the venv has it, pip otherwise (a shell test: make expands a recipe before its first line runs). Both
# write the bytecode at install: where PYTHONDONTWRITEBYTECODE is set, every process would compile its imports anew
# (torch, timm, transformers and scikit-learn took 25 s to import instead of 10)
INSTALL = { if [ -x $(BIN)/uv ]; then $(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python $(1); \
	else $(BIN)/python -m pip install -q $(1); fi; }
PROFILE ?= cpu
OUT ?= runs/$(PROFILE)

.PHONY: setup run test lint smoke bench clean

# (Re)install when the venv is missing or pyproject.toml changed since.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# uv resolves and installs the same pinned set as pip in about a minute (pip: 2.5-4.5 min on 2 cores);
	@# pip stays the fallback where uv cannot be installed
	$(BIN)/python -m pip install -q uv==$(UV_VERSION) || echo "uv $(UV_VERSION) not installed: installing with pip"
	$(call INSTALL,-e '.[test]')
	@# Primus (COLIPRI's encoder): the release pins timm<1.0.23 but runs on this timm (models/primus.py: Rope3d)
	$(call INSTALL,--no-deps dynamic-network-architectures==0.4.4)
	$(BIN)/python -m ipykernel install --sys-prefix --name raddino --display-name "raddino (Python 3)" >/dev/null
	@# the system Chromium for the attention explorer's browser test (Playwright drives it; nothing is downloaded)
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
		  { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; }; }; } || \
		echo "chromium not installed (needs root and apt-get): the browser test of the attention explorer is skipped"
	@touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/raddino run --profile $(PROFILE) --out $(OUT) --resume

smoke: setup
	$(BIN)/raddino run --profile smoke --out runs/smoke --resume

# Two pytest workers on two cores: one thread each, or BLAS threads fight over the cores. Whole files go to one
# worker (--dist loadfile): the smoke pipeline's tests then share one worker and one pipeline run (with pytest 9.2
# and pytest-xdist 3.8, --dist loadgroup split the xdist_group tests over both workers).
test: setup
	$(BIN)/ruff check raddino_lib tests benchmarks
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15 tests

lint: setup
	$(BIN)/ruff check raddino_lib tests benchmarks

bench: setup
	$(BIN)/python benchmarks/phantoms.py
	$(BIN)/python benchmarks/extract.py
	$(BIN)/python benchmarks/pretrain_step.py
	$(BIN)/python benchmarks/train_loops.py
	$(BIN)/python benchmarks/parallel_jobs.py

clean:
	rm -rf runs .pytest_cache
