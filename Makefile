# Two commands matter: `make demo` and `make test`. Both create the virtual
# environment in .venv first (only python3 is needed; see tools/bootstrap_venv.py).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
# nasclip itself is installed editable as a plain path entry: setuptools' default
# import-hook form costs every command ~15 ms at start-up, a search from the shell included.
EDITABLE := --config-settings editable_mode=compat
BASE := $(VENV)/.base-stamp
STAMP := $(VENV)/.test-stamp

.PHONY: demo test test-unit lint venv bench train-demo clean

# nasclip and its run-time dependencies: all the demo needs.
# The OCR models (PP-OCRv4, Apache-2.0) come in the rapidocr-onnxruntime wheel; nasclip uses its
# model files only, and its requirements would pull OpenCV's GUI build: --no-deps (docs/ocr.md).
OCR_MODELS := rapidocr-onnxruntime==1.4.4
$(BASE): pyproject.toml tools/bootstrap_venv.py
	$(PYTHON) tools/bootstrap_venv.py $(VENV)
	$(PIP) -e . $(EDITABLE)
	$(PIP) --no-deps $(OCR_MODELS)
	# Bytecode now, as pip compiles a wheel's: an editable install has none, and a shell that
	# cannot write it (PYTHONDONTWRITEBYTECODE, a read-only tree) would compile every module
	# at every start, 6 ms of each search from the shell.
	$(PY) -m compileall -q nasclip
	touch $(BASE)

# The tests also need pytest, PyTorch + transformers for the export tests, and the reference
# implementations the parity tests compare against. Those four come without their dependency
# lists (which would pull another PyTorch build); the test extra names what they need besides.
# This torchvision is built for another PyTorch: nasclip/model/reference.py explains why its
# pure-Python parts still serve.
REFERENCES := torchvision==0.28.0 timm==1.0.31 open-clip-torch==3.3.0 cn-clip==1.6.0
$(STAMP): $(BASE)
	$(PIP) -e '.[test]' $(EDITABLE)
	$(PIP) --no-deps $(REFERENCES)
	touch $(STAMP)

LINT := $(VENV)/.lint-stamp

# And system commands: setfacl/getfacl for the ACL tests, chromium and chromium-driver for the web
# page's browser test (installed when root, else reported).
# Two tiers: tests/unit (no daemon, no sleeps; well under a minute) first, then
# tests/system (the real daemon, real sockets, real users; a few minutes).
test: $(STAMP)
	$(PYTHON) tools/system_packages.py
	$(PY) -m pytest -q tests/unit
	$(PY) -m pytest -q tests/system

test-unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

$(LINT): $(BASE)
	$(PIP) -e '.[lint]' $(EDITABLE)
	touch $(LINT)

# ruff (pyflakes, pycodestyle, import order, bugbear) and mypy (nasclip, typed), as CI runs them.
lint: $(LINT)
	$(PY) -m ruff check nasclip tests tools bench
	$(PY) -m mypy

venv: $(STAMP)

demo: $(BASE)
	$(PY) tools/demo.py

# Benchmarks (bench/): PyTorch and transformers come in with the bench extra. Takes a while.
bench: $(STAMP)
	$(PIP) -e '.[bench]' $(EDITABLE)
	$(PY) bench/bench_indexing.py
	$(PY) bench/bench_search.py
	$(PY) bench/bench_query.py
	$(PY) bench/bench_scan.py
	$(PY) bench/bench_decode.py
	$(PY) bench/bench_web.py    # as root: both sides search as the user nobody
	$(PY) bench/bench_ocr.py

# Maintainer only: retrain models/demo (needs PyTorch; about 15 minutes on 2 cores).
train-demo:
	$(PYTHON) tools/bootstrap_venv.py .venv-train
	.venv-train/bin/python -m pip install --quiet -e '.[train]'
	.venv-train/bin/python tools/train_demo_model.py --out models/demo

clean:
	rm -rf $(VENV) demo
