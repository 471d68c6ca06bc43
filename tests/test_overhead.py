"""The overhead benchmark compares like with like: both paths of a workload compute the same
value with the same solver steps, and the floor's NFE is the solver's count of field
evaluations."""

import jax.random as jr
import optax
import pytest

from node_kit.experiments import cnf_overhead as co

TINY = co.Config(batch_size=4, width=4, depth=1, rtol=1e-3, atol=1e-3, floor_repeats=3,
                 progress=False)
KEYS = dict(zip(("model", "data", "probe"), jr.split(jr.key(0), 3)))


def _workload(name):
    return next(w for w in co.WORKLOADS if w.name == name)


# The CNF workload repeats the check on the other family: the slow tier.
@pytest.mark.parametrize("name", ["node_euler_checkpoint", pytest.param("cnf_exact_eval", marks=pytest.mark.slow)])
def test_both_paths_compute_the_same_value_with_the_same_steps(name):
    case = co.build(_workload(name), TINY, KEYS)
    outputs = {path: co._step_fn(case, path, optax.adam(1e-3))[0](jr.key(0)) for path in co.PATHS}
    (nk_value, nk_steps), (raw_value, raw_steps) = outputs["node_kit"], outputs["raw_diffrax"]
    assert int(nk_steps) == int(raw_steps) > 0
    assert float(nk_value) == pytest.approx(float(raw_value), rel=1e-12)
    if name == "cnf_exact_eval":  # Tsit5: at least 6 new evaluations per step
        assert co.count_evaluations(case) >= 6 * int(raw_steps)
    assert co.field_seconds(case, TINY.floor_repeats) > 0


@pytest.mark.parametrize("name, nfe", [("node_euler_backsolve", 20), ("node_rk4_checkpoint", 80)])
def test_the_floor_counts_every_field_evaluation(name, nfe):
    # 20 fixed steps of 0.05 over [0, 1]: one evaluation per Euler step, four per RK4 step.
    assert co.count_evaluations(co.build(_workload(name), TINY, KEYS)) == nfe


def test_unknown_workload_is_refused():
    with pytest.raises(ValueError, match="workloads"):
        co.main(co.Config(workloads=("cnf_exact",), out="unused"))


def test_compile_time_is_the_median_of_the_repeats():
    calls = [{"compile_seconds": s, "trace_seconds": s / 2} for s in (3.0, 1.0, 2.0)]
    chosen = co.median_call(calls)
    assert chosen["compile_seconds"] == 2.0 and chosen["trace_seconds"] == 1.0  # its phases
    assert chosen["compile_seconds_each"] == [3.0, 1.0, 2.0]
    assert co.median_call(calls[:2])["compile_seconds"] == 1.0  # even count: the lower middle
    with pytest.raises(ValueError, match="`compile_repeats` must be at least 1 .* got 0"):
        co.main(co.Config(compile_repeats=0, out="unused"))
