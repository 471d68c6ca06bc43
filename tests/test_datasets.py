"""Tests for node_kit.datasets: builders, ground-truth densities, preprocessing, batching."""

import dataclasses
import math
import os
import pathlib
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

import node_kit.datasets as nkd
from node_kit.datasets import _load

SMALL = (300, 60, 40)


def _sorted_rows(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a).reshape(len(a), -1)
    return a[np.lexsort(a.T[::-1])]


@pytest.fixture(scope="module")
def two_dirs(tmp_path_factory):
    return tmp_path_factory.mktemp("first"), tmp_path_factory.mktemp("second")


# --- Builders: completeness, determinism, seeds ------------------------------------------


@pytest.mark.parametrize("name", nkd.TOY2D_NAMES)
def test_toy_splits_complete_deterministic_and_seeded(name, two_dirs):
    first, second = two_dirs
    splits = {s: nkd.load(name, s, data_dir=first, split_sizes=SMALL) for s in nkd.SPLITS}
    for split, size in zip(nkd.SPLITS, SMALL):
        assert set(splits[split]) == {"x"}
        x = splits[split]["x"]
        assert x.shape == (size, 2) and x.dtype == np.float32
        assert np.all(np.isfinite(x))
    # Every generated row is stored exactly once (no silently dropped or duplicated rows).
    stored = np.concatenate([splits[s]["x"] for s in nkd.SPLITS])
    generated = nkd.sample_toy2d(name, sum(SMALL), seed=0).astype(np.float32)
    np.testing.assert_array_equal(_sorted_rows(stored), _sorted_rows(generated))
    for split in nkd.SPLITS:
        again = nkd.load(name, split, data_dir=second, split_sizes=SMALL)
        np.testing.assert_array_equal(again["x"], splits[split]["x"])
    other = nkd.load(name, "train", data_dir=first, seed=1, split_sizes=SMALL)["x"]
    assert not np.array_equal(_sorted_rows(other), _sorted_rows(splits["train"]["x"]))


def test_digits_splits_complete_deterministic_and_seeded(two_dirs):
    from sklearn.datasets import load_digits

    first, second = two_dirs
    splits = {s: nkd.load("digits", s, data_dir=first) for s in nkd.SPLITS}
    for split, size in zip(nkd.SPLITS, nkd.DIGITS_SPLIT_SIZES):
        x, label = splits[split]["x"], splits[split]["label"]
        assert x.shape == (size, 64) and x.dtype == np.uint8
        assert label.shape == (size,) and label.dtype == np.int64
        assert x.min() >= 0 and x.max() <= 16 and set(np.unique(label)) <= set(range(10))
    assert sum(nkd.DIGITS_SPLIT_SIZES) == 1797
    bunch = load_digits()
    expected = np.column_stack([bunch.data, bunch.target]).astype(np.int64)
    stored = np.concatenate(
        [np.column_stack([splits[s]["x"], splits[s]["label"]]) for s in nkd.SPLITS]
    ).astype(np.int64)
    np.testing.assert_array_equal(_sorted_rows(stored), _sorted_rows(expected))
    again = nkd.load("digits", "test", data_dir=second)
    np.testing.assert_array_equal(again["x"], splits["test"]["x"])
    other = nkd.load("digits", "test", data_dir=first, seed=1)["x"]
    assert not np.array_equal(_sorted_rows(other), _sorted_rows(splits["test"]["x"]))


