# GDA Studio. `make run` starts the app, `make test` runs every test; both set up .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
REQS   := requirements.txt requirements-dev.txt requirements-nodeps.txt
PORT   ?= 8501

.PHONY: setup run test test-fast lint bench bench-speed checkpoints browser-deps clean docs

setup: $(STAMP)

$(STAMP): $(REQS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
	@touch $(STAMP)

run: setup
	$(BIN)/streamlit run app.py --server.address 127.0.0.1 --server.port $(PORT)

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow and not browser"

lint: setup
	$(BIN)/ruff check gda_core pages app.py tests bench

# Debian's chromium for the real-browser tests (Playwright drives it; it never downloads a browser).
browser-deps:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

bench: setup
	$(BIN)/python -m pip install --quiet -r bench/requirements.txt
	$(BIN)/python bench/bench_engine.py

# Speed vs diffusers, utilisation and slider latency -> bench/results/speed_<device>.json (CPU: ~15-30 min).
bench-speed: setup
	$(BIN)/python -m pip install --quiet -r bench/requirements.txt
	$(BIN)/python bench/bench_speed.py

# docs/benchmarks.md and docs/protocol-results.md from bench/results/*.json (standard library only: no setup needed).
docs:
	$(PYTHON) -m bench.make_docs

# Re-train the shipped checkpoints on the built-in dataset (CPU: about 35 minutes in all).
checkpoints: setup
	$(BIN)/python bench/train_shipped.py

clean:
	rm -rf runs test-output .pytest_cache
