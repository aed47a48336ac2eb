# relay: `make up` runs the stack on embedded defaults; `make test` runs the test suite.
# Every target creates .venv and installs what it needs when missing.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up test lint format bench chaos clean readme screenshots

$(STAMP): pyproject.toml
	@# bubblewrap isolates code nodes (with libseccomp's filters); without it they refuse to run.
	@command -v bwrap >/dev/null && { ldconfig -p || /sbin/ldconfig -p; } 2>/dev/null | grep libseccomp.so.2 >/dev/null || \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && apt-get install -y -qq bubblewrap libseccomp2 >/dev/null; \
	  else echo "warning: install bubblewrap and libseccomp2 (code nodes refuse without them)"; fi
	@# Debian's chromium runs the browser tests (Playwright drives it; it downloads no browser).
	@command -v chromium >/dev/null || \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "warning: install chromium (the browser tests skip without it)"; fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

up: $(STAMP)
	$(BIN)/relay up

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench

chaos: $(STAMP)
	@# The short drills run in `make test` too; `-s` prints each drill's row.
	$(BIN)/python -m pytest -m "chaos or not chaos" -s tests/chaos

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

# Regenerate the README's configuration table from the settings models.
readme: $(STAMP)
	$(BIN)/python -c "import re, pathlib; from relay.cli import settings_table; p = pathlib.Path('README.md'); t = p.read_text(); p.write_text(re.sub(r'(## Configuration\n\n)\| variable.*?\n(\n## )', lambda m: m.group(1) + settings_table() + '\n' + m.group(2), t, flags=re.S))"

# Screenshots of every dashboard page (docs/screenshots/), taken by the browser tests.
screenshots: $(STAMP)
	RELAY_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest -q -p no:cacheprovider tests/browser/test_dashboard_browser.py
