# Two commands matter: `make run` (demo service on http://127.0.0.1:8000) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench catalogs clean

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

# Page messages: extract from templates and authz/web, merge into the ja/en catalogs, compile.
# The compiled .mo files are committed, so a fresh clone needs no step; a test checks they match.
catalogs: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k _ -k both --no-location --sort-output --omit-header \
		-o authz/translations/messages.pot .
	$(BIN)/pybabel update -i authz/translations/messages.pot -d authz/translations \
		--no-fuzzy-matching --ignore-obsolete --ignore-pot-creation-date
	$(BIN)/pybabel compile -d authz/translations --statistics

clean:
	rm -rf $(VENV) build *.egg-info