def test_build_makes_no_network_connection(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("node_kit.datasets tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    x = nkd.load("pinwheel", "validation", data_dir=tmp_path, split_sizes=(20, 15, 5))["x"]
    assert x.shape == (15, 2)
    assert nkd.load("digits", "validation", data_dir=tmp_path)["x"].shape == (270, 64)


def test_data_dir_default_and_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(nkd.DATA_DIR_ENV, raising=False)
    default = nkd.resolve_data_dir(None)
    assert default.endswith("/.cache/node_kit/tensorflow_datasets") and "~" not in default
    monkeypatch.setenv(nkd.DATA_DIR_ENV, str(tmp_path))
    assert nkd.resolve_data_dir(None) == str(tmp_path)
    nkd.load("moons", "test", split_sizes=(10, 10, 10))
    assert (tmp_path / "node_kit_toy2d" / "moons-seed0-10-10-10").is_dir()


def test_names_and_available(tmp_path):
    assert set(nkd.TOY2D_NAMES) | {"digits", "mnist_5k", *nkd.TIME_SERIES_NAMES} == set(nkd.names())
    assert set(nkd.names()) <= set(nkd.available(data_dir=tmp_path))


def test_importing_the_package_does_not_import_tfds():
    code = "import sys, node_kit.datasets; print('tensorflow_datasets' in sys.modules)"
    repo = pathlib.Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=repo, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_stale_split_size_is_an_error(tmp_path):
    nkd.load("rings", "train", data_dir=tmp_path, split_sizes=(8, 4, 4))
    builder = _load._node_kit_builder("rings", 0, (8, 4, 4), str(tmp_path))
    with pytest.raises(RuntimeError, match="holds 8 examples but its config says 9"):
        _load._read_split(builder, "train", expected=9)


def test_decoded_arrays_are_kept_and_used_only_while_the_tfds_files_are_unchanged(
        tmp_path, monkeypatch):
    first = nkd.load("rings", "train", data_dir=tmp_path, split_sizes=(8, 4, 4))
    builder = _load._node_kit_builder("rings", 0, (8, 4, 4), str(tmp_path))
    kept = pathlib.Path(_load._kept_arrays_path(builder, "train"))
    assert kept.exists() and not list(kept.parent.glob("*.partial"))
    decodes = []
    stack = _load._stack

    def counted(records):  # called once per decoded split, then once per feature
        if isinstance(records[0], dict):
            decodes.append(1)
        return stack(records)

    monkeypatch.setattr(_load, "_stack", counted)

    def load_again():
        again = nkd.load("rings", "train", data_dir=tmp_path, split_sizes=(8, 4, 4))
        assert again.keys() == first.keys()
        for key in first:
            assert again[key].dtype == first[key].dtype and np.array_equal(again[key], first[key])

    load_again()
    assert decodes == []  # read from the kept arrays, not decoded
    # A rewritten TFDS file (new modification time) is decoded again, and kept anew.
    record = next(kept.parent.glob("*-train.array_record*"))
    stat = record.stat()
    os.utime(record, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    load_again()
    assert decodes == [1]
    load_again()
    assert decodes == [1]
    # A damaged kept file is decoded again; so is one that cannot be written.
    kept.write_bytes(b"not an npz")
    load_again()
    assert decodes == [1, 1]
    kept.unlink()
    monkeypatch.setattr(_load.np, "savez", lambda *a, **k: (_ for _ in ()).throw(OSError("read-only")))
    load_again()
    assert decodes == [1, 1, 1] and not kept.exists()
    assert not list(kept.parent.glob("*.partial"))


def _sine_spec(name: str = "tiny_sine") -> nkd.DatasetSpec:
    def generate(sizes, seed):
        phase = np.random.default_rng(seed).uniform(0, 2 * np.pi, (sum(sizes), 1))
        t = np.tile(np.array([0.0, 0.5, 1.0], np.float32), (sum(sizes), 1))
        x = np.sin(2 * np.pi * t + phase).astype(np.float32)[..., None]
        return nkd.Generated(nkd.split_rows({"t": t, "x": x}, sizes), metadata={"points": 3})

    return nkd.DatasetSpec(
        name=name,
        default_sizes=(4, 2, 2),
        features={"t": nkd.Feature((3,), np.float32), "x": nkd.Feature((3, 1), np.float32)},
        generate=generate,
        description="Sines at three times.",
        metadata_keys=("points",),
        series=nkd.SeriesPreparation(),
    )


def test_a_registered_spec_loads_through_the_public_api(tmp_path):
    spec = _sine_spec()
    with nkd.register(spec):
        assert "tiny_sine" in nkd.names() and nkd.get_spec("tiny_sine") is spec
        assert "tiny_sine" in nkd.available(data_dir=tmp_path)
        splits = {s: nkd.load("tiny_sine", s, data_dir=tmp_path, seed=3) for s in nkd.SPLITS}
        assert nkd.metadata("tiny_sine", data_dir=tmp_path, seed=3) == {"points": 3}
        with pytest.raises(ValueError, match="'tiny_sine' is already registered"):
            nkd.register(_sine_spec())
    assert "tiny_sine" not in nkd.names()
    assert (tmp_path / "node_kit_tiny_sine" / "seed3-4-2-2" / "1.0.0").is_dir()
    expected = spec.generate((4, 2, 2), 3).splits
    for split, size in zip(nkd.SPLITS, (4, 2, 2)):
        t, x = splits[split]["t"], splits[split]["x"]
        assert t.shape == (size, 3) and x.shape == (size, 3, 1) and x.dtype == np.float32
        np.testing.assert_array_equal(_sorted_rows(x), _sorted_rows(expected[split]["x"]))
    np.testing.assert_array_equal(splits["train"]["t"][0], [0.0, 0.5, 1.0])
    registration = nkd.register(spec)
    registration.unregister()
    assert "tiny_sine" not in nkd.names()


def test_a_generator_that_breaks_its_spec_is_an_error(tmp_path):
    spec = _sine_spec("bad_sine")
    wrong = dataclasses.replace(spec, features={"x": nkd.Feature((4, 1), np.float32)})
    with nkd.register(wrong):
        with pytest.raises(RuntimeError, match=r"'bad_sine' returned features \['t', 'x'\]"):
            nkd.load("bad_sine", "train", data_dir=tmp_path)


def test_no_spec_is_registered_twice_and_every_spec_is_complete():
    specs = nkd.specs()
    assert len({spec.name for spec in specs}) == len(specs) == len(nkd.names())
    for spec in specs:
        assert spec.split_sizes(None) == spec.default_sizes
        assert spec.builder_name.startswith("node_kit_") and spec.description
    assert nkd.get_spec("japanese_vowels").series.standardise
    hopper = nkd.get_spec("hopper").series
    assert hopper.unit_times and not hopper.standardise
    with pytest.raises(ValueError, match="`name` must be one of"):
        nkd.get_spec("nope")


# --- Errors: names, arguments, stock TFDS, scikit-learn ----------------------------------


def test_unknown_name_lists_known_datasets(tmp_path):
    with pytest.raises(ValueError, match=r"one of \[.*'8gaussians'.*'digits'.*\]"):
        nkd.load("no_such_dataset", "train", data_dir=tmp_path)
    with pytest.raises(ValueError, match="Did you mean '8gaussians'"):
        nkd.load("8gausians", "train", data_dir=tmp_path)


def test_stock_tfds_name_fails_fast_without_download(tmp_path):
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError, match=r"network download.*data_dir"):
        nkd.load("mnist", "train", data_dir=tmp_path)
    assert time.perf_counter() - start < 5.0
    assert not (tmp_path / "mnist").exists()


class NodeKitTestPrepared(tfds.core.GeneratorBasedBuilder):
    """A stand-in for a stock TFDS dataset that someone prepared as array_record."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        features = {"image": tfds.features.Tensor(shape=(3, 2), dtype=np.int64)}
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(7):
            yield i, {"image": np.full((3, 2), i, dtype=np.int64)}


def test_prepared_tfds_dataset_loads(tmp_path):
    with pytest.raises(FileNotFoundError, match="not prepared"):
        nkd.load("node_kit_test_prepared", "train", data_dir=tmp_path)
    builder = NodeKitTestPrepared(data_dir=str(tmp_path))
    builder.download_and_prepare(file_format="array_record")
    images = nkd.load("node_kit_test_prepared", "train", data_dir=tmp_path)["image"]
    assert images.shape == (7, 3, 2)
    assert sorted(images[:, 0, 0]) == list(range(7))
    assert "node_kit_test_prepared" in nkd.available(data_dir=tmp_path)
    with pytest.raises(ValueError, match="apply only to node_kit datasets"):
        nkd.load("node_kit_test_prepared", "train", data_dir=tmp_path, seed=1)


def test_bad_arguments_raise(tmp_path):
    with pytest.raises(ValueError, match="`split` must be one of"):
        nkd.load("moons", "training", data_dir=tmp_path)
    with pytest.raises(ValueError, match="`split_sizes` must be three positive ints"):
        nkd.load("moons", "train", data_dir=tmp_path, split_sizes=(10, 0, 5))
    with pytest.raises(ValueError, match="must add up to its 1797 images"):
        nkd.load("digits", "train", data_dir=tmp_path, split_sizes=(100, 10, 10))
    with pytest.raises(ValueError, match="`seed` must be a non-negative int"):
        nkd.load("moons", "train", data_dir=tmp_path, seed=-1)
    with pytest.raises(ValueError, match="`name` must be a string"):
        nkd.load(3, "train", data_dir=tmp_path)
    with pytest.raises(ValueError, match="`num_samples` must be at least 1"):
        nkd.sample_toy2d("moons", 0, seed=0)


def test_missing_sklearn_gives_install_hint(tmp_path, monkeypatch):
    nkd.load("digits", "train", data_dir=tmp_path / "built")
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r'pip install "node_kit\[data\]"'):
        nkd.load("digits", "train", data_dir=tmp_path / "fresh")
    # Once built, the digits load without scikit-learn.
    assert nkd.load("digits", "train", data_dir=tmp_path / "built")["x"].shape == (1257, 64)


# --- Ground truth ----------------------------------------------------------------------------


def _midpoint_grid(low: float, high: float, cells: int) -> tuple[np.ndarray, float]:
    width = (high - low) / cells
    centres = low + width * (np.arange(cells) + 0.5)
    return np.stack(np.meshgrid(centres, centres), axis=-1), width**2


@pytest.mark.parametrize("name, tol", [("8gaussians", 1e-6), ("checkerboard", 1e-9)])
def test_density_integrates_to_one(name, tol):
    grid, cell_area = _midpoint_grid(-5.0, 5.0, 500)
    mass = np.sum(np.exp(nkd.log_density(name, grid))) * cell_area
    assert abs(mass - 1.0) < tol


@pytest.mark.parametrize("name", nkd.ANALYTIC_NAMES)
def test_density_numpy_jax_and_jit_agree(name):
    x = nkd.sample_toy2d(name, 64, seed=3)
    expected = nkd.log_density(name, x)
    assert isinstance(expected, np.ndarray) and expected.shape == (64,)
    from_jax = nkd.log_density(name, jnp.asarray(x))
    jitted = jax.jit(lambda y: nkd.log_density(name, y))(jnp.asarray(x))
    np.testing.assert_allclose(from_jax, expected, rtol=1e-12)
    np.testing.assert_allclose(jitted, expected, rtol=1e-12)
    assert np.all(np.isfinite(expected))


def test_checkerboard_support_is_the_black_squares():
    points = np.array([[1.0, 1.0], [3.0, 1.0], [-3.0, -3.0], [5.0, 1.0], [2.0, 0.0], [4.0, 4.0]])
    inside = np.isfinite(nkd.log_density("checkerboard", points))
    np.testing.assert_array_equal(inside, [True, False, True, False, True, True])
    stored = nkd.sample_toy2d("checkerboard", 20_000, seed=1).astype(np.float32)
    assert np.all(np.isfinite(nkd.log_density("checkerboard", stored)))


def test_samples_are_likelier_than_a_shifted_cloud():
    x = nkd.sample_toy2d("8gaussians", 5000, seed=0)
    on_data = np.mean(nkd.log_density("8gaussians", x))
    shifted = np.mean(nkd.log_density("8gaussians", x + np.array([1.0, 0.5])))
    assert on_data > shifted + 1.0


def test_checkerboard_entropy_is_log_area():
    estimate, standard_error = nkd.true_entropy("checkerboard", num_samples=20_000, seed=0)
    log_area = math.log(8 * 2.0**2)  # 8 black squares of side 2.
    assert math.isclose(nkd.checkerboard_area(), 32.0)
    assert abs(estimate - log_area) <= 4 * standard_error + 1e-12


def test_eight_gaussians_entropy_matches_quadrature():
    estimate, standard_error = nkd.true_entropy("8gaussians", num_samples=50_000, seed=0)
    grid, cell_area = _midpoint_grid(-6.0, 6.0, 1200)
    log_p = nkd.log_density("8gaussians", grid)
    quadrature = -np.sum(np.exp(log_p) * log_p) * cell_area
    assert 0.0 < standard_error < 0.01
    assert abs(estimate - quadrature) <= 4 * standard_error


def test_no_analytic_density_is_a_clear_error():
    with pytest.raises(ValueError, match="got name='moons', a toy without one"):
        nkd.log_density("moons", np.zeros((3, 2)))
    with pytest.raises(ValueError, match="got name='swissroll', a toy without one"):
        nkd.true_entropy("swissroll", num_samples=10, seed=0)
    with pytest.raises(ValueError, match=r"`x` must have shape \(..., 2\)"):
        nkd.log_density("8gaussians", np.zeros((3, 3)))


# --- Preprocessing ---------------------------------------------------------------------------


@pytest.mark.parametrize("alpha, levels", [(0.05, 17), (1e-6, 17), (1e-6, 256)])
def test_preprocess_log_det_matches_jacobian(getkey, alpha, levels):
    x = jnp.array([0, 16, 3, 8, 12, levels - 1], dtype=jnp.int32)
    key = getkey()
    y, log_det = nkd.preprocess(x, key=key, alpha=alpha, num_levels=levels)
    v = nkd.dequantize(x, key=key, num_levels=levels) * levels  # The same noise, in pixels.

    def pixels_to_logit(v):
        return nkd.logit_transform(v / levels, alpha=alpha)[0]

    np.testing.assert_allclose(pixels_to_logit(v), y, rtol=1e-12)
    sign, expected = jnp.linalg.slogdet(jax.jacobian(pixels_to_logit)(v))
    assert sign != 0
    np.testing.assert_allclose(log_det, expected, rtol=1e-10)


def test_preprocess_is_batched_and_jittable(getkey):
    x = jnp.arange(2 * 64).reshape(2, 64) % 17
    y, log_det = jax.jit(lambda x, k: nkd.preprocess(x, key=k))(x, getkey())
    assert y.shape == (2, 64) and log_det.shape == (2,)
    assert jnp.all(jnp.isfinite(y)) and jnp.all(jnp.isfinite(log_det))


def test_dequantize_range_and_inverse(getkey):
    x = jnp.arange(17)
    u = nkd.dequantize(x, key=getkey())
    assert jnp.all((u >= 0) & (u < 1))
    np.testing.assert_array_equal(jnp.floor(u * 17), x)
    y, _ = nkd.logit_transform(u)
    np.testing.assert_allclose(nkd.inverse_logit_transform(y), u, atol=1e-12)


def test_bits_per_dim_of_the_logistic_model_is_log2_levels(getkey):
    # With alpha = 0, a standard-logistic model in logit space is the uniform density on the
    # pixel cube, whose bits/dim is log2(17) whatever the data.
    x = jax.random.randint(getkey(), (4, 64), 0, 17)
    y, log_det = nkd.preprocess(x, key=getkey(), alpha=0.0)
    nll_logit = jnp.sum(jax.nn.softplus(y) + jax.nn.softplus(-y), axis=-1)
    bpd = nkd.bits_per_dim(nll_logit, log_det, dim=64)
    np.testing.assert_allclose(bpd, math.log2(17), rtol=1e-10)


def test_bits_per_dim_is_ffjords(getkey):
    """FFJORD's bits/dim, by hand: x in [0, 1]^D is (pixels + u) / 256, log p(x) = log N(y) +
    log|dy/dx| with y = logit(alpha + (1 - 2 alpha) x), and bits/dim = -(log p(x) / D -
    log 256) / log 2. node_kit's bits_per_dim of the same draw gives the same number."""
    pixels = np.array([[0, 255, 17, 128], [3, 3, 200, 64]])
    key, alpha = getkey(), 1e-6
    u = np.asarray(jax.random.uniform(key, pixels.shape, dtype=jnp.float64))
    x = (pixels + u) / 256
    s = alpha + (1 - 2 * alpha) * x
    y = np.log(s) - np.log1p(-s)
    log_det_x = np.sum(np.log(1 - 2 * alpha) - np.log(s) - np.log1p(-s), axis=1)
    log_p_x = -0.5 * np.sum(y**2 + np.log(2 * np.pi), axis=1) + log_det_x
    ffjord = -(log_p_x / 4 - np.log(256)) / np.log(2)
    ours_y, log_det = nkd.preprocess(pixels, key=key, num_levels=256, alpha=alpha)
    np.testing.assert_allclose(ours_y, y, rtol=1e-12)
    nll_y = 0.5 * jnp.sum(ours_y**2 + jnp.log(2 * jnp.pi), axis=1)
    np.testing.assert_allclose(nkd.bits_per_dim(nll_y, log_det, dim=4), ffjord, rtol=1e-12)


def test_mnist_5k_and_its_downsampling(tmp_path):
    x = nkd.load("mnist_5k", "train", data_dir=str(tmp_path))
    assert x["x"].shape == (4000, 784) and x["x"].dtype == np.uint8 and x["x"].max() == 255
    test = nkd.load_images("mnist_5k", "test", data_dir=str(tmp_path))
    assert test.shape == (500, 784)
    labels = np.concatenate([nkd.load("mnist_5k", s, data_dir=str(tmp_path))["label"]
                             for s in ("train", "validation", "test")])
    np.testing.assert_array_equal(np.bincount(labels), [500] * 10)  # all 5000, once each
    image = x["x"][:3].reshape(3, 28, 28).astype(np.int64)
    small = nkd.downsample(x["x"][:3], (1, 28, 28), 2).reshape(3, 14, 14)
    assert small[1, 5, 6] == (image[1, 10, 12] + image[1, 10, 13] + image[1, 11, 12]
                              + image[1, 11, 13]) // 4
    assert nkd.IMAGE_FORMATS["mnist_5k"].downsampled(2).shape == (1, 14, 14)


def _prepare_fake_mnist(data_dir, monkeypatch, train, test):
    """TFDS's own MNIST builder, prepared as array_record from local arrays: its download
    is replaced by the given images, and its PNG encoding (TensorFlow's) by PIL's."""
    import io

    import tensorflow_datasets as tfds
    from PIL import Image

    def encode_png(self, image):
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(image)[..., 0]).save(buffer, format="PNG")
        return buffer.getvalue()

    def split_generators(self, dl_manager):
        return {"train": self._generate_examples(*train), "test": self._generate_examples(*test)}

    def generate_examples(self, images, labels):
        for i, (image, label) in enumerate(zip(images, labels)):
            yield i, {"image": image.reshape(28, 28, 1), "label": int(label)}

    cls = tfds.builder_cls("mnist")
    monkeypatch.setattr(tfds.features.Image, "encode_example", encode_png)
    monkeypatch.setattr(cls, "_split_generators", split_generators)
    monkeypatch.setattr(cls, "_generate_examples", generate_examples)
    cls(data_dir=data_dir, file_format="array_record").download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))


