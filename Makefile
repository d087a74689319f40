# `make demo` and `make test` are the two commands of the README.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test test-slow test-slurm test-all mlflow-server clean

install: $(VENV)/.installed

# Editable install: `python -m lth.train` reads conf/ from this checkout. One resolver pass: the venv's own
# pip installs the project (an upgrade of pip first was a second pass, for nothing the project needs).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[cpu,dev,spark,jax]'
	touch $@

# The digits go through the same Spark ingest as ImageNet, then the search trains from the shards.
demo: install
	$(BIN)/python tools/ingest.py
	$(BIN)/python -m lth.train experiment=demo data=digits_shards
	@echo
	@echo "Next: . $(VENV)/bin/activate && mlflow ui   (then open the runs page printed above)"

# Tests run in TEST_WORKERS processes (pytest-xdist), a test file to each at a time, so a module's shared fixture
# (a sweep trained once for several tests) is built once. Most tests start lth as a process and wait for it, and one
# small training process keeps about one core busy with gaps (imports, MLflow, process starts): on 2 cores, 3 workers
# kept 1.9 cores busy in the default suite and ran it in 7:55, where 2 took 9:54. The SLURM tests stay one at a time:
# they share one node, and the preemption test's job needs all of its GPUs.
TEST_WORKERS ?= 3

test: install
	$(BIN)/python -m pytest -m "not slow and not slurm" -n $(TEST_WORKERS) --dist loadfile --durations=15

# In collection order (the longest modules first, tests/conftest.py), not pytest-xdist's default of the files with most
# tests first: that put the longest single-test files last, where each ran alone while the other workers sat idle.
test-slow: install
	$(BIN)/python -m pytest -m slow -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15

# Needs a cluster: `sudo tools/slurm_localhost.sh start` (a real single-node SLURM on this machine).
test-slurm: install
	$(BIN)/python -m pytest -m slurm --durations=10

# The tracking server of `tracking=server` (cluster sweeps); also serves the MLflow UI on the same port.
MLFLOW_PORT ?= 5000
mlflow-server: install
	$(BIN)/mlflow server --host 127.0.0.1 --port $(MLFLOW_PORT) --backend-store-uri sqlite:///mlflow-server.db \
		--artifacts-destination ./mlartifacts

test-all: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .lth multirun outputs mlruns mlflow.db reports
