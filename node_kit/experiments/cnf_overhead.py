"""Time node_kit's CNF training step against the same step written in raw diffrax.

`python -m node_kit.experiments.cnf_overhead` builds one FFJORD model (ConcatSquash
field, exact trace, Tsit5, PID controller, recursive checkpointing) and times a full
training step (loss, gradient, Adam update; one `eqx.filter_jit`) two ways on the
same parameters and batch: through `node_kit.CNF` + `node_kit.make_step`, and by
hand with `diffrax.diffeqsolve`. Rounds alternate between the two so machine noise
hits both; medians and their ratio are reported, compile time separately.
Writes `cnf_overhead.json` and `cnf_overhead.png` to `--out`.
"""

import dataclasses
import time

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

import node_kit as nk

from ._choices import solve_settings
from ._cli import parse_config
from ._outputs import plt
from ._run import Run


@dataclasses.dataclass(frozen=True)
class Config:
    """What is timed."""

    data_size: int = dataclasses.field(default=2, metadata={"help": 'dimension of the data the flow models'})
    width: int = dataclasses.field(default=64, metadata={"help": 'hidden width of the ConcatSquash field'})
    depth: int = dataclasses.field(default=3, metadata={"help": 'hidden layers of the ConcatSquash field'})
    batch_size: int = dataclasses.field(default=256, metadata={"help": 'points per timed training step'})
    rtol: float = dataclasses.field(default=1e-5, metadata={"help": 'relative tolerance of the PID step-size controller'})
    atol: float = dataclasses.field(default=1e-5, metadata={"help": 'absolute tolerance of the PID step-size controller'})
    rounds: int = dataclasses.field(default=15, metadata={"help": 'alternating rounds of node_kit and raw diffrax (machine noise hits both)'})
    steps_per_round: int = dataclasses.field(default=10, metadata={"help": 'timed training steps per path in each round'})
    seed: int = 0
    out: str = dataclasses.field(default="runs/cnf_overhead", metadata={"help": 'folder for cnf_overhead.json and cnf_overhead.png (the committed ones: --out experiments/results)'})
    progress: bool = True


class RawDynamics(eqx.Module):
    """`d/dt [z, logdet]` for a whole batch, written directly for diffrax."""

    field: nk.ConcatSquashField

    def __call__(self, t, state, args):
        def one(s):
            z = s[:-1]
            f, vjp_fn = jax.vjp(lambda y: self.field(t, y, None), z)
            (jacobian,) = jax.vmap(vjp_fn)(jnp.eye(z.shape[0], dtype=z.dtype))
            return jnp.concatenate([f, jnp.trace(jacobian)[None]])

        return jax.vmap(one)(state)


def raw_loss(field, xs, key, *, config: Config):
    """Mean NLL of a batch by one `diffrax.diffeqsolve` (the hand-written baseline)."""
    del key
    y0 = jnp.concatenate([xs, jnp.zeros((xs.shape[0], 1), xs.dtype)], axis=1)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(RawDynamics(field)), diffrax.Tsit5(), 0.0, 1.0, None, y0,
        stepsize_controller=diffrax.PIDController(rtol=config.rtol, atol=config.atol),
        adjoint=diffrax.RecursiveCheckpointAdjoint(), max_steps=4096,
    )
    z, logdet = sol.ys[-1, :, :-1], sol.ys[-1, :, -1]
    log_prob = -0.5 * jnp.sum(z**2, axis=1) - 0.5 * z.shape[1] * jnp.log(2 * jnp.pi) + logdet
    return -jnp.mean(log_prob), {"num_steps": sol.stats["num_steps"]}


def node_kit_loss(cnf, xs, key):
    """The library path: `node_kit.cnf_loss`."""
    return nk.cnf_loss(cnf, xs, key=key)


def setup(config: Config, keys: dict):
    """The two `(model, loss)` pairs over the same field, and a batch.

    `keys["model"]` draws the field, `keys["data"]` the batch.
    """
    field = nk.ConcatSquashField(config.data_size, config.width, config.depth, key=keys["model"])
    settings = solve_settings("tsit5", "checkpoint", rtol=config.rtol, atol=config.atol)
    cnf = nk.CNF(field, settings=settings)
    xs = jr.normal(keys["data"], (config.batch_size, config.data_size)) * 2.0
    raw = lambda f, x, k: raw_loss(f, x, k, config=config)  # noqa: E731
    return {"node_kit": (cnf, node_kit_loss), "raw_diffrax": (field, raw)}, xs


def time_steps(model, loss, optimizer, xs, n: int) -> list[float]:
    """Wall time of `n` training steps on fixed inputs (each blocked until ready)."""
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    times = []
    for i in range(n):
        start = time.perf_counter()
        out = nk.make_step(model, opt_state, xs, jr.key(i), loss, optimizer)
        jax.block_until_ready(out)
        times.append(time.perf_counter() - start)
    return times


def main(config: Config) -> dict:
    """Compile both, then alternate timed rounds; write and return the summary."""
    from tqdm.auto import tqdm

    run = Run(config, keys=("model", "data"))
    pairs, xs = setup(config, run.keys)
    optimizer = optax.adam(1e-3)
    compile_s, check = {}, {}
    for name, (model, loss) in pairs.items():
        start = time.perf_counter()
        opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
        _, _, value, aux = jax.block_until_ready(nk.make_step(model, opt_state, xs, jr.key(0), loss, optimizer))
        compile_s[name] = time.perf_counter() - start
        check[name] = {"loss": float(value), "num_steps": int(aux["num_steps"])}
    samples = {name: [] for name in pairs}
    for _ in tqdm(range(config.rounds), disable=not config.progress, desc="rounds"):
        for name, (model, loss) in pairs.items():
            samples[name] += time_steps(model, loss, optimizer, xs, config.steps_per_round)
    return _report(run, samples, compile_s, check)


def _report(run: Run, samples, compile_s, check) -> dict:
    medians = {name: float(np.median(t)) for name, t in samples.items()}
    ratio = medians["node_kit"] / medians["raw_diffrax"]
    result = run.results(
        median_step_seconds=medians, overhead_ratio=ratio,
        overhead_percent=100 * (ratio - 1), compile_seconds=compile_s,
        first_step=check, timed_steps_each=len(samples["node_kit"]),
    )
    run.write(result, name="cnf_overhead.json")
    run.save_figure(plot(samples, ratio), "cnf_overhead.png")
    print(f"median step: node_kit {medians['node_kit'] * 1e3:.2f} ms, raw diffrax "
          f"{medians['raw_diffrax'] * 1e3:.2f} ms; overhead {100 * (ratio - 1):+.1f}% "
          f"(solver steps {check['node_kit']['num_steps']} vs {check['raw_diffrax']['num_steps']})")
    return result


def plot(samples: dict, ratio: float):
    """A box plot of the step times of both ways: the figure."""
    fig, ax = plt().subplots(figsize=(5, 3.5))
    ax.boxplot([np.array(t) * 1e3 for t in samples.values()], showfliers=False)
    ax.set_xticks([1, 2], list(samples))
    ax.set(ylabel="training step (ms)", title=f"CNF step time; node_kit / raw = {ratio:.3f}")
    return fig


def parse_args(argv=None) -> Config:
    """Command-line flags, one per `Config` field."""
    return parse_config(Config, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    main(parse_args())
