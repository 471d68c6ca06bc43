"""Training loop: one compile, exact resume, NaN guard, config-checked checkpoints, demo command."""

import functools
import json
import re

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest
from conftest import tree_allclose

import node_kit as nk
from node_kit._io import previous_path as nk_previous
from node_kit._io import read_checkpoint_bytes as nk_read_checkpoint_bytes
from node_kit._io import sidecar_path as nk_sidecar

TS = jnp.linspace(0.0, 0.5, 4)


LR = 3e-2  # the learning rate of every fit below but one (lr 1e30, which must explode)


@functools.lru_cache
def _adam(lr):
    return optax.adam(lr)  # one object per rate, so that every fit reuses one compiled step


def _model(key):
    field = nk.MLPField(2, 8, 1, key=key)
    return nk.NeuralODE(field, stepsize_controller=diffrax.ConstantStepSize(), dt0=0.125, max_steps=4)


# Faults a batch can carry, so that one loss (and one compiled training step per learning
# rate) serves every test: a NaN loss, or a finite loss whose gradient is NaN.
_NO_FAULT, _NAN_LOSS, _NAN_GRADIENT = range(3)


def _batch_at(step, *, fault=_NO_FAULT, span=1.0):
    """Initial values, targets, the span of the time grid (`TS * span`) and the fault."""
    rng = np.random.default_rng(step)
    y0s = jnp.asarray(rng.normal(size=(8, 2)))
    return y0s, jnp.zeros((8, len(TS), 2)), jnp.asarray(span), jnp.asarray(fault)


def _faulty_at(fault_step, **fault):
    """`batch_at` whose batch of `fault_step` carries `fault` (`fault=` or `span=`)."""
    return lambda step: _batch_at(step, **(fault if step == fault_step else {}))


def _loss(model, batch, key):
    y0s, targets, span, fault = batch  # fixed steps of 0.125 and max_steps=4 cover [0, 0.5]
    noise = 1e-3 * jr.normal(key, ())
    value = jnp.mean((model.batched(TS * span, y0s) - targets) ** 2) + noise
    # 0 * sqrt(b - b + eps) adds 0 to the loss; its gradient is 0 * inf = NaN where eps = 0.
    bias = model.vector_field.mlp.layers[0].bias
    eps = jnp.where(fault == _NAN_GRADIENT, 0.0, 1.0)
    value = value + 0.0 * jnp.sqrt(bias[0] - bias[0] + eps)
    return jnp.where(fault == _NAN_LOSS, jnp.nan, value), {"noise": noise}


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
        _model(getkey()), _loss, _adam(LR), _batch_at, 60, key=getkey(),
        progress=False, log_every=10,
    )
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    assert [h["step"] for h in history] == [10, 20, 30, 40, 50, 60]


def test_resume_continues_exactly(getkey, tmp_path):
    init, key = _model(getkey()), getkey()
    fit = lambda n, path, resume: nk.fit(
        init, _loss, _adam(LR), _batch_at, n, key=key, checkpoint_path=path,
        checkpoint_every=5, resume=resume, meta={"lr": LR}, progress=False, log_every=1,
    )
    straight, _ = fit(20, tmp_path / "a.eqx", False)
    fit(12, tmp_path / "b.eqx", False)
    assert nk.load_checkpoint(tmp_path / "b.eqx", nk.Checkpoint(init, None, 0), {}).step == 12
    resumed, history = fit(20, tmp_path / "b.eqx", True)
    assert history[0]["step"] == 13
    assert tree_allclose(resumed, straight, rtol=0, atol=0)
    # No temp files; each checkpoint keeps the one before it, each with its sidecar.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"{name}.eqx{end}" for name in "ab" for end in ("", ".json", ".prev", ".prev.json")]


def test_checkpoint_from_another_config_is_refused(getkey, tmp_path):
    model = _model(getkey())
    nk.fit(model, _loss, _adam(LR), _batch_at, 2, key=getkey(),
           checkpoint_path=tmp_path / "c.eqx", meta={"lr": LR, "width": 8}, progress=False)
    with pytest.raises(ValueError, match=r"is from another config \(lr: checkpoint 0.03 vs now 0.1\)"):
        nk.fit(model, _loss, _adam(1e-1), _batch_at, 4, key=getkey(),
               checkpoint_path=tmp_path / "c.eqx", resume=True, meta={"lr": 0.1, "width": 8},
               progress=False)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(getkey, tmp_path):
    path = tmp_path / "nan.eqx"
    with pytest.raises(nk.TrainingDiverged, match="loss became nan at step 8; training stopped. The last good checkpoint is kept"):
        nk.fit(_model(getkey()), _loss, _adam(LR), _faulty_at(7, fault=_NAN_LOSS), 20,
               key=getkey(), checkpoint_path=path, checkpoint_every=5, progress=False)
    assert nk.load_checkpoint(path, nk.Checkpoint(_model(getkey()), None, 0), {}).step == 5


