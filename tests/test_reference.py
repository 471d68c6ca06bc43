"""The short reference runs of the commands still give the numbers of experiments/reference.json (its `source` names the commit)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from node_kit.experiments import (
    _compile_flags as compile_flags,
    _reference_check as check,
    _registry,
    _reports as reports,
    _reproduce as reproduce,
)

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_commands_reproduce_the_reference_numbers(tmp_path, monkeypatch):
    # The reference was recorded at XLA's default compile options. The commands run in
    # subprocesses, which would inherit the test run's faster-compiling ones (conftest.py):
    # they change the last bits, and 30 steps of training grow those (a solve took 5 steps
    # where the reference took 4). So the children get XLA_FLAGS without them.
    fast = set(os.environ.get("NODE_KIT_TEST_FAST_COMPILE_FLAGS", "").split())
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if f not in fast]
    monkeypatch.setenv("XLA_FLAGS", " ".join(flags))
    assert check.main(["--data-dir", str(tmp_path / "data")]) == 0


def test_reproduce_rebuilds_every_committed_config_from_its_flags():
    """experiments/reproduce.py re-runs each committed run with flags that parse back to the
    recorded config (all but where it writes and whether it resumed)."""
    import dataclasses

    runs = reproduce.committed_runs()
    assert len(runs) > 40
    for run in runs:
        parsed = run.command.parse(run.flags())
        rebuilt = json.loads(json.dumps(dataclasses.asdict(parsed)))
        for name, value in run.recorded_config().items():
            if name not in reproduce.NOT_DEFINING:
                assert rebuilt[name] == value, (run.name, name, rebuilt[name], value)
        run.headline()  # every run has its headline metrics


@pytest.mark.parametrize("run", ["cnf/8gaussians", "timeseries/periodic_latent_ode_interp"])
def test_committed_default_runs_load_without_training(run):
    """The default runs' model.eqx is committed: nk.load_run gives the model and the config
    their results.json records."""
    import dataclasses

    import equinox as eqx

    import node_kit as nk

    folder = Path(__file__).parents[1] / "experiments" / "results" / run
    model, config = nk.load_run(folder)
    recorded = json.loads((folder / "results.json").read_text())["config"]
    loaded = json.loads(json.dumps(dataclasses.asdict(config)))
    assert {k: loaded[k] for k in recorded if k not in ("out", "resume")} == {
        k: v for k, v in recorded.items() if k not in ("out", "resume")}
    assert sum(x.size for x in jax_leaves(eqx.filter(model, eqx.is_inexact_array))) > 1000


def jax_leaves(tree):
    import jax

    return jax.tree_util.tree_leaves(tree)


def test_reproduce_replaces_only_clean_reruns_that_differ_or_lack_provenance(tmp_path):
    """`reproduce.py --replace` installs a re-run over its committed folder when the values
    differ or the committed file records no commit, and never from uncommitted code."""
    cnf = _registry.get("cnf")
    old = {"config": {}, "test_nll": 1.0, "provenance": {"git_commit": "abc"}}
    run = reproduce.Committed("cnf/x", cnf, tmp_path / "results.json", old)
    bare = reproduce.Committed("cnf/x", cnf, tmp_path / "results.json", {"config": {}})
    clean = {"status": "differs", "code_commit": "def", "code_dirty": False}
    assert reproduce.replaceable(run, clean) == "differs"
    assert reproduce.replaceable(run, clean | {"code_dirty": True}) == ""
    assert reproduce.replaceable(run, clean | {"status": "reproduced"}) == ""
    assert reproduce.replaceable(bare, clean | {"status": "reproduced"}) == "no provenance"
    assert reproduce.replaceable(run, clean | {"status": "failed"}) == ""
    entry = clean | {"status": "replaced", "replaced_because": "differs", "rtol": 1e-4,
                     "date": "2026-12-02", "differences": ["test_nll: committed 1.0, now 1.1"]}
    line = reproduce.table([run], {"cnf/x": entry}).splitlines()[-1]
    assert line.startswith("| cnf/x | replaced |") and "committed 1.0, now 1.1" in line


def test_reproduce_pins_each_rerun_to_the_cores_its_run_was_made_on(tmp_path):
    """The cores come from the committed file (one where it does not say); the child runs on
    the first that many of this process's cores; a run needing more is refused by name."""
    cnf = _registry.get("cnf")
    made_on_one = reproduce.Committed("cnf/x", cnf, tmp_path / "r.json", {"config": {}})
    made_on_64 = reproduce.Committed("cnf/y", cnf, tmp_path / "r.json",
                                     {"config": {}, "environment": {"cpu_cores": 64}})
    assert reproduce.cores_of(made_on_one) == reproduce.DEFAULT_CORES == 1
    assert reproduce.cores_of(made_on_64) == 64
    own = reproduce.own_cores()
    child = reproduce.run_on_cores(
        [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"], 1, "x",
        capture_output=True, text=True, check=True)
    assert child.stdout.strip() == str(own[:1])
    assert reproduce.own_cores() == own  # this process is unpinned again
    if len(own) < 64:
        with pytest.raises(ValueError, match=r"cnf/y was made on 64 CPU cores and this process "
                                             rf"may use {len(own)} .* at least 64"):
            reproduce.rerun(made_on_64, 1e-4)
    with pytest.raises(ValueError, match="to run x on must be at least 1; got 0"):
        reproduce.run_on_cores([sys.executable, "-c", "pass"], 0, "x")
    entry = {"status": "reproduced", "rtol": 1e-4, "date": "2026-12-02", "cores": 1,
             "code_commit": "abc", "differences": []}
    assert reproduce.table([made_on_one], {"cnf/x": entry}).splitlines()[-1].startswith(
        "| cnf/x | reproduced | 1 |")


@pytest.mark.slow  # a whole command end to end: the slow tier (.ci/run runs it)
def test_test_time_profiles_a_real_run_and_tabulates_it(tmp_path):
    """experiments/test_time.py: its plugin sees every test of a real (small) pytest run, and
    the summary adds each compile phase up per file and per function."""
    out = tmp_path / "test_time.json"
    subprocess.run([sys.executable, "experiments/test_time.py", "--runs", "cold", "--workers",
                    "1", "--out", str(out), "--", "tests/test_checks.py"],
                   cwd=ROOT, check=True, capture_output=True, text=True)
    run = json.loads(out.read_text())["runs"]["cold"]
    assert run["exit_code"] == 0 and run["passed"] > 0
    assert run["totals"]["tests"] == run["passed"]
    assert [f["file"] for f in run["files"]] == ["tests/test_checks.py"]
    records = [
        ["tests/a.py::t1", "jaxpr_trace_duration", "f", 1.0],
        ["tests/a.py::t1", "backend_compile_duration", "jit(f)", 4.0],
        ["tests/a.py::t1", "cache_misses", None, 0.0],
        ["tests/b.py::t2", "backend_compile_duration", "jit(f)", 2.0],
        ["tests/b.py::t2", "backend_compile_duration", "jit(g)", 0.5],
        ["tests/b.py::t2", "cache_hits", None, 0.0],
        ["tests/a.py::t1", "test_wall", None, 6.0],
        ["tests/b.py::t2", "test_wall", None, 9.0],
        [None, "backend_compile_duration", "jit(h)", 0.25],
    ]
    summary = reports.summarise_profile(records)
    assert summary["totals"] == {"trace_s": 1.0, "compile_s": 6.8, "compiles": 4,
                                 "cache_misses": 1, "cache_hits": 1, "tests": 2}
    assert [f["file"] for f in summary["files"]] == ["tests/b.py", "tests/a.py", "(outside a test)"]
    assert summary["functions"][0] == {"function": "jit(f)", "compiles": 2, "compile_s": 6.0}
    # The table names the largest functions (here the first only) and adds up the rest.
    cold = {**run, **summary, "functions": summary["functions"][:1]}
    result = {"command": "python experiments/test_time.py", "runs": {"cold": cold},
              "provenance": {"date": "2026-12-02", "git_commit": "0" * 40, "git_dirty": False,
                             "cpus": 2}}
    printed = reports.suite_time_table(result)
    assert "| `jit(f)` | 2 | 6 |" in printed
    assert "| the other 2 functions (eager operations, initialisers, checks, ...) | 2 | 1 |" in printed


def test_check_reference_runs_on_the_cores_its_reference_was_recorded_on(tmp_path, monkeypatch):
    """check_reference.py passes the reference's `source.cpu_cores` to every run (`--cores`
    overrides it), and a machine with fewer cores is told so instead of comparing."""
    reference = tmp_path / "reference.json"
    reference.write_text('{"source": {"cpu_cores": 1}, "checks": {"cnf": {}, "timeseries": {}}}')
    monkeypatch.setattr(check, "REFERENCE", reference)
    seen = []

    def fake_run(command, argv, out, data_dir, cores):
        seen.append(cores)
        check.run_on_cores([sys.executable, "-c", "pass"], cores, command)  # refuses too many
        return {"argv": argv, "history": [], "metrics": {}}

    monkeypatch.setattr(check, "run", fake_run)
    monkeypatch.setattr(check, "differences", lambda reference, got, rtol: [])
    assert check.main([]) == 0 and seen == [1, 1]
    reference.write_text('{"source": {"cpu_cores": 4096}, "checks": {"cnf": {}, "timeseries": {}}}')
    seen.clear()
    assert check.main([]) == 1 and seen == [4096]  # not compared: this machine has fewer
    seen.clear()
    assert check.main(["--cores", "1"]) == 0 and seen == [1, 1]


def test_compile_flags_summary_medians_ratios_and_break_even():
    """experiments/compile_flags.py: medians over the rounds, the ratios, and the run
    length below which the faster-compiling flags finish first."""
    def measured(compile_s, step_s, value):
        row = {"compile_seconds": compile_s, "xla_compile_seconds": compile_s / 2,
               "median_step_seconds": step_s, "value": value, "num_steps": 7}
        return {"backend": "cpu", "rows": {"w": row}}

    rounds = [{"defaults": measured(c, 0.01, 2.0), "fast": measured(c / 4, 0.03, 2.0 + 2e-7)}
              for c in (4.0, 6.0, 5.0)]
    entry = compile_flags.summarise(rounds)["w"]
    assert entry["defaults"]["compile_seconds"] == 5.0
    assert entry["defaults"]["compile_seconds_each"] == [4.0, 6.0, 5.0]
    assert entry["compile_speedup"] == pytest.approx(4.0)
    assert entry["step_slowdown"] == pytest.approx(3.0)
    # 3.75 s of compile saved, 0.02 s lost per step: the fast flags win below 187.5 steps.
    assert entry["break_even_steps"] == pytest.approx(187.5)
    assert entry["value_relative_difference"] == pytest.approx(1e-7)
    for r in rounds:
        r["fast"]["rows"]["w"]["median_step_seconds"] = 0.005
    assert compile_flags.summarise(rounds)["w"]["break_even_steps"] is None
    printed = compile_flags.table({"workloads": {"w": entry}, "rounds": 3, "steps": 20,
                                   "cpu_cores": 1, "backend": "cpu", "x64": False})
    assert "| `w` | 5.00 / 1.25 | 4.0x | 4.0x | 10.00 / 30.00 | 3.0x | 188 |" in printed
