"""The MuJoCo Hopper of Rubanova, Chen and Duvenaud (2019), simulated with dm_control.

Each series starts the `hopper` of the DeepMind Control Suite (task `stand`) from a random
state, set inside `physics.reset_context()`: the root x and z positions `qpos[:2] ~ U(0, 0.5)`,
the other five joint positions `qpos[2:] ~ U(-2, 2)` and all seven velocities
`qvel ~ U(-5, 5)`, drawn from `numpy.random.default_rng(seed)`. It then records the state
`concat(qpos, qvel)` (14 numbers: qpos first) and calls `physics.step()`, `HOPPER_NUM_STEPS`
times: the first row is the initial state, as in the paper's code. No actions are applied.

What the `hopper` dataset stores, per series:

- `"t"`: float32 `(200,)`, `arange(200) / 200`, the paper's time scaling. With MuJoCo's
    0.005 s time step this is also the simulated time in seconds. Strictly increasing, in [0, 1).
- `"x"`: float32 `(200, 14)`, the states min-max normalised per feature (each of the 14
    dimensions) over ALL generated series of all three splits, as the paper did:
    `(x - min) / (max - min)`, so every value lies in [0, 1] and each feature reaches 0 and 1
    somewhere in the generated set. (The paper's `normalize_data` divides by `max` instead of
    `max - min`, which does not map to [0, 1]; node_kit uses the true min-max map.)

The `min` and `max` used (14 each, float64) are saved in `metadata.json` next to the data
(`builder.info.metadata`), and `normalise_min_max(sample_hopper(total, seed=seed)["x"])`
recomputes them, `total` being the sum of the split sizes.

dm_control and mujoco are optional and imported only here, lazily. Their exact versions
matter: see `require_dm_control`.
"""

import importlib.metadata
import importlib.util
import warnings
from typing import Any

import numpy as np

from .._checks import check_int
from ._periodic import LATENT_ODE_CITATION
from ._series import SeriesPreparation
from ._spec import DatasetSpec, Feature, Generated, Requirement, split_rows
from ._toy2d import check_seed


HOPPER_NUM_STEPS = 200
"""Recorded states per series (the paper's 200 time points)."""

HOPPER_STATE_DIM = 14
"""State size: 7 joint positions `qpos`, then 7 joint velocities `qvel`."""

HOPPER_QPOS_ROOT_RANGE = (0.0, 0.5)
"""Uniform range of the initial root x and z positions `qpos[:2]` (z > 0: above the ground)."""

HOPPER_QPOS_JOINT_RANGE = (-2.0, 2.0)
"""Uniform range of the other initial positions `qpos[2:]`."""

HOPPER_QVEL_RANGE = (-5.0, 5.0)
"""Uniform range of the initial velocities `qvel`."""

HOPPER_HINT = 'pip install "node_kit[hopper]"'
"""The install command for the `hopper` dataset's optional dependencies."""

HOPPER_VERSIONS = {"dm_control": "1.0.50", "mujoco": "3.17.0"}
"""The dm_control and mujoco versions `hopper` is built and tested with."""


