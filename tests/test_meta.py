"""MAML, first-order MAML and iMAML meta-gradients against closed forms and finite
differences; the sinusoid tasks; the meta command end to end; bad inputs."""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from conftest import max_relative_error
from jax.flatten_util import ravel_pytree

import node_kit as nk
from node_kit.datasets import sinusoid, sinusoid_tasks
from node_kit.experiments import meta as meta_experiment


class Point(eqx.Module):
    """A model that is one parameter vector."""

    w: jax.Array


def quadratic(A):
    """`loss(model, a) = 1/2 (w - a)^T A (w - a)`: one task's loss, on support and query."""
    return lambda model, a: 0.5 * (model.w - a) @ A @ (model.w - a)


@pytest.fixture(scope="module")
def problem():
    """An SPD matrix, meta-parameters, and three tasks' support `a` and query `b` vectors."""
    keys = jr.split(jr.key(1), 4)
    M = jr.normal(keys[0], (4, 4))
    A = M @ M.T / 4 + 0.5 * jnp.eye(4)
    return A, Point(jr.normal(keys[1], (4,))), jr.normal(keys[2], (3, 4)), jr.normal(keys[3], (3, 4))


def _meta_grad(learner, problem):
    A, theta, a, b = problem
    return jax.jit(jax.grad(lambda m: nk.meta_loss(learner, m, quadratic(A), a, b)))(theta).w


def test_imaml_meta_gradient_matches_closed_form(problem):
    A, theta, a, b = problem
    reg = 2.0
    learner = nk.IMAML(reg)

    def objective(model):
        losses = nk.query_losses(learner, model, quadratic(A), a, b)
        return jnp.mean(losses), losses

    grad, losses = jax.jit(jax.grad(objective, has_aux=True))(theta)
    # w* = (A + reg I)^{-1} (A a + reg theta); dw*/dtheta = reg (A + reg I)^{-1} (symmetric).
    K = A + reg * jnp.eye(4)
    w_star = jnp.linalg.solve(K, A @ a.T + reg * theta.w[:, None]).T
    expected = jnp.mean(reg * jnp.linalg.solve(K, A @ (w_star - b).T).T, axis=0)
    assert max_relative_error(grad.w, expected) < 1e-7
    assert max_relative_error(losses, jax.vmap(quadratic(A))(Point(w_star), b)) < 1e-7


@pytest.mark.parametrize("first_order", [False, True])
def test_maml_and_fomaml_match_closed_forms_on_a_quadratic(problem, first_order):
    A, theta, a, b = problem
    alpha = 0.3
    grad = _meta_grad(nk.MAML(2, alpha, first_order=first_order), problem)
    step = jnp.eye(4) - alpha * A  # w_{k+1} - a = (I - alpha A)(w_k - a)
    w2 = a + (step @ step @ (theta.w - a).T).T
    query_grads = (A @ (w2 - b).T).T
    second_order = jnp.mean((step @ step @ query_grads.T).T, axis=0)
    first = jnp.mean(query_grads, axis=0)  # FOMAML: dw2/dtheta taken as the identity
    expected, other = (first, second_order) if first_order else (second_order, first)
    assert max_relative_error(grad, expected) < 1e-12
    assert max_relative_error(grad, other) > 1e-2  # the two differ on this problem


