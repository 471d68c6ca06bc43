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
from ._hopper import HOPPER_NUM_STEPS, HOPPER_STATE_DIM, normalise_min_max, sample_hopper
from ._periodic import PERIODIC_NUM_POINTS, sample_periodic
from ._registry import (
    DIGITS_SPLIT_SIZES,
    HOPPER_SPLIT_SIZES,
    JAPANESE_VOWELS_SPLIT_SIZES,
    PERIODIC_SPLIT_SIZES,
    SPLITS,
    TOY2D_SPLIT_SIZES,
)
from ._toy2d import TOY2D_NAMES, sample_toy2d
from ._uea import (
    JAPANESE_VOWELS_MAX_LENGTH,
    JAPANESE_VOWELS_NUM_CHANNELS,
    JAPANESE_VOWELS_NUM_CLASSES,
    read_japanese_vowels,
)

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


def hopper_config_name(seed: int, split_sizes: tuple[int, int, int]) -> str:
    """The config (directory) name of one hopper variant, e.g. `seed0-8000-1000-1000`."""
    return digits_config_name(seed, split_sizes)


def japanese_vowels_config_name(seed: int, split_sizes: tuple[int, int, int]) -> str:
    """The config (directory) name of one japanese_vowels split, e.g. `seed0-240-30-370`."""
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


_DM_CONTROL_CITATION = """@article{tassa2018deepmind,
  title={DeepMind Control Suite},
  author={Tassa, Yuval and Doron, Yotam and Muldal, Alistair and Erez, Tom and Li, Yazhe and
          de Las Casas, Diego and Budden, David and Abdolmaleki, Abbas and Merel, Josh and
          Lefrancq, Andrew and Lillicrap, Timothy and Riedmiller, Martin},
  journal={arXiv preprint arXiv:1801.00690},
  year={2018}
}"""


@dataclasses.dataclass(eq=False)
class HopperConfig(tfds.core.BuilderConfig):
    """One seed and set of (train, validation, test) numbers of simulated series."""

    seed: int = 0
    split_sizes: tuple[int, int, int] = HOPPER_SPLIT_SIZES


def hopper_config(seed: int, split_sizes: tuple[int, int, int]) -> HopperConfig:
    """The builder config for one hopper variant."""
    return HopperConfig(
        name=hopper_config_name(seed, split_sizes),
        description=f"Seed {seed}, (train, validation, test) = {split_sizes} series.",
        seed=seed,
        split_sizes=split_sizes,
    )


class NodeKitHopper(tfds.core.GeneratorBasedBuilder):
    """MuJoCo hopper (dm_control) from random states: `t` (200,), `x` (200, 14) in [0, 1].

    `x` is `concat(qpos, qvel)` min-max normalised per feature over all generated series; the
    `min` and `max` used are in the metadata (`metadata.json`). See `node_kit.datasets._hopper`.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "dm_control 1.0.50, mujoco 3.17.0; seeded numpy Generator."}
    BUILDER_CONFIGS = [hopper_config(0, HOPPER_SPLIT_SIZES)]

    def _info(self) -> tfds.core.DatasetInfo:
        n = HOPPER_NUM_STEPS
        features = {
            "t": tfds.features.Tensor(shape=(n,), dtype=np.float32),
            "x": tfds.features.Tensor(shape=(n, HOPPER_STATE_DIM), dtype=np.float32),
        }
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.__doc__,
            features=tfds.features.FeaturesDict(features),
            homepage="https://github.com/YuliaRubanova/latent_ode",
            citation=_LATENT_ODE_CITATION + "\n\n" + _DM_CONTROL_CITATION,
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Simulated locally.
        config = self.builder_config
        raw = sample_hopper(sum(config.split_sizes), seed=config.seed)
        x, minimum, maximum = normalise_min_max(raw["x"])
        self.info.metadata.update({"min": minimum.tolist(), "max": maximum.tolist()})
        series = {"t": raw["t"], "x": x}
        slices = _split_slices(config.split_sizes)
        return {split: self._generate_examples(series, s) for split, s in slices.items()}

    def _generate_examples(self, series: dict[str, np.ndarray], rows: slice):
        for index in range(rows.start, rows.stop):
            yield index, {"t": series["t"][index], "x": series["x"][index]}


_UEA_HOMEPAGE = "https://www.timeseriesclassification.com/description.php?Dataset=JapaneseVowels"

_JAPANESE_VOWELS_CITATION = """@article{kudo1999multidimensional,
  title={Multidimensional curve classification using passing-through regions},
  author={Kudo, Mineichi and Toyama, Jun and Shimbo, Masaru},
  journal={Pattern Recognition Letters},
  volume={20},
  number={11--13},
  pages={1103--1111},
  year={1999}
}

