"""The time-series command end to end on tiny configs, resume, and its bad inputs."""

import dataclasses
import json
import os

import jax.random as jr
import numpy as np
import pytest
from conftest import check_reference_numbers, tree_allclose

import node_kit as nk
from node_kit._io import read_checkpoint_bytes
from node_kit.experiments import timeseries as ts_experiment

TINY = ["--steps", "3", "--batch-size", "8", "--latent", "2", "--hidden", "4", "--width", "8",
        "--depth", "1", "--window", "12", "--train-size", "40", "--eval-batch", "50",
        "--eval-samples", "3", "--no-progress"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def _config(tmp_path, data_dir, *extra):
    return ts_experiment.parse_args(TINY + ["--out", str(tmp_path), "--data-dir", data_dir, *extra])


def _checkpoint_step(config, data_size=1):
    model = ts_experiment.build_model(config, data_size, None, jr.key(0))
    return nk.load_checkpoint(f"{config.out}/checkpoint.eqx", nk.Checkpoint(model, None, 0), {}).step



@pytest.mark.slow  # a whole command end to end: the slow tier (.ci/run runs it)
def test_latent_ode_interpolation_writes_results(tmp_path, data_dir, trained_models):
    trained = trained_models
    config = _config(tmp_path, data_dir)
    results = ts_experiment.main(config)
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["test_mse"] == pytest.approx(results["test_mse"])
    assert np.isfinite(written["test_mse"]) and written["test_mse"] > 0
    assert written["baseline_linear_interpolation_mse"] > 0
    assert written["train_series"] == 40 and written["time_points"] == 12
    # Half of the points are read: ceil(0.5 * 12) = 6 of 12 in every test series.
    assert written["observed_share"] == pytest.approx(0.5)
    assert written["eval_num_steps"] > 0 and written["train_num_steps_last_100"] > 0
    assert written["provenance"]["diffrax"] and written["config"]["model"] == "latent_ode"
    # The cores XLA compiled for (they decide the last bits): this process's affinity.
    assert written["environment"]["cpu_cores"] == len(os.sched_getaffinity(0))
    assert (tmp_path / "periodic_interpolation.png").stat().st_size > 10_000
    assert _checkpoint_step(config) == 3
    # The run loads as it ended; --evaluate recomputes its test MSE from model.eqx.
    model, loaded = nk.load_run(tmp_path, command="timeseries")
    assert loaded == config and tree_allclose(model, trained[-1], rtol=0, atol=0)
    evaluated = ts_experiment.main(_config(tmp_path, data_dir, "--evaluate"))
    assert evaluated["test_mse"] == written["test_mse"]
    check_reference_numbers("timeseries tiny latent ODE interpolation", {
        "test_mse": written["test_mse"], "eval_num_steps": written["eval_num_steps"],
        **{f"loss at step {row['step']}": row["loss"]
           for row in nk.read_history(tmp_path / "history.csv")},
    })
    assert json.loads((tmp_path / "evaluation.json").read_text())["test_mse"] == written["test_mse"]
    with pytest.raises(ValueError, match=r"must be a run of node_kit.experiments.cnf; .* is a run "
                       r"of 'node_kit.experiments.timeseries'"):
        nk.load_run(tmp_path, command="cnf")


def test_resume_continues_at_the_next_step(tmp_path, data_dir):
    config = _config(tmp_path, data_dir, "--model", "gru_dt", "--eval-every", "2")
    ts_experiment.main(config)
    assert _checkpoint_step(config) == 3
    # --eval-every 2: the validation MSE after steps 2 and 3 (the last); the best is kept.
    history = nk.read_history(tmp_path / "history.csv")
    val = {row["step"]: row["val_mse"] for row in history}
    assert sorted(val) == [2, 3]
    best = json.loads((tmp_path / "results.json").read_text())["validation"]
    assert best["best_step"] == min(val, key=val.get) and best["best_value"] == min(val.values())
    header = read_checkpoint_bytes(tmp_path / "best.eqx")[0]
    assert header["step"] == best["best_step"] and header["info"]["best"]["value"] == best["best_value"]
    # A resume keeps the best so far: here an earlier best (step 1, MSE 0) that no later
    # validation beats, so it must neither be forgotten nor replaced.
    best_model, _ = nk.load_run(tmp_path, best=True)
    nk.save_checkpoint(tmp_path / "best.eqx", nk.Checkpoint(best_model, None, 1), {},
                       info={**header["info"], "best": {"metric": "val_mse", "value": 0.0, "step": 1}})
    # ... and a later best.eqx damaged (a kill between its weights and its sidecar): the
    # resume warns, reads the step-1 best from best.eqx.prev and puts it back as best.eqx.
    nk.save_checkpoint(tmp_path / "best.eqx", nk.Checkpoint(best_model, None, 2), {},
                       info={**header["info"], "best": {"metric": "val_mse", "value": -1.0, "step": 2}})
    (tmp_path / "best.eqx.json").write_text("{}")
    resumed = dataclasses.replace(config, steps=5, resume=True)
    with pytest.warns(UserWarning, match=r"best.eqx cannot be read: its sidecar .* Reading .*best.eqx.prev"):
        ts_experiment.main(resumed)
    history = (tmp_path / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == ["2", "3", "4", "5"], history
    assert _checkpoint_step(resumed) == 5
    best = json.loads((tmp_path / "results.json").read_text())["validation"]
    assert (best["best_step"], best["best_value"]) == (1, 0.0)
    assert read_checkpoint_bytes(tmp_path / "best.eqx")[0]["step"] == 1
    other = dataclasses.replace(resumed, hidden=6)
    with pytest.raises(ValueError, match=r"from another config \(hidden: checkpoint 4 vs now 6\)"):
        ts_experiment.main(other)


@pytest.mark.slow  # a whole command end to end: the slow tier (.ci/run runs it)
def test_ode_rnn_extrapolates(tmp_path, data_dir):
    results = ts_experiment.main(_config(tmp_path, data_dir, "--model", "ode_rnn",
                                         "--task", "extrapolation", "--observed", "1.0"))
    # Scored on the second half only: 6 of 12 points for each of the 100 test series.
    assert results["metric_entries"] == 100 * 6
    assert np.isfinite(results["test_mse"]) and results["baseline_last_value_mse"] > 0
    # Only the first half is read; 11 gaps plus the last evolve take >= 1 step each.
    assert results["observed_share"] == pytest.approx(0.5)
    assert results["eval_num_steps"] >= 12
    check_reference_numbers("timeseries tiny ODE-RNN extrapolation", {
        "test_mse": results["test_mse"], "eval_num_steps": results["eval_num_steps"]})
    assert (tmp_path / "periodic_extrapolation.png").exists()


def test_evaluation_tolerances_reach_every_solve_and_keep_the_weights():
    config = ts_experiment.parse_args(TINY)
    model = ts_experiment.build_model(config, 1, None, jr.key(3))  # not the skeleton's weights
    assert ts_experiment.evaluation_model(config, model) is model
    tight = ts_experiment.evaluation_model(dataclasses.replace(config, eval_rtol=1e-6), model)
    assert tight.decoder.settings.stepsize_controller.rtol == 1e-6
    assert model.decoder.settings.stepsize_controller.rtol == config.rtol
    assert tree_allclose(tight, model, rtol=0, atol=0)


def test_masks_of_each_task():
    available = np.ones((10, 2), bool)
    available[7:] = False  # padding
    key = jr.key(0)
    inputs, metric = ts_experiment.series_masks("interpolation", 0.5, key, available, available)
    assert np.array_equal(metric, available)
    assert np.asarray(inputs).any(-1).sum() == 4  # ceil(0.5 * 7)
    assert not np.any(np.asarray(inputs) & ~available)
    inputs, metric = ts_experiment.series_masks("extrapolation", 1.0, key, available, available)
    assert np.array_equal(np.asarray(inputs).any(-1), np.arange(10) < 5)
    assert np.array_equal(np.asarray(metric).any(-1), (np.arange(10) >= 5) & (np.arange(10) < 7))
    readable = available & (np.arange(10) % 2 == 0)[:, None]
    inputs, metric = ts_experiment.series_masks("classification", 0.3, key, available, readable)
    assert np.array_equal(inputs, readable) and np.array_equal(metric, available)


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("dataset", "periodik", "invalid choice: 'periodik'"),
        ("model", "lstm", "invalid choice: 'lstm'"),
        ("task", "forecast", "invalid choice: 'forecast'"),
    ],
)
def test_unknown_names_are_refused_by_the_command_line(capsys, flag, value, message):
    with pytest.raises(SystemExit):
        ts_experiment.parse_args([f"--{flag}", value])
    assert message in capsys.readouterr().err


