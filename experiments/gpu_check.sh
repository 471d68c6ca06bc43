#!/usr/bin/env bash
# One check of node_kit on a GPU machine (issue 11), under 10 minutes on one GPU (the stage
# limits below add up to 575 s; the hopper build runs beside stages 1-4):
#   1. the GPU-relevant tests (memory, training loop) on the GPU; tests/test_parallel.py on the
#      CPU (its runs force 4 host devices and two gloo processes, which a 1-GPU host lacks);
#   2. the memory benchmark (peak bytes of one gradient per adjoint vs solver steps);
#   3. the default CNF command for a bounded number of steps (steps/s, wall time);
#   4. 500 steps of the latent ODE on hopper (the dataset is simulated on the CPU with
#      dm_control, beside stages 1-4; if it cannot be built, that is recorded and skipped);
#   5. experiments/loop_benchmark.py (before vs after if the old tree is there, else after only);
#   6. experiments/scaling.py (the devices JAX sees; counts above them are skipped);
#   7. FFJORD's MNIST configuration (issue 30): the multiscale CNF at 28x28, width 64, depth 3,
#      two blocks per stage, batch 200, Hutchinson, tolerances 1e-5, for a bounded number of
#      steps, then the test bits/dim (Hutchinson, 1 probe per image) and steps/s: the number
#      to set against FFJORD's 0.99 after its full training. On the full TFDS MNIST if
#      MNIST_DATA_DIR names a folder where it is prepared, else on mnist_5k.
# Every stage runs under its own time limit; a failed or timed-out stage is recorded and the
# next one runs. Results: experiments/results/gpu/ (JSON per stage, logs, summary.json).
#
#   experiments/gpu_check.sh            # on the GPU machine
#   experiments/gpu_check.sh --quick    # shortened (also GPU_CHECK_QUICK=1)
#   JAX_PLATFORMS=cpu experiments/gpu_check.sh   # CPU dry run: shortened, written to
#                                                # experiments/results/gpu-cpu-dryrun/
# Env: PYTHON (default .venv/bin/python); LOOP_BEFORE, a folder holding the old node_kit
# (e.g. `git archive 41203a9 node_kit | tar -x -C /tmp/nk_before`; made here if git can).
# The exit status is 1 if any stage failed (a hopper dataset that cannot be built is skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
quick=${GPU_CHECK_QUICK:-0}
[ "${1:-}" = "--quick" ] && quick=1
backend=$("$py" -c 'import jax; print(jax.default_backend())' 2>/dev/null)
if [ "$backend" = "gpu" ]; then
  out=experiments/results/gpu; [ "$quick" = 1 ] && out=experiments/results/gpu-quick
else
  quick=1; out=experiments/results/gpu-cpu-dryrun  # CPU numbers: never mistaken for GPU ones
fi
rm -rf "$out"; mkdir -p "$out"
echo "backend $backend, quick=$quick, results in $out"
start_all=$(date +%s.%N)

stage() {  # stage NAME LIMIT_S COMMAND...: run it, log it, record its exit status and seconds
  local name=$1 limit=$2 rc=0 t0; shift 2
  t0=$(date +%s.%N)
  echo "== $name (limit ${limit} s)"
  timeout --kill-after=10 "$limit" "$@" > "$out/$name.log" 2>&1 || rc=$?
  local seconds; seconds=$(awk "BEGIN {printf \"%.1f\", $(date +%s.%N) - $t0}")
  echo "{\"stage\": \"$name\", \"rc\": $rc, \"seconds\": $seconds, \"limit_s\": $limit}" \
    >> "$out/stages.jsonl"
  tail -n 2 "$out/$name.log" | sed 's/^/   /'
  echo "   -> rc $rc in ${seconds%.*} s"
}

