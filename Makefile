# Watchkeeper: `make run` starts the console on a local SQLite database; `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: migration run test lint typecheck contracts check venv system-deps demo dist package prove-packages bench bench-peers screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

system-deps:
	@scripts/install-system-deps.sh

run: system-deps venv
	WATCHKEEPER_DEMO=1 $(BIN)/python main.py

demo: venv
	$(BIN)/python main.py demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

contracts: venv
	$(BIN)/lint-imports

check: lint typecheck contracts

test: system-deps venv check
	PG_URL=$$(scripts/ensure-postgres.sh) && \
	WATCHKEEPER_TEST_PG_URL="$$PG_URL" QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest $(PYTEST_ARGS)

migration: venv
	$(BIN)/python -c "import sys; from engine.migrate import new_revision; print(new_revision(sys.argv[1]))" "$(m)"

bench: venv
	$(BIN)/python -m bench

# The peers bench/bench_busy.py compares with (truthound, APScheduler), in a venv of their own: never a
# dependency of Watchkeeper. The benchmark runs each in a subprocess with this venv's python.
PEERS_VENV  := .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed

$(PEERS_STAMP):
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install -q --upgrade pip
	$(PEERS_VENV)/bin/pip install -q 'truthound==3.2.0' 'apscheduler==3.11.*' sqlalchemy
	touch $(PEERS_STAMP)

bench-peers: $(PEERS_STAMP)

dist: venv
	$(BIN)/pip install -q -e '.[build]'
	$(BIN)/pyinstaller --noconfirm --clean build.spec

# The .deb and .tar.gz (with SHA256SUMS) in dist/packages/, from the bundle `make dist` built.
package: venv
	$(BIN)/python scripts/package.py

# Both packages installed, run, upgraded and removed in a fresh Debian 12 root with no network (root).
prove-packages: venv
	scripts/prove-packages.sh

clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache
