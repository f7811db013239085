#!/usr/bin/env bash
# The prepared GPU check: every benchmark once, bounded, into a few flat files.
#
#   bash benchmarks/device_check.sh [OUTDIR]        # a GPU host, < 5 minutes
#   bash benchmarks/device_check.sh --dry [OUTDIR]  # the same steps, tiny, CPU
#
# Written for a GPU host with no network on which jax (with CUDA), flax,
# optax, orbax and chex are installed and python3 is the Python. What it
# lacks (ml_collections, and any others) comes as wheels in $WHEELS (default
# .whl/), installed with pip --no-index into a scratch directory; Fashion-
# MNIST as its four IDX files in $DATA_DIR (default: Debian's place if it is
# there), else synthetic images are used. The repository's own vae_jax is
# imported (PYTHONPATH), never an installed one.
#
# Steps, each under `timeout`, all within a budget of 285 s (a step that
# would start with less than 10 s left is skipped): train_step.py (trainer,
# plain and the matmul bound, float32 and bf16), importance_sampling.py,
# sweep.py (vmapped against sequential: what --vectorize=auto should pick
# on GPUs), conv.py (PatchConv against nn.Conv), then a short run of the
# vamp and hvae_vamp configs to their ends when vae_jax/configs/vamp.py and
# hvae_vamp.py exist (else the step says it is skipped). OUTDIR (default
# runs/device_check/) gets one STEP.txt per step and summary.json (each
# step's status, exit code and seconds; rewritten after every step): at most
# 7 flat files. --dry runs every step but the vamp run at tiny sizes on the
# CPU with .venv/bin/python (tests/test_device_check.py runs it).
set -euo pipefail

dry=0
out=""
for arg in "$@"; do
  case "$arg" in
    --dry) dry=1 ;;
    -h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "error: unknown option $arg (use --dry or OUTDIR)" >&2; exit 2 ;;
    *) out="$arg" ;;
  esac
done
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${out:-runs/device_check}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
scratch="$(mktemp -d "${TMPDIR:-/tmp}/vae_jax_device_check.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT

if [ "$dry" = 1 ]; then
  py="${PYTHON:-$root/.venv/bin/python}"
  [ -x "$py" ] || py=python3
  export JAX_PLATFORMS=cpu
  budget=240  # a CPU shared with a test suite is slow
else
  py="${PYTHON:-python3}"
  budget=285
