# Two commands do all the set-up on a fresh machine:
#   make demo   create .venv, install kernelscope (torch==2.13.0, CPU build), run the tour into ./tour-out
#   make test   the same set-up, then the linter (ruff) and the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  := torch==2.13.0
OUT    ?= tour-out
STAMP  := $(VENV)/.installed

.PHONY: demo test install browser bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/kernelscope tour --out $(OUT)
	@echo "Open $(OUT)/index.html"

# The report test needs Debian's chromium + chromedriver. Under CI (CI=true, root) we install them when missing;
# elsewhere the test skips and says how to enable it (make browser).
browser:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	      || echo "warning: could not install chromium"; \
	  else echo "chromium missing: run 'sudo apt-get install chromium chromium-driver'"; fi; \
	fi

test: install
	@if [ "$${CI:-}" = "true" ]; then $(MAKE) --no-print-directory browser; fi
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q

bench: install
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .hypothesis
