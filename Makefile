# smar: `make run` runs the whole pipeline on the default dataset; `make test` runs the tests.
# Both create .venv and install (pinned by constraints.txt) on first use, and only then.

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
INSTALLED := $(VENV)/.installed

export PATH := $(BIN):$(PATH)
export PREFECT_HOME ?= $(CURDIR)/.prefect
# smar's own processes set their environment themselves (smar/core/process.py); these are for
# the servers and tools this Makefile starts directly.
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export MLFLOW_DISABLE_TELEMETRY ?= true

.PHONY: install run test lint data repro prefect-server deploy mlflow-ui serve clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test]"
	touch $@

# Generated deterministically, so `dvc add` records the same hash as the committed data.dvc
# (and puts the files in the local DVC cache, leaving `dvc status` clean).
data/dataset.json: | $(INSTALLED)
	smar data synth
	dvc add --quiet data

data: data/dataset.json

run: install data
	smar pipeline

# Debian's Chromium and ChromeDriver drive the search page in the browser test.
BROWSER_DRIVER := /usr/bin/chromedriver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
$(BROWSER_DRIVER):
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null \
	  || ($(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null)

# Debian's PostgreSQL 15 holds the tracking and Prefect servers' databases in tests/production/.
POSTGRES := /usr/lib/postgresql/15/bin/initdb
$(POSTGRES):
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null \
	  || ($(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null)

# Two workers share the cores (pytest-xdist): the suite waits on servers and subprocesses often
# enough that two keep both busy; tests/conftest.py keeps each module on one worker.
TEST_WORKERS ?= 2
test: install $(BROWSER_DRIVER) $(POSTGRES) lint
	python -m pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

lint: install
	ruff check .
	ruff format --check .

repro: install data
	dvc repro

prefect-server: install
	PREFECT_SERVER_ANALYTICS_ENABLED=false prefect server start --host 127.0.0.1

deploy: install data
	PREFECT_API_URL=http://127.0.0.1:4200/api smar pipeline --serve

mlflow-ui: install
	mlflow server --backend-store-uri sqlite:///mlruns/mlflow.db --host 127.0.0.1 --port 5000 --workers 1

serve: install
	smar serve

clean:
	rm -rf outputs mlruns .prefect
