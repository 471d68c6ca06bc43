"""TensorFlow-Datasets builders for the node_kit datasets (imported lazily: TFDS is slow to import).

Every builder generates everything locally: `_split_generators` never touches the download
manager. The builder config carries everything the data depend on (toy name or none, seed,
split sizes), and its name spells them out, so every variant gets its own directory under
`data_dir/<builder>/<config>/<version>/`.
"""

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from ._digits import raw_digits, split_indices
from ._periodic import PERIODIC_NUM_POINTS, sample_periodic
from ._registry import DIGITS_SPLIT_SIZES, PERIODIC_SPLIT_SIZES, SPLITS, TOY2D_SPLIT_SIZES
from ._toy2d import TOY2D_NAMES, sample_toy2d

_FFJORD_CITATION = """@inproceedings{grathwohl2019ffjord,
  title={FFJORD: Free-form Continuous Dynamics for Scalable Reversible Generative Models},
  author={Grathwohl, Will and Chen, Ricky T. Q. and Bettencourt, Jesse and Sutskever, Ilya
          and Duvenaud, David},
  booktitle={International Conference on Learning Representations},
  year={2019}
}"""

_DIGITS_CITATION = """@misc{alpaydin1998optical,
  title={Optical Recognition of Handwritten Digits},
  author={Alpaydin, E. and Kaynak, C.},
  howpublished={UCI Machine Learning Repository},
  year={1998}
}"""


def toy2d_config_name(toy: str, seed: int, split_sizes: tuple[int, int, int]) -> str:
    """The config (directory) name of one toy variant, e.g. `8gaussians-seed0-50000-10000-10000`."""
    return f"{toy}-seed{seed}-" + "-".join(str(size) for size in split_sizes)


def digits_config_name(seed: int, split_sizes: tuple[int, int, int]) -> str:
    """The config (directory) name of one digits split, e.g. `seed0-1257-270-270`."""
    return f"seed{seed}-" + "-".join(str(size) for size in split_sizes)


def periodic_config_name(seed: int, split_sizes: tuple[int, int, int]) -> str:
    """The config (directory) name of one periodic variant, e.g. `seed0-1000-100-100`."""
    return digits_config_name(seed, split_sizes)


def _split_slices(split_sizes: tuple[int, int, int]) -> dict[str, slice]:
    ends = np.cumsum(split_sizes)
    starts = ends - np.asarray(split_sizes)
    return {split: slice(int(a), int(b)) for split, a, b in zip(SPLITS, starts, ends)}


@dataclasses.dataclass(eq=False)
class Toy2dConfig(tfds.core.BuilderConfig):
    """One toy, seed and set of (train, validation, test) sizes."""

    toy: str = "8gaussians"
    seed: int = 0
    split_sizes: tuple[int, int, int] = TOY2D_SPLIT_SIZES


def toy2d_config(toy: str, seed: int, split_sizes: tuple[int, int, int]) -> Toy2dConfig:
    """The builder config for one toy variant."""
    return Toy2dConfig(
        name=toy2d_config_name(toy, seed, split_sizes),
        description=f"FFJORD's {toy}, seed {seed}, (train, validation, test) = {split_sizes}.",
        toy=toy,
        seed=seed,
        split_sizes=split_sizes,
    )


