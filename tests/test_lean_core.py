"""The core install: `import node_kit` needs none of the `experiments` extra, and using what
needs it without it is an ImportError that prints the install line."""

import subprocess
import sys
import tomllib
from pathlib import Path

import diffrax
import jax.numpy as jnp
import jax.random as jr
import optax

import node_kit as nk

EXTRA = ("tensorflow_datasets", "matplotlib", "tqdm", "pyarrow", "array_record")
INSTALL = 'Install it with: pip install "node_kit[experiments]"'
ROOT = Path(__file__).parents[1]


def _python(code: str) -> subprocess.CompletedProcess:
    """`code` run in a fresh interpreter that imports this checkout's node_kit."""
    return subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_import_node_kit_imports_none_of_the_extra():
    done = _python(
        "import sys, node_kit\n"
        f"print(sorted(m for m in {EXTRA!r} + ('node_kit.datasets', 'node_kit.experiments') "
        "if m in sys.modules))"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def _without(missing: tuple[str, ...], then: str) -> subprocess.CompletedProcess:
    """`then`, run where the packages `missing` cannot be imported (as if not installed)."""
    block = "".join(f"sys.modules[{name!r}] = None\n" for name in missing)
    return _python(f"import sys\n{block}{then}")


def test_datasets_without_the_extra_name_the_install_line():
    done = _without(("tensorflow_datasets",), "import node_kit.datasets")
    assert done.returncode != 0
    assert (
        "ImportError: node_kit.datasets needs the experiments extra (tensorflow-datasets, "
        "array_record, importlib_resources); not installed here: tensorflow-datasets. "
        f"{INSTALL}"
    ) in done.stderr


def test_a_command_without_the_extra_names_the_install_line():
    # As `python -m node_kit.experiments.cnf --help` runs it: the package is imported first.
    done = _without(
        ("matplotlib", "tqdm"),
        "import runpy; sys.argv = ['cnf', '--help']\n"
        "runpy.run_module('node_kit.experiments.cnf', run_name='__main__', alter_sys=True)",
    )
    assert done.returncode != 0
    assert "usage" not in done.stdout
    assert (
        "ImportError: node_kit.experiments needs the experiments extra (tensorflow-datasets, "
        "array_record, importlib_resources, matplotlib, tqdm); not installed here: "
        f"matplotlib, tqdm. {INSTALL}"
    ) in done.stderr


def test_fit_shows_progress_without_tqdm(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # as on a core install
    model = nk.NeuralODE(nk.MLPField(2, 4, 1, key=jr.key(0)),
                         stepsize_controller=diffrax.ConstantStepSize(), dt0=0.5, max_steps=1)

    def loss(model, y0s, key):
        return jnp.mean(model.batched(jnp.array([0.0, 0.5]), y0s) ** 2), {}

    nk.fit(model, loss, optax.sgd(1e-2), lambda step: jnp.ones((2, 2)), 3, key=jr.key(1),
           log_every=1)  # progress=True is the default
    err = capsys.readouterr().err
    assert err.startswith("step 3/3, loss ") and err.endswith(" steps/s\n")


def test_the_core_dependencies_hold_none_of_the_extra_and_test_brings_it():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extra = {"matplotlib", "tqdm", "tensorflow-datasets", "array_record", "importlib_resources"}
    names = {d.split(">")[0].split("=")[0].split("[")[0] for d in project["dependencies"]}
    assert names == {"jax", "jaxlib", "equinox", "diffrax", "optax", "optimistix", "lineax",
                     "jaxtyping", "numpy"}
    optional = project["optional-dependencies"]
    assert {d.split(">")[0] for d in optional["experiments"]} == extra
    # test -> data -> experiments, hopper and uea (each a data source plus experiments).
    assert "node_kit[data]" in optional["test"]
    assert "node_kit[experiments,hopper,uea,mnist]" in optional["data"]
    assert all("node_kit[experiments]" in optional[name] for name in ("hopper", "uea", "mnist"))
