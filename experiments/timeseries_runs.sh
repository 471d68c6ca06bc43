#!/usr/bin/env bash
# The time-series runs committed under experiments/results/timeseries/ (README and docs quote them).
# A run with a checkpoint passes --resume: rerun this script after an interruption and each
# run continues from its last checkpoint (finished runs only re-evaluate). Two queues run side by side
# (2 CPU cores); pass a queue name (a or b) to run one of them.
set -euo pipefail
py=${PYTHON:-.venv/bin/python}
out=experiments/results/timeseries
run() { name=$1; shift; mkdir -p "$out/$name"
  resume=(); [ -f "$out/$name/checkpoint.eqx" ] && resume=(--resume)
  "$py" -m node_kit.experiments.timeseries --out "$out/$name" "${resume[@]}" --no-progress "$@" > "$out/$name.log" 2>&1; }
hopper=(--dataset hopper --steps 1500)
vowels=(--dataset japanese_vowels --task classification --batch-size 32 --steps 1000)
queue_a() {
  for p in 0.1 0.5; do run "hopper_latent_ode_interp_$p" "${hopper[@]}" --observed $p; done
  for p in 0.1 0.5; do run "hopper_latent_ode_extrap_$p" "${hopper[@]}" --task extrapolation --observed $p; done
  for p in 0.1 0.5; do run "hopper_gru_dt_interp_$p" "${hopper[@]}" --model gru_dt --observed $p; done
}
queue_b() {
  run periodic_latent_ode_interp                       # the default command
  run periodic_latent_ode_extrap --task extrapolation
  for model in gru_dt ode_rnn latent_ode; do
    for p in 0.7 0.5 0.3; do run "vowels_${model}_observed_$p" "${vowels[@]}" --model $model --observed $p; done
  done
  for p in 0.1 0.5; do run "hopper_ode_rnn_interp_$p" "${hopper[@]}" --model ode_rnn --observed $p; done
}
case "${1:-both}" in
  a) queue_a ;;
  b) queue_b ;;
  *) queue_a & queue_b; wait ;;
esac
# Latent ODE interpolation on hopper trained longer: the 1500-step runs above resumed to
# 4000 steps (cosine schedule re-spread over 4000). Run after queue a:
#   for p in 0.1 0.5; do d=$out/hopper_latent_ode_interp_${p}_4k; mkdir -p $d
#     cp $out/hopper_latent_ode_interp_$p/{checkpoint.eqx,history.csv,results.json} $d/; done
#   run hopper_latent_ode_interp_0.1_4k "${hopper[@]}" --steps 4000 --observed 0.1
#   run hopper_latent_ode_interp_0.5_4k "${hopper[@]}" --steps 4000 --observed 0.5
# and again from the 4000-step runs to 8000 steps (directories *_8k, copied from *_4k).
# hopper at 20% and 30% observed: latent ODE trained 8000 steps from the start (one cosine
# schedule), then ODE-RNN 1500 steps, one queue per observed share:
#   for p in 0.2 0.3; do ( run hopper_latent_ode_interp_${p}_8k "${hopper[@]}" --steps 8000 --observed $p
#     run hopper_ode_rnn_interp_$p "${hopper[@]}" --model ode_rnn --observed $p ) & done; wait