class NodeKitToy2d(tfds.core.GeneratorBasedBuilder):
    """FFJORD's 2-D toy densities, generated locally from a seed (float32 points under `x`)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "FFJORD toy_data definitions, seeded numpy.random.Generator."}
    BUILDER_CONFIGS = [toy2d_config(toy, 0, TOY2D_SPLIT_SIZES) for toy in TOY2D_NAMES]

    def _info(self) -> tfds.core.DatasetInfo:
        features = {"x": tfds.features.Tensor(shape=(2,), dtype=np.float32)}
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.__doc__,
            features=tfds.features.FeaturesDict(features),
            homepage="https://github.com/rtqichen/ffjord",
            citation=_FFJORD_CITATION,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing is downloaded.
        config = self.builder_config
        total = sum(config.split_sizes)
        points = sample_toy2d(config.toy, total, seed=config.seed).astype(np.float32)
        slices = _split_slices(config.split_sizes)
        return {split: self._generate_examples(points, s) for split, s in slices.items()}

    def _generate_examples(self, points: np.ndarray, rows: slice):
        for index in range(rows.start, rows.stop):
            yield index, {"x": points[index]}


@dataclasses.dataclass(eq=False)
class DigitsConfig(tfds.core.BuilderConfig):
    """One seeded (train, validation, test) split of the 1797 digits."""

    seed: int = 0
    split_sizes: tuple[int, int, int] = DIGITS_SPLIT_SIZES


def digits_config(seed: int, split_sizes: tuple[int, int, int]) -> DigitsConfig:
    """The builder config for one seeded split of the digits."""
    return DigitsConfig(
        name=digits_config_name(seed, split_sizes),
        description=f"Seed {seed}, (train, validation, test) = {split_sizes}.",
        seed=seed,
        split_sizes=split_sizes,
    )


class NodeKitDigits(tfds.core.GeneratorBasedBuilder):
    """The 8x8 digits scikit-learn ships: raw pixels 0..16 under `x` (uint8, 64), `label` 0..9."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "sklearn.datasets.load_digits, seeded permutation split."}
    BUILDER_CONFIGS = [digits_config(0, DIGITS_SPLIT_SIZES)]

    def _info(self) -> tfds.core.DatasetInfo:
        features = {
            "x": tfds.features.Tensor(shape=(64,), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=10),
        }
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.__doc__,
            features=tfds.features.FeaturesDict(features),
            supervised_keys=("x", "label"),
            homepage="https://archive.ics.uci.edu/dataset/80",
            citation=_DIGITS_CITATION,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Read from the copy scikit-learn ships.
        pixels, labels = raw_digits()
        config = self.builder_config
        indices = split_indices(config.split_sizes, seed=config.seed)
        return {
            split: self._generate_examples(pixels, labels, index)
            for split, index in zip(SPLITS, indices)
        }

    def _generate_examples(self, pixels: np.ndarray, labels: np.ndarray, index: np.ndarray):
        for i in index:
            yield int(i), {"x": pixels[i], "label": int(labels[i])}


_LATENT_ODE_CITATION = """@inproceedings{rubanova2019latent,
  title={Latent Ordinary Differential Equations for Irregularly-Sampled Time Series},
  author={Rubanova, Yulia and Chen, Ricky T. Q. and Duvenaud, David},
  booktitle={Advances in Neural Information Processing Systems},
  year={2019}
}"""


@dataclasses.dataclass(eq=False)
class PeriodicConfig(tfds.core.BuilderConfig):
    """One seed and set of (train, validation, test) numbers of series."""

    seed: int = 0
    split_sizes: tuple[int, int, int] = PERIODIC_SPLIT_SIZES


def periodic_config(seed: int, split_sizes: tuple[int, int, int]) -> PeriodicConfig:
    """The builder config for one periodic variant."""
    return PeriodicConfig(
        name=periodic_config_name(seed, split_sizes),
        description=f"Seed {seed}, (train, validation, test) = {split_sizes} series.",
        seed=seed,
        split_sizes=split_sizes,
    )


class NodeKitPeriodic(tfds.core.GeneratorBasedBuilder):
    """Noisy 1-D sinusoids at random irregular times: `t` (100,) and `x` (100, 1), float32."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Random frequency, amplitude and phase; seeded numpy Generator."}
    BUILDER_CONFIGS = [periodic_config(0, PERIODIC_SPLIT_SIZES)]

    def _info(self) -> tfds.core.DatasetInfo:
        n = PERIODIC_NUM_POINTS
        features = {
            "t": tfds.features.Tensor(shape=(n,), dtype=np.float32),
            "x": tfds.features.Tensor(shape=(n, 1), dtype=np.float32),
        }
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.__doc__,
            features=tfds.features.FeaturesDict(features),
            homepage="https://github.com/YuliaRubanova/latent_ode",
            citation=_LATENT_ODE_CITATION,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing is downloaded.
        config = self.builder_config
        series = sample_periodic(sum(config.split_sizes), seed=config.seed)
        slices = _split_slices(config.split_sizes)
        return {split: self._generate_examples(series, s) for split, s in slices.items()}

    def _generate_examples(self, series: dict[str, np.ndarray], rows: slice):
        for index in range(rows.start, rows.stop):
            yield index, {"t": series["t"][index], "x": series["x"][index]}
