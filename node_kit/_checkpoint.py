"""Checkpoints of a training run: the state, saved with its config and checked when loaded."""

import io
import os
import warnings

import equinox as eqx
from jaxtyping import PyTree

from ._checks import check_file_path, check_int, type_name
from ._io import (
    CheckpointError,
    deserialise_leaves,
    previous_path,
    read_checkpoint_bytes,
    write_checkpoint_bytes,
)


class Checkpoint(eqx.Module):
    """Where a run is: model, optimizer state and the number of steps taken."""

    model: PyTree
    opt_state: PyTree
    step: int = eqx.field(static=True)


def save_checkpoint(
    path: str | os.PathLike,
    state: Checkpoint,
    meta: dict,
    *,
    info: dict | None = None,
    keep_previous: bool = True,
) -> None:
    """Write the state's leaves to `path`, then its config `meta`, step and checksum to the
    sidecar `<path>.json`, each atomically.

    `path` is a plain `eqx.tree_serialise_leaves` file of `(model, opt_state)`. The
    checkpoint it replaces is kept as `<path>.prev` with its sidecar (unless
    `keep_previous=False`), so a damaged latest file, or a kill between the two writes,
    still leaves one to resume from. A `state` whose `opt_state` is `None` writes the
    model alone (the weights a finished run keeps): equinox reads it with
    `eqx.tree_deserialise_leaves(path, model_skeleton)`, and
    [`node_kit.load_checkpoint`][] with `Checkpoint(like, None, 0)`. `info` (JSON values,
    e.g. the command and full config of a run) is written into the sidecar as `"info"`
    and, unlike `meta`, never checked on resume.
    """
    if not isinstance(state, Checkpoint):
        raise ValueError(
            f"`state` must be a node_kit.Checkpoint(model, opt_state, step); got "
            f"{type_name(state)}. Wrap it: nk.Checkpoint(model, opt_state, step)."
        )
    if not isinstance(meta, dict):
        raise ValueError(f"`meta` must be a dict of JSON values; got {type_name(meta)}.")
    if info is not None and not isinstance(info, dict):
        raise ValueError(f"`info` must be a dict of JSON values or None; got {type_name(info)}.")
    check_file_path("path", path)
    check_int("state.step", state.step, minimum=0, fix="The step a checkpoint was taken at.")
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, (state.model, state.opt_state))
    write_checkpoint_bytes(
        path, buffer.getvalue(), step=state.step, meta=meta, info=info, keep_previous=keep_previous
    )


def read_checkpoint_meta(path: str | os.PathLike) -> dict:
    """The checked config and step of a checkpoint (from its sidecar, or an old file's header)."""
    return read_checkpoint_bytes(path)[0]


def load_checkpoint(path: str | os.PathLike, like: Checkpoint, meta: dict) -> Checkpoint:
    """Load a checkpoint into the structure of `like`, after checking it and its config.

    **Raises:**

    [`node_kit.CheckpointError`][] (a `ValueError`) naming the file, what is wrong and
    what to do: it is missing, not a checkpoint, truncated, damaged (its sidecar is
    missing or damaged, or the checksum in it does not match), from a run with another
    config (the keys of `meta` that differ), or does not fit `like` (another model size or
    another optimizer's state). A `like` whose `opt_state` is `None` reads the model only.
    """
    return _load(path, like, meta, fix=None)


def _load(path, like: Checkpoint, meta: dict, *, fix: str | None) -> Checkpoint:
    """`load_checkpoint`, a damaged file's message ending with `fix` (default: how to resume)."""
    if not isinstance(like, Checkpoint):
        raise ValueError(
            "`like` must be a node_kit.Checkpoint of the structure to load into; got "
            f"{type_name(like)}. E.g. nk.Checkpoint(model, optimizer.init(eqx.filter(model, "
            "eqx.is_inexact_array)), 0), or nk.Checkpoint(model, None, 0) for the model only."
        )
    if not isinstance(meta, dict):
        raise ValueError(
            f"`meta` must be a dict (the config the checkpoint must match, {{}} for none); got "
            f"{type_name(meta)}."
        )
    saved, payload = read_checkpoint_bytes(path, fix=fix)
    differ = sorted(k for k in meta if saved.get(k) != meta[k])
    if differ:
        detail = "; ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {meta[k]!r}" for k in differ)
        raise CheckpointError(
            f"checkpoint {path} is from another config ({detail}). Resume with the same "
            "settings, or use a new output dir.",
            damaged=False,
        )
    # Everything must be read, unless `like` asks for the model only (opt_state None).
    tree, problem = deserialise_leaves(
        payload, (like.model, like.opt_state), read_all=like.opt_state is not None
    )
    if problem is not None:
        raise CheckpointError(
            f"checkpoint {path} does not fit this model and optimizer (another model size, "
            f"or another optimizer's state; {problem}). Resume with the settings it was "
            "written with, or use a new output dir."
        )
    model, opt_state = tree
    return Checkpoint(model, opt_state, int(saved["step"]))


def resume_checkpoint(path: str | os.PathLike, like: Checkpoint, meta: dict) -> Checkpoint:
    """[`node_kit.load_checkpoint`][], falling back to `<path>.prev` (and its sidecar) if the
    latest is unusable.

    A fallback is announced with a warning naming both files and the reason. A
    checkpoint from another config is never skipped over: that error is raised as is.
    """
    try:
        return load_checkpoint(path, like, meta)
    except CheckpointError as error:
        previous = previous_path(path)
        if not error.damaged or not previous.exists():
            raise
        try:
            fix = "Start fresh without resuming (in a new output folder to keep these files)."
            state = _load(previous, like, meta, fix=fix)
        except CheckpointError as previous_error:
            if not previous_error.damaged:
                raise
            raise CheckpointError(
                f"neither checkpoint can be resumed from. The latest: {error} The previous: "
                f"{previous_error}"
            ) from None
        warnings.warn(
            f"resuming from the previous checkpoint {previous} (step {state.step}): {error}",
            stacklevel=2,
        )
        return state
