# Two commands on a fresh machine: `make demo` and `make test`. Both install what is missing first
# (Debian's Fashion-MNIST package, a venv with the torch/torchvision of constraints.txt, this package);
# re-runs are fast because each install is stamped and only redone when pyproject.toml or
# constraints.txt changes. `make docs` builds the documentation site into site/ (offline); the test
# suite runs the same strict build.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.headsteer-installed
DEV    := $(VENV)/.headsteer-dev
DOCS   := $(VENV)/.headsteer-docs
PIN    := -c constraints.txt
FMNIST := /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz
DRIVER := /usr/bin/chromedriver
SUDO   := $(if $(filter 0,$(shell id -u)),,sudo)
CONFIG ?= configs/demo.yaml

.PHONY: install install-dev install-docs demo demo-seeds lint format test docs bench clean

# What the demo needs (torch, this package, no extra); install-dev adds the test, hf and docs extras;
# `make docs` adds the docs extra only.
install: $(STAMP) $(FMNIST)
install-dev: $(DEV) $(FMNIST)
install-docs: $(DOCS)

$(FMNIST):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq dataset-fashion-mnist

# Debian's Chromium and its WebDriver: the browser test of the interactive report (make test only).
$(DRIVER):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq chromium chromium-driver

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(PIN) torch torchvision
	$(PY) -m pip install -q $(PIN) -e .
	touch $(STAMP)

$(DEV): $(STAMP)
	$(PY) -m pip install -q $(PIN) -e '.[test,hf,docs]'
	touch $(DEV) $(DOCS)

$(DOCS): $(STAMP)
	$(PY) -m pip install -q $(PIN) -e '.[docs]'
	touch $(DOCS)

demo: install
	$(VENV)/bin/headsteer run $(CONFIG)

# The demo with 5 seeds (seed 0 is `make demo`'s run, reused), then mean ± sd across them and the
# conclusions that hold in every seed, each call as a count (not part of `make demo`: five times as long).
SEEDS := 1 2 3 4
demo-seeds: demo
	for s in $(SEEDS); do $(VENV)/bin/headsteer run $(CONFIG) seed=$$s --out runs/demo-seed$$s || exit 1; done
	$(VENV)/bin/headsteer aggregate runs/demo $(foreach s,$(SEEDS),runs/demo-seed$(s)) --out runs/demo-seeds

lint: install-dev
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/ruff format --check src tests bench scripts

format: install-dev
	$(VENV)/bin/ruff check --fix src tests bench scripts
	$(VENV)/bin/ruff format src tests bench scripts

test: lint $(DRIVER)
	$(PY) -m pytest -q tests

docs: install-docs
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

bench: install-dev
	$(PY) bench/run_all.py
	$(PY) bench/to_markdown.py

clean:
	rm -rf runs/smoke runs/test-* site
