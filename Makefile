# Two commands for a fresh clone: `make demo` and `make test`. Both bootstrap .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make demo` installs only what the demo needs; `make test` the tools and every extra.
DEMO_STAMP := $(VENV)/.demo

.PHONY: demo test lint bench clean browser docs

# The emulators are a package of their own (sandbox/), installed beside the agent.
$(DEMO_STAMP): pyproject.toml sandbox/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ./sandbox -e '.[demo]'
	touch $(DEMO_STAMP)

$(STAMP): pyproject.toml sandbox/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ./sandbox -e '.[dev]'
	touch $(STAMP) $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/dq-agent demo --project .

lint: $(STAMP)
	$(BIN)/ruff check dq_agent sandbox tests benchmarks
	$(BIN)/ruff format --check dq_agent sandbox tests benchmarks
	$(BIN)/mypy

# The dashboard's end-to-end tests drive Debian's Chromium (no browser is downloaded) and
# check every page with axe-core, installed from the npm registry as tests/browser pins it.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
AXE := tests/browser/node_modules/axe-core/axe.min.js
# The emoji font lets the screenshots show the Slack thread's emoji as people see them.
BROWSER_PACKAGES := chromium fonts-noto-color-emoji
browser: $(AXE)
	@{ test -x /usr/bin/chromium && test -d /usr/share/fonts/truetype/noto; } \
	  || { command -v apt-get >/dev/null \
	  && { $(SUDO) apt-get install -y -q $(BROWSER_PACKAGES) >/dev/null \
	       || { $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q $(BROWSER_PACKAGES) >/dev/null; }; } \
	  || echo "no /usr/bin/chromium: the dashboard's browser tests will be skipped"; }

$(AXE): tests/browser/package-lock.json
	@command -v npm >/dev/null && npm ci --prefix tests/browser --no-audit --no-fund --silent \
	  && touch $(AXE) || echo "no npm: the dashboard's accessibility tests will be skipped"

# The documentation site (mkdocs.yml, docs/), built with --strict: a broken link or anchor fails.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

# The tests run in two processes (one on a single core): each test makes its own databases,
# schemas, ports and files, so any two may run at once. A module's tests run in one process,
# in order (the dashboard's last test checks the screenshots the ones before it left).
test: lint browser
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir $$(mktemp -d)
	$(BIN)/pytest -q --numprocesses=auto --maxprocesses=2 --dist loadfile

$(VENV)/.bench: $(STAMP)
	$(BIN)/pip install --quiet -e ./sandbox -e '.[dev,bench]'
	touch $(VENV)/.bench

# Soda Core 4, compared on PostgreSQL, in a virtualenv of its own: its pins may clash with ours.
SODA_VENV := benchmarks/.soda-venv
$(SODA_VENV)/.installed: benchmarks/soda-requirements.txt
	$(PYTHON) -m venv $(SODA_VENV)
	$(SODA_VENV)/bin/pip install --quiet --upgrade pip
	$(SODA_VENV)/bin/pip install --quiet -r benchmarks/soda-requirements.txt
	touch $@

# Weekly disease counts with labelled outbreaks (benchmarks/labelled.py): the R package
# surveillance as Debian ships it (r-cran-surveillance, GPL-2), downloaded once without root.
SURVEILLANCE := benchmarks/.data/surveillance
$(SURVEILLANCE)/.unpacked:
	tmp=$$(mktemp -d) && (cd $$tmp && apt-get download -q r-cran-surveillance) \
	  && mkdir -p $(SURVEILLANCE) && dpkg -x $$tmp/r-cran-surveillance_*.deb $(SURVEILLANCE) \
	  && rm -rf $$tmp && touch $@

bench: $(VENV)/.bench $(SODA_VENV)/.installed $(SURVEILLANCE)/.unpacked
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/run.py --backends postgresql --rows 10000000 --fat-finger
	$(BIN)/python benchmarks/run.py --backends duckdb --rows 1000000,10000000
	$(BIN)/python benchmarks/run.py --backends spark --rows 10000000
	$(BIN)/python benchmarks/run.py --backends mariadb
	$(BIN)/python benchmarks/volume.py
	$(BIN)/python benchmarks/broker.py
	$(BIN)/python benchmarks/labelled.py
	$(BIN)/python benchmarks/fat_finger.py
	$(BIN)/python benchmarks/semantic.py
	$(BIN)/python benchmarks/escalation.py
	$(BIN)/python benchmarks/branch.py
	$(BIN)/python benchmarks/iceberg.py
	$(BIN)/python benchmarks/ui.py
	$(BIN)/python benchmarks/web.py
	$(BIN)/python benchmarks/salesforce.py
	$(BIN)/python benchmarks/replicas.py
	$(BIN)/python benchmarks/stories.py

clean:
	rm -rf $(VENV) .dq-agent .pytest_cache .mypy_cache .ruff_cache test-artifacts tests/browser/node_modules
