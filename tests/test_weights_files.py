"""Weights files: plain `eqx.tree_serialise_leaves` files with a JSON sidecar; the `.prev`
pair that a damaged or half-written checkpoint falls back to; the old formats, still read
and upgraded by `python -m node_kit.experiments.upgrade_weights`.

Tiny float64 trees and no training: nothing here compiles more than a few array ops.
"""

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import node_kit as nk
from node_kit._io import _fields_digest, previous_path, read_checkpoint_bytes, sidecar_path
from node_kit._old_formats import MAGIC
from node_kit.experiments import upgrade_weights

ROOT = Path(__file__).parents[1]
META = {"lr": 0.1, "width": 3}
INFO = {"command": "node_kit.experiments.cnf", "config": {"width": 3}}


def _model(step):
    """A tiny tree whose values say which step wrote it (float64 and int32 leaves)."""
    return {"w": jnp.arange(6.0).reshape(2, 3) / 7 + step, "b": jnp.full(3, 0.1 * step),
            "n": jnp.asarray(step, jnp.int32)}


def _state(step):
    return nk.Checkpoint(_model(step), {"mu": jnp.full(3, step / 3)}, step)


LIKE = nk.Checkpoint(_model(0), {"mu": jnp.zeros(3)}, 0)


def _arrays(tree) -> list:
    return jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_array))


def _same(a, b) -> bool:
    """The same arrays, leaf for leaf: dtypes, shapes and values."""
    return len(_arrays(a)) == len(_arrays(b)) and all(
        x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y)
        for x, y in zip(_arrays(a), _arrays(b)))


def _saved(folder: Path, steps=(2, 4)) -> Path:
    """`checkpoint.eqx` at the last of `steps`, `.prev` at the one before, with sidecars."""
    path = folder / "checkpoint.eqx"
    for step in steps:
        nk.save_checkpoint(path, _state(step), META, info=INFO)
    return path


def _load(path):
    return nk.load_checkpoint(path, LIKE, META)


def test_round_trip_and_what_the_sidecar_holds(tmp_path):
    path = _saved(tmp_path)
    state = _load(path)
    assert state.step == 4 and _same((state.model, state.opt_state), (_state(4).model, _state(4).opt_state))
    assert state.model["w"].dtype == jnp.float64 and state.model["n"].dtype == jnp.int32
    assert _load(previous_path(path)).step == 2 and _same(_load(previous_path(path)).model, _model(2))
    data, sidecar = path.read_bytes(), json.loads(sidecar_path(path).read_text())
    assert sidecar == {"format": "node_kit weights", "version": 3, "step": 4, "meta": META,
                       "info": INFO, "sidecar_sha256": sidecar["sidecar_sha256"],
                       "weights": {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}}
    assert read_checkpoint_bytes(path)[0] == {**META, "step": 4, "info": INFO}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint.eqx", "checkpoint.eqx.json", "checkpoint.eqx.prev", "checkpoint.eqx.prev.json"]


def test_equinox_alone_reads_the_weights(tmp_path):
    mlp = eqx.nn.MLP(2, 2, 4, 1, key=jr.key(0))
    path = tmp_path / "model.eqx"
    nk.save_checkpoint(path, nk.Checkpoint(mlp, None, 7), META, keep_previous=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.eqx", "model.eqx.json"]
    skeleton = eqx.nn.MLP(2, 2, 4, 1, key=jr.key(1))  # the same shapes, other values
    assert _same(eqx.tree_deserialise_leaves(path, skeleton), mlp)
    # A checkpoint holds the model, then the optimizer state.
    both = eqx.tree_deserialise_leaves(_saved(tmp_path), (LIKE.model, LIKE.opt_state))
    assert _same(both, (_state(4).model, _state(4).opt_state))


def test_equinox_alone_reads_a_committed_runs_model_eqx():
    from node_kit.experiments import cnf

    folder = ROOT / "experiments" / "results" / "cnf" / "8gaussians"
    model, config = nk.load_run(folder)  # float64 here (x64 is on): load_run casts
    # equinox checks dtypes: the run was trained in float32, so is the skeleton.
    skeleton = jax.tree_util.tree_map(lambda x: x.astype(jnp.float32) if eqx.is_inexact_array(x)
                                      else x, cnf.model_skeleton(config))
    plain = eqx.tree_deserialise_leaves(folder / "model.eqx", skeleton)
    assert len(_arrays(plain)) == len(_arrays(model)) > 5
    for stored, loaded in zip(_arrays(plain), _arrays(model)):
        assert stored.dtype == jnp.float32 and np.array_equal(stored.astype(loaded.dtype), loaded)


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1:] if index else data


