"""kill -9 at several points of a training command, then `--resume`: the same history.csv,
results.json and final checkpoint as a run that was never interrupted.

Each killed run is a subprocess of `python -m node_kit.experiments.cnf`'s `main` that
sends itself SIGKILL (no `finally`, no flush) at one point:

- `checkpoint`: writing the final checkpoint, its new file on disk but not yet renamed
    into place (so the checkpoint on disk is a step back and the history holds a row
    after it, which the resume drops and computes again);
- `sidecar`: the final checkpoint's weights renamed into place, its sidecar not yet (the
    weights do not match the sidecar: the resume falls back to `checkpoint.eqx.prev`);
- `evaluation`: training finished, the test NLL being computed;
- `picture`: results.json written, the picture not yet.

The uninterrupted run and the resumes run in this process, so they share one compile.
The killed runs share theirs through a persistent compilation cache of their own: the
first compiles the training step while this process runs the uninterrupted one, the
others read it. JAX does not cache a program with host callbacks, so they run with
`EQX_ON_ERROR=nan` (equinox's checks as NaNs, not callbacks); no solve fails in them.
"""

import contextlib
import json
import os
import subprocess
import sys
import textwrap

import pytest
from test_experiment_cnf import TINY

import node_kit as nk
from node_kit import datasets
from node_kit.experiments import cnf as cnf_experiment

# The tiny config of the command's own tests, so this process has compiled it already.
ARGS = TINY + ["--checkpoint-every", "1"]

KILLER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path

    from node_kit.experiments import _run, cnf

    point, argv = sys.argv[1], sys.argv[2:]

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    if point in ("checkpoint", "sidecar"):
        replace, writes = os.replace, []
        name = "checkpoint.eqx" if point == "checkpoint" else "checkpoint.eqx.json"

        def replace_unless_last(src, dst):
            if Path(dst).name == name:
                writes.append(dst)
                if len(writes) == 3:  # steps 1, 2, then the final 3
                    die()
            replace(src, dst)

        os.replace = replace_unless_last
    elif point == "evaluation":
        cnf.summarise = die
    elif point == "picture":
        _run.Run.save_figure = die
    cnf.main(cnf.parse_args(argv))
    print("not killed", flush=True)
""")

POINTS = ("checkpoint", "sidecar", "evaluation", "picture")
TIMING = ("train_seconds_this_run",)


def _rows(path):
    return [{k: v for k, v in row.items() if k != "time"} for row in nk.read_history(path)]


def _results(path):
    results = json.loads(path.read_text())
    config = {k: v for k, v in results.pop("config").items() if k not in ("out", "resume")}
    kept = {k: v for k, v in results.items() if k not in TIMING and k != "provenance"}
    return {**kept, "config": config}


@pytest.mark.slow  # five command runs, four of them killed subprocesses: the slow tier
def test_kill_9_at_any_point_then_resume_gives_the_uninterrupted_run(tmp_path):
    data_dir = str(tmp_path / "tfds")
    datasets.load("8gaussians", "train", data_dir=data_dir)  # built once, before any kill
    args = ARGS + ["--data-dir", data_dir]
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    env = {**os.environ, "JAX_ENABLE_X64": "1",  # as this process (conftest.py)
           "EQX_ON_ERROR": "nan", "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax-cache"),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}

    def kill_at(point):
        return subprocess.Popen(
            [sys.executable, str(script), point, *args, "--out", str(tmp_path / point)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def wait(point, process):
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == -9 and "not killed" not in stdout, (point, stderr[-2000:])

    first = kill_at(POINTS[0])
    cnf_experiment.main(cnf_experiment.parse_args(args + ["--out", str(tmp_path / "straight")]))
    straight = tmp_path / "straight"
    expected_rows = _rows(straight / "history.csv")
    assert [row["step"] for row in expected_rows] == [3]
    wait(POINTS[0], first)
    killed = {point: kill_at(point) for point in POINTS[1:]}
    for point, process in killed.items():
        wait(point, process)
    for point in POINTS:
        out = tmp_path / point
        assert (out / "checkpoint.eqx").exists(), point  # a kill never leaves none behind
        if point == "checkpoint":  # killed mid-write: the write's temporary file is left
            assert list(out.glob(".checkpoint.eqx.*.tmp")), point
        resume = cnf_experiment.parse_args(args + ["--out", str(out), "--resume"])
        # Killed while training, the run left its checkpoint's lock: the resume takes it over.
        takeover = (pytest.warns(UserWarning, match=r"checkpoint\.eqx was locked by process "
                                 r"\d+ .*which is gone") if point in ("checkpoint", "sidecar")
                    else contextlib.nullcontext())
        with takeover:
            if point == "sidecar":
                with pytest.warns(UserWarning, match=r"resuming from the previous checkpoint "
                                  r".*checkpoint\.eqx\.prev \(step 2\): .* do not match the checksum"):
                    cnf_experiment.main(resume)
            else:
                cnf_experiment.main(resume)
        assert _rows(out / "history.csv") == expected_rows, point
        assert _results(out / "results.json") == _results(straight / "results.json"), point
        for name in ("checkpoint.eqx", "checkpoint.eqx.json", "model.eqx", "model.eqx.json"):
            assert (out / name).read_bytes() == (straight / name).read_bytes(), (point, name)
        assert (out / "8gaussians.png").exists(), point
        assert not list(out.rglob(".*.tmp")), point  # the resume cleared the leftovers
        assert not list(out.glob("*.lock")), point  # and released its lock
