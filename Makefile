# Two commands do all the set-up: `make demo` and `make test` create the virtual environment,
# install the project and start what they need.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# pytest-xdist workers for `make test`: the suite mostly waits (daemons, sensors, runs, browsers),
# so more workers than this 2-core machine's cores; each has its own databases, buckets, ports and
# Dagster homes (photo_pipeline_tests/conftest.py). `make test TEST_WORKERS=0` runs it serially.
TEST_WORKERS ?= 3

.PHONY: setup bytecode demo test ui benchmarks

# uv resolves and installs the same requirements in about 20 s where pip takes about 2 min; it is
# installed into the venv itself (from the same index pip uses), and pip does the work when uv cannot
# be had. Both leave every installed module compiled to bytecode (uv only when asked): where
# PYTHONDONTWRITEBYTECODE is set, as on the CI machines, Python would otherwise compile dagster,
# SQLAlchemy, botocore... from source in every process it starts (2-3 s of CPU each: a code server,
# a run worker, each `photo-pipeline` command).
$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	if $(BIN)/python -m pip install --quiet uv && \
		$(BIN)/python -m uv pip install --quiet --compile-bytecode --python $(BIN)/python -e ".[dev]"; then \
		:; \
	else \
		echo "uv could not install the project; pip installs it (about 2 min)" >&2; \
		$(BIN)/python -m pip install --quiet --upgrade pip && \
		$(BIN)/python -m pip install --quiet -e ".[dev]"; \
	fi
	touch $@

setup: $(BIN)/.installed

demo: setup bytecode
	$(BIN)/photo-pipeline demo

ui: setup bytecode
	$(BIN)/photo-pipeline ui

# The project's own modules compiled too (an editable install leaves them in the work tree).
bytecode: setup
	$(BIN)/python -m compileall -q photo_pipeline photo_pipeline_tests benchmarks

test: setup bytecode
	./scripts/ensure-postgres.sh
	./scripts/ensure-chromium.sh
	./scripts/ensure-redis.sh
	./scripts/ensure-s3rver.sh
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder --durations=10

benchmarks: setup
	for script in benchmarks/*.py; do $(BIN)/python "$$script" || exit 1; done
