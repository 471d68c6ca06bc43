#!/usr/bin/env bash
# Training with the reversible adjoint beside checkpointing (issue 28): the cnf default
# (8gaussians) and the timeseries default (periodic latent ODE, interpolation), 3 seeds
# of each adjoint, under experiments/results/reversible/. Two lanes, each pinned to one
# core (as the committed runs are): lane 0 the CNF runs, lane 1 the latent ODE runs.
# A finished run (its results.json written) is skipped; an interrupted one is resumed.
# Then `python experiments/reversible_summary.py` writes training.json from the runs.
set -euo pipefail
py=${PYTHON:-.venv/bin/python}
out=experiments/results/reversible
mkdir -p "$out"
run() {
  core=$1; command=$2; name=$3; shift 3
  dir="$out/$name"
  [ -f "$dir/results.json" ] && return 0
  resume=(); [ -f "$dir/checkpoint.eqx" ] && resume=(--resume)
  pin=(); command -v taskset > /dev/null && pin=(taskset -c "$core")
  "${pin[@]}" "$py" -m "node_kit.experiments.$command" --out "$dir" --no-progress "${resume[@]}" "$@" > "$dir.log" 2>&1
}
lane() {
  core=$1; command=$2; short=$3
  for seed in 0 1 2; do
    for adjoint in checkpoint reversible; do
      run "$core" "$command" "${short}_${adjoint}_seed$seed" --adjoint "$adjoint" --seed "$seed"
    done
  done
}
lane 0 cnf cnf &
lane 1 timeseries latent_ode &
wait
"$py" experiments/reversible_summary.py
