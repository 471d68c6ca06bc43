"""Memory and time of a gradient against the number of steps, per method: neural ODE
adjoints, DEQ backward passes, meta-learning.

```
python -m node_kit.experiments.memory    # default sweep: about 4 minutes on 2 CPU cores
python -m node_kit.experiments.memory --dim 64 --batch-size 256 --width 64 \
    --solver-steps 10 100 1000 \
    --modes backsolve checkpoint checkpoint:16 direct --layouts batched --out runs/memory
```

An MLP field is solved with a fixed step size for N steps (`max_steps = N`,
`dt0 = 1/N`, `diffrax.ConstantStepSize()`), and the gradient of a loss with respect to
the parameters is compiled and run for each adjoint mode and batch layout. For every
(mode, layout, N) it records XLA's compiled memory (temp, argument and output bytes:
exact, the primary figure), on a GPU also the device's peak bytes in use (each
configuration in a fresh process), the median time per gradient after a warm-up
(compile time apart), and the gradient's error against a float64 store-everything
reference on the same steps. It fits the growth exponent of memory in N, checks
[`node_kit.checkpoint_adjoint_for_budget`][]'s prediction against compiled memory,
prints a table, and writes `<out>/<name>.csv`, `.json` (with versions, backend, device
and machine) and `.png`.

`--family` picks the gradients (see `_memory_problems.py`): `ode` (the above, the
default), `deq` (a DEQ layer's `implicit`, `unrolled` and `phantom` backward passes
against K forward iterations), `inner` (MAML, first-order MAML and iMAML
meta-gradients against K inner steps) or `image` (FFJORD's multiscale CNF at MNIST's
shape, one gradient per adjoint against N fixed steps per block); `--solver-steps` is then
K (N for `image`), `--modes` the methods, and the files are `memory_<family>.*`:

```
python -m node_kit.experiments.memory --family deq     # K = 10, 100, 1000
python -m node_kit.experiments.memory --family inner
python -m node_kit.experiments.memory --family image   # N = 2, 8, 32; batch 4, width 16
```
"""

import dataclasses
import json
import os
import time

import jax

from .._checks import check_int, check_real
from ._choices import MODES_HELP, parse_mode, SOLVER_NAMES
from ._cli import config_flags, ordered_fields
from ._memory_problems import FAMILIES, LAYOUTS
from ._memory_report import format_report, write_outputs
from ._memory_sweep import (
    check_budgets,
    fit_exponents,
    measure,
    measure_family,
    reference_gradient,
    reference_method,
    run_sweep,
    WORKER_TAG,
)
from ._memory_tables import FILES, TABLES
from ._protocol import Command, CommandConfig, option, SHARED_CONFIGS
from ._run import Run


