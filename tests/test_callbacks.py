"""`nk.fit(callbacks=...)`: each history row, as history.csv holds it, passed to user callbacks."""

import functools

import diffrax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import node_kit as nk
import node_kit._training as nk_training


@functools.lru_cache
def _adam():
    return optax.adam(3e-2)  # one object, so that every fit below reuses one compiled step


def _model():
    field = nk.MLPField(2, 4, 1, key=jr.key(0))
    return nk.NeuralODE(field, stepsize_controller=diffrax.ConstantStepSize(), dt0=0.25, max_steps=2)


def _batch_at(step):
    return jnp.asarray(np.random.default_rng(step).normal(size=(4, 2)))


def _loss(model, y0s, key):
    ys = model.batched(jnp.linspace(0.0, 0.5, 3), y0s)
    return jnp.mean(ys**2), {"end": jnp.mean(ys[:, -1] ** 2)}


def _fit(num_steps, tmp_path, *, callbacks, resume=False, **kwargs):
    return nk.fit(_model(), _loss, _adam(), _batch_at, num_steps, key=jr.key(1),
                  checkpoint_path=tmp_path / "run.eqx", checkpoint_every=2, resume=resume,
                  history_path=tmp_path / "history.csv", progress=False, callbacks=callbacks,
                  **kwargs)


def _evaluate(model, step):
    return {"val": float(step) / 10}


def test_callbacks_get_the_rows_history_csv_holds_with_the_evaluations(tmp_path):
    first, second = [], []

    def spoil(row):  # each callback gets its own dict: changing it changes nothing else
        second.append(dict(row))
        row["loss"] = None

    _, history = _fit(7, tmp_path, callbacks=[first.append, spoil], log_every=2,
                      evaluate=_evaluate, evaluate_every=3)
    rows = nk.read_history(tmp_path / "history.csv")
    assert first == rows == history == second
    assert [row["step"] for row in rows] == [2, 3, 4, 6, 7]  # 3 and 7 logged for evaluation
    assert [row.get("val") for row in first] == [None, 0.3, None, 0.6, 0.7]
    assert set(first[0]) == {"step", "loss", "end", "time"}


def test_a_callback_that_raises_keeps_history_and_checkpoint_and_resume_passes_rows_again(tmp_path):
    straight_dir = tmp_path / "straight"
    straight_dir.mkdir()
    _fit(8, straight_dir, callbacks=[], log_every=1)
    expected = [{k: v for k, v in row.items() if k != "time"}
                for row in nk.read_history(straight_dir / "history.csv")]

    def stop_at_5(row):
        if row["step"] == 5:
            raise ConnectionError("the logger is down")

    with pytest.raises(ConnectionError, match="the logger is down"):
        _fit(8, tmp_path, callbacks=[stop_at_5], log_every=1)
    assert [row["step"] for row in nk.read_history(tmp_path / "history.csv")] == [1, 2, 3, 4, 5]
    checkpoint = nk.load_checkpoint(tmp_path / "run.eqx", nk.Checkpoint(_model(), None, 0), {})
    assert checkpoint.step == 4  # that of step 4: step 5 showed its parameters good

    again = []
    _fit(8, tmp_path, callbacks=[again.append], log_every=1, resume=True)
    assert [row["step"] for row in again] == [5, 6, 7, 8]  # the rows after the checkpoint
    rows = [{k: v for k, v in row.items() if k != "time"}
            for row in nk.read_history(tmp_path / "history.csv")]
    assert rows == expected


def test_only_the_main_process_calls_the_callbacks(tmp_path, monkeypatch):
    monkeypatch.setattr(nk_training, "is_main_process", lambda: False)
    rows = []
    _, history = _fit(2, tmp_path, callbacks=[rows.append], log_every=1)
    assert rows == [] and len(history) == 2


@pytest.mark.parametrize(
    "callbacks, match",
    [
        (print, (r"`callbacks` must be a list or tuple of callables callback\(row\); got one "
                 r"builtin_function_or_method\. Wrap it in a list: callbacks=\[print\]\.")),
        ("rows", (r"`callbacks` must be a list or tuple of callables callback\(row\); got str "
                  r"'rows'\. E\.g\. callbacks=\[print\]\.")),
        ([print, 3], (r"`callbacks` must be a list or tuple of callables callback\(row\); got "
                      r"callbacks\[1\]=3 \(int\), which is not callable\.")),
    ],
)
def test_callbacks_must_be_a_list_of_callables(tmp_path, callbacks, match):
    with pytest.raises(ValueError, match=match):
        _fit(2, tmp_path, callbacks=callbacks)
    assert not (tmp_path / "run.eqx").exists()  # checked before anything is written
