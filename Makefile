# leadbox: `make run` runs the daemon on embedded defaults; `make test` installs what the tests need and runs them.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-container check install system-deps lint bench clean

$(STAMP): pyproject.toml
	@$(PY) -c "import ensurepip, venv" 2>/dev/null || { \
	  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/leadbox run

# Debian packages the tests use for real: Dovecot (IMAP server) and Chromium (the browser that
# Playwright drives; Playwright's own browser download is never used). PostgreSQL runs on the machine.
system-deps:
	@command -v dovecot >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1 || { \
	  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dovecot-imapd chromium; }
	@pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null || { \
	  command -v pg_ctlcluster >/dev/null 2>&1 && pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | head -1) main start || true; }

test: system-deps $(STAMP)
	$(BIN)/ruff check agent tests bench
	$(BIN)/mypy agent
	$(BIN)/python -m pytest -q

# The image on a real engine: tools/container-engine.sh installs Docker and docker-compose from
# Debian when missing, starts dockerd, provides the base images (pulled, or built from Debian
# packages when no registry answers), and `down` stops the dockerd it started, pass or fail.
# The compose tests run with Debian's docker-compose 1.29 and with Compose v2 (LEADBOX_COMPOSE_V2).
test-container: $(STAMP)
	@trap 'tools/container-engine.sh down' EXIT; \
	  tools/container-engine.sh postgres && \
	  v2=$$(PIP=$(BIN)/pip tools/container-engine.sh compose-v2) && \
	  LEADBOX_CONTAINER_TESTS=1 LEADBOX_COMPOSE_V2=$$v2 $(BIN)/python -m pytest -q tests/container

# The quick loop while coding: lint, types and every test not marked slow (under a minute).
check: system-deps $(STAMP)
	$(BIN)/ruff check agent tests bench
	$(BIN)/mypy agent
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check agent tests bench
	$(BIN)/mypy agent

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