@pytest.mark.slow  # builds a TFDS dataset; the default tier ran 6:01 with it
def test_tfds_mnist_is_read_when_prepared(tmp_path, monkeypatch):
    """The `mnist` path on a TFDS MNIST prepared here from mnist_5k's images: the test split
    is TFDS's, train and validation split TFDS's train by a seeded twelfth; without it, the
    error names the commands. The command's data loading reads it the same way."""
    from node_kit.experiments import cnf as cnf_experiment
    from node_kit.experiments._cnf_data import load_data

    data_dir = str(tmp_path / "tfds")
    with pytest.raises(ValueError, match=r"tfds build mnist --file_format=array_record"):
        nkd.check_mnist_prepared(data_dir)
    pixels, labels = nkd.read_mnist_5k()
    _prepare_fake_mnist(data_dir, monkeypatch, (pixels[:240], labels[:240]),
                        (pixels[240:300], labels[240:300]))
    nkd.check_mnist_prepared(data_dir)
    splits = {s: nkd.load_images("mnist", s, data_dir=data_dir) for s in ("train", "validation", "test")}
    assert {s: x.shape for s, x in splits.items()} == {
        "train": (220, 784), "validation": (20, 784), "test": (60, 784)}
    def rows(x):
        return sorted(map(bytes, x))
    assert rows(splits["test"]) == rows(pixels[240:300])
    assert rows(np.concatenate([splits["train"], splits["validation"]])) == rows(pixels[:240])
    config = cnf_experiment.parse_args(["--dataset", "mnist", "--data-dir", data_dir,
                                        "--downsample", "2", "--eval-batch", "60"])
    data = load_data(config)
    assert data.train.shape == (220, 196) and data.image.shape == (1, 14, 14)