def installed_version(distribution: str) -> str:
    """The installed version of a pip distribution, or `"not installed"`."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _hopper_physics() -> Any:
    with warnings.catch_warnings():
        # dm_control imports glfw for rendering, which warns when there is no display.
        warnings.filterwarnings("ignore", module="glfw")
        from dm_control import suite

        return suite.load("hopper", "stand").physics


def _dependency_error(error: BaseException) -> ImportError:
    installed = ", ".join(f"{name} {installed_version(name)}" for name in HOPPER_VERSIONS)
    return ImportError(
        "The 'hopper' dataset is simulated with dm_control's MuJoCo hopper, which could not be "
        f"loaded ({type(error).__name__}: {error}; found {installed}). Install it with "
        f'`{HOPPER_HINT}`, i.e. `pip install "dm_control==1.0.50" "mujoco==3.17.0"`. The '
        "versions must match exactly: dm_control 1.0.50 only asks for mujoco>=3.17.0, so pip "
        "picks the newest mujoco (4.x), whose Python bindings dm_control 1.0.50 cannot use, "
        "and other mujoco releases (3.5, ...) break it as well; a pinned simulator also keeps "
        "the generated trajectories reproducible. Once built, the dataset loads without them."
    )


def require_dm_control() -> None:
    """Raise an `ImportError` with the install hint unless dm_control can load the hopper.

    Importing dm_control is not enough: a mismatched mujoco can import and then fail when the
    model is loaded, so this loads the `hopper` environment once (under a second).
    """
    try:
        _hopper_physics()
    except Exception as error:  # Any failure here means a missing or mismatched install.
        raise _dependency_error(error) from error


def _rollout(physics: Any, rng: np.random.Generator, out: np.ndarray) -> None:
    data = physics.data
    with physics.reset_context():
        data.qpos[:2] = rng.uniform(*HOPPER_QPOS_ROOT_RANGE, size=2)
        data.qpos[2:] = rng.uniform(*HOPPER_QPOS_JOINT_RANGE, size=data.qpos[2:].shape)
        data.qvel[:] = rng.uniform(*HOPPER_QVEL_RANGE, size=data.qvel.shape)
    num_qpos = data.qpos.shape[0]
    for step in range(out.shape[0]):
        out[step, :num_qpos] = data.qpos
        out[step, num_qpos:] = data.qvel
        physics.step()


def sample_hopper(
    num_series: int, *, seed: int, num_steps: int = HOPPER_NUM_STEPS
) -> dict[str, np.ndarray]:
    """Simulate `num_series` hopper trajectories from random initial states (not normalised).

    The same `(num_series, seed, num_steps)` always gives the same data (on the same
    dm_control and mujoco); the `hopper` builder normalises and stores this.

    **Arguments:**

    - `num_series`: how many series, at least 1.
    - `seed`: a non-negative int seeding `numpy.random.default_rng`.
    - `num_steps`: recorded states per series, at least 1.

    **Returns:**

    `{"t": (num_series, num_steps) float32, "x": (num_series, num_steps, 14) float64}`:
    times `arange(num_steps) / num_steps` and the raw states `concat(qpos, qvel)`, row 0
    being the random initial state.

    !!! warning

        Needs dm_control 1.0.50 and mujoco 3.17.0 (`pip install "node_kit[hopper]"`); raises
        an `ImportError` saying so otherwise. About 5 ms per series on one CPU core (50 s for
        the default 10,000 series).
    """
    check_int("num_series", num_series, show_name=True)
    check_int("num_steps", num_steps, show_name=True)
    check_seed(seed)
    try:
        physics = _hopper_physics()
    except Exception as error:
        raise _dependency_error(error) from error
    rng = np.random.default_rng(seed)
    x = np.empty((int(num_series), int(num_steps), HOPPER_STATE_DIM), dtype=np.float64)
    for series in x:
        _rollout(physics, rng, series)
    t = np.arange(num_steps, dtype=np.float32) / np.float32(num_steps)
    return {"t": np.tile(t, (int(num_series), 1)), "x": x}


def normalise_min_max(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Min-max normalise each feature (last axis) over all series and times.

    **Arguments:**

    - `x`: array `(num_series, num_steps, dim)`.

    **Returns:**

    `(normalised, minimum, maximum)`: `normalised` is float32 with the shape of `x` and values
    in [0, 1], `(x - minimum) / (maximum - minimum)` computed in float64; `minimum` and
    `maximum` are float64 `(dim,)`. A constant feature maps to 0.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3 or x.size == 0:
        raise ValueError(
            f"`x` must be a non-empty array (num_series, num_steps, dim); got shape {x.shape}."
        )
    minimum = x.min(axis=(0, 1))
    maximum = x.max(axis=(0, 1))
    scale = np.where(maximum > minimum, maximum - minimum, 1.0)
    normalised = (x - minimum) / scale  # In [0, 1] exactly: x - minimum <= scale.
    return normalised.astype(np.float32), minimum, maximum


HOPPER_SPLIT_SIZES: tuple[int, int, int] = (8000, 1000, 1000)
"""Default (train, validation, test) sizes of `hopper`: the paper's 10,000 simulated series."""

_DM_CONTROL_CITATION = """@article{tassa2018deepmind,
  title={DeepMind Control Suite},
  author={Tassa, Yuval and Doron, Yotam and Muldal, Alistair and Erez, Tom and Li, Yazhe and
          de Las Casas, Diego and Budden, David and Abdolmaleki, Abbas and Merel, Josh and
          Lefrancq, Andrew and Lillicrap, Timothy and Riedmiller, Martin},
  journal={arXiv preprint arXiv:1801.00690},
  year={2018}
}"""


def _problem() -> str | None:
    missing = [name for name in HOPPER_VERSIONS if importlib.util.find_spec(name) is None]
    if missing:
        problem = f"{' and '.join(missing)} not installed"
    else:
        found = {name: installed_version(name) for name in HOPPER_VERSIONS}
        if found == HOPPER_VERSIONS:
            return None
        problem = "found " + ", ".join(f"{name} {version}" for name, version in found.items())
    return (
        f"{problem}; it needs exactly dm_control==1.0.50 and mujoco==3.17.0 (other mujoco "
        "releases break dm_control 1.0.50)"
    )


def _generate(sizes: tuple[int, int, int], seed: int) -> Generated:
    raw = sample_hopper(sum(sizes), seed=seed)
    x, minimum, maximum = normalise_min_max(raw["x"])
    metadata = {"min": minimum.tolist(), "max": maximum.tolist()}
    return Generated(split_rows({"t": raw["t"], "x": x}, sizes), metadata=metadata)


_N, _D = HOPPER_NUM_STEPS, HOPPER_STATE_DIM

HOPPER = DatasetSpec(
    name="hopper",
    default_sizes=HOPPER_SPLIT_SIZES,
    features={"t": Feature((_N,), np.float32), "x": Feature((_N, _D), np.float32)},
    generate=_generate,
    description="MuJoCo hopper (dm_control) from random states: `t` (200,), `x` (200, 14) in "
    "[0, 1].\n\n`x` is `concat(qpos, qvel)` min-max normalised per feature over all generated "
    "series; the `min` and `max` used are in the metadata (`metadata.json`). See "
    "`node_kit.datasets._hopper`.",
    homepage="https://github.com/YuliaRubanova/latent_ode",
    citation=LATENT_ODE_CITATION + "\n\n" + _DM_CONTROL_CITATION,
    config_description="Seed {seed}, (train, validation, test) = {sizes} series.",
    release_notes="dm_control 1.0.50, mujoco 3.17.0; seeded numpy Generator.",
    requirement=Requirement(
        "dm_control 1.0.50 and mujoco 3.17.0", HOPPER_HINT, require_dm_control, _problem
    ),
    metadata_keys=("min", "max"),
    series=SeriesPreparation(unit_times=True),
)
"""The `hopper` dataset: `sample_hopper` min-max normalised over all series, then split."""
