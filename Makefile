# whatsapp-dispatch: `make install`, `make test`, `make run` are the project's contracts (see README).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install lock test unit cov run sandbox worker web lint docs format bench bench-webhooks bench-api soak redis-server chromium promtool clean

UV_VERSION := 0.13.9

# Exactly what requirements.lock names (versions and hashes, no resolving), then the project itself.
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --python $(BIN)/python --require-hashes --no-deps -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

# After changing pyproject.toml's dependencies: resolve them again into requirements.lock (commit it).
lock:
	@test -x $(BIN)/uv || { $(PYTHON) -m venv $(VENV) && $(BIN)/pip install --quiet uv==$(UV_VERSION); }
	$(BIN)/uv pip compile --quiet --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
	  --extra dev --generate-hashes pyproject.toml -o requirements.lock

# The tests start private redis-server processes on free ports, and look at Flower in headless
# Chromium: make sure both binaries exist (Debian's packages).
redis-server:
	@command -v redis-server >/dev/null || { \
	  echo "redis-server missing: installing Debian's package"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null; }

chromium:
	@command -v chromium >/dev/null || { \
	  echo "chromium missing: installing Debian's package"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null; }

# promtool checks and unit-tests the alert rules of deploy/prometheus (tests/unit/test_monitoring.py):
# Debian's prometheus package ships it.
promtool:
	@command -v promtool >/dev/null || { \
	  echo "promtool missing: installing Debian's package"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus) >/dev/null; }

test: install redis-server chromium promtool
	mkdir -p build/artifacts
	ARTIFACTS=$(CURDIR)/build/artifacts $(BIN)/pytest

unit: install promtool
	$(BIN)/pytest tests/unit

# Coverage of the pure and in-process tiers (the process tiers run the code in other processes).
cov: install redis-server promtool
	$(BIN)/pytest --cov --cov-report=term-missing:skip-covered tests/unit tests/inprocess

CODE := worker producers devtools tests bench

# The formatter owns the layout; ruff checks (with complexity and RUF); mypy checks the types of
# the production code; the docs build with --strict (a broken link, or a page not in mkdocs.yml's
# nav, fails). Not --quiet: mkdocs 1.6 then drops the warnings --strict counts, and passes.
lint: install
	$(BIN)/ruff format --check $(CODE)
	$(BIN)/ruff check $(CODE)
	$(BIN)/mypy
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir build/site

# The reference (docs/, mkdocs.yml) served with live reload on http://127.0.0.1:8001.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8001

format: install
	$(BIN)/ruff format $(CODE)
	$(BIN)/ruff check --fix $(CODE)

# The main job on a fresh machine: Redis (started if none answers), the sandbox unless real
# credentials are set, a worker, one message of each type, and each task's wamid or failure.
run: install redis-server
	$(BIN)/python -m devtools.demo

sandbox: install
	$(BIN)/python -m devtools.sandbox --port 8089

worker: install
	$(BIN)/celery -A worker worker --pool threads --concurrency 64 --loglevel INFO

# The webhook receiver on $PORT (default 8000); needs DISPATCH_WEBHOOK_SECRET.
web: install
	$(BIN)/python -m worker.web

# Crash-recovery soak (about 12 minutes): 20 SIGKILLs per broker, no intent lost, time to settle.
soak: install redis-server
	$(BIN)/python -m bench.recovery_soak

# Redis-restart soak (about 6 minutes): 30 Redis restarts mid-batch, stalls (0 expected), intents
# settled, time to settle after each restart.
.PHONY: soak-restart
soak-restart: install redis-server
	$(BIN)/python -m bench.redis_restart_soak

# Failover soak (about 6 minutes): 10 primaries SIGKILLed mid-batch behind three Sentinels, the
# killed one rejoining as a replica each time; intents lost and sent twice (0 expected), settle times.
.PHONY: soak-failover
soak-failover: install redis-server
	$(BIN)/python -m bench.failover_soak

# Throughput benchmark (a few minutes): prints a table with the naive baseline and Celery's own
# ceiling beside it; then a second, smaller run under py-spy writes a flame graph of each path
# under build/flame/ (sampling slows a worker by about a quarter, so its figures are not quoted).
bench: install redis-server
	$(BIN)/python -m bench.throughput
	$(BIN)/python -m bench.throughput --n 2000 --latency 0.05 --only single campaign --flame build/flame

# Webhook benchmark (about a minute): accepted and applied events/s beside the naive baseline.
bench-webhooks: install redis-server
	$(BIN)/python -m bench.webhooks

# HTTP API benchmark (about a minute): single and batch enqueue requests/s and p99, beside send_message.delay.
bench-api: install redis-server
	$(BIN)/python -m bench.http_api

# The fuzz tier at length (about half an hour): tests/fuzz with FUZZ_SCALE (default 60) times the
# examples of `make test`'s bounded run (about a minute); prints the number of cases run, and
# hypothesis's shrunk example for anything it finds.
.PHONY: fuzz-long
fuzz-long: install redis-server
	FUZZ_SCALE=$${FUZZ_SCALE:-60} $(BIN)/pytest tests/fuzz -o timeout=0 -p no:cacheprovider

clean:
	rm -rf $(VENV) .pytest_cache *.egg-info