def test_preprocess_bad_arguments():
    with pytest.raises(ValueError, match="`alpha` must satisfy 0 <= alpha < 0.5"):
        nkd.logit_transform(jnp.zeros(3), alpha=0.5)
    with pytest.raises(ValueError, match="`num_levels` must be an int of at least 2"):
        nkd.dequantize(jnp.zeros(3), key=jax.random.key(0), num_levels=1)
    with pytest.raises(ValueError, match="`dim` must be a positive int"):
        nkd.bits_per_dim(jnp.zeros(3), jnp.zeros(3), dim=0)


# --- Batching --------------------------------------------------------------------------------


def test_batch_order_is_a_pure_function_of_seed_and_step():
    data = {"x": np.arange(103 * 2).reshape(103, 2), "label": np.arange(103)}
    assert nkd.num_batches(103, 10) == 10
    epoch0 = list(nkd.batches(data, batch_size=10, seed=7, epoch=0))
    epoch1 = list(nkd.batches(data, batch_size=10, seed=7, epoch=1))
    for epoch, batches in enumerate([epoch0, epoch1]):
        labels = np.concatenate([b["label"] for b in batches])
        # No repeats within an epoch; the remainder of 3 is dropped.
        assert len(batches) == 10 and len(np.unique(labels)) == 100
        for i, batch in enumerate(batches):
            assert batch["x"].shape == (10, 2)
            np.testing.assert_array_equal(batch["x"][:, 0] // 2, batch["label"])
            resumed = nkd.batch_at(data, epoch * 10 + i, batch_size=10, seed=7)
            np.testing.assert_array_equal(resumed["label"], batch["label"])
    assert not np.array_equal(epoch0[0]["label"], epoch1[0]["label"])
    other_seed = nkd.batch_at(data, 0, batch_size=10, seed=8)
    assert not np.array_equal(other_seed["label"], epoch0[0]["label"])


def test_batching_bad_arguments():
    with pytest.raises(ValueError, match="`batch_size` must be at most the number of examples"):
        nkd.batch_at(np.zeros((5, 2)), 0, batch_size=6, seed=0)
    with pytest.raises(ValueError, match="sharing their first axis"):
        nkd.batch_at({"a": np.zeros((5, 2)), "b": np.zeros(4)}, 0, batch_size=2, seed=0)
    with pytest.raises(ValueError, match="`step` must be a non-negative int"):
        nkd.batch_at(np.zeros((5, 2)), -1, batch_size=2, seed=0)
    with pytest.raises(ValueError, match="`seed` must be a non-negative int"):
        nkd.batches(np.zeros((5, 2)), batch_size=2, seed=-3, epoch=0)
