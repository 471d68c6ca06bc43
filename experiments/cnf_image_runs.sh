#!/usr/bin/env bash
# The image CNF runs committed under experiments/results/cnf/ (issue 30), sized to train in
# under an hour each on one core of the 2-core CPU machine (both run at once, one per core):
#   mnist_5k_14px       FFJORD's multiscale CNF on mnist_5k, downsampled 2x2 to 14x14
#   digits_multiscale   the same model family on the 8x8 digits, beside the MLP-field runs
# Usage: bash experiments/cnf_image_runs.sh [mnist|digits|both]   (default both, in parallel)
# Each run is resumable: rerun its line with --resume after an interruption.
set -euo pipefail
py=${PYTHON:-.venv/bin/python}
out=experiments/results/cnf
which=${1:-both}
pin() { if command -v taskset > /dev/null; then taskset -c "$1" "${@:2}"; else "${@:2}"; fi; }
run() { core=$1; name=$2; shift 2
  pin "$core" "$py" -m node_kit.experiments.cnf --out "$out/$name" --no-progress "$@" \
    > "$out/$name.log" 2>&1; }
mkdir -p "$out"
mnist() {
  run 0 mnist_5k_14px --dataset mnist_5k --downsample 2 --model multiscale --width 16 --depth 2 \
    --blocks 1 --batch-size 32 --steps 500 --lr 1e-3 --trace hutchinson --rtol 1e-3 --atol 1e-3 \
    --eval-rtol 1e-4 --eval-atol 1e-4 --kinetic-energy 0.01 --jacobian-norm 0.01 \
    --eval-batch 500 --eval-probes 4 --log-every 10
}
digits() {
  run 1 digits_multiscale --dataset digits --model multiscale --width 16 --depth 2 --blocks 1 \
    --batch-size 64 --steps 500 --lr 1e-3 --trace hutchinson --rtol 1e-4 --atol 1e-4 \
    --eval-rtol 1e-5 --eval-atol 1e-5 --kinetic-energy 0.01 --jacobian-norm 0.01 \
    --eval-batch 270 --eval-probes 4 --log-every 10
}
case $which in
  mnist) mnist ;;
  digits) digits ;;
  both) mnist & digits & wait ;;
  *) echo "usage: $0 [mnist|digits|both]" >&2; exit 2 ;;
esac
