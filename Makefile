# Two commands do all the set-up on a fresh machine:
#   make demo   -> creates .venv, installs afford, runs `afford demo` on the synthetic world
#   make test   -> same install, runs the test suite
# Others: make lint (ruff + import layers), make bench (every benchmark, see benchmarks/run_all.py).
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
export HF_HUB_OFFLINE ?= 1
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: install demo test lint bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch and torchvision first, as the matched pair of constraints.txt.
	$(PIP) install -q -c constraints.txt torch torchvision
	# afford (editable) with the synthetic world and the dev tools, at the tested versions.
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/afford demo

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/lint-imports

bench: install
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) build dist *.egg-info src/*.egg-info
