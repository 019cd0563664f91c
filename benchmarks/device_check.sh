#!/usr/bin/env bash
# The accelerator checks of docs/performance.md in one run: about 6 minutes on one GPU, 8 at most.
#
#   bash benchmarks/device_check.sh [OUT_DIR]        # default: $OUT if set, else benchmarks/results
#   JAX_PLATFORMS=cpu DEVICE_CHECK_SMOKE=1 bash benchmarks/device_check.sh /tmp/dc   # toy sizes, any backend
#
# Steps, each a fresh process with its own time limit; a step that fails or times out is recorded
# with its exit status and the run goes on:
#   1. train_step_bf16_fused  the 13M LM train step, bf16 compute, fused attention (cuDNN on GPU),
#                             MFU against a bf16 matmul peak (benchmarks/train_step.py)
#   2. train_step_f32_dense   the same step in float32 with dense attention, against a float32 peak
#   3. ppo_w3_f32             hh's PPO iteration on W3 as the CPU table runs it (benchmarks/ppo_iteration.py)
#   4. ppo_w3_bf16_fused      the same with bf16 compute and fused attention
#   5. ppo_w3_tunix           tunix on W3, only where its venv (benchmarks/peers/.venv-tunix) exists
# Writes OUT_DIR/device_check.json: {"device": ..., "steps": {name: last JSON line or error}}.
#
# Python: $PYTHON, else .venv/bin/python, else python3 (a GPU image's own JAX). hh's own dependencies
# (setup.py) must import there: an image with JAX, flax, optax and orbax but without ml-collections
# (or grain, sentencepiece) needs those carried as wheels; a missing one is named in the step's error.
set -uo pipefail
cd "$(dirname "$0")/.."
out_dir=${1:-${OUT:-benchmarks/results}}
mkdir -p "$out_dir"
work=$(mktemp -d)
py=${PYTHON:-}
[ -z "$py" ] && [ -x .venv/bin/python ] && py=.venv/bin/python
[ -z "$py" ] && py=python3
tunix_py=benchmarks/peers/.venv-tunix/bin/python
unset XLA_FLAGS     # one device, whatever the caller's test settings

if [ "${DEVICE_CHECK_SMOKE:-0}" = 1 ]; then
  train_args=(--preset smoke --seq 128 --batch 2 --steps 1 --matmul-size 256 --matmul-runs 2)
  ppo=(W1 2) limit=300
else
  train_args=(--preset 13M --seq 1024 --batch 16 --steps 10 --matmul-size 8192 --matmul-runs 10)
  ppo=(W3 6) limit=95      # 5 steps × 95 s: under 8 minutes even if every step hits its limit
fi

step() {  # step NAME LIMIT_S COMMAND...: the command's stdout and stderr go to $work/NAME.{out,err}
  local name=$1 seconds=$2
  shift 2
  echo "== $name (limit ${seconds}s): $*" >&2
  timeout "$seconds" "$@" >"$work/$name.out" 2>"$work/$name.err"
  echo $? >"$work/$name.rc"
  tail -n 2 "$work/$name.err" >&2
}

step train_step_bf16_fused $limit "$py" benchmarks/train_step.py "${train_args[@]}" \
  --dtype bfloat16 --peak-dtype bfloat16 --attention fused
step train_step_f32_dense $limit "$py" benchmarks/train_step.py "${train_args[@]}" \
  --dtype float32 --peak-dtype float32 --attention dense
step ppo_w3_f32 $limit "$py" benchmarks/ppo_iteration.py --workload "${ppo[0]}" --iterations "${ppo[1]}"
step ppo_w3_bf16_fused $limit "$py" benchmarks/ppo_iteration.py --workload "${ppo[0]}" --iterations "${ppo[1]}" \
  --override '{"dtype": "bfloat16", "attention": "fused"}'
if [ -x "$tunix_py" ]; then
  step ppo_w3_tunix $limit "$tunix_py" benchmarks/peers/tunix_ppo.py --workload "${ppo[0]}" --iterations "${ppo[1]}"
else
  echo "no tunix venv ($tunix_py): make bench-ppo-peer-env needs the package index" >"$work/ppo_w3_tunix.skipped"
fi

"$py" - "$work" "$out_dir/device_check.json" <<'EOF'
import glob, json, os, subprocess, sys, time
work, path = sys.argv[1], sys.argv[2]
steps = {}
for rc_file in sorted(glob.glob(os.path.join(work, "*.rc"))):
    name = os.path.basename(rc_file)[:-3]
    rc = int(open(rc_file).read().strip() or 1)
    lines = [l for l in open(os.path.join(work, name + ".out")).read().splitlines() if l.startswith("{")]
    if rc == 0 and lines:
        steps[name] = json.loads(lines[-1])
    else:
        err = open(os.path.join(work, name + ".err")).read()
        steps[name] = {"error": f"exit {rc}" + (" (timed out)" if rc == 124 else ""), "stderr_tail": err[-2000:]}
for skipped in glob.glob(os.path.join(work, "*.skipped")):
    steps[os.path.basename(skipped)[:-8]] = {"skipped": open(skipped).read().strip()}
try:
    import jax
    device = {"platform": jax.default_backend(), "devices": [d.device_kind for d in jax.devices()],
              "jax_version": jax.__version__}
except Exception as e:  # the report still says what ran
    device = {"error": repr(e)}
try:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
except OSError:
    commit = ""
report = {"run_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "commit": commit, "device": device, "steps": steps}
with open(path, "w") as f:
    json.dump(report, f, indent=1)
print(path)
for name, row in steps.items():
    brief = {k: row[k] for k in ("mfu", "step_s", "iteration_s_median", "error", "skipped") if k in row}
    print(f"  {name}: {brief}")
EOF
rm -rf "$work"
