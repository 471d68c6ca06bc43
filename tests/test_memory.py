"""Compiled memory per adjoint, the checkpoint budget chooser, and the memory command.

Compiled memory (`lower().compile().memory_analysis()`) is exact and deterministic on
CPU, so these tests compare modes directly. Each compile takes seconds, so the tests
share compiles through a module-scoped cache and use tiny models.
"""

import csv
import dataclasses
import json

import jax.numpy as jnp
import numpy as np
import pytest

from node_kit import MLPField, NeuralODE
from node_kit._memory import (
    CheckpointMemoryModel,
    _checkpoint_bytes,
    checkpoint_adjoint_for_budget,
    compile_gradient,
)
from node_kit.experiments._choices import parse_mode
from node_kit.experiments._memory_sweep import build_problem, checkpoints_used, fit_exponents
from node_kit.experiments.memory import Config, command_line, main, parse_args

# Euler compiles fastest; the state (128 x 16 float32 = 8 KiB) dominates the floor.
SMALL = Config(dim=16, batch_size=128, width=16, depth=1, solver="euler")


@pytest.fixture(scope="module")
def compiled():
    """`compiled(mode, n)`: a cached `CompiledGradient` of `SMALL` (batch as one state)."""
    cache = {}

    def get(mode: str, n: int):
        if (mode, n) not in cache:
            model, ts, y0s = build_problem(SMALL, mode, n, jnp.float32)
            cache[mode, n] = compile_gradient(model, ts, y0s, batched=True)
        return cache[mode, n]

    return get


def test_backsolve_memory_is_flat_in_steps(compiled):
    temps = [compiled("backsolve", n).memory.temp_bytes for n in (8, 32, 128)]
    assert max(temps) <= 1.01 * min(temps), temps


def test_direct_memory_grows_with_steps(compiled):
    small, large = (compiled("direct", n).memory.temp_bytes for n in (8, 128))
    assert large >= 3 * small, (small, large)


def test_fixed_checkpoints_stay_below_direct(compiled):
    fixed = compiled("checkpoint:4", 128).memory.temp_bytes
    direct = compiled("direct", 128).memory.temp_bytes
    assert fixed < direct / 2, (fixed, direct)


def test_budget_chooser_fits_its_budget(compiled):
    model, ts, y0s = build_problem(SMALL, "direct", 128, jnp.float32)
    budget = compiled("direct", 128).memory.total_bytes // 2
    adjoint = checkpoint_adjoint_for_budget(budget, model=model, ts=ts, y0s=y0s)
    assert 1 < adjoint.checkpoints < 128
    chosen = model.with_settings(model.settings.with_adjoint(adjoint))
    measured = compile_gradient(chosen, ts, y0s).memory.total_bytes
    assert budget * 0.9 <= measured <= budget


def test_checkpoint_bytes_are_state_plus_solver_state():
    for solver, copies in (("tsit5", 2), ("euler", 1)):
        model, ts, y0s = build_problem(dataclasses.replace(SMALL, solver=solver), "direct", 8,
                                       jnp.float32)
        state = y0s.size * 4
        # Tsit5 also stores its `first_step` flag: one byte, one per sample under vmap.
        flag = 0 if solver == "euler" else 1
        assert _checkpoint_bytes(model, ts, y0s, None, True) == copies * state + flag
        assert _checkpoint_bytes(model, ts, y0s, None, False) == (
            copies * state + flag * SMALL.batch_size
        )


def test_memory_model_prediction_and_cap():
    memory = CheckpointMemoryModel(floor_bytes=1000, bytes_per_checkpoint=100, max_steps=10)
    assert memory.predict(1) == 1000
    assert memory.predict(4) == 1300
    assert memory.ceiling_bytes == memory.predict(10) == memory.predict(50) == 1900
    assert memory.checkpoints_for(1000) == 1
    assert memory.checkpoints_for(1399) == 4
    assert memory.checkpoints_for(10**9) == 10


