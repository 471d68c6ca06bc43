"""Fixed-shape NumPy batches whose order is a pure function of `(seed, step)`.

Step `s` falls in epoch `s // num_batches` and takes batch `s % num_batches` of that epoch's
permutation, which is drawn from `numpy.random.default_rng([seed, epoch])`. A training loop
that resumes at step `s` therefore sees exactly the batches it would have seen without the
interruption. The remainder of each epoch is dropped so every batch has the same shape (one
compilation of a jitted step).
"""

import functools
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np

from .._checks import check_int


def num_batches(num_examples: int, batch_size: int) -> int:
    """Number of full batches in one epoch (the remainder is dropped).

    **Arguments:**

    - `num_examples`: size of the data set.
    - `batch_size`: examples per batch, at most `num_examples`.

    **Returns:**

    `num_examples // batch_size`, at least 1.
    """
    check_int("num_examples", num_examples, show_name=True)
    check_int("batch_size", batch_size, show_name=True)
    if batch_size > num_examples:
        raise ValueError(
            f"`batch_size` must be at most the number of examples; got batch_size={batch_size} "
            f"for {num_examples} examples. Use a smaller batch_size."
        )
    return num_examples // batch_size


@functools.lru_cache(maxsize=4)
def _epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    permutation = np.random.default_rng([seed, epoch]).permutation(num_examples)
    permutation.flags.writeable = False
    return permutation


def batch_indices(num_examples: int, *, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Indices of the examples in batch number `step` (counted from 0 over all epochs).

    **Arguments:**

    - `num_examples`: size of the data set.
    - `batch_size`: examples per batch.
    - `seed`: non-negative int fixing the order of every epoch.
    - `step`: non-negative global step.

    **Returns:**

    An int64 array of shape `(batch_size,)`, without repeats; one epoch's batches together
    cover `num_batches * batch_size` distinct examples.
    """
    check_int("seed", seed, minimum=0, show_name=True)
    check_int("step", step, minimum=0, show_name=True)
    per_epoch = num_batches(num_examples, batch_size)
    epoch, position = divmod(int(step), per_epoch)
    permutation = _epoch_permutation(int(num_examples), int(seed), epoch)
    return permutation[position * batch_size : (position + 1) * batch_size]


def _num_examples(data: Any) -> int:
    leaves = jax.tree_util.tree_leaves(data)
    if not leaves:
        raise ValueError("`data` must hold at least one array; got an empty PyTree.")
    lengths = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in leaves}
    length = next(iter(lengths))
    if len(lengths) != 1 or length is None:
        raise ValueError(
            "`data` must be an array or a PyTree (dict) of arrays sharing their first axis; "
            f"got leading sizes {sorted(map(str, lengths))}."
        )
    return length


def batch_at(data: Any, step: int, *, batch_size: int, seed: int, rows: slice | None = None) -> Any:
    """The batch for global step `step`, as a pure function of `(seed, step)`.

    **Arguments:**

    - `data`: a NumPy array or a PyTree (for example the dict `load` returns) of arrays with a
        shared first axis.
    - `step`: non-negative global step; epochs follow each other without a gap.
    - `batch_size`: examples per batch.
    - `seed`: non-negative int fixing the order of every epoch.
    - `rows`: only these rows of the batch (e.g. one process's share of a global batch,
        `nk.DataParallel.process_rows`); `None` for all.

    **Returns:**

    `data`'s structure with every leaf indexed to shape `(batch_size, ...)` (or the
    length of `rows`).
    """
    index = batch_indices(_num_examples(data), batch_size=batch_size, seed=seed, step=step)
    if rows is not None:
        index = index[rows]
    return jax.tree_util.tree_map(lambda leaf: np.asarray(leaf)[index], data)


def batches(data: Any, *, batch_size: int, seed: int, epoch: int) -> Iterator[Any]:
    """Iterate over the batches of one epoch; the same as `batch_at` for that epoch's steps.

    **Arguments:**

    - `data`: a NumPy array or a PyTree of arrays with a shared first axis.
    - `batch_size`: examples per batch.
    - `seed`: non-negative int fixing the order of every epoch.
    - `epoch`: non-negative epoch index.

    **Returns:**

    An iterator of `num_batches(len(data), batch_size)` batches, each shaped like `batch_at`'s.
    """
    check_int("epoch", epoch, minimum=0, show_name=True)
    check_int("seed", seed, minimum=0, show_name=True)
    per_epoch = num_batches(_num_examples(data), batch_size)
    steps = range(epoch * per_epoch, (epoch + 1) * per_epoch)
    return (batch_at(data, step, batch_size=batch_size, seed=seed) for step in steps)
