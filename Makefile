# Two commands matter: `make demo` and `make test`. Both create the virtual
# environment in .venv first (only python3 is needed; see tools/bootstrap_venv.py).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test venv bench train-demo clean

$(STAMP): pyproject.toml tools/bootstrap_venv.py
	$(PYTHON) tools/bootstrap_venv.py $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py

test: $(STAMP)
	$(PY) -m pytest -q

# Benchmarks (bench/): PyTorch and transformers come in with the bench extra. Takes a while.
bench: $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	$(PY) bench/bench_indexing.py
	$(PY) bench/bench_search.py
	$(PY) bench/bench_query.py
	$(PY) bench/bench_scan.py

# Maintainer only: retrain models/demo (needs PyTorch; about 15 minutes on 2 cores).
train-demo:
	$(PYTHON) tools/bootstrap_venv.py .venv-train
	.venv-train/bin/python -m pip install --quiet -e '.[train]'
	.venv-train/bin/python tools/train_demo_model.py --out models/demo

clean:
	rm -rf $(VENV) demo
