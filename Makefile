# Two commands do all the set-up on a fresh machine:
#   make demo   create .venv, install kernelscope (torch==2.13.0, CPU build), run the tour into ./tour-out
#   make test   the same set-up, then the linter (ruff) and the whole test suite (the API reference's build included)
# and one more builds the API reference:
#   make docs   docs/_build/html/index.html (Sphinx, warnings as errors; the gallery shows the figures of
#               ./tour-out when `make demo` made it, else of a quick tour it runs first)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  := torch==2.13.0
OUT    ?= tour-out
STAMP  := $(VENV)/.installed

.PHONY: demo test docs install browser bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[test,docs]"
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

# The gallery needs a tour's figures: those of $(OUT) (make demo), or a quick tour's (a few minutes the first time;
# run again, the tour resumes and redoes nothing).
DOCS_TOUR = $(if $(wildcard $(OUT)/steps),$(OUT),docs/_build/tour-quick)

docs: install
	$(if $(wildcard $(OUT)/steps),,$(BIN)/kernelscope tour --quick --no-progress --out $(DOCS_TOUR))
	KERNELSCOPE_TOUR=$(DOCS_TOUR) $(BIN)/python -m sphinx -W --keep-going -q -b html docs docs/_build/html
	@echo "Open docs/_build/html/index.html"

bench: install
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .hypothesis docs/_build docs/_generated