def test_maml_second_order_matches_finite_differences():
    model = eqx.nn.MLP(1, 1, 4, 1, activation=jnp.tanh, key=jr.key(2))
    tasks = sinusoid_tasks(jr.key(3), 3, 4, 5, dtype=jnp.float64)
    learner = nk.MAML(2, 0.05)
    mse = meta_experiment.mse
    params, static = eqx.partition(model, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(params)

    @jax.jit
    def objective(flat):
        return nk.meta_loss(learner, eqx.combine(unravel(flat), static), mse, tasks.support, tasks.query)

    direction = jr.normal(jr.key(4), flat.shape)
    eps = 1e-5
    fd = (objective(flat + eps * direction) - objective(flat - eps * direction)) / (2 * eps)
    exact = jax.jit(jax.grad(objective))(flat) @ direction
    assert abs(float(exact - fd)) < 1e-7 * abs(float(exact))
    first_order = nk.MAML(2, 0.05, first_order=True)
    fomaml = jax.jit(jax.grad(lambda f: nk.meta_loss(
        first_order, eqx.combine(unravel(f), static), mse, tasks.support, tasks.query)))(flat)
    assert abs(float(fomaml @ direction - fd)) > 1e-6 * abs(float(fd))  # FOMAML is not exact


def test_zero_inner_steps_is_plain_regression(problem):
    A, theta, a, b = problem
    objective = lambda m: nk.meta_loss(nk.MAML(0), m, quadratic(A), a, b)
    plain = lambda m: jnp.mean(jax.vmap(quadratic(A), in_axes=(None, 0))(m, b))
    assert objective(theta) == pytest.approx(float(plain(theta)), rel=1e-14)
    assert max_relative_error(jax.grad(objective)(theta).w, jax.grad(plain)(theta).w) < 1e-14


def test_sinusoid_tasks():
    tasks = sinusoid_tasks(jr.key(0), 7, 5, 11)
    assert tasks.support_x.shape == (7, 5, 1) and tasks.query_y.shape == (7, 11, 1)
    assert tasks.amplitude.shape == tasks.phase.shape == (7,)
    assert jnp.all((tasks.amplitude >= 0.1) & (tasks.amplitude <= 5.0))
    assert jnp.all((tasks.phase >= 0) & (tasks.phase <= jnp.pi))
    assert jnp.all(jnp.abs(tasks.query_x) <= 5.0)
    expected = sinusoid(tasks.query_x, tasks.amplitude[:, None, None], tasks.phase[:, None, None])
    assert jnp.allclose(tasks.query_y, expected)
    again = sinusoid_tasks(jr.key(0), 7, 5, 11)
    assert jnp.array_equal(again.support_y, tasks.support_y)
    assert not jnp.array_equal(sinusoid_tasks(jr.key(1), 7, 5, 11).support_y, tasks.support_y)
    with pytest.raises(ValueError, match=r"`shots` must be a positive int; got shots=0"):
        sinusoid_tasks(jr.key(0), 7, 0, 11)
    with pytest.raises(ValueError, match=r"`key` must be a JAX PRNG key"):
        sinusoid_tasks(0, 7, 5, 11)


@pytest.mark.parametrize("make, match", [
    (lambda: nk.MAML(-1), r"`inner_steps` must be a non-negative int; got -1"),
    (lambda: nk.MAML(1, 0.0), r"`inner_lr` must be a positive float; got 0.0. E.g. inner_lr=0.01"),
    (lambda: nk.MAML(1, 0.01, first_order="yes"), r"`first_order` must be a Python bool"),
    (lambda: nk.IMAML(reg=-1.0), r"`reg` must be a positive float; got -1.0"),
    (lambda: nk.IMAML(solver="lbfgs"), r"`solver` must be an optimistix.AbstractMinimiser"),
    (lambda: nk.IMAML(max_steps=0), r"`max_steps` must be a positive int; got 0"),
])
def test_bad_learner_settings(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_meta_loss_inputs(problem):
    A, theta, a, b = problem
    with pytest.raises(ValueError, match=r"`learner` must be a node_kit.AbstractMetaLearner .*got str"):
        nk.meta_loss("maml", theta, quadratic(A), a, b)
    with pytest.raises(ValueError, match=r"`loss` must be a callable loss\(model, data\)"):
        nk.meta_loss(nk.MAML(1), theta, None, a, b)
    with pytest.raises(ValueError, match=r"`support` and `query` must stack the tasks .*\['2', '3'\]"):
        nk.meta_loss(nk.MAML(1), theta, quadratic(A), a, b[:2])
    vector_loss = lambda model, a: model.w - a
    with pytest.raises(ValueError, match=r"`loss` must return a floating-point scalar for one task.*float64\(4,\)"):
        nk.meta_loss(nk.MAML(1), theta, vector_loss, a, b)
    with pytest.raises(ValueError, match=r"`loss` must return a floating-point scalar"):
        nk.imaml_adapt(theta, vector_loss, a[0], reg=1.0)


TINY = ["--steps", "3", "--batch-size", "2", "--queries", "3", "--shots", "2", "--width", "6",
        "--depth", "1", "--eval-tasks", "4", "--eval-points", "5", "--timing-repeats", "0",
        "--plot-tasks", "2", "--inner-steps", "1", "--no-progress"]


@pytest.mark.slow  # a whole command end to end: the slow tier (.ci/run runs it)
def test_meta_command_end_to_end(tmp_path):
    config = meta_experiment.parse_args(TINY + ["--out", str(tmp_path)])
    meta_experiment.main(config)
    written = json.loads((tmp_path / "results.json").read_text())
    rows = {(r["method"], r["shots"]): r for r in written["rows"]}
    assert set(rows) == {(m, 2) for m in meta_experiment.METHOD_NAMES}
    for row in rows.values():
        assert np.isfinite(row["test_mse"]) and row["test_mse_ci95"][0] <= row["test_mse"] <= row["test_mse_ci95"][1]
        assert row["train_seconds_total"] == row["train_seconds_this_run"] > 0
    assert rows[("imaml", 2)]["inner_steps_mean"] >= 1
    assert rows[("maml", 2)]["inner_steps"] == 1
    assert (tmp_path / "meta_fits.png").stat().st_size > 10_000
    assert (tmp_path / "imaml-k2" / "checkpoint.eqx").exists()
    assert json.loads((tmp_path / "maml-k2" / "results.json").read_text())["test_mse"] == rows[("maml", 2)]["test_mse"]


@pytest.mark.slow  # the shared runner's resume is tested by the cnf, timeseries and spiral commands
def test_meta_command_resumes_each_method(tmp_path):
    flags = TINY + ["--out", str(tmp_path), "--methods", "fomaml"]
    first = meta_experiment.main(meta_experiment.parse_args(flags))["rows"][0]
    resumed = meta_experiment.main(meta_experiment.parse_args(flags + ["--steps", "5", "--resume"]))["rows"][0]
    history = (tmp_path / "fomaml-k2" / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == ["3", "5"]
    assert resumed["train_seconds_total"] == pytest.approx(
        first["train_seconds_total"] + resumed["train_seconds_this_run"])


def test_maml_meta_gradient_memory_grows_with_inner_steps():
    config = meta_experiment.parse_args(TINY)
    model = meta_experiment.build_model(config, jr.key(0))
    tasks = sinusoid_tasks(jr.key(1), 2, 2, 3)
    measured = [meta_experiment.time_meta_gradient(nk.MAML(n, 0.01), model, (tasks.support, tasks.query), 1)
                for n in (1, 16)]
    assert measured[1]["grad_temp_bytes"] > measured[0]["grad_temp_bytes"] > 0
    assert all(m["grad_median_seconds"] > 0 and m["grad_compile_seconds"] > 0 for m in measured)


@pytest.mark.parametrize("flags, match", [
    (["--activation", "relu"], r"--activation relu cannot train imaml"),
    (["--plot-tasks", "9", "--eval-tasks", "4"], r"--plot-tasks must be at most the number of test tasks"),
    (["--methods", "maml", "maml"], r"--methods must name distinct methods"),
    (["--shots", "0"], r"--shots must be a positive int; got 0"),
    (["--reg", "0"], r"--reg must be a positive float; got 0.0"),
])
def test_bad_flags(flags, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        meta_experiment.main(meta_experiment.parse_args(flags + ["--out", str(tmp_path)]))


def test_unknown_method_is_refused_at_the_command_line(capsys):
    with pytest.raises(SystemExit):
        meta_experiment.parse_args(["--methods", "reptile"])
    assert "invalid choice: 'reptile'" in capsys.readouterr().err