def test_memory_model_sorting_regime():
    # Above ~4 checkpoints each costs 2x (the sorted copy); storing all 10 costs 1x.
    memory = CheckpointMemoryModel(floor_bytes=1000, bytes_per_checkpoint=100, max_steps=10,
                                   anchors=((5, 1500), (9, 2300)))
    assert memory.predict(3) == 1200  # storage line
    assert memory.predict(7) == 1900  # line through the anchors
    assert memory.predict(10) == 1900 < memory.predict(9) == 2300
    assert memory.measured(5) == 1500 and memory.measured(6) is None
    assert memory.checkpoints_for(1950) == 10  # storing everything fits
    assert memory.checkpoints_for(1899) == 6


def test_budget_below_floor_names_the_floor_and_the_fix():
    memory = CheckpointMemoryModel(floor_bytes=3 * 2**20, bytes_per_checkpoint=1024,
                                   max_steps=100)
    with pytest.raises(
        ValueError,
        match=r"`memory_budget_bytes`=1048576 \(1.00 MiB\) is below the floor .* 3145728 "
        r"bytes \(3.00 MiB\) with one checkpoint\. Raise the budget .* adjoint='backsolve'",
    ):
        memory.checkpoints_for(2**20)


@pytest.mark.parametrize("budget", [0, -5, 0.5, float("nan"), float("inf"), True, "1GiB"])
def test_budget_must_be_a_finite_number_of_bytes(budget):
    memory = CheckpointMemoryModel(floor_bytes=10, bytes_per_checkpoint=1, max_steps=10)
    with pytest.raises(ValueError, match=r"`memory_budget_bytes` must be a finite number of "
                       r"bytes >= 1, an int or a float"):
        memory.checkpoints_for(budget)


def test_float_budgets_are_whole_bytes():
    memory = CheckpointMemoryModel(floor_bytes=10, bytes_per_checkpoint=1, max_steps=10)
    assert memory.checkpoints_for(15.9) == memory.checkpoints_for(15) == 6
    assert memory.checkpoints_for(np.float64(2.5e9)) == 10


def test_budget_needs_max_steps(getkey):
    model = NeuralODE(MLPField(2, 4, 1, key=getkey()), adjoint="backsolve", max_steps=None)
    with pytest.raises(ValueError, match=r"`model.settings.max_steps` must be an int .* got None"):
        checkpoint_adjoint_for_budget(2**20, model=model, ts=jnp.array([0.0, 1.0]),
                                      y0s=jnp.zeros((3, 2)))


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"modes": ("backsolve", "adjoint")},
         r"`modes` entry 'adjoint' is not a mode; expected one of: backsolve, checkpoint"),
        ({"modes": ("checkpoint:0",)}, r"`modes` entry 'checkpoint:0' is not a mode"),
        ({"solver_steps": (0, 10)}, r"`solver_steps` must be an int >= 1; got 0\. Pass the number of fixed"),
        ({"solver_steps": (10, 2.5)}, r"`solver_steps` must be an int >= 1; got 2.5"),
        ({"solver_steps": ()}, r"`solver_steps` is empty, so the sweep has nothing to run; pass at least"),
        ({"modes": ()}, r"`modes` is empty, so the sweep has nothing to run"),
        ({"layouts": ()}, r"`layouts` is empty, so the sweep has nothing to run"),
        ({"layouts": ("rows",)}, r"`layouts` entry 'rows' is not a layout; expected one of "
                                 r"batched, vmap"),
        ({"solver": "rk45"}, r"`solver` must be one of euler, .*tsit5.*; got 'rk45'"),
        ({"batch_size": 0}, r"`batch_size` must be an int >= 1; got 0"),
    ],
)
def test_bad_config_raises(changes, match):
    with pytest.raises(ValueError, match=match):
        Config(**changes)


def test_bad_command_line_raises():
    with pytest.raises(ValueError, match=r"`solver_steps` must be an int >= 1; got 0"):
        parse_args(["--solver-steps", "0", "10"])


