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

.PHONY: setup run test test-fast bench presets clean

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

run: $(STAMP)  ## the main job: the whole pipeline at the tiny preset on the embedded data
	$(PY) -m hh.pipeline --config configs/pipeline.py:tiny --workdir $(WORKDIR)

test: $(HF_STAMP)  ## the full test suite
	$(TEST_ENV) $(PY) -m pytest -q tests

test-fast: $(HF_STAMP)
	$(TEST_ENV) $(PY) -m pytest -q -m "not slow" tests

bench: $(STAMP)
	$(PY) benchmarks/train_step.py --preset 13M --seq 1024

presets: $(STAMP)
	$(PY) -m hh.models.presets

clean:
	rm -rf $(VENV) runs
