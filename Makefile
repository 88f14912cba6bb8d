# The two commands of the README's quick start, and the checks CI runs.
# Each target creates the virtual environment in .venv on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck pytest clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/.installed  ## run the guided tour on SQLite (simulated vendor API, no configuration)
	$(BIN)/flowsync demo

test: lint typecheck pytest  ## everything CI runs

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(BIN)/.installed
	$(BIN)/mypy

pytest: $(BIN)/.installed
	$(BIN)/python -m pytest -n 2

clean:
	rm -rf $(VENV) flowsync-demo .pytest_cache .mypy_cache .ruff_cache