def test_command_line_round_trip():
    config = Config(dim=8, solver_steps=(5, 50), modes=("direct", "checkpoint:3"),
                          reference=False, out="x")
    command = command_line(config)
    assert command.startswith("python -m node_kit.experiments.memory --dim 8")
    assert parse_args(command.split()[3:]) == config
    payload = json.loads(json.dumps(dataclasses.asdict(config)))
    assert Config(**payload) == config  # the --worker path rebuilds it like this


def test_modes_and_checkpoint_counts():
    assert parse_mode("checkpoint:16") == ("checkpoint", 16)
    assert parse_mode("direct") == ("direct", None)
    assert checkpoints_used("backsolve", 100) is None
    assert checkpoints_used("direct", 100) == 100
    assert checkpoints_used("checkpoint:16", 10) == 10
    # diffrax's default: the smallest c with 2N < (c + 1)(c + 2).
    for n in (1, 10, 100, 1000):
        c = checkpoints_used("checkpoint", n)
        assert 2 * n < (c + 1) * (c + 2) or c == n


def test_fit_exponents_recovers_a_power_law():
    rows = [{"mode": "direct", "layout": "batched", "steps": n, "temp_bytes": 7 * n**0.9}
            for n in (10, 100, 1000)]
    (fit,) = fit_exponents(rows)
    assert fit["exponent"] == pytest.approx(0.9)
    assert fit["local_exponent"] == pytest.approx(0.9)


@pytest.mark.slow  # a whole command end to end: the slow tier (.ci/run runs it)
def test_command_writes_csv_json_png(tmp_path, capsys):
    config = Config(dim=4, batch_size=8, width=8, depth=1, solver="euler", solver_steps=(2,),
                          modes=("direct",), layouts=("batched",), repeats=1, budgets=1,
                          out=str(tmp_path))
    results = main(config)
    assert "grad err" in capsys.readouterr().out
    with open(tmp_path / "memory.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert row["mode"] == "direct" and int(row["steps"]) == 2 and int(row["temp_bytes"]) > 0
    saved = json.loads((tmp_path / "memory.json").read_text())
    for key in ("backend", "device", "machine"):
        assert saved["environment"][key]
    for key in ("jax", "diffrax", "node_kit", "command"):
        assert saved["provenance"][key]
    # An exact mode in float32 against the float64 reference on the same steps.
    assert 0 < saved["rows"][0]["grad_rel_error"] < 1e-5
    fitted, below = saved["budget_checks"]
    assert fitted["within_budget"] and abs(fitted["prediction_error"]) < 0.1
    assert "below the floor" in below["error"]
    assert (tmp_path / "memory.png").read_bytes()[:4] == b"\x89PNG"
    assert results["rows"] == saved["rows"]


@pytest.mark.slow
def test_fresh_process_matches_in_process(tmp_path):
    config = Config(dim=4, batch_size=8, width=8, depth=1, solver="euler", solver_steps=(2,),
                          modes=("backsolve",), layouts=("batched",), repeats=1, budgets=0,
                          out=str(tmp_path))
    fresh = main(dataclasses.replace(config, fresh_process=True))["rows"][0]
    local = main(dataclasses.replace(config, fresh_process=False))["rows"][0]
    for key in ("temp_bytes", "argument_bytes", "output_bytes"):
        assert fresh[key] == local[key]
    assert fresh["grad_rel_error"] == pytest.approx(local["grad_rel_error"])


def test_deq_family_memory_and_errors(tmp_path):
    """Implicit and phantom stay flat in K, unrolled stores every iteration; all three
    are compared with the exact equilibrium's float64 gradient."""
    config = Config(family="deq", dim=4, batch_size=2, solver_steps=(5, 40), repeats=1,
                          out=str(tmp_path))
    assert config.modes == ("implicit", "unrolled", "phantom") and config.name == "memory_deq"
    results = main(config)
    rows = {(r["mode"], r["steps"]): r for r in results["rows"]}
    for mode in ("implicit", "phantom"):
        assert rows[mode, 40]["temp_bytes"] == rows[mode, 5]["temp_bytes"]
    # At least the 4 float32 states of the batch (2 x 4) per extra stored iteration.
    per_iteration = (rows["unrolled", 40]["temp_bytes"] - rows["unrolled", 5]["temp_bytes"]) / 35
    assert per_iteration >= 0.9 * 2 * 4 * 4
    exponents = {e["mode"]: e["exponent"] for e in results["exponents"]}
    assert exponents["unrolled"] > 0.3 and abs(exponents["implicit"]) < 1e-9
    # Converged at K = 40: the exact modes agree with the equilibrium; phantom does not.
    assert rows["implicit", 40]["grad_rel_error"] < 1e-4
    assert rows["unrolled", 40]["grad_rel_error"] < 1e-4
    assert rows["phantom", 40]["grad_rel_error"] > 1e-2
    assert (tmp_path / "memory_deq.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "memory_deq.json").read_text())["rows"] == results["rows"]
    assert command_line(config) == (
        "python -m node_kit.experiments.memory --family deq --dim 4 --batch-size 2 --solver-steps 5 40 "
        f"--repeats 1 --out {tmp_path}")


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"family": "sde"}, r"`family` must be one of ode, deq, inner, image; got 'sde'"),
        ({"family": "deq", "modes": ("backsolve",)},
         r"`modes` entry 'backsolve' is not a deq mode; expected some of implicit, unrolled, "
         r"phantom, e.g. --modes implicit unrolled phantom"),
    ],
)
def test_bad_family_config_raises(changes, match):
    with pytest.raises(ValueError, match=match):
        Config(**changes)