if [ "$quick" = 1 ]; then
  tests=(tests/test_memory.py -k "modes or memory_model")
  parallel_tests=(tests/test_parallel.py -k "bad_device or needs_backsolve")
  memory=(--solver-steps 10 30 --modes backsolve direct --repeats 1 --time-limit-s 0.5 --no-reference
          --no-fresh-process)
  cnf=(--steps 20 --rtol 1e-3 --atol 1e-3 --width 16 --depth 2 --eval-batch 2000 --eval-probes 1)
  # Simulating hopper's 10,000 series takes minutes on a CPU: the quick run trains the same
  # latent ODE on `periodic` instead (summary.json names the dataset).
  series=(--dataset periodic --steps 20 --train-size 50 --eval-samples 2)
  hopper_build=0
  loop_before=0  # the new loop only (the old one is a second compile)
  loop=(--steps 30 --repeats 1)
  scaling=(--devices 2 --steps 10 --repeats 1 --batch 64)
  mnist=(--downsample 2 --width 4 --depth 1 --blocks 1 --steps 3 --batch-size 8 --rtol 1e-3
         --atol 1e-3 --eval-batch 500 --eval-probes 1)
  limits=(60 60 60 60 60 90 60 90 240)
else
  tests=(tests/test_memory.py tests/test_training.py)
  parallel_tests=(tests/test_parallel.py)
  memory=(--solver-steps 10 100 1000 --repeats 1 --time-limit-s 1)
  cnf=(--steps 300)
  series=(--dataset hopper --steps 500)
  hopper_build=1
  loop_before=1
  loop=(--steps 100 --repeats 2)
  scaling=(--steps 50 --repeats 3)
  mnist=(--width 64 --depth 3 --blocks 2 --steps 60 --batch-size 200 --lr 1e-3 --rtol 1e-5
         --atol 1e-5 --eval-batch 500 --eval-probes 1 --checkpoint-every 20)
  limits=(80 60 70 50 180 75 90 40 110)  # the hopper build (CPU) runs beside 1-4
fi

# Build hopper (dm_control simulation, CPU only) in the background while the GPU is tested.
build_pid=
if [ "$hopper_build" = 1 ]; then
  stage hopper_dataset "${limits[4]}" "$py" -c \
    'from node_kit import datasets; datasets.load("hopper", "train"); print("hopper built")' &
  build_pid=$!
fi
stage tests_gpu "${limits[0]}" "$py" -m pytest -q -x -p no:cacheprovider "${tests[@]}"
stage tests_parallel_cpu "${limits[1]}" env JAX_PLATFORMS=cpu \
  "$py" -m pytest -q -x -p no:cacheprovider "${parallel_tests[@]}"
stage memory "${limits[2]}" "$py" -m node_kit.experiments.memory "${memory[@]}" \
  --layouts batched --budgets 0 --out "$out" --name memory
stage cnf "${limits[3]}" "$py" -m node_kit.experiments.cnf "${cnf[@]}" --no-progress \
  --out "$out/cnf"
[ -n "$build_pid" ] && wait "$build_pid"
if [ "$hopper_build" = 1 ] && ! grep -q "hopper built" "$out/hopper_dataset.log"; then
  echo "== latent_ode skipped: the hopper dataset could not be built (see hopper_dataset.log)"
else
  stage latent_ode "${limits[5]}" "$py" -m node_kit.experiments.timeseries --model latent_ode \
    "${series[@]}" --no-progress --out "$out/latent_ode"
fi

before=${LOOP_BEFORE:-}
if [ "$loop_before" = 1 ] && [ -z "$before" ] && git rev-parse --verify -q '41203a9^{commit}' > /dev/null 2>&1; then
  before=$(mktemp -d); git archive 41203a9 node_kit | tar -x -C "$before"
fi
if [ "$loop_before" = 1 ] && [ -n "$before" ] && [ -d "$before/node_kit" ]; then
  stage loop_benchmark "${limits[6]}" "$py" experiments/loop_benchmark.py \
    --alternate "$before" --rounds 1 "${loop[@]}" --out "$out/loop"
else
  stage loop_benchmark "${limits[6]}" "$py" experiments/loop_benchmark.py --label after \
    "${loop[@]}" --out "$out/loop"
fi
stage scaling "${limits[7]}" "$py" experiments/scaling.py "${scaling[@]}" \
  --out "$out/scaling.json"

