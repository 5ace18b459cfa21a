# The two set-up commands of the README: `make run` (the engine) and `make test` (the whole suite).
# Both create their own virtual environment in .venv on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-cluster lint bench clean-venv

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

run: $(STAMP)  ## Run the engine: embedded mode, MCP at http://127.0.0.1:8765/mcp
	$(BIN)/handoff serve $(ARGS)

lint: $(STAMP)  ## ruff, mypy --strict and the import-linter layer contracts
	$(BIN)/ruff check handoff projections streams tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test: $(STAMP)  ## The whole suite: lint, then every test tier (starts its own Kafka broker, then a 3-node cluster)
	./scripts/test.sh

test-cluster: $(STAMP)  ## Only the three-broker failure tests (starts a local 3-node KRaft cluster; ~8 min)
	./scripts/test.sh tests/cluster -m cluster

bench: $(STAMP)  ## Benchmarks (print figures; not tests)
	$(BIN)/python -m bench.engine

clean-venv:
	rm -rf $(VENV)
