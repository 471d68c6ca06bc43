"""The workloads of `python -m node_kit.experiments.cnf_overhead`: each one's two programs,
through node_kit and hand-written with diffrax, on the same parameters, batch and probes.

`config` below is the command's `Config` (sizes, tolerances, `dt`, `save_times`).
"""

import dataclasses
from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

import node_kit as nk
from node_kit._solve import saved_states

from ._choices import solve_settings, solver_from_name


@dataclasses.dataclass(frozen=True)
class Workload:
    """One timed program: a CNF or neural ODE step (or a CNF evaluation)."""

    name: str
    model: str  # "cnf" or "node"
    solver: str
    adjoint: str
    trace: str | None = None  # CNF only: "exact" or "hutchinson"
    train: bool = True
    # Neural ODE only: the end state alone (ts = [0, 1], the loss on y(1)) in `steps` steps,
    # instead of the trajectory at --save-times in steps of --dt.
    steps: int | None = None

    @property
    def description(self) -> str:
        what = "training step" if self.train else "log-density (no gradient)"
        if self.model == "cnf":
            return f"CNF {what}, {self.trace} trace, {self.solver} + PID, {self.adjoint}"
        if self.steps is not None:
            return (
                f"neural ODE {what}, {self.solver}, {self.steps} fixed steps, ts = [0, 1], "
                f"{self.adjoint}"
            )
        return f"neural ODE {what}, {self.solver} fixed steps, {self.adjoint}"


WORKLOADS = (
    Workload("cnf_exact_checkpoint", "cnf", "tsit5", "checkpoint", "exact"),
    Workload("cnf_hutchinson_backsolve", "cnf", "tsit5", "backsolve", "hutchinson"),
    Workload("cnf_hutchinson_checkpoint", "cnf", "tsit5", "checkpoint", "hutchinson"),
    Workload("cnf_exact_eval", "cnf", "tsit5", "checkpoint", "exact", train=False),
    Workload("node_euler_backsolve", "node", "euler", "backsolve"),
    Workload("node_euler_checkpoint", "node", "euler", "checkpoint"),
    Workload("node_rk4_backsolve", "node", "rk4", "backsolve"),
    Workload("node_rk4_checkpoint", "node", "rk4", "checkpoint"),
    Workload("node_euler_direct_two_times", "node", "euler", "direct", steps=100),
    Workload("node_rk4_direct_two_times", "node", "rk4", "direct", steps=100),
)
WORKLOAD_NAMES = tuple(w.name for w in WORKLOADS)
PATHS = ("node_kit", "raw_diffrax")


# --- The hand-written programs ---------------------------------------------------------


class RawCNFDynamics(eqx.Module):
    """`d/dt [z, logdet]` for a whole batch, written directly for diffrax.

    `args` is the batch of Hutchinson probes (`None` for the exact trace).
    """

    field: nk.ConcatSquashField
    hutchinson: bool = eqx.field(static=True)

    def __call__(self, t, state, probes):
        def exact(s):
            z = s[:-1]
            f, vjp_fn = jax.vjp(lambda y: self.field(t, y, None), z)
            (jacobian,) = jax.vmap(vjp_fn)(jnp.eye(z.shape[0], dtype=z.dtype))
            return jnp.concatenate([f, jnp.trace(jacobian)[None]])

        def hutchinson(s, probe):
            z = s[:-1]
            f, vjp_fn = jax.vjp(lambda y: self.field(t, y, None), z)
            (eps_jacobian,) = vjp_fn(probe)
            return jnp.concatenate([f, jnp.sum(eps_jacobian * probe)[None]])

        if self.hutchinson:
            return jax.vmap(hutchinson)(state, jax.lax.stop_gradient(probes))
        return jax.vmap(exact)(state)


class RawBatchField(eqx.Module):
    """The per-sample field vmapped over the batch: one ODE whose state is the batch."""

    field: nk.MLPField

    def __call__(self, t, ys, args):
        return jax.vmap(self.field, in_axes=(None, 0, None))(t, ys, args)


_RAW_ADJOINTS = {
    "backsolve": diffrax.BacksolveAdjoint,
    "checkpoint": diffrax.RecursiveCheckpointAdjoint,
    # node_kit's `direct` (nk.direct_adjoint): one checkpoint per step of max_steps = 4096.
    "direct": lambda: diffrax.RecursiveCheckpointAdjoint(checkpoints=4096),
}


def _raw_solve(term, work: Workload, config, ts, y0, args):
    """The `diffrax.diffeqsolve` a user would write for `work`: a CNF saves its end state
    (diffrax's default), a neural ODE its trajectory at `ts`."""
    if work.model == "cnf":
        controller, dt0 = diffrax.PIDController(rtol=config.rtol, atol=config.atol), None
        saveat = diffrax.SaveAt(t1=True)
    else:
        controller, dt0 = diffrax.ConstantStepSize(), _node_dt(work, config)
        saveat = diffrax.SaveAt(t1=True) if work.steps else diffrax.SaveAt(ts=ts)
    return diffrax.diffeqsolve(
        diffrax.ODETerm(term),
        solver_from_name(work.solver),
        ts[0],
        ts[-1],
        dt0,
        y0,
        args,
        saveat=saveat,
        stepsize_controller=controller,
        adjoint=_RAW_ADJOINTS[work.adjoint](),
        max_steps=4096,
    )