@pytest.mark.slow  # a whole command end to end: the slow tier (.ci/run runs it)
def test_spiral_command_end_to_end_and_resume(tmp_path):
    from node_kit.experiments import spiral

    out = tmp_path / "spiral"
    args = ["--steps", "4", "--batch-size", "4", "--window", "4", "--width", "8",
            "--num-points", "50", "--t-end", "2.0", "--out", str(out), "--no-progress"]
    spiral.main(spiral.parse_args(args))
    results = json.loads((out / "results.json").read_text())
    assert np.isfinite(results["trajectory_mae"])
    assert results["provenance"]["diffrax"]
    assert (out / "spiral.png").stat().st_size > 0 and (out / "checkpoint.eqx").exists()
    more = spiral.parse_args(args[:1] + ["6"] + args[2:] + ["--resume"])
    spiral.main(more)
    resumed = nk.load_checkpoint(
        out / "checkpoint.eqx", nk.Checkpoint(spiral.build_model(more, jr.key(0)), None, 0), {}
    )
    assert resumed.step == 6
    loaded, config = nk.load_run(out)  # the spiral's run loads like the cnf's and timeseries'
    assert config.steps == 6 and tree_allclose(loaded, resumed.model, rtol=0, atol=0)


# ---------------------------------------------------------------- divergence guard


def _fit(model, loss, batch_at, steps, path, *, lr=LR, resume=False, **kwargs):
    return nk.fit(model, loss, _adam(lr), batch_at, steps, key=jr.key(0),
                  checkpoint_path=path, checkpoint_every=2, resume=resume, progress=False,
                  **kwargs)


def _load(path, getkey):
    return nk.load_checkpoint(path, nk.Checkpoint(_model(getkey()), None, 0), {})


def _params_finite(model) -> bool:
    leaves = jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))
    return all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in leaves)


def test_nan_gradient_with_finite_loss_keeps_the_parameters_that_gave_it(getkey, tmp_path):
    path = tmp_path / "grad.eqx"
    with pytest.raises(nk.TrainingDiverged, match=r"^the gradient became NaN or inf at step 4 "
                       r"\(the loss was .*\); training stopped\. The last good checkpoint is kept"):
        _fit(_model(getkey()), _loss, _faulty_at(3, fault=_NAN_GRADIENT), 10, path)
    # Step 4's loss was finite, so the parameters after step 2 (checkpointed) are good.
    assert _load(path, getkey).step == 2


def test_exploding_update_never_reaches_the_kept_checkpoint(getkey, tmp_path):
    """lr 1e30: the update makes parameters huge; the checkpoint holds only parameters that
    gave a finite loss, and resuming from it with a sane learning rate trains."""
    path = tmp_path / "explode.eqx"
    with pytest.raises(nk.TrainingDiverged, match="training stopped") as info:
        _fit(_model(getkey()), _loss, _batch_at, 10, path, lr=1e30)
    message = str(info.value)
    assert "The last good checkpoint is kept" in message or "No checkpoint was written" in message
    if path.exists():
        kept = _load(path, getkey)
        assert _params_finite(kept.model)
        assert np.isfinite(float(_loss(kept.model, _batch_at(0), jr.key(0))[0]))
    else:  # diverged before the first checkpoint could be verified: start fresh
        _fit(_model(getkey()), _loss, _batch_at, 2, path)
    model, history = _fit(_model(getkey()), _loss, _batch_at, 12, path, resume=True)
    assert all(np.isfinite(h["loss"]) for h in history)


def test_failed_solve_inside_a_step_is_divergence(getkey, tmp_path):
    path = tmp_path / "solve.eqx"
    with pytest.raises(nk.TrainingDiverged, match=r"^a solve failed inside step 5 \(diffeqsolve "
                       r"hit max_steps=4.*\); training stopped\. The last good checkpoint"):
        _fit(_model(getkey()), _loss, _faulty_at(4, span=10.0), 10, path)  # over [0, 5]
    # The parameters after step 4 never gave a successful solve: the kept ones are step 2's.
    assert _load(path, getkey).step == 2


