#!/usr/bin/env bash
# The CNF runs committed under experiments/results/cnf/ (README and docs quote them).
# Each run is resumable: rerun a line with --resume after an interruption.
set -euo pipefail
py=${PYTHON:-.venv/bin/python}
out=experiments/results/cnf
# Pinned to one core, as the committed runs were (XLA splits loops over the cores it may
# use, so another count can give other bits).
pin=(); command -v taskset > /dev/null && pin=(taskset -c 0)
run() { name=$1; shift; "${pin[@]}" "$py" -m node_kit.experiments.cnf --out "$out/$name" --no-progress "$@" > "$out/$name.log" 2>&1; }
mkdir -p "$out"
run 8gaussians --dataset 8gaussians                       # the default command
run checkerboard --dataset checkerboard --steps 3000
for toy in pinwheel 2spirals moons circles rings swissroll; do
  run "$toy" --dataset "$toy" --steps 1500
done
run 8gaussians_rnode --dataset 8gaussians --kinetic-energy 0.01 --jacobian-norm 0.01
run digits --dataset digits --trace hutchinson --width 128 --depth 2 --batch-size 128 --steps 2000 --lr 1e-3 --eval-batch 270
# Checkerboard trained longer, from scratch (one cosine schedule over 10000 steps):
run checkerboard_10k --dataset checkerboard --steps 10000
run digits_wide --dataset digits --trace hutchinson --width 256 --depth 2 --batch-size 128 --steps 5000 --lr 2e-3 --eval-batch 270
# rings was still near one Gaussian after 1500 steps; a longer run at a lower rate:
run rings_5k --dataset rings --steps 5000 --lr 1e-3
