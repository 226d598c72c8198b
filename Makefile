# Two commands for a newcomer: `make demo` and `make test`.
# Both create (or reuse) .venv; the install runs again only when the packaging changes.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ptychopinn-installed
# CPU wheels for this install path only: the package itself asks for torch>=2.2 and tensorflow>=2.16.
TORCH_CPU := torch==2.13.0
TF_CPU := tensorflow-cpu==2.21.0
DEMO_DIR ?= demo_output
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: venv demo test bench clean

venv: $(STAMP)

# Top-level package __init__ files: a new package needs the editable install redone.
$(STAMP): setup.cfg pyproject.toml Makefile $(wildcard */__init__.py)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_CPU) $(TF_CPU)
	$(PY) -m pip install --quiet -e '.[torch,ptychodus,dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ptychopinn demo --output-dir $(DEMO_DIR)

test: $(STAMP)
	CUDA_VISIBLE_DEVICES="" QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -n 2 --dist loadfile $(PYTEST_ARGS)

# BENCH_ARGS=--quality adds the 20-minute quality runs; --quick is a few-minute smoke run.
bench: $(STAMP)
	$(PY) bench/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