@pytest.mark.slow  # test_meta.py checks MAML's growth in the default run
def test_inner_family_maml_grows_with_inner_steps_imaml_does_not(tmp_path):
    config = Config(family="inner", batch_size=2, width=4, depth=1, solver_steps=(2, 16),
                          repeats=1, reference=False, out=str(tmp_path))
    assert config.modes == ("maml", "fomaml", "imaml") and config.name == "memory_inner"
    rows = {(r["mode"], r["steps"]): r["temp_bytes"] for r in main(config)["rows"]}
    assert rows["imaml", 16] == rows["imaml", 2] and rows["fomaml", 16] == rows["fomaml", 2]
    # Second-order MAML keeps each step's parameters (2 tasks x 13 float32) at least.
    assert (rows["maml", 16] - rows["maml", 2]) / 14 >= 2 * 13 * 4
    assert (tmp_path / "memory_inner.json").exists()


@pytest.mark.slow  # five CNF blocks at MNIST's shape, compiled per mode and N and in float64
def test_image_family_direct_grows_with_steps_reversible_does_not(tmp_path):
    """The multiscale CNF at 1x28x28: direct stores every step (temp memory grows with N),
    reversible does not; each gradient matches its float64 reference."""
    assert Config(family="image").modes == ("backsolve", "checkpoint", "direct", "reversible")
    config = Config(family="image", batch_size=1, width=2, depth=0, solver_steps=(2, 4),
                    modes=("direct", "reversible"), repeats=1, out=str(tmp_path))
    assert config.name == "memory_image"
    rows = {(r["mode"], r["steps"]): r for r in main(config)["rows"]}
    # Each extra stored step keeps at least one float32 state per block (784 pixels).
    grown = rows["direct", 4]["temp_bytes"] - rows["direct", 2]["temp_bytes"]
    assert grown / 2 >= 784 * 4
    assert rows["reversible", 4]["temp_bytes"] == rows["reversible", 2]["temp_bytes"]
    for mode in ("direct", "reversible"):
        assert rows[mode, 4]["grad_rel_error"] < 1e-4, mode
    assert (tmp_path / "memory_image.png").read_bytes()[:4] == b"\x89PNG"