mnist_data=(--dataset mnist_5k)
[ -n "${MNIST_DATA_DIR:-}" ] && mnist_data=(--dataset mnist --data-dir "$MNIST_DATA_DIR")
stage cnf_mnist "${limits[8]}" "$py" -m node_kit.experiments.cnf "${mnist_data[@]}" \
  --model multiscale --trace hutchinson "${mnist[@]}" --log-every 10 --no-progress \
  --out "$out/cnf_mnist"

total=$(awk "BEGIN {printf \"%.1f\", $(date +%s.%N) - $start_all}")
"$py" - "$out" "$backend" "$quick" "$total" <<'PY'
"""summary.json: each stage's status and time, and the numbers each stage produced."""
import csv, json, statistics, sys
from pathlib import Path

out, backend, quick, total = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "1", float(sys.argv[4])


def load(path):
    path = out / path
    return json.loads(path.read_text()) if path.exists() else None


def training(folder):
    """Steps/s between the first and last logged rows (no compile), and the run's wall time."""
    results, rows = load(f"{folder}/results.json"), []
    if (out / folder / "history.csv").exists():
        rows = list(csv.DictReader(open(out / folder / "history.csv")))
    if results is None:
        return None
    first, last = (rows[0], rows[-1]) if len(rows) > 1 else (None, None)
    rate = None if first is None else (int(last["step"]) - int(first["step"])) / (
        float(last["time"]) - float(first["time"]))
    keep = ("test_nll", "test_mse", "devices", "processes", "train_seconds_this_run",
            "eval_seconds", "bits_per_dim", "bits_per_dim_se", "gaussian_baseline_bits_per_dim",
            "test_nll_estimator", "image_shape")
    return {"steps": int(last["step"]) if last else None, "steps_per_s_after_compile": rate,
            **{k: results[k] for k in keep if k in results},
            "dataset": results.get("config", {}).get("dataset")}


stages = [json.loads(line) for line in open(out / "stages.jsonl")]
memory = load("memory.json")
loop = {label: load(f"loop/{label}.json") for label in ("before", "after")}
scaling = load("scaling.json")
summary = {
    "kind": "GPU" if backend == "gpu" else f"CPU DRY RUN ({backend}): not GPU numbers",
    "backend": backend, "quick": quick, "total_s": total,
    "failed": [s["stage"] for s in stages if s["rc"] != 0 and s["stage"] != "hopper_dataset"],
    "skipped": [f"latent_ode: hopper dataset not built (rc {s['rc']}, see hopper_dataset.log)"
                for s in stages if s["rc"] != 0 and s["stage"] == "hopper_dataset"],
    "stages": stages,
    "memory_bytes": memory and [
        {k: r[k] for k in ("mode", "steps", "peak_bytes", "temp_bytes", "time_s")}
        for r in memory["rows"]],
    "cnf": training("cnf"), "latent_ode": training("latent_ode"),
    "cnf_mnist": training("cnf_mnist"),
    "loop_steps_per_s": {k: v and v["steps_per_s_median"] for k, v in loop.items()},
    "loop_syncs_per_100_steps": {k: v and v["syncs_per_100_steps"] for k, v in loop.items()},
    "scaling": scaling and [{k: r[k] for k in ("devices", "mode", "steps_per_s_median",
                                                 "compile_s", "global_batch")}
                            for r in scaling["rows"]],
}
if all(loop.values()):
    summary["loop_after_over_before"] = (loop["after"]["steps_per_s_median"]
                                         / loop["before"]["steps_per_s_median"])
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(f"\n{summary['kind']}: {len(stages)} stages in {total:.0f} s, failed: "
      f"{summary['failed']}, skipped: {summary['skipped']}")
for s in stages:
    print(f"  {s['stage']:20s} rc {s['rc']:3d}  {s['seconds']:7.1f} s (limit {s['limit_s']})")
for key in ("cnf", "latent_ode", "cnf_mnist", "loop_steps_per_s", "loop_after_over_before"):
    print(f"  {key}: {summary.get(key)}")
for row in summary["scaling"] or []:
    print(f"  scaling {row['devices']} device(s) {row['mode']}: {row['steps_per_s_median']:.2f} steps/s")
print(f"wrote {out / 'summary.json'}")
sys.exit(1 if summary["failed"] else 0)
PY
