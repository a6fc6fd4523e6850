# Every target sets itself up: a virtual environment with torch pinned to the CPU-friendly 2.13.0.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
RUN     := $(VENV)/bin/pipeline
export DS_BUILD_OPS ?= 0
export TORCH_EXTENSIONS_DIR ?= $(HOME)/.cache/forgetless/torch_extensions
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup promot dmt retrain test test-dist validate ls clean bench bench-gpu

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	rm -f $(VENV)/.installed-* && touch $(STAMP)

setup: $(STAMP)  ## create .venv and install the project

promot: $(STAMP)  ## ProMoT vs SFT vs prompt tuning on the embedded default -> runs/promot/report.md
	$(RUN) run recipes/promot.yaml

# Scheduled retraining (README "Scheduled retraining"; CI: .github/workflows/retrain.yml).
RETRAIN_RECIPE ?= recipes/promot.yaml
REGISTRY       ?= runs/registry
RETRAIN_ARGS   ?=
retrain: $(STAMP)  ## train on new data, promote only past the recipe's gate (exit 1 if refused) -> $(REGISTRY)
	$(RUN) retrain $(RETRAIN_RECIPE) --registry $(REGISTRY) $(RETRAIN_ARGS)

dmt: $(STAMP)  ## DMT vs multi-task / sequential / mixed sequential, with a k sweep -> runs/dmt/report.md
	$(RUN) run recipes/dmt.yaml

test: $(STAMP)  ## the test suite (offline, CPU, tiny models)
	$(PY) -m pytest -q

test-dist: $(STAMP)  ## only the multi-process tests: 2 CPU processes under DDP, DeepSpeed ZeRO-2 and ZeRO-3, preemption, retrain (~3 min)
	$(PY) -m pytest -q -m dist

bench: $(STAMP)  ## pipeline vs plain Trainer (speed, memory), packing, CLI start-up, eval share (~8 min) -> docs/benchmarks.md
	$(PY) -m bench

BENCH_GPU_ARGS ?=
bench-gpu: $(STAMP)  ## on a CUDA GPU: tokens/s, MFU, GPU memory, our stages vs a plain Trainer, 0.5B Llama in bf16 -> bench/results/gpu.json
	$(PY) -m bench.gpu $(BENCH_GPU_ARGS)

validate: $(STAMP)
	$(RUN) validate recipes/promot.yaml

ls: $(STAMP)
	$(RUN) ls

clean:
	rm -rf runs
