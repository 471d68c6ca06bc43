"""The CNF command end to end on a tiny config, resume, and its bad inputs."""

import dataclasses
import json

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from conftest import check_reference_numbers, tree_allclose

import node_kit as nk
from node_kit import datasets
from node_kit._io import read_checkpoint_bytes
from node_kit.experiments import cnf as cnf_experiment
from node_kit.experiments._cnf_data import from_flow_space
from node_kit.experiments._choices import solver_from_name
from node_kit.experiments._cli import run_meta

TINY = ["--steps", "3", "--batch-size", "16", "--width", "8", "--depth", "1",
        "--eval-batch", "500", "--rtol", "1e-3", "--atol", "1e-3", "--no-progress"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def _config(tmp_path, data_dir, *extra):
    return cnf_experiment.parse_args(TINY + ["--out", str(tmp_path), "--data-dir", data_dir, *extra])


def _checkpoint_step(config):
    like = nk.Checkpoint(cnf_experiment.build_cnf(config, 2, jr.key(0)), None, 0)
    return nk.load_checkpoint(f"{config.out}/checkpoint.eqx", like, {}).step



@pytest.mark.slow  # a whole command end to end: the slow tier (.ci/run runs it)
def test_command_writes_results_and_resumes(tmp_path, data_dir, trained_models):
    trained = trained_models
    config = _config(tmp_path, data_dir, "--eval-every", "3")
    results = cnf_experiment.main(config)
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["test_nll"] == pytest.approx(results["test_nll"])
    assert np.isfinite(written["test_nll"]) and written["true_entropy"] > 2.5
    assert written["kl_gap"] == pytest.approx(written["test_nll"] - written["true_entropy"])
    assert written["provenance"]["diffrax"] and written["config"]["dataset"] == "8gaussians"
    assert (tmp_path / "8gaussians.png").stat().st_size > 10_000
    assert _checkpoint_step(config) == 3
    # The run loads as it ended, and is used without training.
    model, loaded = nk.load_run(tmp_path, command="cnf")
    assert loaded == config and tree_allclose(model, trained[-1], rtol=0, atol=0)
    used = cnf_experiment.main(_config(tmp_path, data_dir, "--evaluate", "--sample", "500"))
    assert used["test_nll"] == written["test_nll"]  # the same number, recomputed from model.eqx
    evaluation = json.loads((tmp_path / "evaluation.json").read_text())
    assert evaluation["test_nll"] == written["test_nll"] and evaluation["provenance"]["command"]
    samples = np.load(tmp_path / "samples.npz")
    assert samples["x"].shape == (500, 2) and samples["log_prob"].shape == (500,)
    # The density of the sampling (backward) solve is the model's log-density at the samples
    # (a forward solve) up to the solves' tolerance (1e-3). The trained model, equal to the
    # loaded one, as float32 points: the test NLL's compiled solve is reused.
    x = samples["x"].astype(np.float32)
    exact = trained[-1].with_trace_estimator(nk.ExactTrace())
    nll = cnf_experiment.evaluate_nll(exact, cnf_experiment.Data(x, x, image=None), x,
                                      batch=500, key=jr.key(0))
    np.testing.assert_allclose(samples["log_prob"], -nll["per_sample"], rtol=0, atol=2e-2)
    with pytest.raises(ValueError, match=r"as it was trained; got --width 16 \(the run's: 8\)"):
        cnf_experiment.main(_config(tmp_path, data_dir, "--evaluate", "--width", "16"))
    resumed = dataclasses.replace(config, steps=5, resume=True)
    cnf_experiment.main(resumed)
    history = nk.read_history(tmp_path / "history.csv")
    assert [row["step"] for row in history] == [3, 5], history
    assert _checkpoint_step(resumed) == 5
    # --eval-every 3: the validation NLL after the last step of each run (3, then 5); the
    # best of both is kept, across the resume.
    val = {row["step"]: row["val_nll"] for row in history}
    best = json.loads((tmp_path / "results.json").read_text())["validation"]
    assert best["best_step"] == min(val, key=val.get) and best["best_value"] == min(val.values())
    assert read_checkpoint_bytes(tmp_path / "best.eqx")[0]["step"] == best["best_step"]
    assert tree_allclose(nk.load_run(tmp_path)[0], trained[-1], rtol=0, atol=0)
    final = json.loads((tmp_path / "results.json").read_text())
    check_reference_numbers("cnf tiny run, resumed", {
        "test_nll after 3 steps": written["test_nll"], "test_nll after 5": final["test_nll"],
        **{f"{key} at step {row['step']}": row[key] for row in history
           for key in ("loss", "val_nll", "num_steps")},
    })


def test_sampled_pixels_carry_the_log_determinant():
    """Digits: samples are the dequantized pixels v = 17 * u; log p(v) = log p(y) + log|dy/dv|."""
    ys = jr.normal(jr.key(0), (4, 3))
    v, log_det = from_flow_space(datasets.IMAGE_FORMATS["digits"], ys)
    to_logit = lambda v: datasets.logit_transform(v / datasets.DIGITS_NUM_LEVELS)[0]
    np.testing.assert_allclose(to_logit(v), ys, rtol=1e-5, atol=1e-5)
    h = 1e-6  # the map is elementwise: its Jacobian is diagonal
    slopes = (to_logit(v + h) - to_logit(v - h)) / (2 * h)
    np.testing.assert_allclose(log_det, jnp.sum(jnp.log(slopes), -1), rtol=1e-6)
    assert np.all(np.asarray(v) > 0) and np.all(np.asarray(v) < 17)


def test_checkpoint_from_another_config_is_refused(tmp_path, data_dir):
    nk.save_checkpoint(tmp_path / "checkpoint.eqx", nk.Checkpoint({}, {}, 3),
                       run_meta(_config(tmp_path, data_dir)))
    other = _config(tmp_path, data_dir, "--width", "16", "--resume")
    with pytest.raises(ValueError, match=r"from another config \(width: checkpoint 8 vs now 16\)"):
        cnf_experiment.main(other)


def test_unknown_dataset_lists_known(capsys):
    with pytest.raises(SystemExit):
        cnf_experiment.parse_args(["--dataset", "mnist3"])
    assert "invalid choice: 'mnist3'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="8gaussians"):
        datasets.load("mnist3", "train")


@pytest.mark.parametrize("flag, value", [("--trace", "stochastic"), ("--probe", "uniform"), ("--adjoint", "unroll"), ("--solver", "rk4")])
def test_unknown_choices_are_refused_at_the_command_line(capsys, flag, value):
    with pytest.raises(SystemExit):
        cnf_experiment.parse_args([flag, value])
    assert f"invalid choice: '{value}'" in capsys.readouterr().err


def test_unknown_names_are_refused_by_the_library():
    with pytest.raises(ValueError, match="stochastic"):
        nk.trace_estimator_from_name("stochastic")
    with pytest.raises(ValueError, match="uniform"):
        nk.trace_estimator_from_name("hutchinson", "uniform")
    with pytest.raises(ValueError, match="unknown solver 'rk4'; expected one of tsit5"):
        solver_from_name("rk4", adaptive=True)


def test_data_with_wrong_dimension_or_nan(tmp_path, data_dir):
    config = _config(tmp_path, data_dir)
    cnf = cnf_experiment.build_cnf(config, 3, jr.key(0))
    with pytest.raises(ValueError, match=r"`xs` must have shape \(batch, data_size\) with data_size=3"):
        nk.cnf_loss(cnf, np.zeros((4, 2)))
    bad = cnf_experiment.Data(np.array([[0.0, np.nan]]), np.zeros((1, 2)), image=None)
    with pytest.raises(RuntimeError, match="contains NaN or inf"):
        cnf_experiment.make_loss(config, bad)(cnf_experiment.build_cnf(config, 2, jr.key(0)), bad.train, jr.key(0))


def test_nan_in_dataset_is_reported(tmp_path, data_dir, monkeypatch):
    real = datasets.load

    def poisoned(name, split, **kwargs):
        out = real(name, split, **kwargs)
        out["x"] = out["x"].copy()
        out["x"][7, 1] = np.nan
        return out

    monkeypatch.setattr(datasets, "load", poisoned)
    with pytest.raises(ValueError, match="dataset '8gaussians' split 'train' contains NaN or inf"):
        cnf_experiment.load_data(_config(tmp_path, data_dir))


def test_evaluation_tolerances_default_to_the_training_ones():
    config = cnf_experiment.parse_args(TINY)
    cnf = cnf_experiment.build_cnf(config, 2, jr.key(3))
    assert cnf_experiment.evaluation_model(config, cnf) is cnf  # the committed numbers stay
    tight = dataclasses.replace(config, eval_rtol=1e-7)
    evaluated = cnf_experiment.evaluation_model(tight, cnf)
    controller = evaluated.settings.stepsize_controller
    assert (controller.rtol, controller.atol) == (1e-7, 1e-3)
    assert tree_allclose(evaluated, cnf, rtol=0, atol=0)  # the same weights
    with pytest.raises(ValueError, match=r"--eval-atol must be a non-negative float; got -1\.0\. "
                       r"Leave it out to evaluate at the training tolerance \(--atol\)"):
        cnf_experiment.check_config(dataclasses.replace(config, eval_atol=-1.0))
    with pytest.raises(ValueError, match="the evaluation tolerances must not both be 0"):
        cnf_experiment.check_config(dataclasses.replace(config, eval_rtol=0.0, eval_atol=0.0))


def _weights_file(path, command, config=None, model=None):
    info = {"command": command, "config": config or {}}
    nk.save_checkpoint(path, nk.Checkpoint(model or {}, None, 3), {}, info=info)


def test_bad_runs_give_clear_errors(tmp_path, data_dir):
    with pytest.raises(ValueError, match=r"`run` must be the output folder .*'.*missing', which does not exist"):
        nk.load_run(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"--sample must be a positive int; got 0\. It is the number"):
        cnf_experiment.main(_config(tmp_path, data_dir, "--sample", "0"))
    with pytest.raises(ValueError, match=r"holds no trained run \(no model.eqx or checkpoint.eqx\)\. "
                       r"Train one there \(python -m node_kit.experiments.cnf --out"):
        cnf_experiment.main(_config(tmp_path, data_dir, "--sample", "5"))
    with pytest.raises(ValueError, match="--resume trains on, while --sample and --evaluate"):
        cnf_experiment.main(_config(tmp_path, data_dir, "--evaluate", "--resume"))
    _weights_file(tmp_path / "series" / "model.eqx", "node_kit.experiments.timeseries")
    with pytest.raises(ValueError, match=r"must be a run of node_kit.experiments.cnf; .*series is a "
                       r"run of 'node_kit.experiments.timeseries'"):
        cnf_experiment.main(_config(tmp_path / "series", data_dir, "--evaluate"))
    for command, match in (("os", "'os', which is not a registered command"),
                           ("node_kit.experiments.nope", "Register that command first, or load the run with the node_kit version"),
                           ("node_kit.experiments.deq", "whose runs cannot be loaded")):
        _weights_file(tmp_path / "odd" / "model.eqx", command)
        with pytest.raises(ValueError, match=match):
            nk.load_run(tmp_path / "odd")
    nk.save_checkpoint(tmp_path / "old" / "checkpoint.eqx", nk.Checkpoint({}, None, 3), {})
    with pytest.raises(ValueError, match="does not say which command wrote it"):
        nk.load_run(tmp_path / "old")
    config = _config(tmp_path / "flipped", data_dir)
    path = tmp_path / "flipped" / "model.eqx"
    _weights_file(path, "node_kit.experiments.cnf", dataclasses.asdict(config),
                  cnf_experiment.model_skeleton(config))
    assert nk.load_run(path.parent)[1] == config
    wider = tmp_path / "wider" / "model.eqx"
    _weights_file(wider, "node_kit.experiments.cnf", {"width": 9, "depth": 1},
                  cnf_experiment.model_skeleton(config))
    with pytest.raises(nk.CheckpointError, match=r"wider/model.eqx do not fit the model its "
                       r"command builds from the run's config \(.*changed shape"):
        nk.load_run(wider.parent)
    data = path.read_bytes()
    path.write_bytes(data[:-5] + bytes([data[-5] ^ 1]) + data[-4:])
    with pytest.raises(nk.CheckpointError, match=r"model.eqx is damaged: .* checksum .*\. Train the "
                       "run again"):
        nk.load_run(path.parent)


def test_training_flags_are_checked_before_anything_runs(tmp_path, data_dir):
    for flags, match in ((["--lr", "0"], r"--lr must be a positive float; got 0\.0\. E\.g\."),
                         (["--lr", "-1"], "--lr must be a positive float"),
                         (["--checkpoint-every", "0"], "--checkpoint-every must be a positive int"),
                         (["--clip-norm", "-1"], "--clip-norm must be a non-negative float")):
        with pytest.raises(ValueError, match=match):
            cnf_experiment.main(_config(tmp_path, data_dir, *flags))
    with pytest.raises(nk.CheckpointError, match="--resume found no checkpoint in .*; drop --resume"):
        cnf_experiment.main(_config(tmp_path / "empty", data_dir, "--resume"))


def test_divergence_ends_the_command_with_its_message(tmp_path, data_dir, capsys):
    from node_kit.experiments._protocol import exit_on_user_error

    config = _config(tmp_path, data_dir, "--lr", "1e30", "--steps", "20", "--checkpoint-every", "2")
    with pytest.raises(SystemExit) as exit_info:
        exit_on_user_error(lambda: cnf_experiment.main(config))
    assert exit_info.value.code == 1
    stderr = capsys.readouterr().err  # may start with the dataset build's progress bars
    message = stderr.strip().splitlines()[-1]
    assert message.startswith("error: ") and "; training stopped. " in message, message
    assert "Traceback" not in stderr


@pytest.mark.slow  # a whole command end to end: the slow tier (.ci/run runs it)
def test_multiscale_command_on_mnist_5k(tmp_path, data_dir):
    """FFJORD's multiscale model on mnist_5k at 14x14 (two scales), Hutchinson training and
    test estimate, both baselines, the sample grid, and the run loaded and sampled again."""
    flags = ["--dataset", "mnist_5k", "--downsample", "2", "--width", "2", "--depth", "0",
             "--blocks", "1", "--steps", "2", "--batch-size", "8", "--trace", "hutchinson",
             "--rtol", "1e-2", "--atol", "1e-2", "--eval-batch", "500", "--eval-probes", "2",
             "--no-progress", "--out", str(tmp_path), "--data-dir", data_dir]
    config = cnf_experiment.parse_args(flags)
    assert cnf_experiment.model_name(config) == "multiscale"
    results = cnf_experiment.main(config)
    assert results["data_dim"] == 196 and results["image_shape"] == [1, 14, 14]
    assert results["test_nll_estimator"].startswith("Hutchinson (rademacher), 2 probes")
    to_bits = 1 / (196 * np.log(2))
    assert results["bits_per_dim"] == pytest.approx(results["test_nll"] * to_bits)
    assert results["bits_per_dim_se"] == pytest.approx(results["test_nll_se"] * to_bits)
    # Both baselines on the same dequantization and logit: the full covariance fits better.
    assert results["gaussian_baseline_bits_per_dim"] < results["independent_baseline_bits_per_dim"]
    assert 0 < results["eval_num_steps"] and (tmp_path / "mnist_5k.png").stat().st_size > 5_000
    model, loaded = nk.load_run(tmp_path, command="cnf")
    assert isinstance(model, nk.MultiscaleCNF) and loaded == config
    used = cnf_experiment.main(cnf_experiment.parse_args(flags + ["--sample", "8"]))
    samples = used["samples"]
    assert samples["x"].shape == (8, 196) and np.all(np.isfinite(samples["log_prob"]))
