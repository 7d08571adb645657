# The README's two commands are `make demo` and `make test`; both do their own set-up.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: venv demo test lint bench bench-follow chaos docs clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	bash scripts/ensure-python.sh "$(PYTHON)" "$(VENV)"
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

demo: venv
	bash scripts/demo.sh

test: venv
	bash scripts/test.sh

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: venv
	bash scripts/bench.sh

# One worker following 500 running containers (docs/performance.md); a few minutes.
bench-follow: venv
	bash scripts/bench.sh --only follow

# Fault injection on its own PostgreSQL and dockerd (docs/chaos.md); ARGS="--jobs 60 --seed 7".
chaos: venv
	bash scripts/chaos.sh $(ARGS)

clean:
	rm -rf $(VENV) .venv-django6 demo/db.sqlite3 .pytest_cache
