# make run  : install everything, start the product with demo data on http://127.0.0.1:8000
# make test : install everything the tests need and run the whole suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: run test install browser lint messages clean-data

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	@rm -f $(VENV)/.installed-*; touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

install: $(STAMP) node_modules/.installed
	@$(PY) -m babel.messages.frontend compile -d locale -D django --statistics 2>&1 | grep -v "^$$" || true

run: install
	$(PY) -m scrm.launcher

browser:
	@bash scripts/ensure_browser.sh

lint: install
	$(PY) -m ruff check .

test: install browser
	$(PY) -m ruff check .
	SCRM_DATA_DIR=.data/test $(PY) manage.py makemigrations --check --dry-run
	SCRM_DATA_DIR=.data/test $(PY) -m pytest $(PYTEST_ARGS)

messages:
	$(PY) manage.py makemessages -l en --ignore=.venv --ignore=node_modules --ignore=.data --no-obsolete

clean-data:
	rm -rf .data
