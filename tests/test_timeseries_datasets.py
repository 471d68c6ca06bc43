"""The `hopper` and `japanese_vowels` datasets: counts, seeds, times, values, missing packages."""

import pathlib
import subprocess
import sys

import numpy as np
import pytest

import node_kit.datasets as nkd
from node_kit.datasets import _hopper, _load
from node_kit.datasets._uea import japanese_vowels_path

HOPPER_SMALL = (6, 2, 2)
HOPPER_TOTAL = sum(HOPPER_SMALL)


def _sorted_rows(data: dict[str, np.ndarray], keys: tuple[str, ...]) -> np.ndarray:
    rows = np.concatenate(
        [np.asarray(data[k], dtype=np.float64).reshape(len(data[k]), -1) for k in keys], axis=1
    )
    return rows[np.lexsort(rows.T[::-1])]


def _concat(splits: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([splits[s][k] for s in nkd.SPLITS]) for k in splits["train"]}


@pytest.fixture(scope="module")
def hopper(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("hopper")
    return {
        s: nkd.load("hopper", s, data_dir=data_dir, split_sizes=HOPPER_SMALL) for s in nkd.SPLITS
    }


@pytest.fixture(scope="module")
def vowels(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("vowels")
    return {s: nkd.load("japanese_vowels", s, data_dir=data_dir) for s in nkd.SPLITS}


# --- hopper ----------------------------------------------------------------------------------


def test_sample_hopper_starts_in_the_reset_ranges_and_moves():
    raw = nkd.sample_hopper(5, seed=0)
    t, x = raw["t"], raw["x"]
    assert t.shape == (5, 200) and t.dtype == np.float32
    assert x.shape == (5, 200, 14) and x.dtype == np.float64
    np.testing.assert_array_equal(t[0], np.arange(200, dtype=np.float32) / 200)
    first = x[:, 0]
    assert np.all((first[:, :2] >= 0.0) & (first[:, :2] <= 0.5))
    assert np.all((first[:, 2:7] >= -2.0) & (first[:, 2:7] <= 2.0))
    assert np.all((first[:, 7:] >= -5.0) & (first[:, 7:] <= 5.0))
    # Row 0 is the drawn state itself (recorded before the first step), qpos then qvel.
    rng = np.random.default_rng(0)
    drawn = [
        np.concatenate([rng.uniform(0, 0.5, 2), rng.uniform(-2, 2, 5), rng.uniform(-5, 5, 7)])
        for _ in range(5)
    ]
    np.testing.assert_array_equal(first, np.stack(drawn))
    assert np.all(np.abs(x[:, 1] - x[:, 0]).max(axis=1) > 0)
    assert np.all(np.isfinite(x))
    np.testing.assert_array_equal(nkd.sample_hopper(5, seed=0)["x"], x)
    assert not np.array_equal(nkd.sample_hopper(5, seed=1)["x"][:, 0], first)
    assert nkd.sample_hopper(2, seed=0, num_steps=3)["x"].shape == (2, 3, 14)


def test_hopper_splits_store_every_normalised_series_once(hopper):
    for split, size in zip(nkd.SPLITS, HOPPER_SMALL):
        t, x = hopper[split]["t"], hopper[split]["x"]
        assert set(hopper[split]) == {"t", "x"}
        assert t.shape == (size, 200) and t.dtype == np.float32
        assert x.shape == (size, 200, 14) and x.dtype == np.float32
    stored = _concat(hopper)
    raw = nkd.sample_hopper(HOPPER_TOTAL, seed=0)
    low, high = raw["x"].min(axis=(0, 1)), raw["x"].max(axis=(0, 1))
    expected = ((raw["x"] - low) / (high - low)).astype(np.float32)
    np.testing.assert_array_equal(
        _sorted_rows(stored, ("t", "x")), _sorted_rows({"t": raw["t"], "x": expected}, ("t", "x"))
    )


def test_hopper_values_are_min_max_normalised_over_all_series(hopper, tmp_path):
    x = _concat(hopper)["x"]
    assert np.all(np.isfinite(x))
    assert x.min() >= 0.0 and x.max() <= 1.0
    np.testing.assert_array_equal(x.min(axis=(0, 1)), np.zeros(14, np.float32))
    np.testing.assert_array_equal(x.max(axis=(0, 1)), np.ones(14, np.float32))
    # The min and max used are the raw ones over all splits, and saved with the data.
    raw = nkd.sample_hopper(HOPPER_TOTAL, seed=0)["x"]
    nkd.load("hopper", "test", data_dir=tmp_path, split_sizes=HOPPER_SMALL)
    builder = _load._node_kit_builder("hopper", 0, HOPPER_SMALL, str(tmp_path))
    np.testing.assert_array_equal(builder.info.metadata["min"], raw.min(axis=(0, 1)))
    np.testing.assert_array_equal(builder.info.metadata["max"], raw.max(axis=(0, 1)))


def test_hopper_times_increase_strictly(hopper):
    t = _concat(hopper)["t"]
    assert np.all(np.diff(t, axis=1) > 0)
    assert np.all(t[:, 0] == 0.0) and np.all(t < 1.0)
    np.testing.assert_allclose(t, np.tile(np.arange(200) / 200, (HOPPER_TOTAL, 1)), rtol=1e-7)


def test_hopper_deterministic_from_the_seed(hopper, tmp_path):
    for split in nkd.SPLITS:
        again = nkd.load("hopper", split, data_dir=tmp_path, split_sizes=HOPPER_SMALL)
        np.testing.assert_array_equal(again["x"], hopper[split]["x"])
    other = nkd.load("hopper", "train", data_dir=tmp_path, seed=1, split_sizes=HOPPER_SMALL)
    assert not np.allclose(other["x"], hopper["train"]["x"])


def test_normalise_min_max_by_hand():
    x = np.array([[[1.0, 5.0, 2.0], [3.0, 5.0, 2.0]], [[-1.0, 5.0, 2.0], [0.0, 5.0, 6.0]]])
    normalised, minimum, maximum = nkd.normalise_min_max(x)
    np.testing.assert_array_equal(minimum, [-1.0, 5.0, 2.0])
    np.testing.assert_array_equal(maximum, [3.0, 5.0, 6.0])
    expected = np.array([[[0.5, 0, 0], [1, 0, 0]], [[0, 0, 0], [0.25, 0, 1]]], np.float32)
    np.testing.assert_array_equal(normalised, expected)
    assert normalised.dtype == np.float32
    with pytest.raises(ValueError, match=r"`x` must be a non-empty array .* got shape \(2, 3\)"):
        nkd.normalise_min_max(np.ones((2, 3)))


def test_hopper_bad_arguments(tmp_path):
    assert nkd.HOPPER_SPLIT_SIZES == (8000, 1000, 1000)
    with pytest.raises(ValueError, match="`num_series` must be a positive int; got num_series=0"):
        nkd.sample_hopper(0, seed=0)
    with pytest.raises(ValueError, match="`num_steps` must be a positive int; got num_steps=0"):
        nkd.sample_hopper(1, seed=0, num_steps=0)
    with pytest.raises(ValueError, match="`seed` must be a non-negative int"):
        nkd.sample_hopper(1, seed=-1)
    with pytest.raises(ValueError, match="`split_sizes` must be three positive ints"):
        nkd.load("hopper", "train", data_dir=tmp_path, split_sizes=(3, 0, 1))


def test_missing_dm_control_gives_install_hint(hopper, tmp_path, monkeypatch):
    built = tmp_path / "built"
    nkd.load("hopper", "train", data_dir=built, split_sizes=HOPPER_SMALL)
    monkeypatch.setitem(sys.modules, "dm_control", None)
    monkeypatch.setitem(sys.modules, "dm_control.suite", None)
    hint = r'pip install "node_kit\[hopper\]".*dm_control==1\.0\.50.*mujoco==3\.17\.0'
    with pytest.raises(ImportError, match=hint):
        nkd.load("hopper", "train", data_dir=tmp_path / "fresh", split_sizes=HOPPER_SMALL)
    assert not (tmp_path / "fresh" / "node_kit_hopper").exists()
    with pytest.raises(ImportError, match="versions must match exactly"):
        nkd.sample_hopper(1, seed=0)
    assert "hopper" not in nkd.available(data_dir=tmp_path / "fresh")
    assert "dm_control not installed" in nkd.unavailable(data_dir=tmp_path / "fresh")["hopper"]
    # Once built, it loads without dm_control.
    assert "hopper" in nkd.available(data_dir=built)
    loaded = nkd.load("hopper", "train", data_dir=built, split_sizes=HOPPER_SMALL)["x"]
    np.testing.assert_array_equal(loaded, hopper["train"]["x"])


def test_broken_dm_control_install_gives_install_hint(tmp_path, monkeypatch):
    def broken():
        raise AttributeError("module 'mujoco' has no attribute 'mjtDisableBit'")

    monkeypatch.setattr(_hopper, "_hopper_physics", broken)
    with pytest.raises(ImportError, match=r"AttributeError: .*node_kit\[hopper\]"):
        nkd.load("hopper", "train", data_dir=tmp_path, split_sizes=HOPPER_SMALL)
    versions = {"dm_control": "1.0.50", "mujoco": "4.0.0"}
    monkeypatch.setattr(_hopper, "installed_version", versions.get)
    reason = nkd.unavailable(data_dir=tmp_path)["hopper"]
    assert "mujoco 4.0.0" in reason and "mujoco==3.17.0" in reason


def test_importing_the_package_imports_no_optional_dependency():
    code = (
        "import sys, node_kit.datasets; "
        "print([m for m in ('dm_control', 'mujoco', 'aeon') if m in sys.modules])"
    )
    repo = pathlib.Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=repo, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --- japanese_vowels -------------------------------------------------------------------------


def test_japanese_vowels_counts_shapes_and_classes(vowels):
    keys = {"t", "x", "mask", "length", "label"}
    for split, size in zip(nkd.SPLITS, nkd.JAPANESE_VOWELS_SPLIT_SIZES):
        data = vowels[split]
        assert set(data) == keys
        assert data["t"].shape == (size, 29) and data["t"].dtype == np.float32
        assert data["x"].shape == (size, 29, 12) and data["x"].dtype == np.float32
        assert data["mask"].shape == (size, 29, 12) and data["mask"].dtype == np.bool_
        assert data["length"].shape == (size,) and data["label"].shape == (size,)
        assert data["label"].dtype == np.int64
    assert nkd.JAPANESE_VOWELS_SPLIT_SIZES == (240, 30, 370)
    everything = _concat(vowels)
    assert len(everything["x"]) == 640
    assert everything["length"].min() == 7 and everything["length"].max() == 29
    assert set(vowels["test"]["label"]) == set(range(9))
    # The UEA training file holds 30 utterances per speaker.
    train_file = np.concatenate([vowels["train"]["label"], vowels["validation"]["label"]])
    np.testing.assert_array_equal(np.bincount(train_file), np.full(9, 30))


def test_japanese_vowels_mask_padding_and_times(vowels):
    for data in vowels.values():
        observed = np.arange(29)[None, :] < data["length"][:, None]
        np.testing.assert_array_equal(data["mask"], np.repeat(observed[..., None], 12, axis=2))
        assert np.all(data["x"][~data["mask"]] == 0.0)
        assert np.all(np.isfinite(data["x"]))
        # Every observed frame holds coefficients (none is an all-zero row).
        assert np.all(np.abs(data["x"]).max(axis=2)[observed] > 0)
        assert np.all(np.diff(data["t"], axis=1) > 0)
        frames = np.arange(29, dtype=np.float32)
        np.testing.assert_array_equal(data["t"], np.tile(frames, (len(data["t"]), 1)))


def _aeon_reference(part: str) -> dict[str, np.ndarray]:
    from aeon.datasets import load_from_ts_file  # An independent parser of the .ts files.

    series, labels = load_from_ts_file(japanese_vowels_path(part))
    x = np.zeros((len(series), 29, 12), np.float32)
    for row, values in zip(x, series):
        row[: values.shape[1]] = values.T
    lengths = np.array([values.shape[1] for values in series])
    return {"x": x, "length": lengths, "label": np.array([int(c) - 1 for c in labels])}


def test_japanese_vowels_matches_aeon_reader(vowels):
    keys = ("x", "length", "label")
    test = _aeon_reference("test")
    for key in keys:  # The test split keeps the UEA file order.
        np.testing.assert_array_equal(vowels["test"][key], test[key])
    train = _aeon_reference("train")
    stored = {k: np.concatenate([vowels["train"][k], vowels["validation"][k]]) for k in keys}
    np.testing.assert_array_equal(_sorted_rows(stored, keys), _sorted_rows(train, keys))


def test_japanese_vowels_deterministic_from_the_seed(vowels, tmp_path):
    again = {s: nkd.load("japanese_vowels", s, data_dir=tmp_path) for s in nkd.SPLITS}
    for split in nkd.SPLITS:
        for key in vowels[split]:
            np.testing.assert_array_equal(again[split][key], vowels[split][key])
    other = nkd.load("japanese_vowels", "validation", data_dir=tmp_path, seed=1)
    assert not np.array_equal(
        _sorted_rows(other, ("x",)), _sorted_rows(vowels["validation"], ("x",))
    )
    sizes = (200, 70, 370)
    resized = {
        s: nkd.load("japanese_vowels", s, data_dir=tmp_path, split_sizes=sizes) for s in nkd.SPLITS
    }
    assert [len(resized[s]["label"]) for s in nkd.SPLITS] == list(sizes)
    np.testing.assert_array_equal(resized["test"]["x"], vowels["test"]["x"])


def test_japanese_vowels_bad_split_sizes(tmp_path):
    match = r"train \+ validation and keep its 370 test series.*got \(240, 20, 370\)"
    with pytest.raises(ValueError, match=match):
        nkd.load("japanese_vowels", "train", data_dir=tmp_path, split_sizes=(240, 20, 370))
    with pytest.raises(ValueError, match=r"test = 300\)"):
        nkd.load("japanese_vowels", "train", data_dir=tmp_path, split_sizes=(240, 30, 300))
    with pytest.raises(ValueError, match="`part` must be 'train' or 'test'"):
        nkd.read_japanese_vowels("validation")


def test_missing_aeon_gives_install_hint(tmp_path, monkeypatch):
    built = tmp_path / "built"
    expected = nkd.load("japanese_vowels", "test", data_dir=built)
    monkeypatch.setitem(sys.modules, "aeon", None)
    hint = r'aeon is not installed.*pip install "node_kit\[uea\]"'
    with pytest.raises(ImportError, match=hint):
        nkd.load("japanese_vowels", "train", data_dir=tmp_path / "fresh")
    assert not (tmp_path / "fresh" / "node_kit_japanese_vowels").exists()
    assert "japanese_vowels" not in nkd.available(data_dir=tmp_path / "fresh")
    assert "node_kit[uea]" in nkd.unavailable(data_dir=tmp_path / "fresh")["japanese_vowels"]
    # Once built, it loads without aeon.
    assert "japanese_vowels" in nkd.available(data_dir=built)
    again = nkd.load("japanese_vowels", "test", data_dir=built)
    np.testing.assert_array_equal(again["x"], expected["x"])


def test_read_ts_parses_headers_and_unequal_lengths(tmp_path):
    path = tmp_path / "tiny.ts"
    path.write_text(
        "# a comment\n@problemName tiny\n@data\n1,2,3:4,5,6:b\n\n7:8:a\n", encoding="utf-8"
    )
    series, labels = nkd.read_ts(str(path))
    assert labels == ["b", "a"]
    np.testing.assert_array_equal(series[0], [[1, 4], [2, 5], [3, 6]])
    np.testing.assert_array_equal(series[1], [[7, 8]])
