"""Training loop: one compile, exact resume, NaN guard, config-checked checkpoints, demo command."""

import json

import diffrax
import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import node_kit as nk
from conftest import tree_allclose

TS = jnp.linspace(0.0, 0.5, 4)


def _model(key):
    field = nk.MLPField(2, 8, 1, key=key)
    return nk.NeuralODE(field, stepsize_controller=diffrax.ConstantStepSize(), dt0=0.125, max_steps=4)


def _batch_at(step):
    rng = np.random.default_rng(step)
    y0s = jnp.asarray(rng.normal(size=(8, 2)))
    return y0s, jnp.zeros((8, len(TS), 2))


def _loss(model, batch, key):
    y0s, targets = batch
    noise = 1e-3 * jr.normal(key, ())
    return jnp.mean((model.batched(TS, y0s) - targets) ** 2) + noise, {"noise": noise}


def test_second_step_does_not_recompile(getkey):
    traces = []

    def loss(model, batch, key):
        traces.append(None)
        return _loss(model, batch, key)

    model = _model(getkey())
    optimizer = optax.adam(1e-2)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    for step in range(3):
        model, opt_state, value, _ = nk.make_step(
            model, opt_state, _batch_at(step), jr.key(step), loss, optimizer
        )
    assert len(traces) == 1
    assert np.isfinite(value)


def test_training_decreases_loss(getkey):
    model, history = nk.fit(
        _model(getkey()), _loss, optax.adam(3e-2), _batch_at, 60, key=getkey(),
        progress=False, log_every=10,
    )
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    assert [h["step"] for h in history] == [10, 20, 30, 40, 50, 60]


def test_resume_continues_exactly(getkey, tmp_path):
    init, key = _model(getkey()), getkey()
    fit = lambda n, path, resume: nk.fit(  # noqa: E731
        init, _loss, optax.adam(1e-2), _batch_at, n, key=key, checkpoint_path=path,
        checkpoint_every=5, resume=resume, meta={"lr": 1e-2}, progress=False, log_every=1,
    )
    straight, _ = fit(20, tmp_path / "a.eqx", False)
    fit(12, tmp_path / "b.eqx", False)
    assert nk.load_checkpoint(tmp_path / "b.eqx", nk.Checkpoint(init, None, 0), {}).step == 12
    resumed, history = fit(20, tmp_path / "b.eqx", True)
    assert history[0]["step"] == 13
    assert tree_allclose(resumed, straight, rtol=0, atol=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.eqx", "b.eqx"]  # no temp files


def test_checkpoint_from_another_config_is_refused(getkey, tmp_path):
    model = _model(getkey())
    nk.fit(model, _loss, optax.adam(1e-2), _batch_at, 2, key=getkey(),
           checkpoint_path=tmp_path / "c.eqx", meta={"lr": 0.01, "width": 8}, progress=False)
    with pytest.raises(ValueError, match=r"is from another config \(lr: checkpoint 0.01 vs now 0.1\)"):
        nk.fit(model, _loss, optax.adam(1e-1), _batch_at, 4, key=getkey(),
               checkpoint_path=tmp_path / "c.eqx", resume=True, meta={"lr": 0.1, "width": 8},
               progress=False)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(getkey, tmp_path):
    def loss(model, batch, key):
        value, aux = _loss(model, batch, key)
        step = batch[0][0, 0]
        return jnp.where(step > 100.0, jnp.nan, value), aux

    def batch_at(step):
        y0s, targets = _batch_at(step)
        return y0s.at[0, 0].set(1000.0 if step == 7 else 0.0), targets

    path = tmp_path / "nan.eqx"
    with pytest.raises(nk.TrainingDiverged, match="loss became nan at step 8; training stopped. The last good checkpoint is kept"):
        nk.fit(_model(getkey()), loss, optax.adam(1e-2), batch_at, 20, key=getkey(),
               checkpoint_path=path, checkpoint_every=5, progress=False)
    assert nk.load_checkpoint(path, nk.Checkpoint(_model(getkey()), None, 0), {}).step == 5


def test_spiral_command_end_to_end_and_resume(tmp_path):
    from node_kit.experiments import spiral

    out = tmp_path / "spiral"
    args = ["--steps", "4", "--batch-size", "4", "--window", "4", "--width", "8",
            "--num-points", "50", "--t-end", "2.0", "--out", str(out), "--no-progress"]
    spiral.main(spiral.parse_args(args))
    results = json.loads((out / "results.json").read_text())
    assert np.isfinite(results["trajectory_mae"])
    assert results["environment"]["diffrax"]
    assert (out / "spiral.png").stat().st_size > 0 and (out / "checkpoint.eqx").exists()
    more = spiral.parse_args(args[:1] + ["6"] + args[2:] + ["--resume"])
    spiral.main(more)
    assert nk.load_checkpoint(
        out / "checkpoint.eqx", nk.Checkpoint(spiral.build_model(more, jr.key(0)), None, 0), {}
    ).step == 6