@article{bagnall2018uea,
  title={The {UEA} multivariate time series classification archive, 2018},
  author={Bagnall, Anthony and Dau, Hoang Anh and Lines, Jason and Flynn, Michael and
          Large, James and Bostrom, Aaron and Southam, Paul and Keogh, Eamonn},
  journal={arXiv preprint arXiv:1811.00075},
  year={2018}
}"""


@dataclasses.dataclass(eq=False)
class JapaneseVowelsConfig(tfds.core.BuilderConfig):
    """One seeded (train, validation) split of the 270 UEA training series; test is fixed."""

    seed: int = 0
    split_sizes: tuple[int, int, int] = JAPANESE_VOWELS_SPLIT_SIZES


def japanese_vowels_config(
    seed: int, split_sizes: tuple[int, int, int]
) -> JapaneseVowelsConfig:
    """The builder config for one seeded split of JapaneseVowels."""
    return JapaneseVowelsConfig(
        name=japanese_vowels_config_name(seed, split_sizes),
        description=f"Seed {seed}, (train, validation, test) = {split_sizes} series.",
        seed=seed,
        split_sizes=split_sizes,
    )


class NodeKitJapaneseVowels(tfds.core.GeneratorBasedBuilder):
    """UEA JapaneseVowels padded to 29 frames: `t`, `x` (29, 12), `mask`, `length`, `label` 0..8.

    Rows keep their order: test is the UEA test file in file order, train and validation the
    UEA training file in the order of a seeded permutation. See `node_kit.datasets._uea`.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "aeon's JapaneseVowels_TRAIN/TEST.ts, seeded train/validation."}
    BUILDER_CONFIGS = [japanese_vowels_config(0, JAPANESE_VOWELS_SPLIT_SIZES)]

    def _info(self) -> tfds.core.DatasetInfo:
        n, d = JAPANESE_VOWELS_MAX_LENGTH, JAPANESE_VOWELS_NUM_CHANNELS
        features = {
            "t": tfds.features.Tensor(shape=(n,), dtype=np.float32),
            "x": tfds.features.Tensor(shape=(n, d), dtype=np.float32),
            "mask": tfds.features.Tensor(shape=(n, d), dtype=np.bool_),
            "length": tfds.features.Tensor(shape=(), dtype=np.int64),
            "label": tfds.features.ClassLabel(num_classes=JAPANESE_VOWELS_NUM_CLASSES),
        }
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.__doc__,
            features=tfds.features.FeaturesDict(features),
            homepage=_UEA_HOMEPAGE,
            citation=_JAPANESE_VOWELS_CITATION,
            # Keep the generated order: the test split stays in the UEA file order.
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Read from the copy aeon ships.
        config = self.builder_config
        train, test = read_japanese_vowels("train"), read_japanese_vowels("test")
        n_train = config.split_sizes[0]
        order = np.random.default_rng(config.seed).permutation(len(train["label"]))
        return {
            "train": self._generate_examples(train, order[:n_train]),
            "validation": self._generate_examples(train, order[n_train:]),
            "test": self._generate_examples(test, np.arange(len(test["label"]))),
        }

    def _generate_examples(self, series: dict[str, np.ndarray], index: np.ndarray):
        for position, i in enumerate(index):
            yield position, {key: values[i] for key, values in series.items()}
