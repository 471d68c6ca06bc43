"""Every registered command speaks the protocol: complete `--help`, one name and one help
text per shared flag, renamed flags refused naming the new spelling."""

import dataclasses

import pytest

from node_kit.experiments import _registry
from node_kit.experiments._cli import help_text
from node_kit.experiments._protocol import (
    CommandConfig,
    DataConfig,
    EvaluationConfig,
    ParallelConfig,
    SHARED_CONFIGS,
    TrainConfig,
)

COMMANDS = _registry.commands()
IDS = [command.name for command in COMMANDS]


def test_the_registry_lists_every_command_module():
    """A module of node_kit/experiments that defines a COMMAND is in the registry, and the
    registry names only such modules."""
    import importlib
    import pkgutil

    import node_kit.experiments as package

    public = [m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_")]
    defining = [name for name in public
                if hasattr(importlib.import_module(f"{package.__name__}.{name}"), "COMMAND")]
    assert sorted(_registry.COMMANDS) == sorted(defining)
    for command in COMMANDS:
        assert command.module == f"node_kit.experiments.{command.name}"


@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_help_is_complete_and_names_the_command(command, capsys):
    silent = [f.name for f in dataclasses.fields(command.config)
              if not help_text(f, command.config)]
    assert not silent, f"{command.name}: flags without help text: {silent}"
    with pytest.raises(SystemExit):
        command.parse(["--help"])
    text = capsys.readouterr().out
    assert text.startswith(f"usage: python -m node_kit.experiments.{command.name} ")
    for field in dataclasses.fields(command.config):
        assert "--" + field.name.replace("_", "-") in text
    # The description is the module's whole first paragraph, a full sentence.
    assert command.description.endswith(".") and command.description in " ".join(text.split())


@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_shared_flags_keep_their_name_and_help(command):
    """Every command has the flags of every command; a training command those of
    training; each shared flag keeps the shared help text unless the command says more."""
    assert issubclass(command.config, CommandConfig)
    trains = issubclass(command.config, TrainConfig)
    assert trains == (command.name not in ("memory", "cnf_overhead"))
    if trains:
        assert issubclass(command.config, ParallelConfig)
    assert command.loadable == issubclass(command.config, EvaluationConfig)
    assert command.config().out == f"runs/{command.name}"
    own = {f.name: f for f in dataclasses.fields(command.config)}
    for shared in SHARED_CONFIGS:
        if not issubclass(command.config, shared):
            continue
        for field in dataclasses.fields(shared):
            if field.name in ("lr", "steps", "batch_size") and field.metadata != own[field.name].metadata:
                continue  # a command may say what its learning rate, step, batch mean
            assert help_text(own[field.name], command.config) == field.metadata["help"], (
                command.name, field.name)


def test_one_name_per_meaning():
    """No command keeps a flag that a shared flag replaced (`--batch`, `--meta-batch`), and
    the old spellings are listed as renames."""
    replaced = {"batch", "meta_batch", "history"}
    for command in COMMANDS:
        names = {f.name for f in dataclasses.fields(command.config)}
        assert not names & replaced, (command.name, names & replaced)
    assert {old for c in COMMANDS for old in c.renamed} == {"batch", "steps", "meta_batch",
                                                            "history"}


@pytest.mark.parametrize("name, old, new", [
    ("memory", "--batch", "--batch-size"),
    ("memory", "--steps", "--solver-steps"),
    ("meta", "--meta-batch", "--batch-size"),
    ("meta", "--history", "--lbfgs-history"),
])
def test_renamed_flags_are_refused_naming_the_new_one(name, old, new, capsys):
    command = _registry.get(name)
    for argv in ([old, "3"], [f"{old}=3"]):
        with pytest.raises(SystemExit) as exit_info:
            command.parse(argv)
        assert exit_info.value.code == 2
        assert f"error: {old} was renamed {new} (see CHANGELOG.md); pass {new} instead." in \
            capsys.readouterr().err
    # A run recorded under the old name loads under the new one.
    field = new[2:].replace("-", "_")
    value = [3] if field == "solver_steps" else 3  # as JSON records a tuple
    config = command.config_from_record({old[2:].replace("-", "_"): value})
    assert getattr(config, field) == (tuple(value) if isinstance(value, list) else value)


def test_flags_are_never_abbreviated(capsys):
    with pytest.raises(SystemExit):
        _registry.get("cnf").parse(["--batch", "3"])
    assert "unrecognized arguments: --batch 3" in capsys.readouterr().err


def test_data_dir_only_where_a_dataset_is_read():
    readers = {c.name for c in COMMANDS if issubclass(c.config, DataConfig)}
    assert readers == {"cnf", "timeseries", "deq"}


def test_unknown_and_bad_registrations_are_refused():
    with pytest.raises(ValueError, match=r"'nope' is not a registered command; the commands "
                                         r"are cnf, timeseries"):
        _registry.get("nope")
    with pytest.raises(ValueError, match=r"node_kit._checks defines no COMMAND"):
        _registry.register("node_kit._checks")
    with pytest.raises(ValueError, match=r"'cnf' is one of node_kit's commands"):
        _registry.unregister("cnf")
    with pytest.raises(ValueError, match=r"'nope' is not a registered command"):
        _registry.unregister("nope")
    with pytest.raises(ValueError, match=r"no module named 'no_such_command' can be imported; "
                                         r"put its folder on PYTHONPATH"):
        _registry.register("no_such_command")
    for bad in (3, "runs/my_command.py", ""):
        with pytest.raises(ValueError, match=r"registered by the importable name of its module"):
            _registry.register(bad)


def test_reproduce_refuses_a_results_folder_that_is_not_one(tmp_path, capsys):
    from node_kit.experiments import _reproduce

    with pytest.raises(SystemExit) as exit_info:
        _reproduce.main(["--results", str(tmp_path / "nope")])
    assert exit_info.value.code == 2
    assert "--results must be a folder of committed runs" in capsys.readouterr().err


def test_every_command_has_a_docs_page_in_the_nav():
    """Each command names its page, which shows how to run it; the docs nav holds every
    such page: mkdocs.yml's, plus a "Commands" section for those it lacks."""
    import re
    from pathlib import Path

    root = Path(__file__).parents[1]
    for command in COMMANDS:
        page = root / "docs" / command.docs
        assert page.is_file(), (command.name, command.docs)
        assert f"python -m node_kit.experiments.{command.name}" in page.read_text(), command.name
    listed = re.findall(r":\s*([\w/-]+\.md)\s*$", (root / "mkdocs.yml").read_text(), re.M)
    nav = [{"Home": "index.md"}, {"Pages": [{p: p} for p in listed if p != "index.md"]}]
    assert _registry.nav_with_commands(nav) == nav  # every command's page is listed already
    fewer = [{"Home": "index.md"}, {"Pages": [{p: p} for p in listed if p != "cnf.md"]}]
    assert _registry.nav_with_commands(fewer)[-1] == {"Commands": [{"cnf": "cnf.md"},
                                                                   {"cnf_overhead": "cnf.md"}]}


def test_a_module_that_fails_on_its_own_import_is_not_called_missing(tmp_path, monkeypatch):
    """register() names the missing module only when it is the command's own; an import
    inside the command that fails keeps its own error."""
    (tmp_path / "broken_command.py").write_text("import no_such_dependency_here\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_here"):
        _registry.register("broken_command")


def test_load_run_refuses_a_command_whose_runs_do_not_load(tmp_path):
    import node_kit as nk

    with pytest.raises(ValueError, match=r"`command`: the runs of node_kit.experiments.memory "
                                         r"cannot be loaded .* the runs of node_kit.experiments.cnf"):
        nk.load_run(tmp_path, command="memory")


def test_a_command_run_as_a_script_is_told_to_run_as_a_module(tmp_path, capsys):
    """Its runs would record "__main__", which no other process can load."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).with_name("tiny_command.py")
    done = subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "run")],
                          capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert "error: the command 'tiny' runs as a script; run it as a module" in done.stderr
    assert not (tmp_path / "run").exists()
