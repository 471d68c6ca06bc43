"""`load`: build a dataset with TensorFlow-Datasets on first use, return a split as NumPy.

Only the `array_record` file format is used: it is the one TFDS reads and writes without
TensorFlow (its `tfrecord` needs TensorFlow, its `parquet` writer silently drops rows). Nothing
here downloads: node_kit datasets are generated locally, and any other TFDS dataset must already
be prepared in the data directory, otherwise `load` fails at once instead of letting TFDS try the
network.
"""

import contextlib
import difflib
import glob
import io
import logging
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from .._io import atomic_write_bytes
from ._registry import check_split, find_spec, get_spec, names, resolve_data_dir, specs
from ._spec import DatasetSpec, SPLITS
from ._toy2d import check_seed


def _tfds() -> Any:
    import tensorflow_datasets as tfds

    return tfds


@contextlib.contextmanager
def _quiet_tfds_warnings() -> Iterator[None]:
    # TFDS warns "Using custom data configuration" for every seeded config and "Variant folder
    # ... has no dataset_info.json" before a first build; both are expected here.
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _node_kit_builder(
    name: str, seed: int, split_sizes: tuple[int, int, int], data_dir: str
) -> Any:
    from ._tfds_builders import builder_class, spec_config

    spec = get_spec(name)
    cls = builder_class(spec)
    config = spec_config(spec, seed, split_sizes)
    # TFDS refuses a config object that shares its name with a predefined one; pass the name.
    if config.name in cls.builder_configs:
        config = config.name
    with _quiet_tfds_warnings():
        return cls(config=config, data_dir=data_dir)


def _prepare(builder: Any) -> None:
    with _quiet_tfds_warnings():
        prepared = builder.is_prepared()
    if prepared:
        return
    # Optional dependencies are checked before TFDS starts, so the error names the fix.
    if builder.SPEC.requirement is not None:
        builder.SPEC.requirement.require()
    tfds = _tfds()
    download_config = tfds.download.DownloadConfig(try_download_gcs=False)
    with _quiet_tfds_warnings():
        builder.download_and_prepare(file_format="array_record", download_config=download_config)


def _spec_builder(
    name: str,
    data_dir: str | os.PathLike[str] | None,
    seed: int | None,
    split_sizes: tuple[int, int, int] | None,
) -> Any:
    """The prepared builder of a node_kit dataset, its arguments checked; built if needed."""
    seed = check_seed(0 if seed is None else seed)
    sizes = get_spec(name).split_sizes(split_sizes)
    builder = _node_kit_builder(name, seed, sizes, resolve_data_dir(data_dir))
    _prepare(builder)
    return builder


def _stack(records: list[Any]) -> Any:
    if isinstance(records[0], dict):
        return {key: _stack([record[key] for record in records]) for key in records[0]}
    return np.stack([np.asarray(record) for record in records])


def _read_split(
    builder: Any, split: str, expected: int | None, *, keep_arrays: bool = False
) -> dict[str, np.ndarray]:
    """The split's examples stacked into arrays.

    With `keep_arrays` (node_kit datasets) the arrays are also written once, next to the
    TFDS files, and read from there while those files are unchanged: TFDS decodes example
    by example (slow for the 50,000-point toy splits), the kept arrays load at once.
    """
    kept = _kept_arrays_path(builder, split) if keep_arrays else None
    if kept is not None:
        fingerprint = _source_fingerprint(builder, split)
        arrays = _read_kept_arrays(kept, fingerprint, expected)
        if arrays is not None:
            return arrays
    source = builder.as_data_source(split=split)
    if expected is not None and len(source) != expected:
        raise RuntimeError(
            f"Split {split!r} of {builder.info.full_name} in {builder.data_dir} holds "
            f"{len(source)} examples but its config says {expected}. The files are damaged or "
            "stale: delete that directory and load again to rebuild it."
        )
    if len(source) == 0:
        raise RuntimeError(f"Split {split!r} of {builder.info.full_name} is empty.")
    arrays = _stack(source.__getitems__(list(range(len(source)))))
    if kept is not None:
        _write_kept_arrays(kept, fingerprint, arrays)
    return arrays