def _cnf_nll(y1):
    z, logdet = y1[:, :-1], y1[:, -1]
    log_prob = -0.5 * jnp.sum(z**2, axis=1) - 0.5 * z.shape[1] * jnp.log(2 * jnp.pi) + logdet
    return -jnp.mean(log_prob)


# --- One workload, both ways -----------------------------------------------------------


@dataclasses.dataclass
class Case:
    """A workload's two `(model, loss)` paths, its batch, and the pieces of the floor.

    `loss(model, batch, key) -> (value, {"num_steps": ...})` for both paths.
    `dynamics(state, args)` is the batched right-hand side the solver calls (the raw one),
    at the initial state and with the arguments of the solve.
    """

    work: Workload
    paths: dict
    batch: object
    dynamics: Callable
    state: jax.Array
    args: object
    forward_solve: Callable


def build(work: Workload, config, keys: dict) -> Case:
    """The two paths of `work` over one field, and a batch (same keys for every workload)."""
    xs = jr.normal(keys["data"], (config.batch_size, config.data_size)) * 2.0
    if work.model == "cnf":
        return _build_cnf(work, config, keys["model"], xs, keys["probe"])
    return _build_node(work, config, keys["model"], xs)


def _build_cnf(work, config, model_key, xs, probe_key) -> Case:
    field = nk.ConcatSquashField(config.data_size, config.width, config.depth, key=model_key)
    settings = solve_settings(work.solver, work.adjoint, rtol=config.rtol, atol=config.atol)
    estimator = nk.trace_estimator_from_name(work.trace)
    cnf = nk.CNF(field, trace_estimator=estimator, settings=settings)
    hutchinson = work.trace == "hutchinson"
    ts = jnp.array([0.0, 1.0])

    def raw_y1(field, xs, key):
        probes = estimator.draw_probe(key, xs.shape, xs.dtype)  # what cnf_loss draws
        y0 = jnp.concatenate([xs, jnp.zeros((xs.shape[0], 1), xs.dtype)], axis=1)
        sol = _raw_solve(RawCNFDynamics(field, hutchinson), work, config, ts, y0, probes)
        return saved_states(sol)[-1], sol.stats["num_steps"]

    def nk_train_loss(cnf, xs, key):
        return nk.cnf_loss(cnf, xs, key=key)

    def nk_eval_loss(cnf, xs, key):
        log_prob, stats = cnf.log_prob_and_stats_batched(xs, key=key)
        return jnp.mean(log_prob), {"num_steps": stats["num_steps"]}

    def raw_train_loss(field, xs, key):
        y1, num_steps = raw_y1(field, xs, key)
        return _cnf_nll(y1), {"num_steps": num_steps}

    def raw_eval_loss(field, xs, key):
        y1, num_steps = raw_y1(field, xs, key)
        return -_cnf_nll(y1), {"num_steps": num_steps}

    nk_loss, raw_loss = (
        (nk_train_loss, raw_train_loss) if work.train else (nk_eval_loss, raw_eval_loss)
    )

    probes = estimator.draw_probe(probe_key, xs.shape, xs.dtype)
    state = jnp.concatenate([xs, jnp.zeros((xs.shape[0], 1), xs.dtype)], axis=1)
    return Case(
        work,
        {"node_kit": (cnf, nk_loss), "raw_diffrax": (field, raw_loss)},
        xs,
        dynamics=RawCNFDynamics(field, hutchinson),
        state=state,
        args=probes,
        forward_solve=lambda term: _raw_solve(term, work, config, ts, state, probes),
    )


def _node_dt(work: Workload, config) -> float:
    return config.dt if work.steps is None else 1.0 / work.steps


def _build_node(work, config, model_key, xs) -> Case:
    field = nk.MLPField(config.data_size, config.width, config.depth, key=model_key)
    settings = solve_settings(
        work.solver,
        work.adjoint,
        rtol=config.rtol,
        atol=config.atol,
        fixed_dt=_node_dt(work, config),
    )
    node = nk.NeuralODE(field, settings=settings)
    ts = jnp.linspace(0.0, 1.0, 2 if work.steps else config.save_times)
    target = jnp.sin(3 * ts)[None, :, None] * xs[:, None, :]  # (batch, time, dim)
    # Two-point workloads score the end state only: the raw solve saves nothing else.
    scored = slice(-1, None) if work.steps else slice(None)

    def nk_loss(node, xs, key):
        sol = node.solve_batched(ts, xs)
        prediction = jnp.moveaxis(saved_states(sol)[scored], 0, 1)
        error = prediction - target[:, scored]
        return jnp.mean(error**2), {"num_steps": sol.stats["num_steps"]}

    def raw_loss(field, xs, key):
        sol = _raw_solve(RawBatchField(field), work, config, ts, xs, None)
        prediction = jnp.moveaxis(saved_states(sol), 0, 1)
        error = prediction - target[:, scored]
        return jnp.mean(error**2), {"num_steps": sol.stats["num_steps"]}

    return Case(
        work,
        {"node_kit": (node, nk_loss), "raw_diffrax": (field, raw_loss)},
        xs,
        dynamics=RawBatchField(field),
        state=xs,
        args=None,
        forward_solve=lambda term: _raw_solve(term, work, config, ts, xs, None),
    )