def test_fit_argument_checks(getkey, tmp_path):
    model = _model(getkey())
    for name, value in (("num_steps", 0), ("checkpoint_every", 0), ("log_every", -1)):
        kwargs = {"num_steps": 3, name: value}
        steps = kwargs.pop("num_steps")
        with pytest.raises(ValueError, match=f"`{name}` must be a positive int; got {value}"):
            nk.fit(model, _loss, _adam(LR), _batch_at, steps, key=getkey(),
                   progress=False, **kwargs)
    with pytest.raises(ValueError, match="`resume=True` needs the `checkpoint_path`"):
        nk.fit(model, _loss, _adam(LR), _batch_at, 3, key=getkey(), resume=True)
    with pytest.raises(nk.CheckpointError, match="no checkpoint at .*missing.eqx. Train without resuming"):
        _fit(model, _loss, _batch_at, 3, tmp_path / "missing.eqx", resume=True)


# ---------------------------------------------------------------- verified checkpoints


def test_damaged_checkpoints_raise_one_clear_error(getkey, tmp_path):
    path = tmp_path / "ok.eqx"
    _fit(_model(getkey()), _loss, _batch_at, 2, path)
    data, sidecar = path.read_bytes(), nk_sidecar(path).read_bytes()
    missing = r"cannot be read: its sidecar {}\.eqx\.json is missing .* older node_kit format \({} bytes\)"
    cases = {  # name: (weights, their sidecar or None, the error)
        "garbage": (b"\x07" * 100, None, missing.format("garbage", 100)),
        "empty": (b"", None, missing.format("empty", 0)),
        "truncated": (data[: len(data) // 2], sidecar, (
            r"is damaged: it holds \d+ bytes where its sidecar truncated\.eqx\.json records \d+")),
        "flipped": (data[:-5] + bytes([data[-5] ^ 1]) + data[-4:], sidecar, (
            "is damaged: its contents do not match the checksum in its sidecar flipped.eqx.json")),
        "bad_sidecar": (data, b"{" + sidecar, r"its sidecar bad_sidecar\.eqx\.json is not a node_kit sidecar"),
    }
    for name, (content, its_sidecar, match) in cases.items():
        bad = tmp_path / f"{name}.eqx"
        bad.write_bytes(content)
        if its_sidecar is not None:
            nk_sidecar(bad).write_bytes(its_sidecar)
        with pytest.raises(nk.CheckpointError, match=match) as info:
            _load(bad, getkey)
        assert str(bad) in str(info.value)
    other_optimizer = nk.Checkpoint(_model(getkey()), optax.sgd(1e-2).init(
        eqx.filter(_model(getkey()), eqx.is_inexact_array)), 0)
    with pytest.raises(nk.CheckpointError, match="does not fit this model and optimizer"):
        nk.load_checkpoint(path, other_optimizer, {})


def test_resume_falls_back_to_the_previous_checkpoint(getkey, tmp_path):
    path = tmp_path / "run.eqx"
    init = _model(getkey())
    straight, _ = _fit(init, _loss, _batch_at, 8, tmp_path / "straight.eqx")
    _fit(init, _loss, _batch_at, 6, path)  # run.eqx at step 6, run.eqx.prev at step 4
    data = path.read_bytes()
    path.write_bytes(data[:-3] + bytes([data[-3] ^ 255]) + data[-2:])
    with pytest.warns(UserWarning, match=r"resuming from the previous checkpoint .*run.eqx.prev "
                      r"\(step 4\): checkpoint .* is damaged"):
        resumed, history = _fit(init, _loss, _batch_at, 8, path, resume=True, log_every=1)
    assert history[0]["step"] == 5
    assert tree_allclose(resumed, straight, rtol=0, atol=0)


def test_resume_keeps_the_history_up_to_the_checkpoint_and_recomputes_the_rest(getkey, tmp_path):
    init, history = _model(getkey()), tmp_path / "history.csv"
    _fit(init, _loss, _batch_at, 8, tmp_path / "straight.eqx", log_every=1,
         history_path=tmp_path / "straight.csv")
    expected = [{k: v for k, v in row.items() if k != "time"}
                for row in nk.read_history(tmp_path / "straight.csv")]
    assert [row["step"] for row in expected] == list(range(1, 9))
    path = tmp_path / "run.eqx"
    _fit(init, _loss, _batch_at, 8, path, log_every=1, history_path=history)
    path.write_bytes(nk_previous(path).read_bytes())  # as if killed after step 8: back at 6
    nk_sidecar(path).write_bytes(nk_sidecar(nk_previous(path)).read_bytes())
    history.write_text(history.read_text() + "8,garbage row of a killed run\n")
    _, resumed = _fit(init, _loss, _batch_at, 8, path, resume=True, log_every=1,
                      history_path=history)
    assert [row["step"] for row in resumed] == [7, 8]
    assert [{k: v for k, v in row.items() if k != "time"}
            for row in nk.read_history(history)] == expected



def _parameter_sum(model) -> float:
    return float(sum(jnp.sum(leaf) for leaf in jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))))


