"""The CNF command end to end on a tiny config, resume, and its bad inputs."""

import dataclasses
import json

import jax.random as jr
import numpy as np
import pytest

import node_kit as nk
from node_kit import datasets
from node_kit.experiments import cnf as cnf_experiment
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


def test_command_writes_results_and_resumes(tmp_path, data_dir):
    config = _config(tmp_path, data_dir)
    results = cnf_experiment.main(config)
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["test_nll"] == pytest.approx(results["test_nll"])
    assert np.isfinite(written["test_nll"]) and written["true_entropy"] > 2.5
    assert written["kl_gap"] == pytest.approx(written["test_nll"] - written["true_entropy"])
    assert written["provenance"]["diffrax"] and written["config"]["dataset"] == "8gaussians"
    assert (tmp_path / "8gaussians.png").stat().st_size > 10_000
    assert _checkpoint_step(config) == 3
    resumed = dataclasses.replace(config, steps=5, resume=True)
    cnf_experiment.main(resumed)
    history = (tmp_path / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == ["3", "5"], history
    assert _checkpoint_step(resumed) == 5


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
    bad = cnf_experiment.Data(np.array([[0.0, np.nan]]), np.zeros((1, 2)), images=False)
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
    from node_kit.experiments._run import run_command

    config = _config(tmp_path, data_dir, "--lr", "1e30", "--steps", "20", "--checkpoint-every", "2")
    with pytest.raises(SystemExit) as exit_info:
        run_command(cnf_experiment.main, lambda: config)
    assert exit_info.value.code == 1
    stderr = capsys.readouterr().err  # may start with the dataset build's progress bars
    message = stderr.strip().splitlines()[-1]
    assert message.startswith("error: ") and "; training stopped. " in message, message
    assert "Traceback" not in stderr
