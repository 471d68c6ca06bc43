"""Every command's flags say what they do, and its usage line names the command."""

import dataclasses
import importlib

import pytest

from node_kit.experiments._cli import help_text

COMMANDS = ["cnf", "timeseries", "deq", "meta", "memory", "cnf_overhead", "spiral"]


def _config_class(module):
    return getattr(module, "Config", None) or module.MemoryConfig


@pytest.mark.parametrize("name", COMMANDS)
def test_every_flag_has_help_and_the_usage_names_the_command(name, capsys):
    module = importlib.import_module(f"node_kit.experiments.{name}")
    config_cls = _config_class(module)
    silent = [f.name for f in dataclasses.fields(config_cls) if not help_text(f)]
    assert not silent, f"{name}: flags without help text: {silent}"
    with pytest.raises(SystemExit):
        module.parse_args(["--help"])
    text = capsys.readouterr().out
    assert text.startswith(f"usage: python -m node_kit.experiments.{name} ")
    for field in dataclasses.fields(config_cls):
        assert "--" + field.name.replace("_", "-") in text


@pytest.mark.parametrize("name", COMMANDS)
def test_default_output_goes_under_runs(name):
    module = importlib.import_module(f"node_kit.experiments.{name}")
    default = _config_class(module)().out
    assert default == f"runs/{name}", f"{name} writes to {default} by default"