# (weights, sidecar, previous sidecar) -> the damaged (weights, sidecar or None); the error.
DAMAGE = {
    "weights-bit-flipped": (lambda w, s, p: (_flip(w, len(w) - 5), s), (
        r"is damaged: its contents do not match the checksum in its sidecar "
        r"checkpoint\.eqx\.json \(a flipped or lost byte")),
    "weights-cut-off": (lambda w, s, p: (w[:-8], s), (
        r"is damaged: it holds \d+ bytes where its sidecar checkpoint\.eqx\.json records \d+")),
    "sidecar-of-the-write-before": (lambda w, s, p: (w, p), (
        r"is damaged: its contents do not match the checksum")),
    "sidecar-step-bit-flipped": (lambda w, s, p: (w, s.replace(b'"step": 4', b'"step": 5')), (
        r"cannot be read: its sidecar checkpoint\.eqx\.json is damaged \(its fields, such as "
        r"the step or the config, do not match")),
    "sidecar-not-json": (lambda w, s, p: (w, s[: len(s) // 2]), (
        r"cannot be read: its sidecar checkpoint\.eqx\.json is not a node_kit sidecar \(not JSON")),
    "sidecar-missing": (lambda w, s, p: (w, None), (
        r"cannot be read: its sidecar checkpoint\.eqx\.json is missing \(it is written just "
        r"after the weights")),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_pair_is_one_clear_error_and_resuming_falls_back(damage, tmp_path):
    path = _saved(tmp_path)
    change, match = DAMAGE[damage]
    weights, sidecar = change(path.read_bytes(), sidecar_path(path).read_bytes(),
                              sidecar_path(previous_path(path)).read_bytes())
    path.write_bytes(weights)
    sidecar_path(path).unlink()
    if sidecar is not None:
        sidecar_path(path).write_bytes(sidecar)
    with pytest.raises(nk.CheckpointError, match=match) as info:
        _load(path)
    assert str(path) in str(info.value) and info.value.damaged
    assert str(info.value).endswith("Resume from checkpoint.eqx.prev (node_kit falls back to "
                                    "it when resuming) if it exists, or start fresh without resuming.")
    with pytest.warns(UserWarning, match=r"resuming from the previous checkpoint .*checkpoint"
                      r"\.eqx\.prev \(step 2\): checkpoint .*checkpoint\.eqx (is damaged|cannot be read)"):
        state = nk.resume_checkpoint(path, LIKE, META)
    assert state.step == 2 and _same(state.model, _model(2))


def test_a_sidecar_of_a_newer_format_is_refused_not_skipped(tmp_path):
    path = _saved(tmp_path)
    fields = {**json.loads(sidecar_path(path).read_text()), "version": 4}
    fields["sidecar_sha256"] = _fields_digest(fields)  # as a newer writer would
    sidecar_path(path).write_text(json.dumps(fields))
    with pytest.raises(nk.CheckpointError, match=r"was written by a newer node_kit \(sidecar "
                       r"version 4; this one reads up to 3\)\. Upgrade node_kit to read it\."):
        nk.resume_checkpoint(path, LIKE, META)  # not damaged: no fallback to the older one


def _changed(value):
    """`value` with one small change, as a flipped bit or a crafted edit would make."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value ^ 8  # one bit: 20 <-> 28, 3 <-> 11
    if isinstance(value, float):
        return value * 2
    if isinstance(value, str):
        return value[:-1] + ("0" if value[-1:] != "0" else "1")
    if value is None:
        return 0
    return value


def _leaves(tree, path=()):
    """`(path, value)` of every leaf of a JSON tree (each dict entry; lists as leaves)."""
    if isinstance(tree, dict) and tree:
        for key, value in tree.items():
            yield from _leaves(value, (*path, key))
    else:
        yield path, tree


def _with(tree, path, value):
    if not path:
        return value
    return {**tree, path[0]: _with(tree[path[0]], path[1:], value)}


def test_every_sidecar_field_changed_in_turn_is_detected_and_the_previous_pair_serves(tmp_path):
    path = _saved(tmp_path)
    original = sidecar_path(path).read_text()
    fields = json.loads(original)
    leaves = list(_leaves(fields))
    assert len(leaves) >= 10  # format, version, step, meta's, info's, weights', checksum
    for where, value in leaves:
        sidecar_path(path).write_text(json.dumps(_with(fields, where, _changed(value))))
        with pytest.raises(nk.CheckpointError) as info:
            _load(path)
        assert info.value.damaged, where  # so that resuming falls back to the previous pair
        with pytest.warns(UserWarning, match=r"resuming from the previous checkpoint"):
            assert nk.resume_checkpoint(path, LIKE, META).step == 2, where
    # Values a crafted sidecar might hold, with its checksum made to match: refused too.
    for step in (-4, 1e400, [4], "4", None):
        crafted = {**fields, "step": step}
        crafted["sidecar_sha256"] = _fields_digest(crafted)
        sidecar_path(path).write_text(json.dumps(crafted))
        with pytest.raises(nk.CheckpointError, match=r"is not a node_kit sidecar") as info:
            _load(path)
        assert info.value.damaged, step
    sidecar_path(path).write_text("[" * 200_000 + "]" * 200_000)  # deeper than json can read
    with pytest.raises(nk.CheckpointError, match=r"is not a node_kit sidecar"):
        _load(path)


def test_both_checkpoints_damaged_says_so_once_and_advises_a_fresh_start(tmp_path):
    path = _saved(tmp_path)
    for damaged in (path, previous_path(path)):
        data = damaged.read_bytes()
        damaged.write_bytes(data[:-3] + bytes([data[-3] ^ 1]) + data[-2:])
    with pytest.raises(nk.CheckpointError, match=r"neither checkpoint can be resumed from\. The "
                       r"latest: checkpoint .*checkpoint\.eqx is damaged.* The previous: checkpoint "
                       r".*checkpoint\.eqx\.prev is damaged.*\. Start fresh without resuming") as info:
        nk.resume_checkpoint(path, LIKE, META)
    assert "prev.prev" not in str(info.value)


class _Killed(BaseException):
    """Stands for a kill -9: raised where the process would stop."""


def _kill_at(monkeypatch, name: str) -> None:
    """The next rename onto a file called `name` stops the process (raises `_Killed`)."""
    replace = os.replace

    def replace_or_die(source, target):
        if Path(target).name == name:
            monkeypatch.setattr(os, "replace", replace)
            raise _Killed
        replace(source, target)

    monkeypatch.setattr(os, "replace", replace_or_die)


def test_a_kill_between_the_weights_and_the_sidecar_leaves_a_pair_to_resume_from(tmp_path, monkeypatch):
    path = _saved(tmp_path)
    for _ in range(2):  # killed twice in a row at the same moment
        _kill_at(monkeypatch, "checkpoint.eqx.json")
        with pytest.raises(_Killed):
            nk.save_checkpoint(path, _state(6), META, info=INFO)
        # Step 6's weights beside step 4's sidecar: damaged. The .prev pair is step 4's, and
        # the second save did not copy the half-written pair over it.
        with pytest.raises(nk.CheckpointError, match="do not match the checksum"):
            _load(path)
        with pytest.warns(UserWarning, match=r"checkpoint\.eqx\.prev \(step 4\)"):
            assert _same(nk.resume_checkpoint(path, LIKE, META).model, _model(4))
    nk.save_checkpoint(path, _state(6), META, info=INFO)
    assert (_load(path).step, _load(previous_path(path)).step) == (6, 4)


def test_a_kill_while_keeping_the_previous_pair_leaves_the_latest_whole(tmp_path, monkeypatch):
    path = _saved(tmp_path)
    _kill_at(monkeypatch, "checkpoint.eqx.prev")  # its sidecar already copied, not the weights
    with pytest.raises(_Killed):
        nk.save_checkpoint(path, _state(6), META, info=INFO)
    with pytest.raises(nk.CheckpointError, match="do not match the checksum"):
        _load(previous_path(path))
    assert nk.resume_checkpoint(path, LIKE, META).step == 4  # no warning: the latest is sound


def _old_file(version: int, state: nk.Checkpoint, header: dict) -> bytes:
    """A file as node_kit wrote it before the sidecar: v2 (magic, checksum) or the first
    format (header length first, no checksum)."""
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, (state.model, state.opt_state))
    payload = buffer.getvalue()
    if version == 2:
        header = {**header, "sha256": hashlib.sha256(payload).hexdigest()}
    text = json.dumps({**header, "step": state.step}).encode()
    return (MAGIC if version == 2 else b"") + len(text).to_bytes(8, "little") + text + payload


OLD_DAMAGE = {2: r"is damaged: its contents do not match the checksum in its header",
              1: r"is damaged: its arrays are cut off, garbled or not finite \(a file of "
                 r"node_kit's first format, which has no checksum\)"}


@pytest.mark.parametrize("version", [1, 2])
def test_old_formats_are_still_read_and_checked(version, tmp_path):
    path = tmp_path / "checkpoint.eqx"
    header = {**META, "info": INFO} if version == 2 else META
    path.write_bytes(_old_file(version, _state(4), header))
    sidecar_path(previous_path(path)).write_text("{}")  # stale: must not pair with the old file
    state = _load(path)
    assert state.step == 4 and _same((state.model, state.opt_state), (_state(4).model, _state(4).opt_state))
    assert read_checkpoint_bytes(path)[0] == {**header, "step": 4}
    # Training on from it: the old file becomes the .prev (alone), the new pair the latest.
    nk.save_checkpoint(path, _state(6), META, info=INFO)
    assert (_load(path).step, _load(previous_path(path)).step) == (6, 4)
    assert not sidecar_path(previous_path(path)).exists()
    damaged = tmp_path / "damaged.eqx"
    data = _old_file(version, _state(4), header)
    damaged.write_bytes(_flip(data, len(data) - 3) if version == 2 else data[:-3])
    with pytest.raises(nk.CheckpointError, match=OLD_DAMAGE[version]):
        _load(damaged)
    if version == 1:  # no checksum: a NaN weight (a checkpoint only holds finite ones) is refused
        nan_state = _state(4)
        nan_state = nk.Checkpoint(jax.tree_util.tree_map(lambda x: x * jnp.nan, nan_state.model),
                                  nan_state.opt_state, 4)
        damaged.write_bytes(_old_file(1, nan_state, header))
        with pytest.raises(nk.CheckpointError, match=OLD_DAMAGE[1]):
            _load(damaged)


def test_upgrade_makes_old_files_plain_equinox_with_the_same_arrays(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.eqx").write_bytes(_old_file(2, nk.Checkpoint(_model(4), None, 4), {**META, "info": INFO}))
    (run / "checkpoint.eqx.prev").write_bytes(_old_file(1, _state(2), META))
    nk.save_checkpoint(run / "checkpoint.eqx", _state(4), META, keep_previous=False)
    upgrade_weights.main([str(tmp_path)])
    assert capsys.readouterr().out.splitlines() == [
        f"already current: {run / 'checkpoint.eqx'}", f"upgraded: {run / 'checkpoint.eqx.prev'}",
        f"upgraded: {run / 'model.eqx'}"]
    assert _same(eqx.tree_deserialise_leaves(run / "model.eqx", _model(0)), _model(4))
    assert read_checkpoint_bytes(run / "model.eqx")[0] == {**META, "step": 4, "info": INFO}
    assert _same(eqx.tree_deserialise_leaves(run / "checkpoint.eqx.prev", (LIKE.model, LIKE.opt_state)),
                 (_model(2), _state(2).opt_state))
    assert _load(run / "checkpoint.eqx.prev").step == 2
    upgrade_weights.main([str(run / "model.eqx")])
    assert capsys.readouterr().out == f"already current: {run / 'model.eqx'}\n"
    damaged = tmp_path / "damaged.eqx"
    data = _old_file(2, _state(2), META)
    damaged.write_bytes(_flip(data, len(data) - 3))
    with pytest.raises(nk.CheckpointError, match=r"damaged\.eqx is damaged: .* checksum in its "
                       r"header .*\. Leave it as it is; it cannot be upgraded\."):
        upgrade_weights.upgrade(damaged)
    assert not sidecar_path(damaged).exists()


@pytest.mark.parametrize("name, fallback, best", [("model.eqx", "checkpoint.eqx", False),
                                                    ("best.eqx", "best.eqx.prev", True)])
def test_load_run_reads_the_fallback_when_a_weights_file_is_damaged(tmp_path, name, fallback, best):
    """A kill between a weights file and its sidecar leaves a mismatched pair: for
    model.eqx the run's checkpoint.eqx holds the same final weights, for best.eqx the
    best before it is best.eqx.prev; load_run reads that, warning."""
    import shutil

    committed = Path(__file__).parents[1] / "experiments" / "results" / "cnf" / "8gaussians"
    run = tmp_path / "run"
    run.mkdir()
    for target in ("model.eqx", name, fallback):
        shutil.copy(committed / "model.eqx", run / target)
        shutil.copy(committed / "model.eqx.json", sidecar_path(run / target))
    expected, _ = nk.load_run(run, best=best)
    data = bytearray((run / name).read_bytes())
    data[-1] ^= 1
    (run / name).write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=rf"{name} is damaged.*Reading .*{fallback}"):
        model, _ = nk.load_run(run, best=best)
    assert jax.tree_util.tree_all(jax.tree.map(
        lambda a, b: bool(jnp.array_equal(a, b)), eqx.filter(model, eqx.is_array),
        eqx.filter(expected, eqx.is_array)))
    (run / fallback).unlink()
    with pytest.raises(nk.CheckpointError, match=f"{name} is damaged"):
        nk.load_run(run, best=best)


FULL_DISK = textwrap.dedent("""
    import resource, signal, sys
    import jax.numpy as jnp, jax.random as jr, optax
    import node_kit as nk
    folder = sys.argv[1]
    loss = lambda model, batch, key: (jnp.sum(model["w"] ** 2), {})
    nk.fit({"w": jnp.ones(64)}, loss, optax.sgd(0.1), lambda step: None, 4, key=jr.key(0),
           checkpoint_path=f"{folder}/checkpoint.eqx", checkpoint_every=1, progress=False,
           history_path=f"{folder}/history.csv", log_every=1)
    # From here on no file may grow past 200 bytes: the next checkpoint (512 bytes of
    # weights) cannot be written, as on a full disk.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))
    nk.fit({"w": jnp.ones(64)}, loss, optax.sgd(0.1), lambda step: None, 8, key=jr.key(0),
           checkpoint_path=f"{folder}/checkpoint.eqx", checkpoint_every=1, progress=False,
           history_path=f"{folder}/history.csv", log_every=1, resume=True)
""")


def test_a_write_that_hits_a_size_limit_names_the_file_and_leaves_the_last_checkpoint(tmp_path):
    done = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode != 0
    assert re.search(r"WriteError: \[Errno 27\] could not write .*(checkpoint\.eqx|history\.csv).*: "
                     r"File too large\. The file keeps its previous contents \(nothing is "
                     r"half-written\)", done.stderr), done.stderr[-3000:]
    assert not list(tmp_path.glob(".*.tmp"))  # the failed write's temporary file is gone
    state = nk.load_checkpoint(tmp_path / "checkpoint.eqx",
                               nk.Checkpoint({"w": jnp.ones(64, jnp.float32)}, None, 0), {})
    assert state.step == 4  # the last one written before the limit, whole
    rows = nk.read_history(tmp_path / "history.csv")  # whole rows only
    assert [row["step"] for row in rows][:4] == [1, 2, 3, 4]
