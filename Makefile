# Every target creates .venv and installs the project when needed; nothing but packages is downloaded.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.dagster

CHROMIUM := /usr/bin/chromium
# Root on CI and the project's machines; elsewhere apt needs sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test soak lint ui bench clean postgresql

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/green-pipeline demo

lint: $(STAMP)
	$(BIN)/ruff check green_pipeline assets sensors tests bench
	$(BIN)/ruff format --check green_pipeline assets sensors tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/hadolint deploy/Dockerfile

# The browser test drives Debian's Chromium (a package, not a browser download by a test tool).
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium

# The shared-instance test starts a throwaway PostgreSQL cluster: Debian's server, installed when missing.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql; }

test: lint $(CHROMIUM) postgresql
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# 50+ batches through the pipeline on one instance (excluded from `make test`): handles, memory, disk, event log.
soak: $(STAMP)
	$(BIN)/python -m pytest -q -m soak

ui: $(STAMP)
	$(BIN)/green-pipeline ui

bench: $(STAMP)
	$(BIN)/python bench/retraining.py

clean:
	rm -rf $(VENV) .dagster .green_pipeline
