# The README's two commands: `make serve` and `make test`. Both install into .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ponder-installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install serve test lint models bench-overhead clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[cpu,train,test]'
	# PyPI's vision packages do not import beside the CPU torch and break transformers' model classes.
	$(PY) -m pip uninstall -y -q torchvision torchaudio torchcodec
	touch $(STAMP)

install: $(STAMP)

serve: install
	$(VENV)/bin/ponder serve --host $(HOST) --port $(PORT)

test: install
	$(PY) -m ruff check .
	$(PY) -m pytest -q -ra

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench-overhead: install
	$(VENV)/bin/ponder bench overhead --out docs/results/overhead.md

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
