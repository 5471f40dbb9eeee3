# Everything a fresh machine (Debian, Python 3.11, root) needs, from the two commands in README.md.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: setup demo test lint bench clean postgresql

$(BIN)/python:
	$(PY) -m venv $(VENV) || (apt-get update -qq && apt-get install -y -qq python3-venv && $(PY) -m venv $(VENV))

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

/usr/share/java/zookeeper.jar:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zookeeper

# Debian's PostgreSQL server: the tests start their own from its binaries (tests/pg.py). The
# version in the path varies, hence the wildcard; the cluster the package may create is left alone.
PG_CTL ?= $(firstword $(wildcard /usr/lib/postgresql/*/bin/pg_ctl))

postgresql:
ifeq ($(PG_CTL),)
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
endif

setup: /usr/share/java/zookeeper.jar postgresql $(VENV)/.installed

demo: setup
	$(BIN)/zkqueue demo

test: setup
	$(BIN)/ruff check zkqueue handlers admin tests bench
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup
	$(BIN)/python bench/throughput.py

clean:
	rm -rf $(VENV) var
