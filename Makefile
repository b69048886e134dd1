# w2v2-lite: `make book` builds everything and renders the book; `make test` runs the tests.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.w2v2-lite-installed
# pip repeats one warning per package for this machine's unused local indexes; keep the log readable.
QUIET_PIP := grep -v "is ignored: it is neither a file nor a directory" || true

.PHONY: help setup espeak chromium pretrained test test-package test-kernels test-notebooks book assets bench lock clean mutation lab

help:
	@echo "make setup    create $(VENV) with the pinned versions (requirements.lock) and espeak-ng"
	@echo "make test     run the package tests (also on the portable CPU kernels) and the notebooks (nbval)"
	@echo "make pretrained  build the pretrained tiny model from its recipe (~25 min on 2 cores; once)"
	@echo "make book     set up, make the data, execute the notebooks and build book/_build/html"
	@echo "make lab      open JupyterLab on the notebooks (the chapters of the book)"
	@echo "make bench    print speed ratios against transformers"
	@echo "make experiment  Table 1 in miniature: pretrained vs scratch at 10 min and 1 h of labels (~85 min)"
	@echo "make lock     re-pin requirements.lock from the current $(VENV)"
	@echo "make mutation mutation-test the core modules with mutmut (about two minutes; not part of make test)"

setup: $(STAMP) espeak

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock 2>&1 | $(QUIET_PIP)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . 2>&1 | $(QUIET_PIP)
	@touch $@

espeak:
	@if command -v espeak-ng >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing espeak-ng with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null; \
	else \
		echo "espeak-ng is missing: install it with 'sudo apt-get install espeak-ng' (Debian/Ubuntu)"; \
		echo "or 'brew install espeak-ng' (macOS); the speech data and notebooks need it."; \
	fi

test: setup pretrained test-package test-kernels test-notebooks

# The pretrained tiny model that chapters, tests, configs and the experiments start from.
# Its weights are not in git: this makes the experiment corpus (a few minutes), pretrains
# with the recipe in w2v2_lite/training/release.py (= configs/pretrain-tiny.json; about 25
# minutes on a 2-core CPU) and exports data/generated/pretrained/tiny. A no-op once built;
# after Ctrl-C it resumes. data/pretrained/tiny keeps the reference run's config and log.
pretrained: setup
	$(VENV)/bin/w2v2-lite release tiny $(if $(CI),--quiet)

test-package:
	$(PY) -m pytest tests -q

# The numerical tests again on PyTorch's portable CPU kernels, so that a tolerance that
# only holds for this machine's vector code (AVX-512 sums in another order) fails here,
# not on a reader's laptop. A capability the CPU lacks, or the one just used, is skipped.
KERNEL_TESTS := tests/test_models.py tests/test_losses.py tests/test_quantizer.py tests/test_masking.py \
	tests/test_negatives.py tests/test_parity.py tests/test_finetuning.py tests/test_pretraining_details.py \
	tests/test_augment.py
KERNELS := default avx2

test-kernels: setup
	@native=$$($(PY) -c "import torch; print(torch.backends.cpu.get_cpu_capability().lower())"); \
	for kernel in $(KERNELS); do \
		if [ "$$kernel" = "$$native" ]; then echo "ATEN_CPU_CAPABILITY=$$kernel: the native run covered it"; continue; fi; \
		if [ "$$kernel" = avx2 ] && [ "$$native" != avx512 ]; then echo "ATEN_CPU_CAPABILITY=avx2: this CPU has $$native"; continue; fi; \
		echo "numerical tests with ATEN_CPU_CAPABILITY=$$kernel"; \
		ATEN_CPU_CAPABILITY=$$kernel $(PY) -m pytest $(KERNEL_TESTS) -q -m "not slow" -p no:cacheprovider || exit 1; \
	done

# Every chapter under nbval, in quick mode: W2V2_LITE_QUICK=1 shortens the notebooks' live
# training runs (nothing else changes). notebooks/conftest.py prints each notebook's time.
test-notebooks:
	W2V2_LITE_QUICK=1 $(PY) -m pytest --nbval-lax notebooks -q -p no:cacheprovider

# JupyterLab on the chapters, with the corpus they read made first. Jupyter refuses to run
# as root without --allow-root (containers, Colab-like VMs), so it is passed only then.
lab: setup data pretrained
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $$([ "$$(id -u)" = 0 ] && echo --allow-root)

# ---------------------------------------------------------------- the book
# The built book must open offline, so MathJax, RequireJS and the ipywidgets embed
# manager come from npm (pinned) into .cache/npm and are copied to book/assets/vendor,
# which _config.yml serves as static files. Both folders are ignored by git.
NPM_PREFIX := .cache/npm
VENDOR := book/assets/vendor
MATHJAX_VERSION := 3.2.2
HTML_MANAGER_VERSION := 1.0.15
REQUIREJS_VERSION := 2.3.8
ASSETS_STAMP := $(VENDOR)/.installed-mathjax-$(MATHJAX_VERSION)-html-manager-$(HTML_MANAGER_VERSION)-requirejs-$(REQUIREJS_VERSION)

assets: $(ASSETS_STAMP)

