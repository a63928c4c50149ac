# GDA Studio. `make run` starts the app, `make test` runs every test; both set up .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
# Two stamps, so that `make run` installs only what the app needs and `make test` adds the rest.
RUNTIME := $(VENV)/.runtime-installed
TESTING := $(VENV)/.test-installed
PORT   ?= 8501

.PHONY: setup test-setup run test test-fast lint bench bench-speed checkpoints browser-deps clean docs

# The app's set-up alone: requirements.txt, then gda_core itself (editable, so `import gda_core`
# works from any folder and edits to the checkout take effect). --no-deps: pip must not swap the
# pinned local torch for another build while resolving gda-studio's own requirement list;
# --no-build-isolation: build with the venv's setuptools instead of fetching a fresh one.
setup: $(RUNTIME)

$(RUNTIME): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip "setuptools>=64" wheel
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

# The tests' tools on top: pytest, oracles, Playwright, ruff; torchattacks without its stale pins.
test-setup: $(TESTING)

$(TESTING): $(RUNTIME) requirements-dev.txt requirements-nodeps.txt
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
	@touch $@

run: setup
	$(BIN)/streamlit run app.py --server.address 127.0.0.1 --server.port $(PORT)

# Two test processes per two cores (pytest-xdist): each test runs torch on one thread (tests/conftest.py), so
# one process leaves a core idle. --dist loadfile keeps a file's tests, and its module fixtures (a trained model,
# a streamlit server), in one process.
XDIST := -n auto --dist loadfile

test: test-setup
	$(BIN)/python -m pytest $(XDIST)

# Everything but the long end-to-end runs, the real-browser tests and the GPU checks (a few minutes on 2 cores).
test-fast: test-setup
	$(BIN)/python -m pytest $(XDIST) -m "not slow and not browser and not gpu"

lint: test-setup
	$(BIN)/ruff check gda_core pages app.py tests bench

# Debian's chromium for the real-browser tests (Playwright drives it; it never downloads a browser).
browser-deps:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

bench: setup
	$(BIN)/python -m pip install --quiet -r bench/requirements.txt
	$(BIN)/python -m bench.bench_engine

# Speed vs diffusers, utilisation and slider latency -> bench/results/speed_<device>.json (CPU: ~15-30 min).
bench-speed: setup
	$(BIN)/python -m pip install --quiet -r bench/requirements.txt
	$(BIN)/python -m bench.bench_speed

# docs/benchmarks.md and docs/protocol-results.md from bench/results/*.json (the venv's python: its tables are
# Jinja2 templates, and jinja2 comes with streamlit; no torch needed).
docs: setup
	$(BIN)/python -m bench.make_docs

# Re-train and re-evaluate every shipped checkpoint (bench/train_shipped.py SHIPPED: every family on
# digits, the distilled student, pneumoniamnist from ../shared/data). Hours on a 2-core CPU.
checkpoints: setup
	$(BIN)/python -m bench.train_shipped --only all

clean:
	rm -rf runs test-output .pytest_cache
