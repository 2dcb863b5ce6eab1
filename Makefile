# Two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

PG_URL    ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: install run test test-services audit bench bench-relay bench-sso bench-convert bench-settle clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

## run: install, migrate, seed the demo coalition and serve on SQLite (no other service)
run: install
	$(BIN)/hub db upgrade
	$(BIN)/hub demo seed
	$(BIN)/hub up

## test: install and run the whole suite on SQLite
test: install
	$(BIN)/pytest

## test-services: the same suite against this machine's PostgreSQL and Redis
test-services: install
	HUB_TEST_DATABASE_URL=$(PG_URL) HUB_TEST_REDIS_URL=$(REDIS_URL) $(BIN)/pytest

## audit: known vulnerabilities of the installed dependencies (PyPI's advisory data; docs/security.md)
audit: install
	$(BIN)/pip-audit --vulnerability-service pypi --skip-editable --progress-spinner off

## bench: the earn benchmark on PostgreSQL (prints one JSON line)
bench: install
	$(BIN)/python bench/earn.py --database-url $(PG_URL)

## bench-relay: the redemption relay against a no-op Celery task, on PostgreSQL and Redis
## (its own queue on Redis db 14; prints one JSON line)
RELAY_REDIS_URL ?= redis://127.0.0.1:6379/14
bench-relay: install
	$(BIN)/python bench/relay.py --database-url $(PG_URL) --redis-url $(RELAY_REDIS_URL)

## bench-settle: close a month of 1,000,000 transfers and export it, against the plain SQL
## aggregate over the same rows, on PostgreSQL (prints one JSON line)
bench-settle: install
	$(BIN)/python bench/settle.py --database-url $(PG_URL)

## bench-convert: conversions (quote + execution) per second against pgbench, on PostgreSQL
bench-convert: install
	$(BIN)/python bench/convert.py --database-url $(PG_URL)

## bench-sso: authorization-code flows and introspections per second on PostgreSQL (one JSON line)
bench-sso: install
	$(BIN)/python bench/sso.py --database-url $(PG_URL)

clean:
	rm -rf $(VENV) instance .pytest_cache