def test_bad_configs_raise_before_any_work(tmp_path):
    config = ts_experiment.Config(out=str(tmp_path))
    for observed in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"--observed .* must be in \(0, 1\]; got"):
            ts_experiment.main(dataclasses.replace(config, observed=observed))
    with pytest.raises(ValueError, match="unknown model 'lstm' .*latent_ode, ode_rnn, gru_dt"):
        ts_experiment.main(dataclasses.replace(config, model="lstm"))
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        ts_experiment.main(dataclasses.replace(config, dataset="mnist"))
    with pytest.raises(ValueError, match="unknown task"):
        ts_experiment.main(dataclasses.replace(config, task="forecast"))
    with pytest.raises(ValueError, match="--steps must be a positive int; got 0"):
        ts_experiment.main(dataclasses.replace(config, steps=0))
    assert not (tmp_path / "results.json").exists()


def test_classification_needs_labels(tmp_path, data_dir):
    config = _config(tmp_path, data_dir, "--task", "classification")
    with pytest.raises(ValueError, match="needs a labelled dataset; 'periodic' has no labels"):
        ts_experiment.main(config)


@pytest.mark.slow  # a whole command end to end: the slow tier (.ci/run runs it)
@pytest.mark.parametrize("argv, picture", [
    (["--dataset", "japanese_vowels", "--task", "classification", "--observed", "0.5"],
     "japanese_vowels_classification.png"),
    (["--interpolation", "rectilinear"], "periodic_interpolation.png"),
], ids=["vowels-classification", "periodic-interpolation"])
def test_the_neural_cde_trains_evaluates_and_loads(tmp_path, data_dir, argv, picture):
    config = _config(tmp_path, data_dir, "--model", "ncde", *argv)
    results = ts_experiment.main(config)
    metric = "test_accuracy" if config.task == "classification" else "test_mse"
    assert np.isfinite(results[metric]) and results["eval_num_steps"] >= 1
    assert (tmp_path / picture).exists()
    model, loaded_config = nk.load_run(tmp_path)
    assert isinstance(model, nk.NeuralCDE) and model.interpolation == config.interpolation
    assert loaded_config.model == "ncde"
