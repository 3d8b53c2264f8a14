# Two commands matter: `make run` (demo service on http://127.0.0.1:8000) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	AUTHZ_DEMO=1 $(BIN)/authz serve --host 127.0.0.1 --port 8000

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check authz tests benchmarks migrations
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py server --json

clean:
	rm -rf $(VENV) build *.egg-info