@dataclasses.dataclass(frozen=True)
class Config(CommandConfig):
    """One sweep of the memory benchmark.

    - `family`: `ode`, `deq` or `inner` (see the module); the ODE-only settings
        (`solver`, `layouts`, budgets) apply to `ode`.
    - `dim`, `batch_size`, `width`, `depth`: state size, batch size and the MLP field's
        hidden width and depth (`deq`: the layer's size and the batch; `inner`: the
        meta-batch of tasks and the regression network's width and depth).
    - `solver`: a solver name (`tsit5`, `dopri5`, `euler`, ...), run with fixed steps.
    - `solver_steps`: the numbers of fixed solver steps N, each >= 1 (`deq`: forward
        iterations K; `inner`: inner steps K).
    - `modes`: adjoint modes, from: backsolve, checkpoint (diffrax's default count),
        checkpoint:K (K checkpoints), direct (store every step), reversible; for `deq` the
        backward passes (implicit, unrolled, phantom), for `inner` maml, fomaml, imaml.
    - `layouts`: `batched` (the batch is one ODE state, `model.batched`) and/or
        `vmap` (`jax.vmap(model)`, one solve per sample).
    - `repeats`, `time_limit_s`: up to `repeats` timed gradients after one warm-up,
        stopping early once they total `time_limit_s` (at least one is timed); the
        median is reported.
    - `budgets`, `budget_layouts`: the number of memory budgets checked against
        [`node_kit.checkpoint_adjoint_for_budget`][]'s prediction, at the largest N,
        for each of `budget_layouts` (0 or `()` skips the check; each layout costs
        three calibration compiles plus one per budget).
    - `reference`: compute the float64 store-everything reference gradient and each
        row's error against it.
    - `fresh_process`: measure each configuration in its own process, so that device
        peaks do not carry over; `None` does so on a GPU only.
    - `name`: the stem of the output files (`memory`, or `memory_<family>` for the
        other families); `out`, `seed`, `progress` as for every command.
    """

    family: str = option(
        "ode",
        "ode: adjoints vs solver steps; deq: DEQ backward passes vs "
        "forward iterations; inner: MAML/iMAML vs inner steps; image: adjoints of the "
        "multiscale CNF at MNIST's shape vs solver steps per block (defaults N = 2, 8, 32, "
        "batch 4, width 16)",
    )
    dim: int = option(32, "state size", aliases=("--dims",))
    batch_size: int = option(32, "batch size (inner: tasks per meta-batch)")
    width: int = option(32, "MLP hidden width")
    depth: int = option(2, "MLP hidden layers")
    solver: str = option("tsit5", "ODE solver, run with fixed steps")
    solver_steps: tuple[int, ...] = option(
        (10, 100, 1000),
        "numbers of fixed solver steps N (deq: forward iterations K; inner: inner steps K)",
    )
    modes: tuple[str, ...] = option(("backsolve", "checkpoint", "direct", "reversible"), MODES_HELP)
    layouts: tuple[str, ...] = option(
        LAYOUTS, "batched: the batch as one ODE state; vmap: one solve per sample"
    )
    repeats: int = option(3, "timed gradients after one warm-up")
    time_limit_s: float = option(2.0, "stop timing a configuration after this many seconds")
    budgets: int = option(3, "memory budgets to check per budget layout (0 skips)")
    budget_layouts: tuple[str, ...] = option(
        ("batched",), "layouts to check budgets for", nargs="*"
    )
    reference: bool = option(True, "float64 reference gradient")
    fresh_process: bool | None = option(
        None, "one process per configuration (unset: on a GPU only)"
    )
    name: str = option("memory", "stem of the output files")
    out: str = "runs/memory"

    def __post_init__(self):
        for field in ("solver_steps", "modes", "layouts", "budget_layouts"):
            object.__setattr__(self, field, tuple(getattr(self, field)))
        if self.family in FAMILIES and self.family != "ode":
            for field, default in _family_defaults(self.family).items():
                if getattr(self, field) == _ODE_DEFAULTS[field]:
                    object.__setattr__(self, field, default)
        _check_config(self)


RENAMED = {"batch": "batch_size", "steps": "solver_steps"}
"""Flags renamed in node_kit 0.2 (old name -> new name): see CHANGELOG.md."""


_ODE_DEFAULTS = {
    "modes": ("backsolve", "checkpoint", "direct", "reversible"),
    "name": "memory",
    "solver_steps": (10, 100, 1000),
    "batch_size": 32,
    "width": 32,
}


def _family_defaults(family: str) -> dict:
    """The defaults that differ by family: its modes and its file stem."""
    if family == "ode":
        return _ODE_DEFAULTS
    own = {"modes": FAMILIES[family].default_modes, "name": f"memory_{family}"}
    return {**_ODE_DEFAULTS, **own, **dict(FAMILIES[family].defaults)}


def _check_config(config: Config) -> None:
    if config.family not in FAMILIES:
        raise ValueError(f"`family` must be one of {', '.join(FAMILIES)}; got {config.family!r}.")
    for name, minimum in (
        ("dim", 1),
        ("batch_size", 1),
        ("width", 1),
        ("depth", 0),
        ("repeats", 1),
        ("budgets", 0),
        ("seed", 0),
    ):
        check_int(name, getattr(config, name), minimum=minimum, expected=f"an int >= {minimum}")
    check_real(
        "time_limit_s", config.time_limit_s, positive=True, expected="a positive number of seconds"
    )
    if not isinstance(config.name, str) or not config.name or "/" in config.name:
        raise ValueError(
            f"`name` must be a file stem (non-empty, no '/'); got {config.name!r}. Put the "
            "folder in --out."
        )
    if config.solver not in SOLVER_NAMES:
        raise ValueError(
            f"`solver` must be one of {', '.join(SOLVER_NAMES)}; got {config.solver!r}."
        )
    examples = {
        "solver_steps": "--solver-steps 10 100 1000",
        "modes": "--modes backsolve direct",
        "layouts": "--layouts batched vmap",
    }
    for name, example in examples.items():
        if not getattr(config, name):
            raise ValueError(
                f"`{name}` is empty, so the sweep has nothing to run; pass at least "
                f"one, e.g. {example}."
            )
    for n in config.solver_steps:
        check_int(
            "solver_steps",
            n,
            minimum=1,
            expected="an int >= 1",
            fix="Pass the number of fixed solver steps N, e.g. --solver-steps 10 100.",
        )
    _check_modes(config)
    for name in ("layouts", "budget_layouts"):
        for layout in getattr(config, name):
            _check_layout(name, layout)


