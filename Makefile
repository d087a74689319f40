# `make demo` and `make test` are the two commands of the README.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test test-slow test-all clean

install: $(VENV)/.installed

# Editable install: `python -m lth.train` reads conf/ from this checkout.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[cpu,dev]'
	touch $@

demo: install
	$(BIN)/python -m lth.train experiment=demo
	@echo
	@echo "Next: . $(VENV)/bin/activate && mlflow ui   (then open http://127.0.0.1:5000, experiment 'lth')"

test: install
	$(BIN)/python -m pytest -m "not slow"

test-slow: install
	$(BIN)/python -m pytest -m slow

test-all: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .lth multirun outputs mlruns mlflow.db
