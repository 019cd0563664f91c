# Setup lives inside the two README commands: `make run` and `make test` create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HF_STAMP := $(VENV)/.installed-hf
WORKDIR ?= runs/pipeline-tiny
# 8 fake CPU devices, so the sharding tests see a real mesh on any machine. JAX_PLATFORMS=cpu: the
# tests run on the CPU even where libtpu is installed (the `tpu` extra, for tests/test_fit.py's
# AOT compiles), without libtpu's start-up warnings and its /tmp/libtpu_lockfile.
TEST_ENV := JAX_PLATFORMS=cpu XLA_FLAGS=--xla_force_host_platform_device_count=8

.PHONY: setup chromium run findings test test-fast bench presets clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

# transformers + a CPU torch: the reference for the checkpoint import/export tests only; libtpu
# (the `tpu` extra): tests/test_fit.py compiles train steps for TPU topologies on this CPU.
$(HF_STAMP): $(STAMP)
	$(PY) -m pip install -q -e ".[test,hf,tpu]"
	touch $(HF_STAMP)

setup: $(STAMP)

# Debian's Chromium for the comparison page's browser tests (tests/serve/test_serve_browser.py), driven by
# the playwright in .venv. Never `playwright install`: its browser download needs the internet.
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
	  echo "chromium: /usr/bin/chromium is missing and there is no apt-get: install Chromium there, or the browser tests fail"; \
	elif [ "$$(id -u)" = 0 ]; then \
	  (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium) || echo "chromium: apt-get failed; the browser tests will fail"; \
	elif command -v sudo >/dev/null 2>&1; then \
	  (sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y chromium) || echo "chromium: apt-get failed; the browser tests will fail"; \
	else \
	  echo "chromium: /usr/bin/chromium is missing and installing it needs root (no sudo here): as root, apt-get install -y chromium; until then the browser tests fail"; \
	fi

run: $(STAMP)  ## the main job: the whole pipeline at the tiny preset on the embedded data
	$(PY) -m hh.pipeline --config configs/pipeline.py:tiny --workdir $(WORKDIR)

FINDINGS_WORKDIR ?= runs/findings-tiny
findings: $(STAMP)  ## the paper's findings over 3 seeds, with verdicts (report/findings.md; docs/findings.md)
	$(PY) -m hh.pipeline --config configs/findings.py:tiny --workdir $(FINDINGS_WORKDIR)

# HH_REQUIRE_BROWSER=1: a missing Chromium fails the browser tests instead of skipping them
test: $(HF_STAMP) chromium  ## the full test suite
	$(TEST_ENV) HH_REQUIRE_BROWSER=1 $(PY) -m pytest -q tests

test-fast: $(HF_STAMP)
	$(TEST_ENV) $(PY) -m pytest -q -m "not slow" tests

bench: $(STAMP)
	$(PY) benchmarks/train_step.py --preset 13M --seq 1024

# The peer side of the PPO benchmark (docs/performance.md): google/tunix in its own venv, never in .venv.
# bench-ppo-tunix: W1, W2, W3 and W3m, 3 runs each, one JSON line per run appended to PPO_TUNIX_RESULTS.
TUNIX_VENV := benchmarks/peers/.venv-tunix
TUNIX_STAMP := $(TUNIX_VENV)/.installed
PPO_TUNIX_RESULTS ?= benchmarks/results/ppo_tunix.jsonl
.PHONY: bench-ppo bench-ppo-peer-env bench-ppo-scaling bench-ppo-tunix

$(TUNIX_STAMP): benchmarks/peers/requirements-tunix.txt
	$(PYTHON) -m venv $(TUNIX_VENV)
	$(TUNIX_VENV)/bin/python -m pip install -q -r benchmarks/peers/requirements-tunix.txt
	touch $(TUNIX_STAMP)

bench-ppo-peer-env: $(TUNIX_STAMP)

# hh and tunix on W1, W2, W3 and W3m, one after the other, 3 repeats each: the table of docs/performance.md
bench-ppo: $(STAMP) $(TUNIX_STAMP)
	$(PY) benchmarks/ppo_compare.py --tunix_python $(TUNIX_VENV)/bin/python --repeats 3

# the cost curves of hh and tunix: model size, generated length 32 -> 512, batch 8 -> 64, then again with
# gradient microbatches of at most 1024 tokens on both sides (about 25 minutes on 2 cores)
bench-ppo-scaling: $(STAMP) $(TUNIX_STAMP)
	JAX_PLATFORMS=cpu $(PY) benchmarks/ppo_scaling.py --peer $(TUNIX_VENV)/bin/python
	JAX_PLATFORMS=cpu $(PY) benchmarks/ppo_scaling.py --peer $(TUNIX_VENV)/bin/python --micro_tokens 1024

bench-ppo-tunix: $(TUNIX_STAMP)
	mkdir -p $(dir $(PPO_TUNIX_RESULTS))
	for w in W1 W2 W3 W3m; do for run in 1 2 3; do \
	  JAX_PLATFORMS=cpu $(TUNIX_VENV)/bin/python benchmarks/peers/tunix_ppo.py --workload $$w \
	    >> $(PPO_TUNIX_RESULTS) || exit 1; \
	done; done

presets: $(STAMP)
	$(PY) -m hh.models.presets

clean:
	rm -rf $(VENV) runs