# --- The decoded arrays kept next to the TFDS files -------------------------------------------

_FINGERPRINT = "source"  # the fingerprint of the TFDS files the arrays came from
_FEATURE = "feature_"  # prefix of each feature's array


def _kept_arrays_path(builder: Any, split: str) -> str:
    return os.path.join(builder.data_dir, f"node_kit-{split}.npz")


def _source_fingerprint(builder: Any, split: str) -> str:
    """Names, sizes and modification times of the split's TFDS files: a rebuilt or damaged
    file changes it, so arrays kept from other files are never used."""
    pattern = os.path.join(glob.escape(builder.data_dir), f"*-{split}.array_record*")
    files = []
    for path in sorted(glob.glob(pattern)):
        stat = os.stat(path)
        files.append(f"{os.path.basename(path)}:{stat.st_size}:{stat.st_mtime_ns}")
    return "|".join(files)


def _read_kept_arrays(path: str, fingerprint: str, expected: int | None) -> dict | None:
    """The kept arrays if they were made from these very files and hold `expected` rows;
    `None` (decode again) for anything else, a missing or unreadable file included."""
    if not fingerprint or not os.path.exists(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as kept:
            if str(kept[_FINGERPRINT]) != fingerprint:
                return None
            arrays = {
                key[len(_FEATURE) :]: kept[key] for key in kept.files if key.startswith(_FEATURE)
            }
    except (OSError, ValueError, KeyError, EOFError):
        return None
    rows = {len(array) for array in arrays.values()}
    if not arrays or len(rows) != 1 or (expected is not None and rows != {expected}):
        return None
    return arrays


def _write_kept_arrays(path: str, fingerprint: str, arrays: Any) -> None:
    """Keep the decoded arrays (`atomic_write_bytes`: a reader never sees half a file); a
    directory that cannot be written to keeps nothing."""
    flat = isinstance(arrays, dict) and all(isinstance(a, np.ndarray) for a in arrays.values())
    if not flat or not fingerprint:
        return
    named = {_FEATURE + key: array for key, array in arrays.items()}
    buffer = io.BytesIO()
    with contextlib.suppress(OSError):  # not kept (say, a read-only data dir): decoded again
        # `allow_pickle` (numpy's default) given by name: `**named` cannot stand for it.
        np.savez(buffer, allow_pickle=True, **named, **{_FINGERPRINT: np.array(fingerprint)})
        atomic_write_bytes(path, buffer.getvalue())


def _unknown_name_error(name: str) -> ValueError:
    close = difflib.get_close_matches(name, names(), n=3)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(
        f"`name` must be a node_kit dataset, one of {list(names())}, or a TensorFlow-Datasets "
        f"dataset prepared in the data directory; got name={name!r}.{hint}"
    )


def _not_prepared_error(name: str, data_dir: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{name!r} is a stock TensorFlow-Datasets dataset and is not prepared in "
        f"data_dir={data_dir!r}. It needs a network download, which node_kit never starts "
        "(offline, TFDS would hang for minutes). On a machine with network access run "
        f"`tfds build {name} --file_format=array_record --data_dir=DIR`, copy DIR here, and "
        "pass `data_dir=DIR` to `load` (or set $NODE_KIT_DATA_DIR). Datasets that build "
        f"offline: {list(names())}."
    )


def _load_tfds(name: str, split: str, data_dir: str) -> dict[str, np.ndarray]:
    tfds = _tfds()
    base = name.split("/")[0].split(":")[0]
    registered = base in tfds.list_builders(with_community_datasets=False)
    if not registered and not os.path.isdir(os.path.join(data_dir, base)):
        raise _unknown_name_error(name)
    with _quiet_tfds_warnings():
        builder = tfds.builder(name, data_dir=data_dir)
        prepared = builder.is_prepared()
    if not prepared:
        if registered:
            raise _not_prepared_error(name, data_dir)
        raise _unknown_name_error(name)
    if builder.info.file_format != tfds.core.FileFormat.ARRAY_RECORD:
        raise ValueError(
            f"{name!r} in {builder.data_dir} is stored as {builder.info.file_format.value}, "
            "which TFDS reads only with TensorFlow. Prepare it again with "
            "`--file_format=array_record` (or convert it with `tfds convert_format`)."
        )
    return _read_split(builder, split, expected=None)


def load(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    seed: int | None = None,
    split_sizes: tuple[int, int, int] | None = None,
) -> dict[str, np.ndarray]:
    """Load one split of a dataset as NumPy arrays, building it on first use.

    node_kit datasets (`names()`) are written once with TensorFlow-Datasets in the
    `array_record` format under `data_dir/<builder>/<config>/<version>/` and read back with
    TFDS's data source; later calls only read. The first read of a split also keeps its
    arrays in `node_kit-<split>.npz` beside the TFDS files, and later reads take them from
    there while those files are unchanged (TFDS decodes example by example; the kept arrays
    load at once). Other TFDS datasets load only if already prepared
    (as array_record) in `data_dir`: nothing is ever downloaded.

    The result is a dict of arrays sharing their first axis, one entry per feature:

    - every dataset has `"x"`, the model input: float32 `(n, 2)` for the 2-D toys; uint8
        `(n, 64)` raw pixels 0..16 for `"digits"` (see `preprocess`);
    - labelled datasets add `"label"` (int64 `(n,)`; digits 0..9, japanese_vowels 0..8);
    - the time series have float32 times `"t"`, strictly increasing within each series:
        - `"periodic"`: `"t"` `(n, 100)` irregular, `"x"` float32 `(n, 100, 1)` (see
            `sample_periodic`);
        - `"hopper"`: `"t"` `(n, 200)` = `arange(200) / 200`, `"x"` float32 `(n, 200, 14)`,
            `concat(qpos, qvel)` min-max normalised per feature into [0, 1] over all
            generated series (see `sample_hopper`; needs `pip install "node_kit[hopper]"`
            to build, about a minute for the default 10,000 series on one CPU core);
        - `"japanese_vowels"`: padded to 29 frames, `"t"` `(n, 29)` = frame index 0..28,
            `"x"` float32 `(n, 29, 12)` (0 in the padding), `"mask"` bool `(n, 29, 12)` (True
            on the first `length` frames), `"length"` int64 `(n,)` 7..29 and `"label"`
            (see `read_japanese_vowels`; needs `pip install "node_kit[uea]"` to build).

    Row order is the one TFDS stored (a fixed hash-based shuffle; `"japanese_vowels"` keeps the
    UEA file order for test and the seeded permutation for train and validation); use
    `batch_at` for epochs.

    **Arguments:**

    - `name`: a node_kit dataset (`"8gaussians"`, `"digits"`, ...) or a prepared TFDS name
        (`"mnist"`, `"mnist/config:1.0.0"`).
    - `split`: `"train"`, `"validation"` or `"test"` (TFDS split syntax for other TFDS data).
    - `data_dir`: where datasets live; default `$NODE_KIT_DATA_DIR`, else
        `~/.cache/node_kit/tensorflow_datasets`.
    - `seed`: node_kit datasets only; non-negative int, default 0. Seeds the toy sampler or
        the digits split (the hopper initial states, the japanese_vowels train/validation
        split); each seed is built into its own directory.
    - `split_sizes`: node_kit datasets only; `(train, validation, test)`. Toys default to
        `(50000, 10000, 10000)`; digits to `(1257, 270, 270)` and must add up to 1797;
        periodic to `(1000, 100, 100)` series; hopper to `(8000, 1000, 1000)` series (the
        total is what gets simulated); japanese_vowels to `(240, 30, 370)`, where train +
        validation must be 270 and test 370 (the UEA files).

    **Returns:**

    A dict mapping feature names to NumPy arrays (see above).
    """
    if not isinstance(name, str):
        raise ValueError(f"`name` must be a string; got {name!r}.")
    if find_spec(name) is None:
        if seed is not None or split_sizes is not None:
            raise ValueError(
                "`seed` and `split_sizes` apply only to node_kit datasets "
                f"{list(names())}; got name={name!r}. Drop them for other TFDS datasets."
            )
        return _load_tfds(name, split, resolve_data_dir(data_dir))
    check_split(name, split)
    builder = _spec_builder(name, data_dir, seed, split_sizes)
    sizes = builder.builder_config.split_sizes
    return _read_split(builder, split, expected=sizes[SPLITS.index(split)], keep_arrays=True)


def metadata(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    seed: int | None = None,
    split_sizes: tuple[int, int, int] | None = None,
) -> dict[str, Any]:
    """The metadata a node_kit dataset stored when it was built (building it if needed).

    `hopper` stores the per-feature `"min"` and `"max"` (14 each) of its min-max
    normalisation, so values can be mapped back to physical units or to the paper's
    scale; the other datasets store nothing (an empty dict). A spec lists what its dataset
    stores in `metadata_keys`.

    **Arguments:** `name`, `data_dir`, `seed`, `split_sizes` as for `load`.

    **Returns:**

    A dict of JSON values.
    """
    if find_spec(name) is None:
        raise _unknown_name_error(name)
    builder = _spec_builder(name, data_dir, seed, split_sizes)
    return dict(builder.info.metadata or {})


# --- available / unavailable: found without importing TFDS ------------------------------------


def _prepared_variants(dataset_dir: str) -> list[str]:
    pattern = os.path.join(glob.escape(dataset_dir), "**", "dataset_info.json")
    return [
        os.path.dirname(info)
        for info in glob.glob(pattern, recursive=True)
        if glob.glob(os.path.join(glob.escape(os.path.dirname(info)), "*.array_record*"))
    ]


def _is_built(spec: DatasetSpec, data_dir: str) -> bool:
    """Whether some variant (any seed and sizes) of `spec`'s dataset is built in `data_dir`."""
    builder_dir = os.path.join(data_dir, spec.builder_name)
    variants = _prepared_variants(builder_dir)
    configs = [os.path.relpath(variant, builder_dir).split(os.sep)[0] for variant in variants]
    return any(config.startswith(f"{spec.config_prefix}seed") for config in configs)


def unavailable(*, data_dir: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """The node_kit datasets that `load` cannot build here, each with the reason and the fix.

    **Arguments:**

    - `data_dir`: the data directory to inspect (same default as `load`).

    **Returns:**

    A dict from dataset name to a sentence naming the missing package and the `pip install`
    command. A dataset already built in `data_dir` is not listed: it loads without the package.
    """
    data_dir = resolve_data_dir(data_dir)
    reasons = {}
    for spec in specs():
        reason = None if spec.requirement is None else spec.requirement.reason()
        if reason is not None and not _is_built(spec, data_dir):
            reasons[spec.name] = reason
    return reasons


def available(*, data_dir: str | os.PathLike[str] | None = None) -> tuple[str, ...]:
    """Names that `load` can serve right now, offline, without starting a download.

    **Arguments:**

    - `data_dir`: the data directory to inspect (same default as `load`).

    **Returns:**

    A sorted tuple: the node_kit datasets without a requirement (the 2-D toys, `"periodic"`:
    they are generated); those with one (`"digits"`, `"hopper"`, `"japanese_vowels"`) when its
    package is installed (scikit-learn; dm_control and mujoco; aeon) or the dataset is already
    built in `data_dir`; and every other TFDS dataset prepared as array_record in `data_dir`.
    `unavailable` says why a node_kit dataset is missing.
    """
    data_dir = resolve_data_dir(data_dir)
    missing = unavailable(data_dir=data_dir)
    found = [name for name in names() if name not in missing]
    own_dirs = {spec.builder_name for spec in specs()}
    entries = sorted(os.listdir(data_dir)) if os.path.isdir(data_dir) else []
    for entry in entries:
        skip = entry == "downloads" or entry in own_dirs
        if not skip and _prepared_variants(os.path.join(data_dir, entry)):
            found.append(entry)
    return tuple(sorted(found))