fi
site=""
wheels="${WHEELS:-$root/.whl}"
if [ "$dry" = 0 ] && compgen -G "$wheels/*.whl" >/dev/null; then
  site="$scratch/site"
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target "$site" "$wheels"/*.whl
fi
export PYTHONPATH="$root${site:+:$site}${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

fmnist="${DATA_DIR:-/usr/share/datasets/fashion-mnist}"
if [ "$dry" = 1 ]; then
  data=(--synthetic=512)
  data_config=()  # the config runs below write synthetic files of their own
elif [ -f "$fmnist/train-images-idx3-ubyte.gz" ] \
    || [ -f "$fmnist/train-images-idx3-ubyte" ]; then
  data=(--data_dir="$fmnist")
  data_config=(--config.dataset=idx --config.data_dir="$fmnist")
else
  data=(--synthetic=60000)
  data_config=()
fi

start=$SECONDS
summary=()
write_summary() {
  local IFS=,
  printf '{"dry": %s, "python": "%s", "data": "%s", "seconds": %d, "steps": [%s]}\n' \
    "$([ "$dry" = 1 ] && echo true || echo false)" "$py" "${data[*]}" \
    "$((SECONDS - start))" "${summary[*]}" > "$out/summary.json"
}

# step NAME LIMIT_SECONDS COMMAND...: COMMAND's output into OUTDIR/NAME.txt.
step() {
  local name="$1" limit="$2"
  shift 2
  local left=$((budget - (SECONDS - start)))
  if [ "$left" -lt 10 ]; then
    echo "skipped: the check's ${budget} s budget is spent" > "$out/$name.txt"
    summary+=("{\"step\": \"$name\", \"status\": \"no time\"}")
    write_summary
    echo "$name: skipped (no time left)"
    return 0
  fi
  [ "$limit" -le "$left" ] || limit=$left
  local t0=$SECONDS rc=0
  timeout --kill-after=5 "$limit" "$@" >> "$out/$name.txt" 2>&1 || rc=$?
  local status=ok
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then status=timeout
  elif [ "$rc" != 0 ]; then status=failed; fi
  summary+=("{\"step\": \"$name\", \"status\": \"$status\", \"rc\": $rc, \"seconds\": $((SECONDS - t0)), \"limit\": $limit}")
  write_summary
  echo "$name: $status ($((SECONDS - t0)) s of $limit)"
}

# A run of vae_jax/configs/NAME.py to its end, if that config exists.
config_run() {
  local name="$1" limit="$2"
  shift 2
  local file="vae_jax/configs/$name.py"
  : > "$out/$name.txt"
  if [ ! -f "$file" ]; then
    echo "skipped: $file does not exist (yet)" > "$out/$name.txt"
    summary+=("{\"step\": \"$name\", \"status\": \"skipped\", \"why\": \"no $file\"}")
    write_summary
    echo "$name: skipped ($file does not exist)"
    return 0
  fi
  step "$name" "$limit" "$py" -m experiments.train --config="$file" \
    --workdir="$scratch/$name" "${data_config[@]}" "$@"
}

for name in train_step importance_sampling sweep conv; do
  : > "$out/$name.txt"
done
echo "device check: $([ "$dry" = 1 ] && echo dry, CPU || echo GPU), into $out"
"$py" -c "import jax; print('jax', jax.__version__, jax.devices())" \
  > "$out/train_step.txt" 2>&1 || true

if [ "$dry" = 1 ]; then
  step train_step 70 "$py" benchmarks/train_step.py --models=default \
    --repeats=1 --rows=trainer,plain,matmuls --compute_dtypes=bfloat16 \
    --override=hidden_dims=16,latent_dim=2 "${data[@]}"
  step importance_sampling 30 "$py" benchmarks/importance_sampling.py \
    --num_samples=20 --num_examples=8 --hidden_dims=16 --latent_dim=2 \
    --repeats=1
  step sweep 45 "$py" benchmarks/sweep.py --members=2 --steps=2 --repeats=1 \
    --hidden_dims=16 --latent_dim=2 "${data[@]}"
  step conv 40 "$py" benchmarks/conv.py --batch=4 --steps=1 --repeats=1 \
    --channels=4,8
  # The runs below are tiny too: a synthetic directory of their own.
  tiny=(--config.epochs=1 --config.batch_size=32 --config.eval_batch_size=64
        --config.final_importance_samples=2 --quiet)
else
  step train_step 110 "$py" benchmarks/train_step.py --models=default,paper \
    --repeats=3 --rows=trainer,plain,matmuls --compute_dtypes=bfloat16 \
    "${data[@]}"
  step importance_sampling 35 "$py" benchmarks/importance_sampling.py \
    --repeats=3
  step sweep 45 "$py" benchmarks/sweep.py --members=8 --steps=50 --repeats=3 \
    "${data[@]}"
  step conv 25 "$py" benchmarks/conv.py --batch=128 --steps=20 --repeats=3
  tiny=(--config.epochs=2 --config.final_importance_samples=100 --quiet)
fi
if [ "${#data_config[@]}" = 0 ] && { [ -f vae_jax/configs/vamp.py ] \
    || [ -f vae_jax/configs/hvae_vamp.py ]; }; then
  # Synthetic IDX files for the runs (the benchmarks' --synthetic writes
  # its own): 256 images in a dry run, else 10,000.
  "$py" - "$scratch/idx" "$([ "$dry" = 1 ] && echo 256 || echo 10000)" <<'EOF'
import os, sys
import numpy as np
from vae_jax.data.idx import write_idx
directory, n = sys.argv[1], int(sys.argv[2])
os.makedirs(directory)
rng = np.random.default_rng(0)
for prefix, size in (("train", n), ("t10k", n // 4)):
  write_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte.gz"),
            rng.integers(0, 256, (size, 28, 28), dtype=np.uint8))
  write_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte.gz"),
            rng.integers(0, 10, size, dtype=np.uint8))
EOF
  data_config=(--config.dataset=idx --config.data_dir="$scratch/idx"
               --config.validation_size=64)
fi
if [ "$dry" = 1 ]; then  # hvae_vamp has the VampPrior too: one run is enough
  echo "skipped: a dry run trains hvae_vamp only" > "$out/vamp.txt"
  summary+=("{\"step\": \"vamp\", \"status\": \"skipped\", \"why\": \"dry\"}")
  write_summary
  echo "vamp: skipped (dry)"
else
  config_run vamp 35 "${tiny[@]}"
fi
# 35 s on the GPU; a dry run's CPU may be shared with a test suite.
config_run hvae_vamp "$([ "$dry" = 1 ] && echo 70 || echo 35)" "${tiny[@]}"
write_summary
echo "done in $((SECONDS - start)) s: $(ls "$out" | tr '\n' ' ')"
