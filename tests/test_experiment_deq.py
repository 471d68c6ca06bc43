"""The DEQ-vs-NeuralODE-vs-MLP command end to end on a tiny config, resume, bad flags."""

import dataclasses
import itertools
import json
import os
import re
import shutil

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import pytest

from node_kit.experiments import deq as deq_experiment
from node_kit.experiments._deq_models import TanhCell
from node_kit.experiments._run import split_keys

TINY = ["--steps", "4", "--batch-size", "16", "--width", "8", "--max-iterations", "30",
        "--residual-steps", "8", "--log-every", "2", "--checkpoint-every", "2", "--no-progress"]


def _history_steps(path) -> list[str]:
    return [row.split(",")[0] for row in path.read_text().splitlines()[1:]]


@pytest.mark.slow  # a whole command end to end: the slow tier (.ci/run runs it)
def test_command_compares_three_models(tmp_path):
    _run_and_check(tmp_path)


@pytest.mark.slow
def test_command_resumes_each_model(tmp_path):
    """Interrupt after step 2: the DEQ and the ODE back at their step-2 checkpoints (the
    `.prev` files), the MLP never started. The resumed run ends where the first one did."""
    config, models = _run_and_check(tmp_path)
    for name in ("deq", "neural_ode"):
        for end in ("", ".json"):  # the weights and their sidecar
            os.replace(tmp_path / name / f"checkpoint.eqx.prev{end}",
                       tmp_path / name / f"checkpoint.eqx{end}")
    shutil.rmtree(tmp_path / "mlp")
    deq_experiment.main(dataclasses.replace(config, resume=True))
    resumed = json.loads((tmp_path / "results.json").read_text())
    assert resumed["config"]["resume"] is True
    for name, summary in models.items():
        assert _history_steps(tmp_path / name / "history.csv") == ["2", "4"], name
        again = resumed["models"][name]
        assert again["final_train_loss"] == summary["final_train_loss"], name
        assert again["test_accuracy"] == summary["test_accuracy"], name


def _run_and_check(tmp_path):
    """Run the command with TINY flags and check its results; `(config, models)`."""
    config = deq_experiment.parse_args(TINY + ["--out", str(tmp_path)])
    deq_experiment.main(config)
    results = json.loads((tmp_path / "results.json").read_text())
    models = results["models"]
    assert set(models) == {"deq", "neural_ode", "mlp"}
    target = models["deq"]["parameters"]
    for name, summary in models.items():
        assert 0.0 <= summary["test_accuracy"] <= 1.0, name
        assert abs(summary["parameters"] - target) <= 0.05 * target, (name, summary["parameters"])
        assert summary["gradient"]["temp_bytes"] > 0 and summary["step_seconds_median"] > 0
        assert results["parameter_counts"][name] == summary["parameters"]
        assert _history_steps(tmp_path / name / "history.csv") == ["2", "4"]
    assert models["mlp"]["forward_iterations"]["per_batch_mean"] == 3  # 2 hidden layers + readout
    assert 1 <= models["deq"]["forward_iterations"]["per_batch_max"] <= 30
    assert models["neural_ode"]["forward_iterations"]["per_batch_mean"] >= 1
    assert models["deq"]["backward"] == "implicit"
    by_backward = results["deq_gradient_by_backward"]
    assert by_backward["implicit"] == models["deq"]["gradient"]
    # Backpropagating through 30 stored iterations needs more memory than one linear solve.
    assert by_backward["unrolled"]["temp_bytes"] > by_backward["implicit"]["temp_bytes"]
    residuals = results["residual_history"]["solvers"]
    assert set(residuals) == {"anderson", "broyden", "iteration"}
    assert all(len(values) == 8 for values in residuals.values())
    # On a contraction plain iteration shrinks the residual at every step; Anderson faster.
    iteration = residuals["iteration"]
    assert all(b < a for a, b in itertools.pairwise(iteration)), iteration
    assert residuals["anderson"][-1] < 0.5 * iteration[-1], residuals
    assert (tmp_path / "deq.png").stat().st_size > 10_000
    return config, models


def test_widths_are_matched_to_the_deq_parameter_count():
    config = deq_experiment.Config()
    keys = split_keys(0, deq_experiment.MODEL_NAMES)
    models = eqx.filter_eval_shape(deq_experiment.build_models, config, keys)  # shapes only
    counts = {name: deq_experiment.parameter_count(m) for name, m in models.items()}
    assert counts["deq"] == 64 * 64 + (64 * 64 + 64) + (64 * 10 + 10)  # W, U and b, readout
    for name in ("neural_ode", "mlp"):
        assert abs(counts[name] - counts["deq"]) <= 0.02 * counts["deq"], counts


def test_step_time_skips_compilation_and_resume_gaps():
    history = [{"step": 10, "time": 5.0}, {"step": 20, "time": 6.0}, {"step": 30, "time": 7.0},
               {"step": 40, "time": 3.0}, {"step": 50, "time": 3.5}]
    assert deq_experiment.step_seconds_median(history) == pytest.approx(0.1)
    assert deq_experiment.step_seconds_median(history[:1]) is None


@pytest.mark.parametrize("flags, message", [
    (["--radius", "1.0"], r"--radius must be in \(0, 1\) .* got 1.0"),
    (["--batch-size", "5000"], (r"--batch-size must be at most the number of digits "
                                r"training images \(1257\); got 5000")),
    (["--max-iterations", "0"], r"--max-iterations"),
    (["--rtol", "0", "--atol", "0"], r"--rtol and --atol must not both be 0"),
])
def test_bad_flags_exit_2_naming_the_flag(tmp_path, capsys, flags, message):
    argv = flags + ["--out", str(tmp_path / "run")]
    with pytest.raises(SystemExit) as exit_info:
        deq_experiment.COMMAND.run(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and re.search(message, err), err
    assert not (tmp_path / "run").exists()


def test_unknown_solver_and_backward_are_refused(capsys):
    for flag, value in (("--solver", "newton"), ("--backward", "adjoint")):
        with pytest.raises(SystemExit):
            deq_experiment.parse_args([flag, value])
        assert f"invalid choice: '{value}'" in capsys.readouterr().err


def test_resume_without_checkpoints_exits_1(tmp_path, capsys):
    argv = TINY + ["--out", str(tmp_path), "--resume"]
    with pytest.raises(SystemExit) as exit_info:
        deq_experiment.COMMAND.run(argv)
    assert exit_info.value.code == 1
    assert "--resume found no checkpoint" in capsys.readouterr().err


def test_cell_is_scaled_to_the_radius_only_when_larger():
    cell = TanhCell(8, 0.9, key=jr.key(0))
    assert jnp.linalg.norm(cell.weight, 2) < 0.9
    assert jnp.allclose(cell.contractive().weight, cell.weight)
    large = eqx.tree_at(lambda c: c.weight, cell, cell.weight * 100.0).contractive()
    assert float(jnp.linalg.norm(large.weight, 2)) == pytest.approx(0.9, rel=1e-4)
