"""The registry: the list of dataset specs, lookup by name, and the data directory.

Adding a dataset is one new file holding its `DatasetSpec` and one line in `_SPECS` (or a
call to `register` from outside the package).
"""

import contextlib
import dataclasses
import os

from .._checks import check_folder_path, make_folder
from ._digits import DIGITS
from ._hopper import HOPPER
from ._images import MNIST_5K
from ._periodic import PERIODIC
from ._spec import DatasetSpec, SPLITS
from ._toy2d import TOY2D_SPECS
from ._uea import JAPANESE_VOWELS


_SPECS: list[DatasetSpec] = [
    *TOY2D_SPECS,
    DIGITS,
    MNIST_5K,
    PERIODIC,
    HOPPER,
    JAPANESE_VOWELS,
]

TIME_SERIES_NAMES: tuple[str, ...] = tuple(sorted(s.name for s in _SPECS if s.series is not None))
"""Time-series datasets node_kit builds itself; their examples hold times `"t"` and values `"x"`."""

DATA_DIR_ENV = "NODE_KIT_DATA_DIR"
"""Environment variable that overrides the default data directory."""

_DEFAULT_DATA_DIR = os.path.join("~", ".cache", "node_kit", "tensorflow_datasets")


def specs() -> tuple[DatasetSpec, ...]:
    """The specs of every node_kit dataset, those added with `register` included."""
    return tuple(_SPECS)


def names() -> tuple[str, ...]:
    """Names of the datasets node_kit builds itself (offline, from code or shipped data).

    **Returns:**

    A sorted tuple: the 2-D toys, `"digits"`, `"mnist_5k"` and the time series
    (`"hopper"`, `"japanese_vowels"`, `"periodic"`), and any dataset added with `register`.
    `"digits"`, `"mnist_5k"`, `"hopper"` and `"japanese_vowels"` need an optional package to
    build (see `available`).
    """
    return tuple(sorted(spec.name for spec in _SPECS))


def find_spec(name: str) -> DatasetSpec | None:
    """The spec registered under `name`, or `None`."""
    return next((spec for spec in _SPECS if spec.name == name), None)


def get_spec(name: str) -> DatasetSpec:
    """The spec of the node_kit dataset `name` (a `ValueError` lists the names otherwise)."""
    spec = find_spec(name)
    if spec is None:
        raise ValueError(f"`name` must be one of {list(names())}; got name={name!r}.")
    return spec


@dataclasses.dataclass(frozen=True)
class Registration(contextlib.AbstractContextManager):
    """What `register` returns: `unregister()` it, or use it as a context manager."""

    spec: DatasetSpec

    def unregister(self) -> None:
        """Remove the spec from the registry (its data stay in the data directory)."""
        if self.spec in _SPECS:
            _SPECS.remove(self.spec)

    def __exit__(self, *exc_info: object) -> None:
        self.unregister()


def register(spec: DatasetSpec) -> Registration:
    """Add a dataset to the registry, so that `load`, `metadata` and `available` serve it.

    **Arguments:**

    - `spec`: a `DatasetSpec` whose name is not taken yet.

    **Returns:**

    A `Registration`: `with register(spec): ...` registers the spec for the block only;
    `register(spec).unregister()` does the same by hand.
    """
    if not isinstance(spec, DatasetSpec):
        raise ValueError(f"`spec` must be a DatasetSpec; got {type(spec).__name__}.")
    if find_spec(spec.name) is not None:
        raise ValueError(
            f"a dataset named {spec.name!r} is already registered; pick another `name`, or "
            "unregister the other one first."
        )
    _SPECS.append(spec)
    return Registration(spec)


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> str:
    """The directory datasets are built in and read from.

    **Arguments:**

    - `data_dir`: an explicit directory, or `None` for `$NODE_KIT_DATA_DIR` if set, else
        `~/.cache/node_kit/tensorflow_datasets`.

    **Returns:**

    An absolute path with `~` expanded.
    """
    name = "data_dir"
    if data_dir is None:
        name, data_dir = f"${DATA_DIR_ENV}", os.environ.get(DATA_DIR_ENV) or _DEFAULT_DATA_DIR
    fix = "Pass another folder, or None for the default (the commands: --data-dir)."
    check_folder_path(f"`{name}`", data_dir, purpose="the datasets", fix=fix)
    folder = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
    return str(
        make_folder(
            check_folder_path(f"`{name}`", folder, purpose="the datasets", fix=fix), f"`{name}`"
        )
    )


def check_split(name: str, split: str) -> None:
    """Raise a `ValueError` unless `split` is one of `SPLITS`."""
    if split not in SPLITS:
        raise ValueError(
            f"`split` must be one of {list(SPLITS)} for {name!r}; got split={split!r}."
        )
