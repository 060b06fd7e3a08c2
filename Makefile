# make run  : install everything, start the product with demo data on http://127.0.0.1:8000
# make test : install everything the tests need and run the whole suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

# the second run of the suite moves the clock this far ahead for the whole process tree (libfaketime)
TIME_SHIFT ?= +400d
CLOCKWAIT := $(VENV)/faketime-clockwait.so

.PHONY: run test test-now test-shifted install test-tools lint messages clean-data

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

test-tools:
	@bash scripts/ensure_test_tools.sh

$(CLOCKWAIT): scripts/faketime_clockwait.c
	gcc -O2 -shared -fPIC -o $@ $< -ldl

lint: install
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports

test: test-now test-shifted

test-now: install test-tools
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports
	SCRM_DATA_DIR=.data/test SCRM_EMBEDDED_START=1 $(PY) manage.py makemigrations --check --dry-run
	SCRM_DATA_DIR=.data/test $(PY) -m pytest $(PYTEST_ARGS)

# The whole suite again, today + TIME_SHIFT, on embedded servers of its own (PostgreSQL and Redis see the moved
# clock too). Tests marked wall_clock say why they cannot run there.
test-shifted: install test-tools $(CLOCKWAIT)
	@echo "== the suite again with the clock moved $(TIME_SHIFT) (libfaketime) =="
	rm -rf .data/test-shifted
	lib=$$(ls /usr/lib/*/faketime/libfaketime.so.1 | head -n1); \
	SCRM_DATA_DIR=.data/test-shifted FAKETIME="$(TIME_SHIFT)" LD_PRELOAD="$$lib:$(abspath $(CLOCKWAIT))" \
	  $(PY) -m pytest -m "not wall_clock" $(PYTEST_ARGS)

messages:
	SCRM_EMBEDDED_START=1 $(PY) manage.py makemessages -l en --ignore=.venv --ignore=node_modules --ignore=.data --no-obsolete

clean-data:
	rm -rf .data
