"""A tiny command of the tests' own: a neural ODE fitted to `dy/dt = -y` in a few steps.

`tests/test_protocol.py` registers it (`_registry.register("tiny_command")`) and runs it
through what every command goes through: training, `nk.load_run`, `--evaluate`,
`experiments/reproduce.py` and the table writer. It is a complete command in one module:
the protocol asks no more of a new one.
"""

import dataclasses
from pathlib import Path

import diffrax
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

import node_kit as nk
from node_kit.experiments._protocol import Command, EvaluationConfig, option, TrainConfig
from node_kit.experiments._optimizer import with_clipping
from node_kit.experiments._run import Run, Validation
from node_kit.experiments._trained import load_trained

TS = np.linspace(0.0, 1.0, 5)


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig, EvaluationConfig):
    """Everything that defines a run."""

    width: int = option(4, "hidden width of the field")
    steps: int = 6
    batch_size: int = 8
    lr: float = 1e-2
    out: str = "runs/tiny"


def model_skeleton(config: Config) -> nk.NeuralODE:
    """The model a run of `config` trains, with untrained weights."""
    return build_model(config, jr.key(0))


def build_model(config: Config, key) -> nk.NeuralODE:
    field = nk.MLPField(1, config.width, 1, key=key)
    return nk.NeuralODE(field, solver=diffrax.Euler(), dt0=0.25,
                        stepsize_controller=diffrax.ConstantStepSize(), adjoint="direct")


def data(seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    y0 = np.random.default_rng(seed).normal(size=(size, 1)).astype(np.float32)
    return y0, y0[:, None, :] * np.exp(-TS)[None, :, None].astype(np.float32)


def mse(model: nk.NeuralODE, y0, ys) -> jax.Array:
    predicted = jax.vmap(lambda y: model(jnp.asarray(TS, y.dtype), y))(y0)
    return jnp.mean((predicted - ys) ** 2)


def main(config: Config) -> dict:
    """Train (or `--evaluate` the run in `--out`), write results.json, return it."""
    test = data(1000 + config.seed, 16)
    if config.evaluate:
        run, model = load_trained(config, keys=("model", "train"))
        results = run.results(test_mse=float(mse(model, *test)))
        run.write(results, name="evaluation.json")
        return results
    run = Run(config, keys=("model", "train"))

    def batch_at(step: int):
        return data(config.seed * 10_000 + step, config.batch_size)

    def loss(model, batch, key):
        del key
        return mse(model, *batch), {}

    validation = Validation(lambda model: {"val_mse": float(mse(model, *test))}, best="val_mse")
    model, _ = run.fit(build_model(config, run.keys["model"]), loss,
                       with_clipping(optax.adam(config.lr), config.clip_norm), batch_at,
                       validation=validation if config.eval_every else None)
    results = run.results(test_mse=float(mse(model, *test)))
    run.write(results)
    return results


def table(results: Path) -> str:
    """Every committed run's test MSE."""
    lines = ["| run | steps | test MSE |", "|---|---|---|"]
    for name, path in COMMAND.committed_runs(results).items():
        import json

        r = json.loads(path.read_text())
        lines.append(f"| {name} | {r['config']['steps']} | {r['test_mse']:.6f} |")
    return "\n".join(lines)


COMMAND = Command(
    "tiny", Config, main, model_skeleton=model_skeleton,
    headline=lambda results: {"test_mse": results["test_mse"]},
    tables={"tiny": table},
)

if __name__ == "__main__":
    COMMAND.run()