def test_evaluate_joins_the_history_and_info_goes_into_checkpoints(getkey, tmp_path):
    calls = []

    def evaluate(model, step):
        calls.append(step)
        return {"val": _parameter_sum(model)}

    history_path = tmp_path / "history.csv"
    model, history = _fit(_model(getkey()), _loss, _batch_at, 7, tmp_path / "run.eqx",
                          log_every=2, history_path=history_path, evaluate=evaluate,
                          evaluate_every=3, info={"command": "demo", "config": {"width": 8}})
    assert calls == [3, 6, 7]  # every third step and after the last
    rows = nk.read_history(history_path)
    assert rows == history
    assert [row["step"] for row in rows] == [2, 3, 4, 6, 7]  # step 3 logged for its evaluation
    assert ["val" in row for row in rows] == [False, True, False, True, True]
    assert rows[-1]["val"] == pytest.approx(_parameter_sum(model), rel=1e-12)  # the trained model
    assert history_path.read_text().splitlines()[1].endswith(",")  # blank where not evaluated
    header = nk_read_checkpoint_bytes(tmp_path / "run.eqx")[0]
    assert header["info"] == {"command": "demo", "config": {"width": 8}} and header["step"] == 7
    with pytest.raises(ValueError, match="`evaluate_every` must be a positive int; got 0"):
        _fit(model, _loss, _batch_at, 7, tmp_path / "other.eqx", evaluate=evaluate,
             evaluate_every=0)


def test_provenance_names_the_command_commit_and_versions(monkeypatch):
    """results.json's provenance: `python -m <command> <flags>`, the checkout's commit."""
    import subprocess
    import sys
    import types
    from pathlib import Path

    from node_kit.experiments._outputs import provenance

    main = types.ModuleType("__main__")
    main.__spec__ = types.SimpleNamespace(name="node_kit.experiments.cnf")
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.setattr(sys, "argv", ["cnf.py", "--out", "a run", "--steps", "3"])
    record = provenance(wall_seconds=1.23456)
    assert record["command"] == "python -m node_kit.experiments.cnf --out 'a run' --steps 3"
    assert record["wall_seconds"] == 1.235 and record["node_kit"] == nk.__version__
    root = Path(nk.__file__).resolve().parents[1]
    if (root / ".git").exists():
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                              capture_output=True, text=True).stdout.strip()
        assert record["git_commit"] == head and isinstance(record["git_dirty"], bool)
    else:
        assert record["git_commit"] is None


def _growth(model, batch, key):
    """A loss that rewards growth: under SGD at lr 0.5 each step doubles the parameters."""
    del batch, key
    return -jnp.sum(model["w"] ** 2), {}


def test_a_loss_exploding_by_orders_of_magnitude_stops_and_keeps_parameters_from_before(tmp_path):
    path, model = tmp_path / "grow.eqx", {"w": jnp.ones(2)}
    with pytest.raises(nk.TrainingDiverged, match=r"^the loss exploded at step 8: -32768, 1\.64e\+04 "
                       r"times the \|loss\| of the run's first step here \(2; the limit is "
                       r"explosion_factor=10000\); training stopped\. The last good checkpoint") as info:
        nk.fit(model, _growth, optax.sgd(0.5), lambda step: None, 400, key=jr.key(0),
               checkpoint_path=path, checkpoint_every=2, progress=False)
    # Step s's loss is -2 * 4**(s - 1): step 8's, 32768, is the first past 1e4 times step 1's.
    # Its parameters (step 7's) are not kept: the checkpoint is step 6's, whose loss is sane.
    kept = nk.load_checkpoint(path, nk.Checkpoint(model, None, 0), {})
    assert kept.step == 6 and abs(float(_growth(kept.model, None, None)[0])) <= 1e4 * 2
    assert "step 8" in str(info.value)
    # Switched off, the same run goes on (the loss is finite all along).
    _, history = nk.fit(model, _growth, optax.sgd(0.5), lambda step: None, 30, key=jr.key(0),
                        progress=False, explosion_factor=None)
    assert history[-1]["step"] == 30


def test_an_optimizer_state_gone_inf_stops_training_though_loss_and_parameters_are_finite():
    # float32: the gradient 1e22 squares to inf in Adam's second moment; the update is then
    # 0 (finite / inf), so parameters and loss stay finite and the run would stall silently.
    model = {"w": jnp.ones(2, jnp.float32)}

    def loss(model, batch, key):
        return jnp.float32(1e22) * jnp.sum(model["w"]), {}

    with pytest.raises(nk.TrainingDiverged, match=r"^the update of step 1 made the optimizer state "
                       r"NaN or inf \(e\.g\. Adam's second moment overflowed\)"):
        nk.fit(model, loss, optax.adam(1e-3), lambda step: None, 5, key=jr.key(0), progress=False)
