"""The `periodic` dataset: counts, determinism from the seed, irregular increasing times."""

import numpy as np
import pytest

import node_kit.datasets as nkd
from node_kit.datasets._periodic import PERIODIC_NUM_POINTS, PERIODIC_T_MAX, sample_periodic
from node_kit.datasets._periodic import PERIODIC_SPLIT_SIZES

SMALL = (12, 5, 3)


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("periodic")
    return {s: nkd.load("periodic", s, data_dir=data_dir, split_sizes=SMALL) for s in nkd.SPLITS}


def _rows(data: dict[str, np.ndarray]) -> np.ndarray:
    rows = np.concatenate([data["t"], data["x"][..., 0]], axis=1)
    return rows[np.lexsort(rows.T[::-1])]


def test_split_sizes_add_up_and_every_series_is_stored_once(splits):
    for split, size in zip(nkd.SPLITS, SMALL):
        t, x = splits[split]["t"], splits[split]["x"]
        assert set(splits[split]) == {"t", "x"}
        assert t.shape == (size, PERIODIC_NUM_POINTS) and t.dtype == np.float32
        assert x.shape == (size, PERIODIC_NUM_POINTS, 1) and x.dtype == np.float32
    stored = {k: np.concatenate([splits[s][k] for s in nkd.SPLITS]) for k in ("t", "x")}
    assert len(stored["t"]) == sum(SMALL)
    np.testing.assert_array_equal(_rows(stored), _rows(sample_periodic(sum(SMALL), seed=0)))


def test_times_increase_strictly_and_are_irregular(splits):
    t = np.concatenate([splits[s]["t"] for s in nkd.SPLITS])
    assert np.all(np.diff(t, axis=1) > 0)
    assert t.min() >= 0 and t.max() <= PERIODIC_T_MAX
    assert len({tuple(row) for row in t}) == len(t)  # every series has its own times
    assert np.std(np.diff(t, axis=1)) > 0.1 * np.mean(np.diff(t, axis=1))
    # float32 rounding ties about 20 neighbours per series of 20000 points; they are moved apart.
    dense = sample_periodic(2, seed=3, num_points=20_000)["t"]
    assert np.all(np.diff(dense, axis=1) > 0)


def test_deterministic_from_the_seed(splits, tmp_path):
    again = nkd.load("periodic", "test", data_dir=tmp_path, split_sizes=SMALL)
    for key in ("t", "x"):
        np.testing.assert_array_equal(again[key], splits["test"][key])
    other = nkd.load("periodic", "test", data_dir=tmp_path, seed=1, split_sizes=SMALL)
    assert not np.array_equal(_rows(other), _rows(splits["test"]))


def test_defaults_and_bad_arguments(tmp_path):
    assert PERIODIC_SPLIT_SIZES == (1000, 100, 100)
    with pytest.raises(ValueError, match="`num_series` must be a positive int; got num_series=0"):
        sample_periodic(0, seed=0)
    with pytest.raises(ValueError, match="`seed` must be a non-negative int"):
        sample_periodic(3, seed=-1)
    with pytest.raises(ValueError, match="`split_sizes` must be three positive ints"):
        nkd.load("periodic", "train", data_dir=tmp_path, split_sizes=(3, 0, 1))
    with pytest.raises(ValueError, match="Did you mean 'periodic'"):
        nkd.load("periodik", "train", data_dir=tmp_path)