$(ASSETS_STAMP):
	@command -v npm >/dev/null || { echo "npm is missing: install Node.js (https://nodejs.org) to build the book"; exit 1; }
	npm install --prefix $(NPM_PREFIX) --no-audit --no-fund --no-save --ignore-scripts --loglevel=error \
		mathjax@$(MATHJAX_VERSION) @jupyter-widgets/html-manager@$(HTML_MANAGER_VERSION) requirejs@$(REQUIREJS_VERSION)
	rm -rf $(VENDOR)
	mkdir -p $(VENDOR)/mathjax $(VENDOR)/html-manager $(VENDOR)/requirejs
	cp -R $(NPM_PREFIX)/node_modules/mathjax/es5/. $(VENDOR)/mathjax/
	cp -R $(NPM_PREFIX)/node_modules/@jupyter-widgets/html-manager/dist/. $(VENDOR)/html-manager/
	find $(VENDOR) -name "*.map" -delete
	cp $(NPM_PREFIX)/node_modules/requirejs/require.js $(VENDOR)/requirejs/require.js
	@touch $@

# The built pages are then opened in headless Chromium (when there is one), driven by
# Playwright (book/check_book.py): no request may leave the machine, no page may log a
# console error, math must be typeset, figures and audio must load, no code may be cut
# off, and moving each widget's control must change its picture. Screenshots of every
# page and widget go to book/_build/screenshots. Without Chromium, only the static scan.
book: setup data pretrained assets chromium
	$(VENV)/bin/jupyter-book build book
	@if command -v chromium >/dev/null; then $(MAKE) --no-print-directory book-check; \
	else $(PY) book/check_offline.py book/_build/html; fi

.PHONY: book-check
book-check: setup  ## the browser test alone, on the book already built
	$(PY) book/check_book.py book/_build/html --out book/_build/screenshots

chromium:
	@if command -v chromium >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium with apt-get (for the book's browser check)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "chromium is missing, so the book is checked without a browser: install it with"; \
		echo "'sudo apt-get install chromium' to also check console errors and cut-off code."; \
	fi

.PHONY: data
data: setup  ## the small synthetic corpus the notebooks use (about a minute; a no-op once made)
	$(PY) -m w2v2_lite.cli make-corpus --preset notebooks --out data/generated/notebooks

bench: setup
	$(PY) bench/step.py

# ---------------------------------------------------------------- experiments
# The paper's Table 1 in miniature (experiments/table1.json): 12 fine-tuning runs, about
# 80 minutes on a 2-core CPU, two at a time. It makes the corpus and the real-speech set
# first; results/table1/ (committed) gets the records, the table and the plots. Run again,
# it trains nothing; after Ctrl-C the same command resumes. Another grid or scale:
#   make experiment EXPERIMENT=experiments/ablations.json      (ablations, about 7 h)
#   make experiment EXPERIMENT=experiments/budget.json         (pretraining budgets, about 12 h)
#   make experiment EXPERIMENT=experiments/variations.json     (audio, width, lr, crops, about 4.5 h)
#   make experiment SCALE=gpu                                  (the larger grid, on a GPU)
EXPERIMENT ?= experiments/table1.json
SCALE ?=
.PHONY: experiment
experiment: setup pretrained
	$(VENV)/bin/w2v2-lite experiment $(EXPERIMENT) --jobs auto $(if $(SCALE),--scale $(SCALE))

# ------------------------------------------------------------- mutation testing
# mutmut (configured in pyproject.toml, [tool.mutmut]) plants one small bug at a time in
# masking, quantizer, negatives, losses, the tokenizer and the augmentations, and runs
# their fast tests against it: a mutant that no test notices survives, and the summary
# lists those not yet reviewed. OMP_NUM_THREADS=1 because mutmut forks its workers, and a
# fork taken after PyTorch has started its OpenMP threads hangs until the timeout.
MUTMUT_VERSION := 3.8.1
# mutmut and what it adds to $(VENV): kept out of requirements.lock by make lock
MUTMUT_PACKAGES := mutmut|libcst|setproctitle|textual

mutation: setup
	@$(PY) -c "import mutmut" 2>/dev/null || { echo "installing mutmut $(MUTMUT_VERSION) into $(VENV)"; \
		$(PY) -m pip install -q --disable-pip-version-check "mutmut==$(MUTMUT_VERSION)" 2>&1 | $(QUIET_PIP); }
	rm -rf mutants
	mkdir -p mutants
	OMP_NUM_THREADS=1 nice -n 10 $(VENV)/bin/mutmut run --max-children $$(nproc) > mutants/run.log 2>&1 \
		|| { tail -c 4000 mutants/run.log; exit 1; }
	@tail -c 200 mutants/run.log | tr '\r' '\n' | tail -2
	$(PY) tests/mutation_summary.py

lock:
	{ echo "# The exact, tested versions that 'make setup' installs (Python 3.11, Linux x86_64)."; \
	  echo "# Regenerate with: make lock"; \
	  $(PY) -m pip freeze --exclude-editable 2>/dev/null | grep -v "^w2v2" \
	  | sed -E 's/^([A-Za-z0-9_.-]+) @ file:.*\/[A-Za-z0-9_.]+-([0-9][A-Za-z0-9.]*)-.*/\1==\2/' \
	  | grep -v -E "^($(MUTMUT_PACKAGES))=="; } > requirements.lock

clean:
	rm -rf book/_build .pytest_cache

# ---------------------------------------------------------------- Colab
# The repository URL lives in pyproject.toml ([project.urls] Repository); this writes it
# into every notebook's "Open in Colab" link and the REPO_URL of its set-up cell.
.PHONY: colab-links
colab-links:
	$(PYTHON) tools/colab_links.py