def _check_modes(config: Config) -> None:
    family = FAMILIES[config.family]
    for mode in config.modes:
        if config.family == "ode":
            parse_mode(mode)
        elif mode not in family.modes:
            raise ValueError(
                f"`modes` entry {mode!r} is not a {config.family} mode; expected some of "
                f"{', '.join(family.modes)}, e.g. --modes {' '.join(family.default_modes)}."
            )


def _check_layout(name: str, layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(
            f"`{name}` entry {layout!r} is not a layout; expected one of "
            f"{', '.join(LAYOUTS)} (batched: the batch as one ODE state; vmap: one "
            "solve per sample)."
        )


def run_worker(payload: str) -> dict:
    """The `--worker` entry point: measure one configuration, print its row.

    The worker takes the parent's `jax_enable_x64` setting, so both measure the same
    program.
    """
    job = json.loads(payload)
    jax.config.update("jax_enable_x64", job["x64"])
    config = Config(**{**job["config"], "fresh_process": False})
    n = job["steps"]
    if config.family != "ode":
        family_reference = FAMILIES[config.family].reference
        assert family_reference is not None  # every family but ode has one
        reference = (lambda: family_reference(config, n, job["mode"])) if config.reference else None
        row = measure_family(config, job["mode"], n, reference)
    else:
        method = reference_method(job["mode"])
        reference = (lambda: reference_gradient(config, n, method)) if config.reference else None
        row = measure(config, job["mode"], job["layout"], n, reference)
    print(WORKER_TAG + json.dumps(row), flush=True)
    return row


def main(config: Config) -> dict:
    """Run the sweep and the budget check; print the table; write CSV, JSON and PNG.

    **Returns:**

    The results written to `<out>/<name>.json`.
    """
    start, cpu_start, load_start = time.perf_counter(), _cpu_seconds(), os.getloadavg()[0]
    fresh = config.fresh_process
    if fresh is None:
        fresh = jax.default_backend() in ("gpu", "cuda", "rocm")
    run = Run(config, keys=(), training=False)
    rows = run_sweep(config, fresh)
    exponents = fit_exponents(rows)
    ode = config.family == "ode"
    budget_checks = check_budgets(config, rows) if config.budgets and ode else []
    results = {
        "command": command_line(config),
        **run.results(),
        "fresh_process": fresh,
        "wall_s": time.perf_counter() - start,
        "cpu_s": _cpu_seconds() - cpu_start,
        "load_average_1min": [load_start, os.getloadavg()[0]],
        "rows": rows,
        "exponents": exponents,
        "budget_checks": budget_checks,
    }
    print(format_report(results))
    write_outputs(run, config.name, results)
    return results


def _cpu_seconds() -> float:
    """User and system CPU seconds of this process and its finished children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def command_line(config: Config) -> str:
    """The command that reproduces `config` (flags only where it differs from the default)."""
    defaults = {**dataclasses.asdict(Config()), **_family_defaults(config.family)}
    values = {f.name: getattr(config, f.name) for f in ordered_fields(Config, SHARED_CONFIGS)}
    flags = config_flags(
        values, defaults, skip=("fresh_process",) if config.fresh_process is None else ()
    )
    return " ".join(["python -m node_kit.experiments.memory", *flags])


COMMAND = Command(
    "memory",
    Config,
    main,
    docs="choosing-an-adjoint.md",
    choices=lambda: {
        "solver": SOLVER_NAMES,
        "layouts": LAYOUTS,
        "budget_layouts": LAYOUTS,
        "family": tuple(FAMILIES),
    },
    headline=lambda results: {
        f"{row['mode']} {row.get('layout', '')} N={row['steps']} temp_bytes": row["temp_bytes"]
        for row in results["rows"]
    },
    committed=lambda results: {
        name.removesuffix(".json"): results / name
        for name in FILES.values()
        if (results / name).exists()
    },
    output=lambda config: f"{config.get('name', 'memory')}.json",
    renamed=RENAMED,
    worker=run_worker,
    tables=TABLES,
)
parse_args = COMMAND.parse


if __name__ == "__main__":
    COMMAND.run()
