#!/usr/bin/env bash
# The time-series runs committed under experiments/results/timeseries/ (README and docs quote them).
# A run with a checkpoint passes --resume: rerun this script after an interruption and each
# run continues from its last checkpoint (finished runs only re-evaluate). Two queues run side by side
# (2 CPU cores); pass a queue name (a or b) to run one of them, c for the longer hopper runs,
# d for the neural CDE on japanese_vowels (seeds 0 to 2), e for seeds 1 and 2 of the others there.
set -euo pipefail
py=${PYTHON:-.venv/bin/python}
out=experiments/results/timeseries
# Each run is pinned to one core (queue a: core 0, b and c: core 1), as the committed runs
# were: XLA splits loops over the cores it may use, so another count gives other bits.
core=0
run() { name=$1; shift; mkdir -p "$out/$name"
  resume=(); [ -f "$out/$name/checkpoint.eqx" ] && resume=(--resume)
  pin=(); command -v taskset > /dev/null && pin=(taskset -c "$core")
  "${pin[@]}" "$py" -m node_kit.experiments.timeseries --out "$out/$name" "${resume[@]}" --no-progress "$@" > "$out/$name.log" 2>&1; }
hopper=(--dataset hopper --steps 1500)
vowels=(--dataset japanese_vowels --task classification --batch-size 32 --steps 1000)
queue_a() {
  core=0
  for p in 0.1 0.5; do run "hopper_latent_ode_interp_$p" "${hopper[@]}" --observed $p; done
  for p in 0.1 0.5; do run "hopper_latent_ode_extrap_$p" "${hopper[@]}" --task extrapolation --observed $p; done
  for p in 0.1 0.5; do run "hopper_gru_dt_interp_$p" "${hopper[@]}" --model gru_dt --observed $p; done
}
queue_b() {
  core=1
  run periodic_latent_ode_interp                       # the default command
  run periodic_latent_ode_extrap --task extrapolation
  for model in gru_dt ode_rnn latent_ode; do
    for p in 0.7 0.5 0.3; do run "vowels_${model}_observed_$p" "${vowels[@]}" --model $model --observed $p; done
  done
  for p in 0.1 0.5; do run "hopper_ode_rnn_interp_$p" "${hopper[@]}" --model ode_rnn --observed $p; done
}
queue_c() {  # hopper trained longer, each run from scratch (one cosine schedule over its steps)
  core=1
  for p in 0.1 0.5; do run "hopper_latent_ode_interp_${p}_4k" "${hopper[@]}" --steps 4000 --observed $p; done
  for p in 0.1 0.2 0.3 0.5; do run "hopper_latent_ode_interp_${p}_8k" "${hopper[@]}" --steps 8000 --observed $p; done
  for p in 0.2 0.3; do run "hopper_ode_rnn_interp_$p" "${hopper[@]}" --model ode_rnn --observed $p; done
}
queue_d() {  # the neural CDE on japanese_vowels, seeds 0, 1, 2 (about an hour of core 0)
  core=0
  for seed in 0 1 2; do
    for p in 0.7 0.5 0.3; do
      name="vowels_ncde_observed_$p"; [ "$seed" = 0 ] || name="${name}_seed$seed"
      run "$name" "${vowels[@]}" --model ncde --observed $p --seed $seed
    done
  done
}
queue_e() {  # the other three models on japanese_vowels, seeds 1 and 2 (core 1)
  core=1
  for seed in 1 2; do
    for model in gru_dt ode_rnn latent_ode; do
      for p in 0.7 0.5 0.3; do
        run "vowels_${model}_observed_${p}_seed$seed" "${vowels[@]}" --model $model --observed $p --seed $seed
      done
    done
  done
}
queue_f() {  # the neural CDE's settings compared on the validation split (--eval-every), 50% dropped
  core=1
  sweep=("${vowels[@]}" --model ncde --observed 0.5 --eval-every 100 --eval-batch 30)
  run vowels_ncde_sweep_default "${sweep[@]}"
  run vowels_ncde_sweep_small "${sweep[@]}" --hidden 16 --width 32
  run vowels_ncde_sweep_linear "${sweep[@]}" --interpolation linear
}
case "${1:-both}" in
  a) queue_a ;;
  b) queue_b ;;
  c) queue_c ;;  # about 2.5 hours of one core; not part of the default (both)
  d) queue_d ;;  # the neural CDE: about an hour; not part of the default
  e) queue_e ;;  # seeds 1 and 2 of the others: about 15 minutes; not part of the default
  f) queue_f ;;  # three neural CDE settings on the validation split: about half an hour
  de) queue_d & queue_e; wait ;;
  *) queue_a & queue_b; wait ;;
esac
